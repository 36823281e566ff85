//! A randomized adversary against moq-fanout, over real QUIC on loopback: for a given time,
//! several hostile connections at once each pick an attack at random (half-sent control
//! messages, slowloris streams, subscribers that never read or grant no stream credit,
//! empty-frame floods, announce floods, publishers that vanish mid-group, frames too large to
//! hold, probes for a huge target, handshakes that never finish, broadcasts that come and go
//! as fast as the link allows beside announce interests never read, subscriptions to made-up
//! track names to take every stream of a route), while a good publisher and
//! good subscribers run beside them. It checks that no connection's ledger passes its cap,
//! that the process stays under the server-wide bound, that good clients are served, and
//! that no group reaches a good subscriber as complete that was not.
//!
//! ```sh
//! cargo run --release -p moq-fanout --example adversary -- --secs 300
//! ```
//!
//! The last line prints the peak bytes per connection and the peak RSS. The default test
//! suite runs it for 20 s (`tests/adversary.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use moq_fanout::{RelayConfig, RelayServer, StaticTokens};
use moq_proto::message::{StreamType, Subscribe, SubscribeParams as WireParams};
use moq_proto::{BroadcastPath, Message, SubscribeId};
use moq_quinn::{Broadcast, Client, Config, Router, ServerTrust, Session, SubscribeParams};
use tokio::net::UdpSocket;

/// The attacks, each picked at random by every hostile connection in turn.
pub const ATTACKS: [&str; 12] = [
    "half-sent messages",
    "slowloris",
    "never-reading subscriber",
    "no stream credit",
    "empty-frame flood",
    "announce flood",
    "vanishing publisher",
    "frames too large",
    "probe for a huge target",
    "stalled handshake",
    "announce churn",
    "route grab",
];

/// What a run saw.
#[derive(Debug, Default)]
pub struct Report {
    /// The most any one connection's ledger held (its peak, sampled while it lived).
    pub peak_ledger: u64,
    /// The cap those ledgers are held to.
    pub cap: u64,
    /// Process RSS growth at its peak, in bytes.
    pub peak_rss_growth: u64,
    /// The most connections the relay had at once.
    pub peak_peers: usize,
    /// The server-wide bound for that many connections: the per-connection bound
    /// (ledger plus QUIC windows) times the connections, plus the caches.
    pub server_bound: u64,
    /// Attacks run, per kind (in [`ATTACKS`] order).
    pub attacks: [u64; ATTACKS.len()],
    /// Groups the long-lived good subscriber read whole and checked.
    pub good_groups: u64,
    /// Fresh good clients that asked to be served, and the slowest of them.
    pub served: u64,
    /// The longest a fresh good client waited for a new group.
    pub slowest_served: Duration,
    /// Fresh good clients not served within the wait.
    pub unserved: u64,
    /// Groups that reached a good subscriber as complete with frames missing or wrong.
    pub corrupt: u64,
}

/// How long a fresh good client may wait for a group before it counts as unserved.
pub const SERVE_WAIT: Duration = Duration::from_secs(10);

const GOOD_PATH: &str = "/good";
const GOOD_FRAMES: usize = 4;

fn good_frame(seq: u64, i: usize) -> Bytes {
    let mut frame = format!("{seq}:{i}:").into_bytes();
    frame.resize(1000, b'.');
    Bytes::from(frame)
}

/// Runs the adversary for `secs` seconds against a relay started here with `config`.
pub async fn run(mut config: RelayConfig, secs: u64, seed: u64, attackers: usize) -> Report {
    config.listen.quic = Some("127.0.0.1:0".parse().expect("address"));
    let access = Arc::new(StaticTokens::from_config(&config.auth));
    let relay = RelayServer::start(config.clone(), access)
        .await
        .expect("the relay starts");
    let addr = relay.quic_addr().expect("a QUIC listener");
    let url = format!("moqt://localhost:{}", addr.port());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let before = rss_bytes();

    // The good publisher: a group of four frames every 50 ms, each finished.
    let good = Client::new(ServerTrust::Insecure).expect("client");
    let broadcast = Broadcast::new();
    let track = broadcast.create_track("video", 4);
    let router = Router::new();
    router.publish(GOOD_PATH, broadcast.clone());
    let publisher = good
        .connect_with(&url, Config::default(), Some(router))
        .await
        .expect("the good publisher connects");
    let publishing = tokio::spawn(async move {
        while Instant::now() < deadline + Duration::from_secs(2) {
            let group = track.append_group();
            let seq = group.sequence().0;
            for i in 0..GOOD_FRAMES {
                group.write_frame(good_frame(seq, i));
            }
            group.finish();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(publisher);
    });
    while relay.relay().broadcasts().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let corrupt = Arc::new(AtomicU64::new(0));
    let good_groups = Arc::new(AtomicU64::new(0));
    let subscriber = tokio::spawn(good_subscriber(
        url.clone(),
        deadline,
        corrupt.clone(),
        good_groups.clone(),
    ));

    // The monitor: every connection's ledger peak, the peers and the RSS.
    let peak_ledger = Arc::new(AtomicU64::new(0));
    let peak_peers = Arc::new(AtomicUsize::new(0));
    let peak_rss = Arc::new(AtomicU64::new(before));
    let monitor = {
        let relay = relay.relay().clone();
        let (peak_ledger, peak_peers, peak_rss) =
            (peak_ledger.clone(), peak_peers.clone(), peak_rss.clone());
        tokio::spawn(async move {
            while Instant::now() < deadline + Duration::from_secs(1) {
                let stats = relay.peer_stats();
                peak_peers.fetch_max(stats.len(), Ordering::Relaxed);
                for (_, s) in &stats {
                    peak_ledger.fetch_max(s.ledger_peak_total, Ordering::Relaxed);
                }
                peak_rss.fetch_max(rss_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // The attackers.
    let counts: Arc<[AtomicU64; ATTACKS.len()]> = Arc::new(Default::default());
    let mut hostile = Vec::new();
    for n in 0..attackers {
        let (url, counts) = (url.clone(), counts.clone());
        hostile.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(n as u64));
            while Instant::now() < deadline {
                let attack = rng.usize(..ATTACKS.len());
                let hold = Duration::from_millis(rng.u64(500..3000));
                counts[attack].fetch_add(1, Ordering::Relaxed);
                let until = (Instant::now() + hold).min(deadline);
                let _ = tokio::time::timeout(
                    hold + Duration::from_secs(5),
                    attack_once(attack, &url, addr, until, &mut rng),
                )
                .await;
            }
        }));
    }

    // Fresh good clients, one a second: each must get a new group.
    let mut served = 0;
    let mut unserved = 0;
    let mut slowest = Duration::ZERO;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match tokio::time::timeout(SERVE_WAIT, fresh_good_client(&url)).await {
            Ok(Some(took)) => {
                served += 1;
                slowest = slowest.max(took);
            }
            _ => unserved += 1,
        }
    }
    for task in hostile {
        let _ = task.await;
    }
    let _ = subscriber.await;
    let _ = monitor.await;
    let _ = publishing.await;
    let limits = &config.limits;
    let per_connection =
        (limits.max_connection_bytes as u64) + limits.quic_receive_window + limits.quic_send_window;
    let peers = peak_peers.load(Ordering::Relaxed);
    let report = Report {
        peak_ledger: peak_ledger.load(Ordering::Relaxed),
        cap: limits.max_connection_bytes as u64,
        peak_rss_growth: peak_rss.load(Ordering::Relaxed).saturating_sub(before),
        peak_peers: peers,
        server_bound: per_connection * peers as u64 + config.cache.total_bytes as u64,
        attacks: std::array::from_fn(|i| counts[i].load(Ordering::Relaxed)),
        good_groups: good_groups.load(Ordering::Relaxed),
        served,
        slowest_served: slowest,
        unserved,
        corrupt: corrupt.load(Ordering::Relaxed),
    };
    relay.shutdown().await;
    report
}

/// Subscribes to the good track for the whole run and checks every group it reads to its
/// end: a group that ends cleanly has every frame, in order, intact.
async fn good_subscriber(
    url: String,
    deadline: Instant,
    corrupt: Arc<AtomicU64>,
    groups: Arc<AtomicU64>,
) {
    let Ok(client) = Client::new(ServerTrust::Insecure) else {
        return;
    };
    let Ok(session) = client.connect(&url).await else {
        return;
    };
    let Ok(mut reader) = session.subscribe(GOOD_PATH, "video", SubscribeParams::default()) else {
        return;
    };
    while Instant::now() < deadline {
        let Ok(Ok(Some(mut group))) =
            tokio::time::timeout(Duration::from_secs(2), reader.next_group()).await
        else {
            continue;
        };
        let seq = group.sequence().0;
        let mut frames = Vec::new();
        let complete = loop {
            match group.read_frame().await {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break true,
                Err(_) => break false,
            }
        };
        if complete {
            let intact = frames.len() == GOOD_FRAMES
                && frames
                    .iter()
                    .enumerate()
                    .all(|(i, f)| *f == good_frame(seq, i));
            if intact {
                groups.fetch_add(1, Ordering::Relaxed);
            } else {
                corrupt.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A new client subscribes to the good track and reads its next group whole: how long that
/// took, or `None` if it failed.
async fn fresh_good_client(url: &str) -> Option<Duration> {
    let client = Client::new(ServerTrust::Insecure).ok()?;
    let started = Instant::now();
    let session = client.connect(url).await.ok()?;
    let mut reader = session
        .subscribe(GOOD_PATH, "video", SubscribeParams::default())
        .ok()?;
    let mut group = reader.next_group().await.ok()??;
    while group.read_frame().await.ok()?.is_some() {}
    let took = started.elapsed();
    session.close(moq_quinn::code::session::NO_ERROR, "done");
    Some(took)
}

/// One attack, held until `until`.
async fn attack_once(
    attack: usize,
    url: &str,
    addr: SocketAddr,
    until: Instant,
    rng: &mut fastrand::Rng,
) {
    let hold = async {
        tokio::time::sleep_until(until.into()).await;
    };
    match attack {
        // Control messages that never fully arrive: 20 streams, each a SUBSCRIBE whose
        // length says 60 000 bytes, half of them sent.
        0 => {
            let Some(raw) = raw(addr, quinn::TransportConfig::default()).await else {
                return;
            };
            let mut head = vec![StreamType::Subscribe.to_byte()];
            head.extend_from_slice(&[0x80, 0x00, 0xea, 0x60]);
            head.extend(std::iter::repeat_n(0u8, 30_000));
            let mut streams = Vec::new();
            for _ in 0..20 {
                if let Ok((mut send, recv)) = raw.conn.open_bi().await {
                    let _ = send.write_all(&head).await;
                    streams.push((send, recv));
                }
            }
            hold.await;
        }
        // Streams that trickle a byte at a time.
        1 => {
            let Some(raw) = raw(addr, quinn::TransportConfig::default()).await else {
                return;
            };
            let mut streams = Vec::new();
            for _ in 0..10 {
                if let Ok((send, recv)) = raw.conn.open_bi().await {
                    streams.push((send, recv));
                }
            }
            while Instant::now() < until {
                for (send, _) in &mut streams {
                    let _ = send.write_all(&[StreamType::Subscribe.to_byte()]).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // Subscribes and never reads: small windows, no stream credit.
        2 | 3 => {
            let mut transport = quinn::TransportConfig::default();
            transport.stream_receive_window(quinn::VarInt::from_u32(16 * 1024));
            transport.receive_window(quinn::VarInt::from_u32(64 * 1024));
            if attack == 3 {
                transport.max_concurrent_uni_streams(0u32.into());
            }
            let Some(raw) = raw(addr, transport).await else {
                return;
            };
            let mut streams = Vec::new();
            for (id, path) in [(1, GOOD_PATH), (2, "/flood/empty"), (3, "/flood/big")] {
                if let Ok((mut send, recv)) = raw.conn.open_bi().await {
                    let _ = send.write_all(&subscribe(id, path)).await;
                    streams.push((send, recv));
                }
            }
            hold.await;
        }
        // A publisher floods empty frames into one group while a client subscribes.
        4 => {
            let Some((_client, session, track)) = publisher(url, "/flood/empty", false).await
            else {
                return;
            };
            let watcher = watcher(url, "/flood/empty").await;
            let group = track.append_group();
            let mut n = 0;
            while Instant::now() < until && n < 300_000 {
                group.write_frame(Bytes::new());
                n += 1;
                if n % 1000 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            drop((group, watcher, session));
        }
        // A publisher announces many broadcasts with long paths.
        5 => {
            let client = Client::new(ServerTrust::Insecure).ok();
            let router = Router::new();
            let salt = rng.u64(..);
            for i in 0..200 {
                let mut path = format!("/flood/announce/{salt}/{i}/");
                path.push_str(&"x".repeat(3000));
                router.publish(path.as_str(), Broadcast::new());
            }
            let session = match &client {
                Some(c) => c
                    .connect_with(url, Config::default(), Some(router))
                    .await
                    .ok(),
                None => None,
            };
            hold.await;
            drop(session);
        }
        // A publisher that vanishes in the middle of a group.
        6 => {
            let Some((client, session, track)) = publisher(url, "/flood/vanish", false).await
            else {
                return;
            };
            let watcher = watcher(url, "/flood/vanish").await;
            let group = track.append_group();
            group.write_frame(Bytes::from_static(b"half"));
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Gone without a word: the endpoint goes with its connection.
            drop((session, client));
            hold.await;
            drop((group, watcher));
        }
        // Frames too large to hold, never finished.
        7 => {
            let Some((_client, session, track)) = publisher(url, "/flood/big", true).await else {
                return;
            };
            let watcher = watcher(url, "/flood/big").await;
            let frame = Bytes::from(vec![0x5a; 12 * 1024 * 1024]);
            let mut groups = Vec::new();
            for _ in 0..4 {
                let group = track.append_group();
                group.write_frame(frame.clone());
                groups.push(group);
            }
            hold.await;
            drop((groups, watcher, session));
        }
        // A probe for a terabit.
        8 => {
            let Ok(client) = Client::new(ServerTrust::Insecure) else {
                return;
            };
            let Ok(session) = client.connect(url).await else {
                return;
            };
            let probe = session.probe(1 << 40);
            hold.await;
            drop((probe, session));
        }
        // Broadcasts that come and go as fast as they can, and an announce interest that
        // is never read.
        10 => {
            let Ok(client) = Client::new(ServerTrust::Insecure) else {
                return;
            };
            let router = Router::new();
            let Ok(session) = client
                .connect_with(url, Config::default(), Some(router.clone()))
                .await
            else {
                return;
            };
            let mut transport = quinn::TransportConfig::default();
            transport.stream_receive_window(quinn::VarInt::from_u32(4096));
            let idle = raw(addr, transport).await;
            let mut interest = None;
            if let Some(idle) = &idle
                && let Ok((mut send, recv)) = idle.conn.open_bi().await
            {
                let mut msg = BytesMut::new();
                msg.put_u8(StreamType::Announce.to_byte());
                let _ = moq_proto::message::AnnounceInterest {
                    prefix: moq_proto::PathPrefix::root(),
                    exclude_hop: moq_proto::HopId(0),
                }
                .encode(&mut msg);
                let _ = send.write_all(&msg).await;
                interest = Some((send, recv));
            }
            let salt = rng.u64(..);
            let paths: Vec<BroadcastPath> = (0..8)
                .map(|i| {
                    let mut path = format!("/flood/churn/{salt}/{i}/");
                    path.push_str(&"x".repeat(1000));
                    BroadcastPath::new(&path)
                })
                .collect();
            let mut n = 0u64;
            while Instant::now() < until && n < 1_000_000 {
                let path = &paths[n as usize % paths.len()];
                router.publish(path.clone(), Broadcast::new());
                router.unpublish(path);
                n += 1;
                if n.is_multiple_of(100) {
                    tokio::task::yield_now().await;
                }
            }
            drop((interest, idle, session));
        }
        // Subscriptions to made-up track names of the good broadcast, again and again: each
        // would take a stream of its route.
        11 => {
            let Ok(client) = Client::new(ServerTrust::Insecure) else {
                return;
            };
            let Ok(session) = client.connect(url).await else {
                return;
            };
            let salt = rng.u64(..);
            let mut round = 0u64;
            while Instant::now() < until && round < 10_000 {
                let readers: Vec<_> = (0..100)
                    .filter_map(|i| {
                        let name = format!("grab-{salt}-{round}-{i}");
                        session
                            .subscribe(GOOD_PATH, &name, SubscribeParams::default())
                            .ok()
                    })
                    .collect();
                tokio::time::sleep(Duration::from_millis(200)).await;
                drop(readers);
                round += 1;
            }
        }
        // Handshakes that never finish: the server's answers go nowhere.
        _ => {
            let Ok(socket) = UdpSocket::bind("127.0.0.1:0").await else {
                return;
            };
            let Ok(hole) = socket.local_addr() else {
                return;
            };
            let forward = tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                    if from != addr {
                        let _ = socket.send_to(&buf[..n], addr).await;
                    }
                }
            });
            let mut endpoints = Vec::new();
            for _ in 0..5 {
                if let Some(endpoint) = raw_endpoint(quinn::TransportConfig::default())
                    && let Ok(connecting) = endpoint.connect(hole, "localhost")
                {
                    tokio::spawn(async move {
                        let _ = connecting.await;
                    });
                    endpoints.push(endpoint);
                }
            }
            hold.await;
            forward.abort();
        }
    }
}

/// A SUBSCRIBE stream's opening bytes.
fn subscribe(id: u64, path: &str) -> Vec<u8> {
    let mut msg = BytesMut::new();
    msg.put_u8(StreamType::Subscribe.to_byte());
    let _ = Subscribe {
        id: SubscribeId(id),
        path: BroadcastPath::new(path),
        track: "video".into(),
        params: WireParams::default(),
    }
    .encode(&mut msg);
    msg.to_vec()
}

/// A publisher of `path` ("video"), with room to queue when `roomy`.
async fn publisher(
    url: &str,
    path: &str,
    roomy: bool,
) -> Option<(Client, Session, moq_quinn::TrackProducer)> {
    let client = Client::new(ServerTrust::Insecure).ok()?;
    let broadcast = Broadcast::new();
    let track = broadcast.create_track("video", 1);
    let router = Router::new();
    router.publish(path, broadcast.clone());
    let mut config = Config::default();
    if roomy {
        config.max_connection_bytes = 256 * 1024 * 1024;
        config.max_queued_bytes = 256 * 1024 * 1024;
        config.max_queued_bytes_per_subscription = 256 * 1024 * 1024;
    }
    let session = client.connect_with(url, config, Some(router)).await.ok()?;
    // The relay subscribes once it knows the broadcast.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Some((client, session, track))
}

/// A client subscribed to `path` ("video") that reads nothing, so that the relay pulls
/// the track.
async fn watcher(url: &str, path: &str) -> Option<(Client, Session, moq_quinn::TrackReader)> {
    let client = Client::new(ServerTrust::Insecure).ok()?;
    let session = client.connect(url).await.ok()?;
    let reader = session
        .subscribe(path, "video", SubscribeParams::default())
        .ok()?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Some((client, session, reader))
}

/// A raw QUIC connection speaking moq-lite-04 by hand.
struct Raw {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

fn raw_endpoint(transport: quinn::TransportConfig) -> Option<quinn::Endpoint> {
    let crypto =
        moq_quinn::transport::tls::client_crypto(&ServerTrust::Insecure, b"moq-lite-04").ok()?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().ok()?).ok()?;
    endpoint.set_default_client_config(config);
    Some(endpoint)
}

async fn raw(addr: SocketAddr, transport: quinn::TransportConfig) -> Option<Raw> {
    let endpoint = raw_endpoint(transport)?;
    let conn = endpoint.connect(addr, "localhost").ok()?.await.ok()?;
    Some(Raw {
        _endpoint: endpoint,
        conn,
    })
}

/// This process's resident memory, in bytes (Linux; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The run's summary, the last line giving the figures asked for.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    for (name, n) in ATTACKS.iter().zip(report.attacks) {
        out.push_str(&format!("attack {name}: {n}\n"));
    }
    out.push_str(&format!(
        "good subscriber: {} groups whole and checked, {} corrupt; fresh good clients: {} \
         served (slowest {:?}), {} unserved\n",
        report.good_groups, report.corrupt, report.served, report.slowest_served, report.unserved
    ));
    out.push_str(&format!(
        "peak bytes per connection {} (cap {}); peak RSS growth {} bytes with {} connections \
         at most (server-wide bound {})",
        report.peak_ledger,
        report.cap,
        report.peak_rss_growth,
        report.peak_peers,
        report.server_bound
    ));
    out
}

#[allow(dead_code)]
#[tokio::main]
async fn main() {
    use clap::Parser;

    /// The adversary's options.
    #[derive(Parser)]
    struct Args {
        /// How long to attack, in seconds.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// The random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Hostile connections at once.
        #[arg(long, default_value_t = 6)]
        attackers: usize,
    }
    let args = Args::parse();
    let report = run(RelayConfig::default(), args.secs, args.seed, args.attackers).await;
    println!("{}", summary(&report));
}
