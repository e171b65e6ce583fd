//! The cluster's NetworkPolicy: agents reachable only from the operator, PostgreSQL from the
//! members and from the clients the spec names (default: every pod in the namespace).

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::Owner;
use super::BuildError;
use crate::api::PgReplicaCluster;
use crate::runtime::kube::{labels, names};

/// Labels of the operator's pods (manifests/deployment.yaml).
pub const OPERATOR_POD_LABELS: [(&str, &str); 2] = [
    ("app.kubernetes.io/name", "pgreplica"),
    ("app.kubernetes.io/component", "operator"),
];

fn tcp(port: i32) -> Vec<NetworkPolicyPort> {
    vec![NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_string()),
        end_port: None,
    }]
}

fn selector(pairs: impl IntoIterator<Item = (String, String)>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(pairs.into_iter().collect()),
        match_expressions: None,
    }
}

/// The policy for `cluster`, whose operator runs in `operator_namespace`.
pub fn network_policy(
    cluster: &PgReplicaCluster,
    operator_namespace: &str,
) -> Result<NetworkPolicy, BuildError> {
    let owner = Owner::of(cluster)?;
    let members = selector(labels::cluster_selector(owner.name));
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(selector([(
            "kubernetes.io/metadata.name".to_string(),
            operator_namespace.to_string(),
        )])),
        pod_selector: Some(selector(
            OPERATOR_POD_LABELS.map(|(k, v)| (k.to_string(), v.to_string())),
        )),
        ip_block: None,
    };
    let member_peer = NetworkPolicyPeer {
        pod_selector: Some(members.clone()),
        ..NetworkPolicyPeer::default()
    };
    let clients = cluster.spec.clients.clone().unwrap_or_else(|| {
        vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..NetworkPolicyPeer::default()
        }]
    });
    let mut postgres_from = vec![member_peer];
    postgres_from.extend(clients);
    Ok(NetworkPolicy {
        metadata: owner.meta(
            names::network_policy(owner.name),
            labels::cluster_labels(owner.name),
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(members),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![operator]),
                    ports: Some(tcp(names::AGENT_PORT)),
                },
                NetworkPolicyIngressRule {
                    from: Some(postgres_from),
                    ports: Some(tcp(names::POSTGRES_PORT)),
                },
            ]),
            egress: None,
        }),
    })
}
