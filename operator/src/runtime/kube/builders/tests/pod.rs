use serde_json::json;

use super::fixtures::{assert_fields, five_members, json, lab, member};
use crate::runtime::kube::builders::{member_pod, outdated, PodOptions, POSTGRES_UID};
use crate::runtime::kube::labels::{ROLE_PRIMARY, ROLE_STANDBY};

const CONFIG: &str = r#"{"cluster":"lab","member":"c"}"#;

fn options(role: &str) -> PodOptions<'_> {
    PodOptions::new("ghcr.io/pgreplica/pgreplica:0.1.0", CONFIG, role)
}

#[test]
fn lab_member_c_pod_table() {
    let cluster = lab();
    let pod =
        json(&member_pod(&cluster, member(&cluster, "c"), &options(ROLE_STANDBY)).expect("builds"));
    let init = "/spec/initContainers/0";
    let main = "/spec/containers/0";
    assert_fields(
        &pod,
        &[
            ("/metadata/name", json!("lab-c")),
            ("/metadata/namespace", json!("db")),
            ("/metadata/labels/pgreplica.io~1cluster", json!("lab")),
            ("/metadata/labels/pgreplica.io~1member", json!("c")),
            ("/metadata/labels/pgreplica.io~1role", json!("standby")),
            (
                "/spec/nodeSelector",
                json!({"kubernetes.io/hostname": "rpi2"}),
            ),
            ("/spec/serviceAccountName", json!("lab-agent")),
            ("/spec/terminationGracePeriodSeconds", json!(60)),
            ("/spec/enableServiceLinks", json!(false)),
            // The agent is installed from the operator's image by the binary itself.
            (&format!("{init}/name"), json!("install-agent")),
            (
                &format!("{init}/image"),
                json!("ghcr.io/pgreplica/pgreplica:0.1.0"),
            ),
            (
                &format!("{init}/command"),
                json!(["/pgreplica", "install-binary", "/pgreplica-bin/pgreplica"]),
            ),
            (
                &format!("{init}/volumeMounts"),
                json!([{"name": "pgreplica-bin", "mountPath": "/pgreplica-bin"}]),
            ),
            // The official image runs our agent as PID 1.
            (&format!("{main}/name"), json!("postgres")),
            (&format!("{main}/image"), json!("postgres:15-bookworm")),
            (
                &format!("{main}/command"),
                json!([
                    "/pgreplica-bin/pgreplica",
                    "instance",
                    "run",
                    "--config-env",
                    "PGREPLICA_AGENT_CONFIG"
                ]),
            ),
            (
                &format!("{main}/env"),
                json!([
                    {"name": "PGREPLICA_AGENT_CONFIG", "value": CONFIG},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                ]),
            ),
            (
                &format!("{main}/ports"),
                json!([
                    {"name": "postgres", "containerPort": 5432, "protocol": "TCP"},
                    {"name": "agent", "containerPort": 8008, "protocol": "TCP"},
                ]),
            ),
            (
                &format!("{main}/volumeMounts"),
                json!([
                    {"name": "data", "mountPath": "/var/lib/pgreplica"},
                    {"name": "pgreplica-bin", "mountPath": "/pgreplica-bin", "readOnly": true},
                    {"name": "superuser", "mountPath": "/etc/pgreplica/superuser", "readOnly": true},
                    {"name": "replication", "mountPath": "/etc/pgreplica/replication", "readOnly": true},
                    {"name": "tls", "mountPath": "/etc/pgreplica/tls", "readOnly": true},
                    {"name": "app", "mountPath": "/etc/pgreplica/app", "readOnly": true},
                    {"name": "shm", "mountPath": "/dev/shm"},
                ]),
            ),
            (
                &format!("{main}/readinessProbe"),
                json!({"httpGet": {"path": "/readyz", "port": "agent", "scheme": "HTTPS"}, "periodSeconds": 2, "failureThreshold": 3}),
            ),
            (
                &format!("{main}/livenessProbe"),
                json!({"httpGet": {"path": "/healthz", "port": "agent", "scheme": "HTTPS"}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3, "terminationGracePeriodSeconds": 1}),
            ),
            (
                "/spec/volumes",
                json!([
                    {"name": "data", "persistentVolumeClaim": {"claimName": "lab-c"}},
                    {"name": "pgreplica-bin", "emptyDir": {}},
                    {"name": "superuser", "secret": {"secretName": "lab-superuser", "defaultMode": 0o400}},
                    {"name": "replication", "secret": {"secretName": "lab-replication", "defaultMode": 0o400}},
                    {"name": "tls", "secret": {"secretName": "lab-c-tls", "defaultMode": 0o400}},
                    {"name": "app", "secret": {"secretName": "lab-app", "defaultMode": 0o400}},
                    {"name": "shm", "emptyDir": {"medium": "Memory"}},
                ]),
            ),
            (
                "/spec/securityContext",
                json!({
                    "runAsNonRoot": true,
                    "runAsUser": 999,
                    "runAsGroup": 999,
                    "fsGroup": 999,
                    "fsGroupChangePolicy": "OnRootMismatch",
                    "seccompProfile": {"type": "RuntimeDefault"},
                }),
            ),
        ],
    );
    let restricted = json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
    for container in [init, main] {
        assert_fields(
            &pod,
            &[(&format!("{container}/securityContext"), restricted.clone())],
        );
    }
    assert_eq!(
        pod.pointer("/spec/initContainers")
            .and_then(|c| c.as_array())
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(pod.pointer(&format!("{init}/imagePullPolicy")), None);
    assert_eq!(
        pod.pointer(&format!("{main}/resources")),
        None,
        "lab sets no resources"
    );
    assert_eq!(pod.pointer("/spec/tolerations"), None);
    assert_eq!(pod.pointer("/spec/affinity"), None);
}

#[test]
fn five_members_pods_carry_each_members_scheduling_and_resources() {
    let cluster = five_members();
    // (member, pointer, expected; None means absent)
    let table = [
        (
            "a",
            "/spec/nodeSelector",
            Some(json!({"kubernetes.io/hostname": "laptop"})),
        ),
        (
            "a",
            "/spec/containers/0/resources",
            Some(json!({"requests": {"cpu": "500m", "memory": "512Mi"}})),
        ),
        ("a", "/spec/tolerations", None),
        (
            "delayed-5m",
            "/spec/tolerations",
            Some(
                json!([{"key": "dedicated", "operator": "Equal", "value": "backup", "effect": "NoSchedule"}]),
            ),
        ),
        (
            "delayed-5m",
            "/spec/nodeSelector",
            Some(json!({"kubernetes.io/hostname": "rpi3"})),
        ),
        ("delayed-5m", "/spec/containers/0/resources", None),
        (
            "delayed-1h",
            "/metadata/name",
            Some(json!("shop-delayed-1h")),
        ),
        (
            "delayed-1h",
            "/spec/volumes/0/persistentVolumeClaim/claimName",
            Some(json!("shop-delayed-1h")),
        ),
        ("b", "/spec/serviceAccountName", Some(json!("shop-agent"))),
        (
            "b",
            "/spec/volumes/2/secret/secretName",
            Some(json!("shop-superuser")),
        ),
    ];
    for (name, pointer, want) in table {
        let pod = json(
            &member_pod(&cluster, member(&cluster, name), &options(ROLE_STANDBY)).expect("builds"),
        );
        assert_eq!(
            pod.pointer(pointer),
            want.as_ref(),
            "member {name} at {pointer}"
        );
    }
}

#[test]
fn options_set_role_label_uid_and_pull_policy() {
    let cluster = lab();
    let opts = PodOptions {
        run_as_uid: 70,
        operator_image_pull_policy: Some("IfNotPresent".to_string()),
        ..options(ROLE_PRIMARY)
    };
    assert_eq!(
        PodOptions::new("i", "{}", ROLE_PRIMARY).run_as_uid,
        POSTGRES_UID
    );
    let pod = json(&member_pod(&cluster, member(&cluster, "a"), &opts).expect("builds"));
    assert_fields(
        &pod,
        &[
            ("/metadata/labels/pgreplica.io~1role", json!("primary")),
            ("/spec/securityContext/runAsUser", json!(70)),
            ("/spec/securityContext/runAsGroup", json!(70)),
            ("/spec/securityContext/fsGroup", json!(70)),
            (
                "/spec/initContainers/0/imagePullPolicy",
                json!("IfNotPresent"),
            ),
            ("/spec/containers/0/env/0/value", json!(CONFIG)),
        ],
    );
}

/// The template digest ignores the role label, and names what changed otherwise.
#[test]
fn a_changed_template_is_told_from_a_relabelled_pod() {
    let cluster = lab();
    let c = member(&cluster, "c");
    let build = |cluster: &crate::api::PgReplicaCluster, opts: &PodOptions<'_>| {
        member_pod(cluster, member(cluster, "c"), opts).expect("builds")
    };
    let running = build(&cluster, &options(ROLE_STANDBY));
    assert!(crate::runtime::kube::builders::template_of(&running).is_some());
    assert_eq!(
        outdated(&running, &build(&cluster, &options(ROLE_PRIMARY))),
        None
    );
    let mut newer = cluster.clone();
    newer.spec.postgres.image = "postgres:15.1-bookworm".into();
    let why = outdated(&running, &build(&newer, &options(ROLE_STANDBY))).expect("outdated");
    assert!(why.starts_with("image "), "{why}");
    let upgraded = PodOptions::new("ghcr.io/pgreplica/pgreplica:0.2.0", CONFIG, ROLE_STANDBY);
    let why = outdated(
        &running,
        &member_pod(&cluster, c, &upgraded).expect("builds"),
    )
    .expect("outdated");
    assert!(
        why.contains(
            "agent from ghcr.io/pgreplica/pgreplica:0.1.0 → ghcr.io/pgreplica/pgreplica:0.2.0"
        ),
        "{why}"
    );
    // a pod of an earlier version has no digest
    let mut old = running.clone();
    old.metadata.annotations = None;
    assert_eq!(
        outdated(&old, &running).as_deref(),
        Some("pod created by an earlier pgreplica")
    );
}
