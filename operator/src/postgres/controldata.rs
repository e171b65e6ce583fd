//! Reading a data directory's control file with `pg_controldata`.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{PgError, PgResult};
use super::programs::{absolute, run, Programs};
use crate::member::Lsn;

/// The facts of `pg_controldata` that pgreplica decides with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlData {
    /// Same on a primary and every clone of it; differs after a new initdb.
    pub system_identifier: u64,
    /// "in production", "shut down", "shut down in recovery", "in archive recovery",
    /// "in crash recovery", "shutting down", "starting up".
    pub state: String,
    /// "Latest checkpoint location".
    pub checkpoint_lsn: Lsn,
    /// "Latest checkpoint's TimeLineID".
    pub checkpoint_timeline: u32,
    /// "Minimum recovery ending location" (`0/0` when none).
    pub min_recovery_end_lsn: Lsn,
    /// "Min recovery ending loc's timeline".
    pub min_recovery_end_timeline: u32,
    /// Data page checksums are on (pg_rewind needs them or `wal_log_hints`).
    pub data_checksums: bool,
    /// "wal_log_hints setting" as of the last checkpoint.
    pub wal_log_hints: bool,
}

impl ControlData {
    /// The server was shut down cleanly (as primary or as standby): pg_rewind can run.
    pub fn is_clean_shutdown(&self) -> bool {
        self.state == "shut down" || self.state == "shut down in recovery"
    }

    /// Parses the text `pg_controldata` prints with `LC_ALL=C`.
    pub fn parse(text: &str) -> PgResult<ControlData> {
        let fields: HashMap<&str, &str> = text
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let get = |key: &str| {
            fields.get(key).copied().ok_or_else(|| PgError::Parse {
                what: "pg_controldata output".into(),
                detail: format!("no line `{key}:`"),
            })
        };
        let number = |key: &str| -> PgResult<u64> {
            let v = get(key)?;
            v.parse().map_err(|_| PgError::Parse {
                what: "pg_controldata output".into(),
                detail: format!("`{key}` is {v:?}, not a number"),
            })
        };
        let small = |key: &str| -> PgResult<u32> {
            u32::try_from(number(key)?).map_err(|_| PgError::Parse {
                what: "pg_controldata output".into(),
                detail: format!("`{key}` is too large"),
            })
        };
        Ok(ControlData {
            system_identifier: number("Database system identifier")?,
            state: get("Database cluster state")?.to_string(),
            checkpoint_lsn: get("Latest checkpoint location")?.parse()?,
            checkpoint_timeline: small("Latest checkpoint's TimeLineID")?,
            min_recovery_end_lsn: get("Minimum recovery ending location")?.parse()?,
            min_recovery_end_timeline: small("Min recovery ending loc's timeline")?,
            data_checksums: small("Data page checksum version")? != 0,
            wal_log_hints: get("wal_log_hints setting")? == "on",
        })
    }
}

impl Programs {
    /// `pg_controldata` of `data` (works on a running server too; the values are then those of
    /// the last checkpoint).
    pub async fn controldata(&self, data: &Path) -> PgResult<ControlData> {
        let data = absolute(data)?;
        let mut cmd = self.command("pg_controldata");
        cmd.arg("-D").arg(&data);
        let out = run(cmd, "pg_controldata").await?;
        ControlData::parse(&String::from_utf8_lossy(&out.stdout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from PostgreSQL 15.18 (trimmed of lines we do not read).
    const SHUT_DOWN: &str = "\
pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7712454058066511971
Database cluster state:               shut down
pg_control last modified:             Thu Nov 26 12:20:42 2026
Latest checkpoint location:           0/1741860
Latest checkpoint's REDO location:    0/1741860
Latest checkpoint's REDO WAL file:    000000010000000000000001
Latest checkpoint's TimeLineID:       1
Latest checkpoint's PrevTimeLineID:   1
Latest checkpoint's oldestCommitTsXid:0
Minimum recovery ending location:     0/0
Min recovery ending loc's timeline:   0
wal_level setting:                    replica
wal_log_hints setting:                off
Data page checksum version:           1
Mock authentication nonce:            e0e5b715c68ec5b5d935912c50a59ac59cac2c3a840b47ef9f486de610481a7e
";

    fn variant(state: &str, ckpt: &str, tli: &str, minrec: &str) -> String {
        SHUT_DOWN
            .replace("shut down", state)
            .replace(
                "0/1741860\nLatest checkpoint's REDO",
                &format!("{ckpt}\nLatest checkpoint's REDO"),
            )
            .replace("TimeLineID:       1", &format!("TimeLineID:       {tli}"))
            .replace("location:     0/0", &format!("location:     {minrec}"))
    }

    #[test]
    fn parses_captured_samples() {
        let cases = [
            ("shut down", "0/1741860", "1", "0/0", true),
            ("shut down in recovery", "0/5000028", "2", "0/5000100", true),
            ("in production", "16/B374D848", "3", "0/0", false),
            ("in archive recovery", "0/3000060", "1", "0/3000138", false),
            ("in crash recovery", "0/3000060", "1", "0/0", false),
        ];
        for (state, ckpt, tli, minrec, clean) in cases {
            let cd = ControlData::parse(&variant(state, ckpt, tli, minrec)).unwrap();
            assert_eq!(cd.system_identifier, 7712454058066511971);
            assert_eq!(cd.state, state);
            assert_eq!(cd.checkpoint_lsn.to_string(), ckpt);
            assert_eq!(cd.checkpoint_timeline.to_string(), tli);
            assert_eq!(cd.min_recovery_end_lsn.to_string(), minrec);
            assert_eq!(cd.is_clean_shutdown(), clean, "{state}");
            assert!(cd.data_checksums);
            assert!(!cd.wal_log_hints);
        }
    }

    #[test]
    fn missing_or_bad_fields_are_errors() {
        let no_state = SHUT_DOWN.replace("Database cluster state", "Something else");
        let err = ControlData::parse(&no_state).unwrap_err().to_string();
        assert!(err.contains("Database cluster state"), "{err}");
        let bad_lsn = SHUT_DOWN.replace(
            "0/1741860\nLatest checkpoint's REDO",
            "zz\nLatest checkpoint's REDO",
        );
        assert!(ControlData::parse(&bad_lsn).is_err());
        assert!(ControlData::parse("").is_err());
    }
}
