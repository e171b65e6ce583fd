//! One real server: control data, status queries, slots, settings, errors.

use std::time::Duration;

use super::eventually;
use crate::postgres::testing::TestServer;
use crate::postgres::{slot_name_for, Lsn, PgError, Shutdown};

#[tokio::test]
async fn one_server_end_to_end() {
    let mut pg = TestServer::initdb("single").await;

    // pg_controldata of a freshly initdb'd directory.
    let fresh = pg.programs.controldata(pg.data_dir()).await.unwrap();
    assert_eq!(fresh.state, "shut down");
    assert!(fresh.is_clean_shutdown());
    assert_eq!(fresh.checkpoint_timeline, 1);
    assert!(fresh.checkpoint_lsn > Lsn::ZERO);
    assert_eq!(fresh.min_recovery_end_lsn, Lsn::ZERO);
    assert!(fresh.data_checksums, "initdb must enable data checksums");
    assert_ne!(fresh.system_identifier, 0);

    pg.start().await;
    let conn = pg.connect().await;

    // Version and role.
    let major = pg.programs.bins.major_version().await.unwrap();
    let version = conn.server_version_num().await.unwrap();
    assert_eq!(u32::try_from(version / 10000).unwrap(), major);
    assert!(!conn.is_in_recovery().await.unwrap());
    assert_eq!(conn.receive_lsn().await.unwrap(), None);
    assert_eq!(conn.replay_lsn().await.unwrap(), None);
    assert_eq!(conn.last_replay_timestamp().await.unwrap(), None);
    assert_eq!(conn.timeline().await.unwrap(), 1);
    assert!(conn.replication().await.unwrap().is_empty());
    assert_eq!(conn.wal_receiver().await.unwrap(), None);

    let running = pg.programs.controldata(pg.data_dir()).await.unwrap();
    assert_eq!(running.state, "in production");
    assert!(!running.is_clean_shutdown());
    assert_eq!(running.system_identifier, fresh.system_identifier);

    // The WAL position advances with a write.
    let before = conn.current_wal_lsn().await.unwrap();
    conn.batch("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 100)")
        .await
        .unwrap();
    let after = conn.current_wal_lsn().await.unwrap();
    assert!(after > before, "{after} should be past {before}");
    assert!(after.bytes_since(before) > 0);
    assert_eq!(conn.execute("UPDATE t SET x = x + 1").await.unwrap(), 100);

    // Slots: create (idempotent), list, advance, drop (idempotent).
    let slot = slot_name_for("member-b");
    assert!(conn.create_physical_slot(&slot).await.unwrap());
    assert!(!conn.create_physical_slot(&slot).await.unwrap());
    let slots = conn.list_slots().await.unwrap();
    let found = slots.iter().find(|s| s.name == slot).unwrap();
    assert!(!found.active);
    let reserved = found.restart_lsn.expect("immediately reserved");
    assert!(reserved <= conn.current_wal_lsn().await.unwrap());
    conn.batch("INSERT INTO t SELECT generate_series(1, 1000); SELECT pg_switch_wal()")
        .await
        .unwrap();
    let head = conn.current_wal_lsn().await.unwrap();
    let moved = conn.advance_slot(&slot, head).await.unwrap();
    assert!(moved > reserved, "{moved} should be past {reserved}");
    assert!(moved <= head);
    // Asking for an older position is not an error: the slot stays where it is.
    assert_eq!(conn.advance_slot(&slot, Lsn::ZERO).await.unwrap(), moved);
    let listed = conn.list_slots().await.unwrap();
    assert_eq!(
        listed.iter().find(|s| s.name == slot).unwrap().restart_lsn,
        Some(moved)
    );
    assert!(conn.drop_slot(&slot).await.unwrap());
    assert!(!conn.drop_slot(&slot).await.unwrap());
    assert!(conn
        .list_slots()
        .await
        .unwrap()
        .iter()
        .all(|s| s.name != slot));
    assert!(matches!(
        conn.create_physical_slot("Bad-Name").await,
        Err(PgError::InvalidName { .. })
    ));

    // ALTER SYSTEM + reload changes what SHOW says; quotes survive.
    assert_eq!(conn.setting("work_mem").await.unwrap(), "4MB");
    conn.alter_system("work_mem", "7MB").await.unwrap();
    let prefix = "%m [%p] it's \\ ";
    conn.alter_system("log_line_prefix", prefix).await.unwrap();
    assert!(conn.reload().await.unwrap());
    eventually(
        "work_mem to become 7MB",
        Duration::from_secs(10),
        || async { (conn.setting("work_mem").await.unwrap() == "7MB").then_some(()) },
    )
    .await;
    assert_eq!(conn.setting("log_line_prefix").await.unwrap(), prefix);
    conn.alter_system_reset("work_mem").await.unwrap();
    conn.reload().await.unwrap();
    eventually("work_mem back to 4MB", Duration::from_secs(10), || async {
        (conn.setting("work_mem").await.unwrap() == "4MB").then_some(())
    })
    .await;
    assert!(conn.alter_system("work_mem; DROP", "1").await.is_err());

    // A failing query names the SQL and what the server said.
    let err = conn
        .execute("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("SELECT * FROM no_such_table"), "{msg}");
    assert!(msg.contains("42P01"), "{msg}");
    assert_eq!(err.sqlstate().map(|s| s.code()), Some("42P01"));

    // A fast shutdown leaves a clean control file with a later checkpoint.
    drop(conn);
    let status = pg.stop(Shutdown::Fast).await;
    assert!(status.success(), "postgres exited with {status}");
    let stopped = pg.programs.controldata(pg.data_dir()).await.unwrap();
    assert_eq!(stopped.state, "shut down");
    assert!(stopped.is_clean_shutdown());
    assert!(stopped.checkpoint_lsn >= head);
}
