//! Members' reports as they change: one long poll per agent (`GET /status?since=N`) answered the
//! moment the report changes in more than its numbers, or after `timing::LONG_POLL` as a
//! heartbeat. A loss, a promotion or a fence reaches the brain at once instead of at its next
//! look; a refused connection is news too.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::member::MemberReport;
use crate::net::http::{AgentClient, Target};
use crate::plan::Observation;

use super::timing::{AGENT_TIMEOUT, LONG_POLL, RETRY_AFTER, TICK};

/// Where a member's agent is, or why there is no address yet.
pub type AgentAddress = Result<Target, String>;

type Latest = Arc<Mutex<BTreeMap<String, Observation>>>;

struct Watcher {
    address: watch::Sender<AgentAddress>,
    task: JoinHandle<()>,
    since: std::time::Instant,
}

/// The latest observation of every followed member; `changed` is notified on news.
pub struct Reports {
    agents: AgentClient,
    watchers: BTreeMap<String, Watcher>,
    latest: Latest,
    changed: Arc<Notify>,
}

impl Reports {
    pub fn new(agents: AgentClient) -> Reports {
        Reports {
            agents,
            watchers: BTreeMap::new(),
            latest: Arc::default(),
            changed: Arc::new(Notify::new()),
        }
    }

    /// Follow exactly these members at these addresses: new members get a watcher, gone ones
    /// lose theirs, moved ones are asked at the new address.
    pub fn follow(&mut self, addresses: &BTreeMap<String, AgentAddress>) {
        self.watchers.retain(|name, w| {
            let keep = addresses.contains_key(name);
            if !keep {
                w.task.abort();
            }
            keep
        });
        self.lock().retain(|name, _| addresses.contains_key(name));
        for (name, address) in addresses {
            match self.watchers.get(name) {
                Some(w) => {
                    w.address.send_if_modified(|current| {
                        let moved = current != address;
                        if moved {
                            *current = address.clone();
                        }
                        moved
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(address.clone());
                    let task = tokio::spawn(watch_member(
                        name.clone(),
                        self.agents.clone(),
                        rx,
                        self.latest.clone(),
                        self.changed.clone(),
                    ));
                    self.watchers.insert(
                        name.clone(),
                        Watcher {
                            address: tx,
                            task,
                            since: std::time::Instant::now(),
                        },
                    );
                }
            }
        }
    }

    /// Every followed member as last heard (members not heard from yet are unknown).
    pub fn observations(&self) -> BTreeMap<String, Observation> {
        let latest = self.lock();
        self.watchers
            .keys()
            .map(|name| {
                let obs = latest.get(name).cloned().unwrap_or(Observation::Unknown {
                    why: "not heard from yet".into(),
                });
                (name.clone(), obs)
            })
            .collect()
    }

    /// Some member followed for less than `unheard_at_most()` has not answered or failed yet: a
    /// plan now would take it for lost (a brain that just started would move every label).
    pub fn first_answers_pending(&self) -> bool {
        let latest = self.lock();
        self.watchers.iter().any(|(name, w)| {
            !latest.contains_key(name) && w.since.elapsed() < super::timing::unheard_at_most()
        })
    }

    /// Notified whenever a member's observation changes in more than its numbers.
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Observation>> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Reports {
    fn drop(&mut self) {
        for w in self.watchers.values() {
            w.task.abort();
        }
    }
}

/// Whether `next` is news compared with `previous`.
fn news(previous: Option<&Observation>, next: &Observation) -> bool {
    match (previous, next) {
        (Some(Observation::Reported(a)), Observation::Reported(b)) => !a.same_but_numbers(b),
        (Some(Observation::Unknown { why: a }), Observation::Unknown { why: b }) => a != b,
        _ => true,
    }
}

fn store(latest: &Latest, changed: &Notify, member: &str, next: Observation) {
    let mut map = latest.lock().unwrap_or_else(PoisonError::into_inner);
    let is_news = news(map.get(member), &next);
    map.insert(member.to_string(), next);
    drop(map);
    if is_news {
        changed.notify_one();
    }
}

async fn watch_member(
    member: String,
    agents: AgentClient,
    mut address: watch::Receiver<AgentAddress>,
    latest: Latest,
    changed: Arc<Notify>,
) {
    let mut since: Option<u64> = None;
    loop {
        let current = address.borrow_and_update().clone();
        let target = match current {
            Ok(target) => target,
            Err(why) => {
                store(&latest, &changed, &member, Observation::Unknown { why });
                if address.changed().await.is_err() {
                    return;
                }
                since = None;
                continue;
            }
        };
        let path = match since {
            Some(n) => format!("/status?since={n}&waitMs={}", LONG_POLL.as_millis()),
            None => "/status".to_string(),
        };
        let asked = std::time::Instant::now();
        let answer = tokio::select! {
            answer = agents.get_json::<MemberReport>(&target, &path, LONG_POLL + AGENT_TIMEOUT) => answer,
            moved = address.changed() => {
                if moved.is_err() {
                    return;
                }
                since = None;
                continue;
            }
        };
        match answer {
            Ok(report) => {
                // an agent that does not hold long polls (an older version) answers at once with
                // the same revision: ask it at the pace of the tick, not in a spin
                let unchanged = since == Some(report.revision);
                since = Some(report.revision);
                store(
                    &latest,
                    &changed,
                    &member,
                    Observation::Reported(Box::new(report)),
                );
                if unchanged && asked.elapsed() < LONG_POLL / 2 {
                    tokio::time::sleep(TICK).await;
                }
            }
            Err(e) => {
                since = None;
                store(
                    &latest,
                    &changed,
                    &member,
                    Observation::Unknown { why: e.to_string() },
                );
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_news_wakes_the_brain() {
        let base = MemberReport::new("a");
        let mut moved = base.clone();
        moved.received_lsn = Some(crate::member::Lsn(42));
        moved.at_ms = 99;
        let mut promoted = base.clone();
        promoted.role = crate::member::ActualRole::Primary;
        let reported = |r: &MemberReport| Observation::Reported(Box::new(r.clone()));
        let unknown = |why: &str| Observation::Unknown { why: why.into() };
        let cases = [
            (None, reported(&base), true),
            (Some(reported(&base)), reported(&moved), false),
            (Some(reported(&base)), reported(&promoted), true),
            (Some(reported(&base)), unknown("refused"), true),
            (Some(unknown("refused")), unknown("refused"), false),
            (Some(unknown("refused")), unknown("timed out"), true),
            (Some(unknown("refused")), reported(&base), true),
        ];
        for (previous, next, want) in cases {
            assert_eq!(
                news(previous.as_ref(), &next),
                want,
                "{previous:?} → {next:?}"
            );
        }
    }
}
