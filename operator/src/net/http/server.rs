//! The server side, on hyper: keep-alive HTTP/1.1, plain or TLS. Over TLS the client certificate
//! (if any) is handed to the handler, which decides what it may do.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::message::{Request, Response};
use super::MAX_BODY_BYTES;
use crate::net::accept::accept_until;
use crate::tls::ServerTls;

/// Limits of the server; [`ServeOptions::default`] is what [`serve`] uses.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Larger request bodies get 413.
    pub max_body_bytes: usize,
    /// Bound on the TLS handshake, on receiving a request's head, and separately on its body.
    /// A body too slow gets 408.
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

/// Serve `handler` over plain HTTP on `listener` until `shutdown` completes, with default limits.
pub async fn serve<H, F>(listener: TcpListener, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    serve_with(listener, ServeOptions::default(), None, handler, shutdown).await;
}

/// Serve `handler` on `listener` until `shutdown` completes: over TLS when `tls` is given. Each
/// connection runs in its own task; on shutdown, idle connections close and requests in flight
/// get the grace to finish.
pub async fn serve_with<H, F>(
    listener: TcpListener,
    options: ServeOptions,
    tls: Option<Arc<ServerTls>>,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    if let Ok(addr) = listener.local_addr() {
        debug!(%addr, tls = tls.is_some(), "HTTP server listening");
    }
    let grace = options.shutdown_grace;
    let options = Arc::new(options);
    let (stop_tx, stop_rx) = watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    accept_until("http", listener, shutdown, grace, move |stream, peer| {
        let (handler, options, tls, stop) = (
            handler.clone(),
            options.clone(),
            tls.clone(),
            stop_rx.clone(),
        );
        async move { connection(stream, peer, tls, handler, options, stop).await }
    })
    .await;
}

async fn connection<H, F>(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<ServerTls>>,
    handler: H,
    options: Arc<ServeOptions>,
    stop: watch::Receiver<bool>,
) where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%peer, %error, "could not set TCP_NODELAY");
    }
    let Some(tls) = tls else {
        exchange(stream, None, handler, options, stop).await;
        return;
    };
    let config = match tls.current() {
        Ok(config) => config,
        Err(error) => {
            warn!(%peer, %error, "no usable server certificate; closing the connection");
            return;
        }
    };
    let accepted =
        tokio::time::timeout(options.io_timeout, TlsAcceptor::from(config).accept(stream)).await;
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            debug!(%peer, %error, "TLS handshake refused");
            return;
        }
        Err(_) => {
            debug!(%peer, "TLS handshake not completed in time");
            return;
        }
    };
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.clone().into_owned());
    exchange(stream, cert, handler, options, stop).await;
}

async fn exchange<S, H, F>(
    stream: S,
    cert: Option<CertificateDer<'static>>,
    handler: H,
    options: Arc<ServeOptions>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let service_options = options.clone();
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let (handler, cert, options) = (handler.clone(), cert.clone(), service_options.clone());
        async move { Ok::<_, Infallible>(answer(request, cert, handler, &options).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(options.io_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = async { stop.wait_for(|stopped| *stopped).await.map(|_| ()) } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        debug!(%error, "connection ended with an error");
    }
}

async fn answer<H, F>(
    request: hyper::Request<Incoming>,
    client_cert: Option<CertificateDer<'static>>,
    handler: H,
    options: &ServeOptions,
) -> hyper::Response<Full<Bytes>>
where
    H: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    let (parts, body) = request.into_parts();
    let body = tokio::time::timeout(
        options.io_timeout,
        Limited::new(body, options.max_body_bytes).collect(),
    )
    .await;
    let body = match body {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            let limit = options.max_body_bytes;
            return encode(Response::text(
                413,
                &format!("the body is larger than the limit of {limit} bytes\n"),
            ));
        }
        Ok(Err(error)) => {
            return encode(Response::text(
                400,
                &format!("could not read the body: {error}\n"),
            ))
        }
        Err(_) => return encode(Response::text(408, "request body not received in time\n")),
    };
    let request = Request {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        body: body.to_vec(),
        client_cert,
    };
    let (method, path) = (request.method.clone(), request.path.clone());
    let response = handler(request).await;
    debug!(%method, %path, status = response.status, "answered");
    encode(response)
}

fn encode(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut encoded = hyper::Response::new(Full::new(Bytes::from(response.body)));
    *encoded.status_mut() = hyper::StatusCode::from_u16(response.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    encoded.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(response.content_type),
    );
    encoded
}
