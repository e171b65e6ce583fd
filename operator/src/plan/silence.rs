//! Agents that stopped answering: how long each has been silent, and which must be fenced now.
//! The tick keeps one `Silence` per cluster and feeds it every observation; the runtime decides
//! how to fence (the local runtime kills the agent and its server; see `brain::timing`).

use std::collections::BTreeMap;

use super::input::Observation;

/// When a silence is long enough to fence, and after how many looks in a row.
#[derive(Clone, Copy, Debug)]
pub struct SilencePolicy {
    pub after_ms: u64,
    pub misses: u32,
}

/// How long each agent has not answered.
#[derive(Clone, Debug, Default)]
pub struct Silence {
    since: BTreeMap<String, (u64, u32)>,
}

impl Silence {
    /// Members silent long enough to be fenced at `now_ms`. Each is reported once per silence:
    /// a fenced member is fenced again only after another whole silence.
    pub fn update(
        &mut self,
        observations: &BTreeMap<String, Observation>,
        policy: SilencePolicy,
        now_ms: u64,
    ) -> Vec<String> {
        self.since.retain(|name, _| observations.contains_key(name));
        let mut fence = Vec::new();
        for (name, obs) in observations {
            match obs {
                Observation::Reported(_) => {
                    self.since.remove(name);
                }
                Observation::Unknown { .. } => {
                    let (since, misses) = self.since.entry(name.clone()).or_insert((now_ms, 0));
                    *misses += 1;
                    if *misses >= policy.misses && now_ms.saturating_sub(*since) >= policy.after_ms
                    {
                        fence.push(name.clone());
                        *since = now_ms;
                        *misses = 0;
                    }
                }
            }
        }
        fence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::MemberReport;

    fn obs(answered: bool) -> BTreeMap<String, Observation> {
        let o = if answered {
            Observation::Reported(Box::new(MemberReport::new("a")))
        } else {
            Observation::Unknown {
                why: "connection refused".into(),
            }
        };
        BTreeMap::from([("a".to_string(), o)])
    }

    #[test]
    fn a_silent_agent_is_fenced_once_per_whole_silence() {
        let policy = SilencePolicy {
            after_ms: 2_000,
            misses: 2,
        };
        let mut s = Silence::default();
        // (now, answered, fenced)
        let steps = [
            (0, false, false),
            (1_000, false, false),
            (1_999, false, false),
            (2_000, false, true),
            (2_200, false, false),
            (3_999, false, false),
            (4_000, false, true),
            (4_100, true, false),
            (4_200, false, false),
            // one look after a long time is not enough: two misses are
            (9_000, false, true),
        ];
        for (now, answered, fenced) in steps {
            let got = s.update(&obs(answered), policy, now);
            assert_eq!(!got.is_empty(), fenced, "at {now}");
        }
        let mut one_look = Silence::default();
        assert!(one_look.update(&obs(false), policy, 10_000).is_empty());
    }
}
