//! Metadata shared by every object built for a cluster: name, namespace, labels, owner.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use super::BuildError;
use crate::api::PgReplicaCluster;

/// The identity of the cluster that owns the objects being built.
pub(super) struct Owner<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    reference: OwnerReference,
}

impl<'a> Owner<'a> {
    pub fn of(cluster: &'a PgReplicaCluster) -> Result<Owner<'a>, BuildError> {
        let name = cluster
            .metadata
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or(BuildError::NoName)?;
        let namespace = cluster
            .metadata
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| BuildError::NoNamespace {
                cluster: name.to_string(),
            })?;
        let reference = owner_reference(cluster)?;
        Ok(Owner {
            name,
            namespace,
            reference,
        })
    }

    /// Metadata of an object in the cluster's namespace, owned (and garbage-collected) by it.
    pub fn meta(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.to_string()),
            labels: Some(labels),
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// The controller owner reference to `cluster`: deleting the cluster deletes what it owns, and
/// the garbage collector waits for owned objects before the cluster is gone.
pub fn owner_reference(cluster: &PgReplicaCluster) -> Result<OwnerReference, BuildError> {
    let name = cluster.metadata.name.clone().ok_or(BuildError::NoName)?;
    let reference = cluster
        .controller_owner_ref(&())
        .filter(|r| !r.uid.is_empty())
        .ok_or(BuildError::NoUid { cluster: name })?;
    Ok(OwnerReference {
        block_owner_deletion: Some(true),
        ..reference
    })
}
