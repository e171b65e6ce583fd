//! Refresh the agent's report from the running server (queries bounded by a timeout).

use std::time::{Duration, SystemTime};

use crate::member::{ActualRole, DesiredRole, MemberReport, StandbyView};
use crate::postgres::{Conn, PgResult};

/// Facts read from a running server.
pub struct ServerView {
    pub in_recovery: bool,
    pub timeline: Option<u32>,
    pub current_lsn: Option<crate::postgres::Lsn>,
    pub received_lsn: Option<crate::postgres::Lsn>,
    pub replayed_lsn: Option<crate::postgres::Lsn>,
    pub replay_lag_seconds: Option<f64>,
    /// Host and port of the server the WAL receiver streams from, when streaming.
    pub streaming_from: Option<(Option<String>, u16)>,
    /// Host and port the WAL receiver is connected to, in any state.
    pub connected_to: Option<(Option<String>, u16)>,
    pub standbys: Vec<StandbyView>,
    /// Settings that wait for a restart.
    pub pending_restart: Vec<String>,
    /// Standby with its replay paused: when the last transaction it applied committed (unix
    /// milliseconds; the time of the look when it applied none).
    pub frozen_at_ms: Option<u64>,
    /// Paused standby: tables locked by a transaction it began replaying (reads of them wait).
    pub frozen_locks: Vec<String>,
}

pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn read(conn: &Conn) -> PgResult<ServerView> {
    let in_recovery = conn.is_in_recovery().await?;
    let pending_restart = conn.pending_restart().await?;
    let timeline = conn.timeline().await.ok();
    if !in_recovery {
        let standbys = conn
            .replication()
            .await?
            .into_iter()
            .map(|row| StandbyView {
                name: row.application_name,
                state: row.state,
                sync_state: crate::member::SyncState::from_pg(&row.sync_state),
                flush_lsn: row.flush_lsn,
                replay_lsn: row.replay_lsn,
                replay_lag_seconds: row.replay_lag_s,
            })
            .collect();
        return Ok(ServerView {
            in_recovery,
            timeline,
            current_lsn: Some(conn.current_wal_lsn().await?),
            received_lsn: None,
            replayed_lsn: None,
            replay_lag_seconds: None,
            streaming_from: None,
            connected_to: None,
            standbys,
            pending_restart,
            frozen_at_ms: None,
            frozen_locks: Vec::new(),
        });
    }
    let received = conn.receive_lsn().await?;
    let replayed = conn.replay_lsn().await?;
    let frozen_at_ms = if conn.replay_pause().await?.0 {
        // 0: it has applied no transaction since it was cloned
        Some(
            conn.last_replay_timestamp()
                .await?
                .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        )
    } else {
        None
    };
    let frozen_locks = if frozen_at_ms.is_some() {
        conn.replay_locks().await?
    } else {
        Vec::new()
    };
    let receiver = conn.wal_receiver().await?;
    let lag = match (received, replayed) {
        (Some(r), Some(p)) if p >= r => Some(0.0),
        _ => conn.last_replay_timestamp().await?.map(|t| {
            SystemTime::now()
                .duration_since(t)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        }),
    };
    let connected_to = receiver
        .as_ref()
        .and_then(|w| w.sender_port.map(|port| (w.sender_host.clone(), port)));
    let streaming_from = receiver
        .filter(|w| w.status == "streaming")
        .and_then(|w| w.sender_port.map(|port| (w.sender_host, port)));
    Ok(ServerView {
        in_recovery,
        timeline,
        current_lsn: None,
        received_lsn: received,
        replayed_lsn: replayed,
        replay_lag_seconds: lag,
        streaming_from,
        connected_to,
        standbys: Vec::new(),
        pending_restart,
        frozen_at_ms,
        frozen_locks,
    })
}

/// A standby's timeline as its report gives it. While its WAL receiver reconnects the server
/// names none, and the fallback (the last restartpoint's) can be older than what it has already
/// replayed: a reconnecting member showed timeline 1 after it had followed the promotion to 2.
/// While the same server (`server_pid`) runs in recovery, its timeline never goes down; `kept`
/// holds that server's pid and highest timeline seen.
pub fn steady_timeline(
    kept: &mut Option<(u32, u32)>,
    server_pid: u32,
    in_recovery: bool,
    read: Option<u32>,
) -> Option<u32> {
    if !in_recovery {
        *kept = None;
        return read;
    }
    let timeline = match (*kept, read) {
        (Some((pid, highest)), read) if pid == server_pid && read.is_none_or(|t| t < highest) => {
            Some(highest)
        }
        _ => read,
    };
    *kept = timeline.map(|t| (server_pid, t));
    timeline
}

/// Fold a server view into the report, naming the upstream the standby streams from.
///
/// Over TLS, PostgreSQL reports the sender by the name its certificate was verified for
/// (`upstream_tls_name`, the desired upstream's); the report speaks of addresses, so that name
/// becomes the upstream's address. A receiver still connected to another member keeps that
/// member's name, which matches no address.
pub fn apply(
    report: &mut MemberReport,
    view: &ServerView,
    desired: Option<&DesiredRole>,
    upstream_tls_name: Option<&str>,
) {
    let upstream_host = match desired {
        Some(DesiredRole::Standby { upstream, .. }) => Some(upstream.host.as_str()),
        _ => None,
    };
    let address = |host: &Option<String>| -> Option<String> {
        match (host.as_deref(), upstream_tls_name, upstream_host) {
            (Some(h), Some(name), Some(addr)) if h == name => Some(addr.to_string()),
            _ => host.clone(),
        }
    };
    report.running = true;
    report.role = if view.in_recovery {
        ActualRole::Standby
    } else {
        ActualRole::Primary
    };
    report.timeline = view.timeline;
    report.current_lsn = view.current_lsn;
    report.received_lsn = view.received_lsn;
    report.replayed_lsn = view.replayed_lsn;
    report.replay_lag_seconds = view.replay_lag_seconds;
    report.frozen_at_ms = view.frozen_at_ms;
    report.frozen_locks = view.frozen_locks.clone();
    report.standbys = view.standbys.clone();
    report.pending_restart = view.pending_restart.clone();
    report.wal_sender = view
        .connected_to
        .as_ref()
        .map(|(host, port)| crate::member::WalSender {
            host: address(host),
            port: *port,
        });
    report.streaming_from = match (desired, &view.streaming_from) {
        (Some(DesiredRole::Standby { upstream, .. }), Some((host, port)))
            if *port == upstream.port
                && address(host).as_deref().is_none_or(|h| h == upstream.host) =>
        {
            Some(upstream.member.clone())
        }
        _ => None,
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_reconnecting_standby_keeps_the_timeline_it_reached() {
        use super::steady_timeline;
        // (kept before, server pid, in recovery, read) → (shown, kept after)
        let table = [
            (None, 7, true, Some(1), Some(1), Some((7, 1))),
            (Some((7, 1)), 7, true, Some(2), Some(2), Some((7, 2))),
            // the receiver reconnects: the fallback says 1, or nothing
            (Some((7, 2)), 7, true, Some(1), Some(2), Some((7, 2))),
            (Some((7, 2)), 7, true, None, Some(2), Some((7, 2))),
            // another server (restarted): what it says now
            (Some((7, 2)), 8, true, Some(1), Some(1), Some((8, 1))),
            (Some((7, 2)), 8, true, None, None, None),
            // promoted: a primary's timeline is read from its WAL, never kept
            (Some((7, 2)), 7, false, Some(3), Some(3), None),
        ];
        for (kept, pid, recovery, read, shown, after) in table {
            let mut k = kept;
            assert_eq!(
                steady_timeline(&mut k, pid, recovery, read),
                shown,
                "{kept:?} {pid} {recovery} {read:?}"
            );
            assert_eq!(k, after, "{kept:?} {pid} {recovery} {read:?}");
        }
    }

    use super::*;
    use crate::member::Upstream;

    fn standby_of(member: &str, host: &str) -> DesiredRole {
        DesiredRole::Standby {
            upstream: Upstream {
                member: member.into(),
                host: host.into(),
                port: 5432,
            },
            slot: "pgreplica_b".into(),
            apply_delay_ms: 0,
            replay_paused: false,
            slots: vec![],
        }
    }

    fn receiver(host: &str) -> ServerView {
        ServerView {
            in_recovery: true,
            timeline: Some(1),
            current_lsn: None,
            received_lsn: None,
            replayed_lsn: None,
            replay_lag_seconds: None,
            streaming_from: Some((Some(host.into()), 5432)),
            connected_to: Some((Some(host.into()), 5432)),
            standbys: vec![],
            pending_restart: vec![],
            frozen_at_ms: None,
            frozen_locks: vec![],
        }
    }

    #[test]
    fn the_verified_name_of_the_upstream_is_its_address() {
        // (sender host PostgreSQL reports, desired upstream, streaming from, wal sender host)
        let table = [
            ("a.lab.pgreplica", "a", Some("a"), "10.0.0.1"),
            ("10.0.0.1", "a", Some("a"), "10.0.0.1"),
            // still connected to the old primary a while b is desired: not b's address
            ("a.lab.pgreplica", "b", None, "a.lab.pgreplica"),
        ];
        for (sender, upstream, streaming, host) in table {
            let mut report = MemberReport::new("c");
            let desired = standby_of(upstream, "10.0.0.1");
            let name = format!("{upstream}.lab.pgreplica");
            apply(&mut report, &receiver(sender), Some(&desired), Some(&name));
            assert_eq!(
                report.streaming_from.as_deref(),
                streaming,
                "{sender} {upstream}"
            );
            assert_eq!(
                report.wal_sender.and_then(|s| s.host).as_deref(),
                Some(host),
                "{sender} {upstream}"
            );
        }
    }
}
