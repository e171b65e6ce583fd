//! The brain's tick, the same for every runtime, in a fixed order: snapshot → members' reports →
//! fence the silent → `plan` → fence what the plan says → hand over desired states and route (at
//! the same time) → record. Nothing slow comes before the handover.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::join_all;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::api::PgReplicaClusterStatus;
use crate::net::http::AgentClient;
use crate::plan::{
    plan, EventReason, Input, LeaseView, Observation, Plan, PlanEvent, Silence, SilencePolicy,
};

use super::reports::Reports;
use super::timing::{AGENT_TIMEOUT, TICK};
use super::world::{Next, Outcome, Snapshot, World};

/// One cluster's brain: what it remembers between ticks.
pub struct Brain {
    agents: AgentClient,
    reports: Reports,
    status: Option<PgReplicaClusterStatus>,
    lease_unreadable_since: Option<u64>,
    silence: Silence,
    /// Fence agents that stay silent (the local runtime; Kubernetes has liveness probes).
    fence_silent: Option<SilencePolicy>,
}

impl Brain {
    pub fn new(agents: AgentClient, fence_silent: Option<SilencePolicy>) -> Brain {
        Brain {
            reports: Reports::new(agents.clone()),
            agents,
            status: None,
            lease_unreadable_since: None,
            silence: Silence::default(),
            fence_silent,
        }
    }

    /// Notified when a member's report brings news.
    pub fn news(&self) -> Arc<Notify> {
        self.reports.changed()
    }

    /// Tick until `stop`, or until the world says the cluster is gone: after every tick, wait
    /// for a member's news, a `wake` from the runtime, or one [`TICK`].
    pub async fn run<W: World>(mut self, world: &mut W, wake: Arc<Notify>, stop: impl Future) {
        let news = self.news();
        tokio::pin!(stop);
        loop {
            if !self.tick(world).await {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = news.notified() => {}
                _ = wake.notified() => {}
                _ = &mut stop => return,
            }
        }
    }

    /// One tick; false when the cluster is gone.
    pub async fn tick<W: World>(&mut self, world: &mut W) -> bool {
        let snapshot = match world.snapshot().await {
            Next::Tick(s) => s,
            Next::Idle => return true,
            Next::Gone => return false,
        };
        self.reports.follow(&snapshot.agents);
        if self.reports.first_answers_pending() {
            // the first answers come within one long poll's timeout; their arrival wakes us
            return true;
        }
        let observations = self.reports.observations();
        if opening(&snapshot.opening, &observations) {
            // the cluster is starting: its agents' first answers come within the grace
            return true;
        }
        let mut fenced = Vec::new();
        if let Some(policy) = self.fence_silent {
            for member in self.silence.update(&observations, policy, snapshot.now_ms) {
                let why = format!("the agent did not answer for {} ms", policy.after_ms);
                fence(world, &member, &why, &mut fenced).await;
            }
        }
        let status = self.status.get_or_insert_with(|| snapshot.status.clone());
        let was_unreadable = self.lease_unreadable_since.is_some();
        let lease = LeaseView::counted(
            snapshot.lease.clone(),
            &mut self.lease_unreadable_since,
            status.current_primary.as_deref(),
            snapshot.lease_duration_ms,
            snapshot.now_ms,
        );
        if let (Some(why), false) = (&lease.unreadable, was_unreadable) {
            warn!(cluster = %snapshot.cluster, error = %why, "cannot read the lease: it counts as held by the primary of record for one lease duration");
        }
        let decided = plan(&Input {
            cluster: &snapshot.cluster,
            spec: &snapshot.spec,
            generation: snapshot.generation,
            status,
            members: &observations,
            addresses: &snapshot.addresses,
            lease: &lease,
            switchover_to: snapshot.switchover_to.as_deref(),
            outdated: &snapshot.outdated,
            volumes: &snapshot.volumes,
            restart: snapshot.restart.as_ref(),
            reload: snapshot.reload.as_ref(),
            now_ms: snapshot.now_ms,
        });
        for (member, why) in &decided.fence {
            fence(world, member, why, &mut fenced).await;
        }
        // routes follow reports, not handovers: an agent slow to take its desired state never
        // holds the endpoints back
        tokio::join!(
            hand_over(&self.agents, &snapshot, &observations, &decided),
            world.route(&decided)
        );
        if decided.switchover_consumed {
            world.forget_switchover().await;
        }
        for member in &decided.recreate {
            world.recreate(member).await;
        }
        let mut events = decided.events.clone();
        events.extend(fenced);
        world
            .record(&Outcome {
                snapshot: &snapshot,
                plan: &decided,
                observations: &observations,
                events: &events,
            })
            .await;
        self.status = Some(decided.status);
        true
    }
}

/// A member of `opening` (its agent started with the cluster) has not answered yet.
fn opening(opening: &[String], observations: &BTreeMap<String, Observation>) -> bool {
    opening.iter().any(|m| {
        matches!(
            observations.get(m),
            None | Some(Observation::Unknown { .. })
        )
    })
}

async fn fence<W: World>(world: &mut W, member: &str, why: &str, fenced: &mut Vec<PlanEvent>) {
    if let Some(what) = world.fence(member, why).await {
        // told once, as the event (the world has logged how it fenced)
        let message = format!("{why}: fenced ({what})");
        fenced.push(PlanEvent {
            reason: EventReason::Fenced,
            member: Some(member.to_string()),
            message,
        });
    }
}

/// Hand each reachable agent its desired state when it differs from what the agent has.
async fn hand_over(
    agents: &AgentClient,
    snapshot: &Snapshot,
    observations: &BTreeMap<String, Observation>,
    decided: &Plan,
) {
    let sends = decided.desired.iter().filter_map(|(name, desired)| {
        let report = observations.get(name)?.report()?;
        if report.desired.as_ref().is_some_and(|d| d.same_action(desired)) {
            return None;
        }
        let target = snapshot.agents.get(name)?.as_ref().ok()?;
        Some(async move {
            info!(member = %name, what = %desired.summary(), reason = %desired.reason, "desired state");
            if let Err(e) = agents
                .send_json(target, "PUT", "/desired", desired, AGENT_TIMEOUT)
                .await
            {
                warn!(member = %name, error = %e, "could not hand over the desired state");
            }
        })
    });
    join_all(sends).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::MemberReport;

    #[test]
    fn a_starting_cluster_waits_for_its_agents_first_answers() {
        let unknown = || Observation::Unknown {
            why: "connection refused".into(),
        };
        let reported = || Observation::Reported(Box::new(MemberReport::new("a")));
        // (opening, a's observation, wait)
        let table = [
            (vec![], Some(unknown()), false),
            (vec!["a"], Some(unknown()), true),
            (vec!["a"], None, true),
            (vec!["a"], Some(reported()), false),
            (vec!["b"], Some(reported()), true),
        ];
        for (open, a, want) in table {
            let open: Vec<String> = open.into_iter().map(String::from).collect();
            let observations: BTreeMap<String, Observation> =
                a.into_iter().map(|o| ("a".to_string(), o)).collect();
            assert_eq!(opening(&open, &observations), want, "{open:?}");
        }
    }
}
