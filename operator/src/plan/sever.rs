//! Sever, then promote (ADR 0004). A failover may promote its target only once nothing else can
//! still confirm commits for the old primary, and once the target holds at least the WAL that
//! any member that could have confirmed them received.
//!
//! The old primary may still accept commits when it cannot be seen (its agent stalls or its node
//! is cut off) or when its server runs without answering. Commits it acknowledges then are
//! confirmed by whichever synchronous standby still streams from it; if a different member is
//! promoted, those commits are lost. So every Sync member other than the target must show that
//! its WAL receiver is connected elsewhere (or that no server of it runs) before the promotion,
//! and a member that cannot be seen blocks it. Asynchronous members cannot confirm commits; they
//! are re-pointed too but never waited for.

use crate::api::Replication;
use crate::member::Lsn;
use crate::member::{ActualRole, DataHealth, MemberReport};

use super::candidates;
use super::input::Input;

/// Could the old primary still accept and acknowledge commits? Only its own agent saying that no
/// server process runs proves it cannot.
fn old_may_accept(input: &Input<'_>, old: &str) -> bool {
    input
        .report(old)
        .is_none_or(|r| r.server_process || r.running)
}

/// Sync members other than `old` and `target`.
fn sync_others<'a>(
    input: &'a Input<'_>,
    old: &'a str,
    target: &'a str,
) -> impl Iterator<Item = &'a str> {
    input
        .spec
        .members
        .iter()
        .filter(move |m| m.name != old && m.name != target && m.replication == Replication::Sync)
        .map(|m| m.name.as_str())
}

/// Members whose agents do not answer while a failover needs to know that they cannot accept or
/// confirm commits: the old primary, and Sync members other than the target (all of them while
/// no target can be chosen). Fencing them from outside (the runtime kills them) turns "cannot be
/// seen" into "has no server" once their agent is back.
pub fn to_fence(input: &Input<'_>, old: &str, target: Option<&str>) -> Vec<(String, String)> {
    if !old_may_accept(input, old) {
        return Vec::new();
    }
    let during = match target {
        Some(t) => format!("{t} takes over from {old}"),
        None => format!("no member can replace {old} yet"),
    };
    std::iter::once(old)
        .chain(sync_others(input, old, target.unwrap_or(old)))
        .filter(|n| input.report(n).is_none())
        .map(|n| {
            let why = input.unknown_why(n).unwrap_or("unknown");
            (
                n.to_string(),
                format!("its agent does not answer ({why}) while {during}"),
            )
        })
        .collect()
}

/// Why the target must not be promoted yet, if some Sync member may still confirm commits for
/// `old`.
pub fn not_yet_severed(input: &Input<'_>, old: &str, target: &str) -> Option<String> {
    if !old_may_accept(input, old) {
        return None;
    }
    let to = input.addresses.get(target);
    let mut waiting = Vec::new();
    for name in sync_others(input, old, target) {
        match input.report(name) {
            None => waiting.push(format!(
                "{name} cannot be seen ({})",
                input.unknown_why(name).unwrap_or("unknown")
            )),
            Some(r) => {
                // judged toward the target, never by the old primary's address: that may be gone
                // or, on Kubernetes, already belong to a new pod
                let severed = to.is_some_and(|t| r.follows_only(target, &t.host, t.port))
                    || (!r.running && !r.server_process);
                if !severed {
                    waiting.push(format!("{name} still replicates from {old} (or may)"));
                }
            }
        }
    }
    (!waiting.is_empty()).then(|| {
        format!(
            "{old} may still accept commits, so {target} is promoted only once no other synchronous member can confirm them: {}",
            waiting.join("; ")
        )
    })
}

/// The most WAL a member is known to hold; nothing when its data is not (or no longer) the data
/// it reported positions for.
pub fn position(r: &MemberReport) -> Option<Lsn> {
    if r.data != DataHealth::Healthy || r.role == ActualRole::Preparing {
        return None;
    }
    r.received_lsn.max(r.replayed_lsn).max(r.current_lsn)
}

pub enum Ahead {
    No,
    /// A better candidate holds more WAL than the target.
    Retarget(String, String),
    /// Someone holds more WAL than the target and cannot take over.
    Wait(String),
}

/// Does a Sync member hold WAL the target lacks?
pub fn ahead_of_target(input: &Input<'_>, old: &str, target: &str) -> Ahead {
    let have = input.report(target).and_then(position);
    // a member rewinding or cloning may still hold WAL the target lacks until it is done
    let busy: Vec<&str> = sync_others(input, old, target)
        .filter(|n| {
            input
                .report(n)
                .is_some_and(|r| r.role == ActualRole::Preparing && r.data == DataHealth::Healthy)
        })
        .collect();
    if !busy.is_empty() {
        return Ahead::Wait(format!(
            "{} to finish preparing its data: until then it may hold WAL that {target} lacks",
            busy.join(", ")
        ));
    }
    let ahead: Vec<(&str, Lsn)> = sync_others(input, old, target)
        .filter_map(|n| input.report(n).and_then(position).map(|p| (n, p)))
        .filter(|(_, p)| have.is_none_or(|h| *p > h))
        .collect();
    if ahead.is_empty() {
        return Ahead::No;
    }
    let list = ahead
        .iter()
        .map(|(n, p)| format!("{n} has WAL up to {p}"))
        .collect::<Vec<_>>()
        .join(", ");
    let have = have
        .map(|h| h.to_string())
        .unwrap_or_else(|| "nothing".into());
    match candidates::choose(input, old) {
        Ok(better) if better != target => Ahead::Retarget(
            better,
            format!("{list}, more than {target} ({have})"),
        ),
        _ => Ahead::Wait(format!(
            "{target} to hold every commit another synchronous member may have confirmed: {list}, {target} has {have}"
        )),
    }
}
