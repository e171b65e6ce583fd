//! Report: status by server-side apply on the status subresource, an Event for every decision,
//! metrics.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::api::{PgReplicaCluster, PgReplicaClusterStatus};
use crate::plan::{truncate, EventReason, PlanEvent, MAX_MESSAGE};

use super::error::KubeError;
use super::metrics::Metrics;
use super::names;

pub async fn status(
    client: &kube::Client,
    cluster: &PgReplicaCluster,
    namespace: &str,
    status: &PgReplicaClusterStatus,
) -> Result<(), KubeError> {
    let api: Api<PgReplicaCluster> = Api::namespaced(client.clone(), namespace);
    let body = json!({
        "apiVersion": "pgreplica.io/v1alpha1",
        "kind": "PgReplicaCluster",
        "status": status,
    });
    api.patch_status(
        &cluster.name_any(),
        &PatchParams::apply(names::FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(KubeError::api(
        "patch status of",
        "PgReplicaCluster",
        cluster.name_any(),
    ))?;
    Ok(())
}

pub fn object_ref(cluster: &PgReplicaCluster) -> ObjectReference {
    cluster.object_ref(&())
}

/// Publish one Event per decision; a failure to publish is logged, never fatal.
pub async fn events(
    recorder: &Recorder,
    cluster: &PgReplicaCluster,
    events: &[PlanEvent],
    metrics: &Metrics,
) {
    let reference = object_ref(cluster);
    for e in events {
        match e.reason {
            EventReason::FailoverStarted => {
                metrics
                    .failovers
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            EventReason::SwitchoverStarted | EventReason::FailbackStarted => {
                metrics
                    .switchovers
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            _ => {}
        }
        let note = match &e.member {
            Some(m) => format!("[{m}] {}", e.message),
            None => e.message.clone(),
        };
        info!(cluster = %cluster.name_any(), reason = e.reason.as_str(), "{note}");
        let event = Event {
            type_: if e.reason.is_warning() {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.as_str().to_string(),
            note: Some(truncate(&note, MAX_MESSAGE)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(err) = recorder.publish(&event, &reference).await {
            warn!(error = %err, "could not publish an event");
        }
    }
}

/// Report an invalid spec once per generation: a Warning Event and conditions; no requeue storm.
pub async fn invalid(
    client: &kube::Client,
    recorder: &Recorder,
    cluster: &PgReplicaCluster,
    namespace: &str,
    problems: &str,
) -> Result<(), KubeError> {
    let previous = cluster.status.clone().unwrap_or_default();
    let Some(next) = crate::plan::invalid_status(
        &previous,
        cluster.metadata.generation,
        problems,
        crate::lease::unix_now_ms(),
    ) else {
        return Ok(());
    };
    status(client, cluster, namespace, &next).await?;
    let event = Event {
        type_: EventType::Warning,
        reason: "InvalidSpec".into(),
        note: Some(truncate(problems, MAX_MESSAGE)),
        action: "Validate".into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, &object_ref(cluster)).await {
        warn!(error = %err, "could not publish an event");
    }
    Ok(())
}
