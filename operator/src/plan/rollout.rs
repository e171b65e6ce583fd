//! Settings that PostgreSQL applies only at a restart (`pending_restart` after a reload), rolled
//! out one member at a time while every other member is ready: standbys first (asynchronous ones
//! before synchronous ones, then in spec order); the primary last, moved away by a clean
//! switchover to a caught-up synchronous standby or the preferred member — it restarts as it
//! rejoins as a standby, and automatic failback brings it back. A cluster of one member restarts
//! its primary in place: nobody could take over. Turns are given only once every member has read
//! the spec's parameters, so the order is the declared one and a standby that has not reported
//! its pending settings yet is never left behind the primary.

use crate::api::{MemberSpec, Replication};
use crate::member::DesiredRole;

use super::handover::{caught_up, switch_target_ready};
use super::input::Input;
use super::output::{EventReason, Plan};

/// What `member` waits to restart for, if anything: settings that wait for a restart, or a pod
/// that differs from the one the runtime would create now.
pub fn pending(input: &Input<'_>, member: &str) -> Option<String> {
    let settings = input
        .report(member)
        .filter(|r| !r.pending_restart.is_empty())
        .map(|r| r.pending_restart.join(", "));
    let pod = input.outdated.get(member).cloned();
    let asked = input
        .restart
        .zip(input.report(member))
        .filter(|(request, r)| r.running && request.wants(member, r.started_at_ms))
        .map(|_| "a requested restart".to_string());
    let reasons: Vec<String> = [settings, pod, asked].into_iter().flatten().collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// Every member's server has read the spec's parameters, so `pending_restart` is complete (a
/// member whose pod is to be replaced anyway counts: an agent of an earlier version may not say).
fn all_read(input: &Input<'_>) -> bool {
    let wanted = &input.spec.postgres.parameters;
    input.spec.members.iter().all(|m| {
        input.outdated.contains_key(&m.name)
            || input
                .report(&m.name)
                .is_some_and(|r| r.applied_parameters.as_ref() == Some(wanted))
    })
}

/// Every member but `except` is ready: the primary runs, every other streams from it. A member
/// whose replay is paused is left out: it is kept as it is, it takes no turn, and it is nobody's
/// fallback meanwhile.
fn others_ready(input: &Input<'_>, current: &str, except: &str) -> bool {
    input
        .spec
        .members
        .iter()
        .filter(|m| m.name != except && !m.replay_paused)
        .all(|m| ready(input, current, &m.name))
}

/// `member`'s replay is paused (`replayPaused`): it restarts for nothing until it is resumed.
fn paused(input: &Input<'_>, member: &str) -> bool {
    input.spec.member(member).is_some_and(|m| m.replay_paused)
}

/// The standby whose turn it is to restart.
fn next_standby<'a>(input: &Input<'a>, current: &str) -> Option<&'a MemberSpec> {
    let mut waiting: Vec<&MemberSpec> = input
        .spec
        .members
        .iter()
        .filter(|m| m.name != current && !m.replay_paused && pending(input, &m.name).is_some())
        .collect();
    waiting.sort_by_key(|m| m.replication == Replication::Sync);
    waiting.first().copied()
}

/// How a desired state allowed to restart says why (and how the next tick knows whose turn it is).
const REASON: &str = "restart to apply ";

/// The member given a turn by an earlier tick: its turn lasts while it still waits for its
/// restart (its agent may not have heard of it yet) and then until it is ready again.
enum Turn<'a> {
    Pending(&'a str, String),
    /// Restarted, not ready yet; with the reason its desired state keeps meanwhile.
    Recovering(&'a str, String),
}

fn turn_held<'a>(input: &Input<'a>, current: &str) -> Option<Turn<'a>> {
    input
        .status
        .members
        .iter()
        .filter(|m| {
            m.last_event
                .as_deref()
                .is_some_and(|e| e.starts_with(REASON))
                && !paused(input, &m.name)
        })
        .find_map(|m| match pending(input, &m.name) {
            Some(what) => Some(Turn::Pending(m.name.as_str(), what)),
            None if !ready(input, current, &m.name) => Some(Turn::Recovering(
                m.name.as_str(),
                m.last_event.clone().unwrap_or_default(),
            )),
            None => None,
        })
}

/// The member runs as the primary, or streams from it.
fn ready(input: &Input<'_>, current: &str, member: &str) -> bool {
    input.report(member).is_some_and(|r| {
        if member == current {
            r.is_running_primary()
        } else {
            r.is_streaming_from(current)
        }
    })
}

/// Steady state: let the member whose turn it is restart (the desired states are in `plan`).
pub fn restarts(input: &Input<'_>, current: &str, plan: &mut Plan) {
    match turn_held(input, current) {
        Some(Turn::Pending(member, what)) => {
            allow(input, member, &what, plan);
            return;
        }
        Some(Turn::Recovering(member, reason)) => {
            if let Some(d) = plan.desired.get_mut(member) {
                d.reason = reason;
            }
            plan.waiting_for
                .get_or_insert(format!("{member} to be ready again after its restart"));
            return;
        }
        None => {}
    }
    // the first turn once every member has said what it waits for: the order is then the
    // declared one, not the order in which reports arrived
    if !all_read(input) {
        return;
    }
    let (member, what) = match next_standby(input, current) {
        Some(m) => (m.name.as_str(), pending(input, &m.name).unwrap_or_default()),
        None if input.spec.members.len() == 1 => match pending(input, current) {
            Some(what) => (current, what),
            None => return,
        },
        None => {
            if let Some(what) = pending(input, current) {
                plan.waiting_for.get_or_insert(format!(
                    "a caught-up synchronous standby to take over, so that {current} can restart to apply {what}"
                ));
            }
            return;
        }
    };
    if !others_ready(input, current, member) {
        plan.waiting_for.get_or_insert(format!(
            "every other member ready before {member} restarts to apply {what}"
        ));
        return;
    }
    allow(input, member, &what, plan);
}

fn allow(input: &Input<'_>, member: &str, what: &str, plan: &mut Plan) {
    let Some(desired) = plan.desired.get_mut(member) else {
        return;
    };
    desired.restart = true;
    desired.restart_before_ms = input
        .restart
        .filter(|r| r.wants(member, input.report(member).and_then(|r| r.started_at_ms)))
        .map(|r| r.at_ms);
    desired.reason = format!("{REASON}{what}");
    if input.outdated.contains_key(member) {
        plan.recreate.push(member.to_string());
    }
    // announced once: the last status already says so
    let told = input
        .status
        .members
        .iter()
        .any(|m| m.name == member && m.last_event.as_deref() == Some(&desired.reason));
    if !told {
        plan.event(
            EventReason::Restarting,
            Some(member),
            format!("{member} restarts to apply {what}"),
        );
    }
}

/// A requested reload reaches every running member asked at once: reading the configuration
/// again interrupts nothing.
pub fn reloads(input: &Input<'_>, plan: &mut Plan) {
    let Some(request) = input.reload else {
        return;
    };
    for (member, desired) in plan.desired.iter_mut() {
        let running = input.report(member).filter(|r| r.running);
        if desired.role != DesiredRole::Stopped
            && running.is_some_and(|r| request.wants(member, r.reloaded_at_ms))
        {
            desired.reload_before_ms = Some(request.at_ms);
        }
    }
}

/// The primary waits for a restart and no standby does: move it by a switchover, to the
/// preferred member when that is not the primary, else to the first caught-up synchronous one.
pub fn primary_move(input: &Input<'_>, current: &str) -> Option<(String, EventReason, String)> {
    let what = pending(input, current)?;
    if input.spec.members.len() == 1
        || !all_read(input)
        || turn_held(input, current).is_some()
        || next_standby(input, current).is_some()
        || !others_ready(input, current, current)
    {
        return None;
    }
    let sync = input
        .spec
        .members
        .iter()
        .filter(|m| m.replication == Replication::Sync)
        .map(|m| m.name.as_str());
    let to = std::iter::once(input.spec.primary.as_str())
        .chain(sync)
        .filter(|n| *n != current)
        .find(|n| switch_target_ready(input, current, n).is_ok() && caught_up(input, current, n))?;
    Some((
        to.to_string(),
        EventReason::SwitchoverStarted,
        format!("{current} restarts to apply {what}, so the primary moves first"),
    ))
}
