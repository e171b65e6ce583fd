//! Generated credentials kept in Secrets: passwords and the TLS material of the cluster CA.
//! With `volumeReclaim: Retain` (the default) they are not owned by the cluster, so they outlive it
//! together with the data they open, and a cluster created again under the same name uses them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;

use super::meta::Owner;
use super::BuildError;
use crate::api::{PgReplicaCluster, VolumeReclaim};
use crate::runtime::kube::{labels, names};

/// An Opaque Secret `name` holding `password` under the key `password`. The operator creates it
/// once, when absent, and never overwrites it.
pub fn password_secret(
    cluster: &PgReplicaCluster,
    name: &str,
    password: &str,
) -> Result<Secret, BuildError> {
    secret(cluster, name, "Opaque", &[(names::PASSWORD_KEY, password)])
}

/// The application's credentials, as CloudNativePG users expect them: `username` (and `user`),
/// `password`, `host` (the rw Service), `port`, `dbname`, `uri`, `jdbc-uri`. TLS is on: with the
/// CA from the Secret `<cluster>-ca`, clients can use `sslmode=verify-full` against `host`.
pub fn app_secret(cluster: &PgReplicaCluster, password: &str) -> Result<Secret, BuildError> {
    let owner = Owner::of(cluster)?;
    let app = &cluster.spec.application;
    let host = format!("{}.{}.svc", names::rw_service(owner.name), owner.namespace);
    let port = names::POSTGRES_PORT.to_string();
    let (user, db) = (app.user.as_str(), app.database.as_str());
    let uri = format!("postgresql://{user}:{password}@{host}:{port}/{db}");
    let jdbc = format!("jdbc:postgresql://{host}:{port}/{db}?user={user}&password={password}");
    secret(
        cluster,
        &names::app_secret(owner.name),
        "kubernetes.io/basic-auth",
        &[
            ("username", user),
            ("user", user),
            (names::PASSWORD_KEY, password),
            ("host", &host),
            ("port", &port),
            ("dbname", db),
            ("uri", &uri),
            ("jdbc-uri", &jdbc),
        ],
    )
}

/// A Secret `name` of `type_` holding `entries`.
pub fn secret(
    cluster: &PgReplicaCluster,
    name: &str,
    type_: &str,
    entries: &[(&str, &str)],
) -> Result<Secret, BuildError> {
    let owner = Owner::of(cluster)?;
    let mut metadata = owner.meta(name.to_string(), labels::cluster_labels(owner.name));
    if cluster.spec.volume_reclaim == VolumeReclaim::Retain {
        metadata.owner_references = None;
    }
    Ok(Secret {
        metadata,
        type_: Some(type_.to_string()),
        // `data` rather than the write-only `stringData`: what is sent is what reads back.
        data: Some(
            entries
                .iter()
                .map(|(key, value)| (key.to_string(), ByteString(value.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    })
}
