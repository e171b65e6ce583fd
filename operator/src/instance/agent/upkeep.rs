//! Upkeep on every pass: slots on a standby, sync names and the application role on the
//! primary, the report the brain reads.

use tracing::info;

use crate::lease::unix_now_ms;
use crate::member::{ActualRole, DataHealth, Desired, DesiredRole};
use crate::postgres::{slot_name_for, SLOT_PREFIX};

use crate::instance::converge::{DataState, Step};
use crate::instance::datadir;
use crate::instance::error::AgentError;
use crate::instance::observe;

use super::{read_password, Agent, APPLICATION_RETRY_MS, SLOT_UPKEEP_EVERY_MS};

impl Agent {
    /// On a running standby, every couple of seconds: keep the other members' slot copies.
    pub(super) async fn maintain_standby(&mut self, desired: &Desired) -> Result<(), AgentError> {
        let DesiredRole::Standby {
            upstream, slots, ..
        } = &desired.role
        else {
            return Ok(());
        };
        let now = unix_now_ms();
        if self.server.is_none() || now < self.next_slot_upkeep_ms {
            return Ok(());
        }
        self.next_slot_upkeep_ms = now + SLOT_UPKEEP_EVERY_MS;
        let primary = self.upstream_params(upstream);
        let slots = slots.clone();
        let Some(conn) = self.connection().await else {
            return Ok(());
        };
        if !conn.is_in_recovery().await? {
            return Ok(());
        }
        crate::instance::standby_slots::keep_slot_copies(conn, &primary, &slots).await?;
        Ok(())
    }

    /// On a running primary: keep one slot per standby and drop slots of removed members.
    pub(super) async fn maintain_primary(&mut self, desired: &Desired) -> Result<(), AgentError> {
        let DesiredRole::Primary { slots, .. } = &desired.role else {
            return Ok(());
        };
        if self.server.is_none() {
            return Ok(());
        }
        let member = self.cfg.member.clone();
        let Some(conn) = self.connection().await else {
            return Ok(());
        };
        if conn.is_in_recovery().await? {
            return Ok(());
        }
        let existing = conn.list_slots().await?;
        for slot in slots {
            if !existing.iter().any(|s| &s.name == slot) {
                conn.create_physical_slot(slot).await?;
                info!(member = %member, slot, "created replication slot");
            }
        }
        let own = slot_name_for(&member);
        for s in existing {
            if s.name.starts_with(SLOT_PREFIX) && !slots.contains(&s.name) && !s.active {
                conn.drop_slot(&s.name).await?;
                info!(member = %member, slot = %s.name, own = s.name == own, "dropped replication slot of a member that is gone");
            }
        }
        Ok(())
    }

    /// Create or update the application's login role (its password from the file) and its
    /// database. Commits locally: a primary whose synchronous standby is away must not hang its
    /// agent on this; a new primary makes sure again.
    pub(super) async fn ensure_application(&mut self) -> Result<(), AgentError> {
        let Some(app) = self.cfg.application.clone() else {
            return Ok(());
        };
        self.application_retry_ms = unix_now_ms() + APPLICATION_RETRY_MS;
        let password = read_password(&app.password_file)?;
        if password.is_empty() {
            return Err(AgentError::Config(format!(
                "the application password file {} is empty",
                app.password_file.display()
            )));
        }
        let conn = self.connection().await.ok_or_else(|| {
            AgentError::Step("cannot connect to make the application role".into())
        })?;
        // bounded: a lock held by someone else (the application changing its own role in an open
        // transaction) must not hold the agent, which keeps /healthz and the lease going
        conn.batch(
            "SET synchronous_commit = local; SET lock_timeout = '2s'; SET statement_timeout = '15s'",
        )
        .await?;
        let made = async {
            conn.ensure_login_role(&app.user, &password).await?;
            conn.ensure_database(&app.database, &app.user).await
        }
        .await;
        conn.batch("RESET synchronous_commit; RESET lock_timeout; RESET statement_timeout")
            .await?;
        let created = made?;
        info!(member = %self.cfg.member, user = %app.user, database = %app.database, created, "application role and database ready");
        self.application_ensured = Some((app, password));
        self.application_retry_ms = 0;
        Ok(())
    }

    pub(super) async fn refresh_report(&mut self, desired: Option<&Desired>, step: &Step) {
        // the data may have gone since this pass looked: a report that says so says fenced too
        // (the brain keeps a fenced primary's routes until another member takes them, and one
        // that might still run loses them at once, ADR 0008)
        crate::instance::watchdog::check(&self.shared).await;
        let data_health = match self.shared.data_lost() {
            Some(reason) => DataHealth::Lost { reason },
            None => match datadir::inspect(&self.data()) {
                DataState::Missing => DataHealth::Missing,
                DataState::Invalid(reason) => DataHealth::Invalid { reason },
                DataState::Lost(reason) => DataHealth::Lost { reason },
                DataState::Present { .. } => DataHealth::Healthy,
            },
        };
        let view = if self.server.is_some() {
            match self.connection().await {
                Some(conn) => tokio::time::timeout(observe::QUERY_TIMEOUT, observe::read(conn))
                    .await
                    .ok()
                    .and_then(Result::ok),
                None => None,
            }
        } else {
            None
        };
        let view = view.map(|mut v| {
            let pid = self
                .shared
                .postmaster_pid
                .load(std::sync::atomic::Ordering::SeqCst);
            v.timeline = observe::steady_timeline(
                &mut self.standby_timeline,
                pid,
                v.in_recovery,
                v.timeline,
            );
            v
        });
        let system_identifier = if data_health == DataHealth::Healthy && self.server.is_none() {
            self.programs
                .controldata(&self.data())
                .await
                .ok()
                .map(|c| c.system_identifier)
        } else {
            None
        };
        let holds = self.shared.holds_lease();
        let crashes = self.crashes;
        let has_server = self.server.is_some() || datadir::live_postmaster(&self.data()).is_some();
        let desired_role = desired.map(|d| &d.role);
        let upstream_tls_name = match desired_role {
            Some(DesiredRole::Standby { upstream, .. }) => {
                Some(self.cfg.member_tls(&upstream.member).server_name)
            }
            _ => None,
        };
        self.shared.update_report(|r| {
            // the last one received (a newer one than this pass's may wait for the next)
            r.desired = self.shared.desired.borrow().clone();
            r.data = data_health;
            r.holds_lease = holds;
            r.server_process = has_server;
            r.crashes = crashes;
            r.at_ms = unix_now_ms();
            if system_identifier.is_some() {
                r.system_identifier = system_identifier;
            }
            match &view {
                Some(v) => observe::apply(r, v, desired_role, upstream_tls_name.as_deref()),
                None => {
                    r.running = false;
                    // an unanswering server keeps what it last said about its receiver
                    if !has_server {
                        r.wal_sender = None;
                    }
                    if r.role != ActualRole::Preparing || !matches!(step, Step::Idle) {
                        r.role = ActualRole::Stopped;
                    }
                    r.streaming_from = None;
                    r.standbys.clear();
                    r.current_lsn = None;
                }
            }
            r.converged = matches!(step, Step::Idle);
            match step {
                Step::Idle => {
                    r.activity = match (&r.role, &r.streaming_from) {
                        (ActualRole::Primary, _) => "primary".into(),
                        (ActualRole::Standby, _) if r.frozen_at_ms.is_some() => {
                            let mut text = format!(
                                "replay paused: data as of {}",
                                crate::plan::frozen_at(r.frozen_at_ms.unwrap_or(0))
                            );
                            if !r.frozen_locks.is_empty() {
                                text.push_str(&format!(
                                    "; {} locked by a DROP, TRUNCATE or ALTER it began replaying (reads of them wait until it is resumed)",
                                    r.frozen_locks.join(", ")
                                ));
                            }
                            text
                        }
                        (ActualRole::Standby, Some(up)) => format!("streaming from {up}"),
                        (ActualRole::Standby, None) => "standby, connecting to upstream".into(),
                        _ => "stopped".into(),
                    };
                    r.last_error = None;
                }
                Step::Wait(why) | Step::Blocked(why) => r.activity = why.clone(),
                _ => {}
            }
        });
    }
}
