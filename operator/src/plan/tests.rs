//! Table tests of the brain: bootstrap, steady state, failover rules, switchover, failback,
//! spec changes, double failures, unknown members and a brain restarted mid-handover.

use std::collections::BTreeMap;

use super::*;
use crate::api::{MemberStatus, PgReplicaClusterSpec, PgReplicaClusterStatus, Role};
use crate::member::Lsn;
use crate::member::{ActualRole, DataHealth, DesiredRole, MemberReport, StandbyView, WalSender};

use crate::api::validate::TEST_LAB as LAB;

fn spec(edit: &[(&str, &str)]) -> PgReplicaClusterSpec {
    crate::api::validate::edited_spec(LAB, edit)
}

fn primary(name: &str, lsn: u64, standbys: &[(&str, &str)]) -> Observation {
    let mut r = MemberReport::new(name);
    r.role = ActualRole::Primary;
    r.running = true;
    r.server_process = true;
    r.data = DataHealth::Healthy;
    r.holds_lease = true;
    r.timeline = Some(1);
    r.current_lsn = Some(Lsn(lsn));
    r.standbys = standbys
        .iter()
        .map(|(n, sync)| StandbyView {
            name: n.to_string(),
            state: "streaming".into(),
            sync_state: crate::member::SyncState::from_pg(sync),
            flush_lsn: Some(Lsn(lsn)),
            replay_lsn: Some(Lsn(lsn)),
            replay_lag_seconds: None,
        })
        .collect();
    Observation::Reported(Box::new(r))
}

fn standby(name: &str, upstream: &str, received: u64) -> Observation {
    let mut r = MemberReport::new(name);
    r.role = ActualRole::Standby;
    r.running = true;
    r.data = DataHealth::Healthy;
    r.timeline = Some(1);
    r.received_lsn = Some(Lsn(received));
    r.replayed_lsn = Some(Lsn(received));
    r.streaming_from = Some(upstream.to_string());
    r.server_process = true;
    r.wal_sender = addresses().get(upstream).map(|a| WalSender {
        host: Some(a.host.clone()),
        port: a.port,
    });
    Observation::Reported(Box::new(r))
}

fn with(obs: Observation, f: impl FnOnce(&mut MemberReport)) -> Observation {
    match obs {
        Observation::Reported(mut r) => {
            f(&mut r);
            Observation::Reported(r)
        }
        other => other,
    }
}

fn lost(name: &str) -> Observation {
    let mut r = MemberReport::new(name);
    r.data = DataHealth::Lost {
        reason: "global/pg_control is gone".into(),
    };
    r.activity = "fenced: data directory lost".into();
    r.fenced = Some(crate::member::FenceReason::DataDirectoryLost);
    r.last_error = Some("data directory lost: global/pg_control is gone".into());
    Observation::Reported(Box::new(r))
}

fn unknown() -> Observation {
    Observation::Unknown {
        why: "connection refused".into(),
    }
}

fn addresses() -> BTreeMap<String, Address> {
    ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.to_string(),
                Address {
                    host: "127.0.0.1".into(),
                    port: 6000 + i as u16,
                },
            )
        })
        .collect()
}

/// A status where `primary` is settled and the given members were last seen with these sync states.
fn settled(primary: &str, sync: &[(&str, &str)]) -> PgReplicaClusterStatus {
    PgReplicaClusterStatus {
        current_primary: Some(primary.into()),
        target_primary: Some(primary.into()),
        observed_preferred_primary: Some("a".into()),
        members: sync
            .iter()
            .map(|(n, s)| MemberStatus {
                sync_state: Some(s.to_string()),
                timeline: Some(1),
                ..standby_status(n, true)
            })
            .collect(),
        ..Default::default()
    }
}

/// A standby's status with nothing but its name and readiness.
pub(super) fn standby_status(name: &str, ready: bool) -> MemberStatus {
    MemberStatus {
        name: name.to_string(),
        role: Role::Standby,
        ready,
        sync_state: None,
        timeline: None,
        received_lsn: None,
        replayed_lsn: None,
        replay_lag_seconds: None,
        replay_lag_bytes: None,
        frozen_at: None,
        frozen_locks: vec![],
        last_error: None,
        last_event: None,
        fenced: None,
        pending_restart: vec![],
        started_at: None,
        reloaded_at: None,
    }
}

struct World {
    spec: PgReplicaClusterSpec,
    status: PgReplicaClusterStatus,
    members: BTreeMap<String, Observation>,
    lease: Option<&'static str>,
    switchover: Option<&'static str>,
    outdated: BTreeMap<String, String>,
    volumes: BTreeMap<String, VolumeNote>,
    restart: Option<RestartRequest>,
    reload: Option<RestartRequest>,
}

impl World {
    fn new(status: PgReplicaClusterStatus, members: Vec<(&str, Observation)>) -> Self {
        let lease = members.iter().find_map(|(n, o)| {
            o.report().filter(|r| r.holds_lease).map(|_| match *n {
                "a" => "a",
                "b" => "b",
                "c" => "c",
                _ => "d",
            })
        });
        Self {
            spec: spec(&[]),
            status,
            members: members
                .into_iter()
                .map(|(n, o)| (n.to_string(), o))
                .collect(),
            lease,
            switchover: None,
            outdated: BTreeMap::new(),
            volumes: BTreeMap::new(),
            restart: None,
            reload: None,
        }
    }

    fn plan(&self) -> Plan {
        let lease = LeaseView {
            holder: self.lease.map(String::from),
            unreadable: None,
        };
        self.plan_with(&addresses(), &lease)
    }

    /// The plan with other addresses or another view of the lease.
    fn plan_with(&self, addresses: &BTreeMap<String, Address>, lease: &LeaseView) -> Plan {
        plan(&Input {
            cluster: "lab",
            spec: &self.spec,
            generation: 1,
            status: &self.status,
            members: &self.members,
            addresses,
            lease,
            switchover_to: self.switchover,
            outdated: &self.outdated,
            volumes: &self.volumes,
            restart: self.restart.as_ref(),
            reload: self.reload.as_ref(),
            now_ms: 1_800_000_000_000,
        })
    }
}

fn role(plan: &Plan, member: &str) -> Option<String> {
    plan.desired.get(member).map(|d| match &d.role {
        DesiredRole::Primary {
            bootstrap, sync, ..
        } => {
            format!("primary(bootstrap={bootstrap}, sync='{}')", sync.setting())
        }
        DesiredRole::Standby {
            upstream,
            apply_delay_ms,
            ..
        } => format!("standby({}, {apply_delay_ms}ms)", upstream.member),
        DesiredRole::Stopped => "stopped".into(),
    })
}

/// The plan's `SwitchoverRefused` event (there must be one).
fn refusal(plan: &Plan) -> &PlanEvent {
    plan.events
        .iter()
        .find(|e| e.reason == EventReason::SwitchoverRefused)
        .expect("a SwitchoverRefused event")
}

fn reasons(plan: &Plan) -> Vec<&'static str> {
    plan.events.iter().map(|e| e.reason.as_str()).collect()
}

#[test]
fn bootstrap_starts_on_the_preferred_primary_only() {
    let w = World::new(
        PgReplicaClusterStatus::default(),
        vec![("a", unknown()), ("b", unknown()), ("c", unknown())],
    );
    let p = w.plan();
    assert_eq!(
        role(&p, "a").as_deref(),
        Some("primary(bootstrap=true, sync='')")
    );
    assert_eq!(role(&p, "b"), None);
    assert_eq!(role(&p, "c"), None);
    assert_eq!(p.status.target_primary.as_deref(), Some("a"));
    assert_eq!(p.status.current_primary, None);
    assert_eq!(p.status.phase, Some(crate::api::Phase::Bootstrapping));
    assert_eq!(reasons(&p), vec!["Bootstrapping"]);
    assert_eq!(p.routes.rw, None);
}

#[test]
fn bootstrapped_primary_is_adopted_and_standbys_follow() {
    let status = PgReplicaClusterStatus {
        target_primary: Some("a".into()),
        ..Default::default()
    };
    let w = World::new(
        status,
        vec![
            ("a", primary("a", 100, &[])),
            ("b", unknown()),
            ("c", unknown()),
        ],
    );
    let p = w.plan();
    assert_eq!(p.status.current_primary.as_deref(), Some("a"));
    assert_eq!(role(&p, "b").as_deref(), Some("standby(a, 0ms)"));
    assert_eq!(role(&p, "c").as_deref(), Some("standby(a, 3000ms)"));
    assert_eq!(p.routes.rw.as_deref(), Some("a"));
    assert_eq!(reasons(&p), vec!["Bootstrapped"]);
}

#[test]
fn sync_names_follow_durability_and_streaming() {
    let cases = [
        (
            "Preferred",
            vec![("b", "sync"), ("c", "async")],
            "FIRST 1 (\"b\")",
        ),
        ("Preferred", vec![("c", "async")], ""),
        ("Required", vec![("c", "async")], "FIRST 1 (\"b\")"),
        (
            "Required",
            vec![("b", "sync"), ("c", "async")],
            "FIRST 1 (\"b\")",
        ),
    ];
    for (durability, streaming, want) in cases {
        let mut w = World::new(
            settled("a", &[]),
            vec![
                ("a", primary("a", 100, &streaming)),
                ("b", standby("b", "a", 100)),
                ("c", standby("c", "a", 100)),
            ],
        );
        w.spec = spec(&[(
            "primary: a",
            &format!("primary: a\n  durability: {durability}"),
        )]);
        let p = w.plan();
        assert_eq!(
            role(&p, "a"),
            Some(format!("primary(bootstrap=false, sync='{want}')")),
            "{durability} {streaming:?}"
        );
    }
}

/// The lab settled: a primary, b sync, c async (3 s delay) slightly behind.
fn healthy_lab() -> World {
    World::new(
        settled("a", &[("b", "sync"), ("c", "async")]),
        vec![
            ("a", primary("a", 100, &[("b", "sync"), ("c", "async")])),
            ("b", standby("b", "a", 100)),
            ("c", standby("c", "a", 90)),
        ],
    )
}

#[test]
fn healthy_cluster_is_ready_with_routes_and_topology() {
    let w = healthy_lab();
    let p = w.plan();
    assert_eq!(p.routes.rw.as_deref(), Some("a"));
    // c applies WAL 3 s late: it is a standby, but reads never go to it
    assert_eq!(p.routes.ro, vec!["b".to_string()]);
    assert_eq!(p.routes.standbys, vec!["b".to_string(), "c".to_string()]);
    assert_eq!(p.status.ready_members.as_deref(), Some("3/3"));
    assert_eq!(
        p.status.topology.as_deref(),
        Some("a=primary b=sync c=async(3s)")
    );
    assert_eq!(p.status.phase, Some(crate::api::Phase::Healthy));
    assert!(p.events.is_empty(), "{:?}", p.events);
    let ready = p
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.status, "True");
    // lastTransitionTime is kept while the condition does not flip
    let mut w2 = World::new(p.status.clone(), vec![]);
    w2.members = w.members.clone();
    w2.lease = w.lease;
    let p2 = w2.plan();
    let ready2 = p2
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.last_transition_time, ready2.last_transition_time);
}

/// The lab's stage 2: a loses its data, b (the sync standby) takes over.
#[test]
fn data_loss_fails_over_to_the_sync_standby_at_once() {
    let mut w = World::new(
        settled("a", &[("b", "sync"), ("c", "async")]),
        vec![
            ("a", lost("a")),
            ("b", standby("b", "a", 100)),
            ("c", standby("c", "a", 100)),
        ],
    );
    w.lease = None; // the agent released it when it saw the loss
    let p = w.plan();
    assert_eq!(p.status.target_primary.as_deref(), Some("b"));
    assert_eq!(p.status.current_primary.as_deref(), Some("a"));
    assert_eq!(role(&p, "a").as_deref(), Some("stopped"));
    assert_eq!(
        role(&p, "b").as_deref(),
        Some("primary(bootstrap=false, sync='')")
    );
    assert_eq!(
        role(&p, "c").as_deref(),
        Some("standby(b, 3000ms)"),
        "re-pointed to the target before it is promoted"
    );
    assert_eq!(
        reasons(&p),
        vec!["PrimaryLost", "FailoverStarted", "Fenced"]
    );
    assert_eq!(p.status.phase, Some(crate::api::Phase::FailingOver));
    assert_eq!(p.routes.rw, None);
    let record = p.status.last_failover.as_ref().expect("recorded");
    assert_eq!((record.from.as_str(), record.to.as_str()), ("a", "b"));
    assert!(record.reason.contains("global/pg_control is gone"));
    // the fence is told once, not on every look while a is re-cloned
    let mut again = World::new(p.status.clone(), vec![]);
    again.members = w.members.clone();
    again.lease = None;
    let p2 = again.plan();
    assert!(!reasons(&p2).contains(&"Fenced"), "{:?}", reasons(&p2));
    assert_eq!(
        p2.status.members[0].fenced.as_deref(),
        Some("DataDirectoryLost"),
        "status says why a is fenced"
    );
}

#[test]
fn when_the_primary_is_lost() {
    // (what, a's observation, lease holder, expected target or None when we wait/block)
    let cases: Vec<(&str, Observation, Option<&'static str>, Option<&str>)> = vec![
        ("unreachable, lease valid: wait", unknown(), Some("a"), None),
        (
            "unreachable, lease expired: fail over",
            unknown(),
            None,
            Some("b"),
        ),
        (
            "postgres down, lease held: agent restarts it",
            with(primary("a", 1, &[]), |r| {
                r.running = false;
                r.role = ActualRole::Stopped;
            }),
            Some("a"),
            None,
        ),
        (
            "postgres down, lease free: fail over",
            with(primary("a", 1, &[]), |r| {
                r.running = false;
                r.role = ActualRole::Stopped;
                r.holds_lease = false;
            }),
            None,
            Some("b"),
        ),
        (
            "data lost, lease not yet released: fail over",
            lost("a"),
            Some("a"),
            Some("b"),
        ),
    ];
    for (what, a, lease, want) in cases {
        let mut w = World::new(
            settled("a", &[("b", "sync"), ("c", "async")]),
            vec![
                ("a", a),
                ("b", standby("b", "a", 100)),
                ("c", standby("c", "a", 100)),
            ],
        );
        w.lease = lease;
        let p = w.plan();
        let target = p.status.target_primary.as_deref().filter(|t| *t != "a");
        assert_eq!(target, want, "{what}");
        if want.is_none() {
            assert!(p.waiting_for.is_some(), "{what}: says what it waits for");
            assert!(
                !p.desired.contains_key("a"),
                "{what}: a primary that cannot be seen keeps its desired state (no relaxed sync names)"
            );
        }
    }
}

#[test]
fn data_loss_with_lease_still_held_waits_for_release_before_promoting() {
    let mut w = World::new(
        settled("a", &[("b", "sync")]),
        vec![
            ("a", lost("a")),
            ("b", standby("b", "a", 100)),
            ("c", standby("c", "a", 100)),
        ],
    );
    w.lease = Some("a");
    let p = w.plan();
    assert_eq!(p.status.target_primary.as_deref(), Some("b"));
    assert_eq!(
        role(&p, "b").as_deref(),
        Some("standby(a, 0ms)"),
        "not promoted while a holds the lease"
    );
    assert!(p
        .waiting_for
        .as_deref()
        .unwrap_or("")
        .contains("lease held by a"));
}

#[test]
fn failover_candidates() {
    // (what, last sync states, observations of b and d, expected Ok(candidate) or Err(substring))
    type Case = (
        &'static str,
        Vec<(&'static str, &'static str)>,
        Vec<(&'static str, Observation)>,
        Result<&'static str, &'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "sync standby wins",
            vec![("b", "sync"), ("c", "async")],
            vec![("b", standby("b", "a", 100)), ("c", standby("c", "a", 200))],
            Ok("b"),
        ),
        (
            "no sync standby at loss",
            vec![("b", "async"), ("c", "async")],
            vec![("b", standby("b", "a", 100)), ("c", standby("c", "a", 100))],
            Err("no standby was synchronous"),
        ),
        (
            "sync standby unknown: wait for it",
            vec![("b", "sync")],
            vec![("b", unknown()), ("c", standby("c", "a", 100))],
            Err("b was synchronous and its state is unknown"),
        ),
        (
            "double failure: sync standby lost too",
            vec![("b", "sync")],
            vec![("b", lost("b")), ("c", standby("c", "a", 100))],
            Err("b lost its data"),
        ),
        (
            "potential with more WAL wins",
            vec![("b", "sync"), ("d", "potential")],
            vec![("b", standby("b", "a", 100)), ("d", standby("d", "a", 150))],
            Ok("d"),
        ),
        (
            "tie on received: replayed decides",
            vec![("b", "sync"), ("d", "potential")],
            vec![
                (
                    "b",
                    with(standby("b", "a", 100), |r| r.replayed_lsn = Some(Lsn(90))),
                ),
                (
                    "d",
                    with(standby("d", "a", 100), |r| r.replayed_lsn = Some(Lsn(95))),
                ),
            ],
            Ok("d"),
        ),
        (
            "full tie: name decides",
            vec![("d", "potential"), ("b", "sync")],
            vec![("b", standby("b", "a", 100)), ("d", standby("d", "a", 100))],
            Ok("b"),
        ),
        (
            "potential unknown blocks even if sync is known",
            vec![("b", "sync"), ("d", "potential")],
            vec![("b", standby("b", "a", 100)), ("d", unknown())],
            Err("d was synchronous and its state is unknown"),
        ),
        (
            "sync standby still cloning",
            vec![("b", "sync")],
            vec![(
                "b",
                with(standby("b", "a", 1), |r| {
                    r.role = ActualRole::Preparing;
                    r.running = false;
                }),
            )],
            Err("b is still preparing"),
        ),
    ];
    for (what, sync, obs, want) in cases {
        let mut members = vec![("a", lost("a"))];
        members.extend(obs);
        let mut w = World::new(settled("a", &sync), members);
        w.spec = spec(&[("    - {name: c, replication: Async, applyDelay: 3s}", "    - {name: c, replication: Async, applyDelay: 3s}\n    - {name: d, replication: Sync}")]);
        w.lease = None;
        let p = w.plan();
        match want {
            Ok(candidate) => assert_eq!(
                p.status.target_primary.as_deref(),
                Some(candidate),
                "{what}"
            ),
            Err(fragment) => {
                assert_eq!(
                    p.status.target_primary.as_deref(),
                    Some("a"),
                    "{what}: nothing promoted"
                );
                let blocked = p.blocked.clone().unwrap_or_default();
                assert!(blocked.contains(fragment), "{what}: {blocked}");
                assert_eq!(p.status.phase, Some(crate::api::Phase::Blocked), "{what}");
                let cond = p
                    .status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "FailoverBlocked")
                    .expect("condition");
                assert_eq!(cond.status, "True", "{what}");
            }
        }
    }
}

#[test]
fn a_delayed_member_is_never_a_candidate() {
    let mut w = World::new(
        settled("a", &[("c", "sync")]),
        vec![
            ("a", lost("a")),
            ("b", unknown()),
            ("c", standby("c", "a", 100)),
        ],
    );
    w.lease = None;
    let p = w.plan();
    assert_eq!(p.status.target_primary.as_deref(), Some("a"));
    assert!(p
        .blocked
        .unwrap_or_default()
        .contains("c is not a promotable Sync member"));
}

#[test]
fn blocked_failover_reports_once() {
    let mut w = World::new(
        settled("a", &[("b", "async")]),
        vec![
            ("a", lost("a")),
            ("b", standby("b", "a", 1)),
            ("c", standby("c", "a", 1)),
        ],
    );
    w.lease = None;
    let first = w.plan();
    assert_eq!(
        reasons(&first),
        vec!["PrimaryLost", "FailoverBlocked", "Fenced"]
    );
    w.status = first.status.clone();
    let second = w.plan();
    assert!(second.events.is_empty(), "{:?}", second.events);
    assert!(second.blocked.is_some());
}

#[test]
fn failover_completes_when_the_target_runs_as_primary_with_the_lease() {
    let mut status = settled("a", &[("b", "sync"), ("c", "async")]);
    status.target_primary = Some("b".into());
    let w = World::new(
        status,
        vec![
            ("a", lost("a")),
            (
                "b",
                with(primary("b", 200, &[("c", "async")]), |r| {
                    r.timeline = Some(2)
                }),
            ),
            ("c", standby("c", "a", 100)),
        ],
    );
    let p = w.plan();
    assert_eq!(p.status.current_primary.as_deref(), Some("b"));
    assert_eq!(
        role(&p, "a").as_deref(),
        Some("standby(b, 0ms)"),
        "the lost member re-clones from b"
    );
    assert_eq!(role(&p, "c").as_deref(), Some("standby(b, 3000ms)"));
    assert_eq!(
        role(&p, "b").as_deref(),
        Some("primary(bootstrap=false, sync='')")
    );
    assert_eq!(p.routes.rw.as_deref(), Some("b"));
    assert_eq!(p.status.timeline, Some(2));
    assert!(reasons(&p).contains(&"Promoted"));
}

/// A brain restarted at any step of a failover decides the same thing again.
#[test]
fn restart_in_the_middle_of_each_step_is_idempotent() {
    type Step<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, Observation)>,
        Option<&'static str>,
    );
    let steps: Vec<Step> = vec![
        (
            "chosen, not promoted",
            "b",
            vec![
                ("a", lost("a")),
                ("b", standby("b", "a", 100)),
                ("c", standby("c", "a", 100)),
            ],
            None,
        ),
        (
            "promoting",
            "b",
            vec![
                ("a", lost("a")),
                (
                    "b",
                    with(standby("b", "a", 100), |r| {
                        r.activity = "promoting".into();
                    }),
                ),
                ("c", standby("c", "a", 100)),
            ],
            None,
        ),
        (
            "promoted",
            "b",
            vec![
                ("a", lost("a")),
                ("b", primary("b", 200, &[])),
                ("c", standby("c", "a", 100)),
            ],
            Some("b"),
        ),
        (
            "old primary recloning",
            "b",
            vec![
                (
                    "a",
                    with(standby("a", "b", 0), |r| {
                        r.role = ActualRole::Preparing;
                        r.running = false;
                        r.activity = "cloning from b: 40%".into();
                    }),
                ),
                ("b", primary("b", 200, &[])),
                ("c", standby("c", "b", 200)),
            ],
            Some("b"),
        ),
    ];
    for (what, target, members, lease) in steps {
        let mut status = settled("a", &[("b", "sync"), ("c", "async")]);
        status.target_primary = Some(target.into());
        let mut w = World::new(status, members);
        w.lease = lease;
        let first = w.plan();
        w.status = first.status.clone();
        let again = w.plan();
        assert_eq!(
            first.desired, again.desired,
            "{what}: same desired after a restart"
        );
        assert_eq!(
            first.status.current_primary, again.status.current_primary,
            "{what}"
        );
        assert_eq!(
            first.status.target_primary, again.status.target_primary,
            "{what}"
        );
    }
}

#[test]
fn switchover_stops_the_old_primary_then_promotes_once_the_checkpoint_arrived() {
    let healthy = vec![
        ("a", primary("a", 100, &[("b", "sync"), ("c", "async")])),
        ("b", standby("b", "a", 100)),
        ("c", standby("c", "a", 100)),
    ];
    let mut w = World::new(settled("a", &[("b", "sync"), ("c", "async")]), healthy);
    w.spec = spec(&[("primary: a", "primary: a\n  failback: Manual")]);
    w.switchover = Some("b");
    let p = w.plan();
    assert!(p.switchover_consumed);
    assert_eq!(p.status.target_primary.as_deref(), Some("b"));
    assert_eq!(role(&p, "a").as_deref(), Some("stopped"));
    assert_eq!(role(&p, "b").as_deref(), Some("standby(a, 0ms)"));
    assert_eq!(p.status.phase, Some(crate::api::Phase::SwitchingOver));
    assert_eq!(reasons(&p), vec!["SwitchoverStarted"]);

    // a stopped cleanly at checkpoint 150; b has received only up to 150: wait
    let stopped_a = with(primary("a", 150, &[]), |r| {
        r.running = false;
        r.role = ActualRole::Stopped;
        r.holds_lease = false;
        r.shutdown_checkpoint = Some(Lsn(150));
    });
    let mut w2 = World::new(
        p.status.clone(),
        vec![
            ("a", stopped_a.clone()),
            ("b", standby("b", "a", 150)),
            ("c", standby("c", "a", 150)),
        ],
    );
    w2.lease = None;
    let p2 = w2.plan();
    assert_eq!(role(&p2, "b").as_deref(), Some("standby(a, 0ms)"));
    assert_eq!(
        p2.status.phase,
        Some(crate::api::Phase::SwitchingOver),
        "a planned handover stays a switchover"
    );
    assert!(p2
        .waiting_for
        .unwrap_or_default()
        .contains("shutdown checkpoint"));

    let mut w3 = World::new(
        p.status.clone(),
        vec![
            ("a", stopped_a),
            ("b", standby("b", "a", 190)),
            ("c", standby("c", "a", 190)),
        ],
    );
    w3.lease = None;
    let p3 = w3.plan();
    assert_eq!(
        role(&p3, "b").as_deref(),
        Some("primary(bootstrap=false, sync='')")
    );
    assert_eq!(role(&p3, "a").as_deref(), Some("stopped"));
}

/// A requested reload reaches every running member asked at once, and only until it has read
/// its configuration since.
#[test]
fn a_requested_reload_reaches_the_members_asked() {
    let reloaded = |obs: Observation, at: u64| with(obs, |r| r.reloaded_at_ms = Some(at));
    // (what, members asked, b read at, c read at, b gets it, c gets it, a gets it)
    let cases = [
        (
            "every member, none read since",
            vec![],
            500,
            500,
            true,
            true,
            true,
        ),
        ("b only", vec!["b"], 500, 500, true, false, false),
        ("b read since", vec!["b"], 1_500, 500, false, false, false),
        (
            "every member, c read since",
            vec![],
            500,
            1_500,
            true,
            false,
            true,
        ),
    ];
    for (what, members, b_at, c_at, b_wants, c_wants, a_wants) in cases {
        let mut w = World::new(
            settled("a", &[("b", "sync"), ("c", "async")]),
            vec![
                (
                    "a",
                    reloaded(primary("a", 100, &[("b", "sync"), ("c", "async")]), 500),
                ),
                ("b", reloaded(standby("b", "a", 100), b_at)),
                ("c", reloaded(standby("c", "a", 100), c_at)),
            ],
        );
        w.reload = Some(RestartRequest {
            members: members.iter().map(|m| m.to_string()).collect(),
            at_ms: 1_000,
        });
        let p = w.plan();
        let asked = |m: &str| p.desired[m].reload_before_ms == Some(1_000);
        assert_eq!(
            (asked("a"), asked("b"), asked("c")),
            (a_wants, b_wants, c_wants),
            "{what}"
        );
    }
}

/// The CI failure of 9135971: c was pointed at the target while the old primary, stopping, was
/// still sending it WAL; the target (cloned after the last timeline switch) did not have that WAL
/// and c could never follow it. Every member keeps following the old primary until it is down.
#[test]
fn a_switchover_repoints_the_standbys_only_once_the_old_primary_is_down() {
    let mut status = settled("a", &[("b", "sync"), ("c", "async")]);
    status.target_primary = Some("b".into());
    status.last_failover = Some(crate::api::FailoverRecord {
        kind: Some(crate::api::HandoverKind::Switchover),
        from: "a".into(),
        to: "b".into(),
        reason: "switchover to b requested".into(),
        started_at: "2026-12-01T00:00:00Z".into(),
        finished_at: None,
    });
    let stopping = |checkpoint: Option<u64>, server_process: bool| {
        with(primary("a", 150, &[]), |r| {
            r.running = false;
            r.role = ActualRole::Stopped;
            r.holds_lease = false;
            r.server_process = server_process;
            r.shutdown_checkpoint = checkpoint.map(Lsn);
        })
    };
    // (what, a, c's desired upstream, waiting for)
    let cases = [
        (
            "a still shutting down: its senders are at work",
            stopping(None, true),
            "standby(a, 3000ms)",
            "a to finish its clean shutdown",
        ),
        (
            "a down with its shutdown checkpoint",
            stopping(Some(150), false),
            "standby(b, 3000ms)",
            "b to receive a's shutdown checkpoint",
        ),
        (
            "a down without a clean checkpoint (escalated stop)",
            stopping(None, false),
            "standby(b, 3000ms)",
            "",
        ),
    ];
    for (what, a, c_upstream, waiting) in cases {
        let mut w = World::new(
            status.clone(),
            vec![
                ("a", a),
                ("b", standby("b", "a", 140)),
                ("c", standby("c", "a", 140)),
            ],
        );
        w.lease = None;
        w.spec = spec(&[("primary: a", "primary: a\n  failback: Manual")]);
        let p = w.plan();
        assert_eq!(role(&p, "a").as_deref(), Some("stopped"), "{what}");
        assert_eq!(role(&p, "c").as_deref(), Some(c_upstream), "{what}");
        if !waiting.is_empty() {
            assert_eq!(role(&p, "b").as_deref(), Some("standby(a, 0ms)"), "{what}");
        }
        let waiting_for = p.waiting_for.unwrap_or_default();
        assert!(waiting_for.contains(waiting), "{what}: {waiting_for}");
    }
}

/// A delayed member streams the end of the old timeline, then waits for its own replay before it
/// streams the new one: a failback then would leave it needing WAL only the old primary has.
#[test]
fn failback_waits_for_every_member_on_the_current_timeline() {
    for (c_timeline, want) in [(1, false), (2, true)] {
        let mut status = settled("b", &[("a", "sync"), ("c", "async")]);
        status.observed_preferred_primary = Some("a".into());
        let b = with(primary("b", 500, &[("a", "sync"), ("c", "async")]), |r| {
            r.timeline = Some(2)
        });
        let w = World::new(
            status,
            vec![
                ("a", with(standby("a", "b", 500), |r| r.timeline = Some(2))),
                ("b", b),
                (
                    "c",
                    with(standby("c", "b", 300), |r| r.timeline = Some(c_timeline)),
                ),
            ],
        );
        let p = w.plan();
        let started = p.status.target_primary.as_deref() == Some("a");
        assert_eq!(started, want, "c on timeline {c_timeline}");
    }
}

#[test]
fn switchover_requests_are_checked() {
    let cases: Vec<(&str, &'static str, Observation, &str)> = vec![
        (
            "to the primary itself",
            "a",
            standby("b", "a", 1),
            "already the primary",
        ),
        ("to a stranger", "z", standby("b", "a", 1), "not a member"),
        (
            "to a member not streaming",
            "b",
            with(standby("b", "a", 1), |r| {
                r.streaming_from = None;
                r.activity = "connecting".into();
            }),
            "not streaming from a",
        ),
        ("to an unreachable member", "b", unknown(), "not reachable"),
    ];
    for (what, to, b, fragment) in cases {
        let mut w = World::new(
            settled("a", &[("b", "sync")]),
            vec![
                ("a", primary("a", 100, &[("b", "sync")])),
                ("b", b),
                ("c", standby("c", "a", 1)),
            ],
        );
        w.spec = spec(&[("primary: a", "primary: a\n  failback: Manual")]);
        w.switchover = Some(to);
        let p = w.plan();
        assert!(p.switchover_consumed, "{what}");
        assert_eq!(p.status.target_primary.as_deref(), Some("a"), "{what}");
        let refused = refusal(&p);
        assert!(
            refused.message.contains(fragment),
            "{what}: {}",
            refused.message
        );
    }
}

#[test]
fn switchover_away_from_the_preferred_primary_needs_manual_failback() {
    let mut w = World::new(
        settled("a", &[("b", "sync")]),
        vec![
            ("a", primary("a", 100, &[("b", "sync")])),
            ("b", standby("b", "a", 100)),
            ("c", standby("c", "a", 100)),
        ],
    );
    w.switchover = Some("b");
    let p = w.plan();
    assert_eq!(p.status.target_primary.as_deref(), Some("a"));
    let refused = refusal(&p);
    assert!(
        refused.message.contains("failback is Automatic"),
        "{}",
        refused.message
    );
}

#[test]
fn failback() {
    // (what, failback mode, observed preferred, a's sync state on b, a's lag, c, expect failback)
    let cases = [
        (
            "automatic, a in sync",
            "Automatic",
            "a",
            "sync",
            None,
            standby("c", "b", 500),
            true,
        ),
        (
            "automatic, a async still",
            "Automatic",
            "a",
            "async",
            None,
            standby("c", "b", 500),
            false,
        ),
        (
            "automatic, a lagging",
            "Automatic",
            "a",
            "sync",
            Some(5.0),
            standby("c", "b", 500),
            false,
        ),
        (
            "manual: stay on b",
            "Manual",
            "a",
            "sync",
            None,
            standby("c", "b", 500),
            false,
        ),
        (
            "manual, spec.primary changed to a",
            "Manual",
            "b",
            "sync",
            None,
            standby("c", "b", 500),
            true,
        ),
        // moving the primary while c still catches up would make it chase WAL a may not have
        (
            "automatic, c not following b yet",
            "Automatic",
            "a",
            "sync",
            None,
            with(standby("c", "a", 400), |r| r.streaming_from = None),
            false,
        ),
        (
            "automatic, c down",
            "Automatic",
            "a",
            "sync",
            None,
            unknown(),
            true,
        ),
    ];
    for (what, mode, observed, a_sync, lag, c, want) in cases {
        let mut status = settled("b", &[("a", a_sync), ("c", "async")]);
        status.observed_preferred_primary = Some(observed.into());
        let b = with(primary("b", 500, &[("a", a_sync), ("c", "async")]), |r| {
            r.standbys[0].replay_lag_seconds = lag;
        });
        let mut w = World::new(
            status,
            vec![("a", standby("a", "b", 500)), ("b", b), ("c", c)],
        );
        w.spec = spec(&[("primary: a", &format!("primary: a\n  failback: {mode}"))]);
        let p = w.plan();
        let started = p.status.target_primary.as_deref() == Some("a");
        assert_eq!(started, want, "{what}");
        if want {
            assert_eq!(role(&p, "b").as_deref(), Some("stopped"), "{what}");
            assert!(reasons(&p).contains(&"FailbackStarted"), "{what}");
        }
    }
}

#[test]
fn a_target_that_fails_during_the_handover_is_dropped() {
    let mut status = settled("a", &[("b", "sync")]);
    status.target_primary = Some("b".into());
    let mut w = World::new(
        status,
        vec![
            ("a", lost("a")),
            ("b", lost("b")),
            ("c", standby("c", "a", 1)),
        ],
    );
    w.lease = None;
    let p = w.plan();
    assert_eq!(p.status.target_primary.as_deref(), Some("a"));
    assert!(reasons(&p).contains(&"FailoverBlocked"));
}

#[test]
fn spec_changes_while_running() {
    let members = || {
        vec![
            ("a", primary("a", 100, &[("b", "sync"), ("c", "async")])),
            ("b", standby("b", "a", 100)),
            ("c", standby("c", "a", 100)),
        ]
    };
    // removing c: no desired state for it, no slot for it
    let mut w = World::new(settled("a", &[("b", "sync")]), members());
    w.spec = spec(&[("    - {name: c, replication: Async, applyDelay: 3s}\n", "")]);
    let p = w.plan();
    assert!(!p.desired.contains_key("c"));
    match &p.desired["a"].role {
        DesiredRole::Primary { slots, .. } => assert_eq!(slots, &vec!["pgreplica_b".to_string()]),
        other => panic!("{other:?}"),
    }
    // a new delay for c
    let mut w = World::new(settled("a", &[("b", "sync")]), members());
    w.spec = spec(&[("applyDelay: 3s", "applyDelay: 10s")]);
    assert_eq!(role(&w.plan(), "c").as_deref(), Some("standby(a, 10000ms)"));
    // c becomes Sync: it joins the sync names once it streams
    let mut w = World::new(settled("a", &[("b", "sync")]), members());
    w.spec = spec(&[(
        "{name: c, replication: Async, applyDelay: 3s}",
        "{name: c, replication: Sync}",
    )]);
    assert_eq!(
        role(&w.plan(), "a").as_deref(),
        Some("primary(bootstrap=false, sync='FIRST 1 (\"b\", \"c\")')")
    );
    // a new member d gets a slot and follows a
    let mut w = World::new(settled("a", &[("b", "sync")]), members());
    w.spec = spec(&[(
        "    - {name: c, replication: Async, applyDelay: 3s}",
        "    - {name: c, replication: Async, applyDelay: 3s}\n    - {name: d, replication: Async}",
    )]);
    let p = w.plan();
    assert_eq!(role(&p, "d").as_deref(), Some("standby(a, 0ms)"));
    match &p.desired["a"].role {
        DesiredRole::Primary { slots, .. } => assert!(slots.contains(&"pgreplica_d".to_string())),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_first_clone_is_cloning_and_a_lost_member_is_recloning() {
    let preparing = |name: &str| {
        with(standby(name, "a", 0), |r| {
            r.role = ActualRole::Preparing;
            r.running = false;
            r.activity = "cloning from a: 10%".into();
        })
    };
    // b is new: no status of it yet
    let w = World::new(
        settled("a", &[]),
        vec![
            ("a", primary("a", 100, &[])),
            ("b", preparing("b")),
            ("c", standby("c", "a", 100)),
        ],
    );
    assert_eq!(reasons(&w.plan()), vec!["Cloning"]);
    // b was a member with a timeline before: its data is being replaced
    let mut status = settled("a", &[("b", "sync")]);
    status.members[0].role = Role::Standby;
    let w = World::new(
        status,
        vec![
            ("a", primary("a", 100, &[])),
            ("b", preparing("b")),
            ("c", standby("c", "a", 100)),
        ],
    );
    assert_eq!(reasons(&w.plan()), vec!["Recloning"]);
}

const TWO_SYNC: &str =
    "    - {name: c, replication: Async, applyDelay: 3s}\n    - {name: d, replication: Sync}";

fn two_sync(edit: &[(&str, &str)]) -> PgReplicaClusterSpec {
    let mut edits = vec![(
        "    - {name: c, replication: Async, applyDelay: 3s}",
        TWO_SYNC,
    )];
    edits.extend_from_slice(edit);
    spec(&edits)
}

/// The primary's agent stalls (SIGSTOP) while its PostgreSQL keeps running: b is chosen, but d
/// still streams from a and would confirm a's commits after b is promoted (issue 10, defect 1).
#[test]
fn sever_then_promote() {
    let a_stalled = unknown;
    let d_at = |upstream: &str, lsn: u64| standby("d", upstream, lsn);
    // (what, a, d, lease holder, expected role of b, expected role of d, waiting fragment)
    type Case = (
        &'static str,
        Observation,
        Observation,
        Option<&'static str>,
        &'static str,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "a unseen, d still streams from a: d re-pointed to b, b not promoted",
            a_stalled(),
            d_at("a", 100),
            None,
            "standby(a, 0ms)",
            "standby(b, 0ms)",
            "d still replicates from a",
        ),
        (
            "a unseen, d's receiver connected to a but not streaming: still waits",
            a_stalled(),
            with(d_at("a", 100), |r| r.streaming_from = None),
            None,
            "standby(a, 0ms)",
            "standby(b, 0ms)",
            "d still replicates from a",
        ),
        (
            "a unseen, d cannot be seen: waits for it",
            a_stalled(),
            unknown(),
            None,
            "standby(a, 0ms)",
            "standby(b, 0ms)",
            "d cannot be seen",
        ),
        (
            "a unseen, d's server does not answer: waits",
            a_stalled(),
            with(d_at("a", 100), |r| {
                r.running = false;
                r.role = ActualRole::Stopped;
            }),
            None,
            "standby(a, 0ms)",
            "standby(b, 0ms)",
            "d still replicates from a",
        ),
        (
            "a unseen, d streams from b: promote b",
            a_stalled(),
            d_at("b", 100),
            None,
            "primary(bootstrap=false, sync='')",
            "standby(b, 0ms)",
            "b to promote",
        ),
        (
            "a unseen, d stopped (no server): promote b",
            a_stalled(),
            with(d_at("a", 100), |r| {
                r.running = false;
                r.server_process = false;
                r.role = ActualRole::Stopped;
                r.wal_sender = None;
            }),
            None,
            "primary(bootstrap=false, sync='')",
            "standby(b, 0ms)",
            "b to promote",
        ),
        (
            "a's server runs without answering (postmaster stalled): sever first",
            with(primary("a", 100, &[]), |r| {
                r.running = false;
                r.role = ActualRole::Stopped;
                r.holds_lease = false;
            }),
            d_at("a", 100),
            None,
            "standby(a, 0ms)",
            "standby(b, 0ms)",
            "d still replicates from a",
        ),
        (
            "a's data lost and its server stopped: nothing to sever, promote at once",
            lost("a"),
            d_at("a", 100),
            None,
            "primary(bootstrap=false, sync='')",
            "standby(b, 0ms)",
            "b to promote",
        ),
        (
            "severed, lease still held by a: wait for it",
            a_stalled(),
            d_at("b", 100),
            Some("a"),
            "standby(a, 0ms)",
            "standby(b, 0ms)",
            "lease held by a",
        ),
    ];
    for (what, a, d, lease, want_b, want_d, waiting) in cases {
        let mut status = settled("a", &[("b", "sync"), ("c", "async"), ("d", "potential")]);
        status.target_primary = Some("b".into());
        let mut w = World::new(
            status,
            vec![
                ("a", a),
                ("b", standby("b", "a", 100)),
                ("c", standby("c", "a", 100)),
                ("d", d),
            ],
        );
        w.spec = two_sync(&[]);
        w.lease = lease;
        let p = w.plan();
        assert_eq!(role(&p, "b").as_deref(), Some(want_b), "{what}: b");
        assert_eq!(role(&p, "d").as_deref(), Some(want_d), "{what}: d");
        assert_eq!(
            role(&p, "c").as_deref(),
            Some("standby(b, 3000ms)"),
            "{what}: c re-pointed to the target too"
        );
        let why = p.waiting_for.clone().unwrap_or_default();
        assert!(why.contains(waiting), "{what}: waiting for {why:?}");
        let fenced: Vec<&str> = p.fence.iter().map(|(m, _)| m.as_str()).collect();
        let mut want_fenced = Vec::new();
        if w.members.get("a").is_some_and(|o| o.report().is_none()) {
            want_fenced.push("a");
        }
        if w.members.get("d").is_some_and(|o| o.report().is_none()) {
            want_fenced.push("d");
        }
        assert_eq!(fenced, want_fenced, "{what}: fenced from outside");
    }
}

/// A Sync member with `promotable: false` may be the only one that confirmed a commit
/// (issue 10, defect 7): it blocks while unknown and the candidate must hold its WAL.
#[test]
fn a_non_promotable_sync_member_is_a_witness() {
    let not_promotable = [(
        "    - {name: d, replication: Sync}",
        "    - {name: d, replication: Sync, promotable: false}",
    )];
    type Case = (
        &'static str,
        Vec<(&'static str, &'static str)>,
        Observation,
        Observation,
        Result<&'static str, &'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "witness behind the candidate: promote",
            vec![("d", "sync"), ("b", "potential")],
            standby("b", "a", 150),
            standby("d", "a", 100),
            Ok("b"),
        ),
        (
            "witness level with the candidate: promote",
            vec![("d", "sync"), ("b", "potential")],
            standby("b", "a", 150),
            standby("d", "a", 150),
            Ok("b"),
        ),
        (
            "witness ahead of the only candidate: blocked",
            vec![("d", "sync"), ("b", "potential")],
            standby("b", "a", 100),
            standby("d", "a", 150),
            Err("d is not promotable and holds WAL up to 0/96"),
        ),
        (
            "witness unknown: blocked",
            vec![("d", "sync"), ("b", "potential")],
            standby("b", "a", 150),
            unknown(),
            Err("d was synchronous and its state is unknown"),
        ),
        (
            "witness stopped with a position ahead: blocked",
            vec![("d", "sync"), ("b", "potential")],
            standby("b", "a", 100),
            with(standby("d", "a", 150), |r| {
                r.running = false;
                r.server_process = false;
                r.role = ActualRole::Stopped;
                r.wal_sender = None;
            }),
            Err("d is not promotable"),
        ),
        (
            "witness without data: skipped",
            vec![("d", "sync"), ("b", "potential")],
            standby("b", "a", 100),
            lost("d"),
            Ok("b"),
        ),
        (
            "candidate stopped with a position is still a candidate",
            vec![("b", "sync")],
            with(standby("b", "a", 100), |r| {
                r.running = false;
                r.server_process = false;
                r.role = ActualRole::Stopped;
            }),
            standby("d", "a", 90),
            Ok("b"),
        ),
        (
            "no candidate without data",
            vec![("b", "sync")],
            lost("b"),
            standby("d", "a", 90),
            Err("b lost its data"),
        ),
    ];
    for (what, sync, b, d, want) in cases {
        let mut w = World::new(
            settled("a", &sync),
            vec![
                ("a", lost("a")),
                ("b", b),
                ("c", standby("c", "a", 100)),
                ("d", d),
            ],
        );
        w.spec = two_sync(&not_promotable);
        w.lease = None;
        let p = w.plan();
        match want {
            Ok(candidate) => assert_eq!(
                p.status.target_primary.as_deref(),
                Some(candidate),
                "{what}"
            ),
            Err(fragment) => {
                assert_eq!(
                    p.status.target_primary.as_deref(),
                    Some("a"),
                    "{what}: nothing promoted"
                );
                let blocked = p.blocked.clone().unwrap_or_default();
                assert!(blocked.contains(fragment), "{what}: {blocked}");
            }
        }
    }
}

#[test]
fn a_severed_member_with_more_wal_becomes_the_target() {
    let mut status = settled("a", &[("b", "sync"), ("c", "async"), ("d", "potential")]);
    status.target_primary = Some("b".into());
    let mut w = World::new(
        status,
        vec![
            ("a", unknown()),
            ("b", standby("b", "a", 100)),
            ("c", standby("c", "b", 100)),
            ("d", standby("d", "b", 150)),
        ],
    );
    w.spec = two_sync(&[]);
    w.lease = None;
    let p = w.plan();
    assert_eq!(p.status.target_primary.as_deref(), Some("d"));
    assert_eq!(role(&p, "b").as_deref(), Some("standby(d, 0ms)"));
    assert_eq!(
        role(&p, "d").as_deref(),
        Some("standby(a, 0ms)"),
        "not promoted in the same breath"
    );
    assert!(reasons(&p).contains(&"FailoverStarted"));
}

/// Issue 10, defect 6: right after bootstrap the sync names may not be in force yet; the cluster
/// is not Ready (nor Healthy) until the primary names a synchronous standby.
#[test]
fn ready_only_once_the_declared_durability_is_in_effect() {
    for (sync_state, ready) in [("async", false), ("potential", false), ("sync", true)] {
        let w = World::new(
            settled("a", &[("b", sync_state), ("c", "async")]),
            vec![
                ("a", primary("a", 100, &[("b", sync_state), ("c", "async")])),
                ("b", standby("b", "a", 100)),
                ("c", standby("c", "a", 100)),
            ],
        );
        let p = w.plan();
        let cond = p
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(
            cond.status == "True",
            ready,
            "b {sync_state}: {}",
            cond.message
        );
        assert_eq!(
            p.status.phase == Some(crate::api::Phase::Healthy),
            ready,
            "b {sync_state}"
        );
        if !ready {
            assert!(
                cond.message.contains("synchronous standby"),
                "{}",
                cond.message
            );
        }
    }
}

#[test]
fn an_unreadable_lease_is_a_condition() {
    let w = World::new(
        settled("a", &[("b", "sync"), ("c", "async")]),
        vec![
            ("a", primary("a", 100, &[("b", "sync"), ("c", "async")])),
            ("b", standby("b", "a", 100)),
            ("c", standby("c", "a", 100)),
        ],
    );
    let addresses = addresses();
    let lease = LeaseView {
        holder: Some("a".into()),
        unreadable: Some("lease.json does not hold a lease record".into()),
    };
    let p = w.plan_with(&addresses, &lease);
    let cond = p
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "LeaseReadable")
        .expect("LeaseReadable");
    assert_eq!(cond.status, "False");
    assert!(cond.message.contains("does not hold a lease record"));
    assert_eq!(p.routes.rw.as_deref(), Some("a"), "writes go on");
}

#[test]
fn a_planned_switchover_keeps_its_target_when_another_member_reports_more() {
    let mut status = settled("a", &[("b", "sync"), ("c", "async"), ("d", "potential")]);
    status.target_primary = Some("b".into());
    let a = with(primary("a", 100, &[]), |r| {
        r.running = false;
        r.server_process = false;
        r.role = ActualRole::Stopped;
        r.holds_lease = false;
        r.shutdown_checkpoint = Some(Lsn(100));
    });
    let mut w = World::new(
        status,
        vec![
            ("a", a),
            ("b", standby("b", "a", 150)),
            ("c", standby("c", "b", 100)),
            ("d", standby("d", "b", 160)),
        ],
    );
    w.spec = two_sync(&[]);
    w.lease = None;
    let p = w.plan();
    assert_eq!(p.status.target_primary.as_deref(), Some("b"));
    assert_eq!(
        role(&p, "b").as_deref(),
        Some("primary(bootstrap=false, sync='')")
    );
}

/// The old primary's address is gone (its pod was deleted): a member streaming from the target
/// is severed, one whose receiver points anywhere else is not.
#[test]
fn severing_when_the_old_primary_has_no_address() {
    for (d_upstream, promoted) in [("b", true), ("a", false)] {
        let mut status = settled("a", &[("b", "sync"), ("c", "async"), ("d", "potential")]);
        status.target_primary = Some("b".into());
        let mut w = World::new(
            status,
            vec![
                ("a", unknown()),
                ("b", standby("b", "a", 100)),
                ("c", standby("c", "b", 100)),
                ("d", standby("d", d_upstream, 100)),
            ],
        );
        w.spec = two_sync(&[]);
        w.lease = None;
        let mut addresses = addresses();
        addresses.remove("a");
        let lease = LeaseView::default();
        let p = w.plan_with(&addresses, &lease);
        let b_primary = role(&p, "b").is_some_and(|r| r.starts_with("primary"));
        assert_eq!(b_primary, promoted, "d streams from {d_upstream}");
    }
}

/// Review findings on severing: a member without a WAL receiver counts as severed only once its
/// agent converged on the target; a Sync member that is rewinding blocks (it may hold WAL the
/// target lacks); a blocked failover fences the members it cannot see.
#[test]
fn severing_needs_positive_proof() {
    let follow_b = crate::member::Desired {
        role: DesiredRole::Standby {
            upstream: crate::member::Upstream {
                member: "b".into(),
                host: "127.0.0.1".into(),
                port: 6001,
            },
            slot: "pgreplica_d".into(),
            apply_delay_ms: 0,
            replay_paused: false,
            slots: vec![],
        },
        parameters: Default::default(),
        restart: false,
        restart_before_ms: None,
        reload_before_ms: None,
        reason: "follow b".into(),
    };
    let no_receiver = |converged: bool, desired: Option<crate::member::Desired>| {
        with(standby("d", "a", 100), move |r| {
            r.wal_sender = None;
            r.streaming_from = None;
            r.converged = converged;
            r.desired = desired;
        })
    };
    let cases: Vec<(&str, Observation, bool)> = vec![
        (
            "no receiver, not converged: may still reconnect to a",
            no_receiver(false, Some(follow_b.clone())),
            false,
        ),
        (
            "no receiver, converged on following a: not severed",
            no_receiver(true, None),
            false,
        ),
        (
            "no receiver, converged on following b: severed",
            no_receiver(true, Some(follow_b)),
            true,
        ),
        (
            "rewinding with healthy data: may hold more WAL",
            with(standby("d", "b", 90), |r| r.role = ActualRole::Preparing),
            false,
        ),
    ];
    for (what, d, promoted) in cases {
        let mut status = settled("a", &[("b", "sync"), ("c", "async"), ("d", "potential")]);
        status.target_primary = Some("b".into());
        let mut w = World::new(
            status,
            vec![
                ("a", unknown()),
                ("b", standby("b", "a", 100)),
                ("c", standby("c", "b", 100)),
                ("d", d),
            ],
        );
        w.spec = two_sync(&[]);
        w.lease = None;
        let p = w.plan();
        let b_primary = role(&p, "b").is_some_and(|r| r.starts_with("primary"));
        assert_eq!(b_primary, promoted, "{what}: {:?}", p.waiting_for);
    }
}

#[test]
fn a_blocked_failover_fences_what_it_cannot_see() {
    let mut w = World::new(
        settled("a", &[("b", "sync"), ("c", "async")]),
        vec![
            ("a", unknown()),
            ("b", unknown()),
            ("c", standby("c", "a", 100)),
        ],
    );
    w.lease = None;
    let p = w.plan();
    assert!(p.blocked.is_some());
    let fenced: Vec<&str> = p.fence.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(fenced, vec!["a", "b"]);
}

#[test]
fn status_is_news_when_more_than_numbers_change() {
    let w = healthy_lab();
    let before = w.plan().status;
    type Edit = fn(&mut PgReplicaClusterStatus);
    let edits: [(&str, Edit, bool); 5] = [
        ("nothing", |_| {}, false),
        (
            "lag",
            |s| s.members[1].replay_lag_seconds = Some(9.5),
            false,
        ),
        (
            "lsn",
            |s| s.members[2].replayed_lsn = Some("0/99".into()),
            false,
        ),
        ("readiness", |s| s.members[1].ready = false, true),
        ("primary", |s| s.current_primary = Some("b".into()), true),
    ];
    for (what, edit, news) in edits {
        let mut after = before.clone();
        edit(&mut after);
        assert_eq!(
            crate::plan::material_change(&before, &after),
            news,
            "{what}"
        );
    }
}

mod paused;
mod rollout;

/// Removing the primary from the spec moves it first with a clean switchover (it was a failover
/// after its agent had been stopped), and the runtimes keep it running until the move is done.
#[test]
fn a_primary_removed_from_the_spec_is_switched_away_before_it_stops() {
    let mut w = healthy_lab();
    w.spec = spec(&[
        ("primary: a", "primary: b"),
        ("    - {name: a, replication: Sync}\n", ""),
    ]);
    w.members.insert("c".into(), standby("c", "a", 100));
    assert_eq!(
        members_to_run(&w.spec, &w.status),
        vec!["b".to_string(), "c".to_string(), "a".to_string()],
        "the removed primary still runs"
    );
    let p = w.plan();
    assert_eq!(reasons(&p), vec!["SwitchoverStarted"]);
    assert_eq!(p.status.target_primary.as_deref(), Some("b"));
    assert_eq!(role(&p, "a").as_deref(), Some("stopped"), "a clean stop");
    assert_eq!(role(&p, "b").as_deref(), Some("standby(a, 0ms)"));

    // b promoted and holding the lease: a gets nothing more and is no longer run
    let mut done = World::new(
        p.status.clone(),
        vec![
            (
                "a",
                with(primary("a", 150, &[]), |r| {
                    r.running = false;
                    r.server_process = false;
                    r.role = ActualRole::Stopped;
                    r.holds_lease = false;
                    r.shutdown_checkpoint = Some(Lsn(150));
                }),
            ),
            (
                "b",
                with(primary("b", 200, &[("c", "async")]), |r| {
                    r.timeline = Some(2)
                }),
            ),
            ("c", standby("c", "b", 200)),
        ],
    );
    done.spec = w.spec.clone();
    let p2 = done.plan();
    assert_eq!(p2.status.current_primary.as_deref(), Some("b"));
    assert_eq!(role(&p2, "a"), None, "a is no longer a member");
    assert_eq!(
        members_to_run(&done.spec, &p2.status),
        vec!["b".to_string(), "c".to_string()]
    );
}

/// After a failover b is the primary; with failback Manual, removing b from the spec is what
/// moves the primary back to the preferred a (the old plan kept b: nothing asked it to move).
#[test]
fn a_removed_primary_moves_to_the_preferred_member_even_with_manual_failback() {
    let mut w = World::new(
        settled("b", &[("a", "sync"), ("c", "async")]),
        vec![
            ("a", standby("a", "b", 100)),
            ("b", primary("b", 100, &[("a", "sync"), ("c", "async")])),
            ("c", standby("c", "b", 100)),
        ],
    );
    w.spec = spec(&[
        ("primary: a", "primary: a\n  failback: Manual"),
        ("    - {name: b, replication: Sync}\n", ""),
    ]);
    let p = w.plan();
    assert_eq!(reasons(&p), vec!["SwitchoverStarted"]);
    assert_eq!(p.status.target_primary.as_deref(), Some("a"));
    assert_eq!(role(&p, "b").as_deref(), Some("stopped"));
}

/// The volumes condition: absent where no volume ever differed (the local runtime), false with
/// the reason while one grows or cannot, true again once every volume fits.
#[test]
fn volumes_condition_follows_the_notes() {
    let cond = |p: &Plan| {
        p.status
            .conditions
            .iter()
            .find(|c| c.is(crate::api::ConditionType::VolumesMatchSpec))
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    let mut w = healthy_lab();
    assert_eq!(cond(&w.plan()), None, "never shown while every volume fits");
    let cases = [
        (
            VolumeNote::Refused("volume lab-b cannot grow".into()),
            "VolumeNotExpandable",
        ),
        (
            VolumeNote::Resizing("volume lab-b: asked to grow".into()),
            "VolumeResizing",
        ),
    ];
    for (note, reason) in cases {
        w.volumes = BTreeMap::from([("b".to_string(), note)]);
        let p = w.plan();
        assert_eq!(cond(&p), Some(("False".into(), reason.into())));
        let message = &p
            .status
            .conditions
            .iter()
            .find(|c| c.is(crate::api::ConditionType::VolumesMatchSpec))
            .map(|c| c.message.clone());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.starts_with("b: volume lab-b")),
            "{message:?}"
        );
        // resolved: true, and kept true
        let mut after = healthy_lab();
        after.status = p.status.clone();
        assert_eq!(
            cond(&after.plan()),
            Some(("True".into(), "VolumesMatchSpec".into()))
        );
    }
}

/// With failback Automatic a switchover to a name that is no member was answered "change
/// spec.primary to zz": the membership is checked first.
#[test]
fn a_switchover_to_a_stranger_says_it_is_no_member_whatever_failback_says() {
    let mut w = healthy_lab();
    w.switchover = Some("zz");
    let p = w.plan();
    let refused = refusal(&p);
    assert_eq!(
        refused.message,
        "switchover to zz refused: zz is not a member of this cluster (members: a, b, c)"
    );
}
