//! Fan-out over real QUIC on loopback: one track to N subscribers on N connections, against
//! the same bytes pushed over plain quinn streams, plus frame latency and memory.
//!
//! `cargo bench -p moq-quinn --bench fanout` prints, for N = 1, 4, 16, 64: aggregate MB/s
//! (moq and plain quinn, and their ratio), the spread between the fastest and slowest
//! subscriber, p50/p99 latency of timestamped 1 KiB frames, and peak memory per connection.
//! The moq subscribers read contiguous frames (`GroupReader::read_frame`, one copy per frame
//! spanning packets); `FANOUT_ONLY=payload` measures them reading in place instead
//! (`read_payload`, the pieces QUIC delivered).
//!
//! Throughput figures are medians of `FANOUT_REPS` runs per side (default 3), the sides
//! alternating. Knobs, for profiling and experiments: `FANOUT_N=1,4` (only those N), `FANOUT_ONLY=moq`,
//! `payload` or `quinn` (one throughput side only), `FANOUT_ORDERED=1` (subscribers ask for oldest
//! groups first), `FANOUT_UNREAD=<bytes>` and `FANOUT_WINDOW=<bytes>` (the subscriber's
//! `max_unread_bytes`, the publisher's `stream_send_window`), `FANOUT_GROUPS=<n>` (groups
//! per subscriber).

#![allow(clippy::disallowed_methods, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use moq_quinn::{
    Broadcast, Client, Config, Identity, Router, Server, ServerTrust, SubscribeParams,
};

const FRAME: usize = 16 * 1024;
const FRAMES_PER_GROUP: usize = 256;
/// Groups per subscriber: `FANOUT_GROUPS`, else at least 4 and 1 GiB per run in total.
fn groups(n: usize) -> usize {
    if let Some(g) = std::env::var("FANOUT_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return g;
    }
    (256 / n).max(4)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn current_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Timeouts long enough for a run under valgrind.
const SLOW_MACHINE: Duration = Duration::from_secs(600);

fn config() -> Config {
    let mut c = Config::default();
    // Throughput run: never drop, measure what the transport delivers (the 1 GiB of a run
    // is written at once, so it must fit the per-subscription and the session budgets).
    c.max_queued_bytes_per_subscription = 1 << 30;
    c.max_queued_bytes = 1 << 31;
    c.max_connection_bytes = 1 << 31;
    // Under valgrind (the instruction counts below) everything runs about 50 times slower:
    // the timeouts that guard against stalled peers must not fire on a slow machine.
    c.frame_stall_timeout = SLOW_MACHINE;
    c.incomplete_message_timeout = SLOW_MACHINE;
    if let Some(w) = std::env::var("FANOUT_UNREAD")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        c.max_unread_bytes = w;
    }
    if let Some(w) = std::env::var("FANOUT_WINDOW")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        c.stream_send_window = w;
    }
    c
}

struct Setup {
    server: Arc<Server>,
    url: String,
    cert: moq_quinn::transport::CertificateDer<'static>,
    router: Router,
}

fn setup() -> Setup {
    let identity = Identity::self_signed(&["localhost"]).expect("cert");
    let cert = identity.leaf().cloned().expect("leaf");
    let router = Router::new();
    let mut options = moq_quinn::QuicOptions::default();
    options.handshake.timeout = SLOW_MACHINE;
    let server = Server::builder("127.0.0.1:0".parse().expect("addr"), identity)
        .config(config())
        .router(router.clone())
        .options(options)
        .bind()
        .expect("bind");
    let url = format!(
        "moqt://localhost:{}",
        server.local_addr().expect("addr").port()
    );
    let server = Arc::new(server);
    let accept = server.clone();
    tokio::spawn(async move {
        let mut sessions = Vec::new();
        while let Some(Ok(s)) = accept.accept().await {
            sessions.push(s);
        }
    });
    Setup {
        server,
        url,
        cert,
        router,
    }
}

/// MOQ: returns (aggregate MB/s, fastest/slowest subscriber seconds, peak KiB per
/// connection). Subscribers read contiguous frames (`read_frame`) or, with `in_place`, the
/// pieces QUIC delivered (`read_payload`).
async fn moq_throughput(n: usize, in_place: bool) -> (f64, f64, f64, u64) {
    let groups_n = groups(n);
    let setup = setup();
    let broadcast = Broadcast::new();
    let track = broadcast.create_track("data", 1);
    setup
        .router
        .publish(format!("/bench/{n}").as_str(), broadcast);
    let rss_before = current_rss_kib();
    let mut sessions = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..n {
        let client = Client::new(ServerTrust::Pinned(setup.cert.clone())).expect("client");
        let session = client
            .connect_with(&setup.url, config(), None)
            .await
            .expect("connect");
        let reader = session
            .subscribe(
                format!("/bench/{n}").as_str(),
                "data",
                SubscribeParams {
                    ordered: std::env::var("FANOUT_ORDERED").is_ok(),
                    ..SubscribeParams::default()
                },
            )
            .expect("subscribe");
        sessions.push((client, session));
        readers.push(reader);
    }
    while track.subscriber_count() < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let payload = Bytes::from(vec![0xabu8; FRAME]);
    let start = Instant::now();
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut reader| {
            tokio::spawn(async move {
                // Groups arrive concurrently: each is read by its own task, as a MOQ
                // subscriber does.
                let mut groups = tokio::task::JoinSet::new();
                while groups.len() < groups_n {
                    let Ok(Some(mut g)) = reader.next_group().await else {
                        break;
                    };
                    groups.spawn(async move {
                        let mut bytes = 0usize;
                        if in_place {
                            while let Ok(Some(f)) = g.read_payload().await {
                                bytes += f.len();
                            }
                        } else {
                            while let Ok(Some(f)) = g.read_frame().await {
                                bytes += f.len();
                            }
                        }
                        bytes
                    });
                }
                let bytes: usize = groups.join_all().await.into_iter().sum();
                (bytes, start.elapsed())
            })
        })
        .collect();
    for _ in 0..groups_n {
        let g = track.append_group();
        for _ in 0..FRAMES_PER_GROUP {
            g.write_frame(payload.clone());
        }
        g.finish();
        tokio::task::yield_now().await;
    }
    let mut total = 0usize;
    let mut times = Vec::new();
    for t in tasks {
        let (bytes, elapsed) = t.await.expect("reader");
        total += bytes;
        times.push(elapsed.as_secs_f64());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rss = peak_rss_kib().saturating_sub(rss_before);
    times.sort_by(f64::total_cmp);
    drop(sessions);
    drop(setup.server);
    (
        total as f64 / elapsed / 1e6,
        times.first().copied().unwrap_or(0.0),
        times.last().copied().unwrap_or(0.0),
        rss / n as u64,
    )
}

/// Plain quinn: the same bytes, one uni stream per group, on N connections.
async fn quinn_throughput(n: usize) -> f64 {
    let groups_n = groups(n);
    let identity = Identity::self_signed(&["localhost"]).expect("cert");
    let cert = identity.leaf().cloned().expect("leaf");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).expect("root");
    let server_crypto = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("tls")
    .with_no_client_auth()
    .with_single_cert(identity.chain.clone(), identity.key.clone_key())
    .expect("cert");
    // The same transport settings as the moq side (windows, congestion controller), so that
    // the comparison is of the protocol layers alone.
    let transport = Arc::new(moq_quinn::QuicOptions::default().transport_config());
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server_crypto).expect("quic"),
    ));
    server_config.transport_config(transport.clone());
    let endpoint = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().expect("addr"))
        .expect("server");
    let addr = endpoint.local_addr().expect("addr");
    let payload = Bytes::from(vec![0xabu8; FRAME]);
    let server = tokio::spawn({
        let payload = payload.clone();
        async move {
            let mut conns = Vec::new();
            for _ in 0..n {
                let conn = endpoint
                    .accept()
                    .await
                    .expect("incoming")
                    .await
                    .expect("conn");
                let payload = payload.clone();
                conns.push(tokio::spawn(async move {
                    for _ in 0..groups_n {
                        let mut s = conn.open_uni().await.expect("open");
                        for _ in 0..FRAMES_PER_GROUP {
                            s.write_chunk(payload.clone()).await.expect("write");
                        }
                        s.finish().expect("finish");
                    }
                    conn.closed().await;
                }));
            }
            conns
        }
    });
    let client_crypto = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("tls")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut client_config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client_crypto).expect("quic"),
    ));
    client_config.transport_config(transport);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
        ep.set_default_client_config(client_config.clone());
        let conn = ep
            .connect(addr, "localhost")
            .expect("connect")
            .await
            .expect("conn");
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0usize;
            for _ in 0..groups_n {
                let mut s = conn.accept_uni().await.expect("accept");
                while let Some(chunk) = s.read_chunk(usize::MAX, true).await.expect("read") {
                    bytes += chunk.bytes.len();
                }
            }
            conn.close(0u32.into(), b"done");
            drop(ep);
            bytes
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("reader");
    }
    let elapsed = start.elapsed().as_secs_f64();
    for c in server.await.expect("server") {
        c.abort();
    }
    total as f64 / elapsed / 1e6
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Latency of paced 1 KiB timestamped frames to N subscribers: (p50, p99) in ms.
async fn latency(n: usize) -> (f64, f64) {
    let setup = setup();
    let broadcast = Broadcast::new();
    let track = broadcast.create_track("lat", 1);
    setup.router.publish("/lat", broadcast);
    let mut sessions = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let client = Client::new(ServerTrust::Pinned(setup.cert.clone())).expect("client");
        let session = client.connect(&setup.url).await.expect("connect");
        let mut reader = session
            .subscribe("/lat", "lat", SubscribeParams::default())
            .expect("subscribe");
        sessions.push((client, session));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while let Ok(Some(mut g)) = reader.next_group().await {
                while let Ok(Some(f)) = g.read_frame().await {
                    let sent = u64::from_be_bytes(f[..8].try_into().expect("8 bytes"));
                    lat.push(unix_micros().saturating_sub(sent));
                }
            }
            lat
        }));
    }
    while track.subscriber_count() < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut ticker = tokio::time::interval(Duration::from_millis(2));
    for _ in 0..5 {
        let g = track.append_group();
        for _ in 0..100 {
            ticker.tick().await;
            let mut frame = vec![0u8; 1024];
            frame[..8].copy_from_slice(&unix_micros().to_be_bytes());
            g.write_frame(Bytes::from(frame));
        }
        g.finish();
    }
    track.close();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(sessions);
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(Ok(lat)) = tokio::time::timeout(Duration::from_secs(5), t).await {
            all.extend(lat);
        }
    }
    all.sort_unstable();
    let pct = |p: f64| {
        let i = ((all.len().max(1) - 1) as f64 * p).round() as usize;
        all.get(i).copied().unwrap_or(0) as f64 / 1e3
    };
    (pct(0.5), pct(0.99))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "fan-out over loopback: 1 track, groups of {FRAMES_PER_GROUP} frames x {} KiB, max(4, 256/N) groups per subscriber; MB/s: median of FANOUT_REPS runs (default 3)",
        FRAME / 1024
    );
    println!(
        "{:>4} {:>12} {:>12} {:>7} {:>22} {:>10} {:>10} {:>14}",
        "N",
        "moq MB/s",
        "quinn MB/s",
        "ratio",
        "subscriber done (s)",
        "p50 ms",
        "p99 ms",
        "peak KiB/conn"
    );
    // `FANOUT_N=1,4` limits the run to those N; `FANOUT_ONLY=moq` (or `quinn`) measures
    // only that throughput (for profiling).
    let ns: Vec<usize> = std::env::var("FANOUT_N")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 4, 16, 64]);
    let only = std::env::var("FANOUT_ONLY").unwrap_or_default();
    // Each side runs `FANOUT_REPS` times (default 3), alternating, and the medians are
    // compared: one run on a shared two-core machine varies by several percent.
    let reps: usize = std::env::var("FANOUT_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for n in ns {
        if only == "quinn" {
            let plain = (0..reps)
                .map(|_| rt.block_on(quinn_throughput(n)))
                .collect();
            println!("{n:>4} {:>12} {:>12.1}", "", median(plain));
            continue;
        }
        if only == "moq" || only == "payload" {
            let moq = (0..reps)
                .map(|_| rt.block_on(moq_throughput(n, only == "payload")).0)
                .collect();
            println!("{n:>4} {:>12.1}", median(moq));
            continue;
        }
        let mut moq = Vec::new();
        let mut plain = Vec::new();
        let mut first = None;
        for _ in 0..reps {
            let (mbps, fastest, slowest, rss) = rt.block_on(moq_throughput(n, false));
            moq.push(mbps);
            // Peak RSS only grows: the first run's growth is the one to report.
            first.get_or_insert((fastest, slowest, rss));
            plain.push(rt.block_on(quinn_throughput(n)));
        }
        let (moq, plain) = (median(moq), median(plain));
        let (fastest, slowest, rss) = first.unwrap_or_default();
        let (p50, p99) = rt.block_on(latency(n));
        println!(
            "{n:>4} {moq:>12.1} {plain:>12.1} {:>7.2} {:>10.3} .. {:>8.3} {p50:>10.3} {p99:>10.3} {rss:>14}",
            moq / plain,
            fastest,
            slowest
        );
    }
}
