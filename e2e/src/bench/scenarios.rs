//! The scenarios of issue 7, run once per call against any `System`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::pg::{self, Load};
use super::procs;
use super::system::System;

pub const WRITERS: i32 = 4;
pub const DECLARED_DELAY_S: f64 = 3.0;

#[derive(Clone, Debug)]
pub struct Options {
    pub scenarios: Vec<String>,
    pub small_scale: u32,
    pub large_scale: u32,
    pub verbose: bool,
}

/// Samples of one system across runs: metric → values; metric → why it has none.
#[derive(Default, Debug, Clone, serde::Serialize)]
pub struct Samples {
    pub metrics: BTreeMap<String, Vec<f64>>,
    pub notes: BTreeMap<String, String>,
    pub errors: Vec<String>,
}

impl Samples {
    pub fn add(&mut self, key: &str, v: f64) {
        self.metrics.entry(key.to_string()).or_default().push(v);
    }
    pub fn note(&mut self, key: &str, why: impl Into<String>) {
        self.notes.insert(key.to_string(), why.into());
    }
}

fn log(opts: &Options, sys: &str, line: impl AsRef<str>) {
    let _ = opts;
    println!("[{}] {sys}: {}", chrono_like_now(), line.as_ref());
}

fn chrono_like_now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let day = t % 86_400.0;
    format!(
        "{:02}:{:02}:{:06.3}",
        (day / 3600.0) as u32,
        ((day % 3600.0) / 60.0) as u32,
        day % 60.0
    )
}

fn wants(opts: &Options, s: &str) -> bool {
    opts.scenarios.iter().any(|x| x == s || x == "all")
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Sum of VmRSS (MiB) of each role's pids.
fn rss_by_role(sys: &dyn System) -> Vec<(String, Vec<u32>, f64)> {
    sys.processes()
        .into_iter()
        .map(|p| {
            let mib = p.pids.iter().filter_map(|pid| procs::rss_mib(*pid)).sum();
            (p.role, p.pids, mib)
        })
        .collect()
}

/// Peak RSS per role while a failover runs: a thread sampling every 100 ms.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<BTreeMap<String, f64>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(roles: Vec<(String, Vec<u32>, f64)>) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new(BTreeMap::new()));
        let (s, p) = (stop.clone(), peaks.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                for (role, pids, _) in &roles {
                    let mib: f64 = pids.iter().filter_map(|pid| procs::rss_mib(*pid)).sum();
                    if let Ok(mut peaks) = p.lock() {
                        let e = peaks.entry(role.clone()).or_insert(0.0);
                        if mib > *e {
                            *e = mib;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssSampler {
            stop,
            peaks,
            handle: Some(handle),
        }
    }
    fn finish(mut self) -> BTreeMap<String, f64> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peaks.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// Which member is writable now (by asking each server), if any.
async fn writable_member(sys: &dyn System, candidates: &[&str]) -> Option<String> {
    for m in candidates {
        if pg::in_recovery(sys.member_port(m), &sys.password()).await == Some(false) {
            return Some((*m).to_string());
        }
    }
    None
}

/// Outcome of one injected failure.
struct Failover {
    detected: Option<Duration>,
    promoted: Duration,
    writable: Duration,
    outage: Duration,
    new_primary: String,
}

/// After a failure injected at `injected`: wait for detection, promotion of a survivor and the
/// first commit acknowledged through the write endpoint after the promotion.
async fn watch_failover(
    sys: &dyn System,
    load: &Load,
    failed: &str,
    injected: Instant,
    timeout: Duration,
    failed_may_return: bool,
) -> Result<Failover, String> {
    let survivors: Vec<&str> = ["a", "b", "c"]
        .into_iter()
        .filter(|m| failed_may_return || *m != failed)
        .collect();
    let deadline = injected + timeout;
    let mut detected = None;
    let mut promoted = None;
    let mut new_primary = String::new();
    while Instant::now() < deadline {
        if detected.is_none() && tokio::task::block_in_place(|| sys.noticed_loss(failed)) {
            detected = Some(injected.elapsed());
        }
        if promoted.is_none() {
            if let Some(m) = writable_member(sys, &survivors).await {
                promoted = Some(Instant::now());
                new_primary = m;
            }
        }
        if promoted.is_some() && (detected.is_some() || injected.elapsed() > timeout / 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let promoted =
        promoted.ok_or_else(|| format!("no survivor became writable within {timeout:?}"))?;
    let first = load
        .first_ack_after(
            promoted,
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(10)),
        )
        .await
        .ok_or("no commit acknowledged through the write endpoint after the promotion")?;
    let acks = load.ledger.acks();
    let outage = pg::longest_gap(&acks, injected, first)
        .map(|(g, _)| g)
        .unwrap_or(first - injected);
    Ok(Failover {
        detected,
        promoted: promoted - injected,
        writable: first - injected,
        outage,
        new_primary,
    })
}

/// Wait until `member` streams from whichever member is primary; the time it took from `since`.
async fn until_streaming(
    sys: &dyn System,
    member: &str,
    since: Instant,
    timeout: Duration,
) -> Result<Duration, String> {
    let pw = sys.password();
    let left = (since + timeout).saturating_duration_since(Instant::now());
    crate::poll::until(left, || async {
        for p in ["a", "b", "c"].into_iter().filter(|p| *p != member) {
            let port = sys.member_port(p);
            if pg::in_recovery(port, &pw).await == Some(false)
                && pg::streaming_on(port, &pw, member).await
            {
                return Some(since.elapsed());
            }
        }
        None
    })
    .await
    .ok_or_else(|| format!("{member} not streaming within {timeout:?}"))
}

async fn current_primary_port(sys: &dyn System) -> Option<u16> {
    writable_member(sys, &["a", "b", "c"])
        .await
        .map(|m| sys.member_port(&m))
}

/// One run of the selected scenarios on a fresh cluster of `sys`.
pub async fn run_once(
    sys: &mut dyn System,
    opts: &Options,
    out: &mut Samples,
) -> Result<(), String> {
    let name = sys.name();
    log(opts, &name, "up");
    let began = Instant::now();
    tokio::task::block_in_place(|| sys.up())?;
    out.add("setup.up_s", secs(began.elapsed()));
    log(
        opts,
        &name,
        format!("ready after {:.1}s", began.elapsed().as_secs_f64()),
    );
    let pw = sys.password();
    let pa = sys.member_port("a");

    // Data for the recovery scenario (small size) and pgbench.
    let init = pg::pgbench(
        pa,
        &pw,
        &["-i", "-q", "-s", &opts.small_scale.to_string()],
        None,
    );
    tokio::task::block_in_place(|| init)?;
    let small_bytes = pg::db_size(&pg::conninfo(pa, &pw)).await?;

    if wants(opts, "footprint") {
        for (role, _, mib) in rss_by_role(sys) {
            out.add(&format!("footprint.idle_rss_mib.{role}"), mib);
        }
    }

    if wants(opts, "apply-delay") {
        apply_delay(sys, opts, out).await?;
    }
    if wants(opts, "sync-cost") {
        sync_cost(sys, opts, out).await?;
    }
    if wants(opts, "data-loss") || wants(opts, "failback") || wants(opts, "recovery") {
        data_loss(sys, opts, out, small_bytes).await?;
    }
    if wants(opts, "member-loss") {
        member_loss(sys, opts, out, true).await?;
    }
    if wants(opts, "process-crash") {
        member_loss(sys, opts, out, false).await?;
    }
    if wants(opts, "failback") {
        switchover(sys, opts, out).await?;
    }
    if wants(opts, "recovery") && opts.large_scale > 0 {
        recovery_large(sys, opts, out).await?;
    }
    tokio::task::block_in_place(|| sys.down());
    Ok(())
}

/// Scenario 5: c's replay lag under steady writes vs the declared 3 s.
async fn apply_delay(
    sys: &mut dyn System,
    opts: &Options,
    out: &mut Samples,
) -> Result<(), String> {
    let name = sys.name();
    let load = Load::start(&sys.write_conninfo(), 2, 100);
    load.until_acked(100, Duration::from_secs(20)).await?;
    let c = pg::conninfo(sys.member_port("c"), &sys.password());
    // steady state: c applies the load's transactions (its delay behind them)
    crate::poll::until(Duration::from_secs(30), || async {
        pg::replaying_recent(&c, Duration::from_secs(5))
            .await
            .then_some(())
    })
    .await
    .ok_or("c replays nothing of the load within 30 s")?;
    let mut lags = Vec::new();
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(8) {
        if let Ok(rows) = pg::sql(
            &c,
            "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8",
        )
        .await
        {
            if let Some(v) = rows.first().and_then(|r| r.get::<_, Option<f64>>(0)) {
                lags.push(v);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    load.stop().await;
    lags.sort_by(f64::total_cmp);
    let median = lags
        .get(lags.len() / 2)
        .copied()
        .ok_or("no replay lag samples on c")?;
    out.add("apply-delay.replay_lag_s", median);
    out.add(
        "apply-delay.error_pct",
        (median - DECLARED_DELAY_S) / DECLARED_DELAY_S * 100.0,
    );
    log(
        opts,
        &name,
        format!(
            "apply delay: c's median replay lag {median:.3}s over {} samples",
            lags.len()
        ),
    );
    Ok(())
}

/// Scenario 6: pgbench TPS waiting for the sync standby vs the same primary committing locally.
async fn sync_cost(sys: &mut dyn System, opts: &Options, out: &mut Samples) -> Result<(), String> {
    let name = sys.name();
    let pa = sys.member_port("a");
    let pw = sys.password();
    let args = ["-T", "8", "-c", "4", "-j", "2", "-n", "-N"];
    let sync = tokio::task::block_in_place(|| pg::pgbench(pa, &pw, &args, None))?;
    let local = tokio::task::block_in_place(|| {
        pg::pgbench(pa, &pw, &args, Some("-c synchronous_commit=local"))
    })?;
    out.add("sync-cost.tps_sync", sync);
    out.add("sync-cost.tps_local", local);
    out.add("sync-cost.ratio", sync / local);
    log(
        opts,
        &name,
        format!(
            "sync cost: {sync:.0} tps with sync standby, {local:.0} tps local ({:.2})",
            sync / local
        ),
    );
    Ok(())
}

/// Scenarios 1, 4 (small), 3 (failback): delete a's PGDATA under 4 writers.
async fn data_loss(
    sys: &mut dyn System,
    opts: &Options,
    out: &mut Samples,
    small_bytes: i64,
) -> Result<(), String> {
    let name = sys.name();
    let load = Load::start(&sys.write_conninfo(), WRITERS, 0);
    load.until_acked(200, Duration::from_secs(20)).await?;
    tokio::task::block_in_place(|| sys.mark_before_failure());
    let sampler = RssSampler::start(rss_by_role(sys));
    let data_dir = sys.data_dir("a");
    if !data_dir.join("PG_VERSION").exists() {
        return Err(format!(
            "a's data directory {} is not a PGDATA",
            data_dir.display()
        ));
    }
    let injected = Instant::now();
    crate::rm::rm_rf(&data_dir)?;
    log(
        opts,
        &name,
        format!("data loss: rm -rf {}", data_dir.display()),
    );
    let f = watch_failover(sys, &load, "a", injected, Duration::from_secs(90), false).await;
    let peaks = sampler.finish();
    let f = match f {
        Ok(f) => f,
        Err(e) => {
            load.stop().await;
            return Err(format!("data-loss failover: {e}"));
        }
    };
    for (role, mib) in &peaks {
        out.add(&format!("footprint.failover_rss_mib.{role}"), *mib);
    }
    match f.detected {
        Some(d) => out.add("data-loss.detected_s", secs(d)),
        None => out.note(
            "data-loss.detected_s",
            "the system's status never showed the loss",
        ),
    }
    out.add("data-loss.promoted_s", secs(f.promoted));
    out.add("data-loss.first_commit_s", secs(f.writable));
    out.add("data-loss.outage_s", secs(f.outage));
    log(
        opts,
        &name,
        format!(
            "data loss: detected {:?}, {} promoted {:.3}s, first commit {:.3}s, longest gap {:.3}s",
            f.detected.map(|d| d.as_secs_f64()),
            f.new_primary,
            secs(f.promoted),
            secs(f.writable),
            secs(f.outage)
        ),
    );
    // in-flight commits land in the ledger: wait for one acknowledged after this moment
    load.first_ack_after(Instant::now(), Duration::from_secs(10))
        .await;
    let np = pg::conninfo(sys.member_port(&f.new_primary), &sys.password());
    let acks = load.ledger.acks();
    let lost = pg::lost_on(&np, &acks).await?;
    out.add("data-loss.lost_commits", lost as f64);
    out.add("data-loss.acked_commits", acks.len() as f64);

    // Recovery of the destroyed member (small data).
    let mut streaming_at = None;
    if sys.recovers_destroyed_member() {
        match until_streaming(sys, "a", injected, Duration::from_secs(180)).await {
            Ok(d) => {
                streaming_at = Some(Instant::now());
                out.add("recovery.small.streaming_s", secs(d));
                out.add("recovery.small.db_mib", small_bytes as f64 / 1048576.0);
                log(
                    opts,
                    &name,
                    format!("recovery (small): a streaming after {:.3}s", secs(d)),
                );
            }
            Err(e) => out.errors.push(format!("recovery small: {e}")),
        }
    } else {
        out.note(
            "recovery.small.streaming_s",
            "the destroyed member is not brought back without a human",
        );
    }

    // Failback: the primary moves back to a.
    if streaming_at.is_some() {
        let from = Instant::now();
        let moved = tokio::task::block_in_place(|| sys.restore_topology(Duration::from_secs(180)));
        match moved {
            Ok(()) => {
                // in-flight commits land in the ledger: wait for one acknowledged after this moment
                load.first_ack_after(Instant::now(), Duration::from_secs(10))
                    .await;
                let acks = load.ledger.acks();
                let gap = pg::longest_gap(&acks, from, Instant::now()).map(|(g, _)| g);
                let after = load
                    .first_ack_after(Instant::now(), Duration::from_secs(10))
                    .await;
                if let (Some(g), Some(_)) = (gap, after) {
                    out.add("failback.outage_s", secs(g));
                    log(
                        opts,
                        &name,
                        format!("failback to a: longest write gap {:.3}s", secs(g)),
                    );
                }
            }
            Err(e) => out.errors.push(format!("failback: {e}")),
        }
    } else {
        out.note(
            "failback.outage_s",
            "no failback: the old primary does not come back by itself",
        );
    }
    let acks = load.stop().await;
    if let Some(port) = current_primary_port(sys).await {
        let lost = pg::lost_on(&pg::conninfo(port, &sys.password()), &acks).await?;
        if streaming_at.is_some() {
            out.add("failback.lost_commits", lost as f64);
        }
    }
    // A system that cannot restore the lab topology gets a fresh cluster for what follows.
    let restored = tokio::task::block_in_place(|| sys.restore_topology(Duration::from_secs(120)));
    // The bare pg_basebackup of the same data, once nothing moves any more.
    if let (Ok(()), Some(d)) = (
        &restored,
        out.metrics
            .get("recovery.small.streaming_s")
            .and_then(|v| v.last().copied()),
    ) {
        if streaming_at.is_some() {
            let (user, rpw) = sys.replication_login();
            let port = current_primary_port(sys).await.ok_or("no primary")?;
            let bare = tokio::task::block_in_place(|| pg::bare_basebackup(port, &user, &rpw))?;
            out.add("recovery.small.bare_basebackup_s", bare);
            out.add("recovery.small.ratio", d / bare);
            log(
                opts,
                &name,
                format!("recovery (small): bare pg_basebackup {bare:.3}s"),
            );
        }
    }
    if restored.is_err() {
        log(
            opts,
            &name,
            "topology not restored by the system: fresh cluster for the next scenario",
        );
        tokio::task::block_in_place(|| {
            sys.down();
            sys.up()
        })?;
    }
    Ok(())
}

/// Scenario 2: the primary's manager and PostgreSQL are killed. `node_down`: they stay dead (a
/// node dying: anything that restarts them is killed again until a survivor is writable);
/// otherwise a crash that the supervisor (ours, or a kubelet/systemd for Patroni) restarts at once.
async fn member_loss(
    sys: &mut dyn System,
    opts: &Options,
    out: &mut Samples,
    node_down: bool,
) -> Result<(), String> {
    let name = sys.name();
    let prefix = if node_down {
        "member-loss"
    } else {
        "process-crash"
    };
    if !node_down && !sys.restarts_crashed_member() {
        out.note(
            &format!("{prefix}.outage_s"),
            "no process supervises the member",
        );
        return Ok(());
    }
    let load = Load::start(&sys.write_conninfo(), WRITERS, 10);
    load.until_acked(200, Duration::from_secs(20)).await?;
    tokio::task::block_in_place(|| sys.mark_before_failure());
    let killer = sys.killer("a");
    let injected = Instant::now();
    killer();
    let keep = Arc::new(AtomicBool::new(node_down));
    let keeper = {
        let keep = keep.clone();
        std::thread::spawn(move || {
            while keep.load(Ordering::SeqCst) {
                killer();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    if !node_down {
        tokio::task::block_in_place(|| sys.restart_member("a"))?;
    }
    log(
        opts,
        &name,
        format!("{prefix}: a's manager and postgres killed"),
    );
    let f = watch_failover(
        sys,
        &load,
        "a",
        injected,
        Duration::from_secs(90),
        !node_down,
    )
    .await;
    keep.store(false, Ordering::SeqCst);
    let _ = keeper.join();
    let f = match f {
        Ok(f) => f,
        Err(e) => {
            load.stop().await;
            return Err(format!("{prefix} failover: {e}"));
        }
    };
    if let Some(d) = f.detected {
        out.add(&format!("{prefix}.detected_s"), secs(d));
    }
    out.add(&format!("{prefix}.promoted_s"), secs(f.promoted));
    out.add(&format!("{prefix}.first_commit_s"), secs(f.writable));
    out.add(&format!("{prefix}.outage_s"), secs(f.outage));
    out.add(
        &format!("{prefix}.same_primary_returned"),
        if f.new_primary == "a" { 1.0 } else { 0.0 },
    );
    log(
        opts,
        &name,
        format!(
            "{prefix}: {} writable {:.3}s, first commit {:.3}s, longest gap {:.3}s",
            f.new_primary,
            secs(f.promoted),
            secs(f.writable),
            secs(f.outage)
        ),
    );
    // in-flight commits land in the ledger: wait for one acknowledged after this moment
    load.first_ack_after(Instant::now(), Duration::from_secs(10))
        .await;
    let acks = load.stop().await;
    let np = pg::conninfo(sys.member_port(&f.new_primary), &sys.password());
    out.add(
        &format!("{prefix}.lost_commits"),
        pg::lost_on(&np, &acks).await? as f64,
    );
    if node_down {
        tokio::task::block_in_place(|| sys.restart_member("a"))?;
    }
    let restored = tokio::task::block_in_place(|| sys.restore_topology(Duration::from_secs(180)));
    if let Err(e) = restored {
        log(opts, &name, format!("after {prefix}: {e}; fresh cluster"));
        tokio::task::block_in_place(|| {
            sys.down();
            sys.up()
        })?;
    }
    Ok(())
}

/// Scenario 3 (planned): switchover a → b under writers.
async fn switchover(sys: &mut dyn System, opts: &Options, out: &mut Samples) -> Result<(), String> {
    let name = sys.name();
    let load = Load::start(&sys.write_conninfo(), WRITERS, 20);
    load.until_acked(200, Duration::from_secs(20)).await?;
    let asked = Instant::now();
    match tokio::task::block_in_place(|| sys.switchover("b")) {
        Ok(()) => {}
        Err(e) => {
            load.stop().await;
            out.note("failback.switchover_outage_s", e);
            return Ok(());
        }
    }
    let pw = sys.password();
    let pb = sys.member_port("b");
    let left = (asked + Duration::from_secs(60)).saturating_duration_since(Instant::now());
    let became = crate::poll::until(left, || async {
        (pg::in_recovery(pb, &pw).await == Some(false)).then(Instant::now)
    })
    .await;
    let Some(promoted) = became else {
        load.stop().await;
        return Err("switchover: b never became primary".into());
    };
    let first = load
        .first_ack_after(promoted, Duration::from_secs(30))
        .await;
    // in-flight commits land in the ledger: wait for one acknowledged after this moment
    load.first_ack_after(Instant::now(), Duration::from_secs(10))
        .await;
    let acks = load.ledger.acks();
    if let Some(first) = first {
        let gap = pg::longest_gap(&acks, asked, first)
            .map(|(g, _)| g)
            .unwrap_or(first - asked);
        out.add("failback.switchover_outage_s", secs(gap));
        out.add("failback.switchover_total_s", secs(first - asked));
        log(
            opts,
            &name,
            format!(
                "switchover a→b: longest write gap {:.3}s, done after {:.3}s",
                secs(gap),
                secs(first - asked)
            ),
        );
    }
    let acks = load.stop().await;
    let lost = pg::lost_on(&pg::conninfo(pb, &pw), &acks).await?;
    out.add("failback.switchover_lost_commits", lost as f64);
    let restored = tokio::task::block_in_place(|| sys.restore_topology(Duration::from_secs(120)));
    if let Err(e) = restored {
        log(opts, &name, format!("after switchover: {e}; fresh cluster"));
        tokio::task::block_in_place(|| {
            sys.down();
            sys.up()
        })?;
    }
    Ok(())
}

/// Scenario 4 (large): load `-s large`, destroy the primary's PGDATA, time until it streams again,
/// against a bare pg_basebackup of the same data.
async fn recovery_large(
    sys: &mut dyn System,
    opts: &Options,
    out: &mut Samples,
) -> Result<(), String> {
    let name = sys.name();
    if !sys.recovers_destroyed_member() {
        out.note(
            "recovery.large.streaming_s",
            "the destroyed member is not brought back without a human",
        );
        return Ok(());
    }
    let pw = sys.password();
    let port = current_primary_port(sys).await.ok_or("no primary")?;
    let primary = ["a", "b", "c"]
        .into_iter()
        .find(|m| sys.member_port(m) == port)
        .unwrap_or("a")
        .to_string();
    log(
        opts,
        &name,
        format!(
            "recovery (large): pgbench -i -s {} on {primary}",
            opts.large_scale
        ),
    );
    tokio::task::block_in_place(|| {
        pg::pgbench(
            port,
            &pw,
            &["-i", "-q", "-s", &opts.large_scale.to_string()],
            None,
        )
    })?;
    let bytes = pg::db_size(&pg::conninfo(port, &pw)).await?;
    // Every standby catches up before the failure.
    // the lab: b and c stream from the primary
    crate::poll::until(Duration::from_secs(60), || async {
        pg::standbys_caught_up(&pg::conninfo(port, &pw), 2)
            .await
            .then_some(())
    })
    .await
    .ok_or("the standbys did not catch up within 60 s")?;
    let load = Load::start(&sys.write_conninfo(), 1, 30);
    load.until_acked(20, Duration::from_secs(20)).await?;
    let data_dir = sys.data_dir(&primary);
    let injected = Instant::now();
    crate::rm::rm_rf(&data_dir)?;
    let res = until_streaming(sys, &primary, injected, Duration::from_secs(300)).await;
    let acks = load.stop().await;
    let d = res?;
    tokio::task::block_in_place(|| sys.restore_topology(Duration::from_secs(300)))?;
    let (user, rpw) = sys.replication_login();
    let port = current_primary_port(sys).await.ok_or("no primary")?;
    let bare = tokio::task::block_in_place(|| pg::bare_basebackup(port, &user, &rpw))?;
    out.add("recovery.large.streaming_s", secs(d));
    out.add("recovery.large.bare_basebackup_s", bare);
    out.add("recovery.large.ratio", secs(d) / bare);
    out.add("recovery.large.db_mib", bytes as f64 / 1048576.0);
    let lost = pg::lost_on(&pg::conninfo(port, &pw), &acks).await?;
    out.add("recovery.large.lost_commits", lost as f64);
    log(opts, &name, format!("recovery (large, {} MiB): {primary} streaming after {:.3}s; bare pg_basebackup {bare:.3}s", bytes / 1048576, secs(d)));
    Ok(())
}
