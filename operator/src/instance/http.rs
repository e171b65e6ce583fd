//! The agent's HTTPS face: `/healthz` and `/readyz` for anyone (kubelet probes), `/status` and
//! `PUT /desired` only for the brain: a client certificate of the cluster CA naming the brain
//! (ADR 0005). Anything else gets 401 (no certificate) or 403 (another name) and changes nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::warn;

use crate::lease::unix_now_ms;
use crate::member::Desired;
use crate::net::http::{Request, Response};

use super::shared::Shared;

/// The loop is considered hung after this long without a pass.
const HEALTHY_WITHIN_MS: u64 = 30_000;

/// The longest a `/status` long poll is held, whatever the brain asks.
const LONGEST_POLL_MS: u64 = 5_000;

/// `GET /status?since=N&waitMs=M`: the report as soon as its revision differs from `N`, or after
/// `M` ms (at most [`LONGEST_POLL_MS`]) with whatever it is then. Without `since`, at once.
async fn long_poll(shared: &Shared, query: Option<&str>) -> crate::member::MemberReport {
    let (since, wait_ms) = poll_query(query);
    let Some(since) = since else {
        return shared.report();
    };
    let mut changes = shared.report.subscribe();
    let wait = std::time::Duration::from_millis(wait_ms.min(LONGEST_POLL_MS));
    let _ = tokio::time::timeout(wait, changes.wait_for(|r| r.revision != since)).await;
    shared.report()
}

/// `since` and `waitMs` from a query string; anything else is ignored.
fn poll_query(query: Option<&str>) -> (Option<u64>, u64) {
    let mut since = None;
    let mut wait_ms = 0;
    for pair in query.unwrap_or_default().split('&') {
        match pair.split_once('=') {
            Some(("since", v)) => since = v.parse().ok(),
            Some(("waitMs", v)) => wait_ms = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    (since, wait_ms)
}

/// Why a request for member control is refused, if it is.
fn refusal(req: &Request, brain: &str) -> Option<Response> {
    match &req.client_cert {
        None => Some(Response::text(
            401,
            &format!(
                "member control needs the client certificate of {brain}; none was presented\n"
            ),
        )),
        Some(cert) if !crate::tls::peer_is(cert, brain) => Some(Response::text(
            403,
            &format!("the client certificate does not name {brain}\n"),
        )),
        Some(_) => None,
    }
}

pub async fn handle(shared: Arc<Shared>, brain: Arc<String>, req: Request) -> Response {
    let controls = matches!(req.path.as_str(), "/status" | "/desired");
    if controls {
        if let Some(refused) = refusal(&req, &brain) {
            warn!(member = %shared.member, method = %req.method, path = %req.path, status = refused.status, "refused an unauthenticated request");
            return refused;
        }
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/status") => Response::json(200, &long_poll(&shared, req.query.as_deref()).await),
        ("GET", "/healthz") => {
            // Answering at all is most of the check (a stopped agent answers nothing); a loop
            // that stopped passing outside a long step (clone, start) is hung.
            let last = shared.last_tick_ms.load(Ordering::SeqCst);
            let in_step = shared.in_step.load(Ordering::SeqCst);
            if in_step || unix_now_ms().saturating_sub(last) < HEALTHY_WITHIN_MS {
                Response::text(200, "ok\n")
            } else {
                Response::text(503, "agent loop is not running\n")
            }
        }
        ("GET", "/readyz") => {
            let r = shared.report();
            if r.running && r.converged {
                Response::text(200, "ready\n")
            } else {
                Response::text(503, &format!("not ready: {}\n", r.activity))
            }
        }
        ("PUT", "/desired") => match serde_json::from_slice::<Desired>(&req.body) {
            Ok(desired) => {
                let changed = shared.receive_desired(desired);
                Response::json(200, &serde_json::json!({"changed": changed}))
            }
            Err(e) => Response::text(400, &format!("invalid desired state: {e}\n")),
        },
        (_, "/status" | "/healthz" | "/readyz" | "/desired") => {
            Response::text(405, "method not allowed\n")
        }
        _ => Response::text(404, "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::poll_query;

    #[test]
    fn the_long_poll_query_is_read_leniently() {
        let cases = [
            (None, (None, 0)),
            (Some("since=7&waitMs=400"), (Some(7), 400)),
            (Some("waitMs=400"), (None, 400)),
            (Some("since=x&waitMs=y&other=1"), (None, 0)),
            (Some("since=3"), (Some(3), 0)),
        ];
        for (query, want) in cases {
            assert_eq!(poll_query(query), want, "{query:?}");
        }
    }
}
