//! Who is primary: bootstrap, steady state, failover and switchover. The handshake lives in
//! status (`currentPrimary` vs `targetPrimary`), so every step is idempotent and a restarted brain
//! continues where it was.

use crate::api::{Failback, FailoverRecord, HandoverKind, Replication};
use crate::member::{DataHealth, MemberReport};

use super::candidates;
use super::input::Input;
use super::output::{EventReason, Plan};
use super::report::rfc3339;
use super::rollout;
use super::sever;
use super::topology::{followers, primary_desired, standby_desired, stopped};

/// No primary yet: bootstrap on the preferred member (or adopt one that already runs).
pub fn bootstrap(input: &Input<'_>, plan: &mut Plan) {
    let running: Vec<&MemberReport> = input
        .spec
        .members
        .iter()
        .filter_map(|m| input.report(&m.name))
        .filter(|r| r.is_running_primary() && r.holds_lease)
        .collect();
    if let [only] = running.as_slice() {
        let name = only.member.clone();
        plan.status.current_primary = Some(name.clone());
        plan.status.target_primary = Some(name.clone());
        plan.status.observed_preferred_primary = Some(input.spec.primary.clone());
        plan.event(
            EventReason::Bootstrapped,
            Some(&name),
            format!("{name} is the primary"),
        );
        steady(input, &name, plan);
        return;
    }
    let preferred = input.spec.primary.clone();
    if plan.status.target_primary.as_deref() != Some(preferred.as_str()) {
        plan.event(
            EventReason::Bootstrapping,
            Some(&preferred),
            format!("bootstrapping the cluster on the preferred primary {preferred}"),
        );
    }
    plan.status.target_primary = Some(preferred.clone());
    plan.desired.insert(
        preferred.clone(),
        primary_desired(
            input,
            &preferred,
            true,
            format!("bootstrap the cluster on the preferred primary {preferred}"),
        ),
    );
    plan.waiting_for = Some(format!("{preferred} to bootstrap"));
}

/// How the current primary is doing.
enum Health {
    Healthy,
    Lost(String),
    Waiting(String),
}

fn primary_health(input: &Input<'_>, current: &str) -> Health {
    let lease_held = input.lease.holder.as_deref() == Some(current);
    match input.report(current) {
        Some(r) => {
            if let Some(reason) = r.data_lost() {
                return Health::Lost(format!("{current} lost its data directory: {reason}"));
            }
            if r.is_running_primary() {
                return Health::Healthy;
            }
            match &r.data {
                DataHealth::Missing => {
                    return Health::Lost(format!("{current} has no data directory"));
                }
                DataHealth::Invalid { reason } => {
                    return Health::Lost(format!("{current} has unusable data: {reason}"));
                }
                _ => {}
            }
            if lease_held {
                Health::Waiting(format!(
                    "{current}'s PostgreSQL is not running ({}); it still holds the lease",
                    r.activity
                ))
            } else {
                Health::Lost(format!(
                    "{current}'s PostgreSQL is not running as primary ({}) and its lease is free",
                    r.activity
                ))
            }
        }
        None => {
            let why = input.unknown_why(current).unwrap_or("unknown");
            if lease_held {
                Health::Waiting(format!(
                    "{current} is unreachable ({why}); its lease is still valid"
                ))
            } else {
                Health::Lost(format!(
                    "{current} is unreachable ({why}) and its lease expired"
                ))
            }
        }
    }
}

/// A primary exists (or existed): keep it, replace it, or move it.
pub fn steer(input: &Input<'_>, current: &str, plan: &mut Plan) {
    let target = plan
        .status
        .target_primary
        .clone()
        .unwrap_or_else(|| current.to_string());
    if target != current {
        handover(input, current, &target, plan);
        return;
    }
    match primary_health(input, current) {
        Health::Healthy => {
            let moved = move_trigger(input, current, plan)
                .or_else(|| rollout::primary_move(input, current));
            if let Some((to, reason, why)) = moved {
                start_handover(input, current, &to, reason, why, plan);
                handover(input, current, &to, plan);
            } else {
                steady(input, current, plan);
                rollout::restarts(input, current, plan);
            }
        }
        Health::Waiting(why) => {
            // The primary cannot be seen properly (postgres restarting, queries failing, agent
            // unreachable) but may still accept writes: its desired state must not change now —
            // sync names computed from a broken report would let it acknowledge commits that no
            // standby has.
            plan.waiting_for = Some(why);
            followers(input, plan, current, &[current]);
        }
        Health::Lost(why) => match candidates::choose(input, current) {
            Ok(to) => {
                plan.event(EventReason::PrimaryLost, Some(current), why.clone());
                start_handover(input, current, &to, EventReason::FailoverStarted, why, plan);
                handover(input, current, &target_of(plan, current), plan);
            }
            Err(blocked) => {
                let already = plan.status.conditions.iter().any(|c| {
                    c.is_true(crate::api::ConditionType::FailoverBlocked) && c.message == blocked
                });
                if !already {
                    plan.event(EventReason::PrimaryLost, Some(current), why.clone());
                    plan.event(EventReason::FailoverBlocked, Some(current), blocked.clone());
                }
                plan.blocked = Some(blocked);
                plan.fence = sever::to_fence(input, current, None);
                if input.report(current).is_some() {
                    plan.desired
                        .insert(current.to_string(), stopped(format!("fenced: {why}")));
                }
                followers(input, plan, current, &[current]);
            }
        },
    }
}

fn target_of(plan: &Plan, current: &str) -> String {
    plan.status
        .target_primary
        .clone()
        .unwrap_or_else(|| current.to_string())
}

/// Record the start of a failover or switchover in status (the handshake).
fn start_handover(
    input: &Input<'_>,
    from: &str,
    to: &str,
    reason: EventReason,
    why: String,
    plan: &mut Plan,
) {
    plan.status.target_primary = Some(to.to_string());
    let kind = match reason {
        EventReason::FailoverStarted => HandoverKind::Failover,
        EventReason::FailbackStarted => HandoverKind::Failback,
        _ => HandoverKind::Switchover,
    };
    plan.status.last_failover = Some(FailoverRecord {
        kind: Some(kind),
        from: from.to_string(),
        to: to.to_string(),
        reason: why.clone(),
        started_at: rfc3339(input.now_ms),
        finished_at: None,
    });
    plan.event(reason, Some(to), format!("{from} → {to}: {why}"));
}

/// Why the primary should move while it is healthy: a person asked, the preferred primary
/// changed, or automatic failback finds the preferred member caught up.
fn move_trigger(
    input: &Input<'_>,
    current: &str,
    plan: &mut Plan,
) -> Option<(String, EventReason, String)> {
    if let Some(to) = input.switchover_to {
        plan.switchover_consumed = true;
        let automatic_elsewhere =
            input.spec.failback == Failback::Automatic && to != input.spec.primary;
        let ready = if input.spec.member(to).is_none() {
            Err(format!(
                "{to} is not a member of this cluster (members: {})",
                input.spec.member_names().join(", ")
            ))
        } else if automatic_elsewhere {
            Err(format!(
                "failback is Automatic, so the primary would move straight back to {}: change spec.primary to {to}, or set failback: Manual",
                input.spec.primary
            ))
        } else {
            switch_target_ready(input, current, to)
        };
        return match ready {
            Ok(()) => Some((
                to.to_string(),
                EventReason::SwitchoverStarted,
                format!("switchover to {to} requested"),
            )),
            Err(why) => {
                plan.event(
                    EventReason::SwitchoverRefused,
                    Some(to),
                    format!("switchover to {to} refused: {why}"),
                );
                None
            }
        };
    }
    let preferred = input.spec.primary.as_str();
    if preferred == current {
        plan.status.observed_preferred_primary = Some(preferred.to_string());
        return None;
    }
    // a primary removed from the spec keeps running until a clean switchover has moved it
    // (stopping it first would be a failover, and could lose what only it acknowledged)
    let removed = input.spec.member(current).is_none();
    let changed = plan.status.observed_preferred_primary.as_deref() != Some(preferred);
    if input.spec.failback != Failback::Automatic && !changed && !removed {
        return None;
    }
    // a preferred member waiting for its restart turn takes it first (as a standby)
    if switch_target_ready(input, current, preferred).is_ok()
        && rollout::pending(input, preferred).is_none()
        && caught_up(input, current, preferred)
        && (changed || removed || others_settled(input, current, preferred))
    {
        if removed {
            return Some((
                preferred.to_string(),
                EventReason::SwitchoverStarted,
                format!("{current} was removed from the spec: the primary moves to {preferred} before {current} stops"),
            ));
        }
        let why = if changed {
            format!("spec.primary is now {preferred}")
        } else {
            format!(
                "failback to the preferred primary {preferred}, which is streaming and caught up"
            )
        };
        return Some((preferred.to_string(), EventReason::FailbackStarted, why));
    }
    None
}

pub(super) fn switch_target_ready(
    input: &Input<'_>,
    current: &str,
    to: &str,
) -> Result<(), String> {
    if to == current {
        return Err(format!("{to} is already the primary"));
    }
    match input.spec.member(to) {
        None => return Err(format!("{to} is not a member of this cluster")),
        Some(m) if m.replay_paused => {
            return Err(format!(
                "{to}'s replay is paused, so it does not hold the latest commits: resume it first (pgreplica local resume-replay {to}, kubectl pgrc resume-replay NAME {to})"
            ))
        }
        Some(_) => {}
    }
    match input.report(to) {
        None => Err(format!("{to} is not reachable")),
        Some(r) if r.data != DataHealth::Healthy => Err(format!("{to} has no healthy data")),
        Some(r) if !r.is_streaming_from(current) => Err(format!(
            "{to} is not streaming from {current} yet ({})",
            r.activity
        )),
        Some(_) => Ok(()),
    }
}

/// Every other reachable member streams from the current primary on its timeline: moving the
/// primary while one is still catching up would make it chase WAL that the new primary may not
/// have. A member that applies WAL late streams the end of the old timeline, then waits until
/// its replay gets there before it streams the new one: until then it has none of the current
/// timeline's WAL, and a target cloned after the switch has not either.
fn others_settled(input: &Input<'_>, current: &str, preferred: &str) -> bool {
    let timeline = input.report(current).and_then(|r| r.timeline);
    input
        .spec
        .members
        .iter()
        // a paused member stays behind on purpose, on whatever timeline it was paused: it
        // follows once resumed, and the new primary has every bit of WAL it will ask for
        .filter(|m| m.name != current && m.name != preferred && !m.replay_paused)
        .all(|m| match input.report(&m.name) {
            None => true,
            Some(r) => {
                (r.is_streaming_from(current) && (timeline.is_none() || r.timeline == timeline))
                    || r.data_lost().is_some()
            }
        })
}

/// The preferred member is in sync (or, if Async, close behind) with the primary.
pub(super) fn caught_up(input: &Input<'_>, current: &str, preferred: &str) -> bool {
    let Some(view) = input
        .report(current)
        .and_then(|r| r.standbys.iter().find(|s| s.name == preferred))
    else {
        return false;
    };
    let lag_ok = view.replay_lag_seconds.is_none_or(|lag| lag < 1.0);
    let mode = input.spec.member(preferred).map(|m| m.replication);
    let sync_ok =
        view.sync_state == crate::member::SyncState::Sync || mode == Some(Replication::Async);
    view.state == "streaming" && sync_ok && lag_ok
}

/// `current` is being replaced by `target`: stop the old one cleanly (switchover) or fence it
/// (failover), promote the target once it is safe, and finish when it runs as primary.
fn handover(input: &Input<'_>, current: &str, target: &str, plan: &mut Plan) {
    let old = input.report(current);
    let new = input.report(target);
    if new.is_some_and(|r| r.is_running_primary() && r.holds_lease) {
        finish_handover(input, current, target, plan);
        return;
    }
    if let Some(why) = target_failed(input, target) {
        plan.event(
            EventReason::FailoverBlocked,
            Some(target),
            format!("{target} cannot take over: {why}; choosing again"),
        );
        plan.status.target_primary = Some(current.to_string());
        plan.waiting_for = Some(format!("a new candidate to replace {current}"));
        return;
    }
    if old.is_some_and(|r| r.is_running_primary()) {
        plan.desired.insert(
            current.to_string(),
            stopped(format!(
                "switchover to {target}: fast shutdown so every WAL record reaches the standbys"
            )),
        );
        followers(input, plan, current, &[current]);
        plan.waiting_for = Some(format!("{current} to shut down cleanly"));
        return;
    }
    if super::report::planned_handover(&plan.status) && old.is_some_and(still_shutting_down) {
        // Its WAL senders send every record up to the shutdown checkpoint to the standbys still
        // connected, then exit. A standby pointed at the target before that misses the rest and
        // asks the target for WAL it may never have had (a target cloned after the last
        // timeline switch): every member keeps following the old primary until it is down.
        plan.desired.insert(
            current.to_string(),
            stopped(format!(
                "switchover to {target}: fast shutdown so every WAL record reaches the standbys"
            )),
        );
        followers(input, plan, current, &[current]);
        plan.waiting_for = Some(format!(
            "{current} to finish its clean shutdown (its standbys receive its last WAL)"
        ));
        return;
    }
    if old.is_some() {
        plan.desired.insert(
            current.to_string(),
            stopped(format!("fenced: {target} is taking over from {current}")),
        );
    }
    // Every other member streams from the target from now on (cascading until it is promoted):
    // none of them may go on confirming the old primary's commits.
    followers(input, plan, target, &[current, target]);
    let keep_following = |plan: &mut Plan, why: String| {
        if let Some(d) = standby_desired(input, target, current, format!("stream from {current}")) {
            plan.desired.insert(target.to_string(), d);
        }
        plan.waiting_for = Some(why);
    };
    plan.fence = sever::to_fence(input, current, Some(target));
    if let Some(why) = sever::not_yet_severed(input, current, target) {
        keep_following(plan, why);
        return;
    }
    // A clean shutdown is checked below (the target must have the shutdown checkpoint); after
    // a loss, the target must hold what any other synchronous member received.
    let clean = old.is_some_and(|r| r.shutdown_checkpoint.is_some());
    match sever::ahead_of_target(input, current, target) {
        _ if clean => {}
        sever::Ahead::No => {}
        sever::Ahead::Retarget(better, why) => {
            plan.event(
                EventReason::FailoverStarted,
                Some(&better),
                format!("{current} → {better}: {why}"),
            );
            plan.status.target_primary = Some(better.clone());
            if let Some(record) = plan.status.last_failover.as_mut() {
                if record.finished_at.is_none() {
                    record.to = better.clone();
                }
            }
            followers(input, plan, &better, &[current, &better]);
            if let Some(d) =
                standby_desired(input, &better, current, format!("stream from {current}"))
            {
                plan.desired.insert(better.clone(), d);
            }
            plan.waiting_for = Some(format!("{better} to take over from {current}"));
            return;
        }
        sever::Ahead::Wait(why) => {
            keep_following(plan, why);
            return;
        }
    }
    if let Some(checkpoint) = old.and_then(|r| r.shutdown_checkpoint) {
        let have = new
            .map(|r| r.received_lsn.max(r.replayed_lsn))
            .unwrap_or_default();
        if have.is_none_or(|lsn| lsn <= checkpoint) {
            keep_following(
                plan,
                format!("{target} to receive {current}'s shutdown checkpoint at {checkpoint}"),
            );
            return;
        }
    }
    if let Some(holder) = input.lease.holder.as_deref() {
        if holder != target {
            keep_following(
                plan,
                format!("the lease held by {holder} to be released or expire"),
            );
            return;
        }
    }
    plan.desired.insert(
        target.to_string(),
        primary_desired(
            input,
            target,
            false,
            format!("promote to replace {current}"),
        ),
    );
    plan.waiting_for = Some(format!("{target} to promote"));
}

/// A primary stopped for a switchover whose server process still runs (no shutdown checkpoint
/// reported yet), neither lost nor fenced: its WAL senders are still at work.
fn still_shutting_down(old: &MemberReport) -> bool {
    !old.running
        && old.server_process
        && old.shutdown_checkpoint.is_none()
        && old.fenced.is_none()
        && old.data == DataHealth::Healthy
}

/// The chosen target can no longer take over.
fn target_failed(input: &Input<'_>, target: &str) -> Option<String> {
    match input.report(target) {
        Some(r) => r.data_lost().map(|why| format!("it lost its data ({why})")),
        None => {
            let holder = input.lease.holder.as_deref();
            (holder != Some(target)).then(|| {
                format!(
                    "it is unreachable ({})",
                    input.unknown_why(target).unwrap_or("unknown")
                )
            })
        }
    }
}

fn finish_handover(input: &Input<'_>, old: &str, new: &str, plan: &mut Plan) {
    plan.status.current_primary = Some(new.to_string());
    plan.status.target_primary = Some(new.to_string());
    if input.spec.primary == new {
        plan.status.observed_preferred_primary = Some(new.to_string());
    }
    if let Some(record) = plan.status.last_failover.as_mut() {
        if record.to == new && record.finished_at.is_none() {
            record.finished_at = Some(rfc3339(input.now_ms));
        }
    }
    let timeline = input
        .report(new)
        .and_then(|r| r.timeline)
        .map(|t| format!(" on timeline {t}"))
        .unwrap_or_default();
    plan.event(
        EventReason::Promoted,
        Some(new),
        format!("{new} is the primary{timeline}; {old} will rejoin as its standby"),
    );
    steady(input, new, plan);
}

/// The primary is settled: it keeps sync names and slots, everyone else follows it.
pub fn steady(input: &Input<'_>, primary: &str, plan: &mut Plan) {
    plan.desired.insert(
        primary.to_string(),
        primary_desired(input, primary, false, format!("{primary} is the primary")),
    );
    followers(input, plan, primary, &[]);
}
