//! A generated password, kept in a Secret the pods mount.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;

use super::meta::Owner;
use super::BuildError;
use crate::api::PgReplicaCluster;
use crate::runtime::kube::{labels, names};

/// An Opaque Secret `name` holding `password` under the key `password`. The operator creates it
/// once, when absent, and never overwrites it.
pub fn password_secret(
    cluster: &PgReplicaCluster,
    name: &str,
    password: &str,
) -> Result<Secret, BuildError> {
    let owner = Owner::of(cluster)?;
    Ok(Secret {
        metadata: owner.meta(name.to_string(), labels::cluster_labels(owner.name)),
        type_: Some("Opaque".to_string()),
        // `data` rather than the write-only `stringData`: what is sent is what reads back.
        data: Some(BTreeMap::from([(
            names::PASSWORD_KEY.to_string(),
            ByteString(password.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    })
}
