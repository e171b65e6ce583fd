//! The member agent (`pgreplica instance run`) on real PostgreSQL: bootstrap, clone, sync and
//! delayed async standbys, data-directory loss, failover, re-clone, rewind (and its fallback to a
//! re-clone) and a clean switchover under writes. The test plays the brain by PUTting desired
//! states; every wait is a bounded poll of a condition.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use pgreplica::member::MemberReport;
use pgreplica::postgres::{connect, Conn, ConnParams};

const BOOT: Duration = Duration::from_secs(60);
const CLONE: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(30);

fn sync_state(report: &MemberReport, standby: &str) -> Option<String> {
    report
        .standbys
        .iter()
        .find(|s| s.name == standby && s.state == "streaming")
        .map(|s| s.sync_state.as_str().to_string())
}

/// a primary with sync b; b a sync standby streaming from a (both converged).
async fn primary_and_sync_standby(cluster: &Cluster, sync: bool) {
    let sync_names: &[&str] = if sync { &["b"] } else { &[] };
    cluster.put("a", primary(true, sync_names, &["b"])).await;
    cluster.wait_primary("a", BOOT).await;
    cluster.put("b", cluster.standby_of("b", "a", 0)).await;
    cluster.wait_streaming("b", "a", CLONE).await;
    let want = if sync { "sync" } else { "async" };
    cluster
        .wait_for("a", &format!("b {want} in a's report"), SETTLE, |r| {
            sync_state(r, "b").as_deref() == Some(want)
        })
        .await;
}

/// Waits until the table exists on `name` (a delayed standby applies DDL late too).
async fn wait_table(cluster: &Cluster, name: &str, limit: Duration) {
    eventually(&format!("table t on {name}"), limit, || async {
        let conn = connect(&cluster.params(name)).await.ok()?;
        let exists: bool = conn
            .client()
            .query_one("SELECT to_regclass('t') IS NOT NULL", &[])
            .await
            .ok()?
            .get(0);
        exists.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_primary_with_sync_and_delayed_async_standbys() {
    let cluster = Cluster::start("boot", &["a", "b", "c"]).await;
    let began = Instant::now();
    cluster.put("a", primary(true, &["b"], &["b", "c"])).await;
    let a = cluster.wait_primary("a", BOOT).await;
    println!(
        "boot: a bootstrapped in {:.2}s",
        began.elapsed().as_secs_f64()
    );
    assert!(
        a.holds_lease,
        "the primary's agent must hold the lease: {a:#?}"
    );
    assert_eq!(cluster.lease().await.holder.as_deref(), Some("a"));

    let began = Instant::now();
    cluster.put("b", cluster.standby_of("b", "a", 0)).await;
    cluster.put("c", cluster.standby_of("c", "a", 2_000)).await;
    cluster.wait_streaming("b", "a", CLONE).await;
    cluster.wait_streaming("c", "a", CLONE).await;
    println!(
        "boot: b and c cloned and streaming in {:.2}s",
        began.elapsed().as_secs_f64()
    );
    for standby in ["b", "c"] {
        let r = cluster.status(standby).await;
        assert!(!r.holds_lease, "standby {standby} must not hold the lease");
        assert_eq!(r.timeline, Some(1));
    }

    let report = cluster
        .wait_for("a", "b sync and c async in a's report", SETTLE, |r| {
            sync_state(r, "b").as_deref() == Some("sync")
                && sync_state(r, "c").as_deref() == Some("async")
        })
        .await;
    println!("boot: a reports standbys {:?}", report.standbys);

    let pa = cluster.sql("a").await;
    let names: String = pa
        .client()
        .query_one("SHOW synchronous_standby_names", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(names, "FIRST 1 (\"b\")");
    let rows = pa
        .client()
        .query(
            "SELECT application_name, sync_state FROM pg_stat_replication \
             WHERE state = 'streaming'",
            &[],
        )
        .await
        .expect("pg_stat_replication");
    let states: BTreeMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        states.get("b").map(String::as_str),
        Some("sync"),
        "{states:?}"
    );
    assert_eq!(
        states.get("c").map(String::as_str),
        Some("async"),
        "{states:?}"
    );

    create_table(&pa).await;
    wait_table(&cluster, "b", SETTLE).await;
    wait_table(&cluster, "c", SETTLE).await;
    let pb = cluster.sql("b").await;
    let pc = cluster.sql("c").await;

    // Watch both standbys from the moment the commit is acknowledged.
    let commit_began = Instant::now();
    insert(&pa, 1, "one").await;
    let acked = Instant::now();
    assert!(
        !has_row(&pc, 1).await,
        "the delayed standby c shows the row right after the commit"
    );
    let (mut on_sync, mut on_delayed) = (None, None);
    let deadline = acked + Duration::from_secs(15);
    while (on_sync.is_none() || on_delayed.is_none()) && Instant::now() < deadline {
        if on_sync.is_none() && has_row(&pb, 1).await {
            on_sync = Some(acked.elapsed());
        }
        if on_delayed.is_none() && has_row(&pc, 1).await {
            on_delayed = Some(commit_began.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let on_sync = on_sync.expect("row 1 never reached the sync standby b");
    let on_delayed = on_delayed.expect("row 1 never reached the delayed standby c");
    println!(
        "boot: row visible on sync standby b {:.1} ms after the commit was acknowledged; \
         on delayed standby c (apply delay 2 s) {:.3} s after the commit began",
        on_sync.as_secs_f64() * 1e3,
        on_delayed.as_secs_f64(),
    );
    assert!(
        on_sync <= Duration::from_secs(2),
        "the sync standby b showed the row only after {on_sync:?}"
    );
    assert!(
        on_delayed >= Duration::from_millis(1_950),
        "c applied the commit after {on_delayed:?}, before its 2 s delay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_primary_data_is_fenced_then_failover_and_reclone() {
    let cluster = Cluster::start("lost", &["a", "b"]).await;
    primary_and_sync_standby(&cluster, true).await;
    let pa = cluster.sql("a").await;
    create_table(&pa).await;
    for id in 1..=100 {
        insert(&pa, id, "before").await;
    }
    let pid = postmaster_pid(&cluster.member("a").data_dir());
    assert_eq!(cluster.lease().await.holder.as_deref(), Some("a"));

    // rm -rf runs on its own thread while the agent's reaction is timed from its start.
    let data = cluster.member("a").data_dir();
    let deleted = Instant::now();
    let rm = tokio::task::spawn_blocking(move || {
        rm_rf(&data);
        deleted.elapsed()
    });
    let limit = Duration::from_secs(10);
    let (report, gone, released) = tokio::join!(
        cluster.wait_for("a", "data: lost", limit, |r| r.data_lost().is_some()),
        time_until("a's postmaster to be gone", deleted, limit, || async {
            process_gone(pid)
        }),
        time_until("the lease to be released", deleted, limit, || async {
            cluster.lease().await.holder.is_none()
        }),
    );
    let noticed = deleted.elapsed();
    let removed = rm.await.expect("rm -rf");
    println!(
        "lost: rm -rf of PGDATA took {:.0} ms; from its start: postmaster gone {:.0} ms, \
         lease released {:.0} ms, report says lost by {:.0} ms ({})",
        removed.as_secs_f64() * 1e3,
        gone.as_secs_f64() * 1e3,
        released.as_secs_f64() * 1e3,
        noticed.as_secs_f64() * 1e3,
        report.data_lost().unwrap_or_default()
    );
    drop(pa);
    // Still desired primary (even with bootstrap on): the agent must refuse, not initdb anew.
    let a = cluster
        .wait_for(
            "a",
            "blocked: not running, no lease",
            Duration::from_secs(10),
            |r| !r.running && !r.holds_lease && r.activity.contains("data directory lost"),
        )
        .await;
    assert!(a.data_lost().is_some(), "{a:#?}");
    assert!(
        !cluster.member("a").data_dir().exists(),
        "a made a new data directory after losing its own"
    );

    let promoting = Instant::now();
    cluster.put("b", primary(false, &[], &["a"])).await;
    let b = cluster.wait_primary("b", SETTLE).await;
    println!(
        "lost: b promoted in {:.2}s (timeline {:?})",
        promoting.elapsed().as_secs_f64(),
        b.timeline
    );
    assert!(b.holds_lease);
    assert_eq!(b.timeline, Some(2));
    let pb = cluster.sql("b").await;
    for id in 101..=200 {
        insert(&pb, id, "after").await;
    }

    let cloning = Instant::now();
    cluster.put("a", cluster.standby_of("a", "b", 0)).await;
    let a = cluster.wait_streaming("a", "b", CLONE).await;
    println!(
        "lost: a re-cloned from b and streaming in {:.2}s",
        cloning.elapsed().as_secs_f64()
    );
    assert_eq!(a.data, pgreplica::member::DataHealth::Healthy);
    assert!(!a.holds_lease);

    // Back to synchronous: a is b's sync standby and gets the next commit at once.
    cluster.put("b", primary(false, &["a"], &["a"])).await;
    cluster
        .wait_for("b", "a sync in b's report", SETTLE, |r| {
            sync_state(r, "a").as_deref() == Some("sync")
        })
        .await;
    insert(&pb, 201, "after, sync").await;
    let all: Vec<i64> = (1..=201).collect();
    wait_rows(&cluster, "a", &all, Duration::from_secs(5)).await;
    wait_rows(&cluster, "b", &all, Duration::from_secs(5)).await;
}

/// Row 1 on a and b; b stopped; X (row 2) on a only; a stopped. Both down, a ahead of b.
async fn a_ahead_of_b(cluster: &Cluster) {
    primary_and_sync_standby(cluster, false).await;
    let pa = cluster.sql("a").await;
    create_table(&pa).await;
    insert(&pa, 1, "common").await;
    wait_rows(cluster, "b", &[1], SETTLE).await;
    cluster.put("b", stopped()).await;
    wait_down(cluster, "b").await;
    insert(&pa, 2, "X: only on the old timeline of a").await;
    drop(pa);
    cluster.put("a", stopped()).await;
    wait_down(cluster, "a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverged_member_is_rewound_and_a_failed_rewind_falls_back_to_reclone() {
    let cluster = Cluster::start("rewind", &["a", "b"]).await;
    // Divergence: X on a after b stopped, Y on b after it was promoted.
    a_ahead_of_b(&cluster).await;
    cluster.put("b", primary(false, &[], &["a"])).await;
    cluster.wait_primary("b", SETTLE).await;
    let pb = cluster.sql("b").await;
    insert(&pb, 3, "Y: on b's new timeline").await;

    let rewinding = Instant::now();
    cluster.put("a", cluster.standby_of("a", "b", 0)).await;
    cluster.wait_streaming("a", "b", CLONE).await;
    println!(
        "rewind: a rewound and streaming from b in {:.2}s",
        rewinding.elapsed().as_secs_f64()
    );
    let log = cluster.member("a").log_text();
    let rewound = log
        .lines()
        .find(|l| l.contains("rewind finished"))
        .unwrap_or_else(|| panic!("a did not rewind"));
    assert!(rewound.contains("Rewound"), "{rewound}");
    assert!(
        !log.contains("clone complete"),
        "a was re-cloned instead of rewound"
    );
    wait_rows(&cluster, "a", &[1, 3], SETTLE).await;
    let on_a = cluster.sql("a").await;
    assert!(!has_row(&on_a, 2).await, "X survived the rewind on a");
    drop(on_a);

    // Second divergence, then a rewind that fails for a real reason: b's pg_control is cut.
    cluster.put("a", stopped()).await;
    wait_down(&cluster, "a").await;
    insert(&pb, 4, "X2: only on the old timeline of b").await;
    drop(pb);
    cluster.put("b", stopped()).await;
    wait_down(&cluster, "b").await;
    cluster.put("a", primary(false, &[], &["b"])).await;
    cluster.wait_primary("a", SETTLE).await;
    let pa = cluster.sql("a").await;
    insert(&pa, 5, "Y2: on a's new timeline").await;

    let b_dir = cluster.member("b").dir.clone();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(b_dir.join("data/global/pg_control"))
        .expect("truncate b's pg_control");
    let log_before = cluster.member("b").log_text().lines().count();
    let recloning = Instant::now();
    cluster.put("b", cluster.standby_of("b", "a", 0)).await;
    cluster.wait_streaming("b", "a", CLONE).await;
    println!(
        "rewind: b's rewind failed, b re-cloned and streaming from a in {:.2}s",
        recloning.elapsed().as_secs_f64()
    );
    let log = cluster.member("b").log_text();
    let new: Vec<&str> = log.lines().skip(log_before).collect();
    let new = new.join("\n");
    let at = lines_in_order(
        &new,
        &[
            "rewind failed",
            "moved the old data directory aside",
            "clone complete",
            "PostgreSQL accepts connections",
            "deleted the old data directory",
        ],
    );
    // The error (with pg_rewind's last output lines) runs up to the next step's line.
    let failure: Vec<&str> = new.lines().skip(at[0]).take(at[1] - at[0]).collect();
    let failure = failure.join("\n");
    assert!(
        failure.contains("control file"),
        "pg_rewind failed for another reason than the cut control file:\n{failure}"
    );
    let reason = failure
        .lines()
        .find(|l| l.contains("control file"))
        .unwrap_or_default();
    println!("rewind: pg_rewind failed as intended: {}", reason.trim());
    assert!(
        !new.contains("could not delete old data"),
        "the agent failed to delete an aside:\n{new}"
    );
    let left: Vec<String> = std::fs::read_dir(&b_dir)
        .expect("read b's dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("data.") && n != "data")
        .collect();
    assert!(left.is_empty(), "left behind in b's directory: {left:?}");
    wait_rows(&cluster, "b", &[1, 3, 5], SETTLE).await;
    let on_b = cluster.sql("b").await;
    assert!(!has_row(&on_b, 4).await, "X2 survived the re-clone on b");
    // and b keeps streaming new commits
    insert(&pa, 6, "after").await;
    wait_rows(&cluster, "b", &[1, 3, 5, 6], SETTLE).await;
}

/// A rewound member whose upstream no longer has the WAL written since the divergence can never
/// become consistent: it must be re-cloned, not started again and again. (The CI failure of
/// 9135971: the delayed member waited 300 s at a time in "starting PostgreSQL", for ever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_that_cannot_recover_from_its_upstream_is_re_cloned() {
    let cluster = Cluster::start("norecover", &["a", "b"]).await;
    // Divergence: X on a after b stopped; b promoted with no slot for a.
    a_ahead_of_b(&cluster).await;
    cluster.put("b", primary(false, &[], &[])).await;
    cluster.wait_primary("b", SETTLE).await;
    // b recycles the WAL of the switch to its timeline: more than wal_keep_size (128 MB) since,
    // then a checkpoint
    let pb = cluster.sql("b").await;
    for id in 3..15 {
        insert(&pb, id, "Y: on b's new timeline").await;
        pb.client()
            .execute("SELECT pg_switch_wal()", &[])
            .await
            .expect("pg_switch_wal");
    }
    pb.client()
        .execute("CHECKPOINT", &[])
        .await
        .expect("checkpoint");
    // a's slot only now: it keeps nothing of that WAL (a new copy streams through it)
    cluster.put("b", primary(false, &[], &["a"])).await;

    let repairing = Instant::now();
    let log_before = cluster.member("a").log_text().lines().count();
    cluster.put("a", cluster.standby_of("a", "b", 0)).await;
    // old code: a waits 300 s in "starting PostgreSQL", stops, starts, waits again
    cluster
        .wait_streaming("a", "b", Duration::from_secs(120))
        .await;
    println!(
        "no recovery: a re-cloned and streaming from b in {:.2}s",
        repairing.elapsed().as_secs_f64()
    );
    let log = cluster.member("a").log_text();
    let new: Vec<&str> = log.lines().skip(log_before).collect();
    let new = new.join("\n");
    lines_in_order(
        &new,
        &[
            "rewind finished",
            "no longer has",
            "moved the old data directory aside",
            "clone complete",
            "PostgreSQL accepts connections",
        ],
    );
    let ids: Vec<i64> = (1..15).filter(|id| *id != 2).collect();
    wait_rows(&cluster, "a", &ids, SETTLE).await;
    let on_a = cluster.sql("a").await;
    assert!(!has_row(&on_a, 2).await, "X survived the re-clone on a");
}

/// Polls `check` every 5 ms until true; how long after `since` it became true (bounded).
async fn time_until<F, Fut>(what: &str, since: Instant, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if check().await {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `rm -rf DIR`: PostgreSQL may create a file while the tree is deleted ("Directory not empty");
/// like a person, delete again until the directory is gone (bounded).
fn rm_rf(dir: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e)
                if e.kind() == std::io::ErrorKind::DirectoryNotEmpty
                    && Instant::now() < deadline => {}
            Err(e) => panic!("rm -rf {}: {e}", dir.display()),
        }
    }
}

async fn wait_down(cluster: &Cluster, name: &str) -> MemberReport {
    cluster
        .wait_for(name, "stopped", SETTLE, |r| !r.running && r.converged)
        .await
}

/// Acknowledged commits, with the member that acknowledged each.
type Ledger = Arc<Mutex<Vec<(i64, String, Instant)>>>;

/// Inserts ids one by one against whichever member is primary; records every acknowledged id.
async fn writer(targets: Vec<(String, ConnParams)>, stop: Arc<AtomicBool>, ledger: Ledger) {
    let mut next: i64 = 1;
    let mut current: Option<(String, Conn)> = None;
    while !stop.load(Ordering::SeqCst) {
        let Some((name, conn)) = current.as_ref() else {
            current = find_primary(&targets).await;
            if current.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            continue;
        };
        let id = next;
        next += 1;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
        let insert = conn
            .client()
            .execute("INSERT INTO t (id, note) VALUES ($1, 'writer')", &params);
        match tokio::time::timeout(Duration::from_secs(30), insert).await {
            Ok(Ok(1)) => ledger
                .lock()
                .expect("ledger")
                .push((id, name.clone(), Instant::now())),
            _ => current = None, // outcome unknown: not acknowledged
        }
    }
}

async fn find_primary(targets: &[(String, ConnParams)]) -> Option<(String, Conn)> {
    for (name, params) in targets {
        let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(2), connect(params)).await
        else {
            continue;
        };
        if let Ok(Ok(false)) =
            tokio::time::timeout(Duration::from_secs(2), conn.is_in_recovery()).await
        {
            return Some((name.clone(), conn));
        }
    }
    None
}

fn acked(ledger: &Ledger) -> usize {
    ledger.lock().expect("ledger").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_switchover_under_writes_loses_no_acknowledged_commit() {
    let cluster = Cluster::start("switch", &["a", "b"]).await;
    primary_and_sync_standby(&cluster, true).await;
    create_table(&cluster.sql("a").await).await;

    let ledger: Ledger = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let targets = vec![
        ("a".to_string(), cluster.params("a")),
        ("b".to_string(), cluster.params("b")),
    ];
    let task = tokio::spawn(writer(targets, stop.clone(), ledger.clone()));
    eventually("50 acknowledged commits on a", SETTLE, || async {
        (acked(&ledger) >= 50).then_some(())
    })
    .await;

    let switching = Instant::now();
    cluster.put("a", stopped()).await;
    let a = cluster
        .wait_for("a", "a shutdown checkpoint", SETTLE, |r| {
            !r.running && r.shutdown_checkpoint.is_some()
        })
        .await;
    let checkpoint = a.shutdown_checkpoint.expect("checkpoint");
    assert!(!a.holds_lease);
    assert_eq!(
        cluster.lease().await.holder,
        None,
        "a stopped but did not release the lease"
    );
    let b = cluster
        .wait_for(
            "b",
            &format!("b received past a's shutdown checkpoint {checkpoint}"),
            Duration::from_secs(10),
            |r| r.received_lsn.is_some_and(|l| l > checkpoint),
        )
        .await;
    println!(
        "switch: a stopped at checkpoint {checkpoint} after {:.2}s; b received {:?}",
        switching.elapsed().as_secs_f64(),
        b.received_lsn
    );
    cluster.put("b", primary(false, &["a"], &["a"])).await;
    cluster.wait_primary("b", SETTLE).await;
    let promoted = switching.elapsed();
    cluster.put("a", cluster.standby_of("a", "b", 0)).await;
    cluster.wait_streaming("a", "b", CLONE).await;
    let rejoined = switching.elapsed();
    cluster
        .wait_for("b", "a sync in b's report", SETTLE, |r| {
            sync_state(r, "a").as_deref() == Some("sync")
        })
        .await;
    let rewind = cluster
        .member("a")
        .log_text()
        .lines()
        .find(|l| l.contains("rewind finished"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("a did not check its timeline against b with pg_rewind"));
    assert!(
        rewind.contains("NotNeeded"),
        "after a clean switchover a must have nothing b lacks: {rewind}"
    );
    let at_switch = acked(&ledger);
    eventually("50 more acknowledged commits on b", SETTLE, || async {
        let on_b = ledger
            .lock()
            .expect("ledger")
            .iter()
            .filter(|(_, m, _)| m == "b")
            .count();
        (on_b >= 50 && acked(&ledger) >= at_switch + 50).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(40), task)
        .await
        .expect("writer stops")
        .expect("writer task");

    let entries = ledger.lock().expect("ledger").clone();
    let by_a = entries.iter().filter(|(_, m, _)| m == "a").count();
    let by_b = entries.iter().filter(|(_, m, _)| m == "b").count();
    let longest_gap = entries
        .windows(2)
        .map(|w| w[1].2.duration_since(w[0].2))
        .max()
        .unwrap_or_default();
    println!(
        "switch: b primary {:.2}s after the switch began, a streaming from b after {:.2}s; \
         {} commits acknowledged ({by_a} by a, {by_b} by b); longest write gap {:.2}s",
        promoted.as_secs_f64(),
        rejoined.as_secs_f64(),
        entries.len(),
        longest_gap.as_secs_f64()
    );
    assert!(by_a >= 50 && by_b >= 50, "a: {by_a}, b: {by_b}");
    let want: Vec<i64> = entries.iter().map(|(id, _, _)| *id).collect();
    let on_b = ids(&cluster.sql("b").await).await;
    let missing: Vec<&i64> = want.iter().filter(|id| !on_b.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged ids missing on b: {missing:?}"
    );
    wait_rows(&cluster, "a", &want, SETTLE).await;
}
