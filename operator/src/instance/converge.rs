//! The agent's pure decision: given the desired role and what is true locally, the one next
//! step. The agent runs it, looks again, and asks again, so every step is idempotent.

use crate::member::{Desired, DesiredRole};

mod between_passes;

pub use between_passes::{
    release_lease, Progress, RecoveryWatch, Repair, Unresponsive, UNRESPONSIVE_FENCE_MS,
};

/// The data directory as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataState {
    Missing,
    Invalid(String),
    /// Vanished or replaced under a running server.
    Lost(String),
    Present {
        /// `standby.signal` exists: the directory was last a standby.
        standby_signal: bool,
    },
}

/// What PostgreSQL is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Running {
    No,
    Primary,
    Standby,
    /// The server process runs but does not answer queries.
    Unresponsive,
}

/// What the agent knows of its upstream's reachability; looked at only when a standby would
/// otherwise rewind or re-clone from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamCheck {
    NotChecked,
    Answers,
    Unreachable(String),
}

/// Local facts the decision needs. Times are unix milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub data: DataState,
    pub running: Running,
    /// The role our configuration file describes now (same type as desired, for comparison).
    pub configured: Option<DesiredRole>,
    /// The configuration file holds the desired parameters.
    pub parameters_current: bool,
    /// The running server has settings that wait for a restart (`pending_restart`).
    pub pending_restart: bool,
    /// When the running server was started (unix milliseconds; 0 when none runs).
    pub started_at_ms: u64,
    /// When the running server last read its configuration (unix milliseconds; 0: unknown).
    pub reloaded_at_ms: u64,
    pub holds_lease: bool,
    pub lease_holder: Option<String>,
    /// A standby that has neither streamed nor replayed anything new for this long.
    pub not_streaming_ms: u64,
    /// A rewind from the current upstream failed although it answered: re-clone instead.
    pub rewind_failed: bool,
    /// Does the upstream answer? Data is rewound or replaced only from an upstream that does.
    pub upstream: UpstreamCheck,
    /// A stuck standby was stopped to be rewound.
    pub rewind_requested: bool,
    /// No restart before this time (crash backoff).
    pub restart_not_before_ms: u64,
    /// The heavy step (bootstrap, clone, rewind) that failed last, by [`Step::name`], and when
    /// it may be tried again: failures back off instead of repeating every pass.
    pub failed_step: Option<&'static str>,
    pub retry_not_before_ms: u64,
    /// The running standby's replay is paused (or asked to pause).
    pub replay_paused: bool,
    /// The running server was started with a recovery target (a paused standby's guard).
    pub recovery_target_set: bool,
    /// The running standby's replay state could not be read (the two above say nothing).
    pub replay_unknown: bool,
    /// The application's role and database are as configured (or none is configured).
    pub application_ready: bool,
    pub now_ms: u64,
}

/// How long a standby may neither stream nor replay before it is rewound (plus its apply delay).
pub const STUCK_STANDBY_MS: u64 = 15_000;

/// How long `role` may neither stream nor replay before it is taken for stuck. A member that
/// applies WAL late waits for its own replay at every timeline switch (its WAL receiver stops at
/// the end of the old timeline until replay gets there) and replays nothing while the next commit
/// is younger than its delay: its delay is added, so that waiting is never taken for divergence.
pub fn stuck_after_ms(role: &DesiredRole) -> u64 {
    match role {
        DesiredRole::Standby { apply_delay_ms, .. } => {
            STUCK_STANDBY_MS.saturating_add(*apply_delay_ms)
        }
        _ => STUCK_STANDBY_MS,
    }
}

/// The one next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do: the desired state holds.
    Idle,
    /// Cannot go on; the reason is reported.
    Blocked(String),
    Wait(String),
    AcquireLease,
    Bootstrap,
    /// Clone from the upstream; existing data is moved aside first and deleted only after the
    /// new clone runs.
    Clone,
    Rewind,
    /// Write the configuration for the desired role (reload when running).
    Configure,
    /// Write the configuration again and have the running server read it (a requested reload).
    Reload,
    Start,
    /// Write the primary's configuration when it is not yet, then promote.
    Promote,
    /// Fast shutdown (standbys receive the final WAL).
    Stop,
    /// A stuck standby: stop it so it can be rewound.
    StopForRewind,
    /// On the running primary: create or update the application's role and database.
    EnsureApplication,
    /// Fast shutdown and start again, to apply settings that wait for a restart (only when the
    /// plan allows it: one member at a time).
    Restart,
    /// On a running standby: pause replay, then write the configuration that keeps it paused
    /// at the same place across a restart (a recovery target), and reload.
    PauseReplay,
    /// On a running standby paused by `pg_wal_replay_pause()`: resume replay.
    ResumeReplay,
}

pub fn next_step(desired: &Desired, facts: &Facts) -> Step {
    let step = match &desired.role {
        DesiredRole::Stopped => match facts.running {
            Running::No => Step::Idle,
            _ => Step::Stop,
        },
        DesiredRole::Primary { bootstrap, .. } => primary(desired, *bootstrap, facts),
        DesiredRole::Standby { .. } => standby(desired, facts),
    };
    match step {
        // a heavy step that failed backs off (its cause is in the report); anything else — a
        // promotion, a start (it has its crash backoff), a stop, a configuration write — and a
        // different step are tried at once
        Step::Bootstrap | Step::Clone | Step::Rewind
            if facts.failed_step == Some(step.name())
                && facts.now_ms < facts.retry_not_before_ms =>
        {
            Step::Wait(format!(
                "{} failed; trying again in {} s",
                step.name(),
                (facts.retry_not_before_ms - facts.now_ms).div_ceil(1_000)
            ))
        }
        step => step,
    }
}

impl Step {
    /// How a person reads the step's name in a progress line.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Idle => "nothing",
            Step::Blocked(_) => "blocked",
            Step::Wait(_) => "waiting",
            Step::AcquireLease => "taking the lease",
            Step::Bootstrap => "bootstrap (initdb)",
            Step::Clone => "clone",
            Step::Rewind => "rewind",
            Step::Configure => "configure",
            Step::Reload => "reload",
            Step::Start => "start",
            Step::Promote => "promote",
            Step::Stop => "stop",
            Step::StopForRewind => "stop for a rewind",
            Step::EnsureApplication => "application role",
            Step::Restart => "restart",
            Step::PauseReplay => "pause replay",
            Step::ResumeReplay => "resume replay",
        }
    }
}

/// How long to wait before trying a step again after `failures` failures in a row: 0.5 s,
/// doubling, at most 30 s.
pub fn retry_backoff_ms(failures: u32) -> u64 {
    (500u64 << failures.saturating_sub(1).min(6)).min(30_000)
}

fn lease_step(facts: &Facts) -> Step {
    match &facts.lease_holder {
        Some(holder) if !facts.holds_lease => {
            Step::Wait(format!("waiting for the lease held by {holder}"))
        }
        _ => Step::AcquireLease,
    }
}

fn primary(desired: &Desired, bootstrap: bool, facts: &Facts) -> Step {
    match &facts.data {
        DataState::Lost(why) => {
            Step::Blocked(format!("cannot be primary: data directory lost ({why})"))
        }
        DataState::Invalid(why) => Step::Blocked(format!(
            "cannot be primary: the data directory is unusable ({why}); it is left untouched"
        )),
        DataState::Missing if !bootstrap => {
            Step::Blocked("cannot be promoted: there is no data directory".into())
        }
        DataState::Missing if !facts.holds_lease => lease_step(facts),
        DataState::Missing => Step::Bootstrap,
        DataState::Present { .. } if !facts.holds_lease => lease_step(facts),
        DataState::Present { .. } => {
            let configured = is_configured(desired, facts);
            match facts.running {
                Running::No if facts.now_ms < facts.restart_not_before_ms => {
                    Step::Wait("restart backoff after a crash".into())
                }
                Running::Unresponsive => Step::Wait("PostgreSQL runs but does not answer".into()),
                // the promotion writes the primary's configuration first: one step, no extra pass
                Running::Standby => Step::Promote,
                _ if !configured => Step::Configure,
                Running::No => Step::Start,
                Running::Primary if !facts.application_ready => Step::EnsureApplication,
                Running::Primary if desired.reload_due(facts.reloaded_at_ms) => Step::Reload,
                Running::Primary
                    if desired.restart_due(facts.pending_restart, facts.started_at_ms) =>
                {
                    Step::Restart
                }
                Running::Primary => Step::Idle,
            }
        }
    }
}

/// The configuration file describes the desired role with the desired parameters.
fn is_configured(desired: &Desired, facts: &Facts) -> bool {
    facts.configured.as_ref() == Some(&desired.role) && facts.parameters_current
}

fn standby(desired: &Desired, facts: &Facts) -> Step {
    let configured = is_configured(desired, facts);
    let paused = matches!(
        desired.role,
        DesiredRole::Standby {
            replay_paused: true,
            ..
        }
    );
    match (&facts.data, facts.running) {
        (DataState::Lost(_) | DataState::Missing | DataState::Invalid(_), Running::No) => {
            Step::Clone
        }
        (DataState::Lost(_) | DataState::Missing | DataState::Invalid(_), _) => Step::Stop,
        (DataState::Present { .. }, Running::Primary) => Step::Stop,
        (DataState::Present { .. }, Running::Unresponsive) => {
            Step::Wait("PostgreSQL runs but does not answer".into())
        }
        (DataState::Present { standby_signal }, Running::No) => {
            let repair = facts.rewind_failed || !standby_signal || facts.rewind_requested;
            if paused && repair {
                // a rewind or a new copy would replace the data the pause keeps
                Step::Blocked(
                    "replay is paused: its data is kept as it is, not rewound or copied again, until its replay is resumed".into(),
                )
            } else if facts.now_ms < facts.restart_not_before_ms {
                Step::Wait("restart backoff after a crash".into())
            } else if let (true, Some(wait)) = (repair, upstream_wait(desired, facts)) {
                wait
            } else if facts.rewind_failed {
                Step::Clone
            } else if !standby_signal || facts.rewind_requested {
                Step::Rewind
            } else if !configured {
                Step::Configure
            } else {
                Step::Start
            }
        }
        (DataState::Present { .. }, Running::Standby) => {
            if facts.replay_unknown {
                // neither pause nor resume on a guess (a failed read looks like "not paused")
                Step::Wait("cannot read the replay state; trying again".into())
            } else if paused && !facts.replay_paused && facts.recovery_target_set {
                // started with its guard: it replays to where it was paused and pauses there
                Step::Wait("replaying up to where replay was paused".into())
            } else if paused && !facts.replay_paused {
                // before any configuration write: the recovery target is where replay stopped
                Step::PauseReplay
            } else if !configured {
                Step::Configure
            } else if paused {
                // frozen: never rewound, restarted or otherwise moved until resumed
                if desired.reload_due(facts.reloaded_at_ms) {
                    Step::Reload
                } else {
                    Step::Idle
                }
            } else if facts.recovery_target_set {
                // started with a paused standby's guard: it would stop there again, and
                // resuming at a reached recovery target would end recovery (a promotion)
                Step::Restart
            } else if facts.replay_paused {
                Step::ResumeReplay
            } else if facts.not_streaming_ms >= stuck_after_ms(&desired.role) {
                upstream_wait(desired, facts).unwrap_or(Step::StopForRewind)
            } else if desired.reload_due(facts.reloaded_at_ms) {
                Step::Reload
            } else if desired.restart_due(facts.pending_restart, facts.started_at_ms) {
                Step::Restart
            } else {
                Step::Idle
            }
        }
    }
}

/// A standby that would rewind or re-clone waits while its upstream does not answer: an
/// unreachable upstream proves nothing about the data, which is kept as it is.
fn upstream_wait(desired: &Desired, facts: &Facts) -> Option<Step> {
    let upstream = match &desired.role {
        DesiredRole::Standby { upstream, .. } => upstream.member.as_str(),
        _ => "the upstream",
    };
    match &facts.upstream {
        UpstreamCheck::Answers => None,
        UpstreamCheck::NotChecked => Some(Step::Wait(format!("checking whether {upstream} answers"))),
        UpstreamCheck::Unreachable(why) => Some(Step::Wait(format!(
            "not streaming: {upstream} does not answer ({why}); keeping this member's data until it does"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::{SyncStandbys, Upstream};

    fn standby_role(delay: u64) -> DesiredRole {
        DesiredRole::Standby {
            upstream: Upstream {
                member: "a".into(),
                host: "127.0.0.1".into(),
                port: 6000,
            },
            slot: "pgreplica_b".into(),
            apply_delay_ms: delay,
            replay_paused: false,
            slots: vec![],
        }
    }

    fn paused_role() -> DesiredRole {
        match standby_role(3_000) {
            DesiredRole::Standby {
                upstream,
                slot,
                apply_delay_ms,
                slots,
                ..
            } => DesiredRole::Standby {
                upstream,
                slot,
                apply_delay_ms,
                replay_paused: true,
                slots,
            },
            other => other,
        }
    }

    fn primary_role(bootstrap: bool) -> DesiredRole {
        DesiredRole::Primary {
            bootstrap,
            sync: SyncStandbys::default(),
            slots: vec![],
        }
    }

    fn facts(data: DataState, running: Running, configured: Option<DesiredRole>) -> Facts {
        Facts {
            data,
            running,
            configured,
            parameters_current: true,
            pending_restart: false,
            started_at_ms: 500,
            reloaded_at_ms: 500,
            holds_lease: true,
            lease_holder: None,
            not_streaming_ms: 0,
            rewind_failed: false,
            upstream: UpstreamCheck::Answers,
            rewind_requested: false,
            restart_not_before_ms: 0,
            failed_step: None,
            retry_not_before_ms: 0,
            replay_paused: false,
            recovery_target_set: false,
            replay_unknown: false,
            application_ready: true,
            now_ms: 1_000,
        }
    }

    const PRESENT_PRIMARY: DataState = DataState::Present {
        standby_signal: false,
    };
    const PRESENT_STANDBY: DataState = DataState::Present {
        standby_signal: true,
    };

    fn unreachable() -> UpstreamCheck {
        UpstreamCheck::Unreachable("connection refused".into())
    }

    fn wait_unreachable() -> Step {
        Step::Wait("not streaming: a does not answer (connection refused); keeping this member's data until it does".into())
    }

    #[test]
    fn retries_back_off_from_half_a_second_to_thirty() {
        let waits: Vec<u64> = (1..=9).map(retry_backoff_ms).collect();
        assert_eq!(
            waits,
            [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
    }

    #[test]
    fn decisions() {
        let lost = DataState::Lost("global/pg_control is gone".into());
        let invalid = DataState::Invalid("no PG_VERSION".into());
        let cases: Vec<(&str, DesiredRole, Facts, Step)> = vec![
            ("stopped, running → stop", DesiredRole::Stopped, facts(PRESENT_PRIMARY, Running::Primary, None), Step::Stop),
            ("stopped, down → idle", DesiredRole::Stopped, facts(PRESENT_PRIMARY, Running::No, None), Step::Idle),
            ("bootstrap with lease", primary_role(true), facts(DataState::Missing, Running::No, None), Step::Bootstrap),
            ("bootstrap, lease free", primary_role(true), Facts { holds_lease: false, ..facts(DataState::Missing, Running::No, None) }, Step::AcquireLease),
            ("bootstrap, lease held elsewhere", primary_role(true), Facts { holds_lease: false, lease_holder: Some("b".into()), ..facts(DataState::Missing, Running::No, None) }, Step::Wait("waiting for the lease held by b".into())),
            ("promote without data", primary_role(false), facts(DataState::Missing, Running::No, None), Step::Blocked("cannot be promoted: there is no data directory".into())),
            ("never bootstrap over unusable data", primary_role(true), facts(invalid.clone(), Running::No, None), Step::Blocked("cannot be primary: the data directory is unusable (no PG_VERSION); it is left untouched".into())),
            ("primary data, unconfigured", primary_role(false), facts(PRESENT_PRIMARY, Running::No, None), Step::Configure),
            ("primary data, configured → start", primary_role(false), facts(PRESENT_PRIMARY, Running::No, Some(primary_role(false))), Step::Start),
            ("running standby, desired primary → promote (configuring first, in the same step)", primary_role(false), facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(0))), Step::Promote),
            ("running standby configured as primary → promote", primary_role(false), facts(PRESENT_STANDBY, Running::Standby, Some(primary_role(false))), Step::Promote),
            ("standby, no lease → acquire before promote", primary_role(false), Facts { holds_lease: false, ..facts(PRESENT_STANDBY, Running::Standby, Some(primary_role(false))) }, Step::AcquireLease),
            ("primary running, settled", primary_role(false), facts(PRESENT_PRIMARY, Running::Primary, Some(primary_role(false))), Step::Idle),
            ("primary running, application role missing", primary_role(false), Facts { application_ready: false, ..facts(PRESENT_PRIMARY, Running::Primary, Some(primary_role(false))) }, Step::EnsureApplication),
            ("application role only on a configured primary", primary_role(false), Facts { application_ready: false, ..facts(PRESENT_STANDBY, Running::Standby, Some(primary_role(false))) }, Step::Promote),
            ("standby never makes the application role", standby_role(0), Facts { application_ready: false, ..facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(0))) }, Step::Idle),
            // a paused standby (replayPaused): paused first, then configured, then left alone
            ("pause: replay first", paused_role(), facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(3_000))), Step::PauseReplay),
            ("paused, configuration not yet", paused_role(), Facts { replay_paused: true, ..facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(3_000))) }, Step::Configure),
            ("paused and configured → idle", paused_role(), Facts { replay_paused: true, ..facts(PRESENT_STANDBY, Running::Standby, Some(paused_role())) }, Step::Idle),
            ("paused: never stopped for a rewind", paused_role(), Facts { replay_paused: true, not_streaming_ms: 60_000, ..facts(PRESENT_STANDBY, Running::Standby, Some(paused_role())) }, Step::Idle),
            ("paused: no restart for pending settings", paused_role(), Facts { replay_paused: true, pending_restart: true, ..Facts { started_at_ms: 1, ..facts(PRESENT_STANDBY, Running::Standby, Some(paused_role())) } }, Step::Idle),
            ("paused, stopped: configure, then start (at its target)", paused_role(), facts(PRESENT_STANDBY, Running::No, Some(standby_role(3_000))), Step::Configure),
            ("paused, restarted: on its way to its target", paused_role(), Facts { recovery_target_set: true, ..facts(PRESENT_STANDBY, Running::Standby, Some(paused_role())) }, Step::Wait("replaying up to where replay was paused".into())),
            ("replay state unreadable: neither pause nor resume", paused_role(), Facts { replay_unknown: true, recovery_target_set: false, ..facts(PRESENT_STANDBY, Running::Standby, Some(paused_role())) }, Step::Wait("cannot read the replay state; trying again".into())),
            ("paused at its target after a restart → idle", paused_role(), Facts { replay_paused: true, recovery_target_set: true, ..facts(PRESENT_STANDBY, Running::Standby, Some(paused_role())) }, Step::Idle),
            ("paused, stopped, rewind asked: the data is kept", paused_role(), Facts { rewind_requested: true, ..facts(PRESENT_STANDBY, Running::No, Some(paused_role())) }, Step::Blocked("replay is paused: its data is kept as it is, not rewound or copied again, until its replay is resumed".into())),
            ("paused, stopped, rewind failed: no new copy", paused_role(), Facts { rewind_failed: true, ..facts(PRESENT_STANDBY, Running::No, Some(paused_role())) }, Step::Blocked("replay is paused: its data is kept as it is, not rewound or copied again, until its replay is resumed".into())),
            ("paused, stopped, no standby.signal: not rewound", paused_role(), facts(PRESENT_PRIMARY, Running::No, Some(paused_role())), Step::Blocked("replay is paused: its data is kept as it is, not rewound or copied again, until its replay is resumed".into())),
            ("paused, stopped, configured → start (at its target)", paused_role(), facts(PRESENT_STANDBY, Running::No, Some(paused_role())), Step::Start),
            ("paused, upstream changed → configure (new conninfo, same target)", paused_role(), Facts { replay_paused: true, ..facts(PRESENT_STANDBY, Running::Standby, Some(match paused_role() { DesiredRole::Standby { slot, apply_delay_ms, slots, .. } => DesiredRole::Standby { upstream: Upstream { member: "b".into(), host: "127.0.0.1".into(), port: 6001 }, slot, apply_delay_ms, replay_paused: true, slots }, other => other })) }, Step::Configure),
            ("resume while still replaying to the target → restart without it", standby_role(3_000), Facts { recovery_target_set: true, ..facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(3_000))) }, Step::Restart),
            ("resume: configuration first", standby_role(3_000), Facts { replay_paused: true, ..facts(PRESENT_STANDBY, Running::Standby, Some(paused_role())) }, Step::Configure),
            ("resume by the function", standby_role(3_000), Facts { replay_paused: true, ..facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(3_000))) }, Step::ResumeReplay),
            // pg_wal_replay_resume() at a reached recovery target would promote: restart instead
            ("resume a server started at its target", standby_role(3_000), Facts { replay_paused: true, recovery_target_set: true, ..facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(3_000))) }, Step::Restart),
            ("crash backoff", primary_role(false), Facts { restart_not_before_ms: 5_000, ..facts(PRESENT_PRIMARY, Running::No, Some(primary_role(false))) }, Step::Wait("restart backoff after a crash".into())),
            // a failed step is not repeated every pass (initdb was, every 0.2 s for 300 s)
            ("failed bootstrap backs off", primary_role(true), Facts { failed_step: Some("bootstrap (initdb)"), retry_not_before_ms: 4_500, ..facts(DataState::Missing, Running::No, None) }, Step::Wait("bootstrap (initdb) failed; trying again in 4 s".into())),
            ("failed bootstrap, backoff over", primary_role(true), Facts { failed_step: Some("bootstrap (initdb)"), retry_not_before_ms: 1_000, ..facts(DataState::Missing, Running::No, None) }, Step::Bootstrap),
            ("failed clone backs off", standby_role(0), Facts { failed_step: Some("clone"), retry_not_before_ms: 2_000, ..facts(DataState::Missing, Running::No, None) }, Step::Wait("clone failed; trying again in 1 s".into())),
            // only the step that failed waits: another is tried at once
            ("another step is not held back", standby_role(0), Facts { failed_step: Some("rewind"), retry_not_before_ms: 9_000, ..facts(DataState::Missing, Running::No, None) }, Step::Clone),
            // a start has its own crash backoff; a promotion never waits
            ("start is not held back", primary_role(false), Facts { failed_step: Some("start"), retry_not_before_ms: 9_000, ..facts(PRESENT_PRIMARY, Running::No, Some(primary_role(false))) }, Step::Start),
            ("promotion is not held back", primary_role(false), Facts { failed_step: Some("promote"), retry_not_before_ms: 9_000, ..facts(PRESENT_STANDBY, Running::Standby, Some(primary_role(false))) }, Step::Promote),
            ("standby without data → clone", standby_role(0), facts(DataState::Missing, Running::No, None), Step::Clone),
            ("standby with lost data → clone", standby_role(0), facts(lost.clone(), Running::No, None), Step::Clone),
            ("standby, lost data still running → stop", standby_role(0), facts(lost, Running::Standby, None), Step::Stop),
            ("standby with unusable data → clone (moved aside)", standby_role(0), facts(invalid, Running::No, None), Step::Clone),
            ("running primary, desired standby → stop (demote)", standby_role(0), facts(PRESENT_PRIMARY, Running::Primary, None), Step::Stop),
            ("former primary, stopped → rewind", standby_role(0), facts(PRESENT_PRIMARY, Running::No, None), Step::Rewind),
            ("rewind failed → clone", standby_role(0), Facts { rewind_failed: true, ..facts(PRESENT_PRIMARY, Running::No, None) }, Step::Clone),
            ("standby data, unconfigured → configure", standby_role(0), facts(PRESENT_STANDBY, Running::No, None), Step::Configure),
            ("standby data, configured → start", standby_role(0), facts(PRESENT_STANDBY, Running::No, Some(standby_role(0))), Step::Start),
            ("running standby, new delay → configure", standby_role(3_000), facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(0))), Step::Configure),
            ("running standby streaming → idle", standby_role(0), facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(0))), Step::Idle),
            ("stuck standby → stop for rewind", standby_role(0), Facts { not_streaming_ms: STUCK_STANDBY_MS, ..facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(0))) }, Step::StopForRewind),
            ("standby, parameters changed → configure (reload)", standby_role(0), Facts { parameters_current: false, ..facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(0))) }, Step::Configure),
            ("stopped standby, parameters changed → configure before the start", standby_role(0), Facts { parameters_current: false, ..facts(PRESENT_STANDBY, Running::No, Some(standby_role(0))) }, Step::Configure),
            ("standby, restart pending, not its turn → idle", standby_role(0), Facts { pending_restart: true, ..facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(0))) }, Step::Idle),
            ("delayed standby waiting no longer than its delay → idle", standby_role(20_000), Facts { not_streaming_ms: STUCK_STANDBY_MS + 19_999, ..facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(20_000))) }, Step::Idle),
            ("delayed standby stuck past its delay → stop for rewind", standby_role(20_000), Facts { not_streaming_ms: STUCK_STANDBY_MS + 20_000, ..facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(20_000))) }, Step::StopForRewind),
            ("unresponsive primary: wait, never start a second server", primary_role(false), facts(PRESENT_PRIMARY, Running::Unresponsive, Some(primary_role(false))), Step::Wait("PostgreSQL runs but does not answer".into())),
            ("unresponsive standby: wait", standby_role(0), facts(PRESENT_STANDBY, Running::Unresponsive, Some(standby_role(0))), Step::Wait("PostgreSQL runs but does not answer".into())),
            ("unresponsive, data gone: stop", standby_role(0), facts(DataState::Missing, Running::Unresponsive, None), Step::Stop),
            ("unresponsive, desired stopped: stop", DesiredRole::Stopped, facts(PRESENT_PRIMARY, Running::Unresponsive, None), Step::Stop),
            ("stuck standby stopped → rewind", standby_role(0), Facts { rewind_requested: true, ..facts(PRESENT_STANDBY, Running::No, Some(standby_role(0))) }, Step::Rewind),
            // issue 10, defect 2: an unreachable upstream never costs a standby its data
            ("stuck standby, upstream unreachable → keep running", standby_role(0), Facts { not_streaming_ms: STUCK_STANDBY_MS * 4, upstream: unreachable(), ..facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(0))) }, wait_unreachable()),
            ("stuck standby, upstream not checked yet → wait", standby_role(0), Facts { not_streaming_ms: STUCK_STANDBY_MS, upstream: UpstreamCheck::NotChecked, ..facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(0))) }, Step::Wait("checking whether a answers".into())),
            ("rewind wanted, upstream unreachable → wait", standby_role(0), Facts { rewind_requested: true, upstream: unreachable(), ..facts(PRESENT_STANDBY, Running::No, Some(standby_role(0))) }, wait_unreachable()),
            ("former primary, upstream unreachable → wait, no rewind", standby_role(0), Facts { upstream: unreachable(), ..facts(PRESENT_PRIMARY, Running::No, None) }, wait_unreachable()),
            ("rewind failed, upstream unreachable → wait, no clone", standby_role(0), Facts { rewind_failed: true, upstream: unreachable(), ..facts(PRESENT_PRIMARY, Running::No, None) }, wait_unreachable()),
            ("healthy standby data, upstream unreachable → start anyway", standby_role(0), Facts { upstream: unreachable(), ..facts(PRESENT_STANDBY, Running::No, Some(standby_role(0))) }, Step::Start),
            ("missing data, upstream unreachable → clone attempt (nothing to lose)", standby_role(0), Facts { upstream: unreachable(), ..facts(DataState::Missing, Running::No, None) }, Step::Clone),
        ];
        for (what, role, facts, want) in cases {
            let desired = Desired::new(role, what.into());
            assert_eq!(next_step(&desired, &facts), want, "{what}");
        }
    }

    #[test]
    fn a_pending_restart_waits_for_the_plan() {
        let pending = |role: DesiredRole, running, present| Facts {
            pending_restart: true,
            ..facts(present, running, Some(role))
        };
        // (what, role, restart allowed, facts, step)
        let cases = vec![
            (
                "standby, allowed → restart",
                standby_role(0),
                true,
                pending(standby_role(0), Running::Standby, PRESENT_STANDBY),
                Step::Restart,
            ),
            (
                "standby, not allowed → idle",
                standby_role(0),
                false,
                pending(standby_role(0), Running::Standby, PRESENT_STANDBY),
                Step::Idle,
            ),
            (
                "primary, allowed → restart",
                primary_role(false),
                true,
                pending(primary_role(false), Running::Primary, PRESENT_PRIMARY),
                Step::Restart,
            ),
            (
                "primary, not allowed → idle",
                primary_role(false),
                false,
                pending(primary_role(false), Running::Primary, PRESENT_PRIMARY),
                Step::Idle,
            ),
            (
                "paused, allowed → idle: a paused member keeps its server as it is",
                paused_role(),
                true,
                Facts {
                    replay_paused: true,
                    ..pending(paused_role(), Running::Standby, PRESENT_STANDBY)
                },
                Step::Idle,
            ),
            (
                "allowed, nothing pending → idle",
                standby_role(0),
                true,
                facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(0))),
                Step::Idle,
            ),
            (
                "allowed, parameters not written yet → configure first",
                standby_role(0),
                true,
                Facts {
                    parameters_current: false,
                    ..pending(standby_role(0), Running::Standby, PRESENT_STANDBY)
                },
                Step::Configure,
            ),
            (
                "allowed, stuck → the repair comes first",
                standby_role(0),
                true,
                Facts {
                    not_streaming_ms: STUCK_STANDBY_MS,
                    ..pending(standby_role(0), Running::Standby, PRESENT_STANDBY)
                },
                Step::StopForRewind,
            ),
        ];
        for (what, role, restart, facts, want) in cases {
            let desired = Desired {
                restart,
                ..Desired::new(role, what.into())
            };
            assert_eq!(next_step(&desired, &facts), want, "{what}");
        }
    }

    #[test]
    fn a_requested_reload_happens_once() {
        let desired = |role: DesiredRole, before: u64| Desired {
            reload_before_ms: Some(before),
            ..Desired::new(role, "reload".into())
        };
        let running =
            |role: DesiredRole, running: Running, present: DataState, reloaded: u64| Facts {
                reloaded_at_ms: reloaded,
                ..facts(present, running, Some(role))
            };
        // (what, desired, facts, step)
        let cases = [
            (
                "standby, asked after its last read → reload",
                desired(standby_role(0), 1_000),
                running(standby_role(0), Running::Standby, PRESENT_STANDBY, 500),
                Step::Reload,
            ),
            (
                "standby, read since → idle",
                desired(standby_role(0), 1_000),
                running(standby_role(0), Running::Standby, PRESENT_STANDBY, 1_000),
                Step::Idle,
            ),
            (
                "primary, asked → reload",
                desired(primary_role(false), 1_000),
                running(primary_role(false), Running::Primary, PRESENT_PRIMARY, 500),
                Step::Reload,
            ),
            (
                "primary, read since → idle",
                desired(primary_role(false), 1_000),
                running(
                    primary_role(false),
                    Running::Primary,
                    PRESENT_PRIMARY,
                    1_500,
                ),
                Step::Idle,
            ),
            (
                "stopped standby: it reads everything when it starts",
                desired(standby_role(0), 1_000),
                running(standby_role(0), Running::No, PRESENT_STANDBY, 0),
                Step::Start,
            ),
            (
                "a stuck standby is repaired first",
                desired(standby_role(0), 1_000),
                Facts {
                    not_streaming_ms: STUCK_STANDBY_MS,
                    ..running(standby_role(0), Running::Standby, PRESENT_STANDBY, 500)
                },
                Step::StopForRewind,
            ),
        ];
        for (what, desired, facts, want) in cases {
            assert_eq!(next_step(&desired, &facts), want, "{what}");
        }
    }

    #[test]
    fn a_requested_restart_happens_once() {
        let desired = |before: u64| Desired {
            restart: true,
            restart_before_ms: Some(before),
            ..Desired::new(standby_role(0), "restart".into())
        };
        let running = |started: u64| Facts {
            started_at_ms: started,
            ..facts(PRESENT_STANDBY, Running::Standby, Some(standby_role(0)))
        };
        // (request time, server started at, step)
        for (before, started, want) in [
            (1_000, 500, Step::Restart),
            (1_000, 1_000, Step::Idle),
            (1_000, 1_500, Step::Idle),
        ] {
            assert_eq!(
                next_step(&desired(before), &running(started)),
                want,
                "{before} {started}"
            );
        }
    }
}
