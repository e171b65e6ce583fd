use serde_json::json;

use super::fixtures::{assert_fields, five_members, json, lab, member};
use crate::runtime::kube::builders::{
    agent_rbac, member_pvc, password_secret, pdb, primary_lease, services,
};

#[test]
fn pvc_table() {
    let lab = lab();
    let shop = five_members();
    // (cluster, member, name, size, storage class)
    let table = [
        (&lab, "a", "lab-a", "10Gi", None),
        (&lab, "c", "lab-c", "10Gi", None),
        (&shop, "a", "shop-a", "1Gi", None),
        (
            &shop,
            "delayed-1h",
            "shop-delayed-1h",
            "20Gi",
            Some("local-path"),
        ),
    ];
    for (cluster, name, object, size, class) in table {
        let pvc = json(&member_pvc(cluster, member(cluster, name)).expect("builds"));
        assert_fields(
            &pvc,
            &[
                ("/metadata/name", json!(object)),
                ("/metadata/labels/pgreplica.io~1member", json!(name)),
                ("/spec/accessModes", json!(["ReadWriteOnce"])),
                ("/spec/resources/requests/storage", json!(size)),
            ],
        );
        assert_eq!(
            pvc.pointer("/spec/storageClassName"),
            class.map(|c| json!(c)).as_ref(),
            "{object}"
        );
        assert_eq!(pvc.pointer("/metadata/labels/pgreplica.io~1role"), None);
    }
}

#[test]
fn services_table() {
    let built = services(&lab()).expect("builds");
    let names: Vec<_> = built.iter().map(|s| s.metadata.name.clone()).collect();
    let want_selectors = [
        (
            "lab-rw",
            json!({"pgreplica.io/cluster": "lab", "pgreplica.io/role": "primary"}),
        ),
        (
            "lab-ro",
            json!({"pgreplica.io/cluster": "lab", "pgreplica.io/ro": "true"}),
        ),
        (
            "lab-r",
            json!({"pgreplica.io/cluster": "lab", "pgreplica.io/serving": "true"}),
        ),
    ];
    assert_eq!(names.len(), want_selectors.len(), "{names:?}");
    for (service, (name, selector)) in built.iter().zip(want_selectors) {
        assert_fields(
            &json(service),
            &[
                ("/metadata/name", json!(name)),
                ("/spec/type", json!("ClusterIP")),
                ("/spec/selector", selector),
                (
                    "/spec/ports",
                    json!([{"name": "postgres", "port": 5432, "targetPort": "postgres", "protocol": "TCP"}]),
                ),
                ("/spec/publishNotReadyAddresses", json!(true)),
            ],
        );
    }
}

#[test]
fn password_secret_holds_the_password_under_its_key() {
    let secret = password_secret(&lab(), "lab-superuser", "s3cr3t").expect("builds");
    assert_fields(
        &json(&secret),
        &[
            ("/metadata/name", json!("lab-superuser")),
            ("/type", json!("Opaque")),
            // base64 of "s3cr3t"
            ("/data/password", json!("czNjcjN0")),
        ],
    );
    assert_eq!(secret.string_data, None);
}

#[test]
fn agent_rbac_grants_reading_the_cluster_and_keeping_its_lease_only() {
    let (account, role, binding) = agent_rbac(&lab()).expect("builds");
    assert_eq!(account.metadata.name.as_deref(), Some("lab-agent"));
    assert_fields(
        &json(&role),
        &[
            ("/metadata/name", json!("lab-agent")),
            (
                "/rules",
                json!([
                    {"apiGroups": ["pgreplica.io"], "resources": ["pgreplicaclusters"], "verbs": ["get", "list", "watch"]},
                    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["lab-primary"], "verbs": ["get", "update", "patch"]},
                    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
                ]),
            ),
        ],
    );
    assert_fields(
        &json(&binding),
        &[
            ("/metadata/name", json!("lab-agent")),
            (
                "/roleRef",
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lab-agent"}),
            ),
            (
                "/subjects",
                json!([{"kind": "ServiceAccount", "name": "lab-agent", "namespace": "db"}]),
            ),
        ],
    );
}

#[test]
fn pdb_allows_one_member_down_table() {
    let mut single = lab();
    single.spec.members.truncate(1);
    // (cluster, name, minAvailable)
    let table = [
        (lab(), "lab", 2),
        (five_members(), "shop", 4),
        (single, "lab", 0),
    ];
    for (cluster, name, min_available) in table {
        let budget = json(&pdb(&cluster).expect("builds"));
        assert_fields(
            &budget,
            &[
                ("/metadata/name", json!(name)),
                ("/spec/minAvailable", json!(min_available)),
                (
                    "/spec/selector",
                    json!({"matchLabels": {"pgreplica.io/cluster": name}}),
                ),
                ("/spec/unhealthyPodEvictionPolicy", json!("AlwaysAllow")),
            ],
        );
        assert_eq!(budget.pointer("/spec/maxUnavailable"), None);
    }
}

#[test]
fn primary_lease_starts_free() {
    let lease = json(&primary_lease(&lab()).expect("builds"));
    assert_fields(
        &lease,
        &[
            ("/metadata/name", json!("lab-primary")),
            ("/spec", json!({})),
        ],
    );
}
