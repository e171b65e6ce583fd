//! The slow loop's objects: supporting objects by server-side apply, member volumes and pods
//! created when missing (failed pods and pods of removed members deleted). Never in the tick:
//! routing labels, fences and handovers are the brain's (`world.rs`).

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{info, warn};

use crate::api::PgReplicaCluster;

use super::agent_config::agent_config_json;
use super::builders;
use super::error::KubeError;
use super::labels;
use super::names;

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
        None => crate::password::generate(32).map_err(|e| KubeError::Other(e.to_string()))?,
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
            let password =
                crate::password::generate(32).map_err(|e| KubeError::Other(e.to_string()))?;
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

/// What one pass over the members did: pods created, and volumes that do not have the size the
/// spec asks.
#[derive(Default)]
pub struct MembersApplied {
    pub created: Vec<String>,
    pub volumes: BTreeMap<String, crate::plan::VolumeNote>,
}

/// Volumes and pods for every member; pods of removed members are deleted (their volumes kept
/// unless `volumeReclaim: Delete`); a larger `storage.size` is asked of the volume claim.
pub async fn members(
    client: &kube::Client,
    cluster: &PgReplicaCluster,
    namespace: &str,
    pods_now: &BTreeMap<String, Pod>,
    operator_image: &str,
) -> Result<MembersApplied, KubeError> {
    let mut applied = MembersApplied::default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for m in &cluster.spec.members {
        let pvc = builders::member_pvc(cluster, m).map_err(|source| KubeError::Build {
            what: "volume claim",
            source,
        })?;
        let pvc_name = pvc.name_any();
        match pvcs.get_opt(&pvc_name).await.map_err(KubeError::api(
            "get",
            "PersistentVolumeClaim",
            &pvc_name,
        ))? {
            None => {
                pvcs.create(&PostParams::default(), &pvc)
                    .await
                    .map_err(KubeError::api("create", "PersistentVolumeClaim", &pvc_name))?;
            }
            Some(existing) => {
                if let Some(note) = super::volumes::resize(&pvcs, &existing, m).await? {
                    applied.volumes.insert(m.name.clone(), note);
                }
            }
        }
        match pods_now.get(&m.name) {
            None => {
                let pod = wanted_pod(cluster, m, namespace, operator_image).map_err(|source| {
                    KubeError::Build {
                        what: "member pod",
                        source,
                    }
                })?;
                let pod_name = pod.name_any();
                pods.create(&PostParams::default(), &pod)
                    .await
                    .map_err(KubeError::api("create", "Pod", &pod_name))?;
                applied.created.push(m.name.clone());
            }
            Some(pod) => {
                if pod_failed(pod) {
                    warn!(member = %m.name, "pod failed: deleting it so it is created again");
                    pods.delete(&pod.name_any(), &DeleteParams::default())
                        .await
                        .map_err(KubeError::api("delete", "Pod", pod.name_any()))?;
                }
            }
        }
    }
    let status = cluster.status.clone().unwrap_or_default();
    let running = crate::plan::members_to_run(&cluster.spec, &status);
    for (member, pod) in pods_now {
        if !running.contains(member) && pod.metadata.deletion_timestamp.is_none() {
            info!(member = %member, "member removed from the spec: deleting its pod (its volume is kept)");
            pods.delete(&pod.name_any(), &DeleteParams::default())
                .await
                .map_err(KubeError::api("delete", "Pod", pod.name_any()))?;
        }
    }
    let with_pods: Vec<String> = pods_now.keys().cloned().collect();
    super::volumes::reclaim_removed(&pvcs, cluster, &running, &with_pods).await?;
    Ok(applied)
}

/// The pod the operator creates for `member` now (serving nothing: the brain labels it as it
/// routes). A running pod whose template digest differs is replaced in its rollout turn.
pub fn wanted_pod(
    cluster: &PgReplicaCluster,
    member: &crate::api::MemberSpec,
    namespace: &str,
    operator_image: &str,
) -> Result<Pod, builders::BuildError> {
    let opts = builders::PodOptions {
        // the agents log as the operator does (`--log-format` / PGREPLICA_LOG_FORMAT)
        log_json: std::env::var("PGREPLICA_LOG_FORMAT").is_ok_and(|f| f == "json"),
        ..builders::PodOptions::new(
            operator_image,
            agent_config_json(cluster, member, namespace),
            labels::ROLE_NONE,
        )
    };
    builders::member_pod(cluster, member, &opts)
}

/// The cluster's member pods by member, listed from the API (the slow loop decides on what the
/// API server says, not on a cache that may lag its own creations).
pub async fn member_pods(
    client: &kube::Client,
    cluster: &PgReplicaCluster,
    namespace: &str,
) -> Result<BTreeMap<String, Pod>, KubeError> {
    let name = cluster.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = labels::selector_string(&labels::cluster_selector(&name));
    let listed = api
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .map_err(KubeError::api("list", "Pod", &name))?;
    Ok(listed
        .into_iter()
        .filter_map(|pod| Some((pod.labels().get(labels::MEMBER_LABEL)?.clone(), pod)))
        .collect())
}

fn pod_failed(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Failed" || p == "Succeeded")
}
