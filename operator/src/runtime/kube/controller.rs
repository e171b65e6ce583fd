//! `pgreplica operator`: a kube-runtime Controller for PgReplicaCluster, and one brain per
//! cluster. The reconciler is the slow loop (validation, Secrets, RBAC, Services, Lease, PDB,
//! NetworkPolicy, volumes, pods); the brain (`brain::Brain` over `world::KubeWorld`) ticks on its
//! own, woken by members' reports, never waiting for the reconciler.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{reflector::reflector, watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::api::validate::validate;
use crate::api::PgReplicaCluster;
use crate::brain::{timing, Brain};
use crate::net::http::AgentClient;
use crate::plan::{EventReason, PlanEvent};

use super::apply;
use super::error::KubeError;
use super::labels;
use super::metrics::Metrics;
use super::report;
use super::world::KubeWorld;

/// Triggers closer together than this (status writes, pod changes) make one reconcile.
const RECONCILE_DEBOUNCE: Duration = Duration::from_secs(1);

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
    /// Watch caches the brains read from.
    pub clusters: Store<PgReplicaCluster>,
    pub pods: Store<Pod>,
    pub brains: Brains,
}

struct BrainTask {
    wake: Arc<Notify>,
    task: JoinHandle<()>,
    /// What the reconciler found about the member volumes, for the brain's snapshot.
    volumes: Volumes,
}

/// Member volumes that do not have the size the spec asks, shared by a cluster's reconciler and
/// its brain.
pub type Volumes = Arc<Mutex<BTreeMap<String, crate::plan::VolumeNote>>>;

/// One brain task per cluster (by UID), started by the first reconcile, ended when the cluster
/// is gone.
#[derive(Default)]
pub struct Brains {
    tasks: Mutex<HashMap<String, BrainTask>>,
}

impl Brains {
    /// Start the cluster's brain if it does not run; wake it either way (its spec may have
    /// changed).
    fn ensure(
        &self,
        ctx: &Context,
        cluster: &PgReplicaCluster,
        namespace: &str,
        agents: AgentClient,
    ) {
        let name = cluster.name_any();
        let key = super::names::cluster_key(cluster, namespace);
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|_, t| !t.task.is_finished());
        if let Some(t) = tasks.get(&key) {
            t.wake.notify_one();
            return;
        }
        let volumes = Volumes::default();
        let mut world = KubeWorld::new(
            ctx.client.clone(),
            ctx.recorder.clone(),
            ctx.metrics.clone(),
            namespace.to_string(),
            name.clone(),
            cluster.metadata.uid.clone(),
            ctx.agent_port,
            ctx.operator_image.clone(),
            ctx.clusters.clone(),
            ctx.pods.clone(),
            volumes.clone(),
        );
        let brain = Brain::new(agents, None);
        let wake = Arc::new(Notify::new());
        let woken = wake.clone();
        let task = tokio::spawn(async move {
            info!(cluster = %name, "brain started");
            brain
                .run(&mut world, woken, std::future::pending::<()>())
                .await;
            info!(cluster = %name, "brain stopped: the cluster is gone");
        });
        tasks.insert(
            key,
            BrainTask {
                wake,
                task,
                volumes,
            },
        );
    }

    /// Hand the reconciler's findings about member volumes to the cluster's brain (woken when
    /// they changed).
    fn volumes(
        &self,
        cluster: &PgReplicaCluster,
        namespace: &str,
        notes: BTreeMap<String, crate::plan::VolumeNote>,
    ) {
        let key = super::names::cluster_key(cluster, namespace);
        let tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = tasks.get(&key) {
            let mut shared = t.volumes.lock().unwrap_or_else(PoisonError::into_inner);
            if *shared != notes {
                *shared = notes;
                t.wake.notify_one();
            }
        }
    }

    /// Wake the brains of the clusters in `namespace` named `cluster` (a member pod changed).
    fn wake(&self, namespace: &str, cluster: &str, ctx: &Context) {
        let uid = ctx
            .clusters
            .get(&ObjectRef::new(cluster).within(namespace))
            .and_then(|c| c.metadata.uid.clone());
        let tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = uid.and_then(|u| tasks.get(&u)) {
            t.wake.notify_one();
        }
    }
}

pub struct OperatorOptions {
    /// `None`: read from the operator's own pod.
    pub operator_image: Option<String>,
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
    let operator_namespace = std::env::var(super::names::POD_NAMESPACE_ENV)
        .unwrap_or_else(|_| super::names::OPERATOR_NAMESPACE.to_string());
    let operator_image =
        super::own_image::resolve(opts.operator_image, &client, &operator_namespace).await?;
    info!(image = %operator_image, "member pods copy the agent from this image");
    let metrics = Arc::new(Metrics::default());
    let reporter = Reporter {
        controller: "pgreplica-operator".into(),
        instance: std::env::var(super::own_image::POD_NAME_ENV).ok(),
    };
    let managed = format!("{}={}", labels::APP_MANAGED_BY_LABEL, labels::MANAGED_BY);
    // the brain's status writes trigger reconciles too: a burst of them is one reconcile
    let controller = Controller::new(clusters, watcher::Config::default())
        .with_config(ControllerConfig::default().debounce(RECONCILE_DEBOUNCE))
        .owns(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().labels(&managed),
        );
    // the brains' own cache of member pods: addresses, and a wake on every change
    let (pods, pods_writer) = reflector::store::<Pod>();
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        metrics: metrics.clone(),
        operator_image,
        agent_port: super::names::AGENT_PORT as u16,
        certificates: Default::default(),
        operator_namespace,
        clusters: controller.store(),
        pods,
        brains: Brains::default(),
    });
    let pod_ctx = ctx.clone();
    let pod_events = reflector(
        pods_writer,
        watcher(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().labels(&managed),
        ),
    )
    .touched_objects()
    .for_each(move |pod| {
        let ctx = pod_ctx.clone();
        async move {
            match pod {
                Ok(pod) => {
                    if let (Some(ns), Some(cluster)) =
                        (pod.namespace(), pod.labels().get(labels::CLUSTER_LABEL))
                    {
                        ctx.brains.wake(&ns, cluster, &ctx);
                    }
                }
                Err(e) => warn!(error = %e, "watching member pods"),
            }
        }
    });
    tokio::spawn(pod_events);
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
    controller
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
    let client = &ctx.client;

    // validate: an invalid spec is reported once and waits for a change (the brain idles)
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

    // the brain first: nothing below may stand between a failure and the failover
    let agents = ctx
        .certificates
        .agents(client, &cluster, &namespace)
        .await?;
    ctx.brains.ensure(&ctx, &cluster, &namespace, agents);

    apply::supporting_objects(client, &cluster, &namespace, &ctx.operator_namespace).await?;
    let pods = apply::member_pods(client, &cluster, &namespace).await?;
    let applied = apply::members(client, &cluster, &namespace, &pods, &ctx.operator_image).await?;
    ctx.brains.volumes(&cluster, &namespace, applied.volumes);
    let events: Vec<PlanEvent> = applied
        .created
        .into_iter()
        .map(|member| PlanEvent {
            reason: EventReason::MemberCreated,
            message: format!("created the pod of member {member}"),
            member: Some(member),
        })
        .collect();
    report::events(&ctx.recorder, &cluster, &events, &ctx.metrics).await;
    Ok(Action::requeue(timing::SUPPORTING_OBJECTS))
}
