//! The kubectl plugin face (`pgreplica` installed as `kubectl-pgrc`):
//! `kubectl pgrc status NAME`, `kubectl pgrc switchover NAME --to MEMBER`,
//! `kubectl pgrc restart NAME [MEMBER]`, `kubectl pgrc reload NAME [MEMBER]`.

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

#[derive(Debug, Subcommand)]
pub enum KubectlCommand {
    /// The member table of a cluster (roles, sync state, lag, timeline).
    #[command(after_help = "Example:\n  kubectl pgrc status lab -n db")]
    Status {
        /// The PgReplicaCluster.
        name: String,
        /// The cluster's namespace (default: the kubeconfig context's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Move the primary to MEMBER with a clean switchover.
    #[command(after_help = "Example:\n  kubectl pgrc switchover lab --to b")]
    Switchover {
        /// The PgReplicaCluster.
        name: String,
        /// The member to become the primary.
        #[arg(long)]
        to: String,
        /// The cluster's namespace (default: the kubeconfig context's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// How long to wait before giving up (exit code non-zero).
        #[arg(long, default_value_t = 120)]
        timeout_seconds: u64,
    },
    /// Restart MEMBER's PostgreSQL (or every member's), one member at a time: standbys first, the
    /// primary last after a clean switchover.
    #[command(after_help = "Example:\n  kubectl pgrc restart lab c")]
    Restart {
        /// The PgReplicaCluster.
        name: String,
        /// One member (default: every member).
        member: Option<String>,
        /// The cluster's namespace (default: the kubeconfig context's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// How long to wait before giving up (exit code non-zero).
        #[arg(long, default_value_t = 300)]
        timeout_seconds: u64,
    },
    /// Have MEMBER's PostgreSQL (or every member's) read its configuration and certificates
    /// again, without a restart; prints what still waits for one.
    #[command(after_help = "Example:\n  kubectl pgrc reload lab")]
    Reload {
        /// The PgReplicaCluster.
        name: String,
        /// One member (default: every member).
        member: Option<String>,
        /// The cluster's namespace (default: the kubeconfig context's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// How long to wait before giving up (exit code non-zero).
        #[arg(long, default_value_t = 60)]
        timeout_seconds: u64,
    },
}

async fn api(namespace: Option<&str>) -> Result<Api<PgReplicaCluster>, KubeError> {
    let client = kube::Client::try_default()
        .await
        .map_err(KubeError::Client)?;
    Ok(match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::default_namespaced(client),
    })
}

pub async fn run(cmd: KubectlCommand) -> Result<(), KubeError> {
    match cmd {
        KubectlCommand::Status { name, namespace } => {
            let api = api(namespace.as_deref()).await?;
            let cluster =
                api.get(&name)
                    .await
                    .map_err(KubeError::api("get", "PgReplicaCluster", &name))?;
            print!("{}", super::status_table::render(&as_table(&cluster)));
            Ok(())
        }
        KubectlCommand::Restart {
            name,
            member,
            namespace,
            timeout_seconds,
        } => {
            let api = api(namespace.as_deref()).await?;
            member_request(Kind::Restart, &api, &name, member, timeout_seconds).await
        }
        KubectlCommand::Reload {
            name,
            member,
            namespace,
            timeout_seconds,
        } => {
            let api = api(namespace.as_deref()).await?;
            member_request(Kind::Reload, &api, &name, member, timeout_seconds).await
        }
        KubectlCommand::Switchover {
            name,
            to,
            namespace,
            timeout_seconds,
        } => {
            let api = api(namespace.as_deref()).await?;
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
