//! A member that applies WAL later than the stuck-standby threshold, through a failover and a
//! failback.

use std::time::Instant;

use pgreplica_e2e::faults::case::OrFail;
use pgreplica_e2e::faults::Spec;

use super::{loaded, run, BOUND};

/// The delayed member of `e2e/faults/long-delay.yaml`.
const DELAYED: &str = "c";

/// The primary's data directory deleted under load with c 20 s behind: b is promoted, a re-cloned
/// and promoted again, two timeline switches. At each, c's WAL receiver stops at the end of the
/// old timeline until c's own replay gets there, 20 s later; c is busy replaying, not stuck, and
/// must be left alone (never re-cloned, never rewound for nothing; a rewind that undoes WAL c
/// received from a and b never had is right). Nothing lost.
#[test]
fn long_delay_through_failover() {
    run(|| async {
        let (case, load) = loaded("long_delay_through_failover", Spec::long_delay()).await;
        let primary = case.primary().or_fail(&case);
        let data = case.cluster.data_dir(&primary);
        let injected = Instant::now();
        pgreplica_e2e::rm::rm_rf(&data).or_fail(&case);
        case.say(format!("rm -rf {}", data.display()));
        let removed = Instant::now();
        let mut finished = case.finish(load, injected, removed, BOUND).await;
        // c's own account of every repair. Waiting for its replay is never a reason: a rewind
        // that finds nothing to undo (NotNeeded) or a new copy means c was taken for stuck. A
        // rewind that undid something is right: c, asynchronous, had received WAL from a that b
        // never had when b was promoted, and must give it up to follow b.
        let log = std::fs::read_to_string(case.dir().join("logs").join(format!("{DELAYED}.log")))
            .unwrap_or_default();
        // from the failover on (c's first clone is no repair)
        let since_failover: Vec<&str> = log
            .lines()
            .skip_while(|l| !l.contains("stream from primary b"))
            .collect();
        let repairs: Vec<&str> = since_failover
            .iter()
            .copied()
            .filter(|l| {
                // the log may colour `outcome=`: the variant's name is what counts
                (l.contains("rewind finished") && !l.contains("Rewound"))
                    || l.contains("clone complete")
            })
            .collect();
        let diverged = since_failover
            .iter()
            .filter(|l| l.contains("rewind finished") && l.contains("Rewound"))
            .count();
        if diverged > 0 {
            case.say(format!(
                "{DELAYED} had WAL its new upstream never had (asynchronous, ahead of the promoted member): rewound {diverged} time(s), as it must be"
            ));
        }
        if !repairs.is_empty() {
            finished.failures.push(format!(
                "{DELAYED}, waiting for its own replay at a timeline switch, was repaired: {repairs:?}"
            ));
        }
        case.conclude(finished);
    });
}
