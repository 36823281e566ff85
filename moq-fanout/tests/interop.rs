//! Interop with moq-dev's stack:
//!
//! - our publisher → moq-dev's relay (crates.io `moq-relay` 0.17.10) → our subscriber;
//! - a publisher from PyPI `moq-rs` 0.5.1 (moq-net) → our relay → our subscriber.
//!
//! The moq-relay binary is found through `$MOQ_RELAY_BIN`, else at
//! `target/moq-relay/bin/moq-relay` under the workspace, else under
//! `~/.cache/moq-lite-rs/moq-relay-0.17.10` (where `scripts/peers` installs it with `cargo install
//! moq-relay@0.17.10 --no-default-features --features noq --root …`). The moq-rs package is installed into the virtualenv the moq-interop
//! tests use (`$MOQ_RS_VENV`, else `target/moq-rs-venv`). If either is missing the test
//! fails and says why; none passes by skipping. Every wait is bounded and every child
//! process is killed when the test ends.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::moq_relay::MoqRelay;
use common::*;
use moq_quinn::{BroadcastPath, SubscribeParams};
use moq_tests::moq_rs::python;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Subscription parameters for moq-net peers: oldest first, and a non-zero max latency
/// (moq-net reads 0 as "only the newest group").
fn patient() -> SubscribeParams {
    SubscribeParams {
        ordered: true,
        max_latency: Duration::from_secs(30),
        ..SubscribeParams::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs moq-relay 0.17.10; run scripts/peers"]
async fn our_publisher_through_moq_dev_relay_to_our_subscriber() {
    const GROUPS: u64 = 5;
    const FRAMES: usize = 10;
    const SIZE: usize = 1000;
    let moq_relay = MoqRelay::start().await;
    let url = moq_relay.url();
    let client = client();
    let publisher = publisher(&client, &url, "/interop/demo", &["video"], 1).await;
    let track = publisher.tracks[0].clone();

    let subscriber = connect(&client, &url, None).await;
    // moq-relay announces it slash-less (`interop/demo`); the paths compare equal (D20).
    let (_announcements, announcement) = discover(&subscriber, "/interop/demo").await;
    let mut reader = subscriber
        .subscribe(announcement.path().clone(), "video", patient())
        .expect("subscribe");
    until("moq-relay subscribes to our publisher", || {
        track.subscriber_count() > 0
    })
    .await;
    for _ in 0..GROUPS {
        write_group(&track, FRAMES, SIZE);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        read_groups(&mut reader, GROUPS as usize).await,
        expected(1, GROUPS, FRAMES, SIZE),
        "every frame of every group, in order"
    );
    until("moq-relay logs the negotiated version", || {
        moq_relay.log_contains("moq-lite-04")
    })
    .await;
}

// ---- moq-net (PyPI moq-rs) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs python3-venv and PyPI moq-rs; run scripts/peers"]
async fn moq_rs_publisher_through_our_relay_to_our_subscriber() {
    const GROUPS: usize = 4;
    const FRAMES: usize = 5;
    let relay = relay(config()).await;
    let url = format!("moqt://127.0.0.1:{}", relay.quic_addr().unwrap().port());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/client_publish.py");
    let log = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("moq-rs-client-publish-{}.log", std::process::id()));
    let mut peer = Command::new(python())
        .arg(&script)
        .args([
            url.as_str(),
            "live/py",
            "frames",
            &GROUPS.to_string(),
            &FRAMES.to_string(),
            "40",
        ])
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&log).expect("a log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("run the moq-rs publisher");
    let mut lines = BufReader::new(peer.stdout.take().unwrap()).lines();
    let mut said = Vec::new();
    let mut expect = async |word: &str, said: &mut Vec<String>| loop {
        let line = match tokio::time::timeout(WAIT, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            other => panic!(
                "moq-rs publisher: no `{word}` ({other:?}); said {said:?}; log {}:\n{}",
                log.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        };
        said.push(line.clone());
        assert!(!line.starts_with("ERROR"), "moq-rs publisher: {said:?}");
        if line.starts_with(word) {
            return;
        }
    };
    expect("CONNECTED", &mut said).await;

    // Our subscriber on our relay discovers moq-net's slash-less `live/py`.
    let client = client();
    let subscriber = connect(&client, &url, None).await;
    let (_announcements, announcement) = discover(&subscriber, "/live/py").await;
    assert_eq!(announcement.path(), &BroadcastPath::new("live/py"));
    // The relay forwarded it with its own hop ID appended (moq-net's client puts its own
    // origin's hop ID first).
    assert_eq!(announcement.hops().last(), Some(&relay.relay().hop_id()));
    let mut reader = subscriber
        .subscribe(announcement.path().clone(), "frames", patient())
        .expect("subscribe");
    expect("SUBSCRIBED", &mut said).await;
    let groups = read_groups(&mut reader, GROUPS).await;
    // moq-net numbers groups from 0; the relay keeps the publisher's numbers.
    let want: Vec<(u64, Vec<Bytes>)> = (0..GROUPS as u64)
        .map(|g| {
            (
                g,
                (0..FRAMES)
                    .map(|f| Bytes::from(format!("g{g}f{f}")))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(groups, want);
    expect("PUBLISHED", &mut said).await;
    let _ = std::fs::remove_file(&log);
}
