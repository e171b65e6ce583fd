//! Operator tests against an in-memory API (the wire shapes) and fake agents on loopback (the
//! member reports): a new cluster's objects and its brain's first status, an invalid spec, and a
//! failover by the brain's tick over `KubeWorld` moving the routing labels.

mod fake_api;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{json, Value};

use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;

use super::controller::{reconcile, Context};
use super::metrics::Metrics;
use super::world::KubeWorld;
use crate::api::PgReplicaCluster;
use crate::brain::Brain;
use crate::member::{ActualRole, DataHealth, Desired, MemberReport};
use crate::net::http::{serve_with, Response, ServeOptions};
use crate::tls::{agent_name, server_config, Authority, ServerTls, Usage};
use fake_api::FakeApi;

const PODS: &str = "/api/v1/namespaces/db/pods";
const CLUSTER: &str = "/apis/pgreplica.io/v1alpha1/namespaces/db/pgreplicaclusters/lab";

fn lab(edit: Option<(&str, &str)>) -> PgReplicaCluster {
    let mut yaml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab.yaml"))
            .expect("lab.yaml");
    if let Some((from, to)) = edit {
        yaml = yaml.replacen(from, to, 1);
    }
    let value: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("yaml");
    let mut cluster: PgReplicaCluster = serde_yaml::from_value(value).expect("cluster");
    cluster.metadata.namespace = Some("db".into());
    cluster.metadata.uid = Some("0000-uid".into());
    cluster.metadata.generation = Some(1);
    cluster
}

/// A watch cache holding `objects`, as the operator's reflectors would.
fn cache<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, mut writer) = reflector::store::<K>();
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
    store
}

fn recorder(client: kube::Client) -> Recorder {
    Recorder::new(
        client,
        Reporter {
            controller: "pgreplica-operator".into(),
            instance: None,
        },
    )
}

fn context(api: &FakeApi, agent_port: u16, cluster: &PgReplicaCluster) -> Arc<Context> {
    let client = api.client();
    Arc::new(Context {
        client: client.clone(),
        recorder: recorder(client),
        metrics: Arc::new(Metrics::default()),
        operator_image: "pgreplica:test".into(),
        agent_port,
        certificates: Default::default(),
        operator_namespace: "pgreplica-system".into(),
        clusters: cache(vec![cluster.clone()]),
        pods: cache(vec![]),
        brains: Default::default(),
    })
}

fn created(api: &FakeApi, method: &str, path_part: &str) -> Vec<Value> {
    api.requests()
        .into_iter()
        .filter(|r| r.method == method && r.path.contains(path_part))
        .map(|r| r.body)
        .collect()
}

#[tokio::test]
async fn a_new_cluster_gets_its_objects_and_a_status() {
    let api = FakeApi::default();
    let cluster = lab(None);
    api.put(CLUSTER, serde_json::to_value(&cluster).expect("json"));
    let action = reconcile(Arc::new(cluster.clone()), context(&api, 1, &cluster))
        .await
        .expect("reconcile");
    assert_eq!(
        action,
        Action::requeue(crate::brain::timing::SUPPORTING_OBJECTS),
        "the slow loop comes back on its own; the brain ticks without it"
    );

    let secrets = created(&api, "POST", "/secrets");
    let names: Vec<&str> = secrets
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    // the CA first: the brain's certificate comes before any other object
    assert_eq!(names, ["lab-ca-key", "lab-superuser", "lab-replication"]);
    for s in &secrets[1..] {
        let pw = s["data"]["password"].as_str().expect("password");
        // base64 of 32 random characters
        assert!(pw.len() >= 40, "generated password");
        assert!(
            s["metadata"]["ownerReferences"].is_null(),
            "retained volumes keep the Secrets that open them: {s}"
        );
    }
    assert_eq!(secrets[0]["type"], "kubernetes.io/tls");
    let applied: Vec<String> = api
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.query.contains("fieldManager=pgreplica-operator"))
        .map(|r| r.path.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    for name in [
        "lab-agent",
        "lab-rw",
        "lab-ro",
        "lab-r",
        "lab",
        "lab-ca",
        "lab-a-tls",
        "lab-b-tls",
        "lab-c-tls",
    ] {
        assert!(
            applied.contains(&name.to_string()),
            "{name} applied by SSA: {applied:?}"
        );
    }
    assert_eq!(created(&api, "POST", "/persistentvolumeclaims").len(), 3);
    let pods = created(&api, "POST", "/pods");
    assert_eq!(pods.len(), 3);
    let c = pods
        .iter()
        .find(|p| p["metadata"]["name"] == "lab-c")
        .expect("pod lab-c");
    let spec = &c["spec"];
    assert_eq!(spec["nodeSelector"]["kubernetes.io/hostname"], "rpi2");
    assert_eq!(spec["initContainers"][0]["image"], "pgreplica:test");
    assert_eq!(spec["containers"][0]["image"], "postgres:15-bookworm");
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        spec["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/readyz"
    );
    assert_eq!(
        spec["containers"][0]["readinessProbe"]["httpGet"]["scheme"],
        "HTTPS"
    );
    assert_eq!(
        spec["containers"][0]["livenessProbe"]["httpGet"]["path"],
        "/healthz"
    );
    assert_eq!(c["metadata"]["ownerReferences"][0]["name"], "lab");
    let env = spec["containers"][0]["env"].as_array().expect("env");
    let config = env
        .iter()
        .find(|e| e["name"] == "PGREPLICA_AGENT_CONFIG")
        .and_then(|e| e["value"].as_str())
        .expect("agent config");
    let config: Value = serde_json::from_str(config).expect("config json");
    assert_eq!(config["member"], "c");
    assert_eq!(config["leaseBackend"]["kind"], "kubernetes");
    let volumes: Vec<&str> = spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(volumes.len() >= 3, "{volumes:?}");

    // the brain started by the reconcile writes the first status on its own
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        let status = api.get(CLUSTER).expect("cluster")["status"].clone();
        if !status.is_null() || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(status["phase"], "Bootstrapping");
    assert_eq!(status["targetPrimary"], "a");
    assert_eq!(status["readyMembers"], "0/3");
    let events = created(&api, "POST", "/events");
    assert!(
        events.iter().any(|e| e["reason"] == "Bootstrapping"),
        "{events:?}"
    );
}

#[tokio::test]
async fn an_invalid_spec_is_reported_once_and_not_retried() {
    let api = FakeApi::default();
    let cluster = lab(Some(("replication: Sync\n      nodeSelector: {kubernetes.io/hostname: rpi1}", "replication: Sync\n      applyDelay: 1s\n      nodeSelector: {kubernetes.io/hostname: rpi1}")));
    api.put(CLUSTER, serde_json::to_value(&cluster).expect("json"));
    let action = reconcile(Arc::new(cluster.clone()), context(&api, 1, &cluster))
        .await
        .expect("reconcile");
    assert_eq!(action, Action::await_change());
    let status = api.get(CLUSTER).expect("cluster")["status"].clone();
    assert_eq!(status["phase"], "Invalid");
    let ready = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("Ready")
        .clone();
    assert_eq!(ready["status"], "False");
    assert!(ready["message"]
        .as_str()
        .unwrap_or_default()
        .contains("spec.members[1].applyDelay"));
    let events = created(&api, "POST", "/events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "InvalidSpec");
    assert!(
        created(&api, "POST", "/pods").is_empty(),
        "nothing is created for an invalid spec"
    );

    // the same generation again: nothing new is written
    let mut seen = cluster;
    seen.status = serde_json::from_value(status).ok();
    api.clear_requests();
    let action = reconcile(Arc::new(seen.clone()), context(&api, 1, &seen))
        .await
        .expect("reconcile");
    assert_eq!(action, Action::await_change());
    assert!(api.requests().is_empty(), "{:?}", api.requests());
}

/// The cluster CA as the operator keeps it, put in the fake API before the first reconcile.
fn put_ca(api: &FakeApi, cluster: &PgReplicaCluster) -> Authority {
    let authority = Authority::generate("lab", crate::tls::CA_VALIDITY).expect("CA");
    let secret = super::builders::secret(
        cluster,
        "lab-ca-key",
        "kubernetes.io/tls",
        &[
            ("tls.crt", authority.cert_pem()),
            ("tls.key", authority.key_pem()),
        ],
    )
    .expect("secret");
    api.put(
        "/api/v1/namespaces/db/secrets/lab-ca-key",
        serde_json::to_value(&secret).expect("json"),
    );
    authority
}

/// Agents on 127.0.0.2-4 at one port answer `/status` with canned reports and record `PUT /desired`,
/// over TLS with certificates of the cluster CA, and only for the brain's certificate.
struct FakeAgents {
    port: u16,
    reports: Arc<Mutex<BTreeMap<String, MemberReport>>>,
    desired: Arc<Mutex<Vec<(String, Desired)>>>,
}

impl FakeAgents {
    async fn start(authority: &Authority) -> FakeAgents {
        let a = tokio::net::TcpListener::bind("127.0.0.2:0")
            .await
            .expect("bind a");
        let port = a.local_addr().expect("addr").port();
        let b = tokio::net::TcpListener::bind(format!("127.0.0.3:{port}"))
            .await
            .expect("bind b");
        let c = tokio::net::TcpListener::bind(format!("127.0.0.4:{port}"))
            .await
            .expect("bind c");
        let reports = Arc::new(Mutex::new(BTreeMap::new()));
        let desired = Arc::new(Mutex::new(Vec::new()));
        for (member, listener) in [("a", a), ("b", b), ("c", c)] {
            let (reports, desired, member) = (reports.clone(), desired.clone(), member.to_string());
            let issued = authority
                .issue(
                    &[agent_name("lab", &member)],
                    Usage::Server,
                    crate::tls::LEAF_VALIDITY,
                )
                .expect("agent certificate");
            let tls = server_config(authority.cert_pem(), &issued.cert_pem, &issued.key_pem)
                .expect("server config");
            tokio::spawn(serve_with(
                listener,
                ServeOptions::default(),
                Some(Arc::new(ServerTls::fixed(tls))),
                move |req| {
                    let (reports, desired, member) =
                        (reports.clone(), desired.clone(), member.clone());
                    async move {
                        let brain = crate::tls::brain_name("lab");
                        if !req
                            .client_cert
                            .as_ref()
                            .is_some_and(|c| crate::tls::peer_is(c, &brain))
                        {
                            return Response::text(401, "not the brain");
                        }
                        if req.method == "PUT" {
                            if let Ok(d) = serde_json::from_slice::<Desired>(&req.body) {
                                desired.lock().expect("lock").push((member, d));
                            }
                            return Response::json(200, &json!({"changed": true}));
                        }
                        let report = reports.lock().expect("lock").get(&member).cloned();
                        match report {
                            Some(r) => Response::json(200, &r),
                            None => Response::text(503, "no report"),
                        }
                    }
                },
                std::future::pending::<()>(),
            ));
        }
        FakeAgents {
            port,
            reports,
            desired,
        }
    }

    fn report(&self, r: MemberReport) {
        self.reports
            .lock()
            .expect("lock")
            .insert(r.member.clone(), r);
    }

    fn desired_roles(&self) -> Vec<(String, &'static str)> {
        self.desired
            .lock()
            .expect("lock")
            .iter()
            .map(|(m, d)| (m.clone(), d.role_name()))
            .collect()
    }
}

fn report(member: &str, role: ActualRole, upstream: Option<&str>, lease: bool) -> MemberReport {
    let mut r = MemberReport::new(member);
    r.role = role;
    r.running = true;
    r.data = DataHealth::Healthy;
    r.streaming_from = upstream.map(String::from);
    r.holds_lease = lease;
    r.timeline = Some(if role == ActualRole::Primary && member == "b" {
        2
    } else {
        1
    });
    r.received_lsn = Some(crate::postgres::Lsn(100));
    r.replayed_lsn = Some(crate::postgres::Lsn(100));
    r.desired = None;
    r
}

fn pod(member: &str, ip: &str, role: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("lab-{member}"), "namespace": "db",
            "labels": {"pgreplica.io/cluster": "lab", "pgreplica.io/member": member, "pgreplica.io/role": role,
                "app.kubernetes.io/managed-by": "pgreplica-operator"}},
        "spec": {"containers": []},
        "status": {"phase": "Running", "podIP": ip}
    })
}

fn role_label(api: &FakeApi, member: &str) -> Value {
    api.get(&format!("{PODS}/lab-{member}")).expect("pod")["metadata"]["labels"]
        ["pgreplica.io/role"]
        .clone()
}

fn ro_label(api: &FakeApi, member: &str) -> Value {
    api.get(&format!("{PODS}/lab-{member}")).expect("pod")["metadata"]["labels"]["pgreplica.io/ro"]
        .clone()
}

/// One brain tick over the Kubernetes world, with the watch caches showing `cluster` and the
/// pods as the fake API holds them now.
async fn tick(api: &FakeApi, brain: &mut Brain, cluster: &PgReplicaCluster, port: u16) {
    let pods: Vec<k8s_openapi::api::core::v1::Pod> = ["a", "b", "c"]
        .iter()
        .map(|m| {
            serde_json::from_value(api.get(&format!("{PODS}/lab-{m}")).expect("pod")).expect("pod")
        })
        .collect();
    let client = api.client();
    let mut world = KubeWorld::new(
        client.clone(),
        recorder(client),
        Arc::new(Metrics::default()),
        "db".into(),
        "lab".into(),
        cluster.metadata.uid.clone(),
        port,
        "pgreplica:test".into(),
        cache(vec![cluster.clone()]),
        cache(pods),
        Default::default(),
    );
    assert!(brain.tick(&mut world).await, "the cluster is there");
}

#[tokio::test]
async fn a_failover_moves_the_routing_labels_and_patches_status() {
    let api = FakeApi::default();
    let mut cluster = lab(None);
    let authority = put_ca(&api, &cluster);
    let agents = FakeAgents::start(&authority).await;
    cluster.status = Some(
        serde_json::from_value(json!({
            "currentPrimary": "a", "targetPrimary": "a", "observedPreferredPrimary": "a",
            "members": [
                {"name": "a", "role": "Primary", "ready": true},
                {"name": "b", "role": "Standby", "ready": true, "syncState": "sync"},
                {"name": "c", "role": "Standby", "ready": true, "syncState": "async"}
            ]
        }))
        .expect("status"),
    );
    api.put(CLUSTER, serde_json::to_value(&cluster).expect("json"));
    for (m, ip, role) in [
        ("a", "127.0.0.2", "primary"),
        ("b", "127.0.0.3", "standby"),
        ("c", "127.0.0.4", "standby"),
    ] {
        api.put(&format!("{PODS}/lab-{m}"), pod(m, ip, role));
    }
    let mut lost = MemberReport::new("a");
    lost.data = DataHealth::Lost {
        reason: "global/pg_control is gone".into(),
    };
    lost.activity = "fenced: data directory lost".into();
    lost.fenced = Some(crate::member::FenceReason::DataDirectoryLost);
    agents.report(lost.clone());
    agents.report(report("b", ActualRole::Standby, Some("a"), false));
    agents.report(report("c", ActualRole::Standby, Some("a"), false));
    let client = crate::net::http::BrainClient::new(&authority, "lab").expect("brain client");
    let mut brain = Brain::new(client.agents.clone(), None);
    let news = brain_news(&brain);

    // 1: the first tick follows the agents; their first reports are news
    tick(&api, &mut brain, &cluster, agents.port).await;
    tokio::time::timeout(std::time::Duration::from_secs(5), news.notified())
        .await
        .expect("the agents' reports arrive as news");
    // 2: the primary lost its data; b is chosen and told to promote
    await_reports(
        &api,
        &mut brain,
        &cluster,
        agents.port,
        |b| b.desired_roles().contains(&("b".to_string(), "primary")),
        &agents,
    )
    .await;
    let status = api.get(CLUSTER).expect("cluster")["status"].clone();
    assert_eq!(status["targetPrimary"], "b");
    assert_eq!(status["phase"], "FailingOver");
    assert_eq!(
        role_label(&api, "a"),
        "primary",
        "a fenced primary keeps -rw (it refuses every connection) until b takes it: one change of the Service"
    );
    assert_eq!(ro_label(&api, "b"), "true", "reads go to b (no delay)");
    assert_eq!(
        ro_label(&api, "c"),
        "false",
        "never to c, which applies WAL 3 s late"
    );
    let reasons: Vec<Value> = created(&api, "POST", "/events")
        .iter()
        .map(|e| e["reason"].clone())
        .collect();
    assert!(
        reasons.contains(&json!("PrimaryLost")) && reasons.contains(&json!("FailoverStarted")),
        "{reasons:?}"
    );

    // 3: b runs as primary and holds the Lease: the handover completes, labels move to b
    agents.report(report("b", ActualRole::Primary, None, true));
    let now = jiff::Timestamp::now();
    api.put(
        "/apis/coordination.k8s.io/v1/namespaces/db/leases/lab-primary",
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "lab-primary", "namespace": "db"},
               "spec": {"holderIdentity": "b", "leaseDurationSeconds": 6, "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}}),
    );
    cluster.status = serde_json::from_value(status).ok();
    await_reports(
        &api,
        &mut brain,
        &cluster,
        agents.port,
        |b| {
            let roles = b.desired_roles();
            roles.contains(&("a".to_string(), "standby"))
                && roles.contains(&("c".to_string(), "standby"))
        },
        &agents,
    )
    .await;
    let status = api.get(CLUSTER).expect("cluster")["status"].clone();
    assert_eq!(status["currentPrimary"], "b");
    assert!(status["lastFailover"]["finishedAt"].is_string());
    assert_eq!(role_label(&api, "b"), "primary");
    assert_eq!(role_label(&api, "a"), "none", "-rw leaves a once b has it");
    // with a still cloning, only the delayed c is a standby: reads go to the primary
    assert_eq!(ro_label(&api, "b"), "true");
    assert_eq!(ro_label(&api, "c"), "false");
}

fn brain_news(brain: &Brain) -> Arc<tokio::sync::Notify> {
    brain.news()
}

/// Tick until `done` says the fake agents saw what the test waits for (reports reach the brain
/// through long polls, a moment after they change).
async fn await_reports(
    api: &FakeApi,
    brain: &mut Brain,
    cluster: &PgReplicaCluster,
    port: u16,
    done: impl Fn(&FakeAgents) -> bool,
    agents: &FakeAgents,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done(agents) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            agents.desired_roles()
        );
        tick(api, brain, cluster, port).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
