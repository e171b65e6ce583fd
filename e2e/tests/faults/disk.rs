//! An asynchronous standby's disk full: a tmpfs just larger than its member directory, filled
//! with WAL under load, then made large again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgreplica_e2e::faults::case::{Case, OrFail};
use pgreplica_e2e::faults::load::Load;
use pgreplica_e2e::faults::tmpfs::{self, Tmpfs};
use pgreplica_e2e::faults::Spec;
use pgreplica_e2e::ledger::conninfo;
use tokio_postgres::NoTls;

use super::{outage_below, run, BOUND, HOLD};

const MIB: u64 = 1 << 20;
/// Room left on the standby's disk: one new WAL segment (16 MiB) fits, the next does not.
const ROOM: u64 = 24 * MIB;
/// The disk once the fault is removed.
const LARGE: u64 = 1 << 30;
/// What PostgreSQL says when the disk is full.
const ENOSPC: &str = "No space left on device";
/// How long the WAL may take to fill the disk.
const FILL_WITHIN: Duration = Duration::from_secs(90);

/// Bulk inserts through rw (about 4 MiB of WAL each, four a second) that fill the standby's
/// disk quickly; not part of the ledger. How many succeeded.
async fn filler(port: u16, password: String, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let mut every = tokio::time::interval(Duration::from_millis(250));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::SeqCst) {
        every.tick().await;
        let Ok((client, conn)) = tokio_postgres::connect(&conninfo(port, &password), NoTls).await
        else {
            continue;
        };
        tokio::spawn(conn);
        if client
            .batch_execute("CREATE TABLE IF NOT EXISTS filler (b text)")
            .await
            .is_err()
        {
            continue;
        }
        while !stop.load(Ordering::SeqCst) {
            every.tick().await;
            let insert = "INSERT INTO filler SELECT repeat(md5(g::text), 32) \
                          FROM generate_series(1, 4000) g";
            if client.batch_execute(insert).await.is_err() {
                break;
            }
            done.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Occurrences of `needle` in `member`'s log after byte `from`.
fn log_count(case: &Case, member: &str, from: usize, needle: &str) -> usize {
    let log =
        std::fs::read(case.dir().join("logs").join(format!("{member}.log"))).unwrap_or_default();
    String::from_utf8_lossy(log.get(from..).unwrap_or_default())
        .matches(needle)
        .count()
}

fn log_len(case: &Case, member: &str) -> usize {
    std::fs::metadata(case.dir().join("logs").join(format!("{member}.log")))
        .map_or(0, |m| usize::try_from(m.len()).unwrap_or(usize::MAX))
}

#[test]
fn standby_disk_full() {
    run(|| async {
        let member = "c";
        let case = Case::up("standby_disk_full", Spec::lab());
        let dir = case.cluster.member_dir(member);
        case.cluster.run(&["down"]).or_fail(&case);
        let used = tmpfs::used(&dir).or_fail(&case);
        let size = (used + ROOM).div_ceil(MIB) * MIB;
        let fs = Tmpfs::over(&dir, size, case.dir()).or_fail(&case);
        case.say(format!(
            "down; {} ({} MiB used) now on a tmpfs of {} MiB; up again",
            dir.display(),
            used / MIB,
            size / MIB
        ));
        case.up_again(BOUND).or_fail(&case);
        let load = Load::start(&case).await.or_fail(&case);
        case.say(format!(
            "load running: {} commits acknowledged; {} MiB free on {member}'s disk",
            load.ledger.acks().len(),
            tmpfs::available(&dir).unwrap_or_default() / MIB
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let log_from = log_len(&case, member);
        let injected = Instant::now();
        let fill = tokio::spawn(filler(
            case.cluster.rw_port,
            case.password.clone(),
            stop.clone(),
            done.clone(),
        ));
        let full = pgreplica_e2e::poll::until(FILL_WITHIN, || async {
            (log_count(&case, member, log_from, ENOSPC) > 0).then(Instant::now)
        })
        .await;
        stop.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(10), fill).await;
        let mut failures = Vec::new();
        match full {
            Some(at) => case.say(format!(
                "{member}'s log says \"{ENOSPC}\" {:.3} s after the filler started ({} bulk \
                 inserts); holding {HOLD:?}",
                (at - injected).as_secs_f64(),
                done.load(Ordering::SeqCst)
            )),
            None => failures.push(format!(
                "{member}'s disk never filled within {FILL_WITHIN:?} ({} bulk inserts, {} MiB \
                 free)",
                done.load(Ordering::SeqCst),
                tmpfs::available(&dir).unwrap_or_default() / MIB
            )),
        }
        tokio::time::sleep(HOLD).await;
        let status = case.status().unwrap_or_default();
        let row = case.cluster.member(&status, member).unwrap_or_default();
        case.say(format!(
            "after the hold: {member} ready={} activity={} lastError={}; \"{ENOSPC}\" {} times \
             in its log",
            row["ready"],
            row["activity"],
            row["lastError"],
            log_count(&case, member, log_from, ENOSPC)
        ));
        fs.resize(LARGE).or_fail(&case);
        let removed = Instant::now();
        case.say(format!(
            "remounted {} with {} MiB",
            dir.display(),
            LARGE / MIB
        ));
        let mut finished = case.finish(load, injected, removed, BOUND).await;
        finished.failures.extend(failures);
        outage_below(
            &mut finished,
            Duration::from_secs(5),
            "only the asynchronous standby's disk was full",
        );
        if let Err(e) = case.cluster.run(&["down"]).and_then(|_| fs.unmount()) {
            finished.failures.push(format!("down and unmount: {e}"));
        }
        case.conclude(finished);
    });
}
