//! The agent's configuration: one JSON file written by the runtime that starts it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::AgentError;

/// Everything one member's agent needs to know about where and how it runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    pub cluster: String,
    pub member: String,
    /// The member's own directory: holds `data/`, the desired-state file and asides.
    pub member_dir: PathBuf,
    /// Address PostgreSQL listens on (also what other members use to reach it).
    pub listen_host: String,
    pub port: u16,
    /// Where the agent serves `/status`, `/healthz`, `/readyz` and `PUT /desired`, over HTTPS.
    pub http: SocketAddr,
    /// The agent's certificate and key (HTTPS) and the cluster CA, which must also have signed the
    /// brain's client certificate for `/status` and `PUT /desired` (ADR 0005).
    pub tls: crate::tls::AgentTlsFiles,
    /// Directory of PostgreSQL server programs; found automatically when absent.
    #[serde(default)]
    pub pg_bindir: Option<PathBuf>,
    /// Unix user to run PostgreSQL as when the agent runs as root.
    #[serde(default)]
    pub run_as: Option<String>,
    /// Files holding the generated passwords.
    pub superuser_password_file: PathBuf,
    pub replication_password_file: PathBuf,
    /// Lease file (local runtime).
    pub lease_file: PathBuf,
    /// Where the one-writer lease lives.
    #[serde(default)]
    pub lease_backend: LeaseBackend,
    pub lease_duration_ms: u64,
    /// Networks (CIDR) allowed to connect besides loopback, such as a pod network.
    #[serde(default)]
    pub allow_networks: Vec<String>,
    /// Cap on WAL kept for slots, so a dead member cannot fill a small disk.
    #[serde(default = "default_slot_keep")]
    pub max_slot_wal_keep_size: String,
    /// The application's role and database, made sure of whenever this member is the primary.
    #[serde(default)]
    pub application: Option<ApplicationConfig>,
}

/// `spec.application` and where its password is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationConfig {
    pub user: String,
    pub database: String,
    pub password_file: PathBuf,
}

/// The lease store an agent uses.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum LeaseBackend {
    /// `leaseFile` (local runtime).
    #[default]
    File,
    /// A `coordination.k8s.io` Lease (Kubernetes runtime).
    Kubernetes { namespace: String, name: String },
}

fn default_slot_keep() -> String {
    "1GB".into()
}

pub const SUPERUSER: &str = "postgres";
pub const REPLICATION_USER: &str = "replicator";

/// Where and how one member runs: what differs between the runtimes. Everything taken from the
/// spec is [`AgentConfig::for_member`]'s.
pub struct Placement {
    pub member_dir: PathBuf,
    pub listen_host: String,
    pub port: u16,
    pub http: SocketAddr,
    pub tls: crate::tls::AgentTlsFiles,
    pub pg_bindir: Option<PathBuf>,
    pub superuser_password_file: PathBuf,
    pub replication_password_file: PathBuf,
    pub app_password_file: PathBuf,
    pub lease_file: PathBuf,
    pub lease_backend: LeaseBackend,
    pub lease_duration_ms: u64,
    pub allow_networks: Vec<String>,
}

impl AgentConfig {
    /// The configuration of `member` of `cluster` placed by a runtime: the one place the spec
    /// becomes an agent's configuration, for both runtimes.
    pub fn for_member(
        cluster: &str,
        member: &str,
        spec: &crate::api::PgReplicaClusterSpec,
        at: Placement,
    ) -> AgentConfig {
        AgentConfig {
            cluster: cluster.to_string(),
            member: member.to_string(),
            member_dir: at.member_dir,
            listen_host: at.listen_host,
            port: at.port,
            http: at.http,
            tls: at.tls,
            pg_bindir: at.pg_bindir,
            run_as: None,
            superuser_password_file: at.superuser_password_file,
            replication_password_file: at.replication_password_file,
            lease_file: at.lease_file,
            lease_backend: at.lease_backend,
            lease_duration_ms: at.lease_duration_ms,
            allow_networks: at.allow_networks,
            max_slot_wal_keep_size: default_slot_keep(),
            application: Some(ApplicationConfig {
                user: spec.application.user.clone(),
                database: spec.application.database.clone(),
                password_file: at.app_password_file,
            }),
        }
    }

    /// The configuration from an environment variable holding JSON (Kubernetes pods).
    pub fn from_env(var: &str) -> Result<AgentConfig, AgentError> {
        let text = std::env::var(var)
            .map_err(|_| AgentError::Config(format!("environment variable {var} is not set")))?;
        serde_json::from_str(&text).map_err(|e| AgentError::Config(format!("{var}: {e}")))
    }

    pub fn load(path: &Path) -> Result<AgentConfig, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|source| AgentError::Io {
            what: format!("read agent config {}", path.display()),
            source,
        })?;
        serde_json::from_str(&text)
            .map_err(|e| AgentError::Config(format!("{}: {e}", path.display())))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.member_dir.join("data")
    }

    pub fn desired_file(&self) -> PathBuf {
        self.member_dir.join("desired.json")
    }

    /// How to verify `member` when connecting to its PostgreSQL: its certificate, from the
    /// cluster CA, names it.
    pub fn member_tls(&self, member: &str) -> crate::postgres::PgTls {
        crate::postgres::PgTls {
            root_cert: self.tls.ca.clone(),
            server_name: crate::tls::agent_name(&self.cluster, member),
        }
    }

    /// libpq password file with the replication and superuser passwords, for every host.
    pub fn passfile(&self) -> PathBuf {
        self.member_dir.join("pgpass")
    }
}
