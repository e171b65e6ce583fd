//! Label and annotation keys the operator puts on (and reads from) a cluster's objects.
//!
//! Services select pods by `pgreplica.io/cluster` and `pgreplica.io/role` (`-rw`),
//! `pgreplica.io/ro` (`-ro`) or `pgreplica.io/serving` (`-r`), so moving the primary is a relabel
//! of two pods, not a change to any Service. The labels follow `plan::Routes` (the routing policy
//! is the plan's, not ours) and are the only thing the Services follow: they publish pods whatever
//! the kubelet's readiness probe says (ADR 0008), so that a failover changes them once.

use std::collections::BTreeMap;

/// The `PgReplicaCluster` an object belongs to.
pub const CLUSTER_LABEL: &str = "pgreplica.io/cluster";
/// The member an object belongs to (pods and volume claims).
pub const MEMBER_LABEL: &str = "pgreplica.io/member";
/// The member's current role, on pods only; one of [`ROLE_PRIMARY`], [`ROLE_STANDBY`], [`ROLE_NONE`].
pub const ROLE_LABEL: &str = "pgreplica.io/role";

/// Accepts writes: the `<cluster>-rw` Service selects it.
pub const ROLE_PRIMARY: &str = "primary";
/// Streams from the primary (with or without an apply delay).
pub const ROLE_STANDBY: &str = "standby";
/// Neither (starting, cloning, fenced, unknown): only `<cluster>-r` may select it, once ready.
pub const ROLE_NONE: &str = "none";

/// `"true"` on the members reads go to (`plan::Routes::ro`): the `<cluster>-ro` Service selects it.
pub const RO_LABEL: &str = "pgreplica.io/ro";

/// `"true"` on every member that serves its role (`plan::Routes::rw` and `standbys`): the
/// `<cluster>-r` Service selects it.
pub const SERVING_LABEL: &str = "pgreplica.io/serving";

/// A label value for a yes/no.
pub fn flag(yes: bool) -> &'static str {
    if yes {
        "true"
    } else {
        "false"
    }
}

/// The routing labels of one member pod: its role, whether reads go to it, whether `-r` selects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routing {
    pub role: &'static str,
    pub ro: bool,
    pub serving: bool,
}

impl Routing {
    /// Serving nothing: how a pod is created, and what a pod on its way out is labelled.
    pub const NONE: Routing = Routing {
        role: ROLE_NONE,
        ro: false,
        serving: false,
    };
}

/// The routing labels of `member` as the plan routes, given the role label it shows now.
///
/// A primary that provably runs nothing (`Routes::rw_keep`) keeps its labels until another member
/// takes the primary's: every Service then changes once per failover, in one burst, which is what
/// kube-proxy applies at once (a second change within `minSyncPeriod`, 1 s by default, waits).
/// Connections to it are refused meanwhile (it runs no server), so clients retry at once.
pub fn routing(member: &str, routes: &crate::plan::Routes, shown_role: Option<&str>) -> Routing {
    let keeps = routes.rw.is_none()
        && routes.rw_keep.as_deref() == Some(member)
        && shown_role == Some(ROLE_PRIMARY);
    let role = if routes.rw.as_deref() == Some(member) || keeps {
        ROLE_PRIMARY
    } else if routes.standbys.iter().any(|s| s == member) {
        ROLE_STANDBY
    } else {
        ROLE_NONE
    };
    // a dead primary that already lost -rw does not gain reads back through the fallback
    let lost_it = routes.rw_keep.as_deref() == Some(member) && role != ROLE_PRIMARY;
    Routing {
        role,
        ro: routes.ro.iter().any(|r| r == member) && !lost_it,
        serving: role != ROLE_NONE,
    }
}

/// Recommended Kubernetes labels (`app.kubernetes.io/*`).
pub const APP_NAME_LABEL: &str = "app.kubernetes.io/name";
pub const APP_INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const APP_MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const APP_NAME: &str = "pgreplica";
pub const MANAGED_BY: &str = "pgreplica-operator";

/// A person's switchover request on the `PgReplicaCluster`: the member to make primary.
pub const SWITCHOVER_TO_ANNOTATION: &str = "pgreplica.io/switchover-to";
/// On the cluster: a restart asked for by `kubectl pgrc restart` (JSON of `plan::RestartRequest`).
pub const RESTART_ANNOTATION: &str = "pgreplica.io/restart";
/// On the cluster: a reload asked for by `kubectl pgrc reload` (JSON of `plan::RestartRequest`).
pub const RELOAD_ANNOTATION: &str = "pgreplica.io/reload";
/// On a member pod: the digest of the pod spec it was created from; a pod whose digest differs
/// from the one the operator would build now is replaced in its rollout turn.
pub const POD_TEMPLATE_ANNOTATION: &str = "pgreplica.io/pod-template";

/// Labels on every object of `cluster`.
pub fn cluster_labels(cluster: &str) -> BTreeMap<String, String> {
    [
        (APP_NAME_LABEL, APP_NAME),
        (APP_INSTANCE_LABEL, cluster),
        (APP_MANAGED_BY_LABEL, MANAGED_BY),
        (CLUSTER_LABEL, cluster),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Labels on a member's objects (volume claim; the pod adds its role).
pub fn member_labels(cluster: &str, member: &str) -> BTreeMap<String, String> {
    let mut labels = cluster_labels(cluster);
    labels.insert(MEMBER_LABEL.to_string(), member.to_string());
    labels
}

/// Labels on a member's pod (created serving nothing; the brain labels it as it routes).
pub fn pod_labels(cluster: &str, member: &str, role: &str) -> BTreeMap<String, String> {
    let mut labels = member_labels(cluster, member);
    labels.insert(ROLE_LABEL.to_string(), role.to_string());
    labels.insert(RO_LABEL.to_string(), flag(false).to_string());
    labels.insert(SERVING_LABEL.to_string(), flag(false).to_string());
    labels
}

/// Selects the pods reads go to.
pub fn ro_selector(cluster: &str) -> BTreeMap<String, String> {
    let mut selector = cluster_selector(cluster);
    selector.insert(RO_LABEL.to_string(), flag(true).to_string());
    selector
}

/// Selects the pods that serve their role (`<cluster>-r`).
pub fn serving_selector(cluster: &str) -> BTreeMap<String, String> {
    let mut selector = cluster_selector(cluster);
    selector.insert(SERVING_LABEL.to_string(), flag(true).to_string());
    selector
}

/// Selects every pod of `cluster`.
pub fn cluster_selector(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(CLUSTER_LABEL.to_string(), cluster.to_string())])
}

/// Selects the pods of `cluster` whose role label is `role`.
pub fn role_selector(cluster: &str, role: &str) -> BTreeMap<String, String> {
    let mut selector = cluster_selector(cluster);
    selector.insert(ROLE_LABEL.to_string(), role.to_string());
    selector
}

/// A selector in the `key=value,key=value` form of list and watch calls.
pub fn selector_string(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_labels_carry_cluster_member_role_and_recommended_labels() {
        let labels = pod_labels("lab", "c", ROLE_STANDBY);
        let want: BTreeMap<String, String> = [
            ("app.kubernetes.io/instance", "lab"),
            ("app.kubernetes.io/managed-by", "pgreplica-operator"),
            ("app.kubernetes.io/name", "pgreplica"),
            ("pgreplica.io/cluster", "lab"),
            ("pgreplica.io/member", "c"),
            ("pgreplica.io/role", "standby"),
            ("pgreplica.io/ro", "false"),
            ("pgreplica.io/serving", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(labels, want);
    }

    #[test]
    fn routing_labels_follow_the_plan_and_a_dead_primary_keeps_its_own() {
        let routes = |rw: Option<&str>, ro: &[&str], standbys: &[&str], keep: Option<&str>| {
            crate::plan::Routes {
                rw: rw.map(String::from),
                ro: ro.iter().map(|s| s.to_string()).collect(),
                standbys: standbys.iter().map(|s| s.to_string()).collect(),
                ro_is_primary: false,
                rw_keep: keep.map(String::from),
            }
        };
        let r = |role, ro, serving| Routing { role, ro, serving };
        let settled = routes(Some("a"), &["b"], &["b", "c"], None);
        let lost = routes(None, &["b"], &["b", "c"], Some("a"));
        let promoted = routes(Some("b"), &["b"], &["b", "c"], Some("a"));
        let lost_reads_on_a = routes(None, &["a"], &["c"], Some("a"));
        // (what, routes, member, role label it shows, wanted)
        let cases = [
            (
                "the primary",
                &settled,
                "a",
                Some(ROLE_PRIMARY),
                r(ROLE_PRIMARY, false, true),
            ),
            (
                "a standby serving reads",
                &settled,
                "b",
                Some(ROLE_STANDBY),
                r(ROLE_STANDBY, true, true),
            ),
            (
                "the delayed standby",
                &settled,
                "c",
                Some(ROLE_STANDBY),
                r(ROLE_STANDBY, false, true),
            ),
            (
                "a member not routed to",
                &settled,
                "d",
                Some(ROLE_STANDBY),
                Routing::NONE,
            ),
            // a lost primary that runs nothing: nothing moves until b takes -rw
            (
                "a dead primary keeps its labels",
                &lost,
                "a",
                Some(ROLE_PRIMARY),
                r(ROLE_PRIMARY, false, true),
            ),
            (
                "the member being promoted",
                &lost,
                "b",
                Some(ROLE_STANDBY),
                r(ROLE_STANDBY, true, true),
            ),
            // ... but never gains -rw back once it lost it, nor reads through the fallback
            (
                "keeping is not gaining",
                &lost,
                "a",
                Some(ROLE_NONE),
                Routing::NONE,
            ),
            (
                "nor reads",
                &lost_reads_on_a,
                "a",
                Some(ROLE_NONE),
                Routing::NONE,
            ),
            (
                "reads stay with a kept primary",
                &lost_reads_on_a,
                "a",
                Some(ROLE_PRIMARY),
                r(ROLE_PRIMARY, true, true),
            ),
            (
                "b promoted",
                &promoted,
                "b",
                Some(ROLE_STANDBY),
                r(ROLE_PRIMARY, true, true),
            ),
            (
                "then a serves nothing",
                &promoted,
                "a",
                Some(ROLE_PRIMARY),
                Routing::NONE,
            ),
        ];
        for (what, routes, member, shown, want) in cases {
            assert_eq!(routing(member, routes, shown), want, "{what}");
        }
    }

    #[test]
    fn selectors_table() {
        let table = [
            (cluster_selector("lab"), "pgreplica.io/cluster=lab"),
            (
                role_selector("lab", ROLE_PRIMARY),
                "pgreplica.io/cluster=lab,pgreplica.io/role=primary",
            ),
            (
                role_selector("shop", ROLE_STANDBY),
                "pgreplica.io/cluster=shop,pgreplica.io/role=standby",
            ),
            (
                serving_selector("lab"),
                "pgreplica.io/cluster=lab,pgreplica.io/serving=true",
            ),
        ];
        for (selector, want) in table {
            assert_eq!(selector_string(&selector), want);
        }
    }

    #[test]
    fn every_selector_matches_the_labels_it_is_meant_for() {
        let pod = pod_labels("lab", "a", ROLE_PRIMARY);
        for selector in [cluster_selector("lab"), role_selector("lab", ROLE_PRIMARY)] {
            assert!(selector.iter().all(|(k, v)| pod.get(k) == Some(v)));
        }
        let standby = role_selector("lab", ROLE_STANDBY);
        assert!(!standby.iter().all(|(k, v)| pod.get(k) == Some(v)));
    }
}
