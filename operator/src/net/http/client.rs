//! The brain's side: one pooled, keep-alive HTTPS client for every agent of a cluster. Each request
//! names the agent it expects (the name in its certificate) and the address it is at now; the TLS
//! handshake proves the agent holds a certificate of the cluster CA for that name, and presents the
//! brain's client certificate.

use std::collections::HashMap;
use std::future::Ready;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

use super::message::JSON;
use super::MAX_BODY_BYTES;

/// How much of an error body [`HttpError::Status`] keeps.
const ERROR_BODY_CHARS: usize = 1024;
/// Idle connections to agents are kept this long (the brain asks every member several times a
/// second, so in practice they stay open).
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Which agent to reach: the name its certificate must carry, and where it listens now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.name, self.addr)
    }
}

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("invalid request to {target}: {reason}")]
    InvalidRequest { target: String, reason: String },
    #[error("no complete answer from {target} within {after:?}")]
    Timeout { target: String, after: Duration },
    #[error("exchange with {target} failed: {reason}")]
    Exchange { target: String, reason: String },
    #[error("{target} sent a response we cannot read: {reason}")]
    BadResponse { target: String, reason: String },
    #[error("{target} answered {status}: {body}")]
    Status {
        target: String,
        status: u16,
        body: String,
    },
    #[error("could not encode the request body: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("{target} answered with JSON we cannot read: {source}")]
    Decode {
        target: String,
        #[source]
        source: serde_json::Error,
    },
}

impl HttpError {
    /// The HTTP status, when the server answered with a non-2xx one.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Resolves agent names to the addresses the runtime last gave for them; never asks DNS.
#[derive(Debug, Clone, Default)]
struct Addresses(Arc<Mutex<HashMap<String, SocketAddr>>>);

impl Addresses {
    fn set(&self, target: &Target) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(target.name.clone(), target.addr);
    }
}

impl tower_service::Service<Name> for Addresses {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let found = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name.as_str())
            .copied();
        std::future::ready(found.map(|addr| vec![addr].into_iter()).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no address known for {}", name.as_str()),
            )
        }))
    }
}

type Pool = Client<HttpsConnector<HttpConnector<Addresses>>, Full<Bytes>>;

/// One client for all agents of a cluster. Cloning shares the pool.
#[derive(Clone)]
pub struct AgentClient {
    addresses: Addresses,
    pool: Arc<Mutex<Pool>>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient").finish_non_exhaustive()
    }
}

fn pool(addresses: &Addresses, tls: Arc<ClientConfig>) -> Pool {
    let mut http = HttpConnector::new_with_resolver(addresses.clone());
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(2)));
    let https = HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(2)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https)
}

impl AgentClient {
    /// A client presenting the certificate in `tls` and trusting what `tls` trusts.
    pub fn new(tls: Arc<ClientConfig>) -> AgentClient {
        let addresses = Addresses::default();
        AgentClient {
            pool: Arc::new(Mutex::new(pool(&addresses, tls))),
            addresses,
        }
    }

    /// Use a renewed certificate from now on (open connections are dropped with the old pool).
    pub fn renew(&self, tls: Arc<ClientConfig>) {
        *self.pool.lock().unwrap_or_else(PoisonError::into_inner) = pool(&self.addresses, tls);
    }

    /// `GET path` and decode a 2xx JSON answer; any other status is [`HttpError::Status`].
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        target: &Target,
        path: &str,
        timeout: Duration,
    ) -> Result<T, HttpError> {
        let (status, body) = self.exchange(target, "GET", path, None, timeout).await?;
        if !(200..300).contains(&status) {
            return Err(HttpError::Status {
                target: target.to_string(),
                status,
                body: error_text(&body),
            });
        }
        serde_json::from_slice(&body).map_err(|source| HttpError::Decode {
            target: target.to_string(),
            source,
        })
    }

    /// Send `body` as JSON with `method` (such as `PUT`); the status and body, whatever the status.
    pub async fn send_json<B: Serialize + ?Sized>(
        &self,
        target: &Target,
        method: &str,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), HttpError> {
        let encoded = serde_json::to_vec(body).map_err(HttpError::Encode)?;
        self.exchange(target, method, path, Some(encoded), timeout)
            .await
    }

    /// `GET path`: the status and body, whatever the status.
    pub async fn get(
        &self,
        target: &Target,
        path: &str,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), HttpError> {
        self.exchange(target, "GET", path, None, timeout).await
    }

    async fn exchange(
        &self,
        target: &Target,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), HttpError> {
        let invalid = |reason: String| HttpError::InvalidRequest {
            target: target.to_string(),
            reason,
        };
        let uri = format!("https://{}:{}{path}", target.name, target.addr.port());
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(&uri)
            .header(hyper::header::ACCEPT, JSON);
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, JSON);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| invalid(e.to_string()))?;
        self.addresses.set(target);
        let pool = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let exchange = async {
            let response = pool
                .request(request)
                .await
                .map_err(|e| HttpError::Exchange {
                    target: target.to_string(),
                    reason: error_chain(&e),
                })?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| HttpError::BadResponse {
                    target: target.to_string(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            Ok((status, body.to_vec()))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(HttpError::Timeout {
                    target: target.to_string(),
                    after: timeout,
                })
            })
    }
}

/// An error with its causes (hyper's own message is often just "client error (Connect)").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn error_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim_end();
    match text.char_indices().nth(ERROR_BODY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
