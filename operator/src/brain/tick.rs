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
use crate::member::Desired;
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
    handed: Handed,
}

/// A desired state handed to a member is not sent again for this long while its report does not
/// show it yet (a report taken just before the agent received it can arrive after the send); an
/// agent started again meanwhile, which has none, gets it after this.
const RESEND_AFTER_MS: u64 = 2_000;

/// What the brain last handed each member, and when (unix milliseconds).
#[derive(Default)]
struct Handed(BTreeMap<String, (Desired, u64)>);

impl Handed {
    /// `desired` is to be sent to `member`, whose report shows `shown`.
    fn due(&self, member: &str, desired: &Desired, shown: Option<&Desired>, now_ms: u64) -> bool {
        if shown.is_some_and(|d| d.same_action(desired)) {
            return false;
        }
        match self.0.get(member) {
            Some((sent, at)) if sent.same_action(desired) => {
                now_ms.saturating_sub(*at) >= RESEND_AFTER_MS
            }
            _ => true,
        }
    }
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
            handed: Handed::default(),
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
            hand_over(
                &self.agents,
                &mut self.handed,
                &snapshot,
                &observations,
                &decided
            ),
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
    handed: &mut Handed,
    snapshot: &Snapshot,
    observations: &BTreeMap<String, Observation>,
    decided: &Plan,
) {
    let now_ms = snapshot.now_ms;
    let sends = decided.desired.iter().filter_map(|(name, desired)| {
        let report = observations.get(name)?.report()?;
        if !handed.due(name, desired, report.desired.as_ref(), now_ms) {
            return None;
        }
        let target = snapshot.agents.get(name)?.as_ref().ok()?;
        Some(async move {
            info!(member = %name, what = %desired.summary(), reason = %desired.reason, "desired state");
            match agents
                .send_json(target, "PUT", "/desired", desired, AGENT_TIMEOUT)
                .await
            {
                Ok(_) => Some((name.clone(), desired.clone())),
                Err(e) => {
                    warn!(member = %name, error = %e, "could not hand over the desired state");
                    None
                }
            }
        })
    });
    for (name, desired) in join_all(sends).await.into_iter().flatten() {
        handed.0.insert(name, (desired, now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::{DesiredRole, MemberReport};

    #[test]
    fn a_desired_state_is_handed_once_until_the_report_shows_it() {
        let primary = Desired::new(DesiredRole::Stopped, "stop".into());
        let other = Desired {
            restart: true,
            ..primary.clone()
        };
        let mut handed = Handed::default();
        handed.0.insert("a".into(), (primary.clone(), 1_000));
        // (what, desired, report shows, now, due)
        let table = [
            ("shown: never", &primary, Some(&primary), 9_000, false),
            ("sent, not shown yet", &primary, None, 1_500, false),
            (
                "sent, an older one shown",
                &primary,
                Some(&other),
                2_900,
                false,
            ),
            (
                "sent long ago, still not shown",
                &primary,
                None,
                3_000,
                true,
            ),
            ("another one than sent", &other, None, 1_100, true),
        ];
        for (what, desired, shown, now, want) in table {
            assert_eq!(handed.due("a", desired, shown, now), want, "{what}");
        }
        assert!(Handed::default().due("a", &primary, None, 0), "never sent");
    }

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
