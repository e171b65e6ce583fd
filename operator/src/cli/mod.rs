//! Command-line faces of the one binary.

mod crd;
mod kubectl;
mod local;
mod member_request;
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
    /// Run the Kubernetes operator (in the cluster, from manifests/).
    Operator {
        /// Where /healthz and /metrics are served.
        #[arg(long, default_value = "0.0.0.0:8080")]
        http: std::net::SocketAddr,
        /// The operator's own image: member pods copy the agent binary from it.
        #[arg(
            long,
            env = "PGREPLICA_OPERATOR_IMAGE",
            default_value = "pgreplica:0.1.0"
        )]
        image: String,
    },
    /// kubectl plugin commands (also available as `kubectl pgrc ...` when installed as kubectl-pgrc).
    Kubectl {
        #[command(subcommand)]
        command: kubectl::KubectlCommand,
    },
    /// Copy this binary to DEST (the member pods' init container installs the agent this way).
    InstallBinary { dest: PathBuf },
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
        #[arg(long, required_unless_present = "config_env")]
        config: Option<PathBuf>,
        /// Read the configuration (JSON) from this environment variable instead (pods).
        #[arg(long)]
        config_env: Option<String>,
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
    #[error(transparent)]
    Kube(#[from] crate::runtime::kube::error::KubeError),
    #[error("{0}")]
    Usage(String),
    #[error("{0} of {1} files are invalid")]
    Invalid(usize, usize),
}

fn install_binary(dest: &std::path::Path) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    let me = std::env::current_exe().map_err(|source| CliError::Read {
        path: "/proc/self/exe".into(),
        source,
    })?;
    std::fs::copy(&me, dest).map_err(|source| CliError::Read {
        path: dest.to_path_buf(),
        source,
    })?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755)).map_err(|source| {
        CliError::Read {
            path: dest.to_path_buf(),
            source,
        }
    })?;
    println!("installed {} as {}", me.display(), dest.display());
    Ok(())
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Crd => crd::run(),
        Command::Validate { files } => validate::run(&files),
        Command::Local { command } => Ok(local::run(command).await?),
        Command::Instance {
            command: InstanceCommand::Run { config, config_env },
        } => {
            let cfg = match (config, config_env) {
                (Some(path), _) => crate::instance::AgentConfig::load(&path)?,
                (None, Some(var)) => crate::instance::AgentConfig::from_env(&var)?,
                (None, None) => {
                    return Err(CliError::Usage(
                        "instance run needs --config or --config-env".into(),
                    ))
                }
            };
            Ok(crate::instance::run(cfg).await?)
        }
        Command::Operator { http, image } => Ok(crate::runtime::kube::controller::run(
            crate::runtime::kube::controller::OperatorOptions {
                operator_image: image,
                http,
            },
        )
        .await?),
        Command::Kubectl { command } => Ok(kubectl::run(command).await?),
        Command::InstallBinary { dest } => install_binary(&dest),
    }
}

/// For commands that only print: a reader that goes away (`| head`) ends them quietly, as it
/// ends any Unix tool, instead of a panic on the broken pipe. Never for the brain or an agent:
/// their sockets must see a closed peer as an error, not die of it.
fn quiet_on_a_closed_pipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: the default disposition installs no handler code; setting it is process-wide and
    // happens before this command prints anything.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        tracing::debug!(error = %e, "could not restore the default SIGPIPE disposition");
    }
}
