//! One member's pod: the official PostgreSQL image running our agent as PID 1.
//!
//! An init container from the operator's image copies the static `pgreplica` binary into an
//! emptyDir; the `postgres` container runs it as `pgreplica instance run`, which starts and watches
//! PostgreSQL. Users stay on official images, and upgrading the operator upgrades the agent.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext,
    PodSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

use super::meta::Owner;
use super::BuildError;
use crate::api::{MemberSpec, PgReplicaCluster};
use crate::runtime::kube::{labels, names};

/// The `postgres` user of the official postgres images (Debian and Alpine alike).
pub const POSTGRES_UID: i64 = 999;

/// Name of the init container that installs the agent binary.
pub const INSTALL_CONTAINER: &str = "install-agent";
/// Name of the container running the agent and PostgreSQL.
pub const POSTGRES_CONTAINER: &str = "postgres";

const DATA_VOLUME: &str = "data";
const BIN_VOLUME: &str = "pgreplica-bin";
const SUPERUSER_VOLUME: &str = "superuser";
const REPLICATION_VOLUME: &str = "replication";
const TLS_VOLUME: &str = "tls";
const APP_VOLUME: &str = "app";
const SHM_VOLUME: &str = "shm";

/// Owner read-only. With `fsGroup` set the kubelet adds group read (0440, group = fsGroup), which is
/// how the non-root agent reads a Secret file owned by root.
const SECRET_FILE_MODE: i32 = 0o400;
const TERMINATION_GRACE_SECONDS: i64 = 60;

/// What the pod needs beyond the cluster spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOptions<'a> {
    /// The operator's own image: the init container copies the agent binary out of it.
    pub operator_image: String,
    /// Pull policy of the operator image; the cluster's default when `None`.
    pub operator_image_pull_policy: Option<String>,
    /// The member's `AgentConfig`, as JSON.
    pub agent_config_json: String,
    /// The pod's `pgreplica.io/role` label (see [`labels::ROLE_PRIMARY`] and friends).
    pub role_label: &'a str,
    /// User, group and fsGroup of every container: the uid PostgreSQL runs as in the image.
    pub run_as_uid: i64,
    /// The agent logs JSON lines (`PGREPLICA_LOG_FORMAT=json`), as the operator does.
    pub log_json: bool,
}

impl<'a> PodOptions<'a> {
    /// Options for an official postgres image ([`POSTGRES_UID`]) and the cluster's pull policy.
    pub fn new(
        operator_image: impl Into<String>,
        agent_config_json: impl Into<String>,
        role_label: &'a str,
    ) -> PodOptions<'a> {
        PodOptions {
            operator_image: operator_image.into(),
            operator_image_pull_policy: None,
            agent_config_json: agent_config_json.into(),
            role_label,
            run_as_uid: POSTGRES_UID,
            log_json: false,
        }
    }
}

/// The pod of `member`, named `<cluster>-<member>`.
pub fn member_pod(
    cluster: &PgReplicaCluster,
    member: &MemberSpec,
    opts: &PodOptions<'_>,
) -> Result<Pod, BuildError> {
    let owner = Owner::of(cluster)?;
    let metadata = owner.meta(
        names::member_object(owner.name, &member.name),
        labels::pod_labels(owner.name, &member.name, opts.role_label),
    );
    let spec = PodSpec {
        init_containers: Some(vec![install_container(opts)]),
        containers: vec![postgres_container(cluster, member, opts)],
        volumes: Some(volumes(owner.name, &member.name)),
        node_selector: member.node_selector.clone(),
        affinity: member.affinity.clone(),
        tolerations: member.tolerations.clone(),
        service_account_name: Some(names::agent_account(owner.name)),
        security_context: Some(pod_security(opts.run_as_uid)),
        // Room for a fast shutdown that lets the final WAL reach the standbys.
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        // Service environment variables are noise to PostgreSQL and grow with the namespace.
        enable_service_links: Some(false),
        ..PodSpec::default()
    };
    let mut metadata = metadata;
    metadata.annotations = Some(BTreeMap::from([(
        labels::POD_TEMPLATE_ANNOTATION.to_string(),
        template_digest(&spec),
    )]));
    Ok(Pod {
        metadata,
        spec: Some(spec),
        status: None,
    })
}

/// The first 16 hex digits of the SHA-256 of the pod spec's JSON (labels, which change with the
/// member's role, are not part of it).
fn template_digest(spec: &PodSpec) -> String {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &json);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The pod-template digest a member pod was created with (none: created by an earlier version).
pub fn template_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(labels::POD_TEMPLATE_ANNOTATION)
        .map(String::as_str)
}

/// What differs between a running member pod and the one the operator would create now, in a
/// few words; `None` when nothing does.
pub fn outdated(running: &Pod, wanted: &Pod) -> Option<String> {
    if template_of(running).is_some() && template_of(running) == template_of(wanted) {
        return None;
    }
    let image = |pod: &Pod, init: bool| -> Option<String> {
        let spec = pod.spec.as_ref()?;
        let containers = if init {
            spec.init_containers.as_ref()?
        } else {
            &spec.containers
        };
        containers.first()?.image.clone()
    };
    let mut what = Vec::new();
    if image(running, false) != image(wanted, false) {
        what.push(format!(
            "image {} → {}",
            image(running, false).unwrap_or_default(),
            image(wanted, false).unwrap_or_default()
        ));
    }
    if image(running, true) != image(wanted, true) {
        what.push(format!(
            "agent from {} → {}",
            image(running, true).unwrap_or_default(),
            image(wanted, true).unwrap_or_default()
        ));
    }
    if what.is_empty() {
        what.push(if template_of(running).is_none() {
            "pod created by an earlier pgreplica".to_string()
        } else {
            "pod template (placement, resources or agent configuration)".to_string()
        });
    }
    Some(what.join(", "))
}

fn install_container(opts: &PodOptions<'_>) -> Container {
    Container {
        name: INSTALL_CONTAINER.to_string(),
        image: Some(opts.operator_image.clone()),
        image_pull_policy: opts.operator_image_pull_policy.clone(),
        // The operator image has no shell or `cp`: the binary copies itself.
        command: Some(strings(&[
            names::OPERATOR_BINARY,
            "install-binary",
            names::AGENT_BINARY,
        ])),
        volume_mounts: Some(vec![mount(BIN_VOLUME, names::AGENT_BIN_DIR, false)]),
        security_context: Some(container_security()),
        ..Container::default()
    }
}

fn postgres_container(
    cluster: &PgReplicaCluster,
    member: &MemberSpec,
    opts: &PodOptions<'_>,
) -> Container {
    Container {
        name: POSTGRES_CONTAINER.to_string(),
        image: Some(cluster.spec.postgres.image.clone()),
        command: Some(strings(&[
            names::AGENT_BINARY,
            "instance",
            "run",
            "--config-env",
            names::AGENT_CONFIG_ENV,
        ])),
        env: Some(
            vec![
                EnvVar {
                    name: names::AGENT_CONFIG_ENV.to_string(),
                    value: Some(opts.agent_config_json.clone()),
                    value_from: None,
                },
                field_env(names::POD_IP_ENV, "status.podIP"),
                field_env(names::POD_NAME_ENV, "metadata.name"),
                field_env(names::POD_NAMESPACE_ENV, "metadata.namespace"),
            ]
            .into_iter()
            // only when asked: the templates of pods that log text stay as they were
            .chain(opts.log_json.then(|| EnvVar {
                name: "PGREPLICA_LOG_FORMAT".to_string(),
                value: Some("json".to_string()),
                value_from: None,
            }))
            .collect(),
        ),
        ports: Some(vec![
            port(names::POSTGRES_PORT_NAME, names::POSTGRES_PORT),
            port(names::AGENT_PORT_NAME, names::AGENT_PORT),
        ]),
        volume_mounts: Some(vec![
            mount(DATA_VOLUME, names::MEMBER_DIR, false),
            mount(BIN_VOLUME, names::AGENT_BIN_DIR, true),
            mount(SUPERUSER_VOLUME, names::SUPERUSER_SECRET_DIR, true),
            mount(REPLICATION_VOLUME, names::REPLICATION_SECRET_DIR, true),
            mount(TLS_VOLUME, names::TLS_DIR, true),
            mount(APP_VOLUME, names::APP_SECRET_DIR, true),
            mount(SHM_VOLUME, "/dev/shm", false),
        ]),
        // Ready: this member serves its role (for `kubectl get pods`, the PodDisruptionBudget).
        // The Services follow the brain's labels, not this (ADR 0008), but an EndpointSlice
        // still carries each pod's readiness as its `serving` condition, and kube-proxy counts a
        // change of it as a change: a single failed look during a promotion or a switchover's
        // shutdown would hold the new primary's route back by kube-proxy's minSyncPeriod. Three
        // failed looks (6 s) make a pod not ready; a failover is over well before.
        readiness_probe: Some(Probe {
            period_seconds: Some(2),
            failure_threshold: Some(3),
            ..agent_probe("/readyz")
        }),
        // The agent answers while PostgreSQL clones or recovers; only a stopped or hung agent
        // fails this, and it is killed (with its PostgreSQL: the whole container) within about
        // 4 s, below the 6 s lease, so a stalled agent cannot leave a server accepting commits.
        liveness_probe: Some(Probe {
            period_seconds: Some(1),
            timeout_seconds: Some(1),
            failure_threshold: Some(3),
            termination_grace_period_seconds: Some(1),
            ..agent_probe("/healthz")
        }),
        resources: member.resources.clone(),
        security_context: Some(container_security()),
        ..Container::default()
    }
}

fn volumes(cluster: &str, member: &str) -> Vec<Volume> {
    vec![
        Volume {
            name: DATA_VOLUME.to_string(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names::member_object(cluster, member),
                read_only: None,
            }),
            ..Volume::default()
        },
        Volume {
            name: BIN_VOLUME.to_string(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        secret_volume(SUPERUSER_VOLUME, names::superuser_secret(cluster)),
        secret_volume(REPLICATION_VOLUME, names::replication_secret(cluster)),
        secret_volume(TLS_VOLUME, names::member_tls_secret(cluster, member)),
        secret_volume(APP_VOLUME, names::app_secret(cluster)),
        // The container runtime's default /dev/shm is 64 MiB; PostgreSQL's parallel queries use
        // POSIX shared memory there and fail with "could not resize shared memory segment".
        Volume {
            name: SHM_VOLUME.to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_string()),
                size_limit: None,
            }),
            ..Volume::default()
        },
    ]
}

fn secret_volume(name: &str, secret: String) -> Volume {
    Volume {
        name: name.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            default_mode: Some(SECRET_FILE_MODE),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Meets the `restricted` Pod Security Standard.
fn pod_security(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        // Re-own the volume only when its root is wrong, not file by file at every start.
        fs_group_change_policy: Some("OnRootMismatch".to_string()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(strings(&["ALL"])),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

fn agent_probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(names::AGENT_PORT_NAME.to_string()),
            // The agent serves HTTPS only; the kubelet does not check the certificate.
            scheme: Some("HTTPS".to_string()),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    }
}

fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: field_path.to_string(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: number,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.to_string(),
        mount_path: path.to_string(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}
