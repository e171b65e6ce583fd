//! What the brain and a member's agent say to each other: the desired state the brain hands
//! over, and the report the agent serves at `/status`. Pure data, shared by every runtime.

pub mod desired;
pub mod report;

pub mod lsn;
mod slot;

pub use desired::*;
pub use lsn::{InvalidLsn, Lsn};
pub use report::*;
pub use slot::{slot_name_for, SLOT_PREFIX};
