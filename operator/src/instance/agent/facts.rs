//! What is true locally, looked at once per pass: the data directory, the server, the lease,
//! the upstream when a repair would need it.

use tracing::{error, info, warn};

use crate::lease::{unix_now_ms, Lease};
use crate::member::{Desired, DesiredRole, Upstream};
use crate::postgres::{connect, Conn};

use crate::instance::converge::{
    stuck_after_ms, DataState, Facts, Progress, Running, UpstreamCheck,
};
use crate::instance::datadir;
use crate::instance::observe;

use super::{
    read_password, Agent, NEW_CONNECTIONS_WITHIN_MS, NEW_CONNECTION_EVERY_MS,
    NEW_CONNECTION_TIMEOUT, UPSTREAM_CHECK_EVERY_MS, UPSTREAM_CHECK_TIMEOUT,
};

impl Agent {
    pub(super) async fn facts(&mut self, desired: Option<&Desired>) -> Facts {
        let now = unix_now_ms();
        // the loop may look before the watchdog does: then it fences the same way, at once, so
        // the first report of the loss already says the server is fenced
        crate::instance::watchdog::check(&self.shared).await;
        let data = match self.shared.data_lost() {
            Some(reason) => DataState::Lost(reason),
            None => match datadir::inspect(&self.data()) {
                // the loop may look before the watchdog does: a directory missing or broken under
                // a running server is a loss, never a reason to bootstrap or clone over it
                DataState::Missing | DataState::Invalid(_) if self.server.is_some() => {
                    DataState::Lost(format!(
                        "data directory {} vanished under the running server",
                        self.data().display()
                    ))
                }
                other => other,
            },
        };
        let running = match (&self.server, &data) {
            (None, _) => Running::No,
            (Some(_), _) => match self.connection().await {
                Some(conn) => match conn.is_in_recovery().await {
                    // a server whose postmaster accepts no new connection (stopped, hung) is
                    // not answering, even if the agent's old session still works
                    Ok(_) if !self.accepts_connections(now).await => Running::Unresponsive,
                    Ok(true) => Running::Standby,
                    Ok(false) => Running::Primary,
                    // the process runs but does not answer (a data directory being deleted,
                    // overload): never start a second server, never drop the watchdog's eye
                    Err(_) => Running::Unresponsive,
                },
                None => Running::Unresponsive,
            },
        };
        let replay_state = match running {
            Running::Standby => match self.connection().await {
                Some(conn) => conn.replay_pause().await.ok(),
                None => None,
            },
            _ => Some((false, false)),
        };
        let replay_unknown = replay_state.is_none();
        let (replay_paused, recovery_target_set) = replay_state.unwrap_or((false, false));
        if !replay_unknown && !replay_paused && running == Running::Standby {
            self.paused_at = None;
        }
        let configured = self.configured_role();
        let parameters_current = match desired {
            Some(d) => self.configured_parameters().as_ref() == Some(&d.parameters),
            None => true,
        };
        let pending_restart =
            self.server.is_some() && !self.shared.report().pending_restart.is_empty();
        let lease = self.shared.lease.read().await;
        let readable = lease.is_ok();
        let lease_holder = lease
            .ok()
            .filter(|l| !l.free(now))
            .and_then(|l| l.holder.clone());
        // An unreadable lease (damaged, API unreachable) says nothing: the keeper, which fences
        // when it cannot renew in time, knows whether this member still holds it.
        let holds_lease = self.shared.holds_lease()
            && (!readable || lease_holder.as_deref() == Some(self.cfg.member.as_str()));
        // a lease still recorded for this member (a restarted agent) is ours to take again
        let lease_holder = lease_holder.filter(|h| h != &self.cfg.member);
        let seen = {
            let report = self.shared.report();
            Progress {
                streaming: report.streaming_from.is_some(),
                replayed: report.replayed_lsn,
                paused: replay_paused,
            }
        };
        let upstream_changed = match (desired.map(|d| &d.role), &configured) {
            (
                Some(DesiredRole::Standby { upstream: a, .. }),
                Some(DesiredRole::Standby { upstream: b, .. }),
            ) => a != b,
            _ => false,
        };
        let not_streaming_ms =
            self.repair
                .look(running, seen, upstream_changed, self.started_ms, now);
        let upstream = match desired.map(|d| &d.role) {
            Some(role @ DesiredRole::Standby { upstream, .. })
                if self
                    .repair
                    .wanted(&data, running, not_streaming_ms, stuck_after_ms(role)) =>
            {
                self.check_upstream(upstream, now).await
            }
            _ => UpstreamCheck::NotChecked,
        };
        Facts {
            data,
            running,
            configured,
            parameters_current,
            pending_restart,
            started_at_ms: if self.server.is_some() {
                self.started_ms
            } else {
                0
            },
            reloaded_at_ms: if self.server.is_some() {
                self.shared.report().reloaded_at_ms.unwrap_or(0)
            } else {
                0
            },
            holds_lease,
            lease_holder,
            not_streaming_ms,
            rewind_failed: self.repair.rewind_failed,
            upstream,
            rewind_requested: self.repair.rewind_requested,
            restart_not_before_ms: self.restart_not_before_ms,
            failed_step: self.failed_step,
            retry_not_before_ms: self.retry_not_before_ms,
            replay_paused,
            recovery_target_set,
            replay_unknown,
            application_ready: self.application_ready(now),
            now_ms: now,
        }
    }

    /// The application's role and database need nothing (or cannot be tried again yet).
    pub(super) fn application_ready(&self, now: u64) -> bool {
        let Some(app) = &self.cfg.application else {
            return true;
        };
        if now < self.application_retry_ms {
            return true;
        }
        let password = read_password(&app.password_file).unwrap_or_default();
        self.application_ensured
            .as_ref()
            .is_some_and(|(done, with)| done == app && *with == password)
    }

    /// Does the postmaster accept a new connection? Tried once a second; false once no new
    /// connection succeeded for [`NEW_CONNECTIONS_WITHIN_MS`].
    pub(super) async fn accepts_connections(&mut self, now: u64) -> bool {
        if now.saturating_sub(self.new_connection_tried_ms) >= NEW_CONNECTION_EVERY_MS {
            self.new_connection_tried_ms = now;
            let params = self.local_params();
            let answered =
                match tokio::time::timeout(NEW_CONNECTION_TIMEOUT, connect(&params)).await {
                    Ok(Ok(conn)) => {
                        drop(conn);
                        true
                    }
                    // any reply of the server (too many clients, starting up) proves that the
                    // postmaster forks; only silence and refusal do not
                    Ok(Err(e)) => e.sqlstate().is_some(),
                    Err(_) => false,
                };
            if answered {
                self.new_connection_ok_ms = unix_now_ms();
            }
        }
        let since = self.new_connection_ok_ms.max(self.started_ms);
        now.saturating_sub(since) < NEW_CONNECTIONS_WITHIN_MS
    }

    /// A connection to the upstream for a look at it (bounded by `UPSTREAM_CHECK_TIMEOUT`), or
    /// why there is none.
    pub(super) async fn probe_upstream(&self, upstream: &Upstream) -> Result<Conn, String> {
        let params = self
            .upstream_params(upstream)
            .with_application_name(format!("pgreplica-agent-{}-probe", self.cfg.member));
        match tokio::time::timeout(UPSTREAM_CHECK_TIMEOUT, connect(&params)).await {
            Ok(connected) => connected.map_err(|e| e.to_string()),
            Err(_) => Err(silent_upstream()),
        }
    }

    /// Does the upstream answer? Looked at once a second at most.
    pub(super) async fn check_upstream(&mut self, upstream: &Upstream, now: u64) -> UpstreamCheck {
        if self.upstream_check != UpstreamCheck::NotChecked
            && now.saturating_sub(self.upstream_checked_ms) < UPSTREAM_CHECK_EVERY_MS
        {
            return self.upstream_check.clone();
        }
        let check = match self.probe_upstream(upstream).await {
            // only a primary proves anything: a standby (a target not yet promoted) has no final
            // timeline to rewind to, and cloning from it could drop WAL this member holds
            Ok(conn) => match conn.is_in_recovery().await {
                Ok(false) => UpstreamCheck::Answers,
                Ok(true) => UpstreamCheck::Unreachable(format!(
                    "{} is still a standby, not a primary to repair from",
                    upstream.member
                )),
                Err(e) => UpstreamCheck::Unreachable(e.to_string()),
            },
            Err(why) => UpstreamCheck::Unreachable(why),
        };
        if check != self.upstream_check {
            match &check {
                UpstreamCheck::Unreachable(why) => {
                    warn!(member = %self.cfg.member, upstream = %upstream.member, %why, "the upstream does not answer: keeping this member's data until it does")
                }
                _ => {
                    info!(member = %self.cfg.member, upstream = %upstream.member, "the upstream answers")
                }
            }
        }
        self.upstream_check = check.clone();
        self.upstream_checked_ms = now;
        check
    }

    /// The agent's own connection to its server, reconnected when needed.
    pub(super) async fn connection(&mut self) -> Option<&Conn> {
        if self.conn.as_ref().is_some_and(|c| c.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let params = self.local_params();
            match tokio::time::timeout(observe::QUERY_TIMEOUT, connect(&params)).await {
                Ok(Ok(conn)) => self.conn = Some(conn),
                Ok(Err(e)) => {
                    if e.sqlstate() == Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD) {
                        let why = self.password_mismatch();
                        error!(member = %self.cfg.member, "{why}");
                        self.shared.update_report(|r| {
                            r.last_error = Some(why.clone());
                            r.activity = why;
                        });
                    } else {
                        warn!(member = %self.cfg.member, error = %e, "cannot connect to own server");
                    }
                    return None;
                }
                Err(_) => return None,
            }
        }
        self.conn.as_ref()
    }
}

/// Why a look at the upstream got nothing.
pub(super) fn silent_upstream() -> String {
    format!("no answer within {} ms", UPSTREAM_CHECK_TIMEOUT.as_millis())
}
