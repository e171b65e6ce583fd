//! Command-line faces of the one binary.

mod crd;
mod kubectl;
mod local;
mod log_sink;
mod member_request;
mod replay;
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
    /// Log lines as text (colour only on a terminal) or as JSON objects, one per line, for log
    /// collectors.
    #[arg(long, global = true, env = "PGREPLICA_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the PgReplicaCluster CustomResourceDefinition as YAML.
    #[command(after_help = "Example:\n  pgreplica crd > crds/pgreplicacluster.yaml")]
    Crd,
    /// Run a cluster as processes on this machine (the embedded runtime).
    Local {
        #[command(subcommand)]
        command: local::LocalCommand,
    },
    /// Run the Kubernetes operator (in the cluster, from manifests/).
    #[command(
        after_help = "Example:\n  pgreplica operator --http 0.0.0.0:8080   (the Deployment of manifests/ runs it)"
    )]
    Operator {
        /// Where /healthz and /metrics are served.
        #[arg(long, default_value = "0.0.0.0:8080")]
        http: std::net::SocketAddr,
        /// The operator's own image, which member pods copy the agent binary from. In its
        /// Deployment it is read from the operator's own pod; give it when running as a process.
        #[arg(long, env = "PGREPLICA_OPERATOR_IMAGE")]
        image: Option<String>,
    },
    /// kubectl plugin commands (also available as `kubectl pgrc ...` when installed as kubectl-pgrc).
    Kubectl {
        #[command(subcommand)]
        command: kubectl::KubectlCommand,
    },
    /// Copy this binary to DEST (the member pods' init container installs the agent this way).
    #[command(
        after_help = "Example:\n  pgreplica install-binary /pgreplica/bin/pgreplica   (the member pods' init container)"
    )]
    InstallBinary {
        /// Where to write the copy (a shared volume of the member pod).
        dest: PathBuf,
    },
    /// Run one member's agent (PostgreSQL as its child).
    Instance {
        #[command(subcommand)]
        command: InstanceCommand,
    },
    /// Check cluster files offline with the same rules the API server enforces.
    #[command(
        after_help = "Example:\n  pgreplica validate -f examples/lab.yaml examples/minimal.yaml"
    )]
    Validate {
        /// Files to check (YAML, one PgReplicaCluster each): `-f a.yaml b.yaml` or `-f a.yaml -f b.yaml`.
        #[arg(short = 'f', long = "file", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Run the agent until SIGTERM: converge PostgreSQL to the desired role, serve /status.
    #[command(
        after_help = "Example:\n  pgreplica instance run --config members/a/agent.json   (pgreplica local starts it)"
    )]
    Run {
        /// The agent configuration (JSON), written by the runtime that starts the agent.
        #[arg(long, required_unless_present = "config_env")]
        config: Option<PathBuf>,
        /// Read the configuration (JSON) from this environment variable instead (pods).
        #[arg(long)]
        config_env: Option<String>,
    },
}

/// The same commands as `pgreplica kubectl ...`, named as kubectl shows them when the binary is
/// installed as `kubectl-pgrc`.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl pgrc",
    bin_name = "kubectl pgrc",
    version,
    about = "pgreplica's kubectl plugin: status, switchover, restart and reload of a PgReplicaCluster"
)]
struct Plugin {
    #[command(subcommand)]
    command: kubectl::KubectlCommand,
    /// Log lines as text or as JSON objects, one per line.
    #[arg(long, global = true, env = "PGREPLICA_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

impl Cli {
    /// The command line of `pgreplica ...`, or of the kubectl plugin when the binary is invoked
    /// as `kubectl-pgrc` (`kubectl pgrc status lab`). Exits with clap's message on bad input.
    pub fn from_args(args: Vec<std::ffi::OsString>) -> Cli {
        let invoked_as = args
            .first()
            .and_then(|a| std::path::Path::new(a).file_name())
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if invoked_as == "kubectl-pgrc" {
            let plugin = Plugin::parse_from(args);
            return Cli {
                command: Command::Kubectl {
                    command: plugin.command,
                },
                log_format: plugin.log_format,
            };
        }
        Cli::parse_from(args)
    }

    /// Send `tracing`'s lines to stderr in the format asked for.
    pub fn init_logging(&self) {
        use std::io::IsTerminal;
        use tracing_subscriber::EnvFilter;
        let filter =
            EnvFilter::try_from_env("PGREPLICA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(log_sink::Sink);
        if self.log_format == "json" {
            // the operator's member pods log as it does (`runtime::kube::apply::wanted_pod`);
            // set before any other thread starts
            std::env::set_var("PGREPLICA_LOG_FORMAT", "json");
            logs.json().with_current_span(false).init();
        } else {
            // colour only for a person at a terminal: log files and `kubectl logs` get plain text
            // (a foreground `local up` writes its log to a file: no colour there either)
            let to_file = matches!(
                &self.command,
                Command::Local {
                    command: local::LocalCommand::Up { detach: false, .. }
                }
            );
            logs.with_ansi(std::io::stderr().is_terminal() && !to_file)
                .init();
        }
    }

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

/// What `pgreplica` and `kubectl pgrc` exit with (documented in the README).
pub mod exit {
    /// Done.
    pub const OK: i32 = 0;
    /// Anything else: an I/O, PostgreSQL or Kubernetes API error.
    pub const FAILED: i32 = 1;
    /// Invalid input: a usage error, an invalid spec, a member that is not in the cluster.
    pub const INVALID: i32 = 2;
    /// Refused: the cluster turned the request down, or its state does not allow it (not
    /// running, already running, a port in use, a spec that differs).
    pub const REFUSED: i32 = 3;
    /// Timed out: waited as long as asked; the work may still go on in the background.
    pub const TIMED_OUT: i32 = 4;
}

impl CliError {
    /// The process's exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> i32 {
        use crate::runtime::kube::error::KubeError;
        use crate::runtime::local::LocalError;
        match self {
            CliError::Usage(_) | CliError::Invalid(..) => exit::INVALID,
            CliError::Local(e) => match e {
                LocalError::Invalid(_) => exit::INVALID,
                LocalError::Refused(_)
                | LocalError::AlreadyRunning { .. }
                | LocalError::PortBusy { .. }
                | LocalError::SpecDiffers { .. }
                | LocalError::OtherCluster { .. } => exit::REFUSED,
                LocalError::TimedOut(_) => exit::TIMED_OUT,
                _ => exit::FAILED,
            },
            CliError::Kube(e) => match e {
                KubeError::Invalid(_) => exit::INVALID,
                KubeError::Refused(_) => exit::REFUSED,
                KubeError::TimedOut(_) => exit::TIMED_OUT,
                _ => exit::FAILED,
            },
            CliError::Read { .. } | CliError::Agent(_) | CliError::Crd(_) => exit::FAILED,
        }
    }
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every argument a person can pass says what it is (`--help` had empty lines for -f, --dir,
    /// --to, --purge, MEMBER).
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "pgreplica", &mut missing);
        walk(&Plugin::command(), "kubectl pgrc", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    /// Every command a person runs shows an example in its `--help`.
    #[test]
    fn every_command_has_an_example() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let subs: Vec<&clap::Command> = cmd
                .get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
                .collect();
            if subs.is_empty() {
                let example = cmd
                    .get_after_help()
                    .is_some_and(|h| h.to_string().starts_with("Example:"));
                if !example {
                    missing.push(path.to_string());
                }
            }
            for sub in subs {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "pgreplica", &mut missing);
        walk(&Plugin::command(), "kubectl pgrc", &mut missing);
        assert!(
            missing.is_empty(),
            "commands without an example: {missing:?}"
        );
    }

    #[test]
    fn validate_takes_several_files_after_one_flag() {
        let cli = Cli::try_parse_from(["pgreplica", "validate", "-f", "a.yaml", "b.yaml"])
            .expect("several files after -f");
        match cli.command {
            Command::Validate { files } => assert_eq!(files.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn output_formats_are_checked() {
        let wide = Cli::try_parse_from(["pgreplica", "local", "status", "-o", "wide"]);
        assert!(wide.is_err(), "-o wide was accepted");
        assert!(Cli::try_parse_from(["pgreplica", "local", "status", "-o", "json"]).is_ok());
    }

    /// Installed as kubectl-pgrc, usage reads as kubectl shows it (it said
    /// `kubectl-pgrc kubectl <COMMAND>`).
    #[test]
    fn the_plugin_names_itself_as_kubectl_shows_it() {
        let usage = Plugin::command().render_usage().to_string();
        assert!(
            usage.contains("kubectl pgrc [OPTIONS] <COMMAND>"),
            "{usage}"
        );
        let cli = Cli::from_args(
            ["/usr/local/bin/kubectl-pgrc", "status", "lab"]
                .into_iter()
                .map(Into::into)
                .collect(),
        );
        assert!(matches!(cli.command, Command::Kubectl { .. }));
    }

    /// Every runtime error exited 1: scripts could not tell a refusal or a timeout from a
    /// broken machine.
    #[test]
    fn exit_codes_tell_invalid_refused_and_timed_out_apart() {
        use crate::runtime::kube::error::KubeError;
        use crate::runtime::local::LocalError;
        let cases: Vec<(CliError, i32)> = vec![
            (CliError::Usage("x".into()), exit::INVALID),
            (CliError::Invalid(1, 2), exit::INVALID),
            (
                LocalError::Invalid("zz is not a member".into()).into(),
                exit::INVALID,
            ),
            (
                KubeError::Invalid("zz is not a member".into()).into(),
                exit::INVALID,
            ),
            (LocalError::Refused("refused".into()).into(), exit::REFUSED),
            (
                LocalError::AlreadyRunning {
                    cluster: "lab".into(),
                    pid: 1,
                }
                .into(),
                exit::REFUSED,
            ),
            (KubeError::Refused("refused".into()).into(), exit::REFUSED),
            (LocalError::TimedOut("late".into()).into(), exit::TIMED_OUT),
            (KubeError::TimedOut("late".into()).into(), exit::TIMED_OUT),
            (LocalError::Failed("broken".into()).into(), exit::FAILED),
            (KubeError::Other("broken".into()).into(), exit::FAILED),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error}");
        }
        let distinct: std::collections::BTreeSet<i32> = [
            exit::OK,
            exit::FAILED,
            exit::INVALID,
            exit::REFUSED,
            exit::TIMED_OUT,
        ]
        .into();
        assert_eq!(distinct.len(), 5);
    }
}
