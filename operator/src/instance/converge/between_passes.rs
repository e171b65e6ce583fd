//! Decisions that need memory between the agent's passes, kept pure: when to release the lease,
//! when an unresponsive server is fenced, and how a standby that stopped streaming is repaired
//! (rewind first, re-clone when a rewind did not help). The agent holds the memory and does the
//! I/O; these types decide.

use crate::member::{Desired, DesiredRole, FenceReason, Lsn};

use super::{DataState, Running};

/// A server that runs but answers nothing for this long is fenced.
pub const UNRESPONSIVE_FENCE_MS: u64 = 10_000;

/// Release the lease: this member holds it but is not to be primary and does not run as one.
pub fn release_lease(desired: Option<&Desired>, holds_lease: bool, running: Running) -> bool {
    let to_be_primary = desired.is_some_and(|d| matches!(d.role, DesiredRole::Primary { .. }));
    desired.is_some() && !to_be_primary && holds_lease && running != Running::Primary
}

/// How long the server has not answered; fence once it is too long, so that a hung primary
/// cannot keep the lease for ever.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unresponsive {
    since_ms: Option<u64>,
}

impl Unresponsive {
    /// Whether to fence now (then the count starts again).
    pub fn fence_now(&mut self, running: Running, now_ms: u64) -> Option<FenceReason> {
        if running != Running::Unresponsive {
            self.since_ms = None;
            return None;
        }
        let since = *self.since_ms.get_or_insert(now_ms);
        if now_ms.saturating_sub(since) > UNRESPONSIVE_FENCE_MS {
            self.since_ms = None;
            Some(FenceReason::Unresponsive)
        } else {
            None
        }
    }
}

/// A standby on its way to accepting connections: it replays and receives WAL first, and
/// cannot be asked anything over SQL. How long has it shown no progress (the WAL file its startup
/// process reads, what its receiver received)? One that never moves needs WAL its upstream does
/// not have (a rewind after which the upstream had recycled the WAL since the divergence, a
/// member pointed at a member cloned after its last timeline switch): it is repaired like a
/// standby that stopped streaming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryWatch {
    best: (Option<u64>, Option<Lsn>),
    since_ms: u64,
}

impl RecoveryWatch {
    pub fn new(now_ms: u64) -> RecoveryWatch {
        RecoveryWatch {
            best: (None, None),
            since_ms: now_ms,
        }
    }

    /// One look (segment read, position received): how long nothing has moved.
    pub fn look(&mut self, segment: Option<u64>, received: Option<Lsn>, now_ms: u64) -> u64 {
        let moved = (segment.is_some() && segment > self.best.0)
            || (received.is_some() && received > self.best.1);
        if moved {
            self.best = (segment.max(self.best.0), received.max(self.best.1));
            self.since_ms = now_ms;
        }
        now_ms.saturating_sub(self.since_ms)
    }

    /// The WAL file to ask the upstream about, if any: recovery has not moved for `patience_ms`
    /// and waits for `file` to arrive. A file it is replaying from is its own (a slow or frozen
    /// disk): the upstream's lack of it proves nothing.
    pub fn stalled_on(
        file: Option<&str>,
        waiting: bool,
        still_ms: u64,
        patience_ms: u64,
    ) -> Option<&str> {
        file.filter(|_| waiting && still_ms >= patience_ms)
    }
}

/// What a look at a standby shows of its progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Its WAL receiver streams from the upstream.
    pub streaming: bool,
    /// How far it has replayed.
    pub replayed: Option<Lsn>,
    /// Its replay is paused on purpose (`replayPaused`): not stuck, however long it stays.
    pub paused: bool,
}

/// A standby's repair: how long it has neither streamed nor replayed, and what was tried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repair {
    last_streaming_ms: u64,
    last_replayed: Option<Lsn>,
    /// Stops of a stuck standby since it last streamed.
    stuck_stops: u32,
    /// A rewind ran since the standby last streamed: being stuck again calls for a new copy.
    rewound_since_streaming: bool,
    /// A rewind failed although the upstream answered: re-clone.
    pub rewind_failed: bool,
    /// A stuck standby was stopped to be rewound.
    pub rewind_requested: bool,
}

impl Repair {
    /// One look: how long a running standby has neither streamed nor replayed anything new (a
    /// standby whose replay advances is busy, not stuck: a delayed member waits for its own replay
    /// at a timeline switch). `upstream_changed`: the desired upstream differs from the
    /// configured one, which deserves a new rewind attempt.
    pub fn look(
        &mut self,
        running: Running,
        seen: Progress,
        upstream_changed: bool,
        started_ms: u64,
        now_ms: u64,
    ) -> u64 {
        let replayed_more = seen.replayed.is_some() && seen.replayed > self.last_replayed;
        if seen.replayed.is_some() {
            self.last_replayed = seen.replayed;
        }
        if seen.streaming || seen.paused || replayed_more || running != Running::Standby {
            self.last_streaming_ms = now_ms;
        }
        if seen.streaming {
            self.stuck_stops = 0;
            self.rewound_since_streaming = false;
        }
        if upstream_changed {
            self.rewind_failed = false;
        }
        if running == Running::Standby {
            now_ms.saturating_sub(self.last_streaming_ms.max(started_ms))
        } else {
            0
        }
    }

    /// The data would be rewound or replaced next (so the upstream must be seen to answer first).
    /// `stuck_after_ms`: [`super::stuck_after_ms`] of the desired role.
    pub fn wanted(
        &self,
        data: &DataState,
        running: Running,
        not_streaming_ms: u64,
        stuck_after_ms: u64,
    ) -> bool {
        match data {
            DataState::Present { standby_signal } => {
                (running == Running::Standby && not_streaming_ms >= stuck_after_ms)
                    || (running == Running::No
                        && (!standby_signal || self.rewind_requested || self.rewind_failed))
            }
            _ => false,
        }
    }

    /// A stuck standby was stopped: rewind it the first time; when it is stuck again after a
    /// rewind (this one or any other since it last streamed), re-clone. True when it is to be
    /// re-cloned.
    pub fn stopped_stuck(&mut self) -> bool {
        self.stuck_stops += 1;
        if self.stuck_stops > 1 || self.rewound_since_streaming {
            self.rewind_failed = true;
        } else {
            self.rewind_requested = true;
        }
        self.rewind_failed
    }

    /// A rewind ran to its end.
    pub fn rewound(&mut self) {
        self.rewind_requested = false;
        self.rewound_since_streaming = true;
    }

    /// A rewind failed while the upstream answered: only a new copy can help.
    pub fn rewind_refused(&mut self) {
        self.rewind_failed = true;
    }

    /// A new copy runs.
    pub fn cloned(&mut self) {
        self.rewind_failed = false;
        self.rewind_requested = false;
        self.rewound_since_streaming = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::SyncStandbys;

    fn desired(primary: bool) -> Desired {
        Desired {
            role: if primary {
                DesiredRole::Primary {
                    bootstrap: false,
                    sync: SyncStandbys::default(),
                    slots: vec![],
                }
            } else {
                DesiredRole::Stopped
            },
            parameters: Default::default(),
            restart: false,
            restart_before_ms: None,
            reload_before_ms: None,
            reason: "test".into(),
        }
    }

    #[test]
    fn the_lease_is_released_only_by_a_member_not_meant_to_be_primary() {
        let (p, s) = (desired(true), desired(false));
        // (desired, holds, running, release)
        let cases = [
            (Some(&s), true, Running::No, true),
            (Some(&s), true, Running::Standby, true),
            (Some(&s), true, Running::Unresponsive, true),
            // still running as primary: the stop step releases it after the server is down
            (Some(&s), true, Running::Primary, false),
            (Some(&s), false, Running::No, false),
            (Some(&p), true, Running::No, false),
            (None, true, Running::No, false),
        ];
        for (d, holds, running, want) in cases {
            assert_eq!(
                release_lease(d, holds, running),
                want,
                "{d:?} {holds} {running:?}"
            );
        }
    }

    #[test]
    fn an_unresponsive_server_is_fenced_after_ten_seconds() {
        let mut u = Unresponsive::default();
        let steps = [
            (0, Running::Unresponsive, false),
            (5_000, Running::Unresponsive, false),
            (10_000, Running::Unresponsive, false),
            (10_001, Running::Unresponsive, true),
            // counted again from the fence
            (10_100, Running::Unresponsive, false),
            (15_000, Running::Primary, false),
            (15_100, Running::Unresponsive, false),
            (25_100, Running::Unresponsive, false),
            (25_101, Running::Unresponsive, true),
        ];
        for (now, running, fence) in steps {
            assert_eq!(u.fence_now(running, now).is_some(), fence, "at {now}");
        }
    }

    const S: u64 = super::super::STUCK_STANDBY_MS;

    fn streaming() -> Progress {
        Progress {
            streaming: true,
            ..Progress::default()
        }
    }

    fn idle() -> Progress {
        Progress::default()
    }

    fn replayed(lsn: u64) -> Progress {
        Progress {
            replayed: Some(Lsn(lsn)),
            ..Progress::default()
        }
    }

    #[test]
    fn a_stuck_standby_is_rewound_then_re_cloned() {
        let mut r = Repair::default();
        let present = DataState::Present {
            standby_signal: true,
        };
        // streaming until 1 s, then not
        assert_eq!(r.look(Running::Standby, streaming(), false, 0, 1_000), 0);
        let stuck = r.look(Running::Standby, idle(), false, 0, 1_000 + S);
        assert_eq!(stuck, S);
        assert!(r.wanted(&present, Running::Standby, stuck, S));
        assert!(!r.stopped_stuck(), "first: rewind");
        assert!(r.rewind_requested && !r.rewind_failed);
        assert!(r.wanted(&present, Running::No, 0, S));
        r.rewound();
        assert!(
            !r.wanted(&present, Running::No, 0, S),
            "rewound: start again"
        );
        // started again, still not streaming: stuck again → re-clone
        assert_eq!(r.look(Running::No, idle(), false, 0, 20_000), 0);
        let again = r.look(Running::Standby, idle(), false, 20_000, 20_000 + S);
        assert_eq!(again, S);
        assert!(r.stopped_stuck(), "second: re-clone");
        assert!(r.wanted(&present, Running::No, 0, S));
        // a new upstream deserves a new rewind attempt
        r.look(Running::No, idle(), true, 0, 40_000);
        assert!(!r.rewind_failed);
        // streaming again forgets the stops
        r.rewound();
        r.look(Running::Standby, streaming(), false, 0, 50_000);
        assert!(
            !r.stopped_stuck(),
            "after streaming, a stop is a first stop again"
        );
        r.cloned();
        assert_eq!((r.rewind_failed, r.rewind_requested), (false, false));
        assert!(!r.wanted(&DataState::Missing, Running::No, 0, S));
    }

    /// A paused standby receives nothing for as long as it is paused (after a restart or a change
    /// of upstream): resumed, it has its full stuck time to stream again before any repair.
    #[test]
    fn paused_time_is_not_stuck_time() {
        let mut r = Repair::default();
        let paused = Progress {
            paused: true,
            ..Progress::default()
        };
        r.look(Running::Standby, streaming(), false, 0, 1_000);
        assert_eq!(
            r.look(Running::Standby, paused, false, 0, 1_000 + 10 * S),
            0
        );
        assert_eq!(
            r.look(Running::Standby, idle(), false, 0, 1_000 + 10 * S + 500),
            500,
            "resumed: counted from the last paused look"
        );
    }

    /// A former primary is rewound (it diverged), starts, and is stuck: the rewind did not help,
    /// so the next repair is a new copy, not a second rewind.
    #[test]
    fn stuck_after_any_rewind_means_a_new_copy() {
        let mut r = Repair::default();
        r.rewound();
        r.look(Running::Standby, idle(), false, 0, S);
        assert!(r.stopped_stuck(), "rewound, stuck: re-clone");
        let mut r = Repair::default();
        r.rewound();
        r.look(Running::Standby, streaming(), false, 0, 1_000);
        assert!(
            !r.stopped_stuck(),
            "rewound, streamed, stuck later: rewind first"
        );
    }

    #[test]
    fn a_starting_standby_is_stalled_only_while_nothing_moves() {
        let mut w = RecoveryWatch::new(0);
        // (now, segment, received, not moving for)
        let looks = [
            (0, None, None, 0),
            (1_000, None, None, 1_000),
            (2_000, Some(4), None, 0),
            (S, Some(4), None, S - 2_000),
            // its receiver gets WAL: moving
            (S + 1_000, Some(4), Some(Lsn(100)), 0),
            (S + 2_000, Some(5), Some(Lsn(100)), 0),
            // titles that disappear (a receiver restarting) or go back prove nothing
            (S + 3_000, None, None, 1_000),
            (S + 4_000, Some(4), Some(Lsn(50)), 2_000),
            (2 * S + 2_000, Some(5), Some(Lsn(100)), S),
            (2 * S + 3_000, Some(5), Some(Lsn(101)), 0),
        ];
        for (now, segment, received, want) in looks {
            assert_eq!(w.look(segment, received, now), want, "at {now}");
        }
    }

    #[test]
    fn only_a_start_that_waits_for_wal_asks_the_upstream() {
        let f = Some("000000020000000000000004");
        // (file, waiting, still, ask)
        let cases = [
            (f, true, S, f),
            (f, true, S - 1, None),
            // replaying from a file it has: a slow or frozen disk, never the upstream's fault
            (f, false, 10 * S, None),
            (None, true, 10 * S, None),
        ];
        for (file, waiting, still, want) in cases {
            assert_eq!(
                RecoveryWatch::stalled_on(file, waiting, still, S),
                want,
                "{file:?} waiting={waiting} still={still}"
            );
        }
    }

    /// A delayed member at a timeline switch: its WAL receiver waits at the end of the old
    /// timeline while replay, S seconds and more behind, catches up. Busy, not stuck.
    #[test]
    fn a_standby_whose_replay_advances_is_not_stuck() {
        let mut r = Repair::default();
        let present = DataState::Present {
            standby_signal: true,
        };
        // (now, what the look shows, not progressing for)
        let looks = [
            (0, streaming(), 0),
            (1_000, replayed(100), 0),
            (S, replayed(200), 0),
            (2 * S, replayed(300), 0),
            // the same position again: the count runs from the last advance
            (2 * S + 1_000, replayed(300), 1_000),
            (3 * S, replayed(300), S),
            // an older position (a restarted server reporting late) is no progress
            (3 * S + 1_000, replayed(250), S + 1_000),
            // a look that shows no position forgets nothing
            (3 * S + 2_000, idle(), S + 2_000),
            (3 * S + 3_000, replayed(301), 0),
        ];
        for (now, seen, want) in looks {
            assert_eq!(
                r.look(Running::Standby, seen, false, 0, now),
                want,
                "at {now}: {seen:?}"
            );
        }
        assert!(!r.wanted(&present, Running::Standby, S - 1, S));
        assert!(r.wanted(&present, Running::Standby, S, S));
    }
}
