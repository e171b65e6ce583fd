//! The `PgReplicaCluster` resource: types, defaults and validation. No I/O.

pub mod changes;
pub mod crd;
pub mod duration;
pub mod quantity;
pub mod rules;
pub mod spec;
pub mod status;
pub mod validate;

#[cfg(test)]
mod tests;

pub use spec::*;
pub use status::*;
