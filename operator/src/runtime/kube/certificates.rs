//! The cluster CA and member certificates in Secrets, and the brain's client for the agents
//! (ADR 0005). The CA is created once and kept as long as the data; member certificates are issued
//! again a third before expiry, or when their names or the CA change; the brain's client
//! certificate lives only in the operator's memory. Secrets are looked at once a minute, not on
//! every reconcile, so the API server stays out of the failover path.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use crate::api::PgReplicaCluster;
use crate::net::http::{AgentClient, BrainClient};
use crate::tls::{self, Authority, CertFacts, Verdict};

use super::apply::apply;
use super::builders;
use super::error::KubeError;
use super::names;

/// How often each cluster's certificate Secrets are checked.
const CHECK_EVERY: Duration = Duration::from_secs(60);

/// The names in a member's certificate: its identity for the brain, its pod, the Services that
/// can lead to it (every form a client may write), and loopback inside the pod.
pub fn member_names(cluster: &str, member: &str, namespace: &str) -> Vec<String> {
    let mut out = vec![
        tls::agent_name(cluster, member),
        names::member_object(cluster, member),
    ];
    for service in [
        names::rw_service(cluster),
        names::ro_service(cluster),
        names::r_service(cluster),
    ] {
        out.push(format!("{service}.{namespace}.svc.cluster.local"));
        out.push(format!("{service}.{namespace}.svc"));
        out.push(format!("{service}.{namespace}"));
        out.push(service);
    }
    out.push("localhost".to_string());
    out.push("127.0.0.1".to_string());
    out
}

fn entry(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
}

/// What the operator keeps per cluster.
struct Kept {
    /// The members whose Secrets were made sure of (a new member is looked at at once).
    members: Vec<String>,
    brain: BrainClient,
    checked_at: Instant,
}

/// The brain's client per cluster (by UID: a cluster deleted and created again under the same
/// name is a new cluster), renewed before expiry.
#[derive(Default)]
pub struct Certificates {
    kept: Mutex<HashMap<String, Kept>>,
}

impl Certificates {
    /// The client for `cluster`'s agents, after making sure its Secrets are current when a check
    /// is due.
    pub async fn agents(
        &self,
        client: &kube::Client,
        cluster: &PgReplicaCluster,
        namespace: &str,
    ) -> Result<AgentClient, KubeError> {
        let name = cluster.name_any();
        let key = super::names::cluster_key(cluster, namespace);
        let members = cluster.spec.member_names();
        let now = Instant::now();
        let usable = {
            let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            match kept.get(&key) {
                Some(k)
                    if k.brain.current(now)
                        && now.duration_since(k.checked_at) < CHECK_EVERY
                        && k.members == members =>
                {
                    return Ok(k.brain.agents.clone());
                }
                Some(k) if k.brain.current(now) => Some(k.brain.agents.clone()),
                _ => None,
            }
        };
        let authority = match secrets(client, cluster, namespace, tls::LEAF_VALIDITY).await {
            Ok(authority) => authority,
            // the API server is away: a still valid client keeps the failover going
            Err(e) => match usable {
                Some(agents) => {
                    warn!(cluster = %name, error = %e, "cannot check the certificate Secrets now; the brain's certificate is still valid");
                    return Ok(agents);
                }
                None => return Err(e),
            },
        };
        let brain_error =
            |e: tls::TlsError| KubeError::Other(format!("the brain's certificate: {e}"));
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let next = match kept.remove(&key) {
            Some(mut k) => {
                k.brain.refresh(&authority, &name).map_err(brain_error)?;
                k.members = members;
                k.checked_at = now;
                k
            }
            None => Kept {
                members,
                brain: BrainClient::new(&authority, &name).map_err(brain_error)?,
                checked_at: now,
            },
        };
        let agents = next.brain.agents.clone();
        kept.insert(key, next);
        Ok(agents)
    }
}

/// The CA Secret (created when absent, never replaced), the public CA Secret, and every member's
/// certificate Secret (issued again when due). Returns the CA.
async fn secrets(
    client: &kube::Client,
    cluster: &PgReplicaCluster,
    namespace: &str,
    validity: Duration,
) -> Result<Authority, KubeError> {
    let name = cluster.name_any();
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let build = |secret_name: &str, type_: &str, entries: &[(&str, &str)]| {
        builders::secret(cluster, secret_name, type_, entries).map_err(|source| KubeError::Build {
            what: "secret",
            source,
        })
    };
    let ca_name = names::ca_key_secret(&name);
    let existing = api
        .get_opt(&ca_name)
        .await
        .map_err(KubeError::api("get", "Secret", &ca_name))?;
    let authority = match existing {
        Some(secret) => {
            let (cert, key) = (
                entry(&secret, names::TLS_CERT_KEY).unwrap_or_default(),
                entry(&secret, names::TLS_KEY_KEY).unwrap_or_default(),
            );
            Authority::from_pem(&cert, &key).map_err(|e| {
                KubeError::Other(format!(
                    "Secret {namespace}/{ca_name} holds no usable CA ({e}); restore it from a backup, or delete it to create a new CA (every member then gets a new certificate)"
                ))
            })?
        }
        None => {
            let authority = Authority::generate(&name, tls::CA_VALIDITY)
                .map_err(|e| KubeError::Other(format!("the cluster CA: {e}")))?;
            let secret = build(
                &ca_name,
                "kubernetes.io/tls",
                &[
                    (names::TLS_CERT_KEY, authority.cert_pem()),
                    (names::TLS_KEY_KEY, authority.key_pem()),
                ],
            )?;
            api.create(&PostParams::default(), &secret)
                .await
                .map_err(KubeError::api("create", "Secret", &ca_name))?;
            info!(cluster = %name, secret = %ca_name, "created the cluster CA");
            authority
        }
    };
    let public = names::ca_secret(&name);
    let current = api
        .get_opt(&public)
        .await
        .map_err(KubeError::api("get", "Secret", &public))?;
    if current
        .as_ref()
        .and_then(|s| entry(s, names::CA_CERT_KEY))
        .as_deref()
        != Some(authority.cert_pem())
    {
        let secret = build(
            &public,
            "Opaque",
            &[(names::CA_CERT_KEY, authority.cert_pem())],
        )?;
        apply(&api, &secret, "Secret").await?;
    }
    let now = jiff::Timestamp::now().as_second();
    for member in &cluster.spec.members {
        let secret_name = names::member_tls_secret(&name, &member.name);
        let current = api.get_opt(&secret_name).await.map_err(KubeError::api(
            "get",
            "Secret",
            &secret_name,
        ))?;
        let wanted = member_names(&name, &member.name, namespace);
        let pair = current.as_ref().and_then(|s| {
            Some((
                entry(s, names::TLS_CERT_KEY)?,
                entry(s, names::TLS_KEY_KEY)?,
            ))
        });
        let facts = pair
            .filter(|(cert, key)| tls::pair_usable(authority.cert_pem(), cert, key))
            .and_then(|(cert, _)| CertFacts::read(&cert, &authority).ok());
        let ca_current = current
            .as_ref()
            .and_then(|s| entry(s, names::CA_CERT_KEY))
            .is_some_and(|pem| pem == authority.cert_pem());
        let why = match tls::verdict(facts.as_ref(), &wanted, now) {
            Verdict::Keep if ca_current => continue,
            Verdict::Keep => "its CA certificate is not the cluster CA".to_string(),
            Verdict::Renew(why) => why,
        };
        let issued = authority
            .issue(&wanted, tls::Usage::Server, validity)
            .map_err(|e| KubeError::Other(format!("certificate of member {}: {e}", member.name)))?;
        let secret = build(
            &secret_name,
            "kubernetes.io/tls",
            &[
                (names::TLS_CERT_KEY, &issued.cert_pem),
                (names::TLS_KEY_KEY, &issued.key_pem),
                (names::CA_CERT_KEY, authority.cert_pem()),
            ],
        )?;
        apply(&api, &secret, "Secret").await?;
        info!(cluster = %name, member = %member.name, reason = %why, "issued the member's certificate");
    }
    Ok(authority)
}
