//! Clusters for the builder tests: the repository's examples, as the API server would return them.

use crate::api::validate::parse_and_validate;
use crate::api::{MemberSpec, PgReplicaCluster};

pub const NAMESPACE: &str = "db";

fn from_yaml(yaml: &str, uid: &str) -> PgReplicaCluster {
    let mut cluster = parse_and_validate(yaml).expect("example is valid").cluster;
    cluster.metadata.namespace = Some(NAMESPACE.to_string());
    cluster.metadata.uid = Some(uid.to_string());
    cluster
}

/// `examples/lab.yaml`: a, b Sync, c Async with a delay; 10Gi each; one node per member.
pub fn lab() -> PgReplicaCluster {
    from_yaml(
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab.yaml")),
        "uid-lab",
    )
}

/// `examples/five-members.yaml`: resources, tolerations, a storage class, default sizes.
pub fn five_members() -> PgReplicaCluster {
    from_yaml(
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/five-members.yaml"
        )),
        "uid-shop",
    )
}

pub fn member<'a>(cluster: &'a PgReplicaCluster, name: &str) -> &'a MemberSpec {
    cluster.spec.member(name).expect("member in the example")
}

/// An object as JSON, so tests can read it the way `kubectl get -o json` shows it.
pub fn json<T: serde::Serialize>(object: &T) -> serde_json::Value {
    serde_json::to_value(object).expect("serializes")
}

/// Check `(JSON pointer, expected value)` rows against `object`.
pub fn assert_fields(object: &serde_json::Value, table: &[(&str, serde_json::Value)]) {
    for (pointer, want) in table {
        assert_eq!(
            object.pointer(pointer),
            Some(want),
            "at {pointer} in {}",
            serde_json::to_string_pretty(object).unwrap_or_default()
        );
    }
}
