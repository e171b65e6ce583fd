//! The request a handler receives and the response it returns.

use rustls::pki_types::CertificateDer;
use serde::Serialize;
use tracing::error;

/// One parsed request, as handed to a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method as sent, such as `GET` or `PUT`.
    pub method: String,
    /// The path without the query, as sent (not percent-decoded).
    pub path: String,
    /// The query after `?`, if any (not percent-decoded).
    pub query: Option<String>,
    pub body: Vec<u8>,
    /// The client's certificate, when it presented one over TLS and it chains to the CA the
    /// server trusts (the handshake refuses any other).
    pub client_cert: Option<CertificateDer<'static>>,
}

/// What a handler answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

pub(super) const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

impl Response {
    /// `value` as JSON; a value that cannot be encoded becomes a 500 with the reason.
    pub fn json(status: u16, value: &impl Serialize) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response {
                status,
                content_type: JSON,
                body,
            },
            Err(e) => {
                error!(error = %e, "could not encode a JSON response");
                Response::text(500, &format!("could not encode the response: {e}\n"))
            }
        }
    }

    /// Plain UTF-8 text.
    pub fn text(status: u16, text: &str) -> Response {
        Response {
            status,
            content_type: TEXT,
            body: text.as_bytes().to_vec(),
        }
    }

    /// No body at all.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: TEXT,
            body: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_helper_encodes_and_labels() {
        let r = Response::json(201, &serde_json::json!({"a": 1}));
        assert_eq!(r.status, 201);
        assert_eq!(r.content_type, JSON);
        assert_eq!(r.body, br#"{"a":1}"#);
    }

    #[test]
    fn json_helper_reports_unencodable_values_as_500() {
        // JSON object keys must be strings; a map keyed by tuples cannot be encoded.
        let mut map = std::collections::BTreeMap::new();
        map.insert((1, 2), "x");
        let r = Response::json(200, &map);
        assert_eq!(r.status, 500);
        assert!(String::from_utf8_lossy(&r.body).contains("could not encode"));
    }

    #[test]
    fn text_helper() {
        let r = Response::text(404, "no such path");
        assert_eq!((r.status, r.body.as_slice()), (404, &b"no such path"[..]));
        assert!(r.content_type.starts_with("text/plain"));
    }
}
