use serde_json::json;

use super::fixtures::{assert_fields, json, lab};
use crate::runtime::kube::builders::{app_secret, network_policy};

#[test]
fn the_network_policy_opens_agents_to_the_operator_and_postgres_to_members_and_clients() {
    let policy = json(&network_policy(&lab(), "pgreplica-system").expect("builds"));
    let members = json!({"matchLabels": {"pgreplica.io/cluster": "lab"}});
    assert_fields(
        &policy,
        &[
            ("/metadata/name", json!("lab")),
            ("/spec/podSelector", members.clone()),
            ("/spec/policyTypes", json!(["Ingress"])),
            (
                "/spec/ingress/0/ports",
                json!([{"port": 8008, "protocol": "TCP"}]),
            ),
            (
                "/spec/ingress/0/from",
                json!([{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "pgreplica-system"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/component": "operator", "app.kubernetes.io/name": "pgreplica"}}
                }]),
            ),
            (
                "/spec/ingress/1/ports",
                json!([{"port": 5432, "protocol": "TCP"}]),
            ),
            // members replicate; by default every pod of the namespace may connect
            (
                "/spec/ingress/1/from",
                json!([{"podSelector": members}, {"podSelector": {}}]),
            ),
        ],
    );
    let mut narrow = lab();
    narrow.spec.clients = Some(vec![serde_json::from_value(
        json!({"podSelector": {"matchLabels": {"role": "shop"}}}),
    )
    .expect("peer")]);
    let policy = json(&network_policy(&narrow, "ops").expect("builds"));
    assert_eq!(
        policy.pointer("/spec/ingress/1/from/1"),
        Some(&json!({"podSelector": {"matchLabels": {"role": "shop"}}}))
    );
    assert_eq!(
        policy["spec"]["ingress"][1]["from"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[test]
fn the_app_secret_has_what_clients_expect() {
    let secret = json(&app_secret(&lab(), "pw123").expect("builds"));
    let text = |key: &str| {
        let value: k8s_openapi::ByteString =
            serde_json::from_value(secret["data"][key].clone()).expect(key);
        String::from_utf8(value.0).expect("utf8")
    };
    let table = [
        ("username", "app"),
        ("user", "app"),
        ("password", "pw123"),
        ("host", "lab-rw.db.svc"),
        ("port", "5432"),
        ("dbname", "app"),
        ("uri", "postgresql://app:pw123@lab-rw.db.svc:5432/app"),
        (
            "jdbc-uri",
            "jdbc:postgresql://lab-rw.db.svc:5432/app?user=app&password=pw123",
        ),
    ];
    for (key, want) in table {
        assert_eq!(text(key), want, "{key}");
    }
    assert_eq!(secret["metadata"]["name"], "lab-app");
    assert!(
        secret["metadata"]["ownerReferences"].is_null(),
        "kept with the data"
    );
}
