//! The proxy over real loopback sockets, with echo servers that announce themselves as backends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::*;

/// Upper bound for anything a test waits on; only reached when the code under test is broken.
const DEADLINE: Duration = Duration::from_secs(10);

/// An echo server that first sends one byte, its `id`, so a test knows where it landed.
async fn spawn_backend(id: u8) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            connections.spawn(async move {
                if stream.write_all(&[id]).await.is_err() {
                    return;
                }
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    (addr, task)
}

/// An address where nobody listens.
async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

struct TestProxy {
    addr: SocketAddr,
    routes: watch::Sender<Vec<SocketAddr>>,
    stats: Arc<ProxyStats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

async fn start_proxy(routes: Vec<SocketAddr>, wait_for_route: Duration) -> TestProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let (routes, routes_rx) = watch::channel(routes);
    let proxy = Proxy::new("test-rw", routes_rx, wait_for_route)
        .with_connect_timeout(Duration::from_secs(2));
    let stats = proxy.stats();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(proxy.run(listener, async move {
        let _ = stopped.await;
    }));
    TestProxy {
        addr,
        routes,
        stats,
        stop: Some(stop),
        task,
    }
}

/// Connect through the proxy and read the backend's one-byte greeting.
async fn connect_and_identify(proxy: SocketAddr) -> (TcpStream, u8) {
    let mut stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    let mut id = [0u8; 1];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut id))
        .await
        .expect("greeting in time")
        .expect("greeting");
    (stream, id[0])
}

async fn assert_echoes(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.expect("write");
    let mut back = vec![0u8; message.len()];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(back, message);
}

/// The proxy must close this connection: a read ends (0 bytes or an error) within the deadline.
async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 16];
    match tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("expected the connection closed, read {n} bytes"),
        Err(_) => panic!("connection still open after {DEADLINE:?}"),
    }
}

/// Poll a condition until it holds, failing the test at the deadline.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn routes_to_the_only_backend() {
    let (a, _backend) = spawn_backend(1).await;
    let proxy = start_proxy(vec![a], DEADLINE).await;
    let (mut stream, id) = connect_and_identify(proxy.addr).await;
    assert_eq!(id, 1);
    assert_echoes(&mut stream, b"SELECT 1").await;
    let stats = proxy.stats.snapshot();
    assert_eq!((stats.accepted, stats.active), (1, 1));
    assert_eq!(proxy.stats.routed_to(a), 1);
}

#[tokio::test]
async fn spreads_connections_round_robin_over_two_backends() {
    let (a, _ba) = spawn_backend(1).await;
    let (b, _bb) = spawn_backend(2).await;
    let proxy = start_proxy(vec![a, b], DEADLINE).await;
    let mut ids = Vec::new();
    let mut open = Vec::new();
    for _ in 0..4 {
        let (stream, id) = connect_and_identify(proxy.addr).await;
        ids.push(id);
        open.push(stream);
    }
    assert_eq!(ids, [1, 2, 1, 2]);
    assert_eq!((proxy.stats.routed_to(a), proxy.stats.routed_to(b)), (2, 2));
}

#[tokio::test]
async fn waits_for_a_route_to_appear() {
    let (a, _backend) = spawn_backend(7).await;
    let proxy = start_proxy(Vec::new(), DEADLINE).await;
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    // Publish only once the client is known to be waiting, so a proxy that refused at once fails.
    wait_until("the client to wait for a route", || {
        proxy.stats.snapshot().waiting_for_route == 1
    })
    .await;
    proxy.routes.send(vec![a]).expect("proxy listens to routes");
    let mut id = [0u8; 1];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut id))
        .await
        .expect("greeting in time")
        .expect("greeting");
    assert_eq!(id[0], 7);
    assert_echoes(&mut stream, b"after failover").await;
    assert_eq!(proxy.stats.snapshot().waiting_for_route, 0);
}

#[tokio::test]
async fn closes_the_client_when_no_route_appears_in_time() {
    let wait = Duration::from_millis(200);
    let proxy = start_proxy(Vec::new(), wait).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    assert_closed(&mut stream).await;
    assert!(started.elapsed() >= wait, "closed before the wait ran out");
    wait_until("the refusal to be counted", || {
        proxy.stats.snapshot().no_route == 1
    })
    .await;
}

#[tokio::test]
async fn closes_connections_whose_backend_left_the_routes() {
    let (a, _ba) = spawn_backend(1).await;
    let (b, _bb) = spawn_backend(2).await;
    let proxy = start_proxy(vec![a, b], DEADLINE).await;
    let (mut first, first_id) = connect_and_identify(proxy.addr).await;
    let (mut second, second_id) = connect_and_identify(proxy.addr).await;
    assert_eq!((first_id, second_id), (1, 2));

    // b is demoted: only a stays routed.
    proxy.routes.send(vec![a]).expect("proxy listens to routes");
    assert_closed(&mut second).await;
    // The connection to a, which stayed routed, keeps working.
    assert_echoes(&mut first, b"still primary").await;
    assert_eq!(proxy.stats.snapshot().closed_on_route_change, 1);

    // New clients go to a only.
    let (_third, third_id) = connect_and_identify(proxy.addr).await;
    assert_eq!(third_id, 1);

    // Now nothing is routed: the last connection closes too.
    proxy
        .routes
        .send(Vec::new())
        .expect("proxy listens to routes");
    assert_closed(&mut first).await;
}

#[tokio::test]
async fn fails_closed_when_the_route_publisher_is_gone() {
    let (a, _backend) = spawn_backend(1).await;
    let mut proxy = start_proxy(vec![a], DEADLINE).await;
    let (mut open, _) = connect_and_identify(proxy.addr).await;
    let (replacement, _) = watch::channel(Vec::new());
    drop(std::mem::replace(&mut proxy.routes, replacement));
    assert_closed(&mut open).await;
    let mut late = TcpStream::connect(proxy.addr).await.expect("connect");
    assert_closed(&mut late).await;
    assert_eq!(proxy.stats.routed_to(a), 1);
}

#[tokio::test]
async fn tries_the_other_backends_when_one_cannot_be_reached() {
    let dead = dead_addr().await;
    let (a, _backend) = spawn_backend(3).await;
    // Round-robin starts at the first entry, the dead one.
    let proxy = start_proxy(vec![dead, a], DEADLINE).await;
    let (mut stream, id) = connect_and_identify(proxy.addr).await;
    assert_eq!(id, 3);
    assert_echoes(&mut stream, b"fallback").await;
    assert_eq!(proxy.stats.snapshot().connect_failures, 1);

    // With only unreachable backends the client is closed after one try of each.
    let other_dead = dead_addr().await;
    proxy
        .routes
        .send(vec![dead, other_dead])
        .expect("proxy listens to routes");
    let mut refused = TcpStream::connect(proxy.addr).await.expect("connect");
    assert_closed(&mut refused).await;
    wait_until("both attempts and the refusal to be counted", || {
        let stats = proxy.stats.snapshot();
        stats.connect_failures == 3 && stats.no_route == 1
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_the_listener_and_open_connections() {
    let (a, _backend) = spawn_backend(1).await;
    let mut proxy = start_proxy(vec![a], DEADLINE).await;
    let (mut open, _) = connect_and_identify(proxy.addr).await;
    proxy
        .stop
        .take()
        .expect("not stopped yet")
        .send(())
        .expect("proxy running");
    tokio::time::timeout(DEADLINE, &mut proxy.task)
        .await
        .expect("proxy stops in time")
        .expect("proxy did not panic");
    assert_closed(&mut open).await;
    assert!(TcpStream::connect(proxy.addr).await.is_err());
    assert_eq!(proxy.stats.snapshot().active, 0);
}
