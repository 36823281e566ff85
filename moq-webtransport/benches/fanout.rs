//! Fan-out over WebTransport on loopback: one track to N subscribers on N WebTransport
//! sessions (16 KiB frames, 256 frames per group, max(4, 256/N) groups per subscriber, so
//! 1 GiB per run), against the same bytes over plain wtransport unidirectional streams (one
//! per group) on N sessions, in the same run. The shape of gomoqt's
//! `FanOut_ViewerConnections` benchmark (WebTransport, 16 KiB frames, 256 per group, N
//! viewers on N connections), so that figures compare across the two stacks.
//!
//! `cargo bench -p moq-webtransport --bench fanout` prints, for N = 1, 4, 16, 64, the
//! medians of `FANOUT_REPS` runs per side (default 3, alternating) and their ratio.
//! `FANOUT_N=1,4` limits N; `FANOUT_ONLY=moq` or `wtransport` measures one side (for
//! profiling).

#![allow(clippy::disallowed_methods, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_webtransport::{
    Broadcast, Client, Config, Identity, QuicOptions, Router, Server, ServerTrust, SubscribeParams,
};

const FRAME: usize = 16 * 1024;
const FRAMES_PER_GROUP: usize = 256;

fn groups(n: usize) -> usize {
    (256 / n).max(4)
}

/// A session configuration that never drops: the run measures what the transport carries.
fn config() -> Config {
    let mut c = Config::default();
    c.max_queued_bytes_per_subscription = 1 << 30;
    c.max_queued_bytes = 1 << 31;
    c.max_connection_bytes = 1 << 31;
    c
}

/// moq over WebTransport: aggregate MB/s.
async fn moq_throughput(n: usize) -> f64 {
    let groups_n = groups(n);
    let identity = Identity::self_signed(&["localhost"]).expect("cert");
    let hash = identity.certificate_hash().expect("hash");
    let router = Router::new();
    let broadcast = Broadcast::new();
    let track = broadcast.create_track("data", 1);
    router.publish("/bench", broadcast);
    let server = Server::builder("127.0.0.1:0".parse().expect("addr"), identity)
        .config(config())
        .router(router)
        .bind()
        .expect("bind");
    let url = format!(
        "https://localhost:{}/",
        server.local_addr().expect("addr").port()
    );
    let server = Arc::new(server);
    let accept = server.clone();
    let accepting = tokio::spawn(async move {
        let mut sessions = Vec::new();
        while let Some(Ok(s)) = accept.accept().await {
            sessions.push(s);
        }
    });
    let mut clients = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..n {
        let client = Client::builder()
            .trust(ServerTrust::Hash(hash))
            .config(config())
            .build()
            .expect("client");
        let session = client.connect(&url).await.expect("connect");
        readers.push(
            session
                .subscribe("/bench", "data", SubscribeParams::default())
                .expect("subscribe"),
        );
        clients.push((client, session));
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
                let mut groups = tokio::task::JoinSet::new();
                while groups.len() < groups_n {
                    let Ok(Some(mut g)) = reader.next_group().await else {
                        break;
                    };
                    groups.spawn(async move {
                        let mut bytes = 0usize;
                        while let Ok(Some(f)) = g.read_frame().await {
                            bytes += f.len();
                        }
                        bytes
                    });
                }
                groups.join_all().await.into_iter().sum::<usize>()
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
    for t in tasks {
        total += t.await.expect("reader");
    }
    let mbps = total as f64 / start.elapsed().as_secs_f64() / 1e6;
    drop(clients);
    accepting.abort();
    mbps
}

/// Plain wtransport: the same bytes, one unidirectional stream per group, on N sessions,
/// with the same QUIC transport settings as the moq side.
async fn wtransport_throughput(n: usize) -> f64 {
    let groups_n = groups(n);
    let ours = Identity::self_signed(&["localhost"]).expect("cert");
    let hash = ours.certificate_hash().expect("hash");
    let certificate = wtransport::tls::Certificate::from_der(ours.chain[0].to_vec()).expect("der");
    let identity = wtransport::Identity::new(
        wtransport::tls::CertificateChain::new(vec![certificate]),
        wtransport::tls::PrivateKey::from_der_pkcs8(ours.key.secret_der().to_vec()),
    );
    let transport = QuicOptions::default().transport_config();
    let server_config = wtransport::ServerConfig::builder()
        .with_bind_address("127.0.0.1:0".parse().expect("addr"))
        .with_custom_transport(identity, transport)
        .build();
    let endpoint = wtransport::Endpoint::server(server_config).expect("server");
    let port = endpoint.local_addr().expect("addr").port();
    let payload = Bytes::from(vec![0xabu8; FRAME]);
    let server = tokio::spawn({
        let payload = payload.clone();
        async move {
            let mut sessions = Vec::new();
            for _ in 0..n {
                let request = endpoint.accept().await.await.expect("request");
                let conn = request.accept().await.expect("session");
                let payload = payload.clone();
                sessions.push(tokio::spawn(async move {
                    for _ in 0..groups_n {
                        let mut s = conn.open_uni().await.expect("open").await.expect("opened");
                        for _ in 0..FRAMES_PER_GROUP {
                            s.quic_stream_mut()
                                .write_chunk(payload.clone())
                                .await
                                .expect("write");
                        }
                        let _ = s.finish().await;
                    }
                    conn.closed().await;
                }));
            }
            sessions
        }
    });
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n {
        // The same client settings as moq-webtransport's (TLS, ALPN h3, transport).
        let quic =
            moq_quic::client_config(&ServerTrust::Hash(hash), b"h3", &QuicOptions::default())
                .expect("tls");
        let config = wtransport::ClientConfig::builder()
            .with_bind_address("127.0.0.1:0".parse().expect("addr"))
            .build_with_quic_config(quic);
        let client = wtransport::Endpoint::client(config).expect("client");
        let conn = client
            .connect(format!("https://localhost:{port}/"))
            .await
            .expect("connect");
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0usize;
            for _ in 0..groups_n {
                let mut s = conn.accept_uni().await.expect("accept");
                while let Some(chunk) = s
                    .quic_stream_mut()
                    .read_chunk(usize::MAX, true)
                    .await
                    .expect("read")
                {
                    bytes += chunk.bytes.len();
                }
            }
            conn.close(0u32.into(), b"done");
            drop(client);
            bytes
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("reader");
    }
    let mbps = total as f64 / start.elapsed().as_secs_f64() / 1e6;
    for s in server.await.expect("server") {
        s.abort();
    }
    mbps
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "fan-out over WebTransport on loopback: 1 track, groups of {FRAMES_PER_GROUP} frames x {} KiB, max(4, 256/N) groups per subscriber; MB/s: median of FANOUT_REPS runs (default 3)",
        FRAME / 1024
    );
    println!(
        "{:>4} {:>12} {:>16} {:>7}",
        "N", "moq MB/s", "wtransport MB/s", "ratio"
    );
    let ns: Vec<usize> = std::env::var("FANOUT_N")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 4, 16, 64]);
    let reps: usize = std::env::var("FANOUT_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let only = std::env::var("FANOUT_ONLY").unwrap_or_default();
    for n in ns {
        if only == "moq" || only == "wtransport" {
            let runs = (0..reps)
                .map(|_| match only.as_str() {
                    "moq" => rt.block_on(moq_throughput(n)),
                    _ => rt.block_on(wtransport_throughput(n)),
                })
                .collect();
            println!("{n:>4} {only:>12} {:>12.1}", median(runs));
            continue;
        }
        let mut moq = Vec::new();
        let mut plain = Vec::new();
        for _ in 0..reps {
            moq.push(rt.block_on(moq_throughput(n)));
            plain.push(rt.block_on(wtransport_throughput(n)));
        }
        let (moq, plain) = (median(moq), median(plain));
        println!("{n:>4} {moq:>12.1} {plain:>16.1} {:>7.2}", moq / plain);
    }
}
