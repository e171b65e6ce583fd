//! What the brain and a member's agent say to each other: the desired state the brain hands
//! over, and the report the agent serves at `/status`. Pure data, shared by every runtime.

pub mod desired;
pub mod report;

pub use desired::*;
pub use report::*;
