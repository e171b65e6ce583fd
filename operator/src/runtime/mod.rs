//! Runtimes: where members run. `local` runs them as processes on one machine.

pub mod local;
