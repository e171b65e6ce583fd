//! An in-memory stand-in for the Kubernetes API behind a real `kube::Client`: it stores what is
//! created or applied, answers gets and label-selected lists, and records every request so tests
//! can check the wire shapes. Only what the reconciler uses is implemented.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

#[derive(Default)]
pub struct Store {
    /// Object path (without `/status`) → object.
    pub objects: BTreeMap<String, Value>,
    pub requests: Vec<Recorded>,
}

#[derive(Clone, Default)]
pub struct FakeApi {
    pub store: Arc<Mutex<Store>>,
}

impl FakeApi {
    pub fn client(&self) -> kube::Client {
        let store = self.store.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let store = store.clone();
            async move { Ok::<_, Infallible>(handle(store, req).await) }
        });
        kube::Client::new(service, "db")
    }

    pub fn put(&self, path: &str, object: Value) {
        self.lock().objects.insert(path.to_string(), object);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).cloned()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn handle(store: Arc<Mutex<Store>>, req: Request<Body>) -> Response<Body> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
    store.requests.push(Recorded {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        body: body.clone(),
    });
    let (object_path, subresource) = match path.strip_suffix("/status") {
        Some(p) => (p.to_string(), true),
        None => (path.clone(), false),
    };
    match method.as_str() {
        "GET" if is_collection(&path) => {
            let selector = label_selector(&query);
            let prefix = format!("{path}/");
            let items: Vec<Value> = store
                .objects
                .iter()
                .filter(|(p, _)| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
                .map(|(_, o)| o.clone())
                .filter(|o| {
                    selector
                        .iter()
                        .all(|(k, v)| o["metadata"]["labels"][k] == *v)
                })
                .collect();
            reply(
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        "GET" => match store.objects.get(&object_path) {
            Some(o) => reply(StatusCode::OK, o.clone()),
            None => not_found(&object_path),
        },
        "POST" => {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or("generated")
                .to_string();
            let mut object = body.clone();
            object["metadata"]["resourceVersion"] = json!("1");
            store
                .objects
                .insert(format!("{path}/{name}"), object.clone());
            reply(StatusCode::CREATED, object)
        }
        "PATCH" => {
            let mut current = store
                .objects
                .get(&object_path)
                .cloned()
                .unwrap_or_else(|| json!({}));
            if subresource {
                current["status"] = body["status"].clone();
            } else {
                merge(&mut current, &body);
            }
            if current["metadata"]["name"].is_null() {
                current["metadata"]["name"] =
                    json!(object_path.rsplit('/').next().unwrap_or_default());
            }
            store.objects.insert(object_path, current.clone());
            reply(StatusCode::OK, current)
        }
        "PUT" => {
            store.objects.insert(object_path, body.clone());
            reply(StatusCode::OK, body)
        }
        "DELETE" => match store.objects.remove(&object_path) {
            Some(o) => reply(StatusCode::OK, o),
            None => not_found(&object_path),
        },
        _ => reply(StatusCode::METHOD_NOT_ALLOWED, json!({})),
    }
}

/// `/api/v1/namespaces/db/pods` and `/apis/g/v/namespaces/db/x` are collections; one more
/// segment names an object.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.first() {
        Some(&"api") => !segments.len().is_multiple_of(2) && segments.len() >= 3,
        Some(&"apis") => segments.len().is_multiple_of(2) && segments.len() >= 4,
        _ => false,
    }
}

fn label_selector(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("labelSelector="))
        .flat_map(|sel| {
            let decoded = sel
                .replace("%3D", "=")
                .replace("%2F", "/")
                .replace("%2C", ",");
            decoded
                .split(',')
                .filter_map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// JSON merge patch (null deletes).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(serde_json::to_vec(&body).unwrap_or_default()));
    *resp.status_mut() = status;
    resp
}

fn not_found(path: &str) -> Response<Body> {
    reply(
        StatusCode::NOT_FOUND,
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("{path} not found")}),
    )
}
