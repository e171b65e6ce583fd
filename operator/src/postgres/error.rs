//! The one error type of the `postgres` module.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use tokio_postgres::error::SqlState;

/// Everything that can go wrong while talking to PostgreSQL or running its programs.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No directory with all the server programs was found.
    #[error(
        "PostgreSQL server programs not found (need {needed}); tried: {tried}. \
         Install the server package (e.g. `apt-get install postgresql-15`) or pass --pg-bindir DIR \
         (or set PGREPLICA_PG_BINDIR)"
    )]
    BinsNotFound { needed: String, tried: String },

    /// A directory that was named explicitly lacks some programs.
    #[error(
        "{dir} ({origin}) lacks {missing}; point it at the bin directory of a PostgreSQL server \
         installation (e.g. /usr/lib/postgresql/15/bin) or install postgresql-15"
    )]
    MissingPrograms {
        dir: PathBuf,
        origin: &'static str,
        missing: String,
    },

    /// Running as root and no unprivileged user to run PostgreSQL as.
    #[error(
        "PostgreSQL refuses to run as root and user `{user}` was not found in /etc/passwd; \
         create it (e.g. `useradd --system --home-dir /var/lib/postgresql postgres`), name another \
         user, or run pgreplica as a non-root user"
    )]
    NoRunAsUser { user: String },

    /// The user named to run PostgreSQL as is itself root.
    #[error(
        "user `{user}` has uid 0; PostgreSQL refuses to run as root, name an unprivileged user"
    )]
    RunAsRoot { user: String },

    /// Looking a user up failed.
    #[error("could not look up user `{user}`: {source}")]
    UserLookup {
        user: String,
        #[source]
        source: nix::Error,
    },

    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A program could not be started.
    #[error("could not start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// A program ran and failed.
    #[error("{program} failed ({status}); last output:\n{tail}")]
    ProgramFailed {
        program: String,
        status: ExitStatus,
        tail: String,
    },

    /// A program's output could not be understood.
    #[error("could not understand {what}: {detail}")]
    Parse { what: String, detail: String },

    /// A string is not an LSN of the form `16/B374D848`.
    #[error("invalid LSN `{0}` (expected hex `XXXXXXXX/XXXXXXXX`)")]
    InvalidLsn(String),

    /// A name (slot, role, setting) that we refuse to put into SQL.
    #[error("invalid {what} `{name}`: {why}")]
    InvalidName {
        what: &'static str,
        name: String,
        why: &'static str,
    },

    /// A value that cannot be passed on (for example a NUL byte in a setting).
    #[error("invalid value for {what}: {why}")]
    InvalidValue { what: String, why: &'static str },

    /// Connecting to a server failed.
    #[error("could not connect to {target}: {detail}")]
    Connect {
        target: String,
        detail: String,
        #[source]
        source: tokio_postgres::Error,
    },

    /// The TLS settings for a connection cannot be used.
    #[error("cannot connect to {target} over TLS: {reason}")]
    Tls { target: String, reason: String },

    /// A query failed.
    #[error("query failed ({sql}): {detail}")]
    Query {
        sql: String,
        detail: String,
        #[source]
        source: tokio_postgres::Error,
    },

    /// A replication slot that is in use cannot be dropped.
    #[error("replication slot `{name}` is active; stop its consumer first ({detail})")]
    SlotActive { name: String, detail: String },

    /// Sending a signal failed.
    #[error("could not send {signal} to process {pid}: {source}")]
    Signal {
        pid: u32,
        signal: &'static str,
        #[source]
        source: nix::Error,
    },

    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },

    /// A server process exited when it should have kept running.
    #[error("postgres exited ({status}) {when}; last log lines:\n{tail}")]
    ServerExited {
        status: ExitStatus,
        when: &'static str,
        tail: String,
    },
}

/// Short form for results of this module.
pub type PgResult<T> = Result<T, PgError>;

impl PgError {
    /// The SQLSTATE of a server error, if this is one.
    pub fn sqlstate(&self) -> Option<&SqlState> {
        match self {
            PgError::Connect { source, .. } | PgError::Query { source, .. } => source.code(),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> PgError {
        PgError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn query(sql: &str, source: tokio_postgres::Error) -> PgError {
        PgError::Query {
            sql: one_line(sql),
            detail: describe(&source),
            source,
        }
    }

    pub(crate) fn connect(target: String, source: tokio_postgres::Error) -> PgError {
        PgError::Connect {
            target,
            detail: describe(&source),
            source,
        }
    }
}

/// tokio-postgres's `Display` says only "db error"; this adds what the server said.
pub(crate) fn describe(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        let mut s = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            s.push_str("; detail: ");
            s.push_str(detail);
        }
        if let Some(hint) = db.hint() {
            s.push_str("; hint: ");
            s.push_str(hint);
        }
        return s;
    }
    let mut s = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// SQL for an error message: whitespace collapsed, never a password (callers pass redacted SQL).
fn one_line(sql: &str) -> String {
    let collapsed: Vec<&str> = sql.split_whitespace().collect();
    let s = collapsed.join(" ");
    if s.chars().count() > 200 {
        let cut: String = s.chars().take(200).collect();
        format!("{cut}…")
    } else {
        s
    }
}

impl From<crate::member::InvalidLsn> for PgError {
    fn from(e: crate::member::InvalidLsn) -> PgError {
        PgError::InvalidLsn(e.0)
    }
}
