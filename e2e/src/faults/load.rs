//! The load of a case: the watcher, four writers through the rw endpoint, and the direct client.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use super::case::Case;
use super::direct::{self, DirectLog};
use super::watch::Watch;
use super::watcher::Watcher;
use super::{files, DIRECT_WRITER};
use crate::ledger::{conninfo, writer, Ack, Ledger};

pub const WRITERS: i32 = 4;

/// One statement over a new connection, both bounded.
pub async fn sql(
    port: u16,
    password: &str,
    query: &str,
    timeout: Duration,
) -> Result<Vec<tokio_postgres::Row>, String> {
    let work = async {
        let (client, conn) = tokio_postgres::connect(&conninfo(port, password), NoTls)
            .await
            .map_err(|e| format!("connect {port}: {e}"))?;
        tokio::spawn(conn);
        client
            .query(query, &[])
            .await
            .map_err(|e| format!("{query} on {port}: {e}"))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("{query} on {port}: no answer within {timeout:?}"))?
}

pub struct Load {
    pub ledger: Arc<Ledger>,
    pub direct: Arc<DirectLog>,
    watcher: Watcher,
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<()>>,
    direct_task: JoinHandle<()>,
}

/// What a stopped load leaves: every acknowledged commit and what the watcher saw.
pub struct Stopped {
    pub acks: Vec<Ack>,
    pub direct: Arc<DirectLog>,
    pub watch: Arc<Watch>,
    pub writer_errors: usize,
}

impl Load {
    /// Create the ledger table through rw, start the watcher, the writers and the direct client
    /// on the current primary's port, and wait until all of them have commits acknowledged.
    pub async fn start(case: &Case) -> Result<Load, String> {
        let (dir, rw_port, password) = (case.dir(), case.cluster.rw_port, case.password.as_str());
        sql(
            rw_port,
            password,
            "CREATE TABLE IF NOT EXISTS ledger (writer int, seq bigint, \
             at timestamptz DEFAULT now(), PRIMARY KEY (writer, seq))",
            Duration::from_secs(30),
        )
        .await?;
        let status = files::status(dir).ok_or("no status.json")?;
        let primary = files::current_primary(&status).ok_or("no primary of record")?;
        let port = *files::postgres_ports(dir)
            .get(&primary)
            .ok_or_else(|| format!("no port for {primary}"))?;
        let watcher = Watcher::start(dir, password, &case.spec);
        let ledger = Arc::new(Ledger::default());
        let stop = Arc::new(AtomicBool::new(false));
        let writers = (0..WRITERS)
            .map(|id| {
                tokio::spawn(writer(
                    id,
                    rw_port,
                    password.to_string(),
                    ledger.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        let log = Arc::new(DirectLog::new(&primary));
        let direct_task = tokio::spawn(direct::run(
            port,
            password.to_string(),
            ledger.clone(),
            log.clone(),
            stop.clone(),
        ));
        let load = Load {
            ledger,
            direct: log,
            watcher,
            stop,
            writers,
            direct_task,
        };
        load.warm_up(100, 20, Duration::from_secs(60)).await?;
        Ok(load)
    }

    async fn warm_up(&self, rw: usize, direct: usize, timeout: Duration) -> Result<(), String> {
        let outcome = crate::poll::until(timeout, || async {
            let (r, d) = (self.rw_acks_after(None).len(), self.direct.acks().len());
            if r >= rw && d >= direct {
                return Some(Ok(()));
            }
            self.direct
                .ended()
                .map(|(_, why)| Err(format!("the direct client stopped while warming up: {why}")))
        })
        .await;
        outcome.unwrap_or_else(|| {
            let (r, d) = (self.rw_acks_after(None).len(), self.direct.acks().len());
            Err(format!(
                "warm-up: {r} commits through rw and {d} direct within {timeout:?}"
            ))
        })
    }

    /// What the watcher has seen so far.
    pub fn watch(&self) -> Arc<Watch> {
        self.watcher.watch.clone()
    }

    /// Commits acknowledged through rw (not the direct client) after `t`.
    pub fn rw_acks_after(&self, t: Option<Instant>) -> Vec<Ack> {
        self.ledger
            .acks()
            .into_iter()
            .filter(|a| a.writer != DIRECT_WRITER && t.is_none_or(|t| a.at > t))
            .collect()
    }

    /// Wait until `n` commits were acknowledged through rw after `t`; when the n-th was.
    pub async fn until_rw_acks_after(
        &self,
        t: Instant,
        n: usize,
        timeout: Duration,
    ) -> Result<Instant, String> {
        let nth = crate::poll::until(timeout, || async {
            let mut after: Vec<Instant> =
                self.rw_acks_after(Some(t)).iter().map(|a| a.at).collect();
            after.sort();
            after.get(n.saturating_sub(1)).copied()
        })
        .await;
        nth.ok_or_else(|| {
            format!(
                "only {} commits acknowledged through rw within {timeout:?}",
                self.rw_acks_after(Some(t)).len()
            )
        })
    }

    /// Stop everything. A writer stuck on a commit that never returns is abandoned (its commit
    /// was never acknowledged, so it is not in the ledger); so is the direct client.
    pub async fn stop(self) -> Stopped {
        self.stop.store(true, Ordering::SeqCst);
        let mut writer_errors = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for mut t in self.writers {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
            }
        }
        let mut direct_task = self.direct_task;
        let finished = tokio::time::timeout(Duration::from_secs(2), &mut direct_task)
            .await
            .is_ok();
        if !finished {
            direct_task.abort();
            self.direct
                .end("still waiting for a commit when the load stopped".into());
        }
        if let Ok(errors) = self.ledger.errors.lock() {
            writer_errors = errors.len();
        }
        let watch = self.watcher.stop().await;
        Stopped {
            acks: self.ledger.acks(),
            direct: self.direct,
            watch,
            writer_errors,
        }
    }
}
