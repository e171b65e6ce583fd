//! Runtimes: where members run. `local` runs them as processes on one machine; `kube` as pods.

pub mod kube;
pub mod local;
