//! The member agent's loop: observe locally, decide the next step (`converge.rs`), do it,
//! report. PostgreSQL runs as this process's child.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::lease::unix_now_ms;
use crate::member::{Desired, DesiredRole, Upstream};
use crate::postgres::{
    quote::pgpass_field, write_private_file, Conn, ConnParams, PgError, PostgresProcess, Programs,
    RunAs, Shutdown,
};

use super::config::{AgentConfig, ApplicationConfig, REPLICATION_USER, SUPERUSER};
use super::converge::{
    next_step, release_lease, Repair, Step, Unresponsive, UpstreamCheck, UNRESPONSIVE_FENCE_MS,
};
use super::datadir;
use super::error::AgentError;
use super::shared::Shared;

mod data;
mod facts;
mod recovery;
mod server;
mod upkeep;

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
    /// The step that failed last, how often in a row, and when it may be tried again
    /// (converge's backoff).
    failed_step: Option<&'static str>,
    step_failures: u32,
    retry_not_before_ms: u64,
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
    /// While the server runs in recovery: its postmaster's pid and the highest timeline it was
    /// seen on (`observe::steady_timeline`).
    standby_timeline: Option<(u32, u32)>,
    /// Where this standby's replay was paused (`replayPaused`), for the recovery target that
    /// keeps it there across a restart.
    paused_at: Option<crate::member::Lsn>,
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
            failed_step: None,
            step_failures: 0,
            retry_not_before_ms: 0,
            repair: Repair::default(),
            next_slot_upkeep_ms: 0,
            unresponsive: Unresponsive::default(),
            upstream_check: UpstreamCheck::NotChecked,
            upstream_checked_ms: 0,
            application_ensured: None,
            application_retry_ms: 0,
            standby_timeline: None,
            paused_at: None,
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
        self.stop_and_release(Shutdown::Fast).await;
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
            self.stop_and_release(Shutdown::Immediate).await;
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
            if self.failed_step == Some(step.name()) {
                self.step_failures += 1;
            } else {
                (self.failed_step, self.step_failures) = (Some(step.name()), 1);
            }
            let retry_in = crate::instance::converge::retry_backoff_ms(self.step_failures);
            self.retry_not_before_ms = unix_now_ms() + retry_in;
            error!(member = %self.cfg.member, step = ?step, error = %text, failures = self.step_failures, retry_in_ms = retry_in, "step failed");
            self.shared.update_report(|r| r.last_error = Some(text));
            self.backoff();
        } else if acted && self.failed_step == Some(step.name()) {
            (self.failed_step, self.step_failures) = (None, 0);
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

    /// What a refused superuser password means: data kept from a cluster whose credentials were
    /// replaced since.
    fn password_mismatch(&self) -> String {
        format!(
            "the superuser password in {} does not open this data directory: the data was made with other credentials; restore the password that belongs to it (Kubernetes: the Secret <cluster>-superuser of the cluster that made the volume) and the member starts as it was",
            self.cfg.superuser_password_file.display()
        )
    }

    async fn act(&mut self, step: &Step, desired: &Desired) -> Result<(), AgentError> {
        match step {
            Step::AcquireLease => self.acquire_lease().await,
            Step::Bootstrap => self.bootstrap(desired).await,
            Step::Clone => self.clone_from_upstream(desired).await,
            Step::Rewind => self.rewind(desired).await,
            Step::Configure => self.configure(desired, true).await,
            Step::Reload => {
                info!(member = %self.cfg.member, "reloading the configuration, as asked");
                self.shared.set_activity("reloading the configuration");
                self.configure(desired, true).await
            }
            Step::Start => self.start(&desired.role).await,
            Step::Promote => {
                // one step, not two passes: the primary's configuration, then the promotion
                if self.configured_role().as_ref() != Some(&desired.role)
                    || self.configured_parameters().as_ref() != Some(&desired.parameters)
                {
                    // a failover does not wait for the reload to be read: the promotion takes
                    // longer than that, and the next look reports what is pending
                    self.configure(desired, false).await?;
                }
                self.promote().await?;
                // the brain hears of it now, not after this pass's upkeep
                let applied = desired.parameters.clone();
                self.shared.update_report(|r| {
                    r.role = crate::member::ActualRole::Primary;
                    r.applied_parameters = Some(applied);
                });
                Ok(())
            }
            Step::EnsureApplication => self.ensure_application().await,
            Step::Stop => {
                self.stop_and_release(Shutdown::Fast).await;
                Ok(())
            }
            Step::Restart => {
                let pending = self.shared.report().pending_restart.join(", ");
                if pending.is_empty() {
                    // converge restarts a server started with a paused standby's recovery
                    // target (resuming there would end recovery), and a requested restart
                    info!(member = %self.cfg.member, reason = %desired.reason, "restarting PostgreSQL");
                    self.shared.set_activity("restarting PostgreSQL");
                } else {
                    info!(member = %self.cfg.member, %pending, "restarting PostgreSQL to apply settings that wait for a restart");
                    self.shared
                        .set_activity(format!("restarting to apply {pending}"));
                }
                self.stop_server(Shutdown::Fast).await;
                self.start(&desired.role).await
            }
            Step::PauseReplay => {
                let delay_ms = match &desired.role {
                    DesiredRole::Standby { apply_delay_ms, .. } => *apply_delay_ms,
                    _ => 0,
                };
                self.shared.set_activity("pausing replay");
                let conn = self.connection().await.ok_or_else(|| {
                    AgentError::Step("PostgreSQL does not answer: cannot pause replay".into())
                })?;
                // a delayed standby pauses once its current delay wait ends
                let at = conn
                    .pause_replay(Duration::from_millis(delay_ms) + Duration::from_secs(10))
                    .await?;
                info!(member = %self.cfg.member, lsn = %at, "replay paused");
                self.paused_at = Some(at);
                self.configure(desired, true).await
            }
            Step::ResumeReplay => {
                let conn = self.connection().await.ok_or_else(|| {
                    AgentError::Step("PostgreSQL does not answer: cannot resume replay".into())
                })?;
                conn.resume_replay().await?;
                self.paused_at = None;
                info!(member = %self.cfg.member, "replay resumed");
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

    pub fn has_server(&self) -> bool {
        self.server.is_some()
    }
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
