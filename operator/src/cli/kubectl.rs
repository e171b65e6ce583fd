//! The kubectl plugin face (`pgreplica` installed as `kubectl-pgrc`):
//! `kubectl pgrc status NAME`, `kubectl pgrc switchover NAME --to MEMBER`,
//! `kubectl pgrc restart NAME [MEMBER]`, `kubectl pgrc reload NAME [MEMBER]`,
//! `kubectl pgrc pause-replay NAME MEMBER`, `kubectl pgrc resume-replay NAME MEMBER`.

use std::time::{Duration, Instant};

use clap::Subcommand;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::member_request::Kind;
use crate::api::PgReplicaCluster;
use crate::runtime::kube::error::KubeError;
use crate::runtime::kube::labels::{
    RELOAD_ANNOTATION, RESTART_ANNOTATION, SWITCHOVER_TO_ANNOTATION,
};
use crate::runtime::kube::names;
use crate::runtime::local::status_file::{Endpoints, LocalMember, LocalStatus};

/// Which cluster, and how to reach the API server (kubectl's own flags).
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The PgReplicaCluster.
    pub name: String,
    /// The cluster's namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config; in a pod, its service account).
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,
}

/// How long to wait, as kubectl says it (`--timeout=10m`).
#[derive(Debug, clap::Args)]
pub struct Wait {
    /// How long to wait before giving up (exit code 4): 90s, 10m, 1h30m; a plain number is seconds.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// The same in seconds (older spelling).
    #[arg(long, hide = true)]
    pub timeout_seconds: Option<u64>,
}

impl Wait {
    fn seconds(&self, default: u64) -> u64 {
        self.timeout
            .map(|d| d.as_secs().max(1))
            .or(self.timeout_seconds)
            .unwrap_or(default)
    }
}

/// A duration as kubectl writes one: `90s`, `10m`, `1h30m`, `500ms`; a plain number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let bad = || format!("{text:?} is not a duration: write 90s, 10m or 1h30m");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let after = &rest[digits..];
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let millis = match &after[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        total += Duration::from_millis(number.saturating_mul(millis));
        rest = &after[unit_len..];
    }
    Ok(total)
}

#[derive(Debug, Subcommand)]
pub enum KubectlCommand {
    /// The member table of a cluster (roles, sync state, lag, timeline).
    #[command(
        after_help = "Example:\n  kubectl pgrc status lab -n db\n  kubectl pgrc status lab -o json"
    )]
    Status {
        #[command(flatten)]
        target: Target,
        /// Output format: the table, or the cluster object's status as JSON or YAML.
        #[arg(short = 'o', long = "output", default_value = "table", value_parser = ["table", "json", "yaml"])]
        output: String,
    },
    /// Move the primary to MEMBER with a clean switchover.
    #[command(after_help = "Example:\n  kubectl pgrc switchover lab --to a --timeout=5m")]
    Switchover {
        #[command(flatten)]
        target: Target,
        /// The member to become the primary.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Restart MEMBER's PostgreSQL (or every member's), one member at a time: standbys first, the
    /// primary last after a clean switchover.
    #[command(after_help = "Example:\n  kubectl pgrc restart lab c")]
    Restart {
        #[command(flatten)]
        target: Target,
        /// One member (default: every member).
        member: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Freeze MEMBER (an Async standby, such as the delayed c): it applies no more WAL, keeps its
    /// data as it is now, serves no reads through the -ro Service and is never promoted, until
    /// resume-replay. Sets spec.members[].replayPaused, so the operator keeps it.
    #[command(
        after_help = "Example: rows of t were deleted by mistake 2 s ago; c applies WAL 3 s late\n  kubectl pgrc pause-replay lab c\n  kubectl exec lab-c -c postgres -- sh -c 'PGPASSWORD=$(cat /etc/pgreplica/superuser/password) psql -h 127.0.0.1 -U postgres -d app -c \"\\copy t to stdout csv\"' > t.csv\n  kubectl pgrc resume-replay lab c"
    )]
    PauseReplay {
        #[command(flatten)]
        target: Target,
        /// The member to freeze.
        member: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Let a paused MEMBER apply WAL again: it catches up and serves reads as before.
    #[command(after_help = "Example:\n  kubectl pgrc resume-replay lab c")]
    ResumeReplay {
        #[command(flatten)]
        target: Target,
        /// The member to let catch up.
        member: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Have MEMBER's PostgreSQL (or every member's) read its configuration and certificates
    /// again, without a restart; prints what still waits for one.
    #[command(after_help = "Example:\n  kubectl pgrc reload lab")]
    Reload {
        #[command(flatten)]
        target: Target,
        /// One member (default: every member).
        member: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
}

async fn api(target: &Target) -> Result<Api<PgReplicaCluster>, KubeError> {
    let client = if target.context.is_none() && target.kubeconfig.is_none() {
        kube::Client::try_default()
            .await
            .map_err(KubeError::Client)?
    } else {
        let options = kube::config::KubeConfigOptions {
            context: target.context.clone(),
            ..Default::default()
        };
        let config = match &target.kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    KubeError::Invalid(format!("cannot read kubeconfig {}: {e}", path.display()))
                })?;
                kube::Config::from_custom_kubeconfig(file, &options).await
            }
            None => kube::Config::from_kubeconfig(&options).await,
        }
        .map_err(|e| KubeError::Invalid(format!("kubeconfig: {e}")))?;
        kube::Client::try_from(config).map_err(KubeError::Client)?
    };
    Ok(match &target.namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::default_namespaced(client),
    })
}

pub async fn run(cmd: KubectlCommand) -> Result<(), KubeError> {
    match cmd {
        KubectlCommand::Status { target, output } => {
            let api = api(&target).await?;
            let name = &target.name;
            let cluster =
                api.get(name)
                    .await
                    .map_err(KubeError::api("get", "PgReplicaCluster", name))?;
            match output.as_str() {
                "json" => println!(
                    "{}",
                    serde_json::to_string_pretty(&cluster.status)
                        .map_err(|e| KubeError::Other(e.to_string()))?
                ),
                "yaml" => print!(
                    "{}",
                    serde_yaml::to_string(&cluster.status)
                        .map_err(|e| KubeError::Other(e.to_string()))?
                ),
                _ => print!("{}", super::status_table::render(&as_table(&cluster))),
            }
            Ok(())
        }
        KubectlCommand::Restart {
            target,
            member,
            wait,
        } => {
            let api = api(&target).await?;
            member_request(Kind::Restart, &api, &target.name, member, wait.seconds(300)).await
        }
        KubectlCommand::Reload {
            target,
            member,
            wait,
        } => {
            let api = api(&target).await?;
            member_request(Kind::Reload, &api, &target.name, member, wait.seconds(60)).await
        }
        KubectlCommand::PauseReplay {
            target,
            member,
            wait,
        } => replay(&target, &member, true, wait.seconds(60)).await,
        KubectlCommand::ResumeReplay {
            target,
            member,
            wait,
        } => replay(&target, &member, false, wait.seconds(60)).await,
        KubectlCommand::Switchover { target, to, wait } => {
            let timeout_seconds = wait.seconds(120);
            let api = api(&target).await?;
            let name = target.name;
            let cluster =
                api.get(&name)
                    .await
                    .map_err(KubeError::api("get", "PgReplicaCluster", &name))?;
            if cluster.spec.member(&to).is_none() {
                return Err(KubeError::Invalid(format!(
                    "{to} is not a member of {name} (members: {})",
                    cluster.spec.member_names().join(", ")
                )));
            }
            let patch = json!({"metadata": {"annotations": {SWITCHOVER_TO_ANNOTATION: to}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(KubeError::api("annotate", "PgReplicaCluster", &name))?;
            println!("switchover of {name} to {to} requested");
            let began = Instant::now();
            loop {
                let cluster = api.get(&name).await.map_err(KubeError::api(
                    "get",
                    "PgReplicaCluster",
                    &name,
                ))?;
                let status = cluster.status.clone().unwrap_or_default();
                let pending = cluster.annotations().contains_key(SWITCHOVER_TO_ANNOTATION);
                if !pending && status.current_primary.as_deref() == Some(to.as_str()) {
                    println!("{to} is the primary");
                    return Ok(());
                }
                if !pending && status.target_primary.as_deref() != Some(to.as_str()) {
                    return Err(KubeError::Refused(format!(
                        "switchover to {to} was refused: see `kubectl describe pgrc {name}` (Events)"
                    )));
                }
                if began.elapsed() > Duration::from_secs(timeout_seconds) {
                    return Err(KubeError::TimedOut(format!(
                        "switchover to {to} did not finish in {timeout_seconds} s"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Set `replayPaused` on MEMBER in the cluster's spec (a JSON patch guarded by the member's name,
/// so a concurrent edit of the member list fails instead of pausing another member), then wait
/// until it is paused or streams again.
async fn replay(
    target: &Target,
    member: &str,
    pause: bool,
    timeout_seconds: u64,
) -> Result<(), KubeError> {
    let api = api(target).await?;
    let name = target.name.as_str();
    let get = || async {
        api.get(name)
            .await
            .map_err(KubeError::api("get", "PgReplicaCluster", name))
    };
    let mut cluster = get().await?;
    let index = super::replay::set(&mut cluster, member, pause).map_err(KubeError::Invalid)?;
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": format!("/spec/members/{index}/name"), "value": member},
        {"op": "add", "path": format!("/spec/members/{index}/replayPaused"), "value": pause},
    ]))
    .map_err(|e| KubeError::Other(e.to_string()))?;
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|e| match e {
            // the CRD's rules refused it, or the member list changed under us (the test op)
            kube::Error::Api(status) if status.code == 422 => KubeError::Invalid(format!(
                "cannot {} {member}: {}",
                super::replay::verb(pause),
                status.message
            )),
            e => KubeError::api(super::replay::verb(pause), "PgReplicaCluster", name)(e),
        })?;
    println!(
        "{member}: {} requested",
        if pause { "pause" } else { "resume" }
    );
    let began = Instant::now();
    loop {
        let status = get().await?.status.unwrap_or_default();
        let row = status.members.iter().find(|m| m.name == member);
        if let Some(r) =
            row.filter(|r| super::replay::reached(pause, r.frozen_at.as_deref(), r.ready))
        {
            if pause {
                println!(
                    "{member}: replay paused; data as of {}",
                    r.frozen_at.as_deref().unwrap_or("?")
                );
                if let Some(note) = super::replay::locked_note(&r.frozen_locks) {
                    println!("{note}");
                }
                println!("`kubectl pgrc resume-replay {name} {member}` lets it catch up");
            } else {
                println!("{member}: replay resumed; it is catching up");
            }
            return Ok(());
        }
        if began.elapsed() > Duration::from_secs(timeout_seconds) {
            return Err(KubeError::TimedOut(format!(
                "{member} has not {} after {timeout_seconds} s: see `kubectl pgrc status {name}` and `kubectl describe pgrc {name}`",
                if pause { "paused" } else { "resumed streaming" },
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Ask for a restart or reload (an annotation the brain reads) and wait until every member asked
/// has done it.
async fn member_request(
    kind: Kind,
    api: &Api<PgReplicaCluster>,
    name: &str,
    member: Option<String>,
    timeout_seconds: u64,
) -> Result<(), KubeError> {
    let get = || async {
        api.get(name)
            .await
            .map_err(KubeError::api("get", "PgReplicaCluster", name))
    };
    let cluster = get().await?;
    let names = cluster.spec.member_names();
    if let Some(m) = member.as_ref().filter(|m| !names.contains(m)) {
        return Err(KubeError::Invalid(format!(
            "{m} is not a member of {name}: members are {}",
            names.join(", ")
        )));
    }
    let request = Kind::request(member.as_deref());
    let value = serde_json::to_string(&request).map_err(|e| KubeError::Other(e.to_string()))?;
    let annotation = match kind {
        Kind::Restart => RESTART_ANNOTATION,
        Kind::Reload => RELOAD_ANNOTATION,
    };
    let patch = json!({"metadata": {"annotations": {annotation: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(KubeError::api("annotate", "PgReplicaCluster", name))?;
    let targets = member.map_or(names, |m| vec![m]);
    println!("{}", kind.announce(&targets));
    let began = Instant::now();
    loop {
        let status = get().await?.status.unwrap_or_default();
        let healthy = status.phase == Some(crate::api::Phase::Healthy);
        if let Some(lines) = kind.finished(&status.members, &targets, request.at_ms, healthy) {
            for line in lines {
                println!("{line}");
            }
            return Ok(());
        }
        if began.elapsed() > Duration::from_secs(timeout_seconds) {
            return Err(KubeError::TimedOut(
                kind.late(timeout_seconds, &format!("kubectl describe pgrc {name}")),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The same table as `pgreplica local status`, from the cluster object.
pub fn as_table(cluster: &PgReplicaCluster) -> LocalStatus {
    let name = cluster.name_any();
    let status = cluster.status.clone().unwrap_or_default();
    let members = cluster
        .spec
        .members
        .iter()
        .map(|m| {
            let st = status.members.iter().find(|s| s.name == m.name);
            LocalMember::from_status(
                m,
                st,
                names::POSTGRES_PORT as u16,
                format!("{}/{}/data", names::MEMBER_DIR, m.name),
                st.and_then(|s| s.last_event.clone()).unwrap_or_default(),
            )
        })
        .collect();
    let endpoints = Endpoints {
        rw: names::rw_service(&name),
        ro: names::ro_service(&name),
    };
    LocalStatus::from_status(name, status, endpoints, members).with_spec(&cluster.spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_kubectl_writes_them() {
        let ok = [
            ("90", 90_000),
            ("90s", 90_000),
            ("10m", 600_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("2m30s", 150_000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in ["", "m", "10x", "ten minutes", "1.5h"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("90s, 10m or 1h30m"), "{bad}: {err}");
        }
    }

    /// The plugin had no --context, --kubeconfig or -o, and spelled the timeout
    /// --timeout-seconds where kubectl says --timeout=10m.
    #[test]
    fn the_plugin_takes_kubectls_flags() {
        use clap::Parser;
        #[derive(Parser)]
        struct P {
            #[command(subcommand)]
            c: KubectlCommand,
        }
        let parse = |args: &[&str]| P::try_parse_from(args).map(|p| p.c);
        match parse(&[
            "p",
            "switchover",
            "lab",
            "--to",
            "a",
            "--timeout=10m",
            "--context",
            "pis",
            "--kubeconfig",
            "/k",
            "-n",
            "db",
        ]) {
            Ok(KubectlCommand::Switchover { target, to, wait }) => {
                assert_eq!((target.name.as_str(), to.as_str()), ("lab", "a"));
                assert_eq!(target.context.as_deref(), Some("pis"));
                assert_eq!(
                    target.kubeconfig.as_deref(),
                    Some(std::path::Path::new("/k"))
                );
                assert_eq!(target.namespace.as_deref(), Some("db"));
                assert_eq!(wait.seconds(120), 600);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["p", "restart", "lab", "c", "--timeout-seconds", "30"]) {
            Ok(KubectlCommand::Restart { member, wait, .. }) => {
                assert_eq!(member.as_deref(), Some("c"));
                assert_eq!(wait.seconds(300), 30);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["p", "status", "lab", "-o", "yaml"]) {
            Ok(KubectlCommand::Status { output, .. }) => assert_eq!(output, "yaml"),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["p", "status", "lab", "-o", "wide"]).is_err());
    }
}
