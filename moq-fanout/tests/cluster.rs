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

/// The reconnect policy of the tests: quick, and bounded.
fn quick() -> moq_dial::Reconnect {
    let mut policy = moq_dial::Reconnect::default();
    policy.initial_delay = Duration::from_millis(50);
    policy.max_delay = Duration::from_millis(500);
    policy.max_attempts = Some(200);
    policy
}

/// A publisher of `path` ("video") writing a group every 50 ms, each frame naming `tag` and
/// the group, until the returned task is aborted.
fn camera_task(track: moq_quinn::TrackProducer, tag: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for _ in 0..2000 {
            let group = track.append_group();
            group.write_frame(Bytes::from(format!("{tag}{}", group.sequence().0)));
            group.finish();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Reads until a group whose frame starts with `tag`; returns its number and how long it
/// took from `from`.
async fn first_from(track: &mut moq_dial::ResumingTrack, tag: &str) -> (u64, std::time::Instant) {
    loop {
        let mut group = within("a group", track.next_group())
            .await
            .expect("the resuming subscription goes on")
            .expect("the track goes on");
        let frame = String::from_utf8(read_all(&mut group).await.concat()).expect("text");
        if frame.starts_with(tag) {
            return (group.sequence().0, std::time::Instant::now());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs moq-relay 0.17.10; run scripts/peers"]
async fn through_the_cluster_a_restarted_or_killed_publisher_is_followed_by_a_resuming_subscription()
 {
    let cluster = cluster().await;
    let path = "/cluster/restart";
    let (a, _a_task, a_session) = {
        let p = publisher(&client(), &cluster.b.url(), path, &["video"], 1).await;
        let task = camera_task(p.tracks[0].clone(), "A");
        (p.tracks[0].clone(), task, p.session)
    };
    let watcher = moq_dial::Dialer::new(moq_dial::ServerTrust::Insecure)
        .expect("dialer")
        .reconnecting(&cluster.a.url(), quick());
    let mut track = watcher.subscribe(path, "video", patient());
    first_from(&mut track, "A").await;
    assert!(a.subscriber_count() > 0);

    // Restarted: the publisher closes and a new one (numbers from 1 again) comes to C.
    a_session.close(moq_quinn::code::session::NO_ERROR, "restart");
    drop(_a_task);
    let b = publisher(&client(), &cluster.c.url(), path, &["video"], 1).await;
    let b_track = b.tracks[0].clone();
    let b_task = camera_task(b_track.clone(), "B");
    let started = std::time::Instant::now();
    let (_, at) = first_from(&mut track, "B").await;
    println!(
        "cluster: the resuming subscription had B's groups {} ms after B started",
        at.duration_since(started).as_millis()
    );
    assert!(at.duration_since(started) < Duration::from_secs(2));

    // Killed without a close (its path cut), and a new publisher on B.
    let (via, cut) = moq_tests::udp_relay(
        format!("127.0.0.1:{}", cluster.b.port)
            .parse()
            .expect("addr"),
    )
    .await;
    let c = publisher(
        &client(),
        &format!("moqt://localhost:{}", via.port()),
        "/cluster/killed",
        &["video"],
        1,
    )
    .await;
    let c_task = camera_task(c.tracks[0].clone(), "C");
    let mut killed = watcher.subscribe("/cluster/killed", "video", patient());
    first_from(&mut killed, "C").await;
    cut.store(true, std::sync::atomic::Ordering::SeqCst);
    c_task.abort();
    let d = publisher(
        &client(),
        &cluster.b.url(),
        "/cluster/killed",
        &["video"],
        1,
    )
    .await;
    let d_task = camera_task(d.tracks[0].clone(), "D");
    let started = std::time::Instant::now();
    let (_, at) = first_from(&mut killed, "D").await;
    println!(
        "cluster: after a kill, the resuming subscription had the new publisher's groups {} ms after it started",
        at.duration_since(started).as_millis()
    );
    assert!(at.duration_since(started) < Duration::from_secs(2));

    d_task.abort();

    // A second publisher of a broadcast, on C, while the first (on B) goes on; then the
    // first leaves. The subscription is on the second's groups within 2 s of the first's
    // leaving (or sooner, if moq-relay switches as the second arrives). A fresh broadcast:
    // moq-relay keeps the killed publisher's route above until its idle timeout, and
    // would fall back to it.
    let first = publisher(
        &client(),
        &cluster.b.url(),
        "/cluster/takeover",
        &["video"],
        1,
    )
    .await;
    let first_task = camera_task(first.tracks[0].clone(), "F");
    let mut takeover = watcher.subscribe("/cluster/takeover", "video", patient());
    first_from(&mut takeover, "F").await;
    let e = publisher(
        &client(),
        &cluster.c.url(),
        "/cluster/takeover",
        &["video"],
        1,
    )
    .await;
    let e_task = camera_task(e.tracks[0].clone(), "E");
    tokio::time::sleep(Duration::from_millis(500)).await;
    first
        .session
        .close(moq_quinn::code::session::NO_ERROR, "handing over");
    first_task.abort();
    let left = std::time::Instant::now();
    let (_, at) = first_from(&mut takeover, "E").await;
    println!(
        "cluster: a second publisher took over {} ms after the first left",
        at.saturating_duration_since(left).as_millis()
    );
    assert!(at.duration_since(left) < Duration::from_secs(2));
    b_task.abort();
    e_task.abort();
    drop((b, c, d, e, first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs moq-relay 0.17.10; run scripts/peers"]
async fn a_moq_relay_restarted_under_reconnecting_clients() {
    let port = common::moq_relay::free_port();
    let node = MoqRelay::start_on(port, &[]).await;
    let url = node.url();
    let broadcast = moq_quinn::Broadcast::new();
    let video = broadcast.create_track("video", 1);
    let router = moq_quinn::Router::new();
    router.publish("/restart", broadcast);
    // A relay that vanishes is noticed at the QUIC idle timeout (the smaller of both ends'):
    // short here, with keep-alives well within it.
    let mut options = moq_dial::QuicOptions::default();
    options.idle_timeout = Duration::from_secs(2);
    options.keep_alive = Duration::from_millis(500);
    let publisher = moq_dial::Dialer::builder()
        .trust(moq_dial::ServerTrust::Insecure)
        .options(options.clone())
        .router(router)
        .build()
        .expect("dialer")
        .reconnecting(&url, quick());
    let writing = camera_task(video, "A");
    let watcher = moq_dial::Dialer::builder()
        .trust(moq_dial::ServerTrust::Insecure)
        .options(options)
        .build()
        .expect("dialer")
        .reconnecting(&url, quick());
    let mut track = watcher.subscribe("/restart", "video", patient());
    let (before, _) = first_from(&mut track, "A").await;

    drop(node);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _node = MoqRelay::start_on(port, &[]).await;
    let started = std::time::Instant::now();
    let (after, at) = first_from(&mut track, "A").await;
    println!(
        "moq-relay restarted: groups again {} ms after it listened ({before} then {after})",
        at.duration_since(started).as_millis()
    );
    assert!(after > before);
    // The idle timeout (2 s), a reconnect, and the publisher's own.
    assert!(at.duration_since(started) < Duration::from_secs(6));
    writing.abort();
    drop(publisher);
}
