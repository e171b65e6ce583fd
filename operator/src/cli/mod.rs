//! Command-line faces of the one binary.

mod crd;
mod local;
mod status_table;
mod validate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use thiserror::Error;

#[derive(Debug, Parser)]
#[command(
    name = "pgreplica",
    version,
    about = "PostgreSQL streaming-replication clusters, declared per member"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the PgReplicaCluster CustomResourceDefinition as YAML.
    Crd,
    /// Run a cluster as processes on this machine (the embedded runtime).
    Local {
        #[command(subcommand)]
        command: local::LocalCommand,
    },
    /// Run one member's agent (PostgreSQL as its child).
    Instance {
        #[command(subcommand)]
        command: InstanceCommand,
    },
    /// Check cluster files offline with the same rules the API server enforces.
    Validate {
        /// Files to check (YAML, one PgReplicaCluster each).
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Run the agent until SIGTERM: converge PostgreSQL to the desired role, serve /status.
    Run {
        /// The agent configuration (JSON), written by the runtime that starts the agent.
        #[arg(long)]
        config: PathBuf,
    },
}

impl Cli {
    /// The agent runs on one thread: PostgreSQL is its child and must die with that thread.
    pub fn wants_single_thread(&self) -> bool {
        matches!(self.command, Command::Instance { .. })
    }
}

/// Errors that end a command; `main` prints them and exits non-zero.
#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Crd(#[from] crate::api::crd::CrdError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Local(#[from] crate::runtime::local::LocalError),
    #[error(transparent)]
    Agent(#[from] crate::instance::AgentError),
    #[error("{0} of {1} files are invalid")]
    Invalid(usize, usize),
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Crd => crd::run(),
        Command::Validate { files } => validate::run(&files),
        Command::Local { command } => Ok(local::run(command).await?),
        Command::Instance {
            command: InstanceCommand::Run { config },
        } => {
            let cfg = crate::instance::AgentConfig::load(&config)?;
            Ok(crate::instance::run(cfg).await?)
        }
    }
}
