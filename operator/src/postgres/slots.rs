//! Physical replication slots.

use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use tracing::info;

use super::error::{PgError, PgResult};
use super::query::{column, lsn_column, Conn};
use crate::member::Lsn;

pub use crate::member::{slot_name_for, SLOT_PREFIX};

/// A physical replication slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub name: String,
    /// A WAL sender streams through it now.
    pub active: bool,
    /// Oldest WAL the slot holds; `None` if it never reserved any.
    pub restart_lsn: Option<Lsn>,
}

/// Slot names allow `[a-z0-9_]`, at most 63 characters.
pub fn check_slot_name(name: &str) -> PgResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PgError::InvalidName {
            what: "replication slot name",
            name: name.to_string(),
            why: "only lowercase letters, digits and '_', at most 63 characters",
        })
    }
}

impl Conn {
    /// The physical slots, by name.
    pub async fn list_slots(&self) -> PgResult<Vec<Slot>> {
        let sql = "SELECT slot_name::text AS name, active, restart_lsn::text AS restart_lsn \
                   FROM pg_replication_slots WHERE slot_type = 'physical' ORDER BY slot_name";
        let rows = self.rows(sql, &[]).await?;
        rows.iter()
            .map(|row| {
                Ok(Slot {
                    name: column(row, "name")?,
                    active: column(row, "active")?,
                    restart_lsn: lsn_column(row, "restart_lsn")?,
                })
            })
            .collect()
    }

    /// Creates a physical slot that reserves WAL at once. Returns false if it already existed.
    pub async fn create_physical_slot(&self, name: &str) -> PgResult<bool> {
        check_slot_name(name)?;
        let sql = "SELECT 1 FROM pg_create_physical_replication_slot($1, true)";
        match self.client().execute(sql, &[&name]).await {
            Ok(_) => {
                info!(slot = name, "replication slot created");
                Ok(true)
            }
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => Ok(false),
            Err(e) => Err(PgError::query(sql, e)),
        }
    }

    /// Drops a slot. Returns false if it did not exist; an active slot is an error
    /// ([`PgError::SlotActive`]).
    pub async fn drop_slot(&self, name: &str) -> PgResult<bool> {
        check_slot_name(name)?;
        let sql = "SELECT pg_drop_replication_slot($1)";
        match self.client().execute(sql, &[&name]).await {
            Ok(_) => {
                info!(slot = name, "replication slot dropped");
                Ok(true)
            }
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_OBJECT) => Ok(false),
            Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) => Err(PgError::SlotActive {
                name: name.to_string(),
                detail: super::error::describe(&e),
            }),
            Err(e) => Err(PgError::query(sql, e)),
        }
    }

    /// Moves a slot forward to `lsn` (never backward; not beyond what the server has flushed or
    /// replayed). Returns the slot's position afterwards.
    pub async fn advance_slot(&self, name: &str, lsn: Lsn) -> PgResult<Lsn> {
        check_slot_name(name)?;
        let sql =
            "SELECT end_lsn::text FROM pg_replication_slot_advance($1, GREATEST($2::text::pg_lsn, \
                   (SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = $1)))";
        let target = lsn.to_string();
        let end: String = self.value(sql, &[&name, &target]).await?;
        Ok(end.parse()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_for_members() {
        let cases = [
            ("a", "pgreplica_a"),
            ("db-1", "pgreplica_db_1"),
            ("rpi-2-b", "pgreplica_rpi_2_b"),
        ];
        for (member, slot) in cases {
            assert_eq!(slot_name_for(member), slot);
            assert!(check_slot_name(slot).is_ok());
        }
    }

    #[test]
    fn rejects_bad_slot_names() {
        for bad in ["", "A", "a-b", "a;drop", "a'b", &"x".repeat(64)] {
            assert!(check_slot_name(bad).is_err(), "{bad}");
        }
    }
}
