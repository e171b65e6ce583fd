//! The server and the pooled client over real TLS on loopback: who may connect, what the handler
//! learns about the client, limits, and certificates renewed under a running server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::*;
use crate::tls::{
    agent_name, brain_client, brain_name, peer_is, server_config, Authority, ServerTls, Usage,
    CA_VALIDITY, LEAF_VALIDITY,
};

const LIMIT: Duration = Duration::from_secs(3);

/// Answers who the client is: "brain", "someone" (another name), "anonymous".
async fn who(req: Request) -> Response {
    if req.path == "/big" {
        return Response::text(200, &format!("{} bytes", req.body.len()));
    }
    let who = match &req.client_cert {
        None => "anonymous",
        Some(cert) if peer_is(cert, &brain_name("lab")) => "brain",
        Some(_) => "someone",
    };
    Response::json(200, &serde_json::json!({ "who": who, "path": req.path }))
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(tls: ServerTls) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let options = ServeOptions {
        max_body_bytes: 1024,
        ..ServeOptions::default()
    };
    tokio::spawn(serve_with(
        listener,
        options,
        Some(Arc::new(tls)),
        who,
        async {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        stop: Some(stop),
    }
}

fn agent_tls(ca: &Authority, member: &str) -> ServerTls {
    let issued = ca
        .issue(&[agent_name("lab", member)], Usage::Server, LEAF_VALIDITY)
        .expect("issue");
    ServerTls::fixed(
        server_config(ca.cert_pem(), &issued.cert_pem, &issued.key_pem).expect("config"),
    )
}

fn brain(ca: &Authority) -> AgentClient {
    AgentClient::new(brain_client(ca, "lab", LEAF_VALIDITY).expect("brain").0)
}

/// A client that trusts `ca` and presents no certificate.
fn anonymous(ca: &Authority) -> AgentClient {
    AgentClient::new(crate::tls::verifying_client_config(ca.cert_pem()).expect("config"))
}

fn target(member: &str, addr: SocketAddr) -> Target {
    Target {
        name: agent_name("lab", member),
        addr,
    }
}

async fn ask(client: &AgentClient, target: &Target) -> Result<String, HttpError> {
    let answer: serde_json::Value = client.get_json(target, "/status", LIMIT).await?;
    Ok(answer["who"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn the_handler_learns_whether_the_brain_is_asking() {
    let ca = Authority::generate("lab", CA_VALIDITY).expect("CA");
    let server = start(agent_tls(&ca, "a")).await;
    let a = target("a", server.addr);
    let brain = brain(&ca);
    assert_eq!(ask(&brain, &a).await.expect("brain"), "brain");
    // keep-alive: the same client asks again over its pooled connection
    assert_eq!(ask(&brain, &a).await.expect("brain again"), "brain");
    assert_eq!(
        ask(&anonymous(&ca), &a).await.expect("anonymous"),
        "anonymous"
    );

    // a client certificate of the cluster CA for another name reaches the handler as such
    let mallory = ca
        .issue(&["mallory".to_string()], Usage::Client, LEAF_VALIDITY)
        .expect("issue");
    let someone = AgentClient::new(
        crate::tls::client_config(ca.cert_pem(), &mallory.cert_pem, &mallory.key_pem)
            .expect("config"),
    );
    assert_eq!(ask(&someone, &a).await.expect("someone"), "someone");
}

#[tokio::test]
async fn foreign_certificates_and_impostors_are_refused_at_the_handshake() {
    let ca = Authority::generate("lab", CA_VALIDITY).expect("CA");
    let other = Authority::generate("lab", CA_VALIDITY).expect("another CA");
    let server = start(agent_tls(&ca, "a")).await;
    let a = target("a", server.addr);

    // a brain certificate from another CA: the server refuses the handshake
    let foreign = AgentClient::new(brain_client(&other, "lab", LEAF_VALIDITY).expect("b").0);
    let error = ask(&foreign, &a).await.expect_err("foreign CA");
    assert!(matches!(error, HttpError::Exchange { .. }), "{error}");

    // a member's own certificate (serverAuth only) cannot stand in for the brain's: even one
    // issued for the brain's name is refused at the handshake
    for names in [vec![agent_name("lab", "b")], vec![brain_name("lab")]] {
        let member = ca
            .issue(&names, Usage::Server, LEAF_VALIDITY)
            .expect("issue");
        let client = AgentClient::new(
            crate::tls::client_config(ca.cert_pem(), &member.cert_pem, &member.key_pem)
                .expect("config"),
        );
        let error = ask(&client, &a)
            .await
            .expect_err("a server certificate as client");
        assert!(
            matches!(error, HttpError::Exchange { .. }),
            "{names:?}: {error}"
        );
    }

    // an agent whose certificate is of another CA, or for another member: the brain refuses it
    let impostor = start(agent_tls(&other, "a")).await;
    let error = ask(&brain(&ca), &target("a", impostor.addr))
        .await
        .expect_err("impostor");
    assert!(error.to_string().contains("certificate"), "{error}");
    let error = ask(&brain(&ca), &target("b", server.addr))
        .await
        .expect_err("a is not b");
    assert!(error.to_string().contains("certificate"), "{error}");
}

#[tokio::test]
async fn plain_http_gets_no_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = Authority::generate("lab", CA_VALIDITY).expect("CA");
    let server = start(agent_tls(&ca, "a")).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"PUT /desired HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(LIMIT, stream.read_to_end(&mut answer)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let ca = Authority::generate("lab", CA_VALIDITY).expect("CA");
    let server = start(agent_tls(&ca, "a")).await;
    let brain = brain(&ca);
    let a = target("a", server.addr);
    let (status, body) = brain
        .send_json(&a, "PUT", "/big", &"x".repeat(100), LIMIT)
        .await
        .expect("small");
    assert_eq!(
        (status, String::from_utf8_lossy(&body).as_ref()),
        (200, "102 bytes")
    );
    let (status, _) = brain
        .send_json(&a, "PUT", "/big", &"x".repeat(2000), LIMIT)
        .await
        .expect("large");
    assert_eq!(status, 413);
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let ca = Authority::generate("lab", CA_VALIDITY).expect("CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let files = crate::tls::AgentTlsFiles::in_dir(dir.path());
    // as the runtimes write them: a new file renamed over the old one
    let write = |names: &[String]| {
        let issued = ca
            .issue(names, Usage::Server, LEAF_VALIDITY)
            .expect("issue");
        for (path, text) in [
            (&files.ca, ca.cert_pem()),
            (&files.key, issued.key_pem.as_str()),
            (&files.cert, issued.cert_pem.as_str()),
        ] {
            crate::postgres::write_private_file(path, text.as_bytes(), None).expect("write");
        }
    };
    // first a certificate for the wrong member: the brain refuses it
    write(&[agent_name("lab", "b")]);
    let server =
        start(ServerTls::from_files(&files.ca, &files.cert, &files.key).expect("load")).await;
    let a = target("a", server.addr);
    assert!(ask(&brain(&ca), &a).await.is_err());
    // the runtime writes the right one; the next connection is served with it
    write(&[agent_name("lab", "a")]);
    assert_eq!(ask(&brain(&ca), &a).await.expect("renewed"), "brain");
}
