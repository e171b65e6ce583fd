//! The local runtime: one agent process per member under a state directory, the brain in this
//! process, and TCP endpoints (read-write to the primary, read-only over ready standbys).

pub mod brain;
pub mod error;
pub mod layout;
pub mod members;
pub mod preflight;
pub mod secrets;
pub mod status_file;
pub mod world;

pub use error::LocalError;
pub use layout::{Layout, LocalState};
