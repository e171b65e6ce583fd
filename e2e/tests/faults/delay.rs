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
/// must be left alone (never stopped for a rewind or re-cloned). Nothing lost.
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
        let brain =
            std::fs::read_to_string(case.dir().join("logs").join("brain.log")).unwrap_or_default();
        let repairs: Vec<&str> = brain
            .lines()
            // the brain's progress lines: "HH:MM:SS.mmm Recloning [c] …"
            .filter(|l| {
                l.split_once(' ')
                    .is_some_and(|(_, rest)| rest.starts_with(&format!("Recloning [{DELAYED}]")))
            })
            .collect();
        if !repairs.is_empty() {
            finished.failures.push(format!(
                "{DELAYED}, waiting for its own replay at a timeline switch, was repaired: {repairs:?}"
            ));
        }
        case.conclude(finished);
    });
}
