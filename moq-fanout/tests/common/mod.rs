//! Shared by the relay tests: relays on loopback, publishers and subscribers of ours, and
//! bounded waits.

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod moq_relay;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_fanout::{RelayConfig, RelayServer, StaticTokens};
use moq_quinn::{
    Announcement, Announcements, Broadcast, BroadcastPath, Client, Config, GroupReader,
    GroupSequence, Router, ServerTrust, Session, SubscribeParams, TrackProducer, TrackReader,
};

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `f` for at most [`WAIT`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Polls `cond` every 10 ms until it holds, for at most [`WAIT`].
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// Waits until the relay has learnt `count` broadcasts (a subscription that arrives before
/// the announcement is refused as not found).
pub async fn known(relay: &RelayServer, count: usize) {
    until("the relay learns the broadcasts", || {
        relay.relay().broadcasts().len() >= count
    })
    .await
}

/// A relay configuration listening on an ephemeral loopback port.
pub fn config() -> RelayConfig {
    let mut config = RelayConfig::default();
    config.listen.quic = Some("127.0.0.1:0".parse().unwrap());
    config.relay.drain_timeout_ms = 1000;
    config.relay.reconnect_ms = 50;
    config
}

/// Starts a relay with the static-token policy of its configuration.
pub async fn relay(config: RelayConfig) -> RelayServer {
    let access = Arc::new(StaticTokens::from_config(&config.auth));
    RelayServer::start(config, access)
        .await
        .expect("relay starts")
}

/// The relay's native QUIC URL.
pub fn url(relay: &RelayServer) -> String {
    format!("moqt://localhost:{}", relay.quic_addr().unwrap().port())
}

/// A client endpoint that trusts any certificate (the relays' are self-signed).
/// The relay's WebTransport URL.
pub fn wt_url(relay: &RelayServer) -> String {
    format!(
        "https://localhost:{}/",
        relay.webtransport_addr().unwrap().port()
    )
}

/// A WebTransport session to the relay (its self-signed certificate accepted).
pub async fn wt_connect(relay: &RelayServer) -> Session {
    let client = moq_webtransport::Client::new(moq_webtransport::ServerTrust::Insecure).unwrap();
    within("WebTransport connect", client.connect(&wt_url(relay)))
        .await
        .unwrap()
}

pub fn client() -> Client {
    Client::new(ServerTrust::Insecure).expect("client endpoint")
}

pub async fn connect(client: &Client, url: &str, router: Option<Router>) -> Session {
    within(
        "connect",
        client.connect_with(url, Config::default(), router),
    )
    .await
    .expect("connect")
}

/// A publisher of ours: one broadcast with the given tracks, each keeping `cache` groups.
pub struct Publisher {
    pub session: Session,
    pub tracks: Vec<TrackProducer>,
    pub broadcast: Broadcast,
    pub router: Router,
}

pub async fn publisher(
    client: &Client,
    url: &str,
    path: &str,
    tracks: &[&str],
    cache: usize,
) -> Publisher {
    let broadcast = Broadcast::new();
    let producers = tracks
        .iter()
        .map(|t| broadcast.create_track(t, cache))
        .collect();
    let router = Router::new();
    router.publish(path, broadcast.clone());
    let session = connect(client, url, Some(router.clone())).await;
    Publisher {
        session,
        tracks: producers,
        broadcast,
        router,
    }
}

/// `g<group>f<frame>` padded with `x` to `size` bytes.
pub fn payload(group: u64, frame: usize, size: usize) -> Bytes {
    let mut v = format!("g{group}f{frame}").into_bytes();
    v.resize(size.max(v.len()), b'x');
    Bytes::from(v)
}

/// Writes one whole group of `frames` frames of `size` bytes; returns its sequence.
pub fn write_group(track: &TrackProducer, frames: usize, size: usize) -> u64 {
    let group = track.append_group();
    let seq = group.sequence().0;
    for f in 0..frames {
        group.write_frame(payload(seq, f, size));
    }
    group.finish();
    seq
}

/// Waits until `path` is announced on `announcements`; returns it.
pub async fn announced(announcements: &mut Announcements, path: &str) -> Announcement {
    let path = BroadcastPath::new(path);
    within(&format!("announcement of {path}"), async {
        loop {
            let a = announcements.next().await.expect("announce stream open");
            if a.path() == &path {
                return a;
            }
        }
    })
    .await
}

/// Listens under `/` as an edge and waits for `path`.
pub async fn discover(session: &Session, path: &str) -> (Announcements, Announcement) {
    let mut announcements = session.announced("/").expect("announce interest");
    let a = announced(&mut announcements, path).await;
    (announcements, a)
}

/// Subscription parameters: oldest first, no latency limit.
pub fn ordered() -> SubscribeParams {
    SubscribeParams {
        ordered: true,
        ..SubscribeParams::default()
    }
}

/// Waits for the subscription's SUBSCRIBE_OK.
pub async fn accepted(reader: &TrackReader) {
    until("SUBSCRIBE_OK", || reader.publisher_params().is_some()).await
}

pub async fn read_all(group: &mut GroupReader) -> Vec<Bytes> {
    within("a whole group", group.read_all())
        .await
        .expect("the group completes")
}

/// Reads `count` whole groups; returns them sorted by sequence.
pub async fn read_groups(reader: &mut TrackReader, count: usize) -> Vec<(u64, Vec<Bytes>)> {
    let mut groups = Vec::new();
    for _ in 0..count {
        let mut group = within("a group", reader.next_group())
            .await
            .expect("the subscription works")
            .expect("the track goes on");
        let frames = read_all(&mut group).await;
        groups.push((group.sequence().0, frames));
    }
    groups.sort_by_key(|(s, _)| *s);
    groups
}

/// The groups `first..first+count` of `frames` frames of `size` bytes, as published.
pub fn expected(first: u64, count: u64, frames: usize, size: usize) -> Vec<(u64, Vec<Bytes>)> {
    (first..first + count)
        .map(|g| (g, (0..frames).map(|f| payload(g, f, size)).collect()))
        .collect()
}

/// A broadcast's sequence as a [`GroupSequence`].
pub fn seq(n: u64) -> GroupSequence {
    GroupSequence(n)
}

/// Resident memory of this process, in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Milliseconds since `start`.
pub fn ms(start: Instant) -> u128 {
    start.elapsed().as_millis()
}

/// A raw QUIC connection to the relay, to speak moq-lite-04 by hand.
pub async fn raw_connection(
    addr: std::net::SocketAddr,
    transport: quinn::TransportConfig,
) -> (quinn::Endpoint, quinn::Connection) {
    let crypto =
        moq_quinn::transport::tls::client_crypto(&ServerTrust::Insecure, b"moq-lite-04").unwrap();
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    let conn = within("raw connect", endpoint.connect(addr, "localhost").unwrap())
        .await
        .expect("raw connection");
    (endpoint, conn)
}
