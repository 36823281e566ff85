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
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use moq_quinn::{BroadcastPath, SubscribeParams};
use moq_tests::moq_rs::python;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_path_buf()
}

/// Subscription parameters for moq-net peers: oldest first, and a non-zero max latency
/// (moq-net reads 0 as "only the newest group").
fn patient() -> SubscribeParams {
    SubscribeParams {
        ordered: true,
        max_latency: Duration::from_secs(30),
        ..SubscribeParams::default()
    }
}

/// A free UDP port on loopback (bound, read, released).
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

/// Strips ANSI colour sequences from a log line.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---- moq-dev's relay ----

/// moq-dev's relay running as a child process; killed when dropped.
struct MoqRelay {
    _child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

/// `$MOQ_RELAY_BIN`, else `target/moq-relay/bin/moq-relay` under the workspace, else the
/// copy `scripts/peers` keeps under `~/.cache/moq-lite-rs/moq-relay-0.17.10`.
fn moq_relay_bin() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("MOQ_RELAY_BIN") {
        Some(bin) => vec![PathBuf::from(bin)],
        None => {
            let mut list = vec![workspace_root().join("target/moq-relay/bin/moq-relay")];
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
            if let Some(cache) = cache {
                list.push(cache.join("moq-lite-rs/moq-relay-0.17.10/bin/moq-relay"));
            }
            list
        }
    };
    match candidates.iter().find(|bin| bin.exists()) {
        Some(bin) => bin.clone(),
        None => panic!(
            "moq-dev's relay is missing (looked at {candidates:?}): set MOQ_RELAY_BIN, or build \
             it with `cargo install moq-relay@0.17.10 --no-default-features --features noq \
             --root target/moq-relay`, or run scripts/peers, which does: this interop test cannot run without it"
        ),
    }
}

impl MoqRelay {
    async fn start() -> Self {
        let bin = moq_relay_bin();
        let port = free_port();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let config = dir.join(format!("moq-relay-{}-{port}.toml", std::process::id()));
        std::fs::write(
            &config,
            format!(
                "[listen]\nbind = \"127.0.0.1:{port}\"\n\n[listen.tls]\ngenerate = [\"localhost\"]\n\n\
                 [auth]\npublic = [\"**\"]\n"
            ),
        )
        .expect("write the moq-relay config");
        let mut child = Command::new(&bin)
            .arg(&config)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let lines = log.clone();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let line = plain(&line);
                if line.contains("listening")
                    && line.contains("addr=")
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(());
                }
                lines.lock().unwrap().push(line);
            }
        });
        if tokio::time::timeout(WAIT, ready).await.is_err() {
            panic!(
                "moq-relay did not log `listening addr=` within {WAIT:?}:\n{}",
                log.lock().unwrap().join("\n")
            );
        }
        Self {
            _child: child,
            port,
            log,
        }
    }

    fn url(&self) -> String {
        format!("moqt://localhost:{}", self.port)
    }

    fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
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
