//! On a standby: keep copies of the other members' replication slots, advanced to where the
//! primary's slots are (never past what this standby replayed), so a promoted standby still
//! holds the WAL the others need to follow it.

use std::collections::BTreeMap;

use tracing::info;

use crate::postgres::{connect, Conn, ConnParams, Lsn, PgResult, SLOT_PREFIX};

/// One pass of upkeep; `upstream` is the primary (superuser connection parameters).
pub async fn keep_slot_copies(
    local: &Conn,
    upstream: &ConnParams,
    wanted: &[String],
) -> PgResult<()> {
    let primary_positions: BTreeMap<String, Option<Lsn>> = match connect(upstream).await {
        Ok(conn) => conn
            .list_slots()
            .await?
            .into_iter()
            .map(|s| (s.name, s.restart_lsn))
            .collect(),
        // the primary may be gone (that is when these copies matter); keep what we have
        Err(_) => return Ok(()),
    };
    let Some(replayed) = local.replay_lsn().await? else {
        return Ok(());
    };
    let existing = local.list_slots().await?;
    for name in wanted {
        if !existing.iter().any(|s| &s.name == name) {
            local.create_physical_slot(name).await?;
            info!(slot = %name, "created a copy of a replication slot on this standby");
        }
    }
    for slot in local.list_slots().await? {
        if wanted.contains(&slot.name) {
            let target = advance_target(
                primary_positions.get(&slot.name).copied().flatten(),
                replayed,
            );
            if slot.restart_lsn.is_none_or(|at| target > at) {
                local.advance_slot(&slot.name, target).await?;
            }
        } else if slot.name.starts_with(SLOT_PREFIX) && !slot.active {
            local.drop_slot(&slot.name).await?;
            info!(slot = %slot.name, "dropped a slot copy of a member that is gone");
        }
    }
    Ok(())
}

/// Where a slot copy may go: the primary's position of the same slot, but never past our own
/// replay; a slot the primary lacks (the primary's own) follows our replay.
pub fn advance_target(on_primary: Option<Lsn>, replayed: Lsn) -> Lsn {
    match on_primary {
        Some(at) => at.min(replayed),
        None => replayed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let table = [
            (Some(Lsn(100)), Lsn(200), Lsn(100)),
            (Some(Lsn(300)), Lsn(200), Lsn(200)),
            (None, Lsn(200), Lsn(200)),
        ];
        for (primary, replayed, want) in table {
            assert_eq!(advance_target(primary, replayed), want);
        }
    }
}
