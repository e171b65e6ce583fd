//! Connections and the typed queries about a server's position in the WAL.
//! Replication views, slots and administration live in `replication.rs`, `slots.rs`, `admin.rs`.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::FromSqlOwned;
use tokio_postgres::{Client, NoTls, Row};
use tracing::debug;

use super::error::{PgError, PgResult};
use super::quote::conninfo;
use crate::member::Lsn;

/// Where and as whom to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub application_name: Option<String>,
    pub connect_timeout: Duration,
    /// TLS with the server's certificate verified (libpq's `verify-full`); none on loopback.
    pub tls: Option<PgTls>,
}

/// How to verify a server: its certificate must chain to `root_cert` and name `server_name`
/// (members are reached by address; the name is the member's, not a DNS name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgTls {
    pub root_cert: PathBuf,
    pub server_name: String,
}

impl fmt::Debug for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnParams")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

impl ConnParams {
    /// Database `postgres`, application name `pgreplica`, 5 s connect timeout, no password.
    pub fn new(host: impl Into<String>, port: u16, user: impl Into<String>) -> ConnParams {
        ConnParams {
            host: host.into(),
            port,
            user: user.into(),
            password: None,
            dbname: "postgres".into(),
            application_name: Some("pgreplica".into()),
            connect_timeout: Duration::from_secs(5),
            tls: None,
        }
    }

    /// Connect over TLS and verify the server as `tls` says.
    pub fn with_tls(mut self, tls: Option<PgTls>) -> ConnParams {
        self.tls = tls;
        self
    }

    /// The address to connect to when TLS verifies a name other than the host.
    fn hostaddr(&self) -> Option<IpAddr> {
        self.tls.as_ref()?;
        self.host.parse().ok()
    }

    /// The host libpq is given: the name TLS verifies when the host is an address.
    fn host_name(&self) -> &str {
        match (&self.tls, self.hostaddr()) {
            (Some(tls), Some(_)) => &tls.server_name,
            _ => &self.host,
        }
    }

    pub fn with_password(mut self, password: impl Into<String>) -> ConnParams {
        self.password = Some(password.into());
        self
    }

    pub fn with_application_name(mut self, name: impl Into<String>) -> ConnParams {
        self.application_name = Some(name.into());
        self
    }

    /// `user@host:port/dbname`, for messages.
    pub fn target(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }

    /// A libpq connection string (for `primary_conninfo`, `pg_rewind --source-server`).
    /// The password is included only when asked for.
    pub fn conninfo(&self, with_password: bool) -> PgResult<String> {
        let port = self.port.to_string();
        let timeout = self.connect_timeout.as_secs().max(1).to_string();
        let hostaddr = self.hostaddr().map(|ip| ip.to_string());
        let root_cert = self
            .tls
            .as_ref()
            .map(|t| t.root_cert.to_string_lossy().into_owned());
        let mut pairs = vec![("host", self.host_name())];
        if let Some(addr) = &hostaddr {
            pairs.push(("hostaddr", addr.as_str()));
        }
        if let Some(root) = &root_cert {
            pairs.push(("sslmode", "verify-full"));
            pairs.push(("sslrootcert", root.as_str()));
        }
        pairs.extend([
            ("port", port.as_str()),
            ("user", self.user.as_str()),
            ("dbname", self.dbname.as_str()),
            ("connect_timeout", timeout.as_str()),
        ]);
        if let Some(name) = &self.application_name {
            pairs.push(("application_name", name.as_str()));
        }
        if let (true, Some(pw)) = (with_password, &self.password) {
            pairs.push(("password", pw.as_str()));
        }
        conninfo(&pairs)
    }

    fn config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config.host(self.host_name());
        if let Some(addr) = self.hostaddr() {
            config.hostaddr(addr);
        }
        if self.tls.is_some() {
            config.ssl_mode(SslMode::Require);
        }
        config
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .connect_timeout(self.connect_timeout);
        if let Some(pw) = &self.password {
            config.password(pw.as_bytes());
        }
        if let Some(name) = &self.application_name {
            config.application_name(name);
        }
        config
    }
}

/// An open connection. The task driving it is aborted when this is dropped. Queries have no
/// timeout of their own: wrap calls in `tokio::time::timeout` where a hung server matters.
pub struct Conn {
    client: Client,
    driver: JoinHandle<()>,
    target: String,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("target", &self.target)
            .finish()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Connects, over TLS when the parameters ask for it (to other members), else in the clear
/// (an agent to its own server on loopback).
pub async fn connect(params: &ConnParams) -> PgResult<Conn> {
    let target = params.target();
    let config = params.config();
    let failed = |e| PgError::connect(target.clone(), e);
    let (client, driver) = match &params.tls {
        None => {
            let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
            (client, drive(connection, target.clone()))
        }
        Some(tls) => {
            let tls = tls_connector(tls).map_err(|e| PgError::Tls {
                target: target.clone(),
                reason: e,
            })?;
            let (client, connection) = config.connect(tls).await.map_err(failed)?;
            (client, drive(connection, target.clone()))
        }
    };
    Ok(Conn {
        client,
        driver,
        target,
    })
}

/// Run the task that carries a connection's messages until it ends.
fn drive<F>(connection: F, label: String) -> JoinHandle<()>
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(target_db = %label, error = %super::error::describe(&e), "connection ended");
        }
    })
}

/// A rustls connector that trusts only the CA in `tls.root_cert` (read at every connection, so
/// a renewed CA file is used at once).
fn tls_connector(tls: &PgTls) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let path = tls.root_cert.display();
    let pem = std::fs::read_to_string(&tls.root_cert)
        .map_err(|e| format!("cannot read the CA certificate {path}: {e}"))?;
    let config = crate::tls::verifying_client_config(&pem)
        .map_err(|e| format!("the CA certificate {path}: {e}"))?;
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(
        Arc::unwrap_or_clone(config),
    ))
}

impl Conn {
    /// The underlying client, for queries this module has no method for.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `user@host:port/dbname`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The connection is closed (server gone or connection lost).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    pub(crate) async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> PgResult<Vec<Row>> {
        self.client
            .query(sql, params)
            .await
            .map_err(|e| PgError::query(sql, e))
    }

    /// The single value of a query that returns exactly one row.
    pub(crate) async fn value<T: FromSqlOwned>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> PgResult<T> {
        let row = self
            .client
            .query_one(sql, params)
            .await
            .map_err(|e| PgError::query(sql, e))?;
        row.try_get(0).map_err(|e| PgError::query(sql, e))
    }

    /// Runs one statement; returns the number of rows it affected.
    pub async fn execute(&self, sql: &str) -> PgResult<u64> {
        self.client
            .execute(sql, &[])
            .await
            .map_err(|e| PgError::query(sql, e))
    }

    /// Runs several statements separated by `;` (simple query protocol).
    pub async fn batch(&self, sql: &str) -> PgResult<()> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| PgError::query(sql, e))
    }

    /// `server_version_num`, e.g. 150018.
    pub async fn server_version_num(&self) -> PgResult<i32> {
        let text: String = self
            .value("SELECT current_setting('server_version_num')", &[])
            .await?;
        text.parse().map_err(|_| PgError::Parse {
            what: "server_version_num".into(),
            detail: text,
        })
    }

    /// The current value of a setting (`SHOW name`).
    pub async fn setting(&self, name: &str) -> PgResult<String> {
        self.value("SELECT current_setting($1)", &[&name]).await
    }

    /// Settings changed in the configuration files that PostgreSQL applies only at a restart.
    pub async fn pending_restart(&self) -> PgResult<Vec<String>> {
        self.value(
            // a paused standby's recovery target guards its next start and needs no restart now
            "SELECT COALESCE(array_agg(name::text ORDER BY name), '{}') FROM pg_settings \
             WHERE pending_restart AND name NOT LIKE 'recovery\\_target%'",
            &[],
        )
        .await
    }

    /// The server's `pg_wal` holds the segment of WAL file `name` (same log and segment, any
    /// timeline: a sender reads a segment in which the timeline switched from the newer file).
    pub async fn has_wal_segment(&self, name: &str) -> PgResult<bool> {
        self.value(
            "SELECT EXISTS (SELECT 1 FROM pg_ls_waldir() \
             WHERE length(name) = 24 AND substr(name, 9) = substr($1, 9))",
            &[&name],
        )
        .await
    }

    pub async fn is_in_recovery(&self) -> PgResult<bool> {
        self.value("SELECT pg_is_in_recovery()", &[]).await
    }

    /// The primary's WAL write position (an error on a standby).
    pub async fn current_wal_lsn(&self) -> PgResult<Lsn> {
        let text: String = self.value("SELECT pg_current_wal_lsn()::text", &[]).await?;
        Ok(text.parse()?)
    }

    /// On a standby, WAL received and flushed by the WAL receiver; `None` on a primary or before
    /// any was received.
    pub async fn receive_lsn(&self) -> PgResult<Option<Lsn>> {
        self.optional_lsn("SELECT pg_last_wal_receive_lsn()::text")
            .await
    }

    /// On a standby, WAL replayed; `None` on a primary.
    pub async fn replay_lsn(&self) -> PgResult<Option<Lsn>> {
        self.optional_lsn("SELECT pg_last_wal_replay_lsn()::text")
            .await
    }

    /// A standby's replay: paused (or asked to pause), and whether the server was started with a
    /// recovery target (then `pg_wal_replay_resume()` at the target would end recovery: such a
    /// server is restarted without it instead).
    pub async fn replay_pause(&self) -> PgResult<(bool, bool)> {
        let paused: bool = self
            .value(
                "SELECT pg_get_wal_replay_pause_state() <> 'not paused'",
                &[],
            )
            .await?;
        let target: bool = self
            .value(
                "SELECT current_setting('recovery_target_lsn') <> '' \
                 OR current_setting('recovery_target') <> ''",
                &[],
            )
            .await?;
        Ok((paused, target))
    }

    /// Ask replay to pause and wait until it has (a delayed standby pauses once its current
    /// delay wait ends): the last replayed position, where it stays.
    pub async fn pause_replay(
        &self,
        patience: std::time::Duration,
    ) -> PgResult<crate::member::Lsn> {
        self.batch("SELECT pg_wal_replay_pause()").await?;
        let began = std::time::Instant::now();
        loop {
            let state: String = self
                .value("SELECT pg_get_wal_replay_pause_state()::text", &[])
                .await?;
            if state == "paused" {
                break;
            }
            if began.elapsed() > patience {
                return Err(PgError::Parse {
                    what: "replay pause".into(),
                    detail: format!("still '{state}' after {} s", patience.as_secs()),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.replay_lsn().await?.ok_or_else(|| PgError::Parse {
            what: "replay pause".into(),
            detail: "no replay position".into(),
        })
    }

    /// Tables the startup process holds an AccessExclusiveLock on: a DROP, TRUNCATE or ALTER
    /// whose start a standby has replayed and whose commit it has not (reads of them wait).
    pub async fn replay_locks(&self) -> PgResult<Vec<String>> {
        self.value(
            "SELECT COALESCE(array_agg(l.relation::regclass::text ORDER BY 1), '{}') \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE a.backend_type = 'startup' AND l.locktype = 'relation' \
             AND l.mode = 'AccessExclusiveLock'",
            &[],
        )
        .await
    }

    pub async fn resume_replay(&self) -> PgResult<()> {
        self.batch("SELECT pg_wal_replay_resume()").await
    }

    /// When the last replayed transaction committed on the primary; `None` on a primary or
    /// before any transaction was replayed (since the server started).
    pub async fn last_replay_timestamp(&self) -> PgResult<Option<SystemTime>> {
        self.value("SELECT pg_last_xact_replay_timestamp()", &[])
            .await
    }

    /// The timeline the server is on. On a primary, from the name of the current WAL file
    /// (`pg_control_checkpoint()` lags after a promotion until the next checkpoint). On a standby,
    /// the WAL receiver's timeline, else the timeline of the last replayed checkpoint.
    pub async fn timeline(&self) -> PgResult<u32> {
        if self.is_in_recovery().await? {
            let sql = "SELECT COALESCE(\
                 (SELECT received_tli FROM pg_stat_wal_receiver WHERE received_tli > 0), \
                 (SELECT timeline_id FROM pg_control_checkpoint()))";
            let tli: i32 = self.value(sql, &[]).await?;
            return u32::try_from(tli).map_err(|_| PgError::Parse {
                what: "timeline".into(),
                detail: tli.to_string(),
            });
        }
        let name: String = self
            .value("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
            .await?;
        timeline_of_walfile(&name)
    }

    async fn optional_lsn(&self, sql: &str) -> PgResult<Option<Lsn>> {
        let text: Option<String> = self.value(sql, &[]).await?;
        Ok(text.map(|t| t.parse()).transpose()?)
    }
}

/// The timeline in a WAL file name: `00000002000000000000000A` → 2.
pub fn timeline_of_walfile(name: &str) -> PgResult<u32> {
    let bad = || PgError::Parse {
        what: "WAL file name".into(),
        detail: name.to_string(),
    };
    let hex = name.get(..8).ok_or_else(bad)?;
    u32::from_str_radix(hex, 16).map_err(|_| bad())
}

/// Parses an optional `pg_lsn::text` column.
pub(crate) fn lsn_column(row: &Row, column: &str) -> PgResult<Option<Lsn>> {
    let text: Option<String> = row.try_get(column).map_err(|e| PgError::Parse {
        what: format!("column {column}"),
        detail: super::error::describe(&e),
    })?;
    Ok(text.map(|t| t.parse()).transpose()?)
}

/// Reads one column, naming it in the error.
pub(crate) fn column<T: FromSqlOwned>(row: &Row, column: &str) -> PgResult<T> {
    row.try_get(column).map_err(|e| PgError::Parse {
        what: format!("column {column}"),
        detail: super::error::describe(&e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walfile_timelines() {
        assert_eq!(timeline_of_walfile("000000010000000000000003").unwrap(), 1);
        assert_eq!(timeline_of_walfile("0000000A0000000000000003").unwrap(), 10);
        assert!(timeline_of_walfile("0000").is_err());
        assert!(timeline_of_walfile("zzzzzzzz0000000000000003").is_err());
    }

    #[test]
    fn conninfo_and_debug_hide_password_unless_asked() {
        let p = ConnParams::new("127.0.0.1", 5432, "rep").with_password("se'cret");
        let without = p.conninfo(false).unwrap();
        assert!(!without.contains("cret"), "{without}");
        let with = p.conninfo(true).unwrap();
        assert!(with.contains("password='se\\'cret'"), "{with}");
        assert!(!format!("{p:?}").contains("cret"));
        assert_eq!(p.target(), "rep@127.0.0.1:5432/postgres");
    }
}
