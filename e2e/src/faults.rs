//! Fault injection on the local runtime: real PostgreSQL, real processes, real signals.
//!
//! A case starts a cluster ([`case::Case`]), puts a load on it ([`load::Load`]: writers through
//! the rw endpoint plus one direct client that holds a connection to the primary it started on),
//! watches every member and the primary of record ([`watch`]), injects one fault, and ends with
//! [`verdict`]: the cluster back to Healthy within a bound, no acknowledged commit missing, no
//! acknowledgement from a member that was no longer the primary of record. Every case appends one
//! row to `target/faults-table.md` ([`table`]).

pub mod case;
pub mod diag;
pub mod direct;
pub mod dirs;
pub mod files;
pub mod load;
pub mod procs;
pub mod table;
pub mod tmpfs;
pub mod verdict;
pub mod watch;
pub mod watcher;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use crate::cluster::repo_file;

/// The writer id of the direct client (the rw writers are 0..4).
pub const DIRECT_WRITER: i32 = 100;
/// The writer id of one-off probe commits.
pub const PROBE_WRITER: i32 = 101;

/// A cluster file and what the harness must know about it to tell "settled" from "healthy for a
/// moment before failing back".
#[derive(Clone, Debug)]
pub struct Spec {
    pub file: PathBuf,
    /// `spec.primary`.
    pub preferred: &'static str,
    /// `failback: Automatic`: settled means the preferred member is the primary again.
    pub failback_automatic: bool,
}

impl Spec {
    /// `examples/lab.yaml`: a primary, b Sync, c Async 3 s, failback Automatic.
    pub fn lab() -> Spec {
        Spec {
            file: repo_file("examples/lab.yaml"),
            preferred: "a",
            failback_automatic: true,
        }
    }

    /// `e2e/faults/lab-manual.yaml`: the lab with failback Manual.
    pub fn lab_manual() -> Spec {
        Spec {
            file: repo_file("e2e/faults/lab-manual.yaml"),
            preferred: "a",
            failback_automatic: false,
        }
    }

    /// `e2e/faults/two-sync-required.yaml`: a primary, b and d Sync, c Async 3 s, Required.
    pub fn two_sync_required() -> Spec {
        Spec {
            file: repo_file("e2e/faults/two-sync-required.yaml"),
            preferred: "a",
            failback_automatic: true,
        }
    }

    /// `e2e/faults/two-sync-preferred.yaml`: a primary, b and d Sync, c Async 3 s, Preferred.
    pub fn two_sync_preferred() -> Spec {
        Spec {
            file: repo_file("e2e/faults/two-sync-preferred.yaml"),
            preferred: "a",
            failback_automatic: true,
        }
    }

    /// `e2e/faults/one-sync-required.yaml`: the lab's shape (a primary, b Sync, c Async 3 s)
    /// with Required durability.
    pub fn one_sync_required() -> Spec {
        Spec {
            file: repo_file("e2e/faults/one-sync-required.yaml"),
            preferred: "a",
            failback_automatic: true,
        }
    }

    /// `e2e/faults/long-delay.yaml`: a primary, b Sync, c Async 20 s, Preferred.
    pub fn long_delay() -> Spec {
        Spec {
            file: repo_file("e2e/faults/long-delay.yaml"),
            preferred: "a",
            failback_automatic: true,
        }
    }

    /// `e2e/faults/three-sync-required.yaml`: a primary, b and d Sync, c Async, Required.
    pub fn three_sync_required() -> Spec {
        Spec {
            file: repo_file("e2e/faults/three-sync-required.yaml"),
            preferred: "a",
            failback_automatic: true,
        }
    }
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Cases never run concurrently (two cores): hold this for the whole case. A case that panicked
/// poisons nothing that matters.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The runtime a case runs on: two workers, like the machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"))
}
