//! The member agents' identity: a ServiceAccount and the least a Role must grant it.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::meta::Owner;
use super::BuildError;
use crate::api::PgReplicaCluster;
use crate::runtime::kube::{labels, names};

/// ServiceAccount, Role and RoleBinding, all named `<cluster>-agent`.
///
/// An agent reads its cluster and keeps the one-writer Lease, nothing else: no pods, no Secrets
/// (its passwords arrive as mounted files), no writes to the cluster or its status (the operator
/// asks agents over HTTP and reports). The operator's own ClusterRole holds every permission
/// granted here, as RBAC requires of whoever creates a Role.
pub fn agent_rbac(
    cluster: &PgReplicaCluster,
) -> Result<(ServiceAccount, Role, RoleBinding), BuildError> {
    let owner = Owner::of(cluster)?;
    let name = names::agent_account(owner.name);
    let meta = || owner.meta(name.clone(), labels::cluster_labels(owner.name));

    let account = ServiceAccount {
        metadata: meta(),
        ..ServiceAccount::default()
    };
    let role = Role {
        metadata: meta(),
        rules: Some(vec![
            // Read the cluster spec (members, parameters, switchover requests).
            rule(
                "pgreplica.io",
                "pgreplicaclusters",
                None,
                &["get", "list", "watch"],
            ),
            // Hold, renew and release the one-writer Lease, and only that Lease.
            rule(
                "coordination.k8s.io",
                "leases",
                Some(names::primary_lease(owner.name)),
                &["get", "update", "patch"],
            ),
            // Create it if the operator has not yet: RBAC cannot limit `create` by name.
            rule("coordination.k8s.io", "leases", None, &["create"]),
        ]),
    };
    let binding = RoleBinding {
        metadata: meta(),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            api_group: None,
            kind: "ServiceAccount".to_string(),
            name: name.clone(),
            namespace: Some(owner.namespace.to_string()),
        }]),
    };
    Ok((account, role, binding))
}

fn rule(group: &str, resource: &str, only: Option<String>, verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(vec![resource.to_string()]),
        resource_names: only.map(|name| vec![name]),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        non_resource_urls: None,
    }
}
