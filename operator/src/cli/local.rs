//! `pgreplica local ...`: the whole cluster as processes on one machine.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use clap::Subcommand;

use super::member_request::Kind;
use super::replay;
use crate::api::validate::parse_and_validate;
use crate::instance::config::SUPERUSER;
use crate::runtime::local::brain::{self, progress};
use crate::runtime::local::layout::{port_is_free, resolve_dir, DEFAULT_RO_PORT, DEFAULT_RW_PORT};
use crate::runtime::local::status_file::LocalStatus;
use crate::runtime::local::{secrets, Layout, LocalError, LocalState};

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start (or resume) the cluster of FILE: one agent per member, the brain, the endpoints.
    #[command(after_help = "Example:\n  pgreplica local up -f examples/lab.yaml --detach")]
    Up {
        /// The cluster file (YAML, one PgReplicaCluster).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// State directory (default ./.pgreplica/<cluster>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Read-write endpoint port (first start only; kept afterwards).
        #[arg(long)]
        rw_port: Option<u16>,
        /// Read-only endpoint port (first start only; kept afterwards).
        #[arg(long)]
        ro_port: Option<u16>,
        /// Return once the cluster is ready, leaving it running in the background.
        #[arg(long)]
        detach: bool,
        /// With --detach: how long to wait for the cluster to become ready.
        #[arg(long, default_value_t = 300)]
        timeout_seconds: u64,
        /// Run with FILE even though it differs from the spec applied earlier (shown first).
        #[arg(long)]
        replace_spec: bool,
    },
    /// Show members, roles, replication and lag (`-o json` for tools).
    /// Exits 3 when the cluster is not running.
    #[command(
        after_help = "Example:\n  pgreplica local status\n  pgreplica local status -o json\n  pgreplica local status --watch"
    )]
    Status {
        /// State directory (default ./.pgreplica/<cluster>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Output format.
        #[arg(short = 'o', long = "output", default_value = "table", value_parser = ["table", "json"])]
        output: String,
        /// Print the status again each time it changes, until interrupted (Ctrl-C).
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Print what happened to the cluster, oldest first: losses, failovers, promotions,
    /// switchovers, members created, spec changes (the last 100 events, kept across restarts).
    #[command(after_help = "Example:\n  pgreplica local events\n  pgreplica local events --watch")]
    Events {
        /// State directory (default ./.pgreplica/<cluster>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep printing new events as they happen, until interrupted (Ctrl-C).
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Print `export PG...` lines for psql: `eval "$(pgreplica local env)"`.
    #[command(after_help = "Example:\n  eval \"$(pgreplica local env)\"; psql -c 'select 1'")]
    Env {
        /// State directory (default ./.pgreplica/<cluster>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The read-only endpoint instead of the read-write one.
        #[arg(long)]
        ro: bool,
        /// As the application's role and database (spec.application) instead of the superuser.
        #[arg(long)]
        app: bool,
        /// One member's own server instead of an endpoint (such as a paused member).
        #[arg(long, conflicts_with = "ro")]
        member: Option<String>,
    },
    /// Freeze MEMBER (an Async standby, such as the delayed c): it applies no more WAL, keeps
    /// its data as it is now, serves no reads through the endpoints and is never promoted, until
    /// resume-replay. Sets replayPaused in the applied spec.
    #[command(
        after_help = "Example: rows of t were deleted by mistake 2 s ago; c applies WAL 3 s late\n  pgreplica local pause-replay c\n  eval \"$(pgreplica local env --member c)\"; psql -c '\\copy t to t.csv csv'\n  pgreplica local resume-replay c"
    )]
    PauseReplay {
        /// The member to freeze.
        member: String,
        /// State directory (default ./.pgreplica/<cluster>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// How long to wait for the pause before giving up (exit code 4).
        #[arg(long, default_value_t = 60)]
        timeout_seconds: u64,
    },
    /// Let a paused MEMBER apply WAL again: it catches up and serves reads as before.
    #[command(after_help = "Example:\n  pgreplica local resume-replay c")]
    ResumeReplay {
        /// The member to let catch up.
        member: String,
        /// State directory (default ./.pgreplica/<cluster>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// How long to wait for the member to stream again before giving up (exit code 4).
        #[arg(long, default_value_t = 60)]
        timeout_seconds: u64,
    },
    /// Move the primary to MEMBER with a clean switchover (no acknowledged commit is lost).
    #[command(
        after_help = "Example:\n  pgreplica local switchover --to b   (failback: Manual, or b is spec.primary)"
    )]
    Switchover {
        /// The member to become the primary.
        #[arg(long)]
        to: String,
        /// State directory (default ./.pgreplica/<cluster>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// How long to wait before giving up (exit code 4).
        #[arg(long, default_value_t = 120)]
        timeout_seconds: u64,
    },
    /// Restart MEMBER's PostgreSQL (or every member's), one member at a time: standbys first, the
    /// primary last after a clean switchover.
    #[command(after_help = "Example:\n  pgreplica local restart c\n  pgreplica local restart")]
    Restart {
        /// One member (default: every member).
        member: Option<String>,
        /// State directory (default ./.pgreplica/<cluster>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// How long to wait before giving up (exit code 4).
        #[arg(long, default_value_t = 300)]
        timeout_seconds: u64,
    },
    /// Have MEMBER's PostgreSQL (or every member's) read its configuration and certificates again,
    /// without a restart; prints what still waits for one.
    #[command(after_help = "Example:\n  pgreplica local reload")]
    Reload {
        /// One member (default: every member).
        member: Option<String>,
        /// State directory (default ./.pgreplica/<cluster>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// How long to wait before giving up (exit code 4).
        #[arg(long, default_value_t = 60)]
        timeout_seconds: u64,
    },
    /// Apply a changed cluster file to a running cluster (members, modes, delays, primary).
    #[command(after_help = "Example:\n  pgreplica local apply -f examples/lab.yaml")]
    Apply {
        /// The cluster file (YAML, one PgReplicaCluster).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// State directory (default ./.pgreplica/<cluster>).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the last lines of a member's log (or the brain's).
    #[command(after_help = "Example:\n  pgreplica local logs a -f\n  pgreplica local logs -n 500")]
    Logs {
        /// The member whose log to print (default: the brain's).
        member: Option<String>,
        /// State directory (default ./.pgreplica/<cluster>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print only the last N lines (default: the whole log, as `kubectl logs` does).
        #[arg(short = 'n', long, value_name = "N")]
        lines: Option<usize>,
        /// Keep printing what is written to the log, until interrupted (Ctrl-C).
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Stop the cluster (PostgreSQL stops cleanly); data is kept unless --purge.
    #[command(after_help = "Example:\n  pgreplica local down\n  pgreplica local down --purge")]
    Down {
        /// State directory (default ./.pgreplica/<cluster>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Also delete the data, logs, passwords and certificates (cannot be undone).
        #[arg(long)]
        purge: bool,
    },
    /// Run the brain in this process (what `up --detach` starts in the background).
    #[command(hide = true)]
    Brain {
        /// State directory (default ./.pgreplica/<cluster>).
        #[arg(long)]
        dir: PathBuf,
    },
}

pub async fn run(cmd: LocalCommand) -> Result<(), LocalError> {
    match cmd {
        LocalCommand::Up {
            file,
            dir,
            rw_port,
            ro_port,
            detach,
            timeout_seconds,
            replace_spec,
        } => {
            up(
                &file,
                dir.as_deref(),
                (rw_port, ro_port),
                detach,
                timeout_seconds,
                replace_spec,
            )
            .await
        }
        LocalCommand::Status { dir, output, watch } => {
            super::quiet_on_a_closed_pipe();
            if watch {
                watch_status(dir.as_deref(), &output).await
            } else {
                status(dir.as_deref(), &output)
            }
        }
        LocalCommand::Events { dir, watch } => {
            super::quiet_on_a_closed_pipe();
            events(dir.as_deref(), watch).await
        }
        LocalCommand::Env {
            dir,
            ro,
            app,
            member,
        } => env(dir.as_deref(), ro, app, member.as_deref()),
        LocalCommand::PauseReplay {
            member,
            dir,
            timeout_seconds,
        } => replay(&member, true, dir.as_deref(), timeout_seconds).await,
        LocalCommand::ResumeReplay {
            member,
            dir,
            timeout_seconds,
        } => replay(&member, false, dir.as_deref(), timeout_seconds).await,
        LocalCommand::Restart {
            member,
            dir,
            timeout_seconds,
        } => {
            member_request(
                Kind::Restart,
                member.as_deref(),
                dir.as_deref(),
                timeout_seconds,
            )
            .await
        }
        LocalCommand::Reload {
            member,
            dir,
            timeout_seconds,
        } => {
            member_request(
                Kind::Reload,
                member.as_deref(),
                dir.as_deref(),
                timeout_seconds,
            )
            .await
        }
        LocalCommand::Switchover {
            to,
            dir,
            timeout_seconds,
        } => switchover(&to, dir.as_deref(), timeout_seconds).await,
        LocalCommand::Apply { file, dir } => apply(&file, dir.as_deref()),
        LocalCommand::Logs {
            member,
            dir,
            lines,
            follow,
        } => {
            super::quiet_on_a_closed_pipe();
            logs(member.as_deref(), dir.as_deref(), lines, follow).await
        }
        LocalCommand::Down { dir, purge } => down(dir.as_deref(), purge).await,
        LocalCommand::Brain { dir } => {
            // its stdout is its log file: the story is told there once, as log lines
            brain::tell_story(false, true);
            brain::run(Layout::new(dir)).await
        }
    }
}

fn read_cluster_file(file: &Path) -> Result<(String, crate::api::PgReplicaCluster), LocalError> {
    let text = std::fs::read_to_string(file)
        .map_err(LocalError::io(format!("read {}", file.display())))?;
    let valid = parse_and_validate(&text).map_err(|e| {
        LocalError::Invalid(format!(
            "{} is invalid (nothing was started or changed):\n{e}",
            file.display()
        ))
    })?;
    for w in &valid.warnings {
        eprintln!("warning: {w}");
    }
    Ok((text, valid.cluster))
}

async fn up(
    file: &Path,
    dir: Option<&Path>,
    (rw_port, ro_port): (Option<u16>, Option<u16>),
    detach: bool,
    timeout_seconds: u64,
    replace_spec: bool,
) -> Result<(), LocalError> {
    let (text, cluster) = read_cluster_file(file)?;
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let layout = Layout::new(resolve_dir(dir, Some(&name))?);
    let mut existing = LocalState::load(&layout)?;
    if existing.is_none() {
        existing = LocalState::recover(
            &layout,
            rw_port.unwrap_or(DEFAULT_RW_PORT),
            ro_port.unwrap_or(DEFAULT_RO_PORT),
        );
        if let Some(s) = &existing {
            eprintln!(
                "note: {} was missing: recovered the ports of {} member(s) from their agent configurations",
                layout.state_file().display(),
                s.members.len()
            );
        }
    }
    if let Some(state) = &existing {
        if state.cluster != name {
            return Err(LocalError::OtherCluster {
                dir: layout.dir.clone(),
                found: state.cluster.clone(),
                wanted: name,
            });
        }
    }
    if let Some(pid) = layout.running_brain() {
        return Err(LocalError::AlreadyRunning { cluster: name, pid });
    }
    // PostgreSQL programs must exist before anything is written, and be able to reach it
    crate::postgres::Programs::detect(None, None)?;
    crate::runtime::local::preflight::state_dir_reachable(
        &layout.dir,
        crate::postgres::RunAs::detect(None)?,
    )?;
    let host = "127.0.0.1".to_string();
    let state = match existing {
        Some(mut s) => {
            if rw_port.is_some_and(|p| p != s.rw_port) || ro_port.is_some_and(|p| p != s.ro_port) {
                eprintln!(
                    "note: keeping the endpoint ports chosen at the first start ({} and {})",
                    s.rw_port, s.ro_port
                );
            }
            s.assign_ports(cluster.spec.members.iter().map(|m| m.name.as_str()))?;
            s
        }
        None => {
            let mut s = LocalState {
                cluster: name.clone(),
                host: host.clone(),
                rw_port: rw_port.unwrap_or(DEFAULT_RW_PORT),
                ro_port: ro_port.unwrap_or(DEFAULT_RO_PORT),
                members: Default::default(),
                generation: 1,
            };
            s.assign_ports(cluster.spec.members.iter().map(|m| m.name.as_str()))?;
            s
        }
    };
    if !port_is_free(&state.host, state.rw_port) {
        return Err(LocalError::PortBusy {
            port: state.rw_port,
            what: "read-write endpoint",
            flag: "--rw-port",
        });
    }
    if !port_is_free(&state.host, state.ro_port) {
        return Err(LocalError::PortBusy {
            port: state.ro_port,
            what: "read-only endpoint",
            flag: "--ro-port",
        });
    }
    let mut state = state;
    if let Ok(applied) = crate::runtime::local::brain::load_spec(&layout) {
        let changes = crate::api::changes::describe(&applied.spec, &cluster.spec);
        if !changes.is_empty() {
            if !replace_spec {
                return Err(LocalError::SpecDiffers {
                    file: file.display().to_string(),
                    current: layout.spec_file().display().to_string(),
                    changes: bullets(&changes),
                });
            }
            state.generation += 1;
            println!(
                "replacing the applied spec with {} (generation {}):\n{}",
                file.display(),
                state.generation,
                bullets(&changes)
            );
        }
    }
    std::fs::create_dir_all(layout.logs_dir())
        .map_err(LocalError::io(format!("create {}", layout.dir.display())))?;
    crate::postgres::create_private_dir(&layout.secrets_dir(), None)?;
    secrets::ensure(&layout.superuser_password())?;
    secrets::ensure(&layout.replication_password())?;
    secrets::ensure(&layout.app_password())?;
    state.save(&layout)?;
    crate::runtime::local::layout::write_atomic(&layout.spec_file(), text.as_bytes())?;

    if !detach {
        // the log goes where `pgreplica local logs` reads it; the terminal gets the story
        let log_path = layout.log_file("brain");
        super::log_sink::to_file(&log_path)
            .map_err(LocalError::io(format!("open {}", log_path.display())))?;
        brain::tell_story(true, true);
        progress(&format!(
            "log: {} (`pgreplica local logs{} -f`); Ctrl-C stops the cluster",
            log_path.display(),
            layout.dir_flag()
        ));
        return brain::run(layout).await;
    }
    let log_path = layout.log_file("brain");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(LocalError::io(format!("open {}", log_path.display())))?;
    let err = log.try_clone().map_err(LocalError::io("dup log"))?;
    let exe = std::env::current_exe().map_err(LocalError::io("find the pgreplica binary"))?;
    let mut child = std::process::Command::new(exe)
        .args(["local", "brain", "--dir"])
        .arg(&layout.dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(LocalError::io("start the brain in the background"))?;
    progress(&format!(
        "brain started in the background (pid {}), log {}",
        child.id(),
        log_path.display()
    ));
    let began = Instant::now();
    // a status file from an earlier brain says nothing about this one
    let started_at = jiff::Timestamp::now();
    let mut last_line = String::new();
    // member → (its error's first line, since when it has said so without being ready)
    let mut failing: std::collections::BTreeMap<String, (String, Instant)> = Default::default();
    loop {
        if let Ok(Some(exit)) = child.try_wait() {
            return Err(LocalError::Failed(format!(
                "the brain exited ({exit}); last lines of {}:\n{}",
                log_path.display(),
                tail(&log_path, 20)
            )));
        }
        let fresh = LocalStatus::load(&layout).ok().flatten().filter(|s| {
            s.updated_at
                .parse::<jiff::Timestamp>()
                .is_ok_and(|t| t >= started_at)
        });
        if let Some(status) = fresh {
            let line = format!(
                "{} {} primary={} [{}]",
                status.phase.as_deref().unwrap_or("-"),
                status.ready_members.as_deref().unwrap_or("-"),
                status.current_primary.as_deref().unwrap_or("-"),
                status
                    .members
                    .iter()
                    .map(|m| match &m.last_error {
                        Some(e) if !m.ready => format!(
                            "{}: {} (last error: {})",
                            m.name,
                            super::status_table::one_line(&m.activity),
                            super::status_table::one_line(e)
                        ),
                        _ => format!("{}: {}", m.name, super::status_table::one_line(&m.activity)),
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            if line != last_line {
                progress(&line);
                last_line = line;
            }
            if let Some((member, cause)) = persistent_failure(&status, &mut failing) {
                return Err(LocalError::Failed(format!(
                    "{member} has failed with the same error for {} s: {cause}\nthe cluster keeps trying in the background: `pgreplica local logs {member}` shows why, `pgreplica local down` stops it",
                    PERSISTENT_FAILURE.as_secs()
                )));
            }
            if status.running && status.is_ready() {
                println!(
                    "ready: rw {}, ro {}; connect with: eval \"$(pgreplica local env{})\"; psql",
                    status.endpoints.rw,
                    status.endpoints.ro,
                    layout.dir_flag()
                );
                return Ok(());
            }
        }
        if began.elapsed() > Duration::from_secs(timeout_seconds) {
            return Err(LocalError::TimedOut(format!(
                "the cluster is not ready after {timeout_seconds} s (it keeps trying in the background): see `pgreplica local status` and `pgreplica local logs`"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn layout_for(dir: Option<&Path>) -> Result<Layout, LocalError> {
    let layout = Layout::new(resolve_dir(dir, None)?);
    if !layout.state_file().exists() {
        return Err(LocalError::NoCluster(layout.dir));
    }
    Ok(layout)
}

/// How long a member may report the same error, not ready, before `up --detach` gives up on it.
const PERSISTENT_FAILURE: Duration = Duration::from_secs(30);

/// A member that has reported the same error, without being ready, for [`PERSISTENT_FAILURE`]:
/// its name and the error. `failing` carries what was seen from one look to the next.
fn persistent_failure(
    status: &LocalStatus,
    failing: &mut std::collections::BTreeMap<String, (String, Instant)>,
) -> Option<(String, String)> {
    for m in &status.members {
        match m.last_error.as_deref().filter(|_| !m.ready) {
            Some(e) => {
                let cause = super::status_table::one_line(e);
                let seen = failing
                    .entry(m.name.clone())
                    .or_insert_with(|| (cause.clone(), Instant::now()));
                if seen.0 != cause {
                    *seen = (cause, Instant::now());
                } else if seen.1.elapsed() >= PERSISTENT_FAILURE {
                    return Some((m.name.clone(), e.trim().to_string()));
                }
            }
            None => {
                failing.remove(&m.name);
            }
        }
    }
    None
}

fn load_status(layout: &Layout) -> Result<LocalStatus, LocalError> {
    let Some(mut status) = LocalStatus::load(layout)? else {
        return Err(LocalError::Failed(
            "no status yet: the cluster has not started".into(),
        ));
    };
    status.running = status.running && layout.running_brain().is_some();
    Ok(status)
}

fn render_status(status: &LocalStatus, output: &str) -> Result<String, LocalError> {
    match output {
        "json" => serde_json::to_string_pretty(status)
            .map(|t| t + "\n")
            .map_err(|e| LocalError::Failed(e.to_string())),
        "table" => Ok(super::status_table::render(status)),
        other => Err(LocalError::Invalid(format!(
            "-o {other}: use table or json"
        ))),
    }
}

fn not_running(status: &LocalStatus) -> Result<(), LocalError> {
    if status.running {
        Ok(())
    } else {
        Err(LocalError::Refused(format!(
            "cluster {} is not running: `pgreplica local up -f FILE` starts it",
            status.cluster
        )))
    }
}

fn status(dir: Option<&Path>, output: &str) -> Result<(), LocalError> {
    let layout = layout_for(dir)?;
    let status = load_status(&layout)?;
    print!("{}", render_status(&status, output)?);
    not_running(&status)
}

/// `status --watch`: the status again each time it changes (its time of writing aside).
async fn watch_status(dir: Option<&Path>, output: &str) -> Result<(), LocalError> {
    let layout = layout_for(dir)?;
    let mut shown = String::new();
    loop {
        let mut status = load_status(&layout)?;
        let at = std::mem::take(&mut status.updated_at);
        let text = render_status(&status, output)?;
        if text != shown {
            if output == "table" {
                println!("--- {at}");
            }
            print!("{text}");
            shown = text;
        }
        not_running(&status)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `events`: the kept events, oldest first; with `--watch`, then every new one.
async fn events(dir: Option<&Path>, watch: bool) -> Result<(), LocalError> {
    let layout = layout_for(dir)?;
    let mut last: Option<crate::runtime::local::status_file::LocalEvent> = None;
    loop {
        let status = load_status(&layout)?;
        // events are only ever appended (the oldest dropped past 100): print those after the
        // last one printed
        let start = last
            .as_ref()
            .and_then(|l| status.events.iter().rposition(|e| e == l))
            .map_or(0, |i| i + 1);
        for e in &status.events[start..] {
            println!("{}", super::status_table::event_line(e));
        }
        if let Some(e) = status.events.last() {
            last = Some(e.clone());
        }
        if !watch {
            return Ok(());
        }
        not_running(&status)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn env(dir: Option<&Path>, ro: bool, app: bool, member: Option<&str>) -> Result<(), LocalError> {
    let layout = layout_for(dir)?;
    let state =
        LocalState::load(&layout)?.ok_or_else(|| LocalError::NoCluster(layout.dir.clone()))?;
    let (user, database, password) = if app {
        let spec = brain::load_spec(&layout)?.spec.application;
        (
            spec.user,
            spec.database,
            secrets::read(&layout.app_password())?,
        )
    } else {
        (
            SUPERUSER.to_string(),
            "postgres".to_string(),
            secrets::read(&layout.superuser_password())?,
        )
    };
    let port = match member {
        Some(m) => {
            state
                .members
                .get(m)
                .ok_or_else(|| {
                    LocalError::Invalid(format!(
                        "{m} is not a member of cluster {} (members: {})",
                        state.cluster,
                        state.members.keys().cloned().collect::<Vec<_>>().join(", ")
                    ))
                })?
                .postgres
        }
        None if ro => state.ro_port,
        None => state.rw_port,
    };
    // Every member's certificate names loopback: psql verifies it against the cluster CA.
    let tls = match state.host.as_str() {
        "127.0.0.1" | "localhost" => format!(
            "PGSSLMODE=verify-full PGSSLROOTCERT={}",
            shell_quote(
                &std::path::absolute(layout.tls_dir().join("ca.crt"))
                    .unwrap_or_else(|_| layout.tls_dir().join("ca.crt"))
                    .to_string_lossy()
            )
        ),
        _ => "PGSSLMODE=require".to_string(),
    };
    println!(
        "export PGHOST={} PGPORT={port} PGUSER={user} PGPASSWORD={} PGDATABASE={database} {tls}",
        state.host,
        shell_quote(&password)
    );
    Ok(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Ask for a restart or reload (a file the brain reads) and wait until every member asked has
/// done it.
async fn member_request(
    kind: Kind,
    member: Option<&str>,
    dir: Option<&Path>,
    timeout_seconds: u64,
) -> Result<(), LocalError> {
    let layout = layout_for(dir)?;
    if layout.running_brain().is_none() {
        return Err(LocalError::Refused(
            "the cluster is not running: `pgreplica local up` first".into(),
        ));
    }
    let spec = crate::runtime::local::brain::load_spec(&layout)?;
    let names = spec.spec.member_names();
    if let Some(m) = member.filter(|m| !names.iter().any(|n| n == m)) {
        return Err(LocalError::Invalid(format!(
            "{m} is not a member of cluster {}: members are {}",
            spec.metadata.name.clone().unwrap_or_default(),
            names.join(", ")
        )));
    }
    let request = Kind::request(member);
    let json = serde_json::to_vec(&request).map_err(|e| LocalError::Failed(e.to_string()))?;
    let file = match kind {
        Kind::Restart => layout.restart_request(),
        Kind::Reload => layout.reload_request(),
    };
    crate::runtime::local::layout::write_atomic(&file, &json)?;
    let targets: Vec<String> = member.map_or(names, |m| vec![m.to_string()]);
    progress(&kind.announce(&targets));
    let began = Instant::now();
    let mut seen = LocalStatus::load(&layout)?.map_or(0, |s| s.events.len());
    loop {
        if let Some(status) = LocalStatus::load(&layout)? {
            for e in status.events.iter().skip(seen.min(status.events.len())) {
                progress(&format!("{} {}", e.reason, e.message));
            }
            seen = status.events.len();
            let healthy = status.phase.as_deref() == Some("Healthy");
            if let Some(lines) =
                kind.finished(&status.status.members, &targets, request.at_ms, healthy)
            {
                for line in lines {
                    progress(&line);
                }
                return Ok(());
            }
        }
        if began.elapsed() > Duration::from_secs(timeout_seconds) {
            return Err(LocalError::TimedOut(
                kind.late(timeout_seconds, "pgreplica local status"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn switchover(to: &str, dir: Option<&Path>, timeout_seconds: u64) -> Result<(), LocalError> {
    let layout = layout_for(dir)?;
    if layout.running_brain().is_none() {
        return Err(LocalError::Refused(
            "the cluster is not running: `pgreplica local up` first".into(),
        ));
    }
    let members = crate::runtime::local::brain::load_spec(&layout)?
        .spec
        .member_names();
    if !members.iter().any(|m| m == to) {
        return Err(LocalError::Invalid(format!(
            "{to} is not a member of this cluster (members: {})",
            members.join(", ")
        )));
    }
    let before = LocalStatus::load(&layout)?
        .map(|s| s.events.len())
        .unwrap_or(0);
    crate::runtime::local::layout::write_atomic(&layout.switchover_request(), to.as_bytes())?;
    progress(&format!("switchover to {to} requested"));
    let began = Instant::now();
    let mut seen = before;
    loop {
        if let Some(status) = LocalStatus::load(&layout)? {
            for e in status.events.iter().skip(seen.min(status.events.len())) {
                // the refusal is the command's error, printed once
                if e.reason == "SwitchoverRefused" {
                    return Err(LocalError::Refused(e.message.clone()));
                }
                progress(&format!("{} {}", e.reason, e.message));
            }
            seen = status.events.len();
            if status.current_primary.as_deref() == Some(to)
                && status.target_primary.as_deref() == Some(to)
                && !layout.switchover_request().exists()
            {
                progress(&format!("{to} is the primary"));
                return Ok(());
            }
        }
        if began.elapsed() > Duration::from_secs(timeout_seconds) {
            return Err(LocalError::TimedOut(format!(
                "switchover to {to} did not finish in {timeout_seconds} s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn apply(file: &Path, dir: Option<&Path>) -> Result<(), LocalError> {
    let (text, cluster) = read_cluster_file(file)?;
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let layout = Layout::new(resolve_dir(dir, Some(&name))?);
    let source = file.display().to_string();
    if let Ok(applied) = brain::load_spec(&layout) {
        let resumed = replay::would_resume(&applied.spec, &cluster.spec);
        if !resumed.is_empty() {
            return Err(LocalError::Refused(replay::resume_refused(
                &source, &resumed,
            )));
        }
    }
    apply_text(&layout, &source, &text, &cluster)
}

/// Apply a validated spec (`text`, from `source`) to the cluster of `layout`.
fn apply_text(
    layout: &Layout,
    source: &str,
    text: &str,
    cluster: &crate::api::PgReplicaCluster,
) -> Result<(), LocalError> {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let state =
        LocalState::load(layout)?.ok_or_else(|| LocalError::NoCluster(layout.dir.clone()))?;
    if state.cluster != name {
        return Err(LocalError::OtherCluster {
            dir: layout.dir.clone(),
            found: state.cluster,
            wanted: name,
        });
    }
    let applied = crate::runtime::local::brain::load_spec(layout).ok();
    let changes = applied
        .map(|a| crate::api::changes::describe(&a.spec, &cluster.spec))
        .unwrap_or_else(|| vec!["the whole spec (the applied one could not be read)".into()]);
    if changes.is_empty() {
        println!(
            "{source}: nothing changed (cluster {name} stays at generation {})",
            state.generation
        );
        return Ok(());
    }
    let mut state = state;
    state.generation += 1;
    // the generation first: the brain reads it when it sees the new spec file
    state.save(layout)?;
    crate::runtime::local::layout::write_atomic(&layout.spec_file(), text.as_bytes())?;
    let when = if layout.running_brain().is_some() {
        "the brain acts on it within a second; follow it with `pgreplica local status`"
    } else {
        "the cluster is not running: it takes effect at the next `pgreplica local up`"
    };
    println!(
        "applied {source} to cluster {name} (generation {}); {when}:\n{}",
        state.generation,
        bullets(&changes)
    );
    Ok(())
}

/// `pause-replay` / `resume-replay`: set `replayPaused` on MEMBER in the applied spec, then wait
/// until the member is paused (its status says what its data is from) or streams again.
async fn replay(
    member: &str,
    pause: bool,
    dir: Option<&Path>,
    timeout_seconds: u64,
) -> Result<(), LocalError> {
    let layout = layout_for(dir)?;
    if layout.running_brain().is_none() {
        return Err(LocalError::Refused(format!(
            "cluster in {} is not running: start it with `pgreplica local up -f FILE --detach`",
            layout.dir.display()
        )));
    }
    let mut cluster = brain::load_spec(&layout)?;
    replay::set(&mut cluster, member, pause).map_err(LocalError::Invalid)?;
    let text = serde_yaml::to_string(&cluster)
        .map_err(|e| LocalError::Failed(format!("cannot write the spec: {e}")))?;
    // `replay::set` checked the edited spec with the CRD's rules: no second parse
    apply_text(&layout, replay::verb(pause), &text, &cluster)?;
    let began = Instant::now();
    loop {
        let status = load_status(&layout)?;
        let row = status.members.iter().find(|m| m.name == member);
        match row {
            Some(r)
                if pause
                    && replay::reached(pause, r.frozen_at.as_deref(), r.ready)
                    && r.activity.starts_with("replay paused") =>
            {
                println!(
                    "{member}: {}\nread it with: eval \"$(pgreplica local env{} --member {member})\"; psql\n`pgreplica local resume-replay {member}` lets it catch up",
                    r.activity,
                    layout.dir_flag()
                );
                return Ok(());
            }
            Some(r) if !pause && replay::reached(pause, r.frozen_at.as_deref(), r.ready) => {
                println!(
                    "{member}: replay resumed; it is catching up ({})",
                    r.activity
                );
                return Ok(());
            }
            _ => {}
        }
        if began.elapsed() > Duration::from_secs(timeout_seconds) {
            return Err(LocalError::TimedOut(format!(
                "{member} has not {} after {timeout_seconds} s ({}): see `pgreplica local status` and `pgreplica local logs {member}`",
                if pause { "paused" } else { "resumed streaming" },
                row.map(|r| r.activity.as_str()).unwrap_or("not in the status")
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn bullets(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("  - {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn logs(
    member: Option<&str>,
    dir: Option<&Path>,
    lines: Option<usize>,
    follow: bool,
) -> Result<(), LocalError> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let layout = layout_for(dir)?;
    let path = layout.log_file(member.unwrap_or("brain"));
    // read once: what follows with -f starts where this ends, no line twice or lost
    let text = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LocalError::Failed(format!("no log at {}", path.display())),
        _ => LocalError::io(format!("read {}", path.display()))(e),
    })?;
    let mut offset = text.len() as u64;
    {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(last_lines(&text, lines.unwrap_or(usize::MAX)));
        let _ = out.flush();
    }
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue;
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        // a log written again from the start (`down --purge` and `up`): follow the new one
        if len < offset {
            offset = 0;
        }
        if len == offset {
            continue;
        }
        let mut new = Vec::new();
        if file.seek(SeekFrom::Start(offset)).is_ok() && file.read_to_end(&mut new).is_ok() {
            offset += new.len() as u64;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&new);
            let _ = out.flush();
        }
    }
}

/// The last `n` lines of a log's bytes (all of them when it has fewer).
fn last_lines(text: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut seen = 0;
    for (i, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            seen += 1;
            if seen == n {
                return &text[i + 1..];
            }
        }
    }
    text
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n") + "\n"
}

async fn down(dir: Option<&Path>, purge: bool) -> Result<(), LocalError> {
    let layout = layout_for(dir)?;
    if let Some(pid) = layout.running_brain() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        progress(&format!("stopping the cluster (brain pid {pid})"));
        let began = Instant::now();
        while layout.running_brain().is_some() {
            if began.elapsed() > Duration::from_secs(120) {
                return Err(LocalError::TimedOut(format!(
                    "the brain (pid {pid}) did not stop within 120 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        progress("stopped");
    } else {
        progress("the cluster is not running");
    }
    // agents outlive a brain that was killed: stop the ones still running
    if let Ok(Some(state)) = LocalState::load(&layout) {
        let names: Vec<String> = state.members.keys().cloned().collect();
        let mut supervisor = crate::runtime::local::members::Supervisor::new(layout.clone())?;
        let adopted = supervisor.adopt(&names);
        if !adopted.is_empty() {
            progress(&format!(
                "stopping {} agent(s) left running by a brain that died",
                adopted.len()
            ));
            supervisor.stop_all(Duration::from_secs(90)).await;
        }
    }
    if purge {
        std::fs::remove_dir_all(&layout.dir)
            .map_err(LocalError::io(format!("remove {}", layout.dir.display())))?;
        progress(&format!("removed {}", layout.dir.display()));
    } else {
        progress(&format!("data kept in {}", layout.dir.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn the_last_lines_of_a_log() {
        let log = b"one\ntwo\nthree\n";
        let table: [(usize, &[u8]); 5] = [
            (0, b""),
            (1, b"three\n"),
            (2, b"two\nthree\n"),
            (3, b"one\ntwo\nthree\n"),
            (usize::MAX, b"one\ntwo\nthree\n"),
        ];
        for (n, want) in table {
            assert_eq!(last_lines(log, n), want, "{n}");
        }
        // a last line still being written has no newline yet
        assert_eq!(last_lines(b"one\ntwo", 1), b"two");
        assert_eq!(last_lines(b"", 5), b"");
    }
}
