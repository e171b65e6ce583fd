//! `KubeLease` against a fake Lease API behind a real `kube::Client`: the wire shapes (GET, PUT
//! with the resourceVersion read, POST when absent) and what each answer of the API server means.
//! The fake keeps one Lease and enforces resourceVersion preconditions the way the API server does.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::coordination::v1::Lease as LeaseObject;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::client::Body;
use kube::{Api, Client};
use serde_json::json;

use super::{KubeLease, KubeLeaseError};
use crate::lease::{Lease, LeaseError, LeaseRecord};

const ITEM: &str = "/apis/coordination.k8s.io/v1/namespaces/db/leases/lab-primary";
const COLLECTION: &str = "/apis/coordination.k8s.io/v1/namespaces/db/leases";

/// Something another writer does to the stored Lease just before our next write arrives.
type Interference = Box<dyn FnOnce(&mut Option<LeaseObject>) + Send>;

#[derive(Default)]
struct State {
    lease: Option<LeaseObject>,
    version: u64,
    /// Applied one per write request (PUT or POST), in order.
    interfere: VecDeque<Interference>,
    /// Status code every GET answers with instead of serving, if set.
    fail_gets: Option<u16>,
    /// (method, path, body) of every request.
    seen: Vec<(Method, String, serde_json::Value)>,
}

#[derive(Clone, Default)]
struct FakeApi(Arc<Mutex<State>>);

impl FakeApi {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lease(&self) -> KubeLease {
        let fake = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let fake = fake.clone();
            async move { Ok::<_, Infallible>(fake.handle(request).await) }
        });
        let client = Client::new(service, "db");
        KubeLease::new(Api::namespaced(client, "db"), "lab-primary")
    }

    fn interfere(&self, change: impl FnOnce(&mut Option<LeaseObject>) + Send + 'static) {
        self.state().interfere.push_back(Box::new(change));
    }

    /// Requests as `METHOD path`.
    fn requests(&self) -> Vec<String> {
        self.state()
            .seen
            .iter()
            .map(|(method, path, _)| format!("{method} {path}"))
            .collect()
    }

    fn last_body(&self) -> serde_json::Value {
        self.state()
            .seen
            .last()
            .map(|(_, _, body)| body.clone())
            .unwrap_or_default()
    }

    fn stored(&self) -> Option<LeaseObject> {
        self.state().lease.clone()
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let sent: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let path = parts.uri.path().to_string();
        let mut state = self.state();
        state
            .seen
            .push((parts.method.clone(), path.clone(), sent.clone()));
        if parts.method != Method::GET {
            if let Some(change) = state.interfere.pop_front() {
                change(&mut state.lease);
                state.version += 1;
                let version = state.version.to_string();
                if let Some(lease) = state.lease.as_mut() {
                    lease.metadata.resource_version = Some(version);
                }
            }
        }
        match (parts.method, path.as_str()) {
            (Method::GET, ITEM) => match (state.fail_gets, &state.lease) {
                (Some(code), _) => status(code, "Forbidden"),
                (None, Some(lease)) => ok(StatusCode::OK, lease),
                (None, None) => status(404, "NotFound"),
            },
            (Method::PUT, ITEM) => {
                let Some(current) = &state.lease else {
                    return status(404, "NotFound");
                };
                let mut lease: LeaseObject = serde_json::from_value(sent).expect("a Lease");
                if lease.metadata.resource_version != current.metadata.resource_version {
                    return status(409, "Conflict");
                }
                state.version += 1;
                lease.metadata.resource_version = Some(state.version.to_string());
                state.lease = Some(lease.clone());
                ok(StatusCode::OK, &lease)
            }
            (Method::POST, COLLECTION) => {
                if state.lease.is_some() {
                    return status(409, "AlreadyExists");
                }
                let mut lease: LeaseObject = serde_json::from_value(sent).expect("a Lease");
                state.version += 1;
                lease.metadata.resource_version = Some(state.version.to_string());
                state.lease = Some(lease.clone());
                ok(StatusCode::CREATED, &lease)
            }
            _ => status(405, "MethodNotAllowed"),
        }
    }
}

fn ok(code: StatusCode, lease: &LeaseObject) -> Response<Body> {
    let mut response = Response::new(Body::from(serde_json::to_vec(lease).expect("encodes")));
    *response.status_mut() = code;
    response
}

fn status(code: u16, reason: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": format!("fake: {reason}"), "reason": reason, "code": code,
    });
    let mut response = Response::new(Body::from(body.to_string().into_bytes()));
    *response.status_mut() = StatusCode::from_u16(code).expect("valid code");
    response
}

fn record_of(lease: &Option<LeaseObject>) -> LeaseRecord {
    super::record_from_spec(lease.as_ref().and_then(|l| l.spec.as_ref()))
}

/// What another member's successful acquisition leaves in the Lease.
fn taken_by(who: &'static str, now_ms: u64) -> impl FnOnce(&mut Option<LeaseObject>) + Send {
    move |lease| {
        let mut record = record_of(lease);
        assert!(record.acquire(who, 3_000, now_ms).expect("valid"));
        let object = lease.get_or_insert_with(|| LeaseObject {
            metadata: ObjectMeta {
                name: Some("lab-primary".into()),
                ..ObjectMeta::default()
            },
            spec: None,
        });
        object.spec = Some(
            super::spec_with_record(object.spec.take(), &record, Some(now_ms)).expect("in range"),
        );
    }
}

const T: u64 = 1_704_164_645_000;

#[tokio::test]
async fn absent_lease_is_free_and_created_on_first_acquire() {
    let fake = FakeApi::default();
    let labels = [("pgreplica.io/cluster".to_string(), "lab".to_string())].into();
    let lease = fake.lease().with_create_meta(ObjectMeta {
        labels: Some(labels),
        ..ObjectMeta::default()
    });
    assert_eq!(lease.read().await.expect("read"), LeaseRecord::default());
    assert!(lease.try_acquire("a", 2_500, T).await.expect("acquire"));
    assert_eq!(
        fake.requests(),
        [
            format!("GET {ITEM}"),
            format!("GET {ITEM}"),
            format!("POST {COLLECTION}")
        ]
    );
    let body = fake.last_body();
    assert_eq!(body["metadata"]["name"], "lab-primary");
    assert_eq!(body["metadata"]["labels"]["pgreplica.io/cluster"], "lab");
    assert_eq!(
        body["spec"],
        json!({
            "holderIdentity": "a",
            "renewTime": "2024-01-02T03:04:05.000000Z",
            "acquireTime": "2024-01-02T03:04:05.000000Z",
            // 2.5 s rounded up.
            "leaseDurationSeconds": 3,
            "leaseTransitions": 1,
        })
    );
    let record = lease.read().await.expect("read");
    assert!(record.is_held_by("a", T + 2_999));
    assert_eq!((record.duration_ms, record.transitions), (3_000, 1));
}

#[tokio::test]
async fn follows_the_record_rules_and_writes_with_the_version_it_read() {
    let fake = FakeApi::default();
    let lease = fake.lease();
    assert!(lease.try_acquire("a", 3_000, T).await.expect("acquire"));
    let before = fake.requests().len();
    // Refused while valid: read only, nothing written.
    assert!(!lease
        .try_acquire("b", 3_000, T + 1_000)
        .await
        .expect("acquire"));
    assert!(!lease.renew("b", T + 1_000).await.expect("renew"));
    lease.release("b").await.expect("release by another");
    assert_eq!(
        fake.requests()[before..],
        [
            format!("GET {ITEM}"),
            format!("GET {ITEM}"),
            format!("GET {ITEM}")
        ]
    );

    assert!(lease.renew("a", T + 1_000).await.expect("renew"));
    assert_eq!(
        fake.requests().last().map(String::as_str),
        Some(format!("PUT {ITEM}").as_str())
    );
    // The PUT carried the version the GET returned (the fake refuses anything else).
    assert_eq!(fake.last_body()["metadata"]["resourceVersion"], "1");
    assert_eq!(
        fake.last_body()["spec"]["acquireTime"],
        "2024-01-02T03:04:05.000000Z",
        "no new term"
    );
    assert!(lease.read().await.expect("read").is_held_by("a", T + 3_999));

    // After expiry, b takes it: a new term.
    assert!(lease
        .try_acquire("b", 3_000, T + 4_000)
        .await
        .expect("acquire"));
    assert_eq!(
        fake.last_body()["spec"]["acquireTime"],
        "2024-01-02T03:04:09.000000Z"
    );
    let record = lease.read().await.expect("read");
    assert!(record.is_held_by("b", T + 4_000));
    assert_eq!(record.transitions, 2);

    lease.release("b").await.expect("release");
    let record = lease.read().await.expect("read");
    assert!(record.free(T + 4_001));
    assert_eq!(
        fake.stored()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity),
        None
    );
}

#[tokio::test]
async fn losing_a_race_to_another_member_answers_false_without_writing_again() {
    let fake = FakeApi::default();
    let lease = fake.lease();
    assert!(lease.try_acquire("a", 3_000, T).await.expect("acquire"));
    // a's lease expired; a and b both try; b's write lands between a's read and a's write.
    fake.interfere(taken_by("b", T + 5_000));
    let before = fake.requests().len();
    assert!(!lease
        .try_acquire("a", 3_000, T + 5_000)
        .await
        .expect("acquire"));
    assert_eq!(
        fake.requests()[before..],
        [
            format!("GET {ITEM}"),
            format!("PUT {ITEM}"),
            format!("GET {ITEM}")
        ]
    );
    let record = lease.read().await.expect("read");
    assert!(record.is_held_by("b", T + 5_000));
    assert_eq!(record.transitions, 2);
}

#[tokio::test]
async fn losing_a_create_race_answers_false() {
    let fake = FakeApi::default();
    fake.interfere(taken_by("b", T));
    assert!(!fake
        .lease()
        .try_acquire("a", 3_000, T)
        .await
        .expect("acquire"));
    assert_eq!(
        fake.requests(),
        [
            format!("GET {ITEM}"),
            format!("POST {COLLECTION}"),
            format!("GET {ITEM}")
        ]
    );
    assert!(record_of(&fake.stored()).is_held_by("b", T));
}

#[tokio::test]
async fn a_harmless_change_in_between_is_retried_once() {
    let fake = FakeApi::default();
    let lease = fake.lease();
    assert!(lease.try_acquire("a", 3_000, T).await.expect("acquire"));
    // Someone relabels the Lease while a renews: the holder is unchanged, so a writes again.
    fake.interfere(|lease| {
        if let Some(lease) = lease {
            lease.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
        }
    });
    assert!(lease.renew("a", T + 1_000).await.expect("renew"));
    let record = lease.read().await.expect("read");
    assert_eq!(record.renewed_at_ms, T + 1_000);
    assert_eq!(
        fake.stored()
            .and_then(|l| l.metadata.labels)
            .map(|l| l.len()),
        Some(1),
        "label kept"
    );
}

#[tokio::test]
async fn losing_twice_in_a_row_is_an_error_not_an_answer() {
    let fake = FakeApi::default();
    let lease = fake.lease();
    assert!(lease.try_acquire("a", 3_000, T).await.expect("acquire"));
    fake.interfere(|_| {});
    fake.interfere(|_| {});
    let err = lease.renew("a", T + 1_000).await.expect_err("contended");
    let LeaseError::Store { store, source } = err else {
        panic!("not a store error: {err}");
    };
    assert_eq!(store, "kubernetes");
    assert!(matches!(
        source.downcast_ref::<KubeLeaseError>(),
        Some(KubeLeaseError::Contended { name }) if name == "lab-primary"
    ));
    // The lease itself is still a's, as before.
    assert!(lease.read().await.expect("read").is_held_by("a", T + 2_000));
}

#[tokio::test]
async fn api_errors_become_store_errors() {
    let fake = FakeApi::default();
    fake.state().fail_gets = Some(403);
    let lease = fake.lease();
    for result in [
        lease.read().await.map(|_| ()),
        lease.try_acquire("a", 3_000, T).await.map(|_| ()),
        lease.release("a").await,
    ] {
        let Err(LeaseError::Store { source, .. }) = result else {
            panic!("expected a store error, got {result:?}");
        };
        let Some(KubeLeaseError::Api { action, source, .. }) =
            source.downcast_ref::<KubeLeaseError>()
        else {
            panic!("not an API error: {source}");
        };
        assert_eq!(*action, "read");
        assert!(
            matches!(source, kube::Error::Api(s) if s.is_forbidden()),
            "{source}"
        );
    }
    assert!(
        fake.stored().is_none(),
        "nothing written after a failed read"
    );
}

#[tokio::test]
async fn invalid_arguments_are_refused_before_any_write() {
    let fake = FakeApi::default();
    let lease = fake.lease();
    assert!(matches!(
        lease.try_acquire("", 3_000, T).await,
        Err(LeaseError::EmptyHolder)
    ));
    assert!(matches!(
        lease.try_acquire("a", 0, T).await,
        Err(LeaseError::ZeroDuration)
    ));
    assert!(fake.requests().iter().all(|r| r.starts_with("GET ")));
}
