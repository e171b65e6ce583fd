//! Everything that touches PostgreSQL: typed queries and the server programs.
//!
//! - [`Programs`] runs `initdb`, `pg_basebackup`, `pg_rewind`, `pg_controldata` and `postgres`
//!   itself (as the [`RunAs`] user when we are root), found by [`Bins`].
//! - [`connect`] opens a [`Conn`] with typed queries: WAL positions, replication views, slots,
//!   `ALTER SYSTEM`, promotion, roles.
//! - [`config`] writes the configuration files of a data directory; [`quote`] quotes values for
//!   SQL, configuration files, connection strings and password files.

mod admin;
mod basebackup;
mod bins;
pub mod config;
mod controldata;
mod error;
mod programs;
mod query;
pub mod quote;
mod recovery_titles;
mod replication;
mod run_as;
mod server;
mod slots;

#[cfg(test)]
pub mod testing;
#[cfg(test)]
mod tests;

pub use crate::member::Lsn;
pub use basebackup::{parse_progress, BasebackupOpts, Progress};
pub use bins::{parse_major_version, Bins, BINDIR_ENV, REQUIRED};
pub use controldata::ControlData;
pub use error::{PgError, PgResult};
pub use programs::{Password, Programs, RewindOutcome};
pub use query::{connect, timeline_of_walfile, Conn, ConnParams, PgTls};
pub use recovery_titles::RecoveryTitles;
pub use replication::{ReplicationRow, WalReceiver};
pub use run_as::{
    chown_recursive, chown_to, create_private_dir, write_private_file, RunAs, DEFAULT_USER,
};
pub use server::{kill_postgres_tree, signal_postgres, PostgresProcess, ServerLog, Shutdown};
pub use slots::{check_slot_name, slot_name_for, Slot, SLOT_PREFIX};
