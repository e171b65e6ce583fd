//! One member's volume claim: its data directory outlives its pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::meta::Owner;
use super::BuildError;
use crate::api::{MemberSpec, PgReplicaCluster, VolumeReclaim, DEFAULT_STORAGE_SIZE};
use crate::runtime::kube::{labels, names};

/// The claim of `member`, named `<cluster>-<member>` like its pod.
pub fn member_pvc(
    cluster: &PgReplicaCluster,
    member: &MemberSpec,
) -> Result<PersistentVolumeClaim, BuildError> {
    let owner = Owner::of(cluster)?;
    let storage = member.storage.as_ref();
    let size = storage.map_or(DEFAULT_STORAGE_SIZE, |s| s.size.as_str());
    let mut metadata = owner.meta(
        names::member_object(owner.name, &member.name),
        labels::member_labels(owner.name, &member.name),
    );
    // Data outlives the cluster object unless the spec asks otherwise.
    if cluster.spec.volume_reclaim == VolumeReclaim::Retain {
        metadata.owner_references = None;
    }
    Ok(PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            // One PostgreSQL server writes a data directory; a volume on one node fits that.
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(size.to_string()),
                )])),
                limits: None,
            }),
            storage_class_name: storage.and_then(|s| s.storage_class_name.clone()),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    })
}
