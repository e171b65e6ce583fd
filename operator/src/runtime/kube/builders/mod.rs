//! Pure builders of a cluster's Kubernetes objects: each takes the `PgReplicaCluster` (and what
//! else it needs) and returns the object to apply. No client, no clock; table-tested.
//!
//! Every object lives in the cluster's namespace, carries the cluster's labels and a controller
//! owner reference to the cluster, so deleting the cluster deletes them.

mod error;
mod lease;
mod meta;
mod network;
mod pdb;
mod pod;
mod pvc;
mod rbac;
mod secret;
mod services;

#[cfg(test)]
mod tests;

pub use error::BuildError;
pub use lease::primary_lease;
pub use meta::owner_reference;
pub use network::{network_policy, OPERATOR_POD_LABELS};
pub use pdb::pdb;
pub use pod::{
    member_pod, outdated, template_of, PodOptions, INSTALL_CONTAINER, POSTGRES_CONTAINER,
    POSTGRES_UID,
};
pub use pvc::member_pvc;
pub use rbac::agent_rbac;
pub use secret::{app_secret, password_secret, secret};
pub use services::services;
