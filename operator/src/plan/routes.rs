//! Where the endpoints lead, for both runtimes (the local proxies and the Kubernetes Services):
//! - `rw`: the primary of record, once it runs as primary and holds the lease;
//! - `ro`: standbys that are ready (streaming from the primary) and apply WAL without a delay —
//!   a delayed member would answer reads with data seconds old; when no standby qualifies, the
//!   primary, so that reads keep working (never stale);
//! - `standbys`: every ready standby, delayed or not (the `-r` endpoint adds the primary); the
//!   member being promoted counts as one while its server runs (it still answers reads, and the
//!   read-only endpoint need not change twice during a failover); so does, while the primary
//!   is not ready or a handover runs, every standby whose server still runs in recovery (its
//!   upstream is gone or being replaced, but it answers reads): a Kubernetes Service that changed just before the new
//!   primary's label would hold that label back by kube-proxy's `minSyncPeriod` (ADR 0008);
//! - the preferred primary serves no reads while an automatic failback will make it primary
//!   again (it would move twice within a second), and the other standbys that still run keep
//!   serving until then;
//! - `rw_keep`: while no member accepts writes, the primary of record if it provably runs no
//!   server, or if it is shutting down because a switchover asked it to (see [`Routes::rw_keep`]).

use crate::api::{Failback, MemberStatus, PgReplicaClusterSpec};
use crate::member::{ActualRole, DataHealth, DesiredRole, MemberReport};

use super::output::Routes;

/// `current`: the primary of record, with `stopped_for_handover` when a switchover or failback
/// has asked it to stop; `target`: the member a handover promotes (if one runs); `report`: any
/// member's report.
pub fn routes<'a>(
    spec: &PgReplicaClusterSpec,
    (current, stopped_for_handover): (Option<&str>, bool),
    target: Option<&str>,
    members: &[MemberStatus],
    report: &dyn Fn(&str) -> Option<&'a MemberReport>,
) -> Routes {
    let current_report = current.and_then(report);
    let target_report = target.and_then(report);
    let promoting = target.filter(|_| target_report.is_some_and(|r| r.running));
    let handing_over = target.is_some();
    let still_a_standby = |name: &str| {
        report(name).is_some_and(|r| {
            r.running
                && r.role == ActualRole::Standby
                && r.data == DataHealth::Healthy
                && r.fenced.is_none()
        })
    };
    // running elsewhere with automatic failback: the preferred member serves no reads until it
    // is primary again. It would serve them from the moment it streams until the failback moves
    // it a few hundred milliseconds later, and a Service changed in the second before the
    // failback's label holds that label back by kube-proxy's minSyncPeriod (ADR 0008).
    let failback_pending = spec.failback == Failback::Automatic
        && current.is_some_and(|c| c != spec.primary)
        && spec.members.iter().any(|m| m.name == spec.primary);
    // the primary of record is not ready (lost, or not yet replaced): nobody can stream from it
    let status_ready = |name: &str| members.iter().any(|m| m.name == name && m.ready);
    let primary_down = current.is_none_or(|c| !status_ready(c));
    // `widen`: a standby that still runs in recovery counts, though it streams from nobody
    let serves = |name: &str, widen: bool| {
        // even while the failback promotes it: it was serving nothing, and joining the read
        // endpoints at the failback's first tick would hold back its -rw label the same way
        if failback_pending && name == spec.primary {
            return false;
        }
        status_ready(name) || promoting == Some(name) || (widen && still_a_standby(name))
    };
    let rw = current.filter(|c| status_ready(c)).map(String::from);
    // -r ("any member") keeps a running standby also while a failback is pending: it rejoins
    // when it streams on the new timeline, which is what the failback waits for
    let standbys: Vec<String> = spec
        .members
        .iter()
        .filter(|m| Some(m.name.as_str()) != current && !m.replay_paused)
        .filter(|m| serves(&m.name, handing_over || primary_down || failback_pending))
        .map(|m| m.name.clone())
        .collect();
    // -ro never leads to a standby that may be stale while a primary runs: it keeps a running
    // standby only while no primary is ready or a handover runs (nothing newer exists then)
    let mut ro: Vec<String> = spec
        .members
        .iter()
        .filter(|m| Some(m.name.as_str()) != current && m.apply_delay_ms() == 0 && !m.replay_paused)
        .filter(|m| serves(&m.name, handing_over || primary_down))
        .map(|m| m.name.clone())
        .collect();
    // no server process, or one its agent killed with SIGKILL (a fence): it accepts nothing again
    let no_server =
        current_report.is_some_and(|r| (!r.running && !r.server_process) || r.fenced.is_some());
    // asked to stop by a switchover and no longer answering: it refuses new connections while it
    // shuts down, and the plan promotes the target only once it is down (its shutdown checkpoint
    // received, or its server killed), so a connection routed to it cannot commit for it then
    // (its agent has the stop: its report carries the desired state it works on)
    let shutting_down = stopped_for_handover
        && current_report.is_some_and(|r| {
            !r.running
                && r.desired
                    .as_ref()
                    .is_some_and(|d| d.role == DesiredRole::Stopped)
        });
    let rw_keep = current
        .filter(|_| rw.is_none() && (no_server || shutting_down))
        .map(String::from);
    // reads fall back to the primary, or to the one keeping -rw until its successor has it (the
    // read-only endpoint then changes with -rw, in the same tick)
    let fallback = rw.clone().or_else(|| rw_keep.clone());
    let ro_is_primary = ro.is_empty() && fallback.is_some();
    if ro_is_primary {
        ro.extend(fallback);
    }
    Routes {
        rw,
        ro,
        standbys,
        ro_is_primary,
        rw_keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> PgReplicaClusterSpec {
        let yaml =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab.yaml"))
                .expect("lab.yaml");
        crate::api::validate::parse_and_validate(&yaml)
            .expect("valid")
            .cluster
            .spec
    }

    fn status(ready: &[&str]) -> Vec<MemberStatus> {
        ["a", "b", "c"]
            .iter()
            .map(|n| super::super::tests::standby_status(n, ready.contains(n)))
            .collect()
    }

    #[test]
    fn reads_never_go_to_the_delayed_member() {
        // the lab: a primary, b sync, c async with a 3 s apply delay
        let spec = lab();
        // (current primary, ready members) → (rw, ro, standbys, ro falls back to the primary)
        type Case<'a> = (
            Option<&'a str>,
            &'a [&'a str],
            Option<&'a str>,
            &'a [&'a str],
            &'a [&'a str],
            bool,
        );
        let cases: [Case; 7] = [
            (
                Some("a"),
                &["a", "b", "c"],
                Some("a"),
                &["b"],
                &["b", "c"],
                false,
            ),
            // b lost: only the delayed c is a standby; reads go to the primary, not to c
            (Some("a"), &["a", "c"], Some("a"), &["a"], &["c"], true),
            (Some("a"), &["a"], Some("a"), &["a"], &[], true),
            // a primary not ready yet: no writes, and no reads from c either
            (Some("a"), &["b", "c"], None, &["b"], &["b", "c"], false),
            (Some("a"), &["c"], None, &[], &["c"], false),
            // after a failover to b: a streams again, but the automatic failback will make it
            // primary in a moment; until then reads stay on b
            (Some("b"), &["a", "b", "c"], Some("b"), &["b"], &["c"], true),
            (None, &[], None, &[], &[], false),
        ];
        for (current, ready, rw, ro, standbys, fallback) in cases {
            let r = routes(&spec, (current, false), None, &status(ready), &|_| None);
            assert_eq!(r.rw.as_deref(), rw, "{current:?} {ready:?}");
            assert_eq!(r.ro, ro, "{current:?} {ready:?}");
            assert_eq!(r.standbys, standbys, "{current:?} {ready:?}");
            assert_eq!(r.ro_is_primary, fallback, "{current:?} {ready:?}");
        }
    }

    #[test]
    fn the_member_being_promoted_keeps_serving_reads() {
        let spec = lab();
        let mut b = MemberReport::new("b");
        b.running = true;
        let stopped = MemberReport::new("b");
        // a lost, b promoted: b is not streaming from anyone, c re-points to b
        let cases = [
            (Some(&b), vec!["b".to_string()], vec!["b".to_string()]),
            (Some(&stopped), vec![], vec![]),
            (None, vec![], vec![]),
        ];
        for (report, ro, standbys) in cases {
            let r = routes(
                &spec,
                (Some("a"), false),
                Some("b"),
                &status(&[]),
                &|name| if name == "b" { report } else { None },
            );
            assert_eq!(r.ro, ro, "{report:?}");
            assert_eq!(r.standbys, standbys, "{report:?}");
            assert_eq!(r.rw, None);
        }
    }

    #[test]
    fn a_dead_primary_keeps_its_write_endpoint_only_while_it_provably_runs_nothing() {
        let spec = lab();
        let report = |running: bool, server_process: bool| {
            let mut r = MemberReport::new("a");
            r.running = running;
            r.server_process = server_process;
            r
        };
        let (dead, hung, up) = (
            report(false, false),
            report(false, true),
            report(true, true),
        );
        let mut fenced = report(true, true);
        fenced.fenced = Some(crate::member::FenceReason::DataDirectoryLost);
        // (a's report, a ready) → rw_keep
        let cases = [
            (Some(&dead), false, Some("a")),
            (Some(&fenced), false, Some("a")),
            // a server that does not answer may still accept writes through open connections
            (Some(&hung), false, None),
            // an agent that cannot be seen proves nothing
            (None, false, None),
            // a ready primary is simply rw
            (Some(&up), true, None),
        ];
        for (report, ready, keep) in cases {
            let ready_members: &[&str] = if ready { &["a", "b"] } else { &["b"] };
            let r = routes(
                &spec,
                (Some("a"), false),
                None,
                &status(ready_members),
                &|name| if name == "a" { report } else { None },
            );
            assert_eq!(r.rw_keep.as_deref(), keep, "{report:?}");
            assert_eq!(r.rw.is_some(), ready);
        }
    }

    /// A failover's routes change once: c, whose upstream a was lost, still answers reads and
    /// keeps serving until the handover ends; before, it left `-r` at the loss and kube-proxy
    /// applied b's `-rw` label a second late (k8s e2e, failover 2 on 5ebd5e0's parent).
    #[test]
    fn during_a_handover_a_standby_that_still_runs_keeps_serving() {
        let spec = lab();
        let standby = |running: bool, fenced: bool, data: DataHealth| {
            let mut r = MemberReport::new("c");
            r.running = running;
            r.role = if running {
                ActualRole::Standby
            } else {
                ActualRole::Stopped
            };
            r.data = data;
            r.fenced = fenced.then_some(crate::member::FenceReason::DataDirectoryLost);
            r
        };
        let lost = DataHealth::Lost {
            reason: "gone".into(),
        };
        let mut b = MemberReport::new("b");
        b.running = true;
        // (what, c's report, a handover runs, c serves)
        let cases = [
            (
                "running standby, handover",
                standby(true, false, DataHealth::Healthy),
                true,
                true,
            ),
            // the tick that sees the loss, before the failover starts (k8s e2e: c left -r there
            // and came back a tick later, two changes before b's label)
            (
                "running standby, primary lost, no handover yet",
                standby(true, false, DataHealth::Healthy),
                false,
                true,
            ),
            (
                "stopped",
                standby(false, false, DataHealth::Healthy),
                true,
                false,
            ),
            (
                "fenced",
                standby(true, true, DataHealth::Healthy),
                true,
                false,
            ),
            ("data lost", standby(true, false, lost), true, false),
        ];
        for (what, c, handover, serves) in cases {
            let target = if handover {
                (Some("b"), Some(&b))
            } else {
                (None, None)
            };
            // nobody streams from a: nobody is ready by the status
            let r = routes(
                &spec,
                (Some("a"), false),
                target.0,
                &status(&[]),
                &|name| match name {
                    "c" => Some(&c),
                    "b" => target.1,
                    _ => None,
                },
            );
            assert_eq!(r.standbys.contains(&"c".to_string()), serves, "{what}");
            // delayed: never read-only, handover or not
            assert!(!r.ro.contains(&"c".to_string()), "{what}");
            // with a ready primary and no handover, a standby that does not stream from it does
            // not serve
            let settled = routes(&spec, (Some("a"), false), None, &status(&["a"]), &|name| {
                (name == "c").then_some(&c)
            });
            assert!(
                !settled.standbys.contains(&"c".to_string()),
                "{what}, a ready"
            );
        }
    }

    /// A failback's write outage through `lab-rw` was 0.76–1.35 s on the k8s e2e: b left `-rw`
    /// the moment it stopped answering (shutting down for the switchover), a took it 0.35 s
    /// later, and kube-proxy applied that second change only a second after the first.
    #[test]
    fn a_primary_stopping_for_a_switchover_keeps_its_write_endpoint_until_the_target_has_it() {
        let spec = lab();
        let report = |running: bool, has_the_stop: bool| {
            let mut r = MemberReport::new("b");
            r.running = running;
            r.server_process = true;
            r.desired = has_the_stop.then(|| crate::plan::topology::stopped("switchover".into()));
            r
        };
        let (stopping, answering, not_told) = (
            report(false, true),
            report(true, true),
            report(false, false),
        );
        // (what, b's report, a switchover asked b to stop, b ready) → rw_keep
        let cases = [
            (
                "shutting down for a switchover",
                &stopping,
                true,
                false,
                Some("b"),
            ),
            // not asked to stop: a server that does not answer may be hung, not shutting down
            (
                "not answering, nobody asked it to stop",
                &stopping,
                false,
                false,
                None,
            ),
            // still answering: still the primary
            ("asked, still answering", &answering, true, true, None),
            // the plan asked, but its agent does not have the stop (the hand-over failed): it
            // may be hung, not shutting down
            (
                "asked, the agent has not got it",
                &not_told,
                true,
                false,
                None,
            ),
        ];
        for (what, b, asked, ready, keep) in cases {
            let ready_members: &[&str] = if ready { &["b"] } else { &[] };
            let r = routes(
                &spec,
                (Some("b"), asked),
                Some("a"),
                &status(ready_members),
                &|name| (name == "b").then_some(b),
            );
            assert_eq!(r.rw_keep.as_deref(), keep, "{what}");
            // reads stay with it too: -ro changes with -rw, in the same tick
            assert_eq!(
                r.ro.contains(&"b".to_string()),
                keep.is_some() || ready,
                "{what}: {:?}",
                r.ro
            );
        }
    }

    /// The k8s e2e's failbacks: c, back on the new timeline, joined -r one tick before the
    /// failback (which waits for it) and held back a's -rw label by kube-proxy's minSyncPeriod.
    /// While an automatic failback is pending, a standby that still runs keeps serving.
    #[test]
    fn while_a_failback_is_pending_a_standby_that_still_runs_keeps_serving() {
        let mut c = MemberReport::new("c");
        c.running = true;
        c.role = ActualRole::Standby;
        c.data = DataHealth::Healthy;
        for (failback, serves) in [
            (crate::api::Failback::Automatic, true),
            (crate::api::Failback::Manual, false),
        ] {
            let mut spec = lab();
            spec.failback = failback;
            // b primary and ready; c runs but does not stream from b yet
            let r = routes(&spec, (Some("b"), false), None, &status(&["b"]), &|name| {
                (name == "c").then_some(&c)
            });
            assert_eq!(
                r.standbys.contains(&"c".to_string()),
                serves,
                "{failback:?}"
            );
            // -ro never: b is the primary, and c, not streaming from it, may be stale (even
            // without an apply delay)
            spec.members.iter_mut().for_each(|m| m.apply_delay = None);
            let r = routes(&spec, (Some("b"), false), None, &status(&["b"]), &|name| {
                (name == "c").then_some(&c)
            });
            assert_eq!(r.ro, vec!["b".to_string()], "{failback:?}");
        }
    }

    /// The k8s e2e's failbacks: a joined `-ro` and `-r` when it streamed again, the failback
    /// labelled it primary 0.6 s later, and kube-proxy applied that a second after the first
    /// change (fb-gap 1.30 s). With manual failback a stays where it is and serves reads.
    #[test]
    fn the_preferred_member_serves_reads_after_a_failover_only_without_automatic_failback() {
        // (failback, current primary, a in ro, a in standbys)
        let cases = [
            (crate::api::Failback::Automatic, "b", false, false),
            (crate::api::Failback::Manual, "b", true, true),
            // back on a: the rule is about a failback still to come
            (crate::api::Failback::Automatic, "a", false, false),
        ];
        let mut promoting = MemberReport::new("a");
        promoting.running = true;
        for (failback, current, in_ro, in_standbys) in cases {
            let mut spec = lab();
            spec.failback = failback;
            // before the failback starts, and in its first ticks (a the target, still a standby)
            for target in [(None, None), (Some("a"), Some(&promoting))] {
                let target = if current == "a" { (None, None) } else { target };
                let r = routes(
                    &spec,
                    (Some(current), false),
                    target.0,
                    &status(&["a", "b", "c"]),
                    &|name| {
                        if Some(name) == target.0 {
                            target.1
                        } else {
                            None
                        }
                    },
                );
                let a = "a".to_string();
                let what = format!("{failback:?} on {current}, target {:?}", target.0);
                assert_eq!(r.ro.contains(&a) && current != "a", in_ro, "{what}");
                assert_eq!(r.standbys.contains(&a), in_standbys, "{what}");
            }
        }
    }
}
