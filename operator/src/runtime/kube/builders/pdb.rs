//! Keeps voluntary evictions (node drains) to one member at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::Owner;
use super::BuildError;
use crate::api::PgReplicaCluster;
use crate::runtime::kube::{labels, names};

/// At most one member down by eviction at a time.
///
/// Said as `minAvailable: <members - 1>` rather than `maxUnavailable: 1`: the disruption controller
/// computes `maxUnavailable` from the `scale` subresource of the pods' controller, which a
/// `PgReplicaCluster` does not have, and it would then allow no eviction at all. An integer
/// `minAvailable` counts the selected pods instead. The budget follows the member count, so the
/// controller re-applies it when members are added or removed.
pub fn pdb(cluster: &PgReplicaCluster) -> Result<PodDisruptionBudget, BuildError> {
    let owner = Owner::of(cluster)?;
    let members = i32::try_from(cluster.spec.members.len()).unwrap_or(i32::MAX);
    Ok(PodDisruptionBudget {
        metadata: owner.meta(
            names::disruption_budget(owner.name),
            labels::cluster_labels(owner.name),
        ),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(members.saturating_sub(1).max(0))),
            selector: Some(LabelSelector {
                match_labels: Some(labels::cluster_selector(owner.name)),
                match_expressions: None,
            }),
            // A member that is not ready serves nobody; draining its node need not wait for it.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_string()),
            max_unavailable: None,
        }),
        status: None,
    })
}
