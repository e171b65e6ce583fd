//! Member control belongs to the brain alone (ADR 0005): real agents on real PostgreSQL, attacked
//! the way a hostile process that reaches the agent port would. Every attack is refused and
//! changes nothing: the primary keeps its synchronous standby, the standby keeps streaming.

mod common;

use std::time::Duration;

use common::*;
use pgreplica::net::http::{AgentClient, HttpError};
use pgreplica::tls::{brain_name, client_config, Authority, Usage, CA_VALIDITY, LEAF_VALIDITY};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

const BOOT: Duration = Duration::from_secs(60);
const ASK: Duration = Duration::from_secs(3);

/// Trusts the cluster CA (so the TLS handshake completes) but presents no certificate.
fn anonymous(ca_pem: &str) -> AgentClient {
    AgentClient::new(pgreplica::tls::verifying_client_config(ca_pem).expect("config"))
}

async fn synchronous_standby_names(cluster: &Cluster) -> String {
    let conn = cluster.sql("a").await;
    conn.client()
        .query_one("SHOW synchronous_standby_names", &[])
        .await
        .expect("show")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_brain_commands_a_member() {
    let cluster = Cluster::start("trust", &["a", "b"]).await;
    cluster.put("a", primary(true, &["b"], &["b"])).await;
    cluster.wait_primary("a", BOOT).await;
    cluster.put("b", cluster.standby_of("b", "a", 0)).await;
    cluster.wait_streaming("b", "a", BOOT).await;
    cluster
        .wait_for("a", "b synchronous", BOOT, |r| {
            r.standbys
                .iter()
                .any(|s| s.name == "b" && s.sync_state == pgreplica::member::SyncState::Sync)
        })
        .await;
    let sync_before = synchronous_standby_names(&cluster).await;
    assert!(sync_before.contains('b'), "{sync_before}");
    let ca_pem = cluster.tls.authority().cert_pem().to_string();
    let (a, b) = (cluster.target("a"), cluster.target("b"));
    let no_sync = primary(false, &[], &["b"]);

    // 1. no client certificate: 401 for control and status, probes still answered
    let nobody = anonymous(&ca_pem);
    let (status, body) = nobody
        .send_json(&a, "PUT", "/desired", &no_sync, ASK)
        .await
        .expect("answer");
    println!(
        "unauthenticated PUT /desired to the primary: {status} {}",
        String::from_utf8_lossy(&body).trim()
    );
    assert_eq!(status, 401);
    let (status, _) = nobody
        .send_json(&b, "PUT", "/desired", &stopped(), ASK)
        .await
        .expect("answer");
    println!("unauthenticated PUT /desired (stopped) to the standby: {status}");
    assert_eq!(status, 401);
    let (status, _) = nobody.get(&a, "/status", ASK).await.expect("answer");
    assert_eq!(status, 401, "status is the brain's too");
    let (status, _) = nobody.get(&a, "/healthz", ASK).await.expect("answer");
    assert_eq!(status, 200, "probes need no certificate");

    // 2. a certificate of the cluster CA that does not name the brain: 403
    let ca = cluster.tls.authority();
    let mallory = ca
        .issue(&["mallory".to_string()], Usage::Client, LEAF_VALIDITY)
        .expect("issue");
    let someone = AgentClient::new(
        client_config(&ca_pem, &mallory.cert_pem, &mallory.key_pem).expect("config"),
    );
    let (status, _) = someone
        .send_json(&a, "PUT", "/desired", &no_sync, ASK)
        .await
        .expect("answer");
    println!("PUT /desired with a certificate for another name: {status}");
    assert_eq!(status, 403);

    // 3. the brain's name in a certificate from another CA: the handshake is refused
    let other = Authority::generate("trust", CA_VALIDITY).expect("CA");
    let forged = other
        .issue(&[brain_name("trust")], Usage::Client, LEAF_VALIDITY)
        .expect("issue");
    // it trusts our CA, so it gets as far as presenting its certificate
    let foreign = AgentClient::new(
        client_config(
            &format!("{ca_pem}{}", other.cert_pem()),
            &forged.cert_pem,
            &forged.key_pem,
        )
        .expect("config"),
    );
    let refused = foreign
        .send_json(&a, "PUT", "/desired", &no_sync, ASK)
        .await;
    println!("PUT /desired with the brain's name from another CA: {refused:?}");
    assert!(
        matches!(refused, Err(HttpError::Exchange { .. })),
        "{refused:?}"
    );

    // nothing changed: a still waits for b, b still streams from a, a commit is confirmed by b
    let report = cluster.status("a").await;
    assert_eq!(
        report.desired.as_ref().map(|d| d.role_name()),
        Some("primary")
    );
    assert_eq!(synchronous_standby_names(&cluster).await, sync_before);
    cluster.wait_streaming("b", "a", ASK).await;
    let conn = cluster.sql("a").await;
    conn.client()
        .batch_execute("CREATE TABLE trust_check (x int); INSERT INTO trust_check VALUES (1)")
        .await
        .expect("commit with b synchronous");
    let sync: String = conn
        .client()
        .query_one(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'b'",
            &[],
        )
        .await
        .expect("b replicates")
        .get(0);
    assert_eq!(sync, "sync");

    // replication runs over TLS, and the standby verified the primary's certificate
    let encrypted: bool = conn
        .client()
        .query_one(
            "SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) \
             WHERE r.application_name = 'b'",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    println!("pg_stat_ssl.ssl of b's replication connection: {encrypted}");
    assert!(encrypted, "replication must use TLS");
    let verified = |member: &str| {
        cluster
            .params("a")
            .with_tls(Some(pgreplica::postgres::PgTls {
                root_cert: cluster.member("a").dir.join("tls/ca.crt"),
                server_name: pgreplica::tls::agent_name("trust", member),
            }))
    };
    let tls_conn = pgreplica::postgres::connect(&verified("a"))
        .await
        .expect("verify-full against the cluster CA");
    let ssl: bool = tls_conn
        .client()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("ssl")
        .get(0);
    assert!(ssl);
    let wrong = pgreplica::postgres::connect(&verified("b")).await;
    assert!(wrong.is_err(), "a's certificate does not name b");
    assert!(cluster
        .member("a")
        .log_text()
        .contains("refused an unauthenticated request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_role_works_and_a_foreign_password_is_named() {
    let mut cluster = Cluster::start("approle", &["a"]).await;
    cluster.put("a", primary(true, &[], &[])).await;
    cluster.wait_primary("a", BOOT).await;

    // the application's role and database exist, the role is no superuser, TLS is verified
    let params = pgreplica::postgres::ConnParams::new("127.0.0.1", cluster.member("a").port, "app")
        .with_password(cluster.app_password.clone())
        .with_tls(Some(pgreplica::postgres::PgTls {
            root_cert: cluster.member("a").dir.join("tls/ca.crt"),
            server_name: "127.0.0.1".into(),
        }));
    let mut params = params;
    params.dbname = "app".into();
    let app = eventually("the application role", BOOT, || async {
        pgreplica::postgres::connect(&params).await.ok()
    })
    .await;
    let (superuser, db): (bool, String) = {
        let row = app
            .client()
            .query_one(
                "SELECT rolsuper, current_database()::text FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .expect("query");
        (row.get(0), row.get(1))
    };
    assert!(!superuser);
    assert_eq!(db, "app");
    app.client()
        .batch_execute("CREATE TABLE mine (x int)")
        .await
        .expect("the application owns its database");
    drop(app);

    // the same data with another superuser password: the report says what is wrong
    cluster.stop_agent("a");
    std::fs::write(
        cluster.root().join("superuser.pw"),
        format!("{}\n", random_password()),
    )
    .expect("write");
    cluster.start_agent("a");
    let report = cluster
        .wait_for("a", "the password mismatch named", BOOT, |r| {
            r.last_error
                .as_deref()
                .is_some_and(|e| e.contains("does not open this data directory"))
        })
        .await;
    println!("reported: {}", report.last_error.unwrap_or_default());
}

/// The certificate a TLS server at `port` presents for `name` (verified against `ca_pem`);
/// `postgres`: send PostgreSQL's SSLRequest first.
async fn served_certificate(
    port: u16,
    name: &str,
    ca_pem: &str,
    postgres: bool,
) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    if postgres {
        // length 8, code 80877103
        tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .ok()?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer).await.ok()?;
        if answer[0] != b'S' {
            return None;
        }
    }
    let config = pgreplica::tls::verifying_client_config(ca_pem).ok()?;
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).ok()?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .ok()?;
    Some(tls.get_ref().1.peer_certificates()?.first()?.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificates_are_served_without_a_restart() {
    let cluster = Cluster::start("renew", &["a"]).await;
    cluster.put("a", primary(true, &[], &[])).await;
    cluster.wait_primary("a", BOOT).await;
    let ca_pem = cluster.tls.authority().cert_pem().to_string();
    let name = pgreplica::tls::agent_name("renew", "a");
    let (pg_port, http_port) = (cluster.member("a").port, cluster.member("a").http.port());
    let started = || async {
        let conn = cluster.sql("a").await;
        let at: String = conn
            .client()
            .query_one("SELECT pg_postmaster_start_time()::text", &[])
            .await
            .expect("start time")
            .get(0);
        at
    };
    let started_before = started().await;
    let before = served_certificate(pg_port, &name, &ca_pem, true)
        .await
        .expect("PostgreSQL serves TLS");
    assert_eq!(
        served_certificate(http_port, &name, &ca_pem, false).await,
        Some(before.clone()),
        "one certificate for the agent and PostgreSQL"
    );

    // A certificate of 30 s is a third from its end at once: the runtime issues it again.
    let owner = pgreplica::postgres::RunAs::detect(None).expect("user");
    let short = cluster.tls.clone().with_validity(Duration::from_secs(30));
    let dir = cluster.member("a").dir.join("tls");
    let files = pgreplica::tls::AgentTlsFiles::in_dir(&dir);
    std::fs::remove_file(&files.cert).expect("rm");
    let (_, issued) = short.ensure_member(&dir, "a", owner).expect("issue short");
    assert!(issued);
    let (_, renewed) = short.ensure_member(&dir, "a", owner).expect("renew");
    assert!(renewed, "due for renewal");
    let pem = std::fs::read(&files.cert).expect("read");
    let fresh = CertificateDer::from_pem_slice(&pem).expect("pem").to_vec();
    assert_ne!(fresh, before);
    eventually(
        "PostgreSQL serves the renewed certificate",
        BOOT,
        || async {
            (served_certificate(pg_port, &name, &ca_pem, true).await? == fresh).then_some(())
        },
    )
    .await;
    eventually("the agent serves the renewed certificate", BOOT, || async {
        (served_certificate(http_port, &name, &ca_pem, false).await? == fresh).then_some(())
    })
    .await;
    assert_eq!(started().await, started_before, "no restart");
    // the brain (its pooled connection, or a new one) still reaches the agent
    cluster.status("a").await;
    assert!(cluster
        .member("a")
        .log_text()
        .contains("certificate renewed"));
}
