//! Member volumes after creation: a larger `storage.size` is asked of the claim (the storage
//! class must allow expansion); a volume removed from the spec goes with `volumeReclaim: Delete`.
//! What cannot be done, or is still under way, is returned for the brain's `VolumesMatchSpec`
//! condition.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::api::quantity::bytes;
use crate::api::{MemberSpec, PgReplicaCluster, VolumeReclaim, DEFAULT_STORAGE_SIZE};
use crate::plan::VolumeNote;

use super::error::KubeError;
use super::labels;

/// What the claim's size says next to the spec's.
#[derive(Debug, PartialEq, Eq)]
pub enum Sizing {
    /// Requested and provided as the spec asks.
    Fits,
    /// The spec asks more than the claim requests: ask for it.
    Grow { from: String, to: String },
    /// Requested, not provided yet.
    Growing { have: String, to: String },
    /// The spec asks less: volumes never shrink.
    Shrink { have: String, to: String },
    /// A size that is not a plain quantity (the claim is left alone).
    Unreadable(String),
}

/// Compare the spec's size with the claim's request and capacity.
pub fn sizing(wanted: &str, requested: Option<&str>, capacity: Option<&str>) -> Sizing {
    let Some(want) = bytes(wanted) else {
        return Sizing::Unreadable(format!("storage.size {wanted} is not a size"));
    };
    let Some(requested_text) = requested else {
        return Sizing::Fits;
    };
    let Some(req) = bytes(requested_text) else {
        return Sizing::Unreadable(format!("the claim requests {requested_text}"));
    };
    if want < req {
        return Sizing::Shrink {
            have: requested_text.to_string(),
            to: wanted.to_string(),
        };
    }
    if want > req {
        return Sizing::Grow {
            from: requested_text.to_string(),
            to: wanted.to_string(),
        };
    }
    match capacity {
        Some(cap) if bytes(cap).is_some_and(|c| c < want) => Sizing::Growing {
            have: cap.to_string(),
            to: wanted.to_string(),
        },
        _ => Sizing::Fits,
    }
}

fn quantity(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Option<&str> {
    map.and_then(|m| m.get("storage")).map(|q| q.0.as_str())
}

/// Make the member's existing claim as large as the spec asks, when it can be.
pub async fn resize(
    pvcs: &Api<PersistentVolumeClaim>,
    pvc: &PersistentVolumeClaim,
    member: &MemberSpec,
) -> Result<Option<VolumeNote>, KubeError> {
    let name = pvc.name_any();
    let wanted = member
        .storage
        .as_ref()
        .map_or(DEFAULT_STORAGE_SIZE, |s| s.size.as_str());
    let requested = quantity(
        pvc.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    );
    let capacity = quantity(pvc.status.as_ref().and_then(|s| s.capacity.as_ref()));
    Ok(match sizing(wanted, requested, capacity) {
        Sizing::Fits => None,
        Sizing::Unreadable(why) => Some(VolumeNote::Refused(why)),
        Sizing::Shrink { have, to } => Some(VolumeNote::Refused(format!(
            "volume {name} requests {have}; the spec asks {to}, and a volume cannot shrink: set storage.size back to {have} or more"
        ))),
        Sizing::Growing { have, to } => Some(VolumeNote::Resizing(format!(
            "volume {name} is growing from {have} to {to}{}",
            resize_condition(pvc)
        ))),
        Sizing::Grow { from, to } => {
            let patch = json!({"spec": {"resources": {"requests": {"storage": to}}}});
            match pvcs
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    info!(pvc = %name, from = %from, to = %to, "asked for a larger volume");
                    Some(VolumeNote::Resizing(format!(
                        "volume {name}: asked to grow from {from} to {to}"
                    )))
                }
                // the API server's admission refuses claims whose class cannot expand
                Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => {
                    warn!(pvc = %name, error = %e.message, "the volume cannot grow");
                    Some(VolumeNote::Refused(format!(
                        "volume {name} cannot grow from {from} to {to}: {} (its storage class needs allowVolumeExpansion: true; otherwise set storage.size back to {from})",
                        e.message
                    )))
                }
                Err(e) => return Err(KubeError::api("patch", "PersistentVolumeClaim", name)(e)),
            }
        }
    })
}

/// The claim's resize condition, if the storage system reports one.
fn resize_condition(pvc: &PersistentVolumeClaim) -> String {
    pvc.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.status == "True"))
        .map(|c| match c.message.as_deref() {
            Some(m) if !m.is_empty() => format!(" ({}: {m})", c.type_),
            _ => format!(" ({})", c.type_),
        })
        .unwrap_or_default()
}

/// With `volumeReclaim: Delete`, the claims of members removed from the spec whose pods are
/// gone are deleted.
pub async fn reclaim_removed(
    pvcs: &Api<PersistentVolumeClaim>,
    cluster: &PgReplicaCluster,
    running: &[String],
    with_pods: &[String],
) -> Result<(), KubeError> {
    if cluster.spec.volume_reclaim != VolumeReclaim::Delete {
        return Ok(());
    }
    let name = cluster.name_any();
    let selector = labels::selector_string(&labels::cluster_selector(&name));
    let claims = pvcs
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(KubeError::api("list", "PersistentVolumeClaim", &name))?;
    for claim in claims {
        let Some(member) = claim.labels().get(labels::MEMBER_LABEL) else {
            continue;
        };
        if running.contains(member)
            || with_pods.contains(member)
            || claim.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        info!(member = %member, pvc = %claim.name_any(), "member removed and volumeReclaim is Delete: deleting its volume claim");
        pvcs.delete(&claim.name_any(), &DeleteParams::default())
            .await
            .map_err(KubeError::api(
                "delete",
                "PersistentVolumeClaim",
                claim.name_any(),
            ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_compared() {
        let grow = |from: &str, to: &str| Sizing::Grow {
            from: from.into(),
            to: to.into(),
        };
        let table = [
            ("10Gi", Some("10Gi"), Some("10Gi"), Sizing::Fits),
            ("10Gi", None, None, Sizing::Fits),
            ("20Gi", Some("10Gi"), Some("10Gi"), grow("10Gi", "20Gi")),
            ("10240Mi", Some("10Gi"), Some("10Gi"), Sizing::Fits),
            (
                "20Gi",
                Some("20Gi"),
                Some("10Gi"),
                Sizing::Growing {
                    have: "10Gi".into(),
                    to: "20Gi".into(),
                },
            ),
            // a provisioner may give more than asked
            ("10Gi", Some("10Gi"), Some("16Gi"), Sizing::Fits),
            (
                "5Gi",
                Some("10Gi"),
                Some("10Gi"),
                Sizing::Shrink {
                    have: "10Gi".into(),
                    to: "5Gi".into(),
                },
            ),
            (
                "10GB",
                Some("10Gi"),
                None,
                Sizing::Unreadable("storage.size 10GB is not a size".into()),
            ),
        ];
        for (wanted, requested, capacity, want) in table {
            assert_eq!(
                sizing(wanted, requested, capacity),
                want,
                "{wanted} {requested:?} {capacity:?}"
            );
        }
    }
}
