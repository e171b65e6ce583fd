//! The cluster's three endpoints. They select pods by label; the brain moves the labels as it
//! routes (`plan::Routes`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::Owner;
use super::BuildError;
use crate::api::PgReplicaCluster;
use crate::runtime::kube::{labels, names};

/// `<cluster>-rw` (the primary), `<cluster>-ro` (standbys without an apply delay, else the
/// primary), `<cluster>-r` (every member that serves its role), in that order. The brain's labels
/// alone decide which pods they lead to (ADR 0008).
pub fn services(cluster: &PgReplicaCluster) -> Result<Vec<Service>, BuildError> {
    let owner = Owner::of(cluster)?;
    let name = owner.name;
    Ok(vec![
        service(
            &owner,
            names::rw_service(name),
            labels::role_selector(name, labels::ROLE_PRIMARY),
        ),
        service(&owner, names::ro_service(name), labels::ro_selector(name)),
        service(
            &owner,
            names::r_service(name),
            labels::serving_selector(name),
        ),
    ])
}

fn service(owner: &Owner<'_>, name: String, selector: BTreeMap<String, String>) -> Service {
    Service {
        metadata: owner.meta(name, labels::cluster_labels(owner.name)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some(names::POSTGRES_PORT_NAME.to_string()),
                port: names::POSTGRES_PORT,
                target_port: Some(IntOrString::String(names::POSTGRES_PORT_NAME.to_string())),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            // The labels follow the brain, which hears of a loss or a promotion before any probe
            // does. Following the kubelet's readiness too would change the endpoints at moments
            // of its choosing, and kube-proxy applies a change that follows another within its
            // `minSyncPeriod` (1 s) only when that second has passed: the new primary's label
            // would wait behind the old primary's failed probe (ADR 0008).
            publish_not_ready_addresses: Some(true),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
