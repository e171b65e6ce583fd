//! The member agent's loop: observe locally, decide the next step (`converge.rs`), do it,
//! report. PostgreSQL runs as this process's child.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::lease::{unix_now_ms, Lease};
use crate::member::{ActualRole, DataHealth, Desired, DesiredRole, Upstream};
use crate::postgres::{
    config as pgconfig, connect, quote::pgpass_field, slot_name_for, write_private_file,
    BasebackupOpts, Conn, ConnParams, Password, PgError, PostgresProcess, Programs, RewindOutcome,
    RunAs, Shutdown, SLOT_PREFIX,
};

use super::conf_files::{configured_role, render_conf, render_hba, with_include, OWNED_CONF};
use super::config::{AgentConfig, ApplicationConfig, REPLICATION_USER, SUPERUSER};
use super::converge::{
    next_step, release_lease, DataState, Facts, Repair, Running, Step, Unresponsive, UpstreamCheck,
    UNRESPONSIVE_FENCE_MS,
};
use super::datadir;
use super::error::AgentError;
use super::observe;
use super::shared::Shared;

/// How long a server may take to accept connections after start (crash recovery, replay).
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// Patience for a fast shutdown before escalating.
const STOP_PATIENCE: Duration = Duration::from_secs(60);
const MAX_BACKOFF_MS: u64 = 30_000;
/// How often a standby refreshes its slot copies.
const SLOT_UPKEEP_EVERY_MS: u64 = 2_000;
/// After a failed attempt at the application role, try again after this long.
const APPLICATION_RETRY_MS: u64 = 5_000;
/// How often a standby that would rewind or re-clone looks at its upstream, and for how long.
const UPSTREAM_CHECK_EVERY_MS: u64 = 1_000;
const UPSTREAM_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// A running server is asked for a new connection this often; when none succeeded for the
/// last `NEW_CONNECTIONS_WITHIN_MS` it counts as not answering (a stopped postmaster).
const NEW_CONNECTION_EVERY_MS: u64 = 1_000;
const NEW_CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
const NEW_CONNECTIONS_WITHIN_MS: u64 = 3_500;

pub struct Agent {
    pub cfg: AgentConfig,
    pub shared: Arc<Shared>,
    programs: Programs,
    run_as: Option<RunAs>,
    superuser_password: String,
    replication_password: String,
    server: Option<PostgresProcess>,
    conn: Option<Conn>,
    /// We asked the server to stop: its exit is not a crash.
    stopping: bool,
    crashes: u32,
    restart_not_before_ms: u64,
    /// A standby's repair (rewind, then re-clone), decided in `converge`.
    repair: Repair,
    next_slot_upkeep_ms: u64,
    unresponsive: Unresponsive,
    /// The last look at the upstream, and when it was taken.
    upstream_check: UpstreamCheck,
    upstream_checked_ms: u64,
    /// The application role and database as last made sure of (with the password), and when a
    /// failed attempt may be tried again.
    application_ensured: Option<(ApplicationConfig, String)>,
    application_retry_ms: u64,
    /// The certificate files PostgreSQL was last told to read: renewed files mean a reload.
    tls_seen: Vec<Option<crate::tls::Stamp>>,
    new_connection_tried_ms: u64,
    new_connection_ok_ms: u64,
    started_ms: u64,
    origin: Instant,
}

impl Agent {
    pub fn new(
        cfg: AgentConfig,
        shared: Arc<Shared>,
        programs: Programs,
        origin: Instant,
    ) -> Result<Agent, AgentError> {
        let superuser_password = read_password(&cfg.superuser_password_file)?;
        let replication_password = read_password(&cfg.replication_password_file)?;
        if superuser_password.is_empty() || replication_password.is_empty() {
            return Err(AgentError::Config(
                "password files must not be empty (pgreplica never uses default passwords)".into(),
            ));
        }
        let run_as = programs.run_as;
        Ok(Agent {
            cfg,
            shared,
            programs,
            run_as,
            superuser_password,
            replication_password,
            server: None,
            conn: None,
            stopping: false,
            crashes: 0,
            restart_not_before_ms: 0,
            repair: Repair::default(),
            next_slot_upkeep_ms: 0,
            unresponsive: Unresponsive::default(),
            upstream_check: UpstreamCheck::NotChecked,
            upstream_checked_ms: 0,
            application_ensured: None,
            application_retry_ms: 0,
            tls_seen: Vec::new(),
            new_connection_tried_ms: 0,
            new_connection_ok_ms: 0,
            started_ms: 0,
            origin,
        })
    }

    fn data(&self) -> PathBuf {
        self.cfg.data_dir()
    }

    fn local_params(&self) -> ConnParams {
        ConnParams::new(self.cfg.listen_host.clone(), self.cfg.port, SUPERUSER)
            .with_password(self.superuser_password.clone())
            .with_application_name(format!("pgreplica-agent-{}", self.cfg.member))
    }

    /// The superuser at another member, over TLS verified against the cluster CA.
    fn upstream_params(&self, upstream: &Upstream) -> ConnParams {
        ConnParams::new(upstream.host.clone(), upstream.port, SUPERUSER)
            .with_password(self.superuser_password.clone())
            .with_tls(Some(self.cfg.member_tls(&upstream.member)))
    }

    /// Prepare the member directory and the password file the server programs read.
    pub fn prepare(&self) -> Result<(), AgentError> {
        crate::postgres::create_private_dir(&self.cfg.member_dir, self.run_as)?;
        // a server left by an agent that died is blind (nobody fences it): end it before anything
        if let Some(pid) = datadir::live_postmaster(&self.data()) {
            warn!(member = %self.cfg.member, pid, "a PostgreSQL left by a previous agent still runs: killing it (crash recovery follows)");
            if let Err(e) = crate::postgres::kill_postgres_tree(pid) {
                warn!(member = %self.cfg.member, error = %e, "could not kill the left-over PostgreSQL");
            }
        }
        let pgpass = format!(
            "*:*:*:{REPLICATION_USER}:{}\n*:*:*:{SUPERUSER}:{}\n",
            pgpass_field(&self.replication_password)?,
            pgpass_field(&self.superuser_password)?
        );
        write_private_file(&self.cfg.passfile(), pgpass.as_bytes(), self.run_as)?;
        Ok(())
    }

    /// Stop everything on the way out: fast shutdown, release the lease.
    pub async fn shutdown(&mut self) {
        info!(member = %self.cfg.member, "agent shutting down: fast shutdown of PostgreSQL");
        self.stop_server(Shutdown::Fast).await;
        self.release_lease().await;
    }

    /// One pass: reap, decide, act, report. Returns true when a step was taken (go again soon).
    pub async fn pass(&mut self, desired: Option<&Desired>) -> bool {
        self.shared
            .last_tick_ms
            .store(unix_now_ms(), Ordering::SeqCst);
        self.reap().await;
        let facts = self.facts(desired).await;
        let step = match desired {
            Some(d) => next_step(d, &facts),
            None => Step::Wait("waiting for a desired state".into()),
        };
        if release_lease(desired, self.shared.holds_lease(), facts.running) {
            self.release_lease().await;
        }
        // A server that stays unresponsive must not keep the lease for ever: fence it so the
        // brain can fail over.
        if let Some(reason) = self.unresponsive.fence_now(facts.running, facts.now_ms) {
            error!(member = %self.cfg.member, "PostgreSQL has not answered for {} ms: stopping it immediately and releasing the lease", UNRESPONSIVE_FENCE_MS);
            let pid = self.shared.postmaster_pid.load(Ordering::SeqCst);
            if pid != 0 {
                if let Err(e) = crate::postgres::kill_postgres_tree(pid) {
                    warn!(member = %self.cfg.member, error = %e, "could not kill postgres");
                }
            }
            self.stop_server(Shutdown::Immediate).await;
            self.release_lease().await;
            self.shared.update_report(|r| r.fenced = Some(reason));
        }
        let acted = !matches!(step, Step::Idle | Step::Wait(_) | Step::Blocked(_));
        if acted {
            info!(member = %self.cfg.member, step = ?step, "converging");
        }
        let outcome = match (&step, desired) {
            (_, None) | (Step::Idle | Step::Wait(_) | Step::Blocked(_), _) => Ok(()),
            (_, Some(d)) => {
                self.shared.in_step.store(true, Ordering::SeqCst);
                let done = self.act(&step, d).await;
                self.shared.in_step.store(false, Ordering::SeqCst);
                done
            }
        };
        if let Err(e) = &outcome {
            let own = self.local_params().target();
            let wrong_password = matches!(e, AgentError::Postgres(PgError::Connect { target, source, .. })
                if *target == own
                    && source.code() == Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD));
            let text = if wrong_password {
                self.password_mismatch()
            } else {
                format!("{step:?}: {e}")
            };
            error!(member = %self.cfg.member, step = ?step, error = %text, "step failed");
            self.shared.update_report(|r| r.last_error = Some(text));
            self.backoff();
        }
        if let Some(d) = desired {
            if matches!(d.role, DesiredRole::Primary { .. }) {
                if let Err(e) = self.maintain_primary(d).await {
                    warn!(member = %self.cfg.member, error = %e, "primary upkeep failed");
                }
            } else if let Err(e) = self.maintain_standby(d).await {
                warn!(member = %self.cfg.member, error = %e, "standby slot upkeep failed");
            }
        }
        self.reload_renewed_certificate().await;
        self.refresh_report(desired, &step).await;
        acted && outcome.is_ok()
    }

    /// PostgreSQL reads its certificate at start and on reload only: when the runtime renewed the
    /// files, a running server is told to reload (the HTTPS side reads them again by itself).
    async fn reload_renewed_certificate(&mut self) {
        let files = [&self.cfg.tls.ca, &self.cfg.tls.cert, &self.cfg.tls.key];
        let now: Vec<Option<crate::tls::Stamp>> =
            files.iter().map(|p| crate::tls::stamp(p)).collect();
        if self.tls_seen.is_empty() || self.server.is_none() {
            // a server started now reads the current files itself
            self.tls_seen = now;
            return;
        }
        if now == self.tls_seen {
            return;
        }
        let Some(conn) = self.connection().await else {
            return;
        };
        match conn.reload().await {
            Ok(_) => {
                info!(member = %self.cfg.member, "certificate renewed: PostgreSQL reloaded it");
                self.tls_seen = now;
            }
            Err(e) => {
                warn!(member = %self.cfg.member, error = %e, "could not reload the renewed certificate")
            }
        }
    }

    fn backoff(&mut self) {
        let exp = self.crashes.min(5);
        let backoff = (1_000u64 << exp).min(MAX_BACKOFF_MS);
        self.restart_not_before_ms = unix_now_ms() + backoff;
    }

    /// Notice a server that exited.
    async fn reap(&mut self) {
        let Some(server) = self.server.as_mut() else {
            return;
        };
        let exited = match server.try_wait() {
            Ok(Some(status)) => status,
            Ok(None) => return,
            Err(e) => {
                warn!(member = %self.cfg.member, error = %e, "cannot check on postgres");
                return;
            }
        };
        let tail = server.log_tail();
        self.server = None;
        self.conn = None;
        self.shared.set_started_on(None, 0);
        if self.stopping {
            self.stopping = false;
            return;
        }
        if let Some(reason) = self.shared.data_lost() {
            warn!(member = %self.cfg.member, %reason, "postgres stopped after losing its data directory; last lines:\n{tail}");
            return;
        }
        self.crashes += 1;
        self.backoff();
        let wait = self.restart_not_before_ms.saturating_sub(unix_now_ms());
        error!(member = %self.cfg.member, %exited, crashes = self.crashes, restart_in_ms = wait, "postgres exited unexpectedly; last lines:\n{tail}");
        self.shared.update_report(|r| {
            r.crashes += 1;
            r.last_error = Some(format!(
                "postgres exited ({exited}); restarting in {wait} ms"
            ));
        });
    }

    async fn facts(&mut self, desired: Option<&Desired>) -> Facts {
        let now = unix_now_ms();
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
        let configured = std::fs::read_to_string(self.data().join(OWNED_CONF))
            .ok()
            .and_then(|c| configured_role(&c));
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
        let streaming = self.shared.report().streaming_from.is_some();
        let upstream_changed = match (desired.map(|d| &d.role), &configured) {
            (
                Some(DesiredRole::Standby { upstream: a, .. }),
                Some(DesiredRole::Standby { upstream: b, .. }),
            ) => a != b,
            _ => false,
        };
        let not_streaming_ms =
            self.repair
                .look(running, streaming, upstream_changed, self.started_ms, now);
        let upstream = match desired.map(|d| &d.role) {
            Some(DesiredRole::Standby { upstream, .. })
                if self.repair.wanted(&data, running, not_streaming_ms) =>
            {
                self.check_upstream(upstream, now).await
            }
            _ => UpstreamCheck::NotChecked,
        };
        Facts {
            data,
            running,
            configured,
            holds_lease,
            lease_holder,
            not_streaming_ms,
            rewind_failed: self.repair.rewind_failed,
            upstream,
            rewind_requested: self.repair.rewind_requested,
            restart_not_before_ms: self.restart_not_before_ms,
            application_ready: self.application_ready(now),
            now_ms: now,
        }
    }

    /// The application's role and database need nothing (or cannot be tried again yet).
    fn application_ready(&self, now: u64) -> bool {
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

    /// Create or update the application's login role (its password from the file) and its
    /// database. Commits locally: a primary whose synchronous standby is away must not hang its
    /// agent on this; a new primary makes sure again.
    async fn ensure_application(&mut self) -> Result<(), AgentError> {
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

    /// Does the postmaster accept a new connection? Tried once a second; false once no new
    /// connection succeeded for [`NEW_CONNECTIONS_WITHIN_MS`].
    async fn accepts_connections(&mut self, now: u64) -> bool {
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

    /// Does the upstream answer? Looked at once a second at most.
    async fn check_upstream(&mut self, upstream: &Upstream, now: u64) -> UpstreamCheck {
        if self.upstream_check != UpstreamCheck::NotChecked
            && now.saturating_sub(self.upstream_checked_ms) < UPSTREAM_CHECK_EVERY_MS
        {
            return self.upstream_check.clone();
        }
        let params = self
            .upstream_params(upstream)
            .with_application_name(format!("pgreplica-agent-{}-probe", self.cfg.member));
        let check = match tokio::time::timeout(UPSTREAM_CHECK_TIMEOUT, connect(&params)).await {
            // only a primary proves anything: a standby (a target not yet promoted) has no final
            // timeline to rewind to, and cloning from it could drop WAL this member holds
            Ok(Ok(conn)) => match conn.is_in_recovery().await {
                Ok(false) => UpstreamCheck::Answers,
                Ok(true) => UpstreamCheck::Unreachable(format!(
                    "{} is still a standby, not a primary to repair from",
                    upstream.member
                )),
                Err(e) => UpstreamCheck::Unreachable(e.to_string()),
            },
            Ok(Err(e)) => UpstreamCheck::Unreachable(e.to_string()),
            Err(_) => UpstreamCheck::Unreachable(format!(
                "no answer within {} ms",
                UPSTREAM_CHECK_TIMEOUT.as_millis()
            )),
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

    /// What a refused superuser password means: data kept from a cluster whose credentials were
    /// replaced since.
    fn password_mismatch(&self) -> String {
        format!(
            "the superuser password in {} does not open this data directory: the data was made with other credentials; restore the password that belongs to it (Kubernetes: the Secret <cluster>-superuser of the cluster that made the volume) and the member starts as it was",
            self.cfg.superuser_password_file.display()
        )
    }

    /// The agent's own connection to its server, reconnected when needed.
    async fn connection(&mut self) -> Option<&Conn> {
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

    async fn act(&mut self, step: &Step, desired: &Desired) -> Result<(), AgentError> {
        match step {
            Step::AcquireLease => self.acquire_lease().await,
            Step::Bootstrap => self.bootstrap(desired).await,
            Step::Clone => self.clone_from_upstream(desired).await,
            Step::Rewind => self.rewind(desired).await,
            Step::Configure => self.configure(desired).await,
            Step::Start => self.start().await,
            Step::Promote => self.promote().await,
            Step::EnsureApplication => self.ensure_application().await,
            Step::Stop => {
                self.stop_server(Shutdown::Fast).await;
                self.release_lease().await;
                Ok(())
            }
            Step::StopForRewind => {
                warn!(member = %self.cfg.member, "standby has not streamed for a while: stopping it to rewind from its upstream");
                self.stop_server(Shutdown::Fast).await;
                if self.repair.stopped_stuck() {
                    warn!(member = %self.cfg.member, "a rewind did not make it stream again: re-cloning");
                }
                Ok(())
            }
            Step::Idle | Step::Wait(_) | Step::Blocked(_) => Ok(()),
        }
    }

    async fn acquire_lease(&mut self) -> Result<(), AgentError> {
        let got = self
            .shared
            .lease
            .try_acquire(&self.cfg.member, self.cfg.lease_duration_ms, unix_now_ms())
            .await?;
        if got {
            self.shared
                .last_renew_mono_ms
                .store(self.origin.elapsed().as_millis() as u64, Ordering::SeqCst);
            self.shared.holds_lease.store(true, Ordering::SeqCst);
            info!(member = %self.cfg.member, "acquired the lease");
        }
        Ok(())
    }

    async fn release_lease(&mut self) {
        if self.shared.holds_lease.swap(false, Ordering::SeqCst) {
            match self.shared.lease.release(&self.cfg.member).await {
                Ok(()) => info!(member = %self.cfg.member, "released the lease"),
                Err(e) => {
                    warn!(member = %self.cfg.member, error = %e, "could not release the lease")
                }
            }
        }
    }

    async fn bootstrap(&mut self, desired: &Desired) -> Result<(), AgentError> {
        let data = self.data();
        let tmp = self.cfg.member_dir.join("data.initdb");
        remove_dir_if_exists(&tmp)?;
        let pwfile = self.cfg.member_dir.join("initdb.pw");
        write_private_file(&pwfile, self.superuser_password.as_bytes(), self.run_as)?;
        self.shared.set_activity("initdb");
        let result = self.programs.initdb(&tmp, SUPERUSER, &pwfile).await;
        let _ = std::fs::remove_file(&pwfile);
        result?;
        std::fs::rename(&tmp, &data)
            .map_err(AgentError::io("move the new data directory in place"))?;
        self.write_config(&desired.role)?;
        self.start().await?;
        let password = self.replication_password.clone();
        let conn = self
            .connection()
            .await
            .ok_or_else(|| AgentError::Step("cannot connect after bootstrap".into()))?;
        // synchronous_standby_names is already in force and no standby exists yet: a commit
        // waiting for one would hang the agent. A new cluster has nothing to protect.
        conn.batch("SET synchronous_commit = local").await?;
        conn.ensure_replication_role(REPLICATION_USER, &password)
            .await?;
        info!(member = %self.cfg.member, "bootstrapped a new cluster");
        Ok(())
    }

    async fn clone_from_upstream(&mut self, desired: &Desired) -> Result<(), AgentError> {
        let DesiredRole::Standby { upstream, slot, .. } = &desired.role else {
            return Err(AgentError::Step("clone needs a standby role".into()));
        };
        let data = self.data();
        let tmp = self.cfg.member_dir.join("data.clone");
        remove_dir_if_exists(&tmp)?;
        let opts = BasebackupOpts {
            host: upstream.host.clone(),
            port: upstream.port,
            user: REPLICATION_USER.into(),
            password: Password::File(self.cfg.passfile()),
            target: tmp.clone(),
            slot: Some(slot.clone()),
            application_name: Some(format!("{}-clone", self.cfg.member)),
            tls: Some(self.cfg.member_tls(&upstream.member)),
        };
        let from = upstream.member.clone();
        self.shared.update_report(|r| {
            r.role = ActualRole::Preparing;
            r.activity = format!("cloning from {from}: starting");
        });
        let shared = self.shared.clone();
        let began = Instant::now();
        let result = self
            .programs
            .basebackup(&opts, |p| {
                shared.set_activity(format!(
                    "cloning from {from}: {}% ({} of {} MB)",
                    p.percent,
                    p.done_kb / 1024,
                    p.total_kb / 1024
                ));
            })
            .await;
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e.into());
        }
        // The old data is moved aside only now that a complete copy exists, and deleted only
        // once the copy runs.
        let aside = if data.exists() {
            let aside = self
                .cfg
                .member_dir
                .join(format!("data.aside-{}", unix_now_ms()));
            std::fs::rename(&data, &aside).map_err(AgentError::io("move old data aside"))?;
            info!(member = %self.cfg.member, aside = %aside.display(), "moved the old data directory aside; it is deleted once the new copy runs");
            Some(aside)
        } else {
            None
        };
        std::fs::rename(&tmp, &data).map_err(AgentError::io("move the clone in place"))?;
        info!(member = %self.cfg.member, from = %upstream.member, seconds = began.elapsed().as_secs_f64(), "clone complete");
        self.shared.set_data_lost(None);
        self.repair.cloned();
        self.write_config(&desired.role)?;
        self.start().await?;
        // old_asides lists this run's aside too: delete each directory once.
        let older: Vec<PathBuf> = old_asides(&self.cfg.member_dir)
            .into_iter()
            .filter(|dir| Some(dir) != aside.as_ref())
            .collect();
        for dir in aside.into_iter().chain(older) {
            let target = dir.clone();
            let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&target))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match removed {
                Ok(()) => {
                    info!(member = %self.cfg.member, dir = %dir.display(), "deleted the old data directory")
                }
                Err(e) => {
                    warn!(member = %self.cfg.member, dir = %dir.display(), error = %e, "could not delete old data")
                }
            }
        }
        Ok(())
    }

    async fn rewind(&mut self, desired: &Desired) -> Result<(), AgentError> {
        let DesiredRole::Standby { upstream, .. } = &desired.role else {
            return Err(AgentError::Step("rewind needs a standby role".into()));
        };
        let source = self.upstream_params(upstream);
        self.shared.update_report(|r| {
            r.role = ActualRole::Preparing;
            r.activity = format!("rewinding from {}", upstream.member);
        });
        self.shared.critical.store(true, Ordering::SeqCst);
        let rewound = self.programs.rewind(&self.data(), &source).await;
        self.shared.critical.store(false, Ordering::SeqCst);
        match rewound {
            Ok(outcome) => {
                info!(member = %self.cfg.member, from = %upstream.member, ?outcome, "rewind finished");
                self.repair.rewound();
                if outcome == RewindOutcome::Rewound || outcome == RewindOutcome::NotNeeded {
                    self.write_config(&desired.role)?;
                }
                Ok(())
            }
            Err(e) => {
                // only an upstream that answers can prove that rewinding cannot work
                self.upstream_check = UpstreamCheck::NotChecked;
                let upstream = upstream.clone();
                match self.check_upstream(&upstream, unix_now_ms()).await {
                    UpstreamCheck::Answers => {
                        warn!(member = %self.cfg.member, error = %e, "rewind failed although the upstream answers: the member will be re-cloned (its data is kept until the new copy runs)");
                        self.repair.rewind_refused();
                    }
                    _ => {
                        warn!(member = %self.cfg.member, error = %e, "rewind failed while the upstream does not answer: keeping the data and trying again later");
                    }
                }
                Err(e.into())
            }
        }
    }

    fn write_config(&self, role: &DesiredRole) -> Result<(), AgentError> {
        let data = self.data();
        let conf = render_conf(&self.cfg, role, &self.cfg.passfile())?;
        write_private_file(&data.join(OWNED_CONF), conf.as_bytes(), self.run_as)?;
        write_private_file(
            &data.join("pg_hba.conf"),
            render_hba(&self.cfg).as_bytes(),
            self.run_as,
        )?;
        let main_conf = data.join("postgresql.conf");
        let current = std::fs::read_to_string(&main_conf).unwrap_or_default();
        let included = with_include(&current);
        if included != current {
            write_private_file(&main_conf, included.as_bytes(), self.run_as)?;
        }
        // pg_basebackup copies the source's auto.conf; nothing pgreplica owns may live there
        let auto = data.join("postgresql.auto.conf");
        if let Ok(text) = std::fs::read_to_string(&auto) {
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| {
                    !l.trim_start().starts_with("primary_conninfo")
                        && !l.trim_start().starts_with("primary_slot_name")
                })
                .collect();
            let cleaned = kept.join("\n") + "\n";
            if cleaned != text {
                write_private_file(&auto, cleaned.as_bytes(), self.run_as)?;
            }
        }
        if matches!(role, DesiredRole::Standby { .. }) && self.server.is_none() {
            pgconfig::write_standby_signal(&data, self.run_as)?;
        }
        Ok(())
    }

    async fn configure(&mut self, desired: &Desired) -> Result<(), AgentError> {
        self.write_config(&desired.role)?;
        if self.server.is_some() {
            if let Some(conn) = self.connection().await {
                conn.reload().await?;
                info!(member = %self.cfg.member, role = desired.role_name(), "configuration reloaded");
            }
        }
        Ok(())
    }

    async fn start(&mut self) -> Result<(), AgentError> {
        if self.server.is_some() {
            return Err(AgentError::Step("PostgreSQL is already running".into()));
        }
        let data = self.data();
        self.shared.set_activity("starting PostgreSQL");
        let mut server =
            self.programs
                .start_postgres(&data, std::iter::empty::<&str>(), &self.cfg.member)?;
        let identity = datadir::identity(&data);
        self.shared.set_started_on(identity, server.pid());
        // from now on a server process exists, whatever wait_ready says
        self.shared.update_report(|r| {
            r.server_process = true;
            r.fenced = None;
        });
        self.shared.set_data_lost(None);
        self.stopping = false;
        match server.wait_ready(&self.local_params(), START_TIMEOUT).await {
            Ok(conn) => {
                self.conn = Some(conn);
                self.server = Some(server);
                self.started_ms = unix_now_ms();
                self.shared.update_report(|r| r.shutdown_checkpoint = None);
                info!(member = %self.cfg.member, pid = self.shared.postmaster_pid.load(Ordering::SeqCst), "PostgreSQL accepts connections");
                Ok(())
            }
            Err(e) => {
                self.shared.set_started_on(None, 0);
                let _ = server
                    .stop(Shutdown::Immediate, Duration::from_secs(5))
                    .await;
                self.crashes += 1;
                Err(e.into())
            }
        }
    }

    async fn promote(&mut self) -> Result<(), AgentError> {
        self.shared.set_activity("promoting");
        let began = Instant::now();
        let conn = self
            .connection()
            .await
            .ok_or_else(|| AgentError::Step("cannot connect to promote".into()))?;
        if !conn.promote(60).await? {
            return Err(AgentError::Step(
                "pg_promote did not finish within 60 s".into(),
            ));
        }
        let timeline = conn.timeline().await.ok();
        info!(member = %self.cfg.member, seconds = began.elapsed().as_secs_f64(), ?timeline, "promoted");
        Ok(())
    }

    async fn stop_server(&mut self, mode: Shutdown) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        self.stopping = true;
        self.conn = None;
        self.shared.set_started_on(None, 0);
        self.shared.set_activity("stopping PostgreSQL");
        match server.stop(mode, STOP_PATIENCE).await {
            Ok(status) => info!(member = %self.cfg.member, %status, "PostgreSQL stopped"),
            Err(e) => warn!(member = %self.cfg.member, error = %e, "stopping PostgreSQL failed"),
        }
        self.stopping = false;
        if self.shared.data_lost().is_some() {
            return;
        }
        match self.programs.controldata(&self.data()).await {
            Ok(cd) if cd.is_clean_shutdown() => {
                let at = cd.checkpoint_lsn;
                self.shared
                    .update_report(|r| r.shutdown_checkpoint = Some(at));
                info!(member = %self.cfg.member, checkpoint = %at, "clean shutdown");
            }
            Ok(cd) => warn!(member = %self.cfg.member, state = %cd.state, "shutdown was not clean"),
            Err(e) => warn!(member = %self.cfg.member, error = %e, "cannot read control data"),
        }
    }

    /// On a running standby, every couple of seconds: keep the other members' slot copies.
    async fn maintain_standby(&mut self, desired: &Desired) -> Result<(), AgentError> {
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
        super::standby_slots::keep_slot_copies(conn, &primary, &slots).await?;
        Ok(())
    }

    /// On a running primary: keep one slot per standby and drop slots of removed members.
    async fn maintain_primary(&mut self, desired: &Desired) -> Result<(), AgentError> {
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

    async fn refresh_report(&mut self, desired: Option<&Desired>, step: &Step) {
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
            r.desired = desired.cloned();
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

    pub fn has_server(&self) -> bool {
        self.server.is_some()
    }
}

fn remove_dir_if_exists(dir: &Path) -> Result<(), AgentError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AgentError::Io {
            what: format!("remove {}", dir.display()),
            source: e,
        }),
    }
}

/// Older asides left by an interrupted run.
fn old_asides(member_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(member_dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("data.aside-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A password file's content without the trailing newline.
fn read_password(path: &Path) -> Result<String, AgentError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(AgentError::io(format!(
            "read password file {}",
            path.display()
        )))
}
