//! The client side: one request per connection, the whole exchange bounded by a timeout.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::message::JSON;
use super::wire::{self, WireError};
use super::MAX_BODY_BYTES;

/// How much of an error body [`HttpError::Status`] keeps.
const ERROR_BODY_CHARS: usize = 1024;

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("invalid request to {addr}: {reason}")]
    InvalidRequest { addr: SocketAddr, reason: String },
    #[error("could not connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("no complete answer from {addr} within {after:?}")]
    Timeout { addr: SocketAddr, after: Duration },
    #[error("exchange with {addr} failed: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{addr} sent a response we cannot read: {reason}")]
    BadResponse { addr: SocketAddr, reason: String },
    #[error("{addr} answered {status}: {body}")]
    Status {
        addr: SocketAddr,
        status: u16,
        body: String,
    },
    #[error("could not encode the request body: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("{addr} answered with JSON we cannot read: {source}")]
    Decode {
        addr: SocketAddr,
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

/// `GET path` and decode a 2xx JSON answer; any other status is [`HttpError::Status`].
pub async fn get_json<T: DeserializeOwned>(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<T, HttpError> {
    let (status, body) = exchange(addr, "GET", path, None, timeout).await?;
    if !(200..300).contains(&status) {
        return Err(HttpError::Status {
            addr,
            status,
            body: error_text(&body),
        });
    }
    serde_json::from_slice(&body).map_err(|source| HttpError::Decode { addr, source })
}

/// Send `body` as JSON with `method` (such as `PUT`) and return the status and body, whatever
/// the status.
pub async fn send_json<B: Serialize + ?Sized>(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &B,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), HttpError> {
    let encoded = serde_json::to_vec(body).map_err(HttpError::Encode)?;
    exchange(addr, method, path, Some(&encoded), timeout).await
}

/// `GET path` and return the status and body, whatever the status.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), HttpError> {
    exchange(addr, "GET", path, None, timeout).await
}

async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), HttpError> {
    let invalid = |reason: &str| HttpError::InvalidRequest {
        addr,
        reason: reason.to_string(),
    };
    if !wire::is_token(method) {
        return Err(invalid("method is not an HTTP token"));
    }
    if !wire::is_origin_target(path) {
        return Err(invalid(
            "path must start with / and contain no spaces or control characters",
        ));
    }
    let request = encode_request(addr, method, path, body);
    tokio::time::timeout(timeout, exchange_unbounded(addr, &request))
        .await
        .unwrap_or(Err(HttpError::Timeout {
            addr,
            after: timeout,
        }))
}

async fn exchange_unbounded(addr: SocketAddr, request: &[u8]) -> Result<(u16, Vec<u8>), HttpError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| HttpError::Connect { addr, source })?;
    // Best effort: a failure only costs latency.
    let _ = stream.set_nodelay(true);
    // A server may answer (413, 400) and close before reading all we send; its answer counts
    // more than our write error, so read it before reporting the write error.
    let written = stream.write_all(request).await;
    match read_response(&mut stream).await {
        Ok(answer) => Ok(answer),
        Err(read_error) => match written {
            Err(source) => Err(HttpError::Io { addr, source }),
            Ok(()) => Err(match read_error {
                WireError::Io(source) => HttpError::Io { addr, source },
                other => HttpError::BadResponse {
                    addr,
                    reason: other.to_string(),
                },
            }),
        },
    }
}

async fn read_response(stream: &mut TcpStream) -> Result<(u16, Vec<u8>), WireError> {
    let mut buf = Vec::new();
    loop {
        let head_len = wire::read_head(stream, &mut buf).await?;
        let head = wire::parse_head(&buf[..head_len])?;
        let status = wire::parse_status_line(head.start_line)?;
        if (100..200).contains(&status) {
            // An interim answer such as 100 Continue; the real one follows.
            buf.drain(..head_len);
            continue;
        }
        head.reject_transfer_encoding()?;
        let body = match head.content_length()? {
            Some(declared) => {
                let length = usize::try_from(declared)
                    .ok()
                    .filter(|l| *l <= MAX_BODY_BYTES)
                    .ok_or(WireError::BodyTooLarge {
                        length: declared,
                        limit: MAX_BODY_BYTES,
                    })?;
                wire::read_body(stream, buf, head_len, length).await?
            }
            None => wire::read_body_to_end(stream, buf, head_len, MAX_BODY_BYTES).await?,
        };
        return Ok((status, body));
    }
}

fn encode_request(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {JSON}\r\nConnection: close\r\n"
    );
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: {JSON}\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if let Some(body) = body {
        bytes.extend_from_slice(body);
    }
    bytes
}

fn error_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim_end();
    match text.char_indices().nth(ERROR_BODY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
