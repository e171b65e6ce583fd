//! The benchmark (issue 7): the same scenarios, the same client workload and the same data against
//! pgreplica's local runtime, Patroni and pgpool-II on this machine.

pub mod pg;
pub mod procs;
pub mod report;
pub mod scenarios;
pub mod system;
pub mod systems;

/// PostgreSQL's server programs.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub fn pg_bin(name: &str) -> String {
    format!("{PG_BIN}/{name}")
}
