//! The end of a case: back to Healthy within the bound, load stopped, every acknowledged commit on
//! the final primary and on every streaming standby, and the row.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::case::{summary, Case};
use super::load::{Load, Stopped};
use super::table::{self, Row};
use super::{files, DIRECT_WRITER};
use crate::ledger::{longest_gap, missing_on, Ack};

/// Commits through rw that prove the endpoint works again after recovery.
const ACKS_AFTER_RECOVERY: usize = 50;
/// How long a standby may take to show every commit (the delayed one applies 3 s late).
const CATCH_UP: Duration = Duration::from_secs(30);
/// Stage lines for what the watcher saw change.
const SHOWN_CHANGES: usize = 60;

pub struct Finished {
    pub row: Row,
    /// Failed requirements so far; a case adds its own before [`Case::conclude`].
    pub failures: Vec<String>,
    pub stopped: Stopped,
    /// When the cluster was settled again, if it was.
    pub recovered: Option<Instant>,
}

/// Signed seconds of `t` relative to `origin`.
pub fn rel(t: Instant, origin: Instant) -> f64 {
    if t >= origin {
        (t - origin).as_secs_f64()
    } else {
        -(origin - t).as_secs_f64()
    }
}

/// The longest stretch without a commit acknowledged through rw in (`from`, `to`], counting the
/// stretch from the last one to `to`.
pub fn outage(acks: &[Ack], from: Instant, to: Instant) -> Duration {
    let rw: Vec<Ack> = acks
        .iter()
        .filter(|a| a.writer != DIRECT_WRITER)
        .copied()
        .collect();
    let inner = longest_gap(&rw, from, to).map_or(Duration::ZERO, |(g, _)| g);
    let last = rw
        .iter()
        .map(|a| a.at)
        .filter(|t| *t <= to)
        .max()
        .map_or(from, |t| t.max(from));
    inner.max(to - last)
}

impl Case {
    /// Wait (at most `bound` after the fault was `removed`) for the cluster to settle, stop the
    /// load, check. Recovery is counted from `injected`.
    pub async fn finish(
        &self,
        load: Load,
        injected: Instant,
        removed: Instant,
        bound: Duration,
    ) -> Finished {
        let mut failures = Vec::new();
        let watch = load.watch();
        let left = (removed + bound).saturating_duration_since(Instant::now());
        let recovered = crate::poll::until(left, || async {
            watch
                .latest()
                .filter(|l| l.settled && l.at > removed)
                .map(|l| l.at)
        })
        .await;
        let status = self.status().map(|s| summary(&s)).unwrap_or_else(|e| e);
        let recovery = match recovered {
            Some(at) => {
                let since = watch.settled_since().unwrap_or(at);
                self.say(format!(
                    "settled at {:+.3}s, without a break since {:+.3}s: {status}",
                    rel(at, injected),
                    rel(since, injected)
                ));
                Some(since.saturating_duration_since(injected))
            }
            None => {
                failures.push(format!(
                    "not Healthy within {bound:?} after the fault was removed; last status: \
                     {status}; last sample: {}",
                    watch
                        .latest()
                        .map_or("none".into(), |l| l.describe(&self.cluster.member_names()))
                ));
                None
            }
        };
        if let Some(at) = recovered {
            if let Err(e) = load
                .until_rw_acks_after(at, ACKS_AFTER_RECOVERY, Duration::from_secs(30))
                .await
            {
                failures.push(format!("rw endpoint after recovery: {e}"));
            }
        }
        let end = Instant::now();
        let stopped = load.stop().await;
        let outage = outage(&stopped.acks, injected, end);
        let lost = self.check_commits(&stopped.acks, &mut failures).await;
        let non_primary = stopped.direct.non_primary_acks(&stopped.watch);
        let changes = stopped.watch.changes();
        let members = self.cluster.member_names();
        for c in changes.iter().take(SHOWN_CHANGES) {
            self.say(format!(
                "watch {:+.3}s: {}",
                rel(c.at, injected),
                c.describe(&members)
            ));
        }
        if changes.len() > SHOWN_CHANGES {
            self.say(format!(
                "watch: {} more changes not shown",
                changes.len() - SHOWN_CHANGES
            ));
        }
        let (two_writable, spells) = stopped.watch.two_writable();
        for s in &spells {
            self.say(format!(
                "two writable from {:+.3}s to {:+.3}s: {:?}",
                rel(s.from, injected),
                rel(s.to, injected),
                s.members
            ));
        }
        let direct = &stopped.direct;
        self.say(format!(
            "direct client on {}: {} acks; {}",
            direct.member,
            direct.acks().len(),
            match direct.ended() {
                Some((at, why)) => format!("ended at {:+.3}s: {why}", rel(at, injected)),
                None => "still connected at the end".into(),
            }
        ));
        for (a, primary) in non_primary.iter().take(5) {
            self.say(format!(
                "non-primary ack: direct seq {} sent {:+.3}s acked {:+.3}s while {primary} was primary of record",
                a.seq,
                rel(a.sent, injected),
                rel(a.acked, injected)
            ));
        }
        self.say(format!(
            "{} acked ({} direct), {} writer errors (reconnects)",
            stopped.acks.len(),
            direct.acks().len(),
            stopped.writer_errors
        ));
        if lost > 0 {
            failures.push(format!("{lost} acknowledged commits lost"));
        }
        if !non_primary.is_empty() {
            failures.push(format!(
                "{} commits acknowledged by {} after another member was primary of record",
                non_primary.len(),
                direct.member
            ));
        }
        let row = Row {
            fault: self.name.to_string(),
            acked: Some(stopped.acks.len()),
            lost: Some(lost),
            two_writable: Some(two_writable),
            non_primary_acks: Some(non_primary.len()),
            outage: Some(outage),
            recovery,
            verdict: String::new(),
        };
        Finished {
            row,
            failures,
            stopped,
            recovered,
        }
    }

    /// Every acknowledged commit on the primary of record and every streaming standby; how many
    /// are missing anywhere.
    pub async fn check_commits(&self, acks: &[Ack], failures: &mut Vec<String>) -> usize {
        let Ok(status) = self.status() else {
            failures.push("no status to find the members to check".into());
            return 0;
        };
        let mut members: Vec<String> = files::current_primary(&status).into_iter().collect();
        members.extend(files::streaming_standbys(&status));
        if members.is_empty() {
            failures.push(format!("no member to check: {}", summary(&status)));
        }
        let mut lost: BTreeSet<(i32, i64)> = BTreeSet::new();
        // what the first member checked (the primary) lacks, a standby cannot have
        let mut on_primary: Option<BTreeSet<(i32, i64)>> = None;
        for m in &members {
            let port = match self.port(m) {
                Ok(p) => p,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            // the last answer counts, caught up or not when the time is up
            let last = std::cell::RefCell::new(None);
            let (last_ref, on_primary_ref) = (&last, &on_primary);
            let caught_up = crate::poll::until(CATCH_UP, || async move {
                let missing = missing_on(port, &self.password, acks).await;
                let done = missing.as_ref().is_ok_and(|v| match on_primary_ref {
                    None => true,
                    Some(p) => v.iter().all(|k| p.contains(k)),
                });
                if done {
                    Some(missing)
                } else {
                    *last_ref.borrow_mut() = Some(missing);
                    None
                }
            })
            .await;
            let missing = match (caught_up, last.into_inner()) {
                (Some(m), _) | (None, Some(m)) => m,
                (None, None) => missing_on(port, &self.password, acks).await,
            };
            match missing {
                Ok(v) => {
                    self.say(format!(
                        "{m}: {} of {} acknowledged commits present{}",
                        acks.len() - v.len(),
                        acks.len(),
                        if v.is_empty() {
                            String::new()
                        } else {
                            format!(", missing e.g. {:?}", &v[..v.len().min(5)])
                        }
                    ));
                    on_primary.get_or_insert_with(|| v.iter().copied().collect());
                    lost.extend(v);
                }
                Err(e) => failures.push(format!("cannot check {m}: {e}")),
            }
        }
        lost.len()
    }

    /// Record the row (with its verdict); on any failure print diagnostics and panic.
    pub fn conclude(&self, mut finished: Finished) {
        let failures = &finished.failures;
        finished.row.verdict = if failures.is_empty() {
            "pass".into()
        } else {
            format!("FAIL: {}", failures.join("; "))
        };
        table::record(&finished.row);
        if !failures.is_empty() {
            self.fail(&failures.join("\n"));
        }
    }

    /// A case without load: record a row of its own and fail when `failures` is not empty.
    pub fn conclude_row(&self, mut row: Row, failures: Vec<String>) {
        row.fault = self.name.to_string();
        row.verdict = if failures.is_empty() {
            "pass".into()
        } else {
            format!("FAIL: {}", failures.join("; "))
        };
        table::record(&row);
        if !failures.is_empty() {
            self.fail(&failures.join("\n"));
        }
    }
}
