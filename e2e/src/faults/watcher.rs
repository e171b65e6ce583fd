//! The watcher task: every ~50 ms it reads `status.json` and asks every member
//! `pg_is_in_recovery()`, and every 200 ms whether its postmaster accepts a new connection.
//!
//! The question goes over a session the watcher keeps (reconnecting, bounded by 300 ms, when it
//! breaks): a long-lived session is what a pooled client writes through, and it goes on answering
//! while the postmaster itself is stopped, so it sees what such a client sees. Whether new clients
//! get in is asked separately and cheaply: an SSLRequest, which the server answers before any
//! authentication.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::{JoinHandle, JoinSet};
use tokio_postgres::{Client, NoTls};

use super::watch::{Sample, Watch};
use super::{files, Spec};

pub const EVERY: Duration = Duration::from_millis(50);
/// Every this many samples, also check that each postmaster accepts connections.
const ACCEPT_EVERY: u64 = 4;
/// Bound on connecting to a member and on one question.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

pub struct Watcher {
    pub watch: Arc<Watch>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Watcher {
    pub fn start(dir: &Path, password: &str, spec: &Spec) -> Watcher {
        let watch = Arc::new(Watch::default());
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(
            dir.to_path_buf(),
            password.to_string(),
            spec.clone(),
            watch.clone(),
            stop.clone(),
        ));
        Watcher { watch, stop, task }
    }

    pub async fn stop(self) -> Arc<Watch> {
        self.stop.store(true, Ordering::SeqCst);
        let mut task = self.task;
        // every probe is bounded, so this ends within a second; never leave it running anyway
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
        self.watch
    }
}

/// One probe's result for one member.
struct Answer {
    name: String,
    client: Option<Client>,
    in_recovery: Option<bool>,
    accepting: Option<bool>,
}

async fn run(dir: PathBuf, password: String, spec: Spec, watch: Arc<Watch>, stop: Arc<AtomicBool>) {
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clients: BTreeMap<String, Option<Client>> = BTreeMap::new();
    let mut accepting: BTreeMap<String, bool> = BTreeMap::new();
    let mut tick: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        every.tick().await;
        let mut ports = files::postgres_ports(&dir);
        let at = Instant::now();
        let status = files::status(&dir);
        // the members the cluster has now: the state file keeps a removed member's ports
        if let Some(declared) = status.as_ref().and_then(files::declared_members) {
            ports.retain(|name, _| declared.contains(name));
        }
        if let Some(s) = &status {
            remember_conditions(&watch, s);
        }
        let check_accept = tick.is_multiple_of(ACCEPT_EVERY);
        tick += 1;
        let mut probes = JoinSet::new();
        for (name, port) in &ports {
            let client = clients.remove(name).flatten();
            let (password, name, port) = (password.clone(), name.clone(), *port);
            probes.spawn(async move {
                let (client, in_recovery) = probe(client, port, &password).await;
                let accepting = if check_accept {
                    Some(accepts(port).await)
                } else {
                    None
                };
                Answer {
                    name,
                    client,
                    in_recovery,
                    accepting,
                }
            });
        }
        let (mut writable, mut answered) = (Vec::new(), Vec::new());
        while let Some(Ok(a)) = probes.join_next().await {
            if let Some(r) = a.in_recovery {
                answered.push(a.name.clone());
                if !r {
                    writable.push(a.name.clone());
                }
            }
            if let Some(ok) = a.accepting {
                accepting.insert(a.name.clone(), ok);
            }
            clients.insert(a.name, a.client);
        }
        writable.sort();
        answered.sort();
        let accepting_now: Vec<String> = accepting
            .iter()
            .filter(|(n, ok)| **ok && ports.contains_key(*n))
            .map(|(n, _)| n.clone())
            .collect();
        let primary = status.as_ref().and_then(files::current_primary);
        let all = ports.len();
        let settled = status.as_ref().is_some_and(|s| files::settled(s, &spec))
            && answered.len() == all
            && accepting_now.len() == all
            && primary.as_ref().is_some_and(|p| writable == [p.clone()]);
        let sample = Sample {
            at,
            primary,
            target: status
                .as_ref()
                .and_then(|s| s["targetPrimary"].as_str().map(String::from)),
            writable,
            answered,
            accepting: accepting_now,
            settled,
        };
        if let Ok(mut samples) = watch.samples.lock() {
            samples.push(sample);
        }
    }
}

fn remember_conditions(watch: &Watch, status: &Value) {
    let Ok(mut seen) = watch.conditions.lock() else {
        return;
    };
    for c in status["conditions"].as_array().into_iter().flatten() {
        let key = (
            c["type"].as_str().unwrap_or_default().to_string(),
            c["status"].as_str().unwrap_or_default().to_string(),
        );
        let message = c["message"].as_str().unwrap_or_default().to_string();
        seen.entry(key).or_insert(message);
    }
}

/// `pg_is_in_recovery()` over `client` (or a new connection); the client back when it still works.
async fn probe(
    client: Option<Client>,
    port: u16,
    password: &str,
) -> (Option<Client>, Option<bool>) {
    let client = match client.filter(|c| !c.is_closed()) {
        Some(c) => c,
        None => match connect(port, password).await {
            Some(c) => c,
            None => return (None, None),
        },
    };
    let asked = tokio::time::timeout(
        PROBE_TIMEOUT,
        client.query_one("SELECT pg_is_in_recovery()", &[]),
    )
    .await;
    match asked {
        Ok(Ok(row)) => (Some(client), row.try_get::<_, bool>(0).ok()),
        _ => (None, None),
    }
}

async fn connect(port: u16, password: &str) -> Option<Client> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .user("postgres")
        .password(password)
        .dbname("postgres")
        .application_name("pgreplica-faults-watch")
        .connect_timeout(PROBE_TIMEOUT);
    let (client, conn) = tokio::time::timeout(PROBE_TIMEOUT, cfg.connect(NoTls))
        .await
        .ok()?
        .ok()?;
    tokio::spawn(conn);
    Some(client)
}

/// The SSLRequest code (protocol 1234.5679) in an 8-byte packet.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Does the server at `port` take a new connection (answer an SSLRequest) within the bound?
async fn accepts(port: u16) -> bool {
    let ask = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(&SSL_REQUEST).await?;
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer).await?;
        Ok::<bool, std::io::Error>(matches!(answer[0], b'N' | b'S'))
    };
    matches!(tokio::time::timeout(PROBE_TIMEOUT, ask).await, Ok(Ok(true)))
}
