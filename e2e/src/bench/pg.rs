//! SQL helpers, writers with a ledger of acknowledged commits, and pgbench.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use crate::ledger::{Ack, Ledger};

/// One server on loopback.
pub fn conninfo(port: u16, password: &str) -> String {
    format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2 password='{}'",
        password.replace('\'', "\\'")
    )
}

/// Any of `ports` that accepts writes (libpq's `target_session_attrs=read-write`).
pub fn read_write_conninfo(ports: &[u16], password: &str) -> String {
    let hosts = vec!["127.0.0.1"; ports.len()].join(",");
    let ports = ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "host={hosts} port={ports} user=postgres dbname=postgres connect_timeout=2 \
         target_session_attrs=read-write password='{}'",
        password.replace('\'', "\\'")
    )
}

pub async fn connect(conninfo: &str) -> Result<Client, String> {
    let (client, conn) = tokio::time::timeout(
        Duration::from_secs(3),
        tokio_postgres::connect(conninfo, NoTls),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    tokio::spawn(conn);
    Ok(client)
}

pub async fn sql(conninfo: &str, query: &str) -> Result<Vec<tokio_postgres::Row>, String> {
    let client = connect(conninfo).await?;
    tokio::time::timeout(Duration::from_secs(30), client.query(query, &[]))
        .await
        .map_err(|_| format!("{query}: timed out"))?
        .map_err(|e| format!("{query}: {e}"))
}

pub async fn batch(conninfo: &str, query: &str) -> Result<(), String> {
    let client = connect(conninfo).await?;
    client
        .batch_execute(query)
        .await
        .map_err(|e| format!("{query}: {e}"))
}

/// `Some(true)` when the server is a standby, `Some(false)` a primary, `None` unreachable.
pub async fn in_recovery(port: u16, password: &str) -> Option<bool> {
    let rows = sql(&conninfo(port, password), "SELECT pg_is_in_recovery()")
        .await
        .ok()?;
    rows.first().map(|r| r.get::<_, bool>(0))
}

/// Is `member` streaming from the primary at `primary_port` (by application_name)?
pub async fn streaming_on(primary_port: u16, password: &str, member: &str) -> bool {
    let q = format!(
        "SELECT 1 FROM pg_stat_replication WHERE application_name = '{member}' AND state = 'streaming'"
    );
    sql(&conninfo(primary_port, password), &q)
        .await
        .is_ok_and(|r| !r.is_empty())
}

/// A writer: single-row commits through `conninfo`, reconnecting after errors; only commits whose
/// acknowledgement arrived go into the ledger.
pub async fn writer(
    id: i32,
    conninfo: String,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    errors: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut seq: i64 = 0;
    while !stop.load(Ordering::SeqCst) {
        let client = match connect(&conninfo).await {
            Ok(c) => c,
            Err(_) => {
                errors.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        while !stop.load(Ordering::SeqCst) {
            seq += 1;
            let res = tokio::time::timeout(
                Duration::from_secs(5),
                client.execute(
                    "INSERT INTO ledger (writer, seq) VALUES ($1, $2)",
                    &[&id, &seq],
                ),
            )
            .await;
            match res {
                Ok(Ok(_)) => {
                    if let Ok(mut acks) = ledger.acks.lock() {
                        acks.push(Ack {
                            writer: id,
                            seq,
                            at: Instant::now(),
                        });
                    }
                }
                _ => {
                    errors.fetch_add(1, Ordering::SeqCst);
                    break;
                }
            }
        }
    }
}

/// Several writers running until dropped/stopped.
pub struct Load {
    pub ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    pub errors: Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(conninfo: &str, writers: i32, first_id: i32) -> Load {
        let ledger = Arc::new(Ledger::default());
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tasks = (0..writers)
            .map(|i| {
                tokio::spawn(writer(
                    first_id + i,
                    conninfo.to_string(),
                    ledger.clone(),
                    stop.clone(),
                    errors.clone(),
                ))
            })
            .collect();
        Load {
            ledger,
            stop,
            errors,
            tasks,
        }
    }

    pub fn acked(&self) -> usize {
        self.ledger.acks.lock().map(|a| a.len()).unwrap_or(0)
    }

    /// Wait until `n` commits were acknowledged (warm-up).
    pub async fn until_acked(&self, n: usize, timeout: Duration) -> Result<(), String> {
        crate::poll::until(timeout, || async { (self.acked() >= n).then_some(()) })
            .await
            .ok_or_else(|| format!("only {} commits acknowledged in {timeout:?}", self.acked()))
    }

    /// The first acknowledgement at or after `after`.
    /// (The acknowledgement's own time, not the time it was noticed.)
    pub async fn first_ack_after(&self, after: Instant, timeout: Duration) -> Option<Instant> {
        crate::poll::until(timeout, || async {
            self.ledger
                .acks()
                .iter()
                .filter(|a| a.at >= after)
                .map(|a| a.at)
                .min()
        })
        .await
    }

    pub async fn stop(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        self.ledger.acks()
    }
}

/// Acknowledged commits missing on the server behind `conninfo`.
pub async fn lost_on(conninfo: &str, acks: &[Ack]) -> Result<usize, String> {
    let rows = sql(conninfo, "SELECT writer, seq FROM ledger").await?;
    let present: std::collections::HashSet<(i32, i64)> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(acks
        .iter()
        .filter(|a| !present.contains(&(a.writer, a.seq)))
        .count())
}

pub use crate::ledger::longest_gap;

/// pgbench against one server; returns TPS (excluding connections).
pub fn pgbench(
    port: u16,
    password: &str,
    args: &[&str],
    options: Option<&str>,
) -> Result<f64, String> {
    let mut cmd = std::process::Command::new(super::pg_bin("pgbench"));
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(args)
        .arg("postgres")
        .env("PGPASSWORD", password);
    if let Some(o) = options {
        cmd.env("PGOPTIONS", o);
    }
    let out = cmd.output().map_err(|e| format!("pgbench: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!(
            "pgbench {args:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0))
}

/// Size of the database `postgres` in bytes.
/// Every standby streaming from the primary at `conninfo` (at least `standbys` of them) has
/// replayed all the primary has written.
pub async fn standbys_caught_up(conninfo: &str, standbys: i64) -> bool {
    sql(
        conninfo,
        &format!(
            "SELECT count(*) >= {standbys} AND bool_and(replay_lsn >= pg_current_wal_lsn()) \
             FROM pg_stat_replication"
        ),
    )
    .await
    .ok()
    .and_then(|rows| rows.first().and_then(|r| r.get::<_, Option<bool>>(0)))
    .unwrap_or(false)
}

/// A delayed standby applies transactions committed in the last `window` (its delay has been
/// reached under load).
pub async fn replaying_recent(conninfo: &str, window: Duration) -> bool {
    sql(
        conninfo,
        &format!(
            "SELECT coalesce(pg_last_xact_replay_timestamp() > now() - interval '{} ms', false)",
            window.as_millis()
        ),
    )
    .await
    .ok()
    .and_then(|rows| rows.first().map(|r| r.get::<_, bool>(0)))
    .unwrap_or(false)
}

pub async fn db_size(conninfo: &str) -> Result<i64, String> {
    let rows = sql(conninfo, "SELECT pg_database_size('postgres')").await?;
    Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0))
}

/// A bare `pg_basebackup -X stream --checkpoint=fast` from `port` into a fresh directory; seconds.
pub fn bare_basebackup(port: u16, user: &str, password: &str) -> Result<f64, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let target = tmp.path().join("copy");
    let began = Instant::now();
    let out = std::process::Command::new(super::pg_bin("pg_basebackup"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user])
        .args(["-X", "stream", "--checkpoint=fast", "-D"])
        .arg(&target)
        .env("PGPASSWORD", password)
        .output()
        .map_err(|e| format!("pg_basebackup: {e}"))?;
    let took = began.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(took)
}
