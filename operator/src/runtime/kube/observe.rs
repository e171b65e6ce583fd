//! Observe one cluster: its member pods, what each agent reports, the lease, and a person's
//! switchover request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::coordination::v1::Lease as KubeLeaseObject;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::api::PgReplicaCluster;
use crate::member::MemberReport;
use crate::net::http::{AgentClient, Target};
use crate::plan::{Address, LeaseView, Observation};

use super::error::KubeError;
use super::labels;
use super::names;

const AGENT_TIMEOUT: Duration = Duration::from_millis(800);

/// What the reconciler saw.
pub struct Observed {
    pub pods: BTreeMap<String, Pod>,
    pub members: BTreeMap<String, Observation>,
    pub addresses: BTreeMap<String, Address>,
    pub lease: LeaseView,
    pub switchover_to: Option<String>,
}

pub async fn observe(
    client: &kube::Client,
    agents: &AgentClient,
    cluster: &PgReplicaCluster,
    namespace: &str,
    now_ms: u64,
    agent_port: u16,
) -> Result<Observed, KubeError> {
    let name = cluster.name_any();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = labels::selector_string(&labels::cluster_selector(&name));
    let listed = pods_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(KubeError::api("list", "Pod", &name))?;
    let mut pods = BTreeMap::new();
    for pod in listed {
        if let Some(member) = pod.labels().get(labels::MEMBER_LABEL).cloned() {
            pods.insert(member, pod);
        }
    }
    let mut addresses = BTreeMap::new();
    let mut asks = Vec::new();
    for m in &cluster.spec.members {
        let ip = pods
            .get(&m.name)
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.pod_ip.clone());
        if let Some(ip) = &ip {
            addresses.insert(
                m.name.clone(),
                Address {
                    host: ip.clone(),
                    port: names::POSTGRES_PORT as u16,
                },
            );
        }
        let member = m.name.clone();
        let agent = crate::tls::agent_name(&name, &member);
        asks.push(async move {
            let obs =
                match ip.and_then(|ip| format!("{ip}:{agent_port}").parse::<SocketAddr>().ok()) {
                    None => Observation::Unknown {
                        why: "the member's pod has no IP yet".into(),
                    },
                    Some(addr) => {
                        let target = Target { name: agent, addr };
                        match agents
                            .get_json::<MemberReport>(&target, "/status", AGENT_TIMEOUT)
                            .await
                        {
                            Ok(r) => Observation::Reported(Box::new(r)),
                            Err(e) => Observation::Unknown { why: e.to_string() },
                        }
                    }
                };
            (member, obs)
        });
    }
    let members = join_all(asks).await.into_iter().collect();
    let lease = read_lease(client, namespace, &names::primary_lease(&name), now_ms).await?;
    let switchover_to = cluster
        .annotations()
        .get(labels::SWITCHOVER_TO_ANNOTATION)
        .cloned()
        .filter(|s| !s.is_empty());
    Ok(Observed {
        pods,
        members,
        addresses,
        lease,
        switchover_to,
    })
}

/// The lease holder, or `None` once released or expired.
pub async fn read_lease(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    now_ms: u64,
) -> Result<LeaseView, KubeError> {
    let api: Api<KubeLeaseObject> = Api::namespaced(client.clone(), namespace);
    let lease = api
        .get_opt(name)
        .await
        .map_err(KubeError::api("get", "Lease", name))?;
    Ok(LeaseView {
        holder: lease.and_then(|l| holder_if_valid(&l, now_ms)),
        unreadable: None,
    })
}

fn holder_if_valid(lease: &KubeLeaseObject, now_ms: u64) -> Option<String> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref()?.0.as_millisecond();
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0)) * 1000;
    (renewed + duration > now_ms as i64).then_some(holder)
}
