//! Connection attempts a server cannot be held up by: a QUIC handshake that never finishes
//! and a WebTransport client that never sends its CONNECT each delay no other client's
//! accept, are dropped at the handshake deadline, and are capped in number (past a mark,
//! clients must first prove their address with a QUIC Retry). Through the library's own
//! `Server::accept`, over both transports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use moq_quinn::{Identity, QuicOptions, ServerTrust, transport::HandshakeLimits};
use moq_tests::{WAIT, within};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// A path that carries a client's packets to `server` and none back: whatever the client
/// starts there never completes. Returns the address to dial instead of the server's.
async fn black_hole(server: SocketAddr) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        // Bounded: the test's runtime ends it.
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            if from != server {
                let _ = socket.send_to(&buf[..n], server).await;
            }
        }
    });
    addr
}

/// A raw quinn client offering `alpn`, trusting anything.
fn raw_client(alpn: &[u8]) -> quinn::Endpoint {
    let crypto = moq_quinn::transport::tls::client_crypto(&ServerTrust::Insecure, alpn).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

/// Starts a QUIC handshake to `server` through a black hole: it never finishes. The
/// endpoint keeps the attempt alive while it is held.
async fn stalled_handshake(server: SocketAddr, alpn: &[u8]) -> quinn::Endpoint {
    let endpoint = raw_client(alpn);
    let connecting = endpoint
        .connect(black_hole(server).await, "localhost")
        .unwrap();
    tokio::spawn(async move {
        let _ = connecting.await;
    });
    endpoint
}

fn options(limits: HandshakeLimits) -> QuicOptions {
    let mut options = QuicOptions::default();
    options.handshake = limits;
    options
}

fn limits(max_in_flight: usize, retry_above: usize, timeout: Duration) -> HandshakeLimits {
    let mut limits = HandshakeLimits::default();
    limits.max_in_flight = max_in_flight;
    limits.retry_above = retry_above;
    limits.timeout = timeout;
    limits
}

/// An accepted session (kept open by whoever holds it), or why the attempt failed.
type Accepted = Result<moq_quinn::Session, String>;

/// Runs `accept` in a loop, passing on each result.
fn accept_loop<F, Fut>(accept: F) -> mpsc::UnboundedReceiver<Accepted>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<Accepted>> + Send,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(result) = accept().await {
            if tx.send(result).is_err() {
                return;
            }
        }
    });
    rx
}

fn quic_server(limits: HandshakeLimits) -> (Arc<moq_quinn::Server>, SocketAddr, Identity) {
    let identity = Identity::self_signed(&["localhost"]).unwrap();
    let server = moq_quinn::Server::builder("127.0.0.1:0".parse().unwrap(), identity.clone())
        .options(options(limits))
        .bind()
        .unwrap();
    let addr = server.local_addr().unwrap();
    (Arc::new(server), addr, identity)
}

fn quic_accepts(server: &Arc<moq_quinn::Server>) -> mpsc::UnboundedReceiver<Accepted> {
    let server = server.clone();
    accept_loop(move || {
        let server = server.clone();
        async move {
            let result = server.accept().await?;
            Some(result.map_err(|e| e.to_string()))
        }
    })
}

async fn good_quic_client(addr: SocketAddr) {
    let client = moq_quinn::Client::new(ServerTrust::Insecure).unwrap();
    let url = format!("moqt://localhost:{}", addr.port());
    within("a good client's connect", client.connect(&url))
        .await
        .expect("a good client connects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_quic_handshake_delays_no_other_accept() {
    // A deadline longer than the test: the stall itself is what must not matter.
    let (server, addr, _) = quic_server(limits(256, 256, Duration::from_secs(120)));
    let mut accepted = quic_accepts(&server);
    let _stalled = stalled_handshake(addr, b"moq-lite-04").await;
    within("the stalled attempt in flight", async {
        while server.handshake_stats().in_flight == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    good_quic_client(addr).await;
    let first = within("the good client's session from accept", accepted.recv())
        .await
        .expect("accept loop alive");
    assert!(first.is_ok(), "{first:?}");
    assert_eq!(
        server.handshake_stats().in_flight,
        1,
        "the stalled one is still in flight"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_in_flight_are_capped() {
    const CAP: usize = 4;
    let (server, addr, _) = quic_server(limits(CAP, CAP, Duration::from_secs(120)));
    let _accepted = quic_accepts(&server);
    let mut stalled = Vec::new();
    for _ in 0..2 * CAP {
        stalled.push(stalled_handshake(addr, b"moq-lite-04").await);
    }
    within("the attempts past the cap refused", async {
        while server.handshake_stats().refused < CAP as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let stats = server.handshake_stats();
    println!("{} attempts: {stats:?}", 2 * CAP);
    assert_eq!(stats.in_flight, CAP);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_retry_mark_unvalidated_attempts_hold_nothing_and_good_clients_connect() {
    let (server, addr, _) = quic_server(limits(4, 1, Duration::from_secs(120)));
    let mut accepted = quic_accepts(&server);
    let mut stalled = vec![stalled_handshake(addr, b"moq-lite-04").await];
    within("the first attempt in flight", async {
        while server.handshake_stats().in_flight == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Past the mark, attempts from addresses that never answer a Retry cost no place.
    for _ in 0..8 {
        stalled.push(stalled_handshake(addr, b"moq-lite-04").await);
    }
    within("every later attempt asked to retry", async {
        while server.handshake_stats().retried < 8 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(server.handshake_stats().in_flight, 1);
    // A real client answers the Retry and gets in.
    good_quic_client(addr).await;
    let session = within("the good client's session", accepted.recv()).await;
    assert!(session.is_some_and(|s| s.is_ok()));
    let stats = server.handshake_stats();
    println!("{stats:?}");
    assert!(stats.retried >= 9, "{stats:?}");
    assert_eq!(stats.refused, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webtransport_client_that_never_sends_connect_delays_no_other_and_is_dropped() {
    let timeout = Duration::from_secs(1);
    let identity = Identity::self_signed(&["localhost"]).unwrap();
    let server = Arc::new(
        moq_webtransport::Server::builder("127.0.0.1:0".parse().unwrap(), identity)
            .options(options(limits(256, 256, timeout)))
            .bind()
            .unwrap(),
    );
    let addr = server.local_addr().unwrap();
    let accepts = server.clone();
    let mut accepted = accept_loop(move || {
        let server = accepts.clone();
        async move {
            let result = server.accept().await?;
            Some(result.map_err(|e| e.to_string()))
        }
    });

    // QUIC completes (ALPN h3), then nothing: no SETTINGS, no CONNECT.
    let silent = raw_client(b"h3");
    let conn = within("the silent client's QUIC handshake", async {
        silent.connect(addr, "localhost").unwrap().await
    })
    .await
    .expect("QUIC completes");

    // A good WebTransport client is served meanwhile.
    let client = moq_webtransport::Client::new(ServerTrust::Insecure).unwrap();
    let url = format!("https://localhost:{}/", addr.port());
    let started = tokio::time::Instant::now();
    within("a good client's connect", client.connect(&url))
        .await
        .expect("a good client connects");
    // Each accept result in the order the handshakes ended: the good one first (unless the
    // machine was slower than the deadline), and the silent one at its deadline.
    let mut results = Vec::new();
    for _ in 0..2 {
        results.push(
            within("accept results", accepted.recv())
                .await
                .expect("accept loop alive"),
        );
    }
    println!("accept results after {:?}: {results:?}", started.elapsed());
    assert!(results.iter().any(Result::is_ok), "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| r.as_ref().is_err_and(|e| e.contains("did not complete"))),
        "{results:?}"
    );
    assert_eq!(server.handshake_stats().timed_out, 1);
    // And its connection is closed.
    within("the silent client's connection closed", conn.closed()).await;
    assert!(WAIT > timeout);
}
