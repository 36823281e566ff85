//! Our endpoints, and our relay as an edge, on a cluster of moq-dev's `moq-relay` 0.17.10
//! started on loopback: three nodes that dial each other (`--cluster-connect`), self-signed
//! certificates, anonymous access. In the peer suite (`scripts/peers`), like the other
//! moq-relay tests. Every wait is bounded; the nodes are killed when a test ends.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::moq_relay::MoqRelay;
use common::*;
use moq_quinn::{Session, SubscribeParams, TrackReader};

/// A three-node mesh: A alone, B dialling A, C dialling A and B.
struct Cluster {
    a: MoqRelay,
    b: MoqRelay,
    c: MoqRelay,
}

async fn cluster() -> Cluster {
    let dial = |node: &MoqRelay| format!("https://localhost:{}/", node.port);
    let a = MoqRelay::start_with(&["--cluster-id".into(), "1".into()]).await;
    let b = MoqRelay::start_with(&[
        "--cluster-id".into(),
        "2".into(),
        "--cluster-connect".into(),
        dial(&a),
        "--connect-tls-insecure".into(),
    ])
    .await;
    let c = MoqRelay::start_with(&[
        "--cluster-id".into(),
        "3".into(),
        "--cluster-connect".into(),
        dial(&a),
        "--cluster-connect".into(),
        dial(&b),
        "--connect-tls-insecure".into(),
    ])
    .await;
    Cluster { a, b, c }
}

/// Oldest first, with a max latency moq-dev's stack reads as "keep the backlog".
fn patient() -> SubscribeParams {
    SubscribeParams {
        ordered: true,
        max_latency: Duration::from_secs(30),
        ..SubscribeParams::default()
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A frame: its send time (µs since the epoch), then `size - 8` filler bytes.
fn stamped(size: usize) -> Bytes {
    let mut v = now_micros().to_be_bytes().to_vec();
    v.resize(size.max(8), b'x');
    Bytes::from(v)
}

/// Reads `groups` whole groups from `reader`; returns each frame's latency in µs and the
/// sequences seen, sorted (groups travel on their own streams and may arrive in any order;
/// frames within a group arrive in order, which is checked).
async fn read_stamped(
    reader: &mut TrackReader,
    groups: usize,
    frames: usize,
) -> (Vec<u64>, Vec<u64>) {
    let mut latencies = Vec::new();
    let mut sequences = Vec::new();
    while sequences.len() < groups {
        let mut group = within("a group through the cluster", reader.next_group())
            .await
            .expect("no error")
            .expect("a group");
        sequences.push(group.sequence().0);
        let got = read_all(&mut group).await;
        assert_eq!(
            got.len(),
            frames,
            "every frame of group {}",
            group.sequence().0
        );
        let mut previous = 0;
        for frame in got {
            let sent = u64::from_be_bytes(frame[..8].try_into().expect("8 bytes"));
            assert!(sent >= previous, "frames within a group in order");
            previous = sent;
            latencies.push(now_micros().saturating_sub(sent));
        }
    }
    sequences.sort_unstable();
    (latencies, sequences)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// p50 and p99 in ms.
fn summary(mut latencies: Vec<u64>) -> (f64, f64) {
    latencies.sort_unstable();
    (percentile(&latencies, 0.5), percentile(&latencies, 0.99))
}

/// A subscriber of ours on `url`: discovers `path` and subscribes to `track`.
async fn subscriber(url: &str, path: &str, track: &str) -> (Session, TrackReader) {
    let session = connect(&client(), url, None).await;
    let (_announcements, announcement) = discover(&session, path).await;
    let reader = session
        .subscribe(announcement.path().clone(), track, patient())
        .expect("subscribe");
    (session, reader)
}

const GROUPS: u64 = 20;
const FRAMES: usize = 5;
const SIZE: usize = 1200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs moq-relay 0.17.10; run scripts/peers"]
async fn a_publisher_on_b_reaches_subscribers_on_a_c_and_b_itself() {
    let cluster = cluster().await;
    let publisher = publisher(&client(), &cluster.b.url(), "/cluster/demo", &["video"], 1).await;
    let track = publisher.tracks[0].clone();
    let mut readers = Vec::new();
    for (name, node) in [
        ("B (same node)", &cluster.b),
        ("A", &cluster.a),
        ("C", &cluster.c),
    ] {
        readers.push((
            name,
            subscriber(&node.url(), "/cluster/demo", "video").await,
        ));
    }
    until("the cluster subscribes to our publisher", || {
        track.subscriber_count() > 0
    })
    .await;
    // Let every subscription reach the origin before the first group.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|(name, (session, mut reader))| {
            tokio::spawn(async move {
                let got = read_stamped(&mut reader, GROUPS as usize, FRAMES).await;
                drop(session);
                (name, got)
            })
        })
        .collect();
    for _ in 0..GROUPS {
        let group = track.append_group();
        for _ in 0..FRAMES {
            group.write_frame(stamped(SIZE));
        }
        group.finish();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for task in tasks {
        let (name, (latencies, sequences)) = within("a subscriber's groups", task).await.unwrap();
        let want: Vec<u64> = (1..=GROUPS).collect();
        assert_eq!(sequences, want, "{name}: every group");
        let (p50, p99) = summary(latencies);
        println!("cluster: subscriber on {name}: latency p50 {p50:.3} ms, p99 {p99:.3} ms");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs moq-relay 0.17.10; run scripts/peers"]
async fn a_publisher_that_moves_to_another_node_is_followed() {
    let cluster = cluster().await;
    // Publisher on B; the subscriber on A gets a group.
    let publisher = publisher(
        &client(),
        &cluster.b.url(),
        "/cluster/moving",
        &["video"],
        1,
    )
    .await;
    let watcher = connect(&client(), &cluster.a.url(), None).await;
    let (mut announcements, mut first) = discover(&watcher, "/cluster/moving").await;
    let mut reader = watcher
        .subscribe(first.path().clone(), "video", patient())
        .expect("subscribe");
    let track = publisher.tracks[0].clone();
    until("the cluster subscribes", || track.subscriber_count() > 0).await;
    write_group(&track, FRAMES, SIZE);
    let _group = within("a group from B", reader.next_group())
        .await
        .expect("ok")
        .expect("group");

    // It leaves B: the announcement ends, and the subscription with it.
    publisher
        .session
        .close(moq_quinn::code::session::NO_ERROR, "moving");
    drop(publisher);
    within("ENDED after the publisher left", first.ended()).await;
    let end = within("the subscription ends", async {
        loop {
            match reader.next().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await;
    println!("cluster: the subscription on A ended with {end:?}");

    // It comes back on C: announced again, and a new subscription gets its groups.
    let start = std::time::Instant::now();
    let back = publisher_on(&cluster.c.url(), "/cluster/moving").await;
    let again = announced(&mut announcements, "/cluster/moving").await;
    let mut reader = watcher
        .subscribe(again.path().clone(), "video", patient())
        .expect("subscribe again");
    let track = back.tracks[0].clone();
    until("the cluster subscribes on C", || {
        track.subscriber_count() > 0
    })
    .await;
    write_group(&track, FRAMES, SIZE);
    let mut group = within("a group from C", reader.next_group())
        .await
        .expect("ok")
        .expect("group");
    assert_eq!(read_all(&mut group).await.len(), FRAMES);
    println!(
        "cluster: resumed through C {} ms after the publisher reconnected",
        start.elapsed().as_millis()
    );
}

async fn publisher_on(url: &str, path: &str) -> Publisher {
    publisher(&client(), url, path, &["video"], 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs moq-relay 0.17.10; run scripts/peers"]
async fn a_webtransport_subscriber_on_a_and_a_quic_publisher_on_b() {
    let cluster = cluster().await;
    let publisher = publisher(&client(), &cluster.b.url(), "/cluster/wt", &["video"], 1).await;
    let track = publisher.tracks[0].clone();
    let wt = moq_webtransport::Client::new(moq_webtransport::ServerTrust::Insecure)
        .expect("a WebTransport client");
    let session = within(
        "WebTransport connect",
        wt.connect(&format!("https://localhost:{}/", cluster.a.port)),
    )
    .await
    .expect("a WebTransport session with moq-relay");
    let (_announcements, announcement) = discover(&session, "/cluster/wt").await;
    let mut reader = session
        .subscribe(announcement.path().clone(), "video", patient())
        .expect("subscribe");
    until("the cluster subscribes", || track.subscriber_count() > 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let group = track.append_group();
        for _ in 0..FRAMES {
            group.write_frame(stamped(SIZE));
        }
        group.finish();
    }
    let (latencies, sequences) = read_stamped(&mut reader, 5, FRAMES).await;
    assert_eq!(sequences, vec![1, 2, 3, 4, 5]);
    let (p50, p99) = summary(latencies);
    println!("cluster: WebTransport subscriber on A: p50 {p50:.3} ms, p99 {p99:.3} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs moq-relay 0.17.10; run scripts/peers"]
async fn moq_fanout_as_an_edge_under_the_cluster() {
    const SUBSCRIBERS: usize = 8;
    let cluster = cluster().await;
    // Our relay, with node B as its upstream.
    let mut edge_config = config();
    edge_config.relay.upstreams = vec![cluster.b.url()];
    edge_config.relay.upstream_insecure = true;
    edge_config.relay.hop_id = Some(77);
    let edge = relay(edge_config).await;
    let edge_url = url(&edge);
    // A publisher on A.
    let publisher = publisher(&client(), &cluster.a.url(), "/cluster/edge", &["video"], 1).await;
    let track = publisher.tracks[0].clone();
    known(&edge, 1).await;
    let mut readers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        readers.push(subscriber(&edge_url, "/cluster/edge", "video").await);
    }
    until("the cluster subscribes", || track.subscriber_count() > 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|(session, mut reader)| {
            tokio::spawn(async move {
                let got = read_stamped(&mut reader, 5, FRAMES).await;
                (session, reader, got)
            })
        })
        .collect();
    for _ in 0..5 {
        let group = track.append_group();
        for _ in 0..FRAMES {
            group.write_frame(stamped(SIZE));
        }
        group.finish();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut all = Vec::new();
    // The subscribers stay connected until the checks below are done.
    let mut held = Vec::new();
    for task in tasks {
        let (session, reader, (latencies, sequences)) =
            within("an edge subscriber", task).await.unwrap();
        assert_eq!(sequences, vec![1, 2, 3, 4, 5]);
        all.extend(latencies);
        held.push((session, reader));
    }
    let (p50, p99) = summary(all);
    println!(
        "cluster: {SUBSCRIBERS} subscribers on moq-fanout under node B, publisher on A: \
         p50 {p50:.3} ms, p99 {p99:.3} ms"
    );
    // One upstream connection and one upstream subscription for all of them: node B saw
    // one moq-lite-04 session (our relay), and the edge holds one fan-out for the track.
    let sessions_on_b = edge_sessions(&cluster.b);
    println!("cluster: moq-lite-04 sessions on node B: {sessions_on_b}");
    assert_eq!(
        sessions_on_b, 1,
        "moq-fanout holds one connection to the cluster"
    );
    let info = edge.relay().broadcasts();
    let relayed = info
        .iter()
        .find(|b| b.path == "/cluster/edge")
        .expect("the edge relays the broadcast");
    assert_eq!(
        relayed.tracks.len(),
        1,
        "one upstream subscription for the track"
    );
    // No loop: the broadcast is known through one route, with the cluster's hops before
    // ours, and our relay does not announce it back upstream.
    assert_eq!(relayed.routes, 1, "{relayed:?}");
    assert_eq!(relayed.hops.last().map(|h| h.0), Some(77), "{relayed:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        edge.relay().broadcasts().len(),
        1,
        "no echo of our own announcement"
    );
    drop(held);
}

/// Sessions a node negotiated as moq-lite-04: ours (cluster nodes speak a newer moq-lite
/// among themselves).
fn edge_sessions(node: &MoqRelay) -> usize {
    node.log_lines()
        .iter()
        .filter(|l| l.contains("negotiated version=moq-lite-04"))
        .count()
}
