//! The blocking driver against our tokio servers on loopback: the interop server, and the
//! relay with a publisher behind it. The servers run on a tokio runtime; the driver runs on
//! a plain thread of its own, with no runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moq_blocking::{Connection, Watch, Watched, watch};
use moq_proto::{Config, GroupSequence};
use moq_tls::ServerTrust;

/// Far above what a passing run needs, far below a hang.
const WAIT: Duration = Duration::from_secs(30);

/// Runs the viewer on its own thread, against `addr`, trusting `trust`.
async fn watch_from_a_thread(addr: SocketAddr, trust: ServerTrust, what: Watch) -> Watched {
    let thread = std::thread::spawn(move || {
        let conn = Connection::connect(addr, "localhost", &trust, Config::default())?;
        watch(conn, &what)
    });
    let result = tokio::time::timeout(WAIT, tokio::task::spawn_blocking(|| thread.join()))
        .await
        .expect("the viewer finishes in time")
        .expect("joined")
        .expect("the viewer thread does not panic");
    result.expect("the viewer succeeds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_our_interop_server() {
    let opts = moq_interop::ServerOpts {
        addr: "127.0.0.1:0".parse().unwrap(),
        wt_addr: None,
        cert: None,
    };
    let server = moq_interop::InteropServer::bind(&opts).expect("bind");
    let addr = server.local_addr();
    let trust = ServerTrust::Pinned(server.certificate().expect("a certificate").clone());
    let (report, _reports) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(server.run(report));

    let watched = watch_from_a_thread(addr, trust, Watch::default()).await;
    println!("{watched:?}");
    assert_eq!(
        watched.path.as_ref().map(|p| p.to_string()).as_deref(),
        Some(moq_interop::SERVER_BROADCAST)
    );
    let hello = Bytes::from_static(moq_interop::HELLO);
    assert_eq!(watched.groups, [(GroupSequence(1), vec![hello.clone()])]);
    assert_eq!(watched.fetched, [hello]);
    let (bitrate, rtt) = watched.probe.expect("a probe reply");
    assert!(
        bitrate > 0 || rtt > Duration::ZERO,
        "a measurement: {bitrate} {rtt:?}"
    );
}

/// Frame `i` of group `seq`: its position, padded to `size` bytes.
fn frame(seq: u64, i: usize, size: usize) -> Bytes {
    let mut text = format!("g{seq}f{i}-").into_bytes();
    text.resize(size, b'x');
    Bytes::from(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_the_relay_every_frame_arrives() {
    const FRAMES: usize = 8;
    const SIZE: usize = 16 * 1024;
    const GROUPS: usize = 5;
    let mut config = moq_fanout::RelayConfig::default();
    config.listen.quic = Some("127.0.0.1:0".parse().unwrap());
    let access = Arc::new(moq_fanout::StaticTokens::from_config(&config.auth));
    let relay = moq_fanout::RelayServer::start(config, access)
        .await
        .expect("relay starts");
    let addr = relay.quic_addr().unwrap();
    let url = format!("moqt://localhost:{}", addr.port());

    // A publisher of ours behind the relay, writing groups of known frames until the
    // viewer is done.
    let broadcast = moq_quinn::Broadcast::new();
    let track = broadcast.create_track("video", 8);
    let router = moq_quinn::Router::new();
    router.publish("/live/blocking", broadcast);
    let client = moq_quinn::Client::new(moq_quinn::ServerTrust::Insecure).unwrap();
    let _publisher = client
        .connect_with(&url, moq_quinn::Config::default(), Some(router))
        .await
        .expect("the publisher connects");
    let writer = tokio::spawn(async move {
        loop {
            let group = track.append_group();
            let seq = group.sequence().0;
            for i in 0..FRAMES {
                group.write_frame(frame(seq, i, SIZE));
            }
            group.finish();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    let what = Watch {
        track: "video".into(),
        groups: GROUPS,
        ..Watch::default()
    };
    let watched = watch_from_a_thread(addr, ServerTrust::Insecure, what).await;
    writer.abort();
    assert_eq!(
        watched.path.as_ref().map(|p| p.to_string()).as_deref(),
        Some("/live/blocking")
    );
    assert_eq!(watched.groups.len(), GROUPS);
    for (seq, frames) in &watched.groups {
        let expected: Vec<Bytes> = (0..FRAMES).map(|i| frame(seq.0, i, SIZE)).collect();
        assert_eq!(frames, &expected, "group {}", seq.0);
    }
    let mut sequences: Vec<u64> = watched.groups.iter().map(|(s, _)| s.0).collect();
    sequences.sort_unstable();
    sequences.dedup();
    assert_eq!(sequences.len(), GROUPS, "every group once");
    let first = watched.groups[0].0.0;
    let expected: Vec<Bytes> = (0..FRAMES).map(|i| frame(first, i, SIZE)).collect();
    assert_eq!(watched.fetched, expected, "the first group fetched again");
    assert!(watched.probe.is_some(), "the relay replies to probes");
}
