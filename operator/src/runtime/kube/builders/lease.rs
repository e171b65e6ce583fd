//! The one-writer Lease, created free by the operator so that it carries the cluster's labels and
//! owner (agents may then only update it; see `agent_rbac`).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};

use super::meta::Owner;
use super::BuildError;
use crate::api::PgReplicaCluster;
use crate::runtime::kube::{labels, names};

/// `<cluster>-primary`, held by nobody.
pub fn primary_lease(cluster: &PgReplicaCluster) -> Result<Lease, BuildError> {
    let owner = Owner::of(cluster)?;
    Ok(Lease {
        metadata: owner.meta(
            names::primary_lease(owner.name),
            labels::cluster_labels(owner.name),
        ),
        spec: Some(LeaseSpec::default()),
    })
}
