//! What the watcher ([`super::watcher`]) saw: every ~50 ms the primary of record (`status.json`),
//! which members answer `pg_is_in_recovery() = false` and which accept new connections. From the
//! samples: how long two or more members were writable, whether an acknowledgement came from a
//! member after the record had moved away from it, and when the cluster was settled again.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Sample {
    /// When `status.json` was read (the probes were sent right after).
    pub at: Instant,
    /// `currentPrimary` of the status read at `at`.
    pub primary: Option<String>,
    /// `targetPrimary` of the same status.
    pub target: Option<String>,
    /// Members that answered `pg_is_in_recovery() = false`.
    pub writable: Vec<String>,
    /// Members that answered at all (either way).
    pub answered: Vec<String>,
    /// Members whose postmaster accepted a new connection at the last such check.
    pub accepting: Vec<String>,
    /// The status is settled ([`super::files::settled`]) and the members agree with it: each
    /// answers and accepts connections, and exactly the primary of record is writable.
    pub settled: bool,
}

impl Sample {
    /// One line: the record, who is writable, who did not answer, who refused connections.
    pub fn describe(&self, members: &[String]) -> String {
        let lacking = |have: &[String]| -> Vec<&str> {
            members
                .iter()
                .filter(|m| !have.contains(m))
                .map(String::as_str)
                .collect()
        };
        format!(
            "primary of record {}, target {}, writable {:?}, silent {:?}, refusing connections \
             {:?}{}",
            self.primary.as_deref().unwrap_or("-"),
            self.target.as_deref().unwrap_or("-"),
            self.writable,
            lacking(&self.answered),
            lacking(&self.accepting),
            if self.settled { ", settled" } else { "" }
        )
    }
}

/// A stretch of samples with two or more writable members.
#[derive(Clone, Debug)]
pub struct Spell {
    pub from: Instant,
    pub to: Instant,
    pub members: Vec<String>,
}

#[derive(Default)]
pub struct Watch {
    pub(super) samples: Mutex<Vec<Sample>>,
    /// (condition type, status) → the first message seen with it.
    pub(super) conditions: Mutex<BTreeMap<(String, String), String>>,
}

impl Watch {
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The message of the first status that had condition `type_` at `status`.
    pub fn saw_condition(&self, type_: &str, status: &str) -> Option<String> {
        self.conditions
            .lock()
            .ok()?
            .get(&(type_.to_string(), status.to_string()))
            .cloned()
    }

    /// Total time with two or more writable members, and the stretches.
    pub fn two_writable(&self) -> (Duration, Vec<Spell>) {
        let samples = self.samples();
        let mut total = Duration::ZERO;
        let mut spells: Vec<Spell> = Vec::new();
        for (i, s) in samples.iter().enumerate() {
            if s.writable.len() < 2 {
                continue;
            }
            // the state holds until the next sample says otherwise
            let until = samples.get(i + 1).map_or(s.at, |n| n.at);
            total += until - s.at;
            match spells.last_mut() {
                Some(last) if i > 0 && last.to == s.at => {
                    last.to = until;
                    for m in &s.writable {
                        if !last.members.contains(m) {
                            last.members.push(m.clone());
                        }
                    }
                }
                _ => spells.push(Spell {
                    from: s.at,
                    to: until,
                    members: s.writable.clone(),
                }),
            }
        }
        (total, spells)
    }

    /// Every sample that differs from the one before in anything but its time.
    pub fn changes(&self) -> Vec<Sample> {
        let mut out: Vec<Sample> = Vec::new();
        for s in self.samples() {
            let key = |s: &Sample| {
                (
                    s.primary.clone(),
                    s.target.clone(),
                    s.writable.clone(),
                    s.answered.clone(),
                    s.accepting.clone(),
                    s.settled,
                )
            };
            let same = out.last().is_some_and(|l| key(l) == key(&s));
            if !same {
                out.push(s);
            }
        }
        out
    }

    pub fn latest(&self) -> Option<Sample> {
        self.samples.lock().ok()?.last().cloned()
    }

    /// When the run of settled samples that ends with the latest one began (`None` when the
    /// latest sample is not settled).
    pub fn settled_since(&self) -> Option<Instant> {
        let samples = self.samples.lock().ok()?;
        let unsettled = samples.iter().rposition(|s| !s.settled);
        let first = unsettled.map_or(0, |i| i + 1);
        samples.get(first).map(|s| s.at)
    }

    /// The last sample taken strictly before `t`.
    pub fn last_before(&self, t: Instant) -> Option<Sample> {
        let samples = self.samples.lock().ok()?;
        let i = samples.partition_point(|s| s.at < t);
        i.checked_sub(1).map(|i| samples[i].clone())
    }
}
