//! Changing a server: settings, promotion, roles.

use tokio_postgres::error::SqlState;
use tracing::info;

use super::error::{PgError, PgResult};
use super::query::Conn;
use super::quote::{check_setting_name, sql_ident, sql_literal};

impl Conn {
    /// `ALTER SYSTEM SET name = 'value'` (written to postgresql.auto.conf; takes effect on
    /// [`Conn::reload`] or restart, as the setting requires).
    pub async fn alter_system(&self, name: &str, value: &str) -> PgResult<()> {
        check_setting_name(name)?;
        let sql = format!("ALTER SYSTEM SET {name} = {}", sql_literal(value)?);
        if let Err(e) = self.client().batch_execute(&sql).await {
            // The value may be secret: the error names the setting only.
            return Err(PgError::query(
                &format!("ALTER SYSTEM SET {name} = <value>"),
                e,
            ));
        }
        // The value is not logged: it may hold a password (primary_conninfo).
        info!(setting = name, "ALTER SYSTEM");
        Ok(())
    }

    /// `ALTER SYSTEM RESET name`: back to the configuration files' value.
    pub async fn alter_system_reset(&self, name: &str) -> PgResult<()> {
        check_setting_name(name)?;
        self.batch(&format!("ALTER SYSTEM RESET {name}")).await?;
        info!(setting = name, "ALTER SYSTEM RESET");
        Ok(())
    }

    /// `pg_reload_conf()`: the postmaster re-reads its configuration (asynchronously).
    pub async fn reload(&self) -> PgResult<bool> {
        self.value("SELECT pg_reload_conf()", &[]).await
    }

    /// `pg_reload_conf()`, then waits (up to `patience`) until this session has read the files
    /// again, so that `pg_settings` (`pending_restart`) answers for them; false when it had not
    /// within `patience`.
    pub async fn reload_and_wait(&self, patience: std::time::Duration) -> PgResult<bool> {
        let loaded = "SELECT pg_conf_load_time()";
        let before: std::time::SystemTime = self.value(loaded, &[]).await?;
        self.reload().await?;
        let deadline = std::time::Instant::now() + patience;
        loop {
            let now: std::time::SystemTime = self.value(loaded, &[]).await?;
            if now > before {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Promotes a standby (`pg_promote` without its wait) and looks every 10 ms until the server
    /// leaves recovery; true when promotion finished within `wait_seconds`.
    pub async fn promote(&self, wait_seconds: u32) -> PgResult<bool> {
        // pg_promote's own wait looks every 100 ms; a failover should not pay for that
        let asked: bool = self.value("SELECT pg_promote(false)", &[]).await?;
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_secs(wait_seconds.into());
        let mut done = false;
        if asked {
            loop {
                if !self.is_in_recovery().await? {
                    done = true;
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        info!(server = self.target(), asked, done, "pg_promote");
        Ok(done)
    }

    /// Creates the role, or updates it, with `REPLICATION LOGIN` and `password`.
    pub async fn ensure_replication_role(&self, name: &str, password: &str) -> PgResult<()> {
        self.ensure_role(name, "REPLICATION LOGIN", password).await
    }

    /// Creates the role, or updates it, with `LOGIN` (no other attribute) and `password`.
    pub async fn ensure_login_role(&self, name: &str, password: &str) -> PgResult<()> {
        self.ensure_role(
            name,
            "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION LOGIN",
            password,
        )
        .await
    }

    /// Creates database `name` owned by `owner` unless it exists (an existing one keeps its
    /// owner: data is never handed to another role behind the user's back).
    pub async fn ensure_database(&self, name: &str, owner: &str) -> PgResult<bool> {
        let (database, role) = (sql_ident(name)?, sql_ident(owner)?);
        let exists: bool = self
            .value(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                &[&name],
            )
            .await?;
        if !exists {
            match self
                .client()
                .batch_execute(&format!("CREATE DATABASE {database} OWNER {role}"))
                .await
            {
                Ok(()) => info!(database = name, owner, "database created"),
                Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => {}
                Err(e) => return Err(PgError::query("CREATE DATABASE", e)),
            }
        }
        Ok(!exists)
    }

    /// Creates the role, or updates it, with `attributes` and `password`.
    /// The password is hashed here (SCRAM-SHA-256), so neither the server log nor
    /// `pg_stat_activity` ever sees it in clear; the verifier is passed as a quoted literal.
    async fn ensure_role(&self, name: &str, attributes: &str, password: &str) -> PgResult<()> {
        let role = sql_ident(name)?;
        if password.contains('\0') {
            return Err(PgError::InvalidValue {
                what: "role password".into(),
                why: "contains a NUL byte",
            });
        }
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let secret = sql_literal(&verifier)?;
        let exists: bool = self
            .value(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
                &[&name],
            )
            .await?;
        // If another session creates the role between the check and CREATE, ALTER it instead.
        let verbs: &[&str] = if exists {
            &["ALTER"]
        } else {
            &["CREATE", "ALTER"]
        };
        for (i, verb) in verbs.iter().enumerate() {
            let sql = format!("{verb} ROLE {role} WITH {attributes} PASSWORD {secret}");
            match self.client().batch_execute(&sql).await {
                Ok(()) => break,
                Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) && i + 1 < verbs.len() => {}
                Err(e) => {
                    // Never put the statement (it holds the verifier) into the error.
                    let shown = format!("{verb} ROLE {role} WITH {attributes} PASSWORD <redacted>");
                    return Err(PgError::query(&shown, e));
                }
            }
        }
        info!(role = name, created = !exists, attributes, "role ensured");
        Ok(())
    }
}
