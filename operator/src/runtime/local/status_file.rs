//! `status.json`: what the brain last saw and decided, for `local status` and tools.

use serde::{Deserialize, Serialize};

use crate::api::{Condition, FailoverRecord, MemberSpec, MemberStatus, PgReplicaClusterStatus};

use super::error::LocalError;
use super::layout::{write_atomic, Layout};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    pub rw: String,
    pub ro: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalMember {
    pub name: String,
    pub role: String,
    pub ready: bool,
    pub port: u16,
    pub data_dir: String,
    pub replication: String,
    pub apply_delay: Option<String>,
    pub sync_state: Option<String>,
    pub replay_lag_seconds: Option<f64>,
    #[serde(default)]
    pub replay_lag_bytes: Option<u64>,
    /// Replay paused: what its data is from.
    #[serde(default)]
    pub frozen_at: Option<String>,
    pub timeline: Option<u32>,
    pub activity: String,
    pub last_event: Option<String>,
    pub last_error: Option<String>,
}

impl LocalMember {
    /// A row from the spec and the brain's status of one member.
    pub fn from_status(
        spec: &MemberSpec,
        status: Option<&MemberStatus>,
        port: u16,
        data_dir: String,
        activity: String,
    ) -> LocalMember {
        LocalMember {
            name: spec.name.clone(),
            role: status
                .map(|s| format!("{:?}", s.role).to_lowercase())
                .unwrap_or_else(|| "unknown".into()),
            ready: status.is_some_and(|s| s.ready),
            port,
            data_dir,
            replication: format!("{:?}", spec.replication),
            apply_delay: spec.apply_delay.clone(),
            sync_state: status.and_then(|s| s.sync_state.clone()),
            replay_lag_seconds: status.and_then(|s| s.replay_lag_seconds),
            replay_lag_bytes: status.and_then(|s| s.replay_lag_bytes),
            frozen_at: status.and_then(|s| s.frozen_at.clone()),
            timeline: status.and_then(|s| s.timeline),
            activity,
            last_event: status.and_then(|s| s.last_event.clone()),
            last_error: status.and_then(|s| s.last_error.clone()),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalEvent {
    pub at: String,
    pub reason: String,
    pub member: Option<String>,
    pub message: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalStatus {
    pub cluster: String,
    pub running: bool,
    pub phase: Option<String>,
    pub current_primary: Option<String>,
    pub target_primary: Option<String>,
    pub timeline: Option<u32>,
    pub ready_members: Option<String>,
    pub topology: Option<String>,
    pub waiting_for: Option<String>,
    pub conditions: Vec<Condition>,
    pub last_failover: Option<FailoverRecord>,
    pub endpoints: Endpoints,
    pub members: Vec<LocalMember>,
    pub events: Vec<LocalEvent>,
    pub updated_at: String,
    /// `spec.primary` and `spec.failback`, for the header (absent in files of older versions).
    #[serde(default)]
    pub preferred_primary: Option<String>,
    #[serde(default)]
    pub failback: Option<String>,
    /// The brain's full status (as the Kubernetes runtime would write it).
    pub status: PgReplicaClusterStatus,
}

impl LocalStatus {
    /// The table's view of a brain status: the copied fields come from `status` once, here.
    pub fn from_status(
        cluster: String,
        status: PgReplicaClusterStatus,
        endpoints: Endpoints,
        members: Vec<LocalMember>,
    ) -> LocalStatus {
        LocalStatus {
            cluster,
            running: true,
            phase: status.phase.map(|p| format!("{p:?}")),
            current_primary: status.current_primary.clone(),
            target_primary: status.target_primary.clone(),
            timeline: status.timeline,
            ready_members: status.ready_members.clone(),
            topology: status.topology.clone(),
            waiting_for: None,
            conditions: status.conditions.clone(),
            last_failover: status.last_failover.clone(),
            endpoints,
            members,
            events: Vec::new(),
            updated_at: String::new(),
            preferred_primary: None,
            failback: None,
            status,
        }
    }

    /// With the spec's preferred primary and failback mode, for the header.
    pub fn with_spec(mut self, spec: &crate::api::PgReplicaClusterSpec) -> LocalStatus {
        self.preferred_primary = Some(spec.primary.clone());
        self.failback = Some(format!("{:?}", spec.failback));
        self
    }

    pub fn load(layout: &Layout) -> Result<Option<LocalStatus>, LocalError> {
        match std::fs::read_to_string(layout.status_file()) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| LocalError::Invalid(format!("status.json is damaged: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LocalError::io("read status.json")(e)),
        }
    }

    pub fn save(&self, layout: &Layout) -> Result<(), LocalError> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| LocalError::Failed(format!("encode status: {e}")))?;
        write_atomic(&layout.status_file(), &bytes)
    }

    pub fn is_ready(&self) -> bool {
        self.conditions
            .iter()
            .any(|c| c.is_true(crate::api::ConditionType::Ready))
    }
}
