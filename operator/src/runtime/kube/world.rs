//! The Kubernetes side of the one tick (`brain::World`): the cluster and its pods from watch
//! caches, one read of the Lease (with a deadline; an unreadable Lease is counted, not fatal),
//! role labels moved the moment the plan changes them, fences by pod deletion, and status,
//! Events and metrics written after the handover.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::api::validate::validate;
use crate::api::PgReplicaCluster;
use crate::brain::{timing, AgentAddress, Next, Outcome, Snapshot, World};
use crate::lease::{unix_now_ms, KubeLease, Lease};
use crate::net::http::Target;
use crate::plan::{material_change, Address, Plan};

use super::builders;
use super::labels;
use super::metrics::Metrics;
use super::names;
use super::report;

/// A pod younger than this is never deleted to fence it: it has not had the time to report, and
/// deleting it again would keep it from ever answering.
const FENCE_GRACE_SECONDS: i64 = 30;

pub struct KubeWorld {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub namespace: String,
    pub name: String,
    /// The cluster this brain runs (a cluster created again under the same name is another).
    pub uid: Option<String>,
    pub agent_port: u16,
    /// The operator's image: member pods copy the agent from it.
    pub operator_image: String,
    pub clusters: Store<PgReplicaCluster>,
    pub pods: Store<Pod>,
    /// Member volumes that do not have the size the spec asks (found by the reconciler).
    volumes: super::controller::Volumes,
    /// The cluster as of the last snapshot.
    cluster: Option<Arc<PgReplicaCluster>>,
    /// The generation and spec this brain last ran with (a newer one is announced as an Event).
    seen_spec: Option<(i64, crate::api::PgReplicaClusterSpec)>,
    /// When status was last written.
    written_at: Option<Instant>,
    /// Status and Events on their way to the API server (`writer`).
    writes: mpsc::UnboundedSender<Write>,
    /// Labels this brain set lately, by member: pod UID, role, ro and when (the watch cache may
    /// not show them yet; after a while the cache is believed again).
    labelled: BTreeMap<String, (String, labels::Routing, Instant)>,
}

impl KubeWorld {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: kube::Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        namespace: String,
        name: String,
        uid: Option<String>,
        agent_port: u16,
        operator_image: String,
        clusters: Store<PgReplicaCluster>,
        pods: Store<Pod>,
        volumes: super::controller::Volumes,
    ) -> KubeWorld {
        let (writes, pending) = mpsc::unbounded_channel();
        tokio::spawn(writer(
            client.clone(),
            recorder.clone(),
            metrics.clone(),
            namespace.clone(),
            pending,
        ));
        KubeWorld {
            writes,
            client,
            recorder,
            metrics,
            namespace,
            name,
            uid,
            agent_port,
            operator_image,
            clusters,
            pods,
            volumes,
            cluster: None,
            seen_spec: None,
            written_at: None,
            labelled: BTreeMap::new(),
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Members whose running pod differs from the one the operator would create now.
    fn outdated(
        &self,
        cluster: &PgReplicaCluster,
        pods: &BTreeMap<String, Arc<Pod>>,
    ) -> BTreeMap<String, String> {
        cluster
            .spec
            .members
            .iter()
            .filter_map(|m| {
                let running = pods.get(&m.name)?;
                // a pod on its way out is being replaced: its member still waits (failback to
                // it, or the next member's turn, must wait for the new pod)
                if running.metadata.deletion_timestamp.is_some() {
                    return Some((m.name.clone(), "pod being replaced".to_string()));
                }
                let wanted =
                    super::apply::wanted_pod(cluster, m, &self.namespace, &self.operator_image)
                        .ok()?;
                Some((m.name.clone(), builders::outdated(running, &wanted)?))
            })
            .collect()
    }

    /// The member pods of this cluster, by member, from the watch cache.
    fn member_pods(&self) -> BTreeMap<String, Arc<Pod>> {
        self.pods
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(self.namespace.as_str()))
            .filter(|p| p.labels().get(labels::CLUSTER_LABEL) == Some(&self.name))
            .filter_map(|p| Some((p.labels().get(labels::MEMBER_LABEL)?.clone(), p)))
            .collect()
    }

    async fn read_lease(&self, now_ms: u64) -> Result<Option<String>, String> {
        let lease = KubeLease::new(
            Api::namespaced(self.client.clone(), &self.namespace),
            names::primary_lease(&self.name),
        );
        match tokio::time::timeout(timing::AGENT_TIMEOUT, lease.read()).await {
            Ok(Ok(record)) => Ok((!record.free(now_ms)).then_some(record.holder).flatten()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer from the API server within {} ms",
                timing::AGENT_TIMEOUT.as_millis()
            )),
        }
    }
}

/// What the writer task sends to the API server.
enum Write {
    Status(
        Arc<PgReplicaCluster>,
        Box<crate::api::PgReplicaClusterStatus>,
    ),
    Events(Arc<PgReplicaCluster>, Vec<crate::plan::PlanEvent>),
}

/// Writes status and Events in the order the brain recorded them; of several status writes
/// waiting, only the last is sent. Ends when the brain's world is dropped.
async fn writer(
    client: kube::Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    namespace: String,
    mut pending: mpsc::UnboundedReceiver<Write>,
) {
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = pending.try_recv() {
            batch.push(more);
        }
        let last_status = batch.iter().rposition(|w| matches!(w, Write::Status(..)));
        for (i, write) in batch.into_iter().enumerate() {
            match write {
                Write::Events(cluster, events) => {
                    report::events(&recorder, &cluster, &events, &metrics).await;
                }
                Write::Status(cluster, status) if Some(i) == last_status => {
                    if let Err(e) = report::status(&client, &cluster, &namespace, &status).await {
                        warn!(cluster = %cluster.name_any(), error = %e, "could not write status");
                    }
                }
                Write::Status(..) => {}
            }
        }
    }
}

fn pod_ip(pod: &Pod) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    pod.status.as_ref()?.pod_ip.clone()
}

impl World for KubeWorld {
    async fn snapshot(&mut self) -> Next {
        let found = self
            .clusters
            .get(&ObjectRef::new(&self.name).within(&self.namespace));
        let Some(cluster) = found.filter(|c| c.metadata.uid == self.uid) else {
            return Next::Gone;
        };
        self.cluster = Some(cluster.clone());
        if validate(&cluster).is_err() {
            // the reconciler reports it; the brain waits for a valid spec
            return Next::Idle;
        }
        let generation = cluster.metadata.generation.unwrap_or(1);
        match &self.seen_spec {
            Some((seen, old)) if *seen < generation => {
                if let Some(event) = crate::plan::spec_changed(old, &cluster.spec, generation) {
                    let _ = self
                        .writes
                        .send(Write::Events(cluster.clone(), vec![event]));
                }
                self.seen_spec = Some((generation, cluster.spec.clone()));
            }
            Some(_) => {}
            None => self.seen_spec = Some((generation, cluster.spec.clone())),
        }
        let now_ms = unix_now_ms();
        let pods = self.member_pods();
        let mut agents: BTreeMap<String, AgentAddress> = BTreeMap::new();
        let mut addresses = BTreeMap::new();
        let status = cluster.status.clone().unwrap_or_default();
        for name in crate::plan::members_to_run(&cluster.spec, &status) {
            let ip = pods.get(&name).and_then(|p| pod_ip(p));
            let agent = match &ip {
                None => Err("the member's pod has no IP yet".to_string()),
                Some(ip) => format!("{ip}:{}", self.agent_port)
                    .parse::<SocketAddr>()
                    .map(|addr| Target {
                        name: crate::tls::agent_name(&self.name, &name),
                        addr,
                    })
                    .map_err(|e| format!("pod IP {ip}: {e}")),
            };
            agents.insert(name.clone(), agent);
            if let Some(ip) = ip {
                addresses.insert(
                    name,
                    Address {
                        host: ip,
                        port: names::POSTGRES_PORT as u16,
                    },
                );
            }
        }
        let outdated = self.outdated(&cluster, &pods);
        let lease = self.read_lease(now_ms).await;
        Next::Tick(Box::new(Snapshot {
            cluster: self.name.clone(),
            spec: cluster.spec.clone(),
            generation,
            status,
            agents,
            addresses,
            lease,
            lease_duration_ms: timing::KUBE_LEASE.as_millis() as u64,
            switchover_to: cluster
                .annotations()
                .get(labels::SWITCHOVER_TO_ANNOTATION)
                .cloned()
                .filter(|s| !s.is_empty()),
            outdated,
            volumes: self
                .volumes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            restart: cluster
                .annotations()
                .get(labels::RESTART_ANNOTATION)
                .and_then(|t| serde_json::from_str(t).ok()),
            reload: cluster
                .annotations()
                .get(labels::RELOAD_ANNOTATION)
                .and_then(|t| serde_json::from_str(t).ok()),
            // member pods outlive the operator: nobody starts with it
            opening: Vec::new(),
            now_ms,
        }))
    }

    /// Delete the pod with a 1 s grace period, so the kubelet (where the API server can reach its
    /// node) kills every process in it. The plan waits for proof either way.
    async fn fence(&mut self, member: &str, why: &str) -> Option<String> {
        let pod = self.member_pods().remove(member)?;
        if pod.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let young = pod.metadata.creation_timestamp.as_ref().is_none_or(|t| {
            jiff::Timestamp::now().duration_since(t.0).as_secs() < FENCE_GRACE_SECONDS
        });
        if young {
            return None;
        }
        warn!(member = %member, pod = %pod.name_any(), why = %why, "fencing: deleting the pod with a 1 s grace period");
        // 1 s, not 0: a zero grace period removes the object without the kubelet's confirmation,
        // while the containers may still run on an unreachable node
        let params = DeleteParams {
            grace_period_seconds: Some(1),
            ..DeleteParams::default()
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        match pods.delete(&pod.name_any(), &params).await {
            Ok(_) => Some(format!("pod {} deleted", pod.name_any())),
            Err(e) => {
                warn!(member = %member, error = %e, "could not delete the pod to fence it");
                None
            }
        }
    }

    /// Replace the pod of a member in its rollout turn: a graceful delete (the agent stops
    /// PostgreSQL with a fast shutdown); the reconciler creates it again from the new template.
    async fn recreate(&mut self, member: &str) {
        let Some(pod) = self.member_pods().remove(member) else {
            return;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return;
        }
        info!(member = %member, pod = %pod.name_any(), "rollout: replacing the pod with one from the current template");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        if let Err(e) = pods.delete(&pod.name_any(), &DeleteParams::default()).await {
            warn!(member = %member, error = %e, "could not delete the pod to replace it");
        }
    }

    /// Move the role and read-only labels the Services select on, at once (every pod at the
    /// same time: the EndpointSlices change together).
    async fn route(&mut self, plan: &Plan) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut moves = Vec::new();
        for (member, pod) in self.member_pods() {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let label = |key: &str| pod.labels().get(key).map(String::as_str);
            let shown = (
                label(labels::ROLE_LABEL),
                label(labels::RO_LABEL),
                label(labels::SERVING_LABEL),
            );
            // the Services publish pods whatever their readiness (ADR 0008): a pod on its way out
            // serves nothing from now on
            // what this brain set a moment ago beats a watch cache that may not show it yet
            let recent = self
                .labelled
                .get(&member)
                .filter(|(u, _, at)| *u == uid && at.elapsed() < timing::STATUS_REFRESH)
                .map(|(_, r, _)| *r);
            let wanted = if pod.metadata.deletion_timestamp.is_some() {
                labels::Routing::NONE
            } else {
                labels::routing(&member, &plan.routes, recent.map(|r| r.role).or(shown.0))
            };
            let as_labels = (
                Some(wanted.role),
                Some(labels::flag(wanted.ro)),
                Some(labels::flag(wanted.serving)),
            );
            if shown != as_labels && recent != Some(wanted) {
                moves.push((member, pod.name_any(), uid, wanted));
            }
        }
        // the new primary first, then the rest: -rw never selects nothing in between
        moves.sort_by_key(|(_, _, _, r)| r.role != labels::ROLE_PRIMARY);
        let gains = moves
            .iter()
            .take_while(|(_, _, _, r)| r.role == labels::ROLE_PRIMARY)
            .count();
        let patch = |(_, pod, _, r): &(String, String, String, labels::Routing)| {
            let body = json!({"metadata": {"labels": {
                labels::ROLE_LABEL: r.role,
                labels::RO_LABEL: labels::flag(r.ro),
                labels::SERVING_LABEL: labels::flag(r.serving),
            }}});
            let (pods, pod) = (&pods, pod.clone());
            async move {
                pods.patch(&pod, &PatchParams::default(), &Patch::Merge(&body))
                    .await
            }
        };
        let mut results = join_all(moves[..gains].iter().map(patch)).await;
        results.extend(join_all(moves[gains..].iter().map(patch)).await);
        for ((member, _, uid, r), result) in moves.into_iter().zip(results) {
            match result {
                Ok(_) => {
                    info!(member = %member, role = r.role, ro = r.ro, serving = r.serving, "moved the routing labels");
                    self.labelled.insert(member, (uid, r, Instant::now()));
                }
                Err(e) => warn!(member = %member, error = %e, "could not move the routing labels"),
            }
        }
    }

    async fn forget_switchover(&mut self) {
        let api: Api<PgReplicaCluster> = Api::namespaced(self.client.clone(), &self.namespace);
        let patch = json!({"metadata": {"annotations": {labels::SWITCHOVER_TO_ANNOTATION: null}}});
        if let Err(e) = api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            warn!(cluster = %self.key(), error = %e, "could not remove the switchover request");
        }
    }

    async fn record(&mut self, outcome: &Outcome<'_>) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let next = &outcome.plan.status;
        let shown = cluster.status.clone().unwrap_or_default();
        let due = self
            .written_at
            .is_none_or(|at| at.elapsed() >= timing::STATUS_REFRESH);
        // sent by the writer task: the API server's answers never delay the next tick
        if !outcome.events.is_empty() {
            let _ = self
                .writes
                .send(Write::Events(cluster.clone(), outcome.events.to_vec()));
        }
        if material_change(&shown, next) || (due && shown != *next) {
            self.written_at = Some(Instant::now());
            let _ = self
                .writes
                .send(Write::Status(cluster.clone(), Box::new(next.clone())));
        }
        let key = self.key();
        for m in &next.members {
            self.metrics.set_lag(&key, &m.name, m.replay_lag_seconds);
        }
        self.metrics
            .set_ready(&key, next.members.iter().filter(|m| m.ready).count() as u64);
    }
}
