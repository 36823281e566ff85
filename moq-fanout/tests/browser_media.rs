//! Live video through moq-fanout: moq-dev's publisher (npm `@moq/publish` 0.2.17, Chromium's
//! fake camera, H.264 in software) publishes over WebTransport, and moq-dev's player
//! (`@moq/watch` 0.3.2, WebCodecs into a canvas) plays it in a second headless Chromium.
//! Motion, not just connection: the player reports frames decoded and rendered, and hashes
//! of its video area taken a second apart differ. Directly through moq-fanout, and through a
//! moq-relay cluster node with moq-fanout as the edge the player connects to. Peer suite
//! (`scripts/peers` installs Chromium, Node.js, npm and moq-relay).
//!
//! The two packages are the newest pair on one `@moq/hang` and one `@moq/net` (0.1.9, which
//! offers moq-lite-04); no published publisher depends on `@moq/net` 0.3 yet.

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::moq_relay::MoqRelay;
use common::*;
use moq_tests::browser::{Page, bundle, hex, serve_page};

/// Chromium's fake camera, allowed without a prompt.
const CAMERA: &[&str] = &[
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
];

/// The number in a page line `word N ...`.
fn number(line: &str, word: &str) -> Option<u64> {
    line.strip_prefix(word)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Publishes the fake camera at `publish_url` and plays it from `watch_url`; asserts that
/// the player decodes and renders frames and that its picture moves.
async fn camera_plays(publish_url: &str, publish_hash: &[u8], watch_url: &str, watch_hash: &[u8]) {
    let http = serve_page(bundle("browser-media").await).await;
    let broadcast = "cam.hang";
    let page = |mode: &str, url: &str, hash: &[u8]| {
        format!(
            "http://{http}/?mode={mode}&url={url}&hash={}&broadcast={broadcast}",
            hex(hash)
        )
    };
    let mut publisher = Page::open_with(
        "publish",
        &page("publish", publish_url, publish_hash),
        CAMERA,
    );
    assert!(
        publisher
            .wait_for(Duration::from_secs(30), |l| l.starts_with("publishing"))
            .await,
        "the publisher failed: {:#?}",
        publisher.log
    );
    assert!(publisher.log.iter().any(|l| l == "version moq-lite-04"));
    let mut watcher = Page::open("watch", &page("watch", watch_url, watch_hash));
    assert!(
        watcher
            .wait_for(Duration::from_secs(45), |l| l.starts_with("playing"))
            .await,
        "the player failed: {:#?}",
        watcher.log
    );
    assert!(watcher.log.iter().any(|l| l == "version moq-lite-04"));
    assert!(
        watcher.log.iter().any(|l| l.starts_with("codec avc1")),
        "the player saw the H.264 catalog: {:#?}",
        watcher.log
    );

    // Three seconds of playback: frames decoded and rendered keep coming, and the video
    // area changes from one second to the next.
    let played_from = watcher.log.len();
    let mut shots = Vec::new();
    while shots.len() < 3 {
        watcher
            .wait_for(Duration::from_secs(20), |l| l.starts_with("shot"))
            .await;
        let hash = watcher
            .log
            .last()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned();
        shots.push(hash);
    }
    let after: Vec<&String> = watcher.log[played_from..].iter().collect();
    let decoded: Vec<u64> = after.iter().filter_map(|l| number(l, "decoded ")).collect();
    let rendered: Vec<u64> = after
        .iter()
        .filter_map(|l| number(l, "rendered "))
        .collect();
    println!("decoded {decoded:?}, rendered {rendered:?}, shots {shots:?}");
    assert!(
        decoded.last() > decoded.first() && *decoded.last().unwrap() >= 20,
        "frames are decoded: {decoded:?}"
    );
    assert!(
        rendered.last() > rendered.first(),
        "frames are rendered: {rendered:?}"
    );
    assert!(
        shots.windows(2).all(|pair| pair[0] != pair[1]),
        "the picture moves from one second to the next: {shots:?}"
    );
    assert!(
        !watcher.log.iter().any(|l| l.starts_with("error")),
        "{:#?}",
        watcher.log
    );
    // Two screenshots of the player a second apart differ in the video area (the page is
    // the video).
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("watch-{}", std::process::id()));
    let shots = watcher.screenshots(&out, 2, Duration::from_secs(1)).await;
    let moved = moq_tests::browser::changed(&shots[0], &shots[1], 0..4096, 0..4096);
    println!("player screenshots {shots:?}: {moved} pixels changed");
    assert!(
        moved > 1000,
        "the picture moves between screenshots ({moved} pixels changed)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs Chromium, Node.js and npm; run scripts/peers"]
async fn a_camera_published_with_moq_publish_plays_in_moq_watch_through_moq_fanout() {
    let mut config = config();
    config.listen.webtransport = Some("127.0.0.1:0".parse().unwrap());
    config.tls.generate = vec!["localhost".into(), "127.0.0.1".into()];
    let relay = relay(config).await;
    let hash = moq_quinn::transport::certificate_hash(relay.certificate().unwrap());
    let url = format!(
        "https://127.0.0.1:{}/",
        relay.webtransport_addr().unwrap().port()
    );
    camera_plays(&url, &hash, &url, &hash).await;
    let broadcasts = relay.relay().broadcasts();
    assert!(
        broadcasts
            .iter()
            .any(|b| b.path.as_str() == "cam.hang" && !b.tracks.is_empty()),
        "the relay carried the broadcast's tracks: {broadcasts:?}"
    );
    relay.shutdown().await;
}

/// A PEM block.
fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs Chromium, Node.js, npm and moq-dev's moq-relay 0.17.10; run scripts/peers"]
async fn the_camera_plays_through_a_moq_relay_node_and_moq_fanout_as_the_edge() {
    // moq-relay presents a certificate the browser pins by its hash.
    let identity = moq_quinn::Identity::self_signed(&["localhost", "127.0.0.1"]).unwrap();
    let node_hash = identity.certificate_hash().unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("media-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("node.crt"), dir.join("node.key"));
    std::fs::write(&cert, pem("CERTIFICATE", identity.chain[0].as_ref())).unwrap();
    std::fs::write(&key, pem("PRIVATE KEY", identity.key.secret_der())).unwrap();
    let node = MoqRelay::start_with_certificate(&cert, &key).await;

    let mut config = config();
    config.listen.webtransport = Some("127.0.0.1:0".parse().unwrap());
    config.tls.generate = vec!["localhost".into(), "127.0.0.1".into()];
    config.relay.upstreams = vec![format!("https://localhost:{}/", node.port)];
    config.relay.upstream_insecure = true;
    let edge = relay(config).await;
    until("the edge links to the node", || {
        edge.relay().peer_count() >= 1
    })
    .await;
    let edge_hash = moq_quinn::transport::certificate_hash(edge.certificate().unwrap());
    let node_url = format!("https://127.0.0.1:{}/", node.port);
    let edge_url = format!(
        "https://127.0.0.1:{}/",
        edge.webtransport_addr().unwrap().port()
    );
    camera_plays(&node_url, &node_hash, &edge_url, &edge_hash).await;
    assert!(
        edge.relay()
            .broadcasts()
            .iter()
            .any(|b| b.path.as_str() == "cam.hang"),
        "the edge relayed the node's broadcast"
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(node);
    edge.shutdown().await;
}
