//! Settings that wait for a restart: one member at a time, standbys first (asynchronous before
//! synchronous), the primary last by a switchover, never while another member is not ready.

use super::*;

const SETTING: &str = "shared_buffers";

fn pending(obs: Observation) -> Observation {
    with(obs, |r| r.pending_restart = vec![SETTING.into()])
}

/// The lab with `pending` members waiting for a restart and `down` not streaming.
fn lab(waiting: &[&str], down: &[&str]) -> World {
    let obs = |name: &str, o: Observation| {
        let o = read(o);
        let o = if down.contains(&name) {
            with(o, |r| r.streaming_from = None)
        } else {
            o
        };
        if waiting.contains(&name) {
            pending(o)
        } else {
            o
        }
    };
    World::new(
        settled("a", &[("b", "sync"), ("c", "async")]),
        vec![
            (
                "a",
                obs("a", primary("a", 100, &[("b", "sync"), ("c", "async")])),
            ),
            ("b", obs("b", standby("b", "a", 100))),
            ("c", obs("c", standby("c", "a", 100))),
        ],
    )
}

/// The member's server has read the spec's parameters (none).
fn read(obs: Observation) -> Observation {
    with(obs, |r| r.applied_parameters = Some(BTreeMap::new()))
}

fn allowed(plan: &Plan) -> Vec<String> {
    plan.desired
        .iter()
        .filter(|(_, d)| d.restart)
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn one_member_restarts_at_a_time_standbys_first_the_primary_last() {
    // (what, waiting, not streaming, allowed to restart, primary moves to)
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        ("nothing pending", &[], &[], &[], None),
        (
            "all pending: the async standby first",
            &["a", "b", "c"],
            &[],
            &["c"],
            None,
        ),
        (
            "c done: the sync standby next",
            &["a", "b"],
            &[],
            &["b"],
            None,
        ),
        (
            "only the primary left: switchover to b",
            &["a"],
            &[],
            &[],
            Some("b"),
        ),
        (
            "b restarting (not streaming): it keeps its turn",
            &["a", "b"],
            &["b"],
            &["b"],
            None,
        ),
        ("c not streaming: b waits", &["a", "b"], &["c"], &[], None),
        (
            "c not streaming: the primary waits",
            &["a"],
            &["c"],
            &[],
            None,
        ),
        (
            "b not streaming: no switchover target",
            &["a"],
            &["b"],
            &[],
            None,
        ),
    ];
    for (what, waiting, down, want_allowed, want_target) in cases {
        let p = lab(waiting, down).plan();
        assert_eq!(allowed(&p), want_allowed, "{what}");
        let moving = p.status.target_primary.as_deref().filter(|t| *t != "a");
        assert_eq!(moving, want_target, "{what}");
        if !waiting.is_empty() && want_allowed.is_empty() && want_target.is_none() {
            assert!(p.waiting_for.is_some(), "{what}: says what it waits for");
        }
    }
}

#[test]
fn a_restart_is_announced_once_and_its_reason_says_why() {
    let p = lab(&["c"], &[]).plan();
    assert_eq!(reasons(&p), vec!["Restarting"]);
    let c = p.desired.get("c").expect("c has a desired state");
    assert!(c.reason.contains(SETTING), "{}", c.reason);
    assert_eq!(
        p.status
            .members
            .iter()
            .find(|m| m.name == "c")
            .map(|m| m.pending_restart.clone()),
        Some(vec![SETTING.to_string()])
    );
    // the next tick, from the status this one wrote: no second event
    let mut w = lab(&["c"], &[]);
    w.status = p.status.clone();
    assert!(reasons(&w.plan()).is_empty());
}

#[test]
fn the_primary_moves_to_the_preferred_member_first_and_stays_with_manual_failback() {
    // a failover left b primary with failback Manual; a (preferred) caught up: a takes over
    let mut w = World::new(
        settled("b", &[("a", "sync"), ("c", "async")]),
        vec![
            ("a", read(standby("a", "b", 100))),
            (
                "b",
                read(pending(primary("b", 100, &[("a", "sync"), ("c", "async")]))),
            ),
            ("c", read(standby("c", "b", 100))),
        ],
    );
    w.spec = spec(&[("primary: a", "primary: a\n  failback: Manual")]);
    let p = w.plan();
    assert_eq!(p.status.target_primary.as_deref(), Some("a"));
    assert_eq!(reasons(&p), vec!["SwitchoverStarted"]);
    assert_eq!(role(&p, "b").as_deref(), Some("stopped"));
}

#[test]
fn a_single_member_restarts_in_place() {
    let mut w = World::new(
        settled("a", &[]),
        vec![("a", read(pending(primary("a", 100, &[]))))],
    );
    w.spec = spec(&[
        ("    - {name: b, replication: Sync}\n", ""),
        ("    - {name: c, replication: Async, applyDelay: 3s}\n", ""),
    ]);
    let p = w.plan();
    assert_eq!(allowed(&p), vec!["a".to_string()]);
    assert_eq!(p.status.target_primary.as_deref(), Some("a"));
}

#[test]
fn parameters_reach_every_desired_state() {
    let mut w = lab(&[], &[]);
    w.spec = spec(&[(
        "primary: a",
        "primary: a\n  postgres:\n    parameters: {work_mem: 8MB}",
    )]);
    let p = w.plan();
    for m in ["a", "b", "c"] {
        let d = p.desired.get(m).expect("desired");
        assert_eq!(
            d.parameters.get("work_mem").map(String::as_str),
            Some("8MB"),
            "{m}"
        );
        assert!(!d.restart, "{m}");
    }
}

/// b was allowed by the last tick and has not restarted yet (its report still lists the setting,
/// and still shows it streaming); c's report now lists the setting too: b keeps the turn.
#[test]
fn the_turn_stays_with_the_member_allowed_until_it_restarted() {
    let first = lab(&["a", "b"], &[]).plan();
    assert_eq!(allowed(&first), vec!["b"]);
    let mut w = lab(&["a", "b", "c"], &[]);
    w.status = first.status.clone();
    let p = w.plan();
    assert_eq!(
        allowed(&p),
        vec!["b"],
        "c waits although it goes first otherwise"
    );
    assert!(reasons(&p).is_empty(), "announced once");
    // b restarted (its report lists nothing) but does not stream yet: nobody else, the primary
    // stays, and b keeps its turn across ticks
    let mut w = lab(&["a", "c"], &["b"]);
    w.status = p.status.clone();
    let recovering = w.plan();
    assert!(allowed(&recovering).is_empty());
    assert_eq!(recovering.status.target_primary.as_deref(), Some("a"));
    assert!(recovering
        .waiting_for
        .as_deref()
        .is_some_and(|w| w.contains("b to be ready again")));
    let mut w = lab(&["a", "c"], &["b"]);
    w.status = recovering.status.clone();
    assert!(allowed(&w.plan()).is_empty(), "still b's turn");
    // b streams again: c's turn
    let mut w = lab(&["a", "c"], &[]);
    w.status = recovering.status.clone();
    assert_eq!(allowed(&w.plan()), vec!["c"]);
}

/// The primary has read the new parameters and lists a pending setting; c has not read them yet
/// (its report may list the same setting a moment later): the primary stays.
#[test]
fn the_primary_moves_only_once_every_member_has_read_the_parameters() {
    let mut w = lab(&["a"], &[]);
    w.members.insert(
        "c".into(),
        with(standby("c", "a", 100), |r| r.applied_parameters = None),
    );
    let p = w.plan();
    assert_eq!(p.status.target_primary.as_deref(), Some("a"));
    assert!(allowed(&p).is_empty());
}

/// A changed pod template (Kubernetes): the same order, and the allowed member's pod is replaced.
#[test]
fn changed_pods_are_replaced_in_the_same_order() {
    let outdated = |w: &mut World, members: &[&str]| {
        w.outdated = members
            .iter()
            .map(|m| {
                (
                    m.to_string(),
                    "image postgres:15 → postgres:15.1".to_string(),
                )
            })
            .collect();
    };
    let mut w = lab(&[], &[]);
    outdated(&mut w, &["a", "b", "c"]);
    let p = w.plan();
    assert_eq!(
        (allowed(&p), p.recreate.clone()),
        (vec!["c".to_string()], vec!["c".to_string()])
    );
    assert!(p.desired["c"]
        .reason
        .contains("image postgres:15 → postgres:15.1"));
    // standbys replaced: the primary moves to b
    let mut w = lab(&[], &[]);
    outdated(&mut w, &["a"]);
    let p = w.plan();
    assert_eq!(p.status.target_primary.as_deref(), Some("b"));
    assert!(p.recreate.is_empty());
    // b primary, a its standby with the old pod, caught up: a's pod first, no failback yet
    let mut w = World::new(
        settled("b", &[("a", "sync"), ("c", "async")]),
        vec![
            ("a", read(standby("a", "b", 100))),
            (
                "b",
                read(primary("b", 100, &[("a", "sync"), ("c", "async")])),
            ),
            ("c", read(standby("c", "b", 100))),
        ],
    );
    w.status.observed_preferred_primary = Some("a".into());
    outdated(&mut w, &["a"]);
    let p = w.plan();
    assert_eq!(
        p.status.target_primary.as_deref(),
        Some("b"),
        "no failback to a pod about to go"
    );
    assert_eq!(p.recreate, vec!["a".to_string()]);
    // a's new pod runs and streams: failback
    w.outdated.clear();
    let p = w.plan();
    assert_eq!(p.status.target_primary.as_deref(), Some("a"));
    assert_eq!(reasons(&p), vec!["FailbackStarted"]);
}

/// `restart [MEMBER]`: every member asked whose server started before the request, in the
/// same order; a member started since is done.
#[test]
fn a_requested_restart_is_a_turn_like_any_other() {
    let world = |request: RestartRequest, started: &[(&str, u64)]| {
        let mut w = lab(&[], &[]);
        for (m, t) in started {
            let o = w.members.remove(*m).expect("member");
            w.members
                .insert(m.to_string(), with(o, |r| r.started_at_ms = Some(*t)));
        }
        w.restart = Some(request);
        w
    };
    let all = RestartRequest {
        members: vec![],
        at_ms: 1_000,
    };
    let p = world(all.clone(), &[("a", 500), ("b", 500), ("c", 500)]).plan();
    assert_eq!(allowed(&p), vec!["c"]);
    assert!(p.desired["c"].reason.contains("a requested restart"));
    let p = world(all.clone(), &[("a", 500), ("b", 500), ("c", 2_000)]).plan();
    assert_eq!(allowed(&p), vec!["b"]);
    let p = world(all.clone(), &[("a", 500), ("b", 2_000), ("c", 2_000)]).plan();
    assert_eq!(p.status.target_primary.as_deref(), Some("b"));
    let p = world(all, &[("a", 2_000), ("b", 2_000), ("c", 2_000)]).plan();
    assert!(allowed(&p).is_empty() && reasons(&p).is_empty());
    let only_b = RestartRequest {
        members: vec!["b".into()],
        at_ms: 1_000,
    };
    let p = world(only_b, &[("a", 500), ("b", 500), ("c", 500)]).plan();
    assert_eq!(allowed(&p), vec!["b"]);
}
