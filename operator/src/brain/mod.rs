//! The control loop both runtimes run: one [`Brain`] per cluster ticks over a [`World`] — the
//! runtime's thin adapter — with the pure decisions of `plan`, members' reports followed by long
//! polls (`reports`), and every timing constant in `timing`.

pub mod reports;
pub mod tick;
pub mod timing;
pub mod world;

pub use reports::{AgentAddress, Reports};
pub use tick::Brain;
pub use world::{Next, Outcome, Snapshot, World};
