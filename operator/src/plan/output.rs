//! What the brain decides: desired states to hand to agents, endpoint routes, a new status and
//! the events worth telling a person about.

use std::collections::BTreeMap;

use crate::api::PgReplicaClusterStatus;
use crate::member::Desired;

/// Where the endpoints lead.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    /// The member that accepts writes now, if any.
    pub rw: Option<String>,
    /// Where reads go: standbys streaming without an apply delay, else the primary.
    pub ro: Vec<String>,
    /// Every ready standby, delayed or not.
    pub standbys: Vec<String>,
    /// No standby qualifies for reads: `ro` is the primary.
    pub ro_is_primary: bool,
    /// No member accepts writes, and the primary of record provably runs no server (its agent
    /// reports none, or fenced it with SIGKILL) or is shutting down because a switchover asked
    /// it to: an endpoint that cannot hold connections (a Kubernetes Service) may keep
    /// selecting it until another member takes over, so that the endpoint changes once, not
    /// twice; connections to it are refused meanwhile. Never set for a primary that cannot be
    /// seen or whose server hangs unasked: it might still accept writes.
    pub rw_keep: Option<String>,
}

/// Why something happened, as a machine-readable word (Kubernetes Event reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventReason {
    MemberCreated,
    Bootstrapping,
    Bootstrapped,
    PrimaryLost,
    FailoverStarted,
    FailoverBlocked,
    Promoted,
    SwitchoverStarted,
    SwitchoverRefused,
    FailbackStarted,
    Fenced,
    /// A first clone of a new member.
    Cloning,
    Recloning,
    Rejoined,
    /// A member restarts to apply settings that wait for a restart.
    Restarting,
    /// A new generation of the spec: what changed and what happens.
    SpecChanged,
}

impl EventReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            EventReason::MemberCreated => "MemberCreated",
            EventReason::Bootstrapping => "Bootstrapping",
            EventReason::Bootstrapped => "Bootstrapped",
            EventReason::PrimaryLost => "PrimaryLost",
            EventReason::FailoverStarted => "FailoverStarted",
            EventReason::FailoverBlocked => "FailoverBlocked",
            EventReason::Promoted => "Promoted",
            EventReason::SwitchoverStarted => "SwitchoverStarted",
            EventReason::SwitchoverRefused => "SwitchoverRefused",
            EventReason::FailbackStarted => "FailbackStarted",
            EventReason::Fenced => "Fenced",
            EventReason::Cloning => "Cloning",
            EventReason::Recloning => "Recloning",
            EventReason::Rejoined => "Rejoined",
            EventReason::Restarting => "Restarting",
            EventReason::SpecChanged => "SpecChanged",
        }
    }

    /// Warnings are what a person should look at.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            EventReason::PrimaryLost
                | EventReason::Fenced
                | EventReason::FailoverBlocked
                | EventReason::SwitchoverRefused
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanEvent {
    pub reason: EventReason,
    pub member: Option<String>,
    pub message: String,
}

/// The brain's decision for one moment.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The desired state of every member the brain has a wish for.
    pub desired: BTreeMap<String, Desired>,
    pub routes: Routes,
    pub status: PgReplicaClusterStatus,
    pub events: Vec<PlanEvent>,
    /// The switchover request was taken (or refused) and can be forgotten.
    pub switchover_consumed: bool,
    /// What the cluster waits for, if anything.
    pub waiting_for: Option<String>,
    /// Why the lost primary cannot be replaced, if it cannot.
    pub blocked: Option<String>,
    /// Members to fence from outside their agent (which does not answer), with the reason:
    /// locally the agent and its PostgreSQL are killed, on Kubernetes the pod is deleted at once.
    pub fence: Vec<(String, String)>,
    /// Members whose pod is replaced now to apply a changed pod template (their rollout turn).
    pub recreate: Vec<String>,
}

impl Plan {
    pub(crate) fn event(&mut self, reason: EventReason, member: Option<&str>, message: String) {
        self.events.push(PlanEvent {
            reason,
            member: member.map(String::from),
            message,
        });
    }
}
