//! `pgreplica operator`: a kube-runtime Controller for PgReplicaCluster. Each reconcile is
//! observe → plan → act → report, with the same `plan` as the local runtime.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tracing::{error, info, warn};

use crate::api::validate::validate;
use crate::api::PgReplicaCluster;
use crate::lease::unix_now_ms;
use crate::plan::{plan, Input};

use super::apply;
use super::error::KubeError;
use super::labels;
use super::metrics::Metrics;
use super::observe::observe;
use super::report;

/// Requeue soon while something is moving, slowly when settled.
const BUSY_REQUEUE: Duration = Duration::from_secs(1);
/// While the primary is being handed over (or none accepts writes), look again at once.
const HANDOVER_REQUEUE: Duration = Duration::from_millis(250);
const SETTLED_REQUEUE: Duration = Duration::from_secs(5);

pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub operator_image: String,
    /// Where agents serve HTTPS in member pods (tests use another port).
    pub agent_port: u16,
    /// Where the operator runs (its pods are the only ones the NetworkPolicy lets reach agents).
    pub operator_namespace: String,
    /// The cluster CAs' Secrets and the brain's client per cluster.
    pub certificates: super::certificates::Certificates,
}

pub struct OperatorOptions {
    pub operator_image: String,
    pub http: std::net::SocketAddr,
}

pub async fn run(opts: OperatorOptions) -> Result<(), KubeError> {
    let client = kube::Client::try_default()
        .await
        .map_err(KubeError::Client)?;
    let clusters: Api<PgReplicaCluster> = Api::all(client.clone());
    clusters
        .list(&ListParams::default().limit(1))
        .await
        .map_err(KubeError::CrdMissing)?;
    let metrics = Arc::new(Metrics::default());
    let reporter = Reporter {
        controller: "pgreplica-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        metrics: metrics.clone(),
        operator_image: opts.operator_image,
        agent_port: super::names::AGENT_PORT as u16,
        certificates: Default::default(),
        operator_namespace: std::env::var(super::names::POD_NAMESPACE_ENV)
            .unwrap_or_else(|_| super::names::OPERATOR_NAMESPACE.to_string()),
    });
    let listener = tokio::net::TcpListener::bind(opts.http)
        .await
        .map_err(|e| KubeError::Other(format!("listen on {}: {e}", opts.http)))?;
    let http_metrics = metrics.clone();
    tokio::spawn(crate::net::http::serve(
        listener,
        move |req| {
            let metrics = http_metrics.clone();
            async move { super::health::handle(&metrics, req) }
        },
        std::future::pending::<()>(),
    ));
    info!(http = %opts.http, "operator started");
    let pods: Api<Pod> = Api::all(client.clone());
    Controller::new(clusters, watcher::Config::default())
        .owns(
            pods,
            watcher::Config::default().labels(&format!(
                "{}={}",
                labels::APP_MANAGED_BY_LABEL,
                labels::MANAGED_BY
            )),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "reconcile failed");
            }
        })
        .await;
    info!("operator stopped");
    Ok(())
}

fn error_policy(cluster: Arc<PgReplicaCluster>, error: &KubeError, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    error!(cluster = %cluster.name_any(), category = error.category(), error = %error, "reconcile error");
    Action::requeue(Duration::from_secs(5))
}

pub async fn reconcile(
    cluster: Arc<PgReplicaCluster>,
    ctx: Arc<Context>,
) -> Result<Action, KubeError> {
    ctx.metrics
        .reconciles
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let namespace = cluster
        .namespace()
        .ok_or(KubeError::MissingField("namespace"))?;
    let name = cluster.name_any();
    let client = &ctx.client;

    // validate: an invalid spec is reported once and waits for a change
    if let Err(problems) = validate(&cluster) {
        report::invalid(
            client,
            &ctx.recorder,
            &cluster,
            &namespace,
            &problems.to_string(),
        )
        .await?;
        return Ok(Action::await_change());
    }

    // observe
    let now_ms = unix_now_ms();
    apply::supporting_objects(client, &cluster, &namespace, &ctx.operator_namespace).await?;
    let agents = ctx
        .certificates
        .agents(client, &cluster, &namespace)
        .await?;
    let observed = observe(
        client,
        &agents,
        &cluster,
        &namespace,
        now_ms,
        ctx.agent_port,
    )
    .await?;

    // plan
    let previous = cluster.status.clone().unwrap_or_default();
    let decided = plan(&Input {
        cluster: &name,
        spec: &cluster.spec,
        generation: cluster.metadata.generation.unwrap_or(1),
        status: &previous,
        members: &observed.members,
        addresses: &observed.addresses,
        lease: &observed.lease,
        switchover_to: observed.switchover_to.as_deref(),
        now_ms,
    });

    // act
    let roles = apply::role_labels(&cluster, &decided);
    let created = apply::members(
        client,
        &cluster,
        &namespace,
        &observed,
        &roles,
        &ctx.operator_image,
    )
    .await?;
    let mut events = decided.events.clone();
    for member in created {
        events.push(crate::plan::PlanEvent {
            reason: crate::plan::EventReason::MemberCreated,
            member: Some(member.clone()),
            message: format!("created the pod of member {member}"),
        });
    }
    apply::fence(client, &namespace, &observed, &decided).await;
    apply::desired_states(&agents, &cluster, &observed, &decided, ctx.agent_port).await;
    if decided.switchover_consumed {
        apply::forget_switchover(client, &cluster, &namespace).await?;
    }

    // report
    report::status(client, &cluster, &namespace, &decided.status).await?;
    report::events(&ctx.recorder, &cluster, &events, &ctx.metrics).await;
    let key = format!("{namespace}/{name}");
    for m in &decided.status.members {
        ctx.metrics.set_lag(&key, &m.name, m.replay_lag_seconds);
    }
    ctx.metrics.set_ready(
        &key,
        decided.status.members.iter().filter(|m| m.ready).count() as u64,
    );
    let settled =
        decided.waiting_for.is_none() && decided.status.phase == Some(crate::api::Phase::Healthy);
    let no_writer = decided
        .status
        .conditions
        .iter()
        .any(|c| c.type_ == "Available" && c.status != "True");
    let handing_over = decided.status.current_primary.is_some()
        && (decided.status.current_primary != decided.status.target_primary || no_writer);
    Ok(Action::requeue(if settled {
        SETTLED_REQUEUE
    } else if handing_over {
        HANDOVER_REQUEUE
    } else {
        BUSY_REQUEUE
    }))
}
