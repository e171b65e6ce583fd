//! The spec users write: one object names every member and how it replicates.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::PgReplicaClusterStatus;

/// Default PostgreSQL image: the official multi-arch image of the major version and Debian release
/// every test runs (PostgreSQL 15, bookworm, uid 999); the agent binary is injected.
pub const DEFAULT_POSTGRES_IMAGE: &str = "postgres:15-bookworm";
/// Default volume size for a member that does not say.
pub const DEFAULT_STORAGE_SIZE: &str = "1Gi";
/// Most members one cluster may have (keeps CEL rule cost bounded, fits small clusters).
pub const MAX_MEMBERS: usize = 9;

/// A PostgreSQL streaming-replication cluster whose every member is declared.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pgreplica.io",
    version = "v1alpha1",
    kind = "PgReplicaCluster",
    namespaced,
    shortname = "pgrc",
    category = "all",
    doc = "A PostgreSQL streaming-replication cluster whose every member is declared: which member is primary, which standbys are synchronous, which are asynchronous with an apply delay, and where each one runs. pgreplica bootstraps, clones, fails over and fails back to match it.",
    status = "PgReplicaClusterStatus",
    printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".status.currentPrimary","description":"Member that accepts writes"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.readyMembers","description":"Ready members / declared members"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Topology","type":"string","jsonPath":".status.topology","priority":1,"description":"Role and replication of every member"}"#,
    printcolumn = r#"{"name":"Timeline","type":"integer","jsonPath":".status.timeline","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PgReplicaClusterSpec {
    /// PostgreSQL image and server parameters shared by every member.
    #[serde(default)]
    pub postgres: PostgresSpec,
    /// The preferred primary: bootstrap happens here, and failback returns here.
    pub primary: String,
    /// Automatic: move the primary back to `primary` once it is a healthy, caught-up standby.
    /// Manual: stay on the failover target until a switchover is requested.
    #[serde(default)]
    pub failback: Failback,
    /// Required: commits wait while no synchronous standby streams.
    /// Preferred: fall back to asynchronous replication while none streams.
    #[serde(default)]
    pub durability: Durability,
    /// Retain (default): member volumes outlive the cluster object, so deleting it never deletes
    /// data. Delete: volumes are garbage-collected with the cluster.
    #[serde(default)]
    pub volume_reclaim: VolumeReclaim,
    /// Every member of the cluster, in any order.
    #[schemars(length(min = 1, max = 9))]
    pub members: Vec<MemberSpec>,
    /// The application's role and database, created on the primary; its credentials are in the
    /// Secret `<cluster>-app` (Kubernetes) or `pgreplica local env --app` (local runtime).
    #[serde(default)]
    pub application: ApplicationSpec,
    /// Who may connect to PostgreSQL besides the members (Kubernetes NetworkPolicy peers).
    /// Default: every pod in the cluster's namespace. Agent ports are open to the operator only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<Vec<NetworkPolicyPeer>>,
}

/// The role and database an application uses (never the superuser).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    /// Login role owning the database (default `app`).
    #[serde(default = "default_app_name")]
    #[schemars(length(min = 1, max = 63))]
    pub user: String,
    /// Database created for the application (default `app`).
    #[serde(default = "default_app_name")]
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
}

fn default_app_name() -> String {
    "app".to_string()
}

impl Default for ApplicationSpec {
    fn default() -> Self {
        ApplicationSpec {
            user: default_app_name(),
            database: default_app_name(),
        }
    }
}

/// PostgreSQL settings shared by every member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Container image with PostgreSQL server programs (Kubernetes runtime only).
    #[serde(default = "default_image")]
    pub image: String,
    /// Extra server parameters (postgresql.conf). Parameters pgreplica manages are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 200))]
    pub parameters: BTreeMap<String, String>,
}

fn default_image() -> String {
    DEFAULT_POSTGRES_IMAGE.to_string()
}

impl Default for PostgresSpec {
    fn default() -> Self {
        Self {
            image: default_image(),
            parameters: BTreeMap::new(),
        }
    }
}

/// How a member replicates whenever it is a standby.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Replication {
    /// Commits on the primary wait for this member; a failover candidate.
    Sync,
    /// Streams without holding commits; may have an apply delay.
    Async,
}

/// Whether the primary moves back to the preferred member by itself.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Failback {
    #[default]
    Automatic,
    Manual,
}

/// What commits do while no synchronous standby streams.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Durability {
    Required,
    #[default]
    Preferred,
}

/// What happens to member volumes when the cluster object is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum VolumeReclaim {
    #[default]
    Retain,
    Delete,
}

/// One member: a PostgreSQL server with its own data directory, on its own node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberSpec {
    /// DNS label naming the member; objects are named `<cluster>-<member>`.
    #[schemars(length(min = 1, max = 20))]
    pub name: String,
    /// Sync or Async, used whenever this member is a standby.
    pub replication: Replication,
    /// WAL apply delay such as `3s`, `500ms` or `1min` (Async members only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub apply_delay: Option<String>,
    /// May failover promote this member? Defaults to true for Sync, false for Async members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotable: Option<bool>,
    /// Stop applying WAL on this standby, keeping its data as it is now, until set back to
    /// false (`pgreplica local pause-replay` / `kubectl pgrc pause-replay` set it). It still
    /// receives WAL; it is never promoted and serves no reads through `-ro` or `-r` while
    /// paused. Async members only: a delayed member caught before it applies a mistake.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay_paused: bool,
    /// Node labels the member's pod must match (Kubernetes runtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Pod affinity rules for this member (Kubernetes runtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Pod tolerations for this member (Kubernetes runtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// CPU and memory for this member's PostgreSQL container (Kubernetes runtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The member's volume (Kubernetes runtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
}

/// Persistent volume claim settings of a member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size, such as `10Gi`.
    #[serde(default = "default_storage_size")]
    pub size: String,
    /// Storage class; the cluster default when absent (k3s: local-path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> String {
    DEFAULT_STORAGE_SIZE.to_string()
}

impl MemberSpec {
    /// Parsed apply delay in milliseconds; zero when absent or unparsable (validation reports that).
    pub fn apply_delay_ms(&self) -> u64 {
        self.apply_delay
            .as_deref()
            .and_then(|d| super::duration::parse_duration_ms(d).ok())
            .unwrap_or(0)
    }

    /// May failover pick this member? Sync members may, Async members only when they say
    /// `promotable: true` (accepting that commits they have not received are lost).
    pub fn is_promotable(&self) -> bool {
        self.promotable
            .unwrap_or(self.replication == Replication::Sync)
    }
}

impl PgReplicaClusterSpec {
    /// The member with this name.
    pub fn member(&self, name: &str) -> Option<&MemberSpec> {
        self.members.iter().find(|m| m.name == name)
    }

    /// Every member's name, in spec order.
    pub fn member_names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }
}
