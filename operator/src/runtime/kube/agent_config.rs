//! The agent configuration a member pod gets (as JSON in an environment variable).

use std::collections::BTreeMap;

use crate::api::{MemberSpec, PgReplicaCluster};
use crate::instance::config::{AgentConfig, LeaseBackend, Placement};

use super::names;

/// Lease duration in Kubernetes: whole seconds, long enough for API round trips.
pub const KUBE_LEASE_DURATION_MS: u64 = crate::brain::timing::KUBE_LEASE.as_millis() as u64;

pub fn agent_config(
    cluster: &PgReplicaCluster,
    member: &MemberSpec,
    namespace: &str,
) -> AgentConfig {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let at = Placement {
        // a directory of our own inside the volume: the volume root belongs to root
        member_dir: format!("{}/{}", names::MEMBER_DIR, member.name).into(),
        listen_host: "127.0.0.1".into(),
        port: names::POSTGRES_PORT as u16,
        http: std::net::SocketAddr::from(([0, 0, 0, 0], names::AGENT_PORT as u16)),
        tls: crate::tls::AgentTlsFiles::in_dir(std::path::Path::new(names::TLS_DIR)),
        pg_bindir: None,
        superuser_password_file: names::SUPERUSER_PASSWORD_FILE.into(),
        replication_password_file: names::REPLICATION_PASSWORD_FILE.into(),
        app_password_file: names::APP_PASSWORD_FILE.into(),
        lease_file: "/dev/null".into(),
        lease_backend: LeaseBackend::Kubernetes {
            namespace: namespace.to_string(),
            name: names::primary_lease(&name),
        },
        lease_duration_ms: KUBE_LEASE_DURATION_MS,
        // pods reach each other over the pod network; scram-sha-256 guards every connection
        allow_networks: vec!["0.0.0.0/0".into(), "::/0".into()],
    };
    AgentConfig::for_member(&name, &member.name, &cluster.spec, at)
}

pub fn agent_config_json(
    cluster: &PgReplicaCluster,
    member: &MemberSpec,
    namespace: &str,
) -> String {
    serde_json::to_string(&agent_config(cluster, member, namespace)).unwrap_or_default()
}

/// Members by name, for lookups.
pub fn members(cluster: &PgReplicaCluster) -> BTreeMap<&str, &MemberSpec> {
    cluster
        .spec
        .members
        .iter()
        .map(|m| (m.name.as_str(), m))
        .collect()
}
