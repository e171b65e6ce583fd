//! What the tick needs from a runtime, and nothing more: a snapshot of the cluster as the runtime
//! knows it, and the few ways to act on a plan. The local runtime and the Kubernetes operator
//! each implement it once (`runtime::local::world`, `runtime::kube::world`).

use std::collections::BTreeMap;

use crate::api::{PgReplicaClusterSpec, PgReplicaClusterStatus};
use crate::plan::{Address, Observation, Plan, PlanEvent};

use super::reports::AgentAddress;

/// The cluster at one moment, as the runtime knows it. Reading it must not wait on anything
/// slow: on Kubernetes it comes from watch caches, plus one read of the Lease.
pub struct Snapshot {
    pub cluster: String,
    pub spec: PgReplicaClusterSpec,
    pub generation: i64,
    /// The status last recorded (the brain starts from it, then keeps its own).
    pub status: PgReplicaClusterStatus,
    /// Where each member's agent listens (or why it has no address yet).
    pub agents: BTreeMap<String, AgentAddress>,
    /// Where each member's PostgreSQL listens.
    pub addresses: BTreeMap<String, Address>,
    /// One read of the lease: its valid holder (`None` when released or expired), or why it
    /// could not be read.
    pub lease: Result<Option<String>, String>,
    pub lease_duration_ms: u64,
    /// A switchover asked for by a person.
    pub switchover_to: Option<String>,
    /// Members whose pod differs from the one the runtime would create now, and how.
    pub outdated: BTreeMap<String, String>,
    /// Members whose volume does not have the size the spec asks, and why.
    pub volumes: BTreeMap<String, crate::plan::VolumeNote>,
    /// A restart asked for by a person.
    pub restart: Option<crate::plan::RestartRequest>,
    /// A reload asked for by a person.
    pub reload: Option<crate::plan::RestartRequest>,
    /// Members whose agent the runtime started with the cluster moments ago and that may not
    /// listen yet: the brain plans nothing until each has answered once (the runtime ends the
    /// list after its startup grace). A cluster started again after a clean stop has a released
    /// lease and agents that refuse connections for their first moments: planned at once, that
    /// read as a lost primary.
    pub opening: Vec<String>,
    /// Unix milliseconds.
    pub now_ms: u64,
}

/// What the runtime has for the tick now.
pub enum Next {
    Tick(Box<Snapshot>),
    /// Nothing to do now (an invalid spec waits for a change).
    Idle,
    /// The cluster is gone: the loop ends.
    Gone,
}

/// One tick's outcome, for the runtime to record.
pub struct Outcome<'a> {
    pub snapshot: &'a Snapshot,
    pub plan: &'a Plan,
    pub observations: &'a BTreeMap<String, Observation>,
    /// The plan's events and the tick's own (fences).
    pub events: &'a [PlanEvent],
}

#[allow(async_fn_in_trait)]
pub trait World {
    async fn snapshot(&mut self) -> Next;
    /// Fence a member from outside its agent; what was done, or `None` when nothing could be.
    async fn fence(&mut self, member: &str, why: &str) -> Option<String>;
    /// Point the endpoints where the plan says, at once.
    async fn route(&mut self, plan: &Plan);
    /// The switchover request was taken or refused.
    async fn forget_switchover(&mut self);
    /// Replace a member's pod (its rollout turn for a changed pod template).
    async fn recreate(&mut self, member: &str);
    /// Status, events, metrics, progress.
    async fn record(&mut self, outcome: &Outcome<'_>);
}
