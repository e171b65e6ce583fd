//! The server side: one request per connection, answered with `Connection: close`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use super::message::{reason_phrase, Request, Response};
use super::wire::{self, WireError};
use super::MAX_BODY_BYTES;
use crate::net::accept::accept_until;

/// After answering an error before the body was read, keep reading (and dropping) what the client
/// still sends for this long, so closing does not reset the connection before it reads the answer.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 2 * MAX_BODY_BYTES;

/// Limits of the server; [`ServeOptions::default`] is what [`serve`] uses.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Larger request bodies get 413.
    pub max_body_bytes: usize,
    /// Bound on receiving a whole request, and separately on sending the response. A client that
    /// is too slow gets 408 and is disconnected.
    pub io_timeout: Duration,
    /// After shutdown, how long requests in flight may still finish before they are aborted.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_body_bytes: MAX_BODY_BYTES,
            io_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// Serve `handler` on `listener` until `shutdown` completes, with the default limits.
pub async fn serve<H, F>(listener: TcpListener, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    serve_with(listener, ServeOptions::default(), handler, shutdown).await;
}

/// Serve `handler` on `listener` until `shutdown` completes. Each connection runs in its own task
/// and carries one request.
pub async fn serve_with<H, F>(
    listener: TcpListener,
    options: ServeOptions,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    if let Ok(addr) = listener.local_addr() {
        debug!(%addr, "HTTP server listening");
    }
    let grace = options.shutdown_grace;
    let options = Arc::new(options);
    accept_until("http", listener, shutdown, grace, move |stream, peer| {
        let handler = handler.clone();
        let options = Arc::clone(&options);
        async move { handle_connection(stream, peer, handler, &options).await }
    })
    .await;
}

async fn handle_connection<H, F>(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: H,
    options: &ServeOptions,
) where
    H: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%peer, %error, "could not set TCP_NODELAY");
    }
    let received = tokio::time::timeout(
        options.io_timeout,
        read_request(&mut stream, options.max_body_bytes),
    )
    .await;
    let request = match received {
        Ok(Ok(request)) => request,
        Ok(Err(error)) => {
            let Some(status) = error_status(&error) else {
                debug!(%peer, %error, "connection ended without a request");
                return;
            };
            debug!(%peer, %error, status, "refusing request");
            let response = Response::text(status, &format!("{error}\n"));
            if send(&mut stream, &response, true, options.io_timeout).await {
                linger(&mut stream).await;
            }
            return;
        }
        Err(_) => {
            debug!(%peer, timeout = ?options.io_timeout, "request not received in time");
            let response = Response::text(408, "request not received in time\n");
            send(&mut stream, &response, true, options.io_timeout).await;
            return;
        }
    };
    let head_only = request.method == "HEAD";
    let (method, path) = (request.method.clone(), request.path.clone());
    let response = handler(request).await;
    debug!(%peer, %method, %path, status = response.status, "answered");
    send(&mut stream, &response, !head_only, options.io_timeout).await;
}

async fn read_request(stream: &mut TcpStream, max_body: usize) -> Result<Request, WireError> {
    let mut buf = Vec::new();
    let head_len = wire::read_head(stream, &mut buf).await?;
    let head = wire::parse_head(&buf[..head_len])?;
    let line = wire::parse_request_line(head.start_line)?;
    head.reject_transfer_encoding()?;
    let declared = head.content_length()?.unwrap_or(0);
    let length = usize::try_from(declared)
        .ok()
        .filter(|l| *l <= max_body)
        .ok_or(WireError::BodyTooLarge {
            length: declared,
            limit: max_body,
        })?;
    let wants_continue = head
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let method = line.method.to_string();
    let path = line.path.to_string();
    let query = line.query.map(str::to_string);
    if wants_continue && buf.len() - head_len < length {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let body = wire::read_body(stream, buf, head_len, length).await?;
    Ok(Request {
        method,
        path,
        query,
        body,
    })
}

/// The status to answer a request that could not be read with; `None` means nobody to answer.
fn error_status(error: &WireError) -> Option<u16> {
    match error {
        WireError::ClosedBeforeStart | WireError::Io(_) => None,
        WireError::Truncated | WireError::Malformed(_) => Some(400),
        WireError::HeadTooLarge => Some(431),
        WireError::BodyTooLarge { .. } => Some(413),
        WireError::TransferEncoding => Some(501),
        WireError::Version => Some(505),
    }
}

/// Write the response and close our side; false if that failed or timed out.
async fn send(
    stream: &mut TcpStream,
    response: &Response,
    with_body: bool,
    limit: Duration,
) -> bool {
    let bytes = encode(response, with_body);
    let sent = tokio::time::timeout(limit, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
    match sent {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            debug!(%error, "could not send the response");
            false
        }
        Err(_) => {
            debug!(?limit, "response not sent in time");
            false
        }
    }
}

fn encode(response: &Response, with_body: bool) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason_phrase(response.status),
        response.content_type,
        response.body.len()
    );
    let mut bytes =
        Vec::with_capacity(head.len() + if with_body { response.body.len() } else { 0 });
    bytes.extend_from_slice(head.as_bytes());
    if with_body {
        bytes.extend_from_slice(&response.body);
    }
    bytes
}

/// Drain what the client still sends (bounded in time and bytes) until it closes.
async fn linger(stream: &mut TcpStream) {
    let mut scratch = [0u8; 4096];
    let mut drained = 0usize;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while drained < LINGER_BYTES {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}
