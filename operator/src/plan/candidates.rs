//! Who may take over from a lost primary.
//!
//! Safe candidates are Sync, promotable members that the primary last reported as `sync` or
//! `potential`: every acknowledged commit is on the one that was `sync`. Among them the member
//! with the most WAL received wins (then replayed, then name). If any of them is in an unknown
//! state it might be the one that is ahead, so nothing is promoted until it is known.

use std::cmp::Ordering;

use crate::api::{PgReplicaClusterSpec, PgReplicaClusterStatus, Replication};
use crate::member::{ActualRole, DataHealth, MemberReport};

use super::input::Input;
use super::sever::position;

/// The member to promote, or the reason no member can be promoted safely.
pub fn choose(input: &Input<'_>, lost: &str) -> Result<String, String> {
    let was_synchronous = synchronous_at_loss(input.status, lost);
    if was_synchronous.is_empty() {
        return Err(format!(
            "no standby was synchronous when {lost} was lost: promoting an asynchronous standby could lose acknowledged commits"
        ));
    }
    let mut eligible: Vec<&MemberReport> = Vec::new();
    // Synchronous members that may not be promoted: one of them may be the only member that
    // confirmed a commit, so the candidate must hold at least what they hold.
    let mut witnesses: Vec<&MemberReport> = Vec::new();
    let mut reasons = Vec::new();
    for name in &was_synchronous {
        let Some(report) = input.report(name) else {
            let why = input.unknown_why(name).unwrap_or("unknown");
            return Err(format!(
                "{name} was synchronous and its state is unknown ({why}): waiting for it rather than promote a member that may be behind"
            ));
        };
        if !may_promote(input.spec, name) {
            reasons.push(format!(
                "{name} is not a promotable Sync member in the spec"
            ));
            witnesses.push(report);
            continue;
        }
        match eligibility(report) {
            Ok(()) => eligible.push(report),
            Err(why) => reasons.push(format!("{name} {why}")),
        }
    }
    eligible.sort_by(|a, b| rank(a, b));
    let Some(best) = eligible.first() else {
        return Err(format!(
            "no safe candidate to replace {lost}: {}",
            reasons.join("; ")
        ));
    };
    let have = position(best);
    for w in witnesses {
        if let Some(theirs) = position(w).filter(|p| have.is_none_or(|h| *p > h)) {
            return Err(format!(
                "{} is not promotable and holds WAL up to {theirs}, more than the best candidate {} ({}): promoting {} could lose commits only {} confirmed",
                w.member,
                best.member,
                have.map(|h| h.to_string()).unwrap_or_else(|| "nothing".into()),
                best.member,
                w.member
            ));
        }
    }
    Ok(best.member.clone())
}

/// Members the primary last reported as `sync` or `potential`.
fn synchronous_at_loss(status: &PgReplicaClusterStatus, lost: &str) -> Vec<String> {
    status
        .members
        .iter()
        .filter(|m| m.name != lost)
        .filter(|m| {
            matches!(
                m.sync_state.as_deref(),
                Some("sync" | "potential" | "quorum")
            )
        })
        .map(|m| m.name.clone())
        .collect()
}

fn may_promote(spec: &PgReplicaClusterSpec, name: &str) -> bool {
    spec.member(name).is_some_and(|m| {
        m.replication == Replication::Sync && m.is_promotable() && !m.replay_paused
    })
}

fn eligibility(report: &MemberReport) -> Result<(), String> {
    match &report.data {
        DataHealth::Healthy => {}
        DataHealth::Lost { reason } => return Err(format!("lost its data ({reason})")),
        DataHealth::Missing => return Err("has no data".into()),
        DataHealth::Invalid { reason } => return Err(format!("has unusable data ({reason})")),
    }
    match report.role {
        ActualRole::Standby => Ok(()),
        ActualRole::Stopped if report.received_lsn.is_some() => Ok(()),
        ActualRole::Stopped => Err("is stopped and never reported its WAL position".into()),
        ActualRole::Primary => Err("claims to be a primary".into()),
        ActualRole::Preparing => Err("is still preparing its data".into()),
    }
}

/// Most WAL received first, then most replayed, then by name for a total order.
fn rank(a: &MemberReport, b: &MemberReport) -> Ordering {
    b.received_lsn
        .cmp(&a.received_lsn)
        .then(b.replayed_lsn.cmp(&a.replayed_lsn))
        .then(a.member.cmp(&b.member))
}
