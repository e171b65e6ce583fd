//! The replication views: `pg_stat_replication` on a sender, `pg_stat_wal_receiver` on a standby.

use serde::{Deserialize, Serialize};

use super::error::PgResult;
use super::query::{column, lsn_column, Conn};
use crate::member::Lsn;

/// One WAL sender (one connected standby or backup) as the sending server sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationRow {
    pub application_name: String,
    pub client_addr: Option<String>,
    /// startup, catchup, streaming, backup, stopping.
    pub state: String,
    /// async, potential, sync, quorum.
    pub sync_state: String,
    pub sent_lsn: Option<Lsn>,
    pub write_lsn: Option<Lsn>,
    pub flush_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
    pub write_lag_s: Option<f64>,
    pub flush_lag_s: Option<f64>,
    pub replay_lag_s: Option<f64>,
}

/// The WAL receiver of a standby.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalReceiver {
    /// starting, streaming, waiting, restarting, stopping.
    pub status: String,
    pub received_tli: u32,
    pub flushed_lsn: Option<Lsn>,
    pub latest_end_lsn: Option<Lsn>,
    pub sender_host: Option<String>,
    pub sender_port: Option<u16>,
    pub slot_name: Option<String>,
}

const REPLICATION_SQL: &str = "\
SELECT COALESCE(application_name, '') AS application_name, host(client_addr) AS client_addr,
       COALESCE(state, '') AS state, COALESCE(sync_state, '') AS sync_state,
       sent_lsn::text AS sent_lsn, write_lsn::text AS write_lsn,
       flush_lsn::text AS flush_lsn, replay_lsn::text AS replay_lsn,
       extract(epoch FROM write_lag)::float8 AS write_lag_s,
       extract(epoch FROM flush_lag)::float8 AS flush_lag_s,
       extract(epoch FROM replay_lag)::float8 AS replay_lag_s
FROM pg_stat_replication
ORDER BY application_name, pid";

const WAL_RECEIVER_SQL: &str = "\
SELECT COALESCE(status, '') AS status, received_tli, flushed_lsn::text AS flushed_lsn,
       latest_end_lsn::text AS latest_end_lsn, sender_host, sender_port, slot_name
FROM pg_stat_wal_receiver";

impl Conn {
    /// Every WAL sender of this server (needs superuser or `pg_read_all_stats` for the LSNs).
    pub async fn replication(&self) -> PgResult<Vec<ReplicationRow>> {
        let rows = self.rows(REPLICATION_SQL, &[]).await?;
        rows.iter()
            .map(|row| {
                Ok(ReplicationRow {
                    application_name: column(row, "application_name")?,
                    client_addr: column(row, "client_addr")?,
                    state: column(row, "state")?,
                    sync_state: column(row, "sync_state")?,
                    sent_lsn: lsn_column(row, "sent_lsn")?,
                    write_lsn: lsn_column(row, "write_lsn")?,
                    flush_lsn: lsn_column(row, "flush_lsn")?,
                    replay_lsn: lsn_column(row, "replay_lsn")?,
                    write_lag_s: column(row, "write_lag_s")?,
                    flush_lag_s: column(row, "flush_lag_s")?,
                    replay_lag_s: column(row, "replay_lag_s")?,
                })
            })
            .collect()
    }

    /// The WAL receiver, if one runs (on a standby that streams or tries to).
    pub async fn wal_receiver(&self) -> PgResult<Option<WalReceiver>> {
        let rows = self.rows(WAL_RECEIVER_SQL, &[]).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let tli: Option<i32> = column(row, "received_tli")?;
        let port: Option<i32> = column(row, "sender_port")?;
        Ok(Some(WalReceiver {
            status: column(row, "status")?,
            received_tli: tli.and_then(|t| u32::try_from(t).ok()).unwrap_or(0),
            flushed_lsn: lsn_column(row, "flushed_lsn")?,
            latest_end_lsn: lsn_column(row, "latest_end_lsn")?,
            sender_host: column(row, "sender_host")?,
            sender_port: port.and_then(|p| u16::try_from(p).ok()),
            slot_name: column(row, "slot_name")?,
        }))
    }
}
