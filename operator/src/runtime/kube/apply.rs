//! Act on a plan in Kubernetes: supporting objects by server-side apply, member pods and volumes
//! created when missing, role labels moved so the Services follow, desired states handed to the
//! agents, a consumed switchover request removed.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

use crate::api::PgReplicaCluster;
use crate::net::http::{AgentClient, Target};
use crate::plan::Plan;

use super::agent_config::agent_config_json;
use super::builders;
use super::error::KubeError;
use super::labels;
use super::names;
use super::observe::Observed;

const AGENT_TIMEOUT: Duration = Duration::from_millis(800);

/// Server-side apply with our field manager.
pub async fn apply<K>(api: &Api<K>, obj: &K, kind: &'static str) -> Result<K, KubeError>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(names::FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(KubeError::api("apply", kind, name))
}

/// The application's Secret: its password generated once and kept; the other keys follow the
/// spec.
async fn application_secret(
    secrets: &Api<Secret>,
    cluster: &PgReplicaCluster,
) -> Result<(), KubeError> {
    let name = names::app_secret(&cluster.name_any());
    let existing = secrets
        .get_opt(&name)
        .await
        .map_err(KubeError::api("get", "Secret", &name))?;
    let kept = existing
        .as_ref()
        .and_then(|s| s.data.as_ref()?.get(names::PASSWORD_KEY).cloned())
        .and_then(|v| String::from_utf8(v.0).ok())
        .filter(|p| !p.is_empty());
    let password = match kept {
        Some(password) => password,
        None => crate::runtime::local::secrets::generate(32)
            .map_err(|e| KubeError::Other(e.to_string()))?,
    };
    let wanted = builders::app_secret(cluster, &password).map_err(|source| KubeError::Build {
        what: "application secret",
        source,
    })?;
    if existing.and_then(|s| s.data) != wanted.data {
        apply(secrets, &wanted, "Secret").await?;
        info!(cluster = %cluster.name_any(), secret = %name, "wrote the application's secret");
    }
    Ok(())
}

/// Secrets (generated once, never overwritten), agent RBAC, Services, the NetworkPolicy and the
/// disruption budget.
pub async fn supporting_objects(
    client: &kube::Client,
    cluster: &PgReplicaCluster,
    namespace: &str,
    operator_namespace: &str,
) -> Result<(), KubeError> {
    let name = cluster.name_any();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for secret_name in [
        names::superuser_secret(&name),
        names::replication_secret(&name),
    ] {
        let existing = secrets.get_opt(&secret_name).await.map_err(KubeError::api(
            "get",
            "Secret",
            &secret_name,
        ))?;
        if existing.is_none() {
            let password = crate::runtime::local::secrets::generate(32)
                .map_err(|e| KubeError::Other(e.to_string()))?;
            let secret =
                builders::password_secret(cluster, &secret_name, &password).map_err(|source| {
                    KubeError::Build {
                        what: "secret",
                        source,
                    }
                })?;
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .map_err(KubeError::api("create", "Secret", &secret_name))?;
            info!(cluster = %name, secret = %secret_name, "generated a password secret");
        }
    }
    application_secret(&secrets, cluster).await?;
    let (account, role, binding) =
        builders::agent_rbac(cluster).map_err(|source| KubeError::Build {
            what: "agent RBAC",
            source,
        })?;
    apply(
        &Api::<ServiceAccount>::namespaced(client.clone(), namespace),
        &account,
        "ServiceAccount",
    )
    .await?;
    apply(
        &Api::<Role>::namespaced(client.clone(), namespace),
        &role,
        "Role",
    )
    .await?;
    apply(
        &Api::<RoleBinding>::namespaced(client.clone(), namespace),
        &binding,
        "RoleBinding",
    )
    .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    for svc in builders::services(cluster).map_err(|source| KubeError::Build {
        what: "services",
        source,
    })? {
        apply(&services, &svc, "Service").await?;
    }
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), namespace);
    let lease_name = names::primary_lease(&name);
    if leases
        .get_opt(&lease_name)
        .await
        .map_err(KubeError::api("get", "Lease", &lease_name))?
        .is_none()
    {
        // created free by the operator (owned by the cluster); agents only take and renew it
        let lease = builders::primary_lease(cluster).map_err(|source| KubeError::Build {
            what: "lease",
            source,
        })?;
        leases
            .create(&PostParams::default(), &lease)
            .await
            .map_err(KubeError::api("create", "Lease", &lease_name))?;
    }
    let policy = builders::network_policy(cluster, operator_namespace).map_err(|source| {
        KubeError::Build {
            what: "network policy",
            source,
        }
    })?;
    apply(
        &Api::<NetworkPolicy>::namespaced(client.clone(), namespace),
        &policy,
        "NetworkPolicy",
    )
    .await?;
    let pdb = builders::pdb(cluster).map_err(|source| KubeError::Build {
        what: "disruption budget",
        source,
    })?;
    apply(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), namespace),
        &pdb,
        "PodDisruptionBudget",
    )
    .await?;
    Ok(())
}

/// The role label each member's pod should carry now.
pub fn role_labels(cluster: &PgReplicaCluster, plan: &Plan) -> BTreeMap<String, &'static str> {
    cluster
        .spec
        .members
        .iter()
        .map(|m| {
            let role = if plan.routes.rw.as_deref() == Some(m.name.as_str()) {
                labels::ROLE_PRIMARY
            } else if plan.routes.ro.contains(&m.name) {
                labels::ROLE_STANDBY
            } else {
                labels::ROLE_NONE
            };
            (m.name.clone(), role)
        })
        .collect()
}

/// Volumes and pods for every member; pods of removed members are deleted (volumes kept).
pub async fn members(
    client: &kube::Client,
    cluster: &PgReplicaCluster,
    namespace: &str,
    observed: &Observed,
    roles: &BTreeMap<String, &'static str>,
    operator_image: &str,
) -> Result<Vec<String>, KubeError> {
    let mut created = Vec::new();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for m in &cluster.spec.members {
        let pvc = builders::member_pvc(cluster, m).map_err(|source| KubeError::Build {
            what: "volume claim",
            source,
        })?;
        let pvc_name = pvc.name_any();
        if pvcs
            .get_opt(&pvc_name)
            .await
            .map_err(KubeError::api("get", "PersistentVolumeClaim", &pvc_name))?
            .is_none()
        {
            pvcs.create(&PostParams::default(), &pvc)
                .await
                .map_err(KubeError::api("create", "PersistentVolumeClaim", &pvc_name))?;
        }
        let role = roles.get(&m.name).copied().unwrap_or(labels::ROLE_NONE);
        match observed.pods.get(&m.name) {
            None => {
                let opts = builders::PodOptions::new(
                    operator_image,
                    agent_config_json(cluster, m, namespace),
                    role,
                );
                let pod =
                    builders::member_pod(cluster, m, &opts).map_err(|source| KubeError::Build {
                        what: "member pod",
                        source,
                    })?;
                let pod_name = pod.name_any();
                pods.create(&PostParams::default(), &pod)
                    .await
                    .map_err(KubeError::api("create", "Pod", &pod_name))?;
                created.push(m.name.clone());
            }
            Some(pod) => {
                let current = pod.labels().get(labels::ROLE_LABEL).map(String::as_str);
                if current != Some(role) && pod.metadata.deletion_timestamp.is_none() {
                    let patch = json!({"metadata": {"labels": {labels::ROLE_LABEL: role}}});
                    pods.patch(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .map_err(KubeError::api(
                        "relabel",
                        "Pod",
                        pod.name_any(),
                    ))?;
                    info!(member = %m.name, role, "moved the role label");
                }
                if pod_failed(pod) {
                    warn!(member = %m.name, "pod failed: deleting it so it is created again");
                    pods.delete(&pod.name_any(), &DeleteParams::default())
                        .await
                        .map_err(KubeError::api("delete", "Pod", pod.name_any()))?;
                }
            }
        }
    }
    for (member, pod) in &observed.pods {
        if cluster.spec.member(member).is_none() && pod.metadata.deletion_timestamp.is_none() {
            info!(member = %member, "member removed from the spec: deleting its pod (its volume is kept)");
            pods.delete(&pod.name_any(), &DeleteParams::default())
                .await
                .map_err(KubeError::api("delete", "Pod", pod.name_any()))?;
        }
    }
    Ok(created)
}

/// A pod younger than this is never deleted to fence it.
const FENCE_GRACE_SECONDS: i64 = 30;

/// Fence members whose agents do not answer while a failover needs them gone: delete the pod
/// with a 1 s grace period, so the kubelet (where the API server can reach its node) kills every
/// process in it. Failures are logged; the plan waits for proof either way.
pub async fn fence(client: &kube::Client, namespace: &str, observed: &Observed, plan: &Plan) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for (member, why) in &plan.fence {
        let Some(pod) = observed.pods.get(member) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        // a pod created moments ago (perhaps by this fencing) has not had the time to report:
        // deleting it again would keep it from ever answering
        let young = pod.metadata.creation_timestamp.as_ref().is_none_or(|t| {
            jiff::Timestamp::now().duration_since(t.0).as_secs() < FENCE_GRACE_SECONDS
        });
        if young {
            continue;
        }
        warn!(member = %member, pod = %pod.name_any(), why = %why, "fencing: deleting the pod with a 1 s grace period");
        // 1 s, not 0: a zero grace period removes the object without the kubelet's confirmation,
        // while the containers may still run on an unreachable node
        let now = DeleteParams {
            grace_period_seconds: Some(1),
            ..DeleteParams::default()
        };
        if let Err(e) = pods.delete(&pod.name_any(), &now).await {
            warn!(member = %member, error = %e, "could not delete the pod to fence it");
        }
    }
}

fn pod_failed(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Failed" || p == "Succeeded")
}

/// Hand each reachable agent its desired state when it differs from what the agent has.
pub async fn desired_states(
    agents: &AgentClient,
    cluster: &PgReplicaCluster,
    observed: &Observed,
    plan: &Plan,
    agent_port: u16,
) {
    let cluster_name = cluster.name_any();
    let sends = plan.desired.iter().filter_map(|(name, desired)| {
        let report = observed.members.get(name)?.report()?;
        if report.desired.as_ref().is_some_and(|d| d.same_role(desired)) {
            return None;
        }
        let ip = observed.addresses.get(name)?.host.clone();
        let addr: SocketAddr = format!("{ip}:{agent_port}").parse().ok()?;
        let target = Target {
            name: crate::tls::agent_name(&cluster_name, name),
            addr,
        };
        Some(async move {
            info!(member = %name, role = desired.role_name(), reason = %desired.reason, "desired state");
            if let Err(e) = agents
                .send_json(&target, "PUT", "/desired", desired, AGENT_TIMEOUT)
                .await
            {
                warn!(member = %name, error = %e, "could not hand over the desired state");
            }
        })
    });
    join_all(sends).await;
}

/// Remove the switchover annotation once the request was taken or refused.
pub async fn forget_switchover(
    client: &kube::Client,
    cluster: &PgReplicaCluster,
    namespace: &str,
) -> Result<(), KubeError> {
    let api: Api<PgReplicaCluster> = Api::namespaced(client.clone(), namespace);
    let patch = json!({"metadata": {"annotations": {labels::SWITCHOVER_TO_ANNOTATION: null}}});
    api.patch(
        &cluster.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(KubeError::api(
        "patch",
        "PgReplicaCluster",
        cluster.name_any(),
    ))?;
    Ok(())
}
