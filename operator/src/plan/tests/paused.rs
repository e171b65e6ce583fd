//! A member whose replay is paused (`replayPaused`): stale on purpose, so it serves no reads, is
//! never a switchover target, takes no restart turn and holds up neither rollouts nor failback.

use super::*;

const PAUSED_C: (&str, &str) = (
    "{name: c, replication: Async, applyDelay: 3s}",
    "{name: c, replication: Async, applyDelay: 3s, replayPaused: true}",
);

/// A paused c keeps receiving until a restart or an upstream change; paused, it streams nothing.
fn paused_c(streaming_from: Option<&str>) -> Observation {
    with(standby("c", "a", 90), |r| {
        r.streaming_from = streaming_from.map(String::from);
        r.frozen_at_ms = Some(1_000);
        r.activity = "replay paused: data as of 1970-01-01T00:00:01.000Z".into();
    })
}

#[test]
fn a_paused_member_serves_no_reads_and_its_desired_state_says_paused() {
    for (what, streaming) in [("still receiving", Some("a")), ("receiving nothing", None)] {
        let mut w = healthy_lab();
        w.spec = spec(&[PAUSED_C]);
        w.members.insert("c".into(), paused_c(streaming));
        let p = w.plan();
        assert_eq!(p.routes.rw.as_deref(), Some("a"), "{what}");
        assert_eq!(p.routes.ro, vec!["b".to_string()], "{what}");
        assert_eq!(
            p.routes.standbys,
            vec!["b".to_string()],
            "{what}: not in -r"
        );
        assert!(
            matches!(
                p.desired.get("c").map(|d| &d.role),
                Some(DesiredRole::Standby {
                    replay_paused: true,
                    ..
                })
            ),
            "{what}"
        );
        let c = p.status.members.iter().find(|m| m.name == "c").expect("c");
        assert_eq!(
            c.frozen_at.as_deref(),
            Some("1970-01-01T00:00:01Z"),
            "{what}"
        );
    }
}

#[test]
fn a_paused_member_is_never_a_switchover_target() {
    let mut w = healthy_lab();
    w.spec = spec(&[PAUSED_C, ("primary: a", "primary: a\n  failback: Manual")]);
    w.members.insert("c".into(), paused_c(Some("a")));
    w.switchover = Some("c");
    let p = w.plan();
    assert!(p.switchover_consumed);
    assert_eq!(p.status.target_primary.as_deref(), Some("a"));
    let refused = refusal(&p);
    assert!(refused.message.contains("paused"), "{}", refused.message);
}

/// A paused c waits for a restart it will not take until resumed: b and then the primary go on.
#[test]
fn a_paused_member_takes_no_restart_turn_and_holds_up_nobody() {
    let pending = |o: Observation| {
        with(o, |r| {
            r.pending_restart = vec!["shared_buffers".into()];
            r.applied_parameters = Some(BTreeMap::new());
        })
    };
    // (what, c streaming, b pending, allowed to restart)
    let cases: [(&str, Option<&str>, bool, &[&str]); 3] = [
        ("b's turn, c paused and receiving", Some("a"), true, &["b"]),
        (
            "b's turn, c paused and receiving nothing",
            None,
            true,
            &["b"],
        ),
        ("b done: nothing for c", None, false, &[]),
    ];
    for (what, c_streaming, b_pending, want) in cases {
        let mut w = healthy_lab();
        w.spec = spec(&[PAUSED_C]);
        w.members.insert("c".into(), pending(paused_c(c_streaming)));
        let b = with(standby("b", "a", 100), |r| {
            r.applied_parameters = Some(BTreeMap::new())
        });
        w.members
            .insert("b".into(), if b_pending { pending(b) } else { b });
        let a = with(primary("a", 100, &[("b", "sync"), ("c", "async")]), |r| {
            r.applied_parameters = Some(BTreeMap::new())
        });
        w.members.insert("a".into(), a);
        let p = w.plan();
        let allowed: Vec<&str> = p
            .desired
            .iter()
            .filter(|(_, d)| d.restart)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(allowed, want, "{what}");
    }
}

/// After a failover a paused c stays on the old timeline: the failback does not wait for it.
#[test]
fn a_paused_member_on_the_old_timeline_does_not_hold_up_the_failback() {
    for (paused, want) in [(false, false), (true, true)] {
        let mut status = settled("b", &[("a", "sync"), ("c", "async")]);
        status.observed_preferred_primary = Some("a".into());
        let b = with(primary("b", 500, &[("a", "sync")]), |r| {
            r.timeline = Some(2)
        });
        let c = with(paused_c(None), |r| {
            r.timeline = Some(1);
            r.frozen_at_ms = paused.then_some(1_000);
        });
        let mut w = World::new(
            status,
            vec![
                ("a", with(standby("a", "b", 500), |r| r.timeline = Some(2))),
                ("b", b),
                ("c", c),
            ],
        );
        if paused {
            w.spec = spec(&[PAUSED_C]);
        }
        let p = w.plan();
        let started = p.status.target_primary.as_deref() == Some("a");
        assert_eq!(started, want, "c paused: {paused}");
    }
}
