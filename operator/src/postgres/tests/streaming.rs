//! Two real servers: clone through a slot, stream, promote, rewind the old primary and make it
//! follow the new one.

use std::time::Duration;

use super::eventually;
use crate::postgres::testing::TestServer;
use crate::postgres::{
    slot_name_for, BasebackupOpts, ConnParams, Password, PgError, Progress, RewindOutcome, Shutdown,
};

/// A password every quoting path must survive.
const REPL_PASSWORD: &str = "it's \"quoted\" \\ : secret";
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn clone_stream_promote_rewind() {
    let mut primary = TestServer::primary("primary").await;
    let programs = primary.programs.clone();
    let pc = primary.connect().await;

    // The replication role: created, then its password changed (the second call must ALTER).
    pc.ensure_replication_role("replicator", "first'password")
        .await
        .unwrap();
    pc.ensure_replication_role("replicator", REPL_PASSWORD)
        .await
        .unwrap();
    let slot = slot_name_for("standby-1");
    assert!(pc.create_physical_slot(&slot).await.unwrap());
    pc.batch("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 1000)")
        .await
        .unwrap();

    let mut standby = TestServer::empty_like(&primary, "standby");
    let opts = |password: Password, target| BasebackupOpts {
        host: "127.0.0.1".into(),
        port: primary.port(),
        user: "replicator".into(),
        password,
        target,
        slot: Some(slot.clone()),
        application_name: Some("clone-standby-1".into()),
        tls: None,
    };

    // The old password no longer works, and the error says why.
    let stale = opts(
        Password::Env("first'password".into()),
        standby.dir().join("stale"),
    );
    let err = programs.basebackup(&stale, |_| {}).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("pg_basebackup"), "{msg}");
    assert!(msg.contains("password authentication failed"), "{msg}");

    // Clone through the slot with the password in a password file; progress is reported.
    let pgpass = primary.write_pgpass("pgpass", "replicator", REPL_PASSWORD);
    let mut reports: Vec<Progress> = Vec::new();
    programs
        .basebackup(
            &opts(Password::File(pgpass), standby.data_dir().to_path_buf()),
            |p| reports.push(p),
        )
        .await
        .unwrap();
    let last = reports.last().expect("progress reports");
    assert_eq!(last.percent, 100, "{reports:?}");
    assert_eq!(last.done_kb, last.total_kb);
    assert!(last.total_kb > 1000, "{last:?}");

    // Start the copy as a standby streaming through the slot.
    let primary_conninfo = ConnParams::new("127.0.0.1", primary.port(), "replicator")
        .with_password(REPL_PASSWORD)
        .with_application_name("standby-1")
        .conninfo(true)
        .unwrap();
    standby.configure_standby(&primary_conninfo, Some(&slot));
    standby.start().await;
    let sc = standby.connect().await;
    assert!(sc.is_in_recovery().await.unwrap());

    let row = eventually("the primary to list standby-1 streaming", WAIT, || async {
        let rows = pc.replication().await.unwrap();
        rows.into_iter()
            .find(|r| r.application_name == "standby-1" && r.state == "streaming")
    })
    .await;
    assert_eq!(row.client_addr.as_deref(), Some("127.0.0.1"));
    assert_eq!(row.sync_state, "async");
    assert!(row.sent_lsn.is_some());
    let receiver = eventually("the standby's WAL receiver to stream", WAIT, || async {
        sc.wal_receiver()
            .await
            .unwrap()
            .filter(|w| w.status == "streaming")
    })
    .await;
    assert_eq!(receiver.received_tli, 1);
    assert_eq!(receiver.slot_name.as_deref(), Some(slot.as_str()));
    assert_eq!(receiver.sender_port, Some(primary.port()));
    assert_eq!(receiver.sender_host.as_deref(), Some("127.0.0.1"));
    assert!(pc
        .list_slots()
        .await
        .unwrap()
        .iter()
        .any(|s| s.name == slot && s.active));
    assert!(matches!(
        pc.drop_slot(&slot).await,
        Err(PgError::SlotActive { .. })
    ));

    // A write on the primary is replayed on the standby.
    pc.batch("INSERT INTO t SELECT generate_series(1, 10)")
        .await
        .unwrap();
    let written = pc.current_wal_lsn().await.unwrap();
    eventually("the standby to replay the write", WAIT, || async {
        let replayed = sc.replay_lsn().await.unwrap()?;
        (replayed >= written).then_some(())
    })
    .await;
    assert!(sc
        .receive_lsn()
        .await
        .unwrap()
        .is_some_and(|l| l >= written));
    assert!(sc.last_replay_timestamp().await.unwrap().is_some());
    let count: i64 = sc.value("SELECT count(*) FROM t", &[]).await.unwrap();
    assert_eq!(count, 1010);
    assert_eq!(sc.timeline().await.unwrap(), 1);

    // Promote the standby: it leaves recovery on timeline 2.
    assert!(sc.promote(30).await.unwrap());
    assert!(!sc.is_in_recovery().await.unwrap());
    assert_eq!(sc.timeline().await.unwrap(), 2);
    sc.batch("INSERT INTO t VALUES (-2)").await.unwrap();

    // The old primary takes one more write on timeline 1, then stops: it has diverged.
    pc.batch("INSERT INTO t VALUES (-1)").await.unwrap();
    drop(pc);
    assert!(primary.stop(Shutdown::Fast).await.success());
    let old = programs.controldata(primary.data_dir()).await.unwrap();
    assert!(old.is_clean_shutdown(), "{old:?}");
    assert_eq!(old.checkpoint_timeline, 1);

    // Rewind it from the promoted server.
    let mut source = standby.params();
    source.application_name = Some("pg_rewind".into());
    let outcome = programs.rewind(primary.data_dir(), &source).await.unwrap();
    assert_eq!(outcome, RewindOutcome::Rewound);

    // pg_rewind copied the source's configuration: write ours back, follow the new primary.
    let follow = ConnParams::new("127.0.0.1", standby.port(), "replicator")
        .with_password(REPL_PASSWORD)
        .with_application_name("old-primary")
        .conninfo(true)
        .unwrap();
    primary.configure_standby(&follow, None);
    primary.start().await;
    let oc = primary.connect().await;
    assert!(oc.is_in_recovery().await.unwrap());
    let receiver = eventually(
        "the old primary to stream from the new one",
        WAIT,
        || async {
            oc.wal_receiver()
                .await
                .unwrap()
                .filter(|w| w.status == "streaming")
        },
    )
    .await;
    assert_eq!(receiver.received_tli, 2);
    let head = sc.current_wal_lsn().await.unwrap();
    eventually("the old primary to catch up", WAIT, || async {
        let replayed = oc.replay_lsn().await.unwrap()?;
        (replayed >= head).then_some(())
    })
    .await;
    let values: Vec<i32> = oc
        .client()
        .query("SELECT x FROM t WHERE x < 0", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        values,
        [-2],
        "the diverged write is gone, the new one is there"
    );
    assert_eq!(oc.timeline().await.unwrap(), 2);
}
