//! Making a data directory: initdb, a clone from the upstream (old data moved aside, deleted only
//! once the new copy runs), a rewind.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{info, warn};

use crate::lease::unix_now_ms;
use crate::member::{ActualRole, Desired, DesiredRole};
use crate::postgres::{write_private_file, BasebackupOpts, Password, RewindOutcome};

use crate::instance::config::{REPLICATION_USER, SUPERUSER};
use crate::instance::converge::UpstreamCheck;
use crate::instance::error::AgentError;

use super::Agent;

impl Agent {
    pub(super) async fn bootstrap(&mut self, desired: &Desired) -> Result<(), AgentError> {
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
        self.write_config(desired)?;
        self.start(&desired.role).await?;
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

    pub(super) async fn clone_from_upstream(
        &mut self,
        desired: &Desired,
    ) -> Result<(), AgentError> {
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
        self.write_config(desired)?;
        self.start(&desired.role).await?;
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

    pub(super) async fn rewind(&mut self, desired: &Desired) -> Result<(), AgentError> {
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
                    self.write_config(desired)?;
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
