//! The status a person reads: member roles and readiness, phase, conditions, routes.

use crate::api::{
    Condition, ConditionType, MemberStatus, PgReplicaClusterStatus, Phase, Replication, Role,
};
use crate::member::{ActualRole, DesiredRole, MemberReport, SyncState};

use super::input::Input;
use super::output::{EventReason, Plan};

pub fn rfc3339(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// When a paused standby's data is from: the commit time of the last transaction it applied.
pub fn frozen_at(ms: u64) -> String {
    if ms == 0 {
        "its clone (it has applied no transaction)".into()
    } else {
        rfc3339(ms)
    }
}

/// How far a standby's replay is behind the primary's WAL, in bytes.
fn replay_lag_bytes(primary: Option<&MemberReport>, standby: Option<&MemberReport>) -> Option<u64> {
    let written = primary?.current_lsn?;
    let replayed = standby
        .filter(|s| s.role == ActualRole::Standby)?
        .replayed_lsn?;
    Some(written.bytes_since(replayed))
}

/// Fill in member status, routes, phase and conditions after the decisions are made.
pub fn finish(input: &Input<'_>, plan: &mut Plan) {
    let current = plan.status.current_primary.clone();
    let primary_report = current.as_deref().and_then(|c| input.report(c));
    let primary_healthy = primary_report.is_some_and(|r| r.is_running_primary());
    let previous = input.status.members.clone();

    let mut members = Vec::new();
    for spec in &input.spec.members {
        let name = spec.name.as_str();
        let report = input.report(name);
        let before = previous.iter().find(|m| m.name == name);
        let is_current = current.as_deref() == Some(name);
        let ready = match (report, current.as_deref()) {
            (Some(r), Some(c)) if is_current => {
                r.is_running_primary() && r.holds_lease && c == name
            }
            (Some(r), Some(c)) => r.is_streaming_from(c),
            _ => false,
        };
        // The primary's view of sync states is kept while the primary cannot be seen: failover
        // decisions need what was true when it was lost.
        let sync_state = if primary_healthy {
            primary_report.and_then(|p| {
                p.standbys
                    .iter()
                    .find(|s| s.name == name)
                    .map(|s| s.sync_state.as_str().to_string())
            })
        } else {
            before.and_then(|b| b.sync_state.clone())
        };
        let desired_stopped = plan
            .desired
            .get(name)
            .is_some_and(|d| d.role == DesiredRole::Stopped);
        let role = role_of(report, desired_stopped);
        let last_event = plan
            .desired
            .get(name)
            .map(|d| d.reason.clone())
            .or_else(|| before.and_then(|b| b.last_event.clone()));
        member_events(input, plan, name, report, before, ready);
        members.push(MemberStatus {
            name: name.to_string(),
            role,
            ready,
            sync_state: if is_current { None } else { sync_state },
            timeline: report.and_then(|r| r.timeline),
            received_lsn: report
                .and_then(|r| r.received_lsn.or(r.current_lsn))
                .map(|l| l.to_string()),
            replayed_lsn: report.and_then(|r| r.replayed_lsn).map(|l| l.to_string()),
            replay_lag_seconds: report.and_then(|r| r.replay_lag_seconds),
            frozen_at: report.and_then(|r| r.frozen_at_ms).map(frozen_at),
            frozen_locks: report.map(|r| r.frozen_locks.clone()).unwrap_or_default(),
            replay_lag_bytes: replay_lag_bytes(primary_report.filter(|_| primary_healthy), report),
            last_error: report
                .and_then(|r| r.last_error.clone())
                .or_else(|| input.unknown_why(name).map(String::from)),
            last_event,
            fenced: report
                .and_then(|r| r.fenced)
                .map(|f| f.as_str().to_string()),
            pending_restart: report
                .map(|r| r.pending_restart.clone())
                .unwrap_or_default(),
            started_at: report
                .and_then(|r| r.started_at_ms)
                .map(rfc3339)
                .or_else(|| before.and_then(|b| b.started_at.clone())),
            reloaded_at: report
                .and_then(|r| r.reloaded_at_ms)
                .map(rfc3339)
                .or_else(|| before.and_then(|b| b.reloaded_at.clone())),
        });
    }
    // The declared durability is in effect: with a Sync member streaming, the primary names a
    // synchronous standby (right after bootstrap the sync names may not be set yet).
    let sync_streaming = current.as_deref().is_some_and(|c| {
        input.spec.members.iter().any(|m| {
            m.name != c
                && m.replication == Replication::Sync
                && members.iter().any(|s| s.name == m.name && s.ready)
        })
    });
    let durable = !sync_streaming
        || primary_report
            .is_some_and(|p| p.standbys.iter().any(|s| s.sync_state == SyncState::Sync));
    let ready_count = members.iter().filter(|m| m.ready).count();
    let target = plan
        .status
        .target_primary
        .clone()
        .filter(|t| Some(t) != current.as_ref());
    let stopped_for_handover = planned_handover(&plan.status)
        && current
            .as_deref()
            .and_then(|c| plan.desired.get(c))
            .is_some_and(|d| d.role == DesiredRole::Stopped);
    plan.routes = super::routes::routes(
        input.spec,
        (current.as_deref(), stopped_for_handover),
        target.as_deref(),
        &members,
        &|name| input.report(name),
    );

    let status = &mut plan.status;
    status.timeline = primary_report.and_then(|r| r.timeline).or(status.timeline);
    status.ready_members = Some(format!("{ready_count}/{}", input.spec.members.len()));
    status.topology = Some(topology(input, current.as_deref(), &members));
    status.members = members;
    status.observed_generation = Some(input.generation);
    let handing_over = status.target_primary != status.current_primary;
    let all_ready = ready_count == input.spec.members.len() && durable;
    let available = plan.routes.rw.is_some();
    status.phase = Some(if plan.blocked.is_some() {
        Phase::Blocked
    } else if current.is_none() {
        Phase::Bootstrapping
    } else if handing_over && (primary_healthy || planned_handover(status)) {
        Phase::SwitchingOver
    } else if handing_over {
        Phase::FailingOver
    } else if all_ready {
        Phase::Healthy
    } else if status.members.iter().any(|m| m.role == Role::Cloning) {
        Phase::Recovering
    } else {
        Phase::Degraded
    });
    let not_ready: Vec<&str> = status
        .members
        .iter()
        .filter(|m| !m.ready)
        .map(|m| m.name.as_str())
        .collect();
    let now = rfc3339(input.now_ms);
    let generation = Some(input.generation);
    let conditions = vec![
        condition(
            ConditionType::Ready,
            all_ready && !handing_over,
            if all_ready {
                "AllMembersReady"
            } else {
                "MembersNotReady"
            },
            if all_ready {
                format!("{ready_count} members ready")
            } else if not_ready.is_empty() {
                "waiting for the primary to name a synchronous standby (durability not in effect yet)".into()
            } else {
                format!("not ready: {}", not_ready.join(", "))
            },
        ),
        condition(
            ConditionType::LeaseReadable,
            input.lease.unreadable.is_none(),
            if input.lease.unreadable.is_some() {
                "LeaseUnreadable"
            } else {
                "LeaseReadable"
            },
            match &input.lease.unreadable {
                Some(why) => format!(
                    "the lease cannot be read ({why}); it counts as held by the primary of record for one lease duration, then as expired, and the holder writes it again"
                ),
                None => "the lease can be read".into(),
            },
        ),
        condition(
            ConditionType::Available,
            available,
            if available {
                "PrimaryWritable"
            } else {
                "NoWritablePrimary"
            },
            match (&plan.routes.rw, &plan.waiting_for) {
                (Some(p), _) => format!("{p} accepts writes"),
                (None, Some(w)) => format!("waiting for {w}"),
                (None, None) => "no member accepts writes".into(),
            },
        ),
        condition(
            ConditionType::Degraded,
            !all_ready,
            if all_ready {
                "AllMembersReady"
            } else {
                "MembersNotReady"
            },
            if all_ready {
                "every member is ready".into()
            } else if not_ready.is_empty() {
                "the primary names no synchronous standby yet".into()
            } else {
                format!("not ready: {}", not_ready.join(", "))
            },
        ),
        condition(
            ConditionType::FailoverBlocked,
            plan.blocked.is_some(),
            if plan.blocked.is_some() {
                "NoSafeCandidate"
            } else {
                "NotBlocked"
            },
            plan.blocked
                .clone()
                .unwrap_or_else(|| "failover is possible or not needed".into()),
        ),
    ];
    let mut conditions = conditions;
    conditions.extend(volumes_condition(input));
    status.conditions = merge_conditions(&input.status.conditions, conditions, &now, generation);
}

/// Whether every volume has the size the spec asks: present once one did not, so that a
/// runtime without volumes (local) never shows it.
fn volumes_condition(input: &Input<'_>) -> Option<Condition> {
    let shown = input
        .status
        .conditions
        .iter()
        .any(|c| c.is(ConditionType::VolumesMatchSpec));
    if input.volumes.is_empty() {
        return shown.then(|| {
            condition(
                ConditionType::VolumesMatchSpec,
                true,
                "VolumesMatchSpec",
                "every member's volume has the size the spec asks".into(),
            )
        });
    }
    let refused = input
        .volumes
        .values()
        .any(|v| matches!(v, super::VolumeNote::Refused(_)));
    Some(condition(
        ConditionType::VolumesMatchSpec,
        false,
        if refused {
            "VolumeNotExpandable"
        } else {
            "VolumeResizing"
        },
        input
            .volumes
            .iter()
            .map(|(m, why)| format!("{m}: {}", why.text()))
            .collect::<Vec<_>>()
            .join("; "),
    ))
}

/// The running handover was asked for (switchover, failback), not forced by a loss.
pub(super) fn planned_handover(status: &crate::api::PgReplicaClusterStatus) -> bool {
    status.last_failover.as_ref().is_some_and(|f| {
        f.finished_at.is_none()
            && matches!(
                f.kind,
                Some(crate::api::HandoverKind::Switchover | crate::api::HandoverKind::Failback)
            )
    })
}

fn role_of(report: Option<&MemberReport>, desired_stopped: bool) -> Role {
    match report {
        None => Role::Unknown,
        Some(r) => match r.role {
            ActualRole::Primary if r.running => Role::Primary,
            ActualRole::Standby if r.running => Role::Standby,
            ActualRole::Preparing => Role::Cloning,
            _ if desired_stopped => Role::Fenced,
            _ => Role::Stopped,
        },
    }
}

fn member_events(
    input: &Input<'_>,
    plan: &mut Plan,
    name: &str,
    report: Option<&MemberReport>,
    before: Option<&MemberStatus>,
    ready: bool,
) {
    let was_cloning = before.is_some_and(|b| b.role == Role::Cloning);
    let cloning = report.is_some_and(|r| r.role == ActualRole::Preparing);
    let had_been_lost = input
        .status
        .last_failover
        .as_ref()
        .is_some_and(|f| f.from == name);
    if cloning && !was_cloning && input.status.current_primary.is_some() {
        let activity = report.map(|r| r.activity.clone()).unwrap_or_default();
        let reason = if had_been_lost || before.is_some_and(|b| b.timeline.is_some()) {
            EventReason::Recloning
        } else {
            EventReason::Cloning
        };
        plan.event(reason, Some(name), format!("{name}: {activity}"));
    }
    if ready && before.is_some_and(|b| !b.ready) && had_been_lost {
        plan.event(
            EventReason::Rejoined,
            Some(name),
            format!("{name} is ready again"),
        );
    }
    // once per fence: the agent's report says so until its server runs again
    if let Some(fence) = report.and_then(|r| r.fenced) {
        let known = before.and_then(|b| b.fenced.as_deref()) == Some(fence.as_str());
        if !known {
            let why = report
                .and_then(|r| {
                    r.data_lost()
                        .map(String::from)
                        .or_else(|| r.last_error.clone())
                })
                .unwrap_or_else(|| fence.as_str().to_string());
            plan.event(EventReason::Fenced, Some(name), why);
        }
    }
}

fn topology(input: &Input<'_>, current: Option<&str>, members: &[MemberStatus]) -> String {
    input
        .spec
        .members
        .iter()
        .map(|m| {
            let mode = if Some(m.name.as_str()) == current {
                "primary".to_string()
            } else {
                match (m.replication, m.apply_delay.as_deref()) {
                    (Replication::Sync, _) => "sync".to_string(),
                    (Replication::Async, Some(d)) => format!("async({d})"),
                    (Replication::Async, None) => "async".to_string(),
                }
            };
            let ready = members.iter().any(|s| s.name == m.name && s.ready);
            format!("{}={mode}{}", m.name, if ready { "" } else { "!" })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn condition(type_: ConditionType, status: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.as_str().to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message,
        last_transition_time: String::new(),
        observed_generation: None,
    }
}

/// Keep `lastTransitionTime` unless a condition's status flips.
fn merge_conditions(
    old: &[Condition],
    new: Vec<Condition>,
    now: &str,
    generation: Option<i64>,
) -> Vec<Condition> {
    new.into_iter()
        .map(|mut c| {
            c.observed_generation = generation;
            c.last_transition_time = match old.iter().find(|o| o.type_ == c.type_) {
                Some(o) if o.status == c.status => o.last_transition_time.clone(),
                _ => now.to_string(),
            };
            c
        })
        .collect()
}

/// Whether `next` differs from `previous` in more than numbers that move all the time (LSNs,
/// lag): such a change is worth recording at once; the numbers can wait for a periodic write.
pub fn material_change(previous: &PgReplicaClusterStatus, next: &PgReplicaClusterStatus) -> bool {
    fn without_numbers(s: &PgReplicaClusterStatus) -> PgReplicaClusterStatus {
        let mut s = s.clone();
        for m in &mut s.members {
            m.received_lsn = None;
            m.replayed_lsn = None;
            m.replay_lag_seconds = None;
            m.replay_lag_bytes = None;
        }
        s
    }
    without_numbers(previous) != without_numbers(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::Lsn;

    #[test]
    fn replay_lag_in_bytes_is_the_primarys_wal_not_yet_replayed() {
        let primary = |lsn: Option<u64>| MemberReport {
            role: ActualRole::Primary,
            current_lsn: lsn.map(Lsn),
            ..MemberReport::new("a")
        };
        let standby = |role: ActualRole, lsn: Option<u64>| MemberReport {
            role,
            replayed_lsn: lsn.map(Lsn),
            ..MemberReport::new("c")
        };
        let table = [
            (Some(5_000), ActualRole::Standby, Some(1_000), Some(4_000)),
            (Some(5_000), ActualRole::Standby, Some(5_000), Some(0)),
            // the primary's report is older than the standby's: nothing behind, not negative
            (Some(5_000), ActualRole::Standby, Some(6_000), Some(0)),
            (None, ActualRole::Standby, Some(1_000), None),
            (Some(5_000), ActualRole::Standby, None, None),
            (Some(5_000), ActualRole::Stopped, Some(1_000), None),
        ];
        for (written, role, replayed, want) in table {
            let p = primary(written);
            let s = standby(role, replayed);
            assert_eq!(
                replay_lag_bytes(Some(&p), Some(&s)),
                want,
                "{written:?} {role:?} {replayed:?}"
            );
        }
        assert_eq!(
            replay_lag_bytes(None, Some(&standby(ActualRole::Standby, Some(1)))),
            None
        );
    }
}
