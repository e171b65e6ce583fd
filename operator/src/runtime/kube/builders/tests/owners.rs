use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::fixtures::{five_members, lab, NAMESPACE};
use crate::api::PgReplicaCluster;
use crate::runtime::kube::builders::{
    agent_rbac, member_pod, member_pvc, owner_reference, password_secret, pdb, primary_lease,
    services, BuildError, PodOptions,
};
use crate::runtime::kube::labels::{self, ROLE_NONE};

/// Metadata of every object built for `cluster`.
fn all_metadata(cluster: &PgReplicaCluster) -> Result<Vec<ObjectMeta>, BuildError> {
    let mut out = Vec::new();
    for member in &cluster.spec.members {
        let opts = PodOptions::new("pgreplica", "{}", ROLE_NONE);
        out.push(member_pod(cluster, member, &opts)?.metadata);
        let mut pvc = cluster.clone();
        pvc.spec.volume_reclaim = crate::api::VolumeReclaim::Delete;
        out.push(member_pvc(&pvc, member)?.metadata);
    }
    out.extend(services(cluster)?.into_iter().map(|s| s.metadata));
    let mut deleted = cluster.clone();
    deleted.spec.volume_reclaim = crate::api::VolumeReclaim::Delete;
    out.push(password_secret(&deleted, "x", "y")?.metadata);
    let (account, role, binding) = agent_rbac(cluster)?;
    out.extend([account.metadata, role.metadata, binding.metadata]);
    out.push(pdb(cluster)?.metadata);
    out.push(primary_lease(cluster)?.metadata);
    Ok(out)
}

#[test]
fn every_object_is_namespaced_labelled_and_owned_by_the_cluster() {
    for cluster in [lab(), five_members()] {
        let name = cluster.metadata.name.clone().expect("named");
        let uid = cluster.metadata.uid.clone().expect("uid");
        let metas = all_metadata(&cluster).expect("builds");
        assert_eq!(metas.len(), cluster.spec.members.len() * 2 + 9);
        for meta in metas {
            let object = meta.name.clone().unwrap_or_default();
            assert_eq!(meta.namespace.as_deref(), Some(NAMESPACE), "{object}");
            let labels_of = meta.labels.clone().unwrap_or_default();
            for (key, value) in labels::cluster_labels(&name) {
                assert_eq!(labels_of.get(&key), Some(&value), "{object} label {key}");
            }
            let owners = meta.owner_references.clone().unwrap_or_default();
            assert_eq!(owners.len(), 1, "{object}");
            let owner = &owners[0];
            assert_eq!(
                (
                    owner.api_version.as_str(),
                    owner.kind.as_str(),
                    owner.name.as_str(),
                    owner.uid.as_str(),
                    owner.controller,
                    owner.block_owner_deletion,
                ),
                (
                    "pgreplica.io/v1alpha1",
                    "PgReplicaCluster",
                    name.as_str(),
                    uid.as_str(),
                    Some(true),
                    Some(true)
                ),
                "{object}"
            );
        }
    }
}

#[test]
fn retained_volumes_keep_the_secrets_that_open_them() {
    // volumeReclaim: Retain (the default): the data and the credentials for it outlive the
    // cluster object, so the same cluster created again opens its old data.
    let cluster = lab();
    assert_eq!(
        cluster.spec.volume_reclaim,
        crate::api::VolumeReclaim::Retain
    );
    let member = &cluster.spec.members[0];
    let table = [
        ("pvc", member_pvc(&cluster, member).expect("pvc").metadata),
        (
            "password",
            password_secret(&cluster, "x", "y")
                .expect("secret")
                .metadata,
        ),
        (
            "ca",
            crate::runtime::kube::builders::secret(
                &cluster,
                "lab-ca-key",
                "kubernetes.io/tls",
                &[],
            )
            .expect("secret")
            .metadata,
        ),
    ];
    for (what, meta) in table {
        assert_eq!(meta.owner_references, None, "{what}");
    }
}

#[test]
fn a_cluster_without_identity_builds_nothing() {
    let mut no_uid = lab();
    no_uid.metadata.uid = None;
    let mut no_namespace = lab();
    no_namespace.metadata.namespace = None;
    let mut no_name = lab();
    no_name.metadata.name = None;
    let lab_name = || "lab".to_string();
    let table = [
        (
            no_uid,
            BuildError::NoUid {
                cluster: lab_name(),
            },
        ),
        (
            no_namespace,
            BuildError::NoNamespace {
                cluster: lab_name(),
            },
        ),
        (no_name, BuildError::NoName),
    ];
    for (cluster, want) in table {
        assert_eq!(all_metadata(&cluster).err(), Some(want.clone()));
        assert_eq!(services(&cluster).err(), Some(want.clone()));
        assert_eq!(pdb(&cluster).err(), Some(want));
    }
    let mut no_uid = lab();
    no_uid.metadata.uid = Some(String::new());
    assert_eq!(
        owner_reference(&no_uid).err(),
        Some(BuildError::NoUid {
            cluster: lab_name()
        })
    );
}

#[test]
fn volumes_outlive_the_cluster_unless_asked() {
    let cluster = lab();
    for member in &cluster.spec.members {
        let pvc = member_pvc(&cluster, member).expect("builds");
        assert!(
            pvc.metadata.owner_references.is_none(),
            "Retain is the default"
        );
    }
    let mut delete = lab();
    delete.spec.volume_reclaim = crate::api::VolumeReclaim::Delete;
    let pvc = member_pvc(&delete, &delete.spec.members[0]).expect("builds");
    assert_eq!(pvc.metadata.owner_references.map(|o| o.len()), Some(1));
}
