//! Shared harness for the end-to-end tests: a connected pair of sessions over a real
//! transport on loopback, and one scenario suite that runs on every transport.

pub mod browser;
pub mod moq_rs;
pub mod scenarios;

/// Expands to one `#[tokio::test]` per scenario of [`scenarios`], run over the given
/// [`Transport`]: every transport runs the same list.
#[macro_export]
macro_rules! scenario_suite {
    ($transport:ty) => {
        $crate::scenario_suite!(
            $transport;
            announce_discovery,
            subscribe_server_to_client,
            subscribe_client_to_server,
            update_and_drop,
            subscribe_not_found,
            fetch,
            probe,
            goaway,
            goaway_timeout,
            close_with_code,
            many_subscriptions,
            large_frame,
            a_frame_past_the_ledger_is_shed,
            peer_vanishes,
            slow_subscriber,
            unread_budget_never_blocks_the_group_being_read,
            untaken_groups_go_with_their_track_reader,
            read_groups_leave_nothing_behind,
            group_cancel_reaches_publisher,
            held_group_reader_ends_on_unsubscribe,
            blocked_group_reader_ends_on_unsubscribe,
            dropped_writers_never_look_complete,
            opens_past_the_stream_limit_wait_for_credit,
            subscriptions_continue_through_goaway_and_resume_elsewhere,
        );
    };
    ($transport:ty; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::scenarios::$name::<$transport>().await;
            }
        )*
    };
}

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use moq_quinn::{Client, Config, Identity, QuicOptions, Router, Server, ServerTrust, Session};

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `f` for at most [`WAIT`], panicking with `what` on timeout.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Knobs for a pair.
///
/// `quic` applies to every transport: the WebTransport pair takes its idle timeout,
/// keep-alive and stream limit too.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The server's session config.
    pub server: Config,
    /// The client's session config.
    pub client: Config,
    /// QUIC options for both ends.
    pub quic: QuicOptions,
    /// Connect the client through a UDP relay that a test can cut.
    pub via_relay: bool,
}

/// A connected client and server, each with a router for what it publishes.
pub struct Pair {
    /// The server's session.
    pub server: Session,
    /// The client's session.
    pub client: Session,
    /// What the server publishes.
    pub server_router: Router,
    /// What the client publishes.
    pub client_router: Router,
    /// Set to cut the UDP relay between them (with [`Options::via_relay`]): from then
    /// on no packet passes either way.
    pub cut: Option<Arc<AtomicBool>>,
    _keep: Vec<Box<dyn std::any::Any + Send>>,
}

/// A transport the scenario suite runs over.
pub trait Transport {
    /// Connects a pair on loopback.
    fn connect(options: Options) -> impl Future<Output = Pair> + Send;
}

/// Native QUIC with quinn.
pub struct Quic;

impl Transport for Quic {
    async fn connect(options: Options) -> Pair {
        let identity = Identity::self_signed(&["localhost"]).expect("certificate");
        let cert = identity.leaf().cloned().expect("leaf");
        let server_router = Router::new();
        let server = Server::builder("127.0.0.1:0".parse().expect("addr"), identity)
            .config(options.server.clone())
            .router(server_router.clone())
            .options(options.quic.clone())
            .bind()
            .expect("bind");
        let server_addr = server.local_addr().expect("local addr");
        let (target, cut) = if options.via_relay {
            let (addr, cut) = udp_relay(server_addr).await;
            (addr, Some(cut))
        } else {
            (server_addr, None)
        };
        let accept = tokio::spawn(async move {
            let session = server.accept().await.expect("incoming").expect("handshake");
            (server, session)
        });
        let client_router = Router::new();
        let client = Client::builder()
            .bind("127.0.0.1:0".parse().expect("addr"))
            .trust(ServerTrust::Pinned(cert))
            .options(options.quic.clone())
            .config(options.client.clone())
            .router(client_router.clone())
            .build()
            .expect("client");
        let url = format!("moqt://localhost:{}", target.port());
        let client_session = within("connect", client.connect(&url))
            .await
            .expect("connect");
        let (server, server_session) = within("accept", accept).await.expect("accept task");
        Pair {
            server: server_session,
            client: client_session,
            server_router,
            client_router,
            cut,
            _keep: vec![Box::new(server), Box::new(client)],
        }
    }
}

/// WebTransport with wtransport: the same pair over HTTP/3 (`https://localhost:PORT/moq`).
pub struct WebTransport;

impl Transport for WebTransport {
    async fn connect(options: Options) -> Pair {
        let identity =
            moq_webtransport::Identity::self_signed(&["localhost"]).expect("certificate");
        let cert = identity.leaf().cloned().expect("leaf");
        let wt = options.quic.clone();
        let server_router = Router::new();
        let server =
            moq_webtransport::Server::builder("127.0.0.1:0".parse().expect("addr"), identity)
                .config(options.server.clone())
                .router(server_router.clone())
                .options(wt.clone())
                .bind()
                .expect("bind");
        let server_addr = server.local_addr().expect("local addr");
        let (target, cut) = if options.via_relay {
            let (addr, cut) = udp_relay(server_addr).await;
            (addr, Some(cut))
        } else {
            (server_addr, None)
        };
        let accept = tokio::spawn(async move {
            let session = server.accept().await.expect("incoming").expect("handshake");
            (server, session)
        });
        let client_router = Router::new();
        let client = moq_webtransport::Client::builder()
            .bind("127.0.0.1:0".parse().expect("addr"))
            .trust(moq_webtransport::ServerTrust::Pinned(cert))
            .options(wt)
            .config(options.client.clone())
            .router(client_router.clone())
            .build()
            .expect("client");
        let url = format!("https://localhost:{}/moq", target.port());
        let client_session = within("connect", client.connect(&url))
            .await
            .expect("connect");
        let (server, server_session) = within("accept", accept).await.expect("accept task");
        Pair {
            server: server_session,
            client: client_session,
            server_router,
            client_router,
            cut,
            _keep: vec![Box::new(server), Box::new(client)],
        }
    }
}

/// A UDP relay on loopback between a client and `server`; setting the returned flag cuts
/// it (packets stop in both directions, as if the peer vanished).
pub async fn udp_relay(server: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let front = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind relay");
    let back = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind relay");
    back.connect(server).await.expect("connect relay");
    let addr = front.local_addr().expect("relay addr");
    let cut = Arc::new(AtomicBool::new(false));
    let flag = cut.clone();
    tokio::spawn(async move {
        let mut client: Option<SocketAddr> = None;
        let mut a = vec![0u8; 65536];
        let mut b = vec![0u8; 65536];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while tokio::time::Instant::now() < deadline {
            tokio::select! {
                r = front.recv_from(&mut a) => {
                    let Ok((n, from)) = r else { return };
                    client = Some(from);
                    if !flag.load(Ordering::SeqCst) {
                        let _ = back.send(&a[..n]).await;
                    }
                }
                r = back.recv(&mut b) => {
                    let Ok(n) = r else { return };
                    if let Some(c) = client.filter(|_| !flag.load(Ordering::SeqCst)) {
                        let _ = front.send_to(&b[..n], c).await;
                    }
                }
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    (addr, cut)
}

pub use browser::chromium;
