//! What the operator reports: roles, replication state, conditions, the last failover.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a cluster. `phase` is for `kubectl get`; conditions carry the truth.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PgReplicaClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The member that accepts writes now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_primary: Option<String>,
    /// The member that should accept writes; differs from currentPrimary during a failover or switchover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_primary: Option<String>,
    /// PostgreSQL timeline of the current primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// Ready members over declared members, such as `3/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_members: Option<String>,
    /// One word per member, such as `a=primary b=sync c=async(3s)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The `spec.primary` the brain has acted on; a change is a request to switch over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_preferred_primary: Option<String>,
}

/// A one-word summary for `kubectl get`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Bootstrapping,
    Healthy,
    Degraded,
    FailingOver,
    Recovering,
    SwitchingOver,
    Blocked,
    Invalid,
}

/// Role a member plays now.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Role {
    Primary,
    Standby,
    Fenced,
    Cloning,
    Stopped,
    Unknown,
}

/// Per-member state as observed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub name: String,
    pub role: Role,
    pub ready: bool,
    /// `sync`, `async`, `potential` or `quorum` as the primary's pg_stat_replication says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_lsn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_lsn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lag_seconds: Option<f64>,
    /// Bytes of WAL the primary has written that this standby has not replayed yet (a delayed
    /// standby holds its delay's worth of writes here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lag_bytes: Option<u64>,
    /// Set while the member's replay is paused (`replayPaused`): the commit time of the last
    /// transaction it applied, which is what its data shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_at: Option<String>,
    /// Tables a paused member cannot read until it is resumed: a DROP, TRUNCATE or ALTER it
    /// began replaying holds their lock (copy the other tables out; see docs/mistakes.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frozen_locks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event: Option<String>,
    /// The member's agent stopped its server to keep it from accepting writes, and why
    /// (`DataDirectoryLost`, `LeaseNotRenewed`, `Unresponsive`); cleared when it runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced: Option<String>,
    /// Settings in effect only after a restart; the member restarts when its turn comes (one
    /// member at a time, the primary last, after a switchover).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_restart: Vec<String>,
    /// When the member's PostgreSQL server was started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the member's PostgreSQL server last read its configuration (RFC 3339): its start,
    /// or the last reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reloaded_at: Option<String>,
}

/// The conditions pgreplica sets (`Condition::type_` is their name; the CRD keeps a string so
/// that readers of other versions are not refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// Every member is ready and no handover runs.
    Ready,
    /// A member accepts writes.
    Available,
    /// Some member is not ready.
    Degraded,
    /// The lost primary cannot be replaced safely.
    FailoverBlocked,
    /// The lease store can be read.
    LeaseReadable,
    /// The spec passes validation.
    SpecValid,
    /// Every member's volume has the size the spec asks (Kubernetes; set once a volume differs).
    VolumesMatchSpec,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Available => "Available",
            ConditionType::Degraded => "Degraded",
            ConditionType::FailoverBlocked => "FailoverBlocked",
            ConditionType::LeaseReadable => "LeaseReadable",
            ConditionType::SpecValid => "SpecValid",
            ConditionType::VolumesMatchSpec => "VolumesMatchSpec",
        }
    }
}

impl Condition {
    pub fn is(&self, type_: ConditionType) -> bool {
        self.type_ == type_.as_str()
    }

    pub fn is_true(&self, type_: ConditionType) -> bool {
        self.is(type_) && self.status == "True"
    }
}

/// A standard condition; `type` is the list-map key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Why the primary moved.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum HandoverKind {
    /// The primary was lost.
    Failover,
    /// A person asked, or spec.primary changed.
    Switchover,
    /// Automatic return to the preferred primary.
    Failback,
}

/// The last failover or switchover.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<HandoverKind>,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}
