//! The direct client: one long-lived connection straight to the PostgreSQL port of the member that
//! was primary when the load started, as an application pool would hold it. It never reconnects:
//! when the connection breaks it stops and says why. Every acknowledged commit goes into the
//! shared ledger (so loss is checked like any other) and into its own log with the moment the
//! commit was sent, to compare with the primary of record at that moment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

use super::watch::Watch;
use super::DIRECT_WRITER;
use crate::ledger::{conninfo, Ack, Ledger};

#[derive(Clone, Copy, Debug)]
pub struct DirectAck {
    pub seq: i64,
    pub sent: Instant,
    pub acked: Instant,
}

pub struct DirectLog {
    /// The member whose port the client is connected to.
    pub member: String,
    pub acks: Mutex<Vec<DirectAck>>,
    /// When and why the connection ended.
    pub ended: Mutex<Option<(Instant, String)>>,
}

impl DirectLog {
    pub fn new(member: &str) -> DirectLog {
        DirectLog {
            member: member.to_string(),
            acks: Mutex::new(Vec::new()),
            ended: Mutex::new(None),
        }
    }

    pub fn acks(&self) -> Vec<DirectAck> {
        self.acks.lock().map(|a| a.clone()).unwrap_or_default()
    }

    pub fn ended(&self) -> Option<(Instant, String)> {
        self.ended.lock().ok().and_then(|e| e.clone())
    }

    pub(super) fn end(&self, why: String) {
        if let Ok(mut e) = self.ended.lock() {
            e.get_or_insert((Instant::now(), why));
        }
    }

    /// Acknowledgements sent after the watcher had already seen another member as the primary
    /// of record (a sample taken before the commit was sent): commits a member acknowledged when
    /// it was no longer the primary.
    pub fn non_primary_acks(&self, watch: &Watch) -> Vec<(DirectAck, String)> {
        self.acks()
            .into_iter()
            .filter_map(|a| {
                let sample = watch.last_before(a.sent)?;
                let primary = sample.primary?;
                (primary != self.member).then_some((a, primary))
            })
            .collect()
    }
}

/// Insert `(DIRECT_WRITER, seq)` rows one commit at a time over one connection to `port`.
pub async fn run(
    port: u16,
    password: String,
    ledger: Arc<Ledger>,
    log: Arc<DirectLog>,
    stop: Arc<AtomicBool>,
) {
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&conninfo(port, &password), NoTls),
    )
    .await;
    let client = match connected {
        Ok(Ok((client, conn))) => {
            tokio::spawn(conn);
            client
        }
        Ok(Err(e)) => return log.end(format!("connect to {port}: {e}")),
        Err(_) => return log.end(format!("connect to {port}: timed out")),
    };
    let mut seq: i64 = 0;
    while !stop.load(Ordering::SeqCst) {
        seq += 1;
        let sent = Instant::now();
        match client
            .execute(
                "INSERT INTO ledger (writer, seq) VALUES ($1, $2)",
                &[&DIRECT_WRITER, &seq],
            )
            .await
        {
            Ok(_) => {
                let acked = Instant::now();
                if let Ok(mut acks) = ledger.acks.lock() {
                    acks.push(Ack {
                        writer: DIRECT_WRITER,
                        seq,
                        at: acked,
                    });
                }
                if let Ok(mut acks) = log.acks.lock() {
                    acks.push(DirectAck { seq, sent, acked });
                }
            }
            Err(e) => return log.end(format!("insert {seq}: {e}")),
        }
    }
    log.end("stopped by the harness".into());
}
