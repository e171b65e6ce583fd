//! The agent's HTTP face: `/status`, `/healthz`, `/readyz`, and `PUT /desired` for runtimes that
//! hand the desired state over the network (the local runtime).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::info;

use crate::lease::unix_now_ms;
use crate::member::Desired;
use crate::net::http::{Request, Response};

use super::shared::Shared;

/// The loop is considered hung after this long without a pass.
const HEALTHY_WITHIN_MS: u64 = 30_000;

pub async fn handle(shared: Arc<Shared>, req: Request) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/status") => Response::json(200, &shared.report()),
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
                let changed = shared.desired.send_if_modified(|current| {
                    if current.as_ref() == Some(&desired) {
                        false
                    } else {
                        info!(member = %shared.member, role = desired.role_name(), reason = %desired.reason, "new desired state");
                        *current = Some(desired.clone());
                        true
                    }
                });
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
