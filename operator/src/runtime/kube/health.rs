//! The operator's own HTTP face: `/healthz` and `/metrics`.

use crate::net::http::{Request, Response};

use super::metrics::Metrics;

pub fn handle(metrics: &Metrics, req: Request) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/healthz") => Response::text(200, "ok\n"),
        ("GET", "/metrics") => Response::text(200, &metrics.render()),
        _ => Response::text(404, "not found\n"),
    }
}
