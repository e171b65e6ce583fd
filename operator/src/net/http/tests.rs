//! The server and client together over real loopback sockets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;

/// Upper bound for anything a test waits on; only reached when the code under test is broken.
const DEADLINE: Duration = Duration::from_secs(10);
/// Client timeout for calls expected to succeed.
const CALL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Desired {
    role: String,
    upstream: Option<String>,
}

struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    calls: Arc<AtomicUsize>,
}

impl TestServer {
    /// An agent-like server: GET /status, PUT and GET /desired, 404 otherwise.
    async fn start(options: ServeOptions) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let calls = Arc::new(AtomicUsize::new(0));
        let desired: Arc<Mutex<Option<Desired>>> = Arc::default();
        let counted = Arc::clone(&calls);
        let handler = move |request: Request| {
            counted.fetch_add(1, Ordering::SeqCst);
            let desired = Arc::clone(&desired);
            async move { agent(request, &desired) }
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(listener, options, handler, async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stop: Some(stop),
            task,
            calls,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn agent(request: Request, desired: &Mutex<Option<Desired>>) -> Response {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/status") => Response::json(
            200,
            &serde_json::json!({"role": "primary", "query": request.query}),
        ),
        ("PUT", "/desired") => match serde_json::from_slice::<Desired>(&request.body) {
            Ok(d) => {
                *desired.lock().expect("lock") = Some(d.clone());
                Response::json(200, &d)
            }
            Err(e) => Response::text(422, &e.to_string()),
        },
        ("GET", "/desired") => Response::json(200, &*desired.lock().expect("lock")),
        ("PUT", "/size") => Response::json(200, &request.body.len()),
        _ => Response::text(404, "no such endpoint"),
    }
}

/// Send raw bytes, then read until the server closes.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may close before taking everything; what it answered is what we check.
    let _ = stream.write_all(bytes).await;
    read_until_closed(&mut stream).await
}

async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "server did not close within {DEADLINE:?}");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn get_and_put_round_trip_json() {
    let server = TestServer::start(ServeOptions::default()).await;

    let status: serde_json::Value = get_json(server.addr, "/status?verbose=1", CALL)
        .await
        .expect("status");
    assert_eq!(
        status,
        serde_json::json!({"role": "primary", "query": "verbose=1"})
    );

    let before: Option<Desired> = get_json(server.addr, "/desired", CALL).await.expect("get");
    assert_eq!(before, None);

    let want = Desired {
        role: "standby".into(),
        upstream: Some("a".into()),
    };
    let (code, body) = send_json(server.addr, "PUT", "/desired", &want, CALL)
        .await
        .expect("put");
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_slice::<Desired>(&body).expect("echo"),
        want
    );

    let after: Option<Desired> = get_json(server.addr, "/desired", CALL).await.expect("get");
    assert_eq!(after, Some(want));
    assert_eq!(server.calls(), 4);
}

#[tokio::test]
async fn handler_404_is_an_error_from_get_json_and_a_status_from_get() {
    let server = TestServer::start(ServeOptions::default()).await;
    let error = get_json::<serde_json::Value>(server.addr, "/nothing", CALL)
        .await
        .expect_err("404 is an error");
    match &error {
        HttpError::Status { status, body, .. } => {
            assert_eq!(*status, 404);
            assert_eq!(body, "no such endpoint");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    assert_eq!(error.status(), Some(404));

    let (code, body) = get(server.addr, "/nothing", CALL).await.expect("answer");
    assert_eq!((code, body.as_slice()), (404, &b"no such endpoint"[..]));
}

#[tokio::test]
async fn non_json_answer_is_a_decode_error() {
    let server = TestServer::start(ServeOptions::default()).await;
    // PUT /desired with a body that is JSON but not a Desired gets a 422 text answer.
    let (code, _) = send_json(server.addr, "PUT", "/desired", &[1, 2, 3], CALL)
        .await
        .expect("answer");
    assert_eq!(code, 422);
    // A 2xx answer that does not decode into the asked type is a decode error.
    let error = get_json::<Vec<u32>>(server.addr, "/status", CALL)
        .await
        .expect_err("wrong shape");
    assert!(matches!(error, HttpError::Decode { .. }), "{error:?}");
}

#[tokio::test]
async fn malformed_requests_get_400_and_never_reach_the_handler() {
    let server = TestServer::start(ServeOptions::default()).await;
    let malformed: [&[u8]; 6] = [
        b"NONSENSE\r\n\r\n",
        b"GET status HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"PUT /desired HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
        b"PUT /desired HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        b"\xff\xfe / HTTP/1.1\r\n\r\n",
    ];
    for bytes in malformed {
        let answer = raw_exchange(server.addr, bytes).await;
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{:?} got {answer:?}",
            String::from_utf8_lossy(bytes)
        );
        assert!(answer.contains("Connection: close\r\n"), "{answer:?}");
    }
    // A body shorter than announced, then the client stops sending: truncated is malformed too.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"PUT /desired HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .expect("write");
    stream.shutdown().await.expect("half close");
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");

    let chunked = raw_exchange(
        server.addr,
        b"PUT /desired HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 501 "), "{chunked:?}");
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn oversized_body_gets_413_without_reaching_the_handler() {
    let server = TestServer::start(ServeOptions::default()).await;
    let mut request = format!(
        "PUT /size HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1
    )
    .into_bytes();
    request.extend(std::iter::repeat_n(b'x', 64 * 1024));
    let answer = raw_exchange(server.addr, &request).await;
    assert!(
        answer.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
        "{answer:?}"
    );
    assert_eq!(server.calls(), 0);

    // The client sees the 413 as a status even though the server did not read the whole body.
    let big = "y".repeat(MAX_BODY_BYTES);
    let (code, _) = send_json(server.addr, "PUT", "/size", &big, CALL)
        .await
        .expect("answer");
    assert_eq!(code, 413);
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn body_at_the_limit_is_accepted() {
    let server = TestServer::start(ServeOptions::default()).await;
    // A JSON string of MAX - 2 characters plus its two quotes is exactly MAX bytes.
    let body = "z".repeat(MAX_BODY_BYTES - 2);
    let (code, answer) = send_json(server.addr, "PUT", "/size", &body, CALL)
        .await
        .expect("answer");
    assert_eq!(code, 200);
    assert_eq!(answer, MAX_BODY_BYTES.to_string().as_bytes());
}

#[tokio::test]
async fn expect_continue_gets_an_interim_answer() {
    let server = TestServer::start(ServeOptions::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"PUT /size HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        .await
        .expect("write head");
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut got = vec![0u8; interim.len()];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut got))
        .await
        .expect("interim answer in time")
        .expect("read");
    assert_eq!(got, interim);
    stream.write_all(b"abcd").await.expect("write body");
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(answer.ends_with("\r\n\r\n4"), "{answer:?}");
}

#[tokio::test]
async fn head_answer_has_no_body() {
    let server = TestServer::start(ServeOptions::default()).await;
    let answer = raw_exchange(server.addr, b"HEAD /nothing HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer:?}");
    assert!(answer.contains("Content-Length: 16\r\n"), "{answer:?}");
    assert!(answer.ends_with("\r\n\r\n"), "{answer:?}");
}

#[tokio::test]
async fn stuck_client_gets_408_after_the_read_timeout() {
    let options = ServeOptions {
        io_timeout: Duration::from_millis(200),
        ..ServeOptions::default()
    };
    let server = TestServer::start(options).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(b"GET /status HT").await.expect("write");
    let answer = read_until_closed(&mut stream).await;
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer:?}"
    );
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn client_times_out_against_a_listener_that_never_answers() {
    // The kernel completes the handshake into the backlog, but nobody ever reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = silent.local_addr().expect("addr");
    let limit = Duration::from_millis(200);
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        DEADLINE,
        get_json::<serde_json::Value>(addr, "/status", limit),
    )
    .await
    .expect("the client must give up by itself");
    match outcome {
        Err(HttpError::Timeout { after, .. }) => assert_eq!(after, limit),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= limit);
    drop(silent);
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let error = get_json::<serde_json::Value>(addr, "/status", CALL)
        .await
        .expect_err("nobody listens");
    assert!(matches!(error, HttpError::Connect { .. }), "{error:?}");
}

#[tokio::test]
async fn client_refuses_invalid_method_and_path() {
    let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    for (method, path) in [
        ("GET", "status"),
        ("GET", "/a b"),
        ("GET", "/a\r\nX: y"),
        ("P T", "/"),
    ] {
        let error = send_json(addr, method, path, &1, CALL)
            .await
            .expect_err("invalid");
        assert!(
            matches!(error, HttpError::InvalidRequest { .. }),
            "{method} {path:?}: {error:?}"
        );
    }
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let mut server = TestServer::start(ServeOptions::default()).await;
    let _: serde_json::Value = get_json(server.addr, "/status", CALL)
        .await
        .expect("serving before shutdown");
    server
        .stop
        .take()
        .expect("not stopped yet")
        .send(())
        .expect("server still running");
    tokio::time::timeout(DEADLINE, &mut server.task)
        .await
        .expect("serve returns after shutdown")
        .expect("serve did not panic");
    let error = get_json::<serde_json::Value>(server.addr, "/status", CALL)
        .await
        .expect_err("listener is closed");
    assert!(matches!(error, HttpError::Connect { .. }), "{error:?}");
}
