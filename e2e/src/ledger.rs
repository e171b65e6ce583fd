//! Writers that record every acknowledged commit, and the check that all of them survived.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

/// One acknowledged commit: which writer, its sequence number, when the ack arrived.
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    pub writer: i32,
    pub seq: i64,
    pub at: Instant,
}

#[derive(Default)]
pub struct Ledger {
    pub acks: Mutex<Vec<Ack>>,
    pub errors: Mutex<Vec<String>>,
}

impl Ledger {
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// The longest time without any acknowledged commit between `from` and `to`, and when it
    /// ended (the user-visible write outage).
    pub fn longest_gap_between(&self, from: Instant, to: Instant) -> Option<(Duration, Instant)> {
        longest_gap(&self.acks(), from, to)
    }
}

/// The longest stretch without any acknowledged commit in (`from`, `to`], and when it ended.
pub fn longest_gap(acks: &[Ack], from: Instant, to: Instant) -> Option<(Duration, Instant)> {
    let mut times: Vec<Instant> = acks.iter().map(|a| a.at).collect();
    times.sort();
    let mut prev = times
        .iter()
        .rev()
        .find(|t| **t <= from)
        .copied()
        .unwrap_or(from);
    let mut best: Option<(Duration, Instant)> = None;
    for t in times.into_iter().filter(|t| *t > from && *t <= to) {
        let gap = t - prev;
        if best.is_none_or(|(g, _)| gap > g) {
            best = Some((gap, t));
        }
        prev = t;
    }
    best
}

pub fn conninfo(port: u16, password: &str) -> String {
    format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=3 password='{}'",
        password.replace('\'', "\\'")
    )
}

/// At most one connection attempt per this period while an endpoint refuses (a failover).
const RETRY_EVERY: Duration = Duration::from_millis(20);
/// The reader's rate: it measures that reads work, not how many fit.
const READ_EVERY: Duration = Duration::from_millis(20);

/// A ticker that never bursts to catch up after a long pause (a long-lived connection).
fn paced(every: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// A writer: insert (writer, seq) rows one commit at a time through `port`, reconnecting after
/// errors. Only commits whose acknowledgement arrived go into the ledger.
pub async fn writer(
    id: i32,
    port: u16,
    password: String,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
) {
    let mut seq: i64 = 0;
    // connection attempts are paced, not slept on: at most one per RETRY_EVERY
    let mut attempts = paced(RETRY_EVERY);
    while !stop.load(Ordering::SeqCst) {
        attempts.tick().await;
        let client = match tokio_postgres::connect(&conninfo(port, &password), NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                client
            }
            Err(e) => {
                record_error(&ledger, format!("writer {id} connect: {e}"));
                continue;
            }
        };
        while !stop.load(Ordering::SeqCst) {
            seq += 1;
            match client
                .execute(
                    "INSERT INTO ledger (writer, seq) VALUES ($1, $2)",
                    &[&id, &seq],
                )
                .await
            {
                Ok(_) => {
                    if let Ok(mut acks) = ledger.acks.lock() {
                        acks.push(Ack {
                            writer: id,
                            seq,
                            at: Instant::now(),
                        });
                    }
                }
                Err(e) => {
                    record_error(&ledger, format!("writer {id} insert {seq}: {e}"));
                    break;
                }
            }
        }
    }
}

/// A reader on the read-only endpoint; counts successful reads.
pub async fn reader(
    port: u16,
    password: String,
    stop: Arc<AtomicBool>,
    reads: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut attempts = paced(RETRY_EVERY);
    let mut reads_due = paced(READ_EVERY);
    while !stop.load(Ordering::SeqCst) {
        attempts.tick().await;
        if let Ok((client, conn)) = tokio_postgres::connect(&conninfo(port, &password), NoTls).await
        {
            tokio::spawn(conn);
            while !stop.load(Ordering::SeqCst) {
                reads_due.tick().await;
                if client
                    .query_one("SELECT count(*) FROM ledger", &[])
                    .await
                    .is_err()
                {
                    break;
                }
                reads.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

fn record_error(ledger: &Ledger, e: String) {
    if let Ok(mut errors) = ledger.errors.lock() {
        errors.push(e);
    }
}

/// Acknowledged commits missing on the server at `port`.
pub async fn missing_on(
    port: u16,
    password: &str,
    acks: &[Ack],
) -> Result<Vec<(i32, i64)>, String> {
    let (client, conn) = tokio_postgres::connect(&conninfo(port, password), NoTls)
        .await
        .map_err(|e| format!("connect to {port}: {e}"))?;
    tokio::spawn(conn);
    let rows = client
        .query("SELECT writer, seq FROM ledger", &[])
        .await
        .map_err(|e| format!("read ledger on {port}: {e}"))?;
    let present: std::collections::HashSet<(i32, i64)> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(acks
        .iter()
        .map(|a| (a.writer, a.seq))
        .filter(|k| !present.contains(k))
        .collect())
}
