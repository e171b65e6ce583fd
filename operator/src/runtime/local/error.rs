//! Errors of the local runtime, each saying what to do about it.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LocalError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{dir} holds cluster `{found}`, not `{wanted}`: pass --dir to use another directory (nothing was changed)")]
    OtherCluster {
        dir: PathBuf,
        found: String,
        wanted: String,
    },
    #[error("cluster `{cluster}` is already running (brain pid {pid}): use `pgreplica local status` or `pgreplica local down`")]
    AlreadyRunning { cluster: String, pid: i32 },
    #[error("port {port} ({what}) is already in use: pass {flag} with a free port")]
    PortBusy {
        port: u16,
        what: &'static str,
        flag: &'static str,
    },
    #[error("no cluster found under {0}: run `pgreplica local up -f FILE` first, or pass --dir")]
    NoCluster(PathBuf),
    #[error("several clusters under {dir} ({names}): pass --dir")]
    SeveralClusters { dir: PathBuf, names: String },
    #[error(transparent)]
    Postgres(#[from] crate::postgres::PgError),
    #[error("{0}")]
    Failed(String),
    /// The cluster or its state turned the request down (exit code 3).
    #[error("{0}")]
    Refused(String),
    /// Waited as long as asked; the work may still go on (exit code 4).
    #[error("{0}")]
    TimedOut(String),
    #[error("{file} differs from the spec this cluster runs with (applied earlier):\n{changes}\nnothing was changed: run `pgreplica local up -f {file} --replace-spec` to run with {file} instead, or `pgreplica local up -f {current}` to keep the applied spec")]
    SpecDiffers {
        file: String,
        current: String,
        changes: String,
    },
}

impl LocalError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalError {
        let what = what.into();
        move |source| LocalError::Io { what, source }
    }
}
