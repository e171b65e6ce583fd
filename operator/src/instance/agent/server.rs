//! The server and the lease: configuration, start, promotion, stop, certificate reloads.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::lease::{unix_now_ms, Lease};
use crate::member::{Desired, DesiredRole, Lsn};
use crate::postgres::{config as pgconfig, write_private_file, Shutdown};

use crate::instance::conf_files::{
    configured_parameters, configured_paused_at, configured_role, has_guard, paused_conf,
    paused_guard, render_conf, render_hba, with_include, OWNED_CONF,
};
use crate::instance::datadir;
use crate::instance::error::AgentError;

use crate::instance::converge::stuck_after_ms;

use super::recovery::NotReady;
use super::{Agent, START_TIMEOUT, STOP_PATIENCE};

/// How long a reload may take to reach the agent's own session.
const RELOAD_PATIENCE: Duration = Duration::from_secs(2);

impl Agent {
    pub(super) async fn acquire_lease(&mut self) -> Result<(), AgentError> {
        // the watchdog may have fenced since this pass looked (it marks the loss before it
        // releases the lease): a member whose data is gone never takes the lease back
        if let Some(reason) = self.shared.data_lost() {
            return Err(AgentError::Step(format!(
                "not taking the lease: data directory lost ({reason})"
            )));
        }
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

    pub(super) async fn release_lease(&mut self) {
        if self.shared.holds_lease.swap(false, Ordering::SeqCst) {
            self.shared.update_report(|r| r.holds_lease = false);
            match self.shared.lease.release(&self.cfg.member).await {
                Ok(()) => info!(member = %self.cfg.member, "released the lease"),
                Err(e) => {
                    warn!(member = %self.cfg.member, error = %e, "could not release the lease")
                }
            }
        }
    }

    pub(super) fn write_config(&self, desired: &Desired) -> Result<(), AgentError> {
        let data = self.data();
        let mut conf = render_conf(
            &self.cfg,
            &desired.role,
            &desired.parameters,
            &self.cfg.passfile(),
        )?;
        if matches!(
            desired.role,
            DesiredRole::Standby {
                replay_paused: true,
                ..
            }
        ) {
            let current = std::fs::read_to_string(data.join(OWNED_CONF)).unwrap_or_default();
            let at = self.paused_at.or(configured_paused_at(&current));
            // written for a start; kept while a server started with it runs (a reload that
            // changed it would only make PostgreSQL log the file as containing errors)
            let guard = self.server.is_none() || has_guard(&current);
            conf.push_str(&paused_conf(at, guard));
        }
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
        if matches!(desired.role, DesiredRole::Standby { .. }) && self.server.is_none() {
            pgconfig::write_standby_signal(&data, self.run_as)?;
        }
        Ok(())
    }

    /// The role our configuration file describes now.
    pub(super) fn configured_role(&self) -> Option<DesiredRole> {
        std::fs::read_to_string(self.data().join(OWNED_CONF))
            .ok()
            .and_then(|c| configured_role(&c))
    }

    /// The parameters `pgreplica.conf` was written with (None: unknown).
    pub(super) fn configured_parameters(&self) -> Option<BTreeMap<String, String>> {
        std::fs::read_to_string(self.data().join(OWNED_CONF))
            .ok()
            .and_then(|c| configured_parameters(&c))
    }

    /// Write the configuration and have a running server reload it. With `wait_read`, wait until
    /// the agent's session has read the files and report what waits for a restart and which
    /// parameters are read, so the brain never takes "nothing pending" from a server that has not
    /// read them yet; a promotion does not wait (it takes longer than the reload, and the next
    /// look reports what is pending).
    pub(super) async fn configure(
        &mut self,
        desired: &Desired,
        wait_read: bool,
    ) -> Result<(), AgentError> {
        self.write_config(desired)?;
        if self.server.is_none() {
            return Ok(());
        }
        let Some(conn) = self.connection().await else {
            return Ok(());
        };
        if !wait_read {
            conn.reload().await?;
            return Ok(());
        }
        if conn.reload_and_wait(RELOAD_PATIENCE).await? {
            let pending = conn.pending_restart().await?;
            if !pending.is_empty() {
                info!(member = %self.cfg.member, pending = %pending.join(", "), "settings wait for a restart");
            }
            let now = unix_now_ms();
            self.shared.update_report(|r| {
                r.pending_restart = pending;
                r.applied_parameters = Some(desired.parameters.clone());
                r.reloaded_at_ms = Some(now);
            });
        }
        info!(member = %self.cfg.member, role = desired.role_name(), "configuration reloaded");
        Ok(())
    }

    pub(super) async fn start(&mut self, role: &DesiredRole) -> Result<(), AgentError> {
        if self.server.is_some() {
            return Err(AgentError::Step("PostgreSQL is already running".into()));
        }
        let data = self.data();
        if matches!(
            role,
            DesiredRole::Standby {
                replay_paused: true,
                ..
            }
        ) {
            // a paused standby never starts without its recovery target (the configuration was
            // written while it ran, or a crash restarts it without a Configure)
            let path = data.join(OWNED_CONF);
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if !has_guard(&current) {
                let at = self.paused_at.or(configured_paused_at(&current));
                let guarded = current + &paused_guard(at);
                write_private_file(&path, guarded.as_bytes(), self.run_as)?;
            }
        }
        self.shared.set_activity("starting PostgreSQL");
        let mut server =
            self.programs
                .start_postgres(&data, std::iter::empty::<&str>(), &self.cfg.member)?;
        let identity = datadir::identity(&data);
        self.shared.set_started_on(identity, server.pid());
        // from now on a server process exists, with every setting of its configuration applied
        self.shared.update_report(|r| {
            r.server_process = true;
            r.fenced = None;
            r.pending_restart.clear();
        });
        self.shared.set_data_lost(None);
        self.stopping = false;
        let ready = match role {
            DesiredRole::Standby { upstream, .. } => {
                self.wait_recovered(&mut server, upstream, stuck_after_ms(role))
                    .await
            }
            _ => server
                .wait_ready(&self.local_params(), START_TIMEOUT)
                .await
                .map_err(NotReady::Failed),
        };
        match ready {
            Ok(conn) => {
                let applied = self.configured_parameters();
                let now = unix_now_ms();
                self.shared.update_report(|r| {
                    r.applied_parameters = applied;
                    r.started_at_ms = Some(now);
                    r.reloaded_at_ms = Some(now);
                });
                self.conn = Some(conn);
                self.server = Some(server);
                self.started_ms = unix_now_ms();
                self.shared.update_report(|r| r.shutdown_checkpoint = None);
                info!(member = %self.cfg.member, pid = self.shared.postmaster_pid.load(Ordering::SeqCst), "PostgreSQL accepts connections");
                Ok(())
            }
            Err(NotReady::Stalled(why)) => {
                self.shared.set_started_on(None, 0);
                warn!(member = %self.cfg.member, %why, "stopping the standby to repair it");
                if let Err(e) = server.stop(Shutdown::Fast, STOP_PATIENCE).await {
                    warn!(member = %self.cfg.member, error = %e, "stopping PostgreSQL failed");
                }
                let next = if self.repair.stopped_stuck() {
                    "a new copy follows"
                } else {
                    "a rewind follows"
                };
                Err(AgentError::Step(format!("{why}; {next}")))
            }
            Err(NotReady::Failed(e)) => {
                self.shared.set_started_on(None, 0);
                let _ = server
                    .stop(Shutdown::Immediate, Duration::from_secs(5))
                    .await;
                self.crashes += 1;
                Err(e.into())
            }
        }
    }

    pub(super) async fn promote(&mut self) -> Result<(), AgentError> {
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

    pub(super) async fn stop_server(&mut self, mode: Shutdown) {
        let checkpoint = self.halt(mode).await;
        self.publish_checkpoint(checkpoint);
    }

    /// Stop the server and give up the lease, then say where it stopped: a report that shows the
    /// shutdown checkpoint never still shows the lease (a switchover's target takes it next).
    pub(super) async fn stop_and_release(&mut self, mode: Shutdown) {
        let checkpoint = self.halt(mode).await;
        self.release_lease().await;
        self.publish_checkpoint(checkpoint);
    }

    fn publish_checkpoint(&self, checkpoint: Option<Lsn>) {
        if let Some(at) = checkpoint {
            self.shared
                .update_report(|r| r.shutdown_checkpoint = Some(at));
        }
    }

    /// Stop the server; its shutdown checkpoint when it stopped cleanly.
    async fn halt(&mut self, mode: Shutdown) -> Option<Lsn> {
        let mut server = self.server.take()?;
        self.stopping = true;
        self.conn = None;
        self.shared.set_started_on(None, 0);
        self.shared.set_activity("stopping PostgreSQL");
        // the brain must not take a server on its way down for a ready one (the next look
        // fills the rest in; a receiver still connected is kept: it may still confirm commits)
        // nor for one with settings still to apply: it starts again with all of them
        self.shared.update_report(|r| {
            r.running = false;
            r.streaming_from = None;
            r.pending_restart.clear();
        });
        match server.stop(mode, STOP_PATIENCE).await {
            Ok(status) => info!(member = %self.cfg.member, %status, "PostgreSQL stopped"),
            Err(e) => warn!(member = %self.cfg.member, error = %e, "stopping PostgreSQL failed"),
        }
        self.stopping = false;
        if self.shared.data_lost().is_some() {
            return None;
        }
        match self.programs.controldata(&self.data()).await {
            Ok(cd) if cd.is_clean_shutdown() => {
                let at = cd.checkpoint_lsn;
                info!(member = %self.cfg.member, checkpoint = %at, "clean shutdown");
                Some(at)
            }
            Ok(cd) => {
                warn!(member = %self.cfg.member, state = %cd.state, "shutdown was not clean");
                None
            }
            Err(e) => {
                warn!(member = %self.cfg.member, error = %e, "cannot read control data");
                None
            }
        }
    }

    /// PostgreSQL reads its certificate at start and on reload only: when the runtime renewed the
    /// files, a running server is told to reload (the HTTPS side reads them again by itself).
    pub(super) async fn reload_renewed_certificate(&mut self) {
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use crate::instance::config::{AgentConfig, Placement};
    use crate::instance::shared::Shared;
    use crate::lease::{unix_now_ms, AnyLease, FileLease, Lease};
    use crate::postgres::Programs;

    use super::Agent;

    /// An agent of member `a` of the lab whose files live in `dir` (no server started).
    fn lab_agent(dir: &tempfile::TempDir) -> (Agent, Arc<Shared>) {
        let Ok(programs) = Programs::detect(None, None) else {
            panic!("PostgreSQL server programs are needed (apt-get install postgresql-15)");
        };
        let file = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, "secret").expect("write");
            path
        };
        let lab =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab.yaml"))
                .expect("lab.yaml");
        let spec = crate::api::validate::parse_and_validate(&lab)
            .expect("valid")
            .cluster
            .spec;
        let at = Placement {
            member_dir: dir.path().join("a"),
            listen_host: "127.0.0.1".into(),
            port: 1,
            http: "127.0.0.1:1".parse().expect("addr"),
            tls: crate::tls::AgentTlsFiles::in_dir(dir.path()),
            pg_bindir: None,
            superuser_password_file: file("su"),
            replication_password_file: file("repl"),
            app_password_file: file("app"),
            lease_file: dir.path().join("lease"),
            lease_backend: Default::default(),
            lease_duration_ms: 4_000,
            allow_networks: vec![],
        };
        let cfg = AgentConfig::for_member("lab", "a", &spec, at);
        let lease = AnyLease::File(FileLease::new(cfg.lease_file.clone()));
        let (desired, _) = tokio::sync::watch::channel(None);
        let shared = Arc::new(Shared::new("a", cfg.data_dir(), lease, 4_000, desired));
        let agent = Agent::new(cfg, shared.clone(), programs, Instant::now()).expect("agent");
        (agent, shared)
    }

    /// The watchdog fences (marks the loss, kills the server, releases the lease) between a
    /// pass's look and its AcquireLease step: the step must not take the lease back.
    #[tokio::test]
    async fn a_member_whose_data_was_lost_never_takes_the_lease() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut agent, shared) = lab_agent(&dir);

        shared.set_data_lost(Some("PG_VERSION is gone".into()));
        let refused = agent.acquire_lease().await;
        assert!(refused.is_err(), "{refused:?}");
        let record = shared.lease.read().await.expect("lease");
        assert!(record.free(unix_now_ms()), "{record:?}");
        assert!(!shared.holds_lease());

        // the same step with the data in place takes it: the refusal above is the loss's doing
        shared.set_data_lost(None);
        agent.acquire_lease().await.expect("acquire");
        assert!(shared.holds_lease());
    }

    /// The k8s e2e's first failover: the data went between a pass's look and its report, which
    /// said "unusable data" with the server still there and not fenced; the brain took -rw from
    /// a at once instead of keeping it until b had it, and kube-proxy applied b's label a second
    /// late. The report that sees the loss fences first.
    #[tokio::test]
    async fn a_report_that_sees_the_data_gone_says_fenced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut agent, shared) = lab_agent(&dir);
        let data = agent.data();
        for sub in ["base", "global", "pg_wal"] {
            std::fs::create_dir_all(data.join(sub)).expect("mkdir");
        }
        std::fs::write(data.join("PG_VERSION"), "15\n").expect("PG_VERSION");
        std::fs::write(data.join("global/pg_control"), [0u8; 64]).expect("pg_control");
        // a stand-in for the postmaster: the fence kills it
        let mut server = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let identity = crate::instance::datadir::identity(&data).expect("identity");
        shared.set_started_on(Some(identity), server.id());

        std::fs::remove_dir_all(&data).expect("rm -rf");
        agent
            .refresh_report(None, &crate::instance::converge::Step::Idle)
            .await;
        let report = shared.report();
        assert_eq!(
            report.fenced,
            Some(crate::member::FenceReason::DataDirectoryLost),
            "{report:?}"
        );
        assert!(report.data_lost().is_some(), "{report:?}");
        let status = server.wait().expect("wait");
        assert!(!status.success(), "the stand-in was not killed: {status:?}");
    }
}
