//! Live interop with moq-net, the draft author's implementation of moq-lite-04, through the
//! PyPI package `moq-rs` 0.5.1 (which wraps the native library `moq-ffi`, pinned to 0.4.18).
//!
//! The package is installed into a virtualenv on first use: `$MOQ_RS_VENV`, by default
//! `target/moq-rs-venv` under the workspace root. If it cannot be installed, every test here
//! fails and says why; none passes by skipping. The peer runs as a Python subprocess
//! (`tests/py/*.py`) that prints one fact per line; every wait is bounded and the process is
//! killed when the test ends.
//!
//! moq-net names broadcasts without slashes (`live/demo`) under the empty root prefix, where
//! we send `/live/demo` and `/` (spec D20): every test crosses that difference. FETCH is
//! never tried (moq-net serves it only from moq-lite-05, D21).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_interop::{ClientOpts, InteropServer, Outcome, STEP_NAMES, ServerOpts, run_client};
use moq_quinn::{
    Broadcast, BroadcastPath, Client, Config, GroupSequence, Identity, Router, Server, ServerTrust,
    Session, SubscribeParams, TrackProducer,
};
use moq_tests::moq_rs::python;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The longest any single wait on the peer may take.
const WAIT: Duration = Duration::from_secs(10);
/// How long a peer script may live at all (it exits by itself after this).
const PEER_LIFETIME: &str = "40";

// ---- The peer process ----

/// A moq-rs script running as a subprocess, read line by line; killed when dropped.
struct Peer {
    name: String,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
    log: PathBuf,
}

impl Peer {
    fn start(script: &str, args: &[&str]) -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let python = python();
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("py")
            .join(script);
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "moq-rs-{}-{}-{}.log",
            script.trim_end_matches(".py"),
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = File::create(&log).expect("a log file for the peer");
        let mut child = Command::new(python)
            .arg(&path)
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        Self {
            name: script.to_owned(),
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
            log,
        }
    }

    /// Fails the test with everything the peer said.
    fn fail(&self, why: &str) -> ! {
        let stderr = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        panic!(
            "{}: {why}\nstdout:\n  {}\nstderr (last lines, full log {}):\n  {}",
            self.name,
            self.seen.join("\n  "),
            self.log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
        );
    }

    /// The next line, within [`WAIT`]; an `ERROR` line or the end of output fails the test.
    async fn next_line(&mut self) -> String {
        let line = match tokio::time::timeout(WAIT, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => self.fail("exited early"),
            Ok(Err(e)) => self.fail(&format!("unreadable output: {e}")),
            Err(_) => self.fail(&format!("said nothing for {WAIT:?}")),
        };
        self.seen.push(line.clone());
        if line.starts_with("ERROR") {
            self.fail("reported an error");
        }
        line
    }

    /// Reads lines until one starts with `word`; returns the rest of it.
    async fn expect(&mut self, word: &str) -> String {
        loop {
            let line = self.next_line().await;
            if let Some(rest) = line.strip_prefix(word) {
                return rest.trim().to_owned();
            }
        }
    }

    /// Collects `FRAME <group> <payload>` lines until `DONE`.
    async fn frames_until_done(&mut self) -> Vec<(u64, String)> {
        let mut frames = Vec::new();
        loop {
            let line = self.next_line().await;
            if line == "DONE" {
                return frames;
            }
            if let Some(rest) = line.strip_prefix("FRAME ") {
                let (group, payload) = rest.split_once(' ').unwrap_or((rest, ""));
                let group = group
                    .parse()
                    .unwrap_or_else(|_| self.fail("a bad FRAME line"));
                frames.push((group, payload.to_owned()));
            }
        }
    }

    /// The address a peer server listens on.
    async fn listening(&mut self) -> String {
        self.expect("LISTENING").await
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // Keep the peer's log only when the test failed.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

// ---- Helpers ----

/// `groups` groups of `frames` frames, `g<i>f<j>`, numbered from `first`.
fn expected(first: u64, groups: u64, frames: u64) -> Vec<(u64, String)> {
    (0..groups)
        .flat_map(|i| (0..frames).map(move |j| (first + i, format!("g{i}f{j}"))))
        .collect()
}

/// Waits until the track has a subscriber, then writes the groups of [`expected`].
async fn publish_when_subscribed(track: &TrackProducer, groups: u64, frames: u64) {
    let start = Instant::now();
    while track.subscriber_count() == 0 {
        assert!(start.elapsed() < WAIT, "moq-rs never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..groups {
        let group = track.append_group();
        for j in 0..frames {
            group.write_frame(Bytes::from(format!("g{i}f{j}")));
        }
        group.finish();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Subscribes from group 0, oldest first, and reads `groups` whole groups. Groups travel on
/// separate streams and may arrive in any order: they are returned sorted by sequence,
/// each with its frames in the order read.
///
/// The max latency is not 0: moq-net reads a Max Latency of 0 as "nothing stale", so it
/// serves only the newest group of a backlog (we read 0 as "no limit", spec §6.2).
async fn read_groups(
    session: &Session,
    path: BroadcastPath,
    track: &str,
    groups: usize,
) -> Vec<(u64, String)> {
    let params = SubscribeParams {
        ordered: true,
        max_latency: Duration::from_secs(30),
        start: Some(GroupSequence(0)),
        ..SubscribeParams::default()
    };
    let mut reader = session.subscribe(path, track, params).expect("subscribe");
    let mut received = Vec::new();
    for _ in 0..groups {
        let mut group = tokio::time::timeout(WAIT, reader.next_group())
            .await
            .expect("a group in time")
            .expect("the subscription works")
            .expect("the track goes on");
        let frames = tokio::time::timeout(WAIT, group.read_all())
            .await
            .expect("the whole group in time")
            .expect("the group completes");
        received.push((group.sequence().0, frames));
    }
    received.sort_by_key(|(sequence, _)| *sequence);
    received
        .into_iter()
        .flat_map(|(sequence, frames)| {
            frames
                .into_iter()
                .map(move |f| (sequence, String::from_utf8_lossy(&f).into_owned()))
        })
        .collect()
}

async fn connect(addr: &str, router: Option<Router>) -> (Client, Session) {
    let client = Client::new(ServerTrust::Insecure).expect("a client endpoint");
    let session = tokio::time::timeout(
        WAIT,
        client.connect_with(&format!("moqt://{addr}"), Config::default(), router),
    )
    .await
    .expect("connect in time")
    .expect("connect to moq-rs");
    (client, session)
}

/// A server of ours publishing `path` with one track; returns its address.
fn our_server(path: &str, track: &str) -> (Server, TrackProducer) {
    let broadcast = Broadcast::new();
    let producer = broadcast.create_track(track, 4);
    let router = Router::new();
    router.publish(path, broadcast);
    let identity = Identity::self_signed(&["localhost"]).expect("a certificate");
    let server = Server::builder("127.0.0.1:0".parse().unwrap(), identity)
        .router(router)
        .bind()
        .expect("bind");
    (server, producer)
}

/// Accepts sessions and keeps them alive until the test ends.
fn keep_accepting(server: Server) -> u16 {
    let port = server.local_addr().expect("bound").port();
    tokio::spawn(async move {
        let mut sessions = Vec::new();
        while let Some(Ok(session)) = server.accept().await {
            sessions.push(session);
        }
    });
    port
}

// ---- The tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs python3-venv and PyPI moq-rs; run scripts/peers"]
async fn moq_rs_server_publishes_our_client_discovers_and_reads_every_frame() {
    let mut peer = Peer::start(
        "server_publish.py",
        &["live/demo", "frames", "3", "4", PEER_LIFETIME],
    );
    let addr = peer.listening().await;
    let (_client, session) = connect(&addr, None).await;

    // Our prefix is `/`; moq-net answers with the slash-less suffix `live/demo`.
    let mut announced = session.announced("/").expect("announce interest");
    let announcement = tokio::time::timeout(WAIT, announced.next())
        .await
        .expect("an announcement in time")
        .expect("the announce stream stays open");
    assert_eq!(announcement.path(), &BroadcastPath::new("/live/demo"));

    let frames = read_groups(&session, announcement.path().clone(), "frames", 3).await;
    // moq-net numbers groups from 0 (D21); every frame of every group arrives, in order.
    assert_eq!(frames, expected(0, 3, 4));
    peer.expect("PUBLISHED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs python3-venv and PyPI moq-rs; run scripts/peers"]
async fn moq_rs_server_publishes_the_blocking_driver_reads_every_frame() {
    let mut peer = Peer::start(
        "server_publish.py",
        // 100 ms apart: moq-net skips to the newest of groups written at once when the
        // subscriber is slow to take them (a loaded machine).
        &["live/demo", "frames", "3", "4", PEER_LIFETIME, "100"],
    );
    let addr: std::net::SocketAddr = peer.listening().await.parse().expect("an address");
    // The driver runs on a thread of its own, with no runtime; moq-net has no FETCH on
    // moq-lite-04 (D21).
    let what = moq_blocking::Watch {
        track: "frames".into(),
        groups: 3,
        fetch: false,
        params: SubscribeParams {
            ordered: true,
            max_latency: Duration::from_secs(30),
            start: Some(GroupSequence(0)),
            ..SubscribeParams::default()
        },
        ..moq_blocking::Watch::default()
    };
    let viewer = std::thread::spawn(move || {
        let conn = moq_blocking::Connection::connect(
            addr,
            "localhost",
            &moq_tls::ServerTrust::Insecure,
            Config::default(),
        )?;
        moq_blocking::watch(conn, &what)
    });
    let watched = tokio::time::timeout(WAIT, tokio::task::spawn_blocking(|| viewer.join()))
        .await
        .expect("the viewer finishes in time")
        .expect("joined")
        .expect("the viewer does not panic")
        .unwrap_or_else(|e| peer.fail(&format!("the viewer failed: {e}")));
    assert_eq!(watched.path, Some(BroadcastPath::new("/live/demo")));
    let mut groups = watched.groups;
    groups.sort_by_key(|(sequence, _)| *sequence);
    let frames: Vec<(u64, String)> = groups
        .iter()
        .flat_map(|(seq, frames)| {
            frames
                .iter()
                .map(move |f| (seq.0, String::from_utf8_lossy(f).into_owned()))
        })
        .collect();
    assert_eq!(frames, expected(0, 3, 4));
    peer.expect("PUBLISHED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs python3-venv and PyPI moq-rs; run scripts/peers"]
async fn our_server_publishes_moq_rs_client_reads_every_frame() {
    let (server, track) = our_server("/live/rust", "frames");
    let port = keep_accepting(server);
    let url = format!("moqt://127.0.0.1:{port}");
    // moq-rs asks for `live/rust` under its empty root prefix.
    let mut peer = Peer::start(
        "client_subscribe.py",
        &[&url, "live/rust", "frames", "12", PEER_LIFETIME],
    );
    peer.expect("CONNECTED").await;
    publish_when_subscribed(&track, 3, 4).await;
    // Our groups count from 1.
    assert_eq!(peer.frames_until_done().await, expected(1, 3, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs python3-venv and PyPI moq-rs; run scripts/peers"]
async fn our_client_publishes_moq_rs_server_reads_every_frame() {
    let mut peer = Peer::start(
        "server_subscribe.py",
        &["live/rust", "frames", "12", PEER_LIFETIME],
    );
    let addr = peer.listening().await;
    let broadcast = Broadcast::new();
    let track = broadcast.create_track("frames", 4);
    let router = Router::new();
    router.publish("/live/rust", broadcast);
    let (_client, session) = connect(&addr, Some(router)).await;

    peer.expect("ANNOUNCED").await;
    publish_when_subscribed(&track, 3, 4).await;
    assert_eq!(peer.frames_until_done().await, expected(1, 3, 4));
    drop(session);
}

/// moq-net 0.4.18 does not answer PROBE on moq-lite-04: its probe handler fails on our
/// request ("probe stream error: short buffer" in its log) and drops the stream. What must
/// hold: our probe ends cleanly within the bound (a reply, if a later version answers, or the
/// refusal), and the session goes on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs python3-venv and PyPI moq-rs; run scripts/peers"]
async fn our_probe_to_moq_rs_ends_cleanly_and_the_session_survives() {
    let mut peer = Peer::start(
        "server_publish.py",
        &["live/probe", "frames", "2", "2", PEER_LIFETIME],
    );
    let addr = peer.listening().await;
    let (_client, session) = connect(&addr, None).await;

    let mut replies = session
        .probe(moq_interop::PROBE_TARGET)
        .expect("open the probe");
    match tokio::time::timeout(WAIT, replies.next()).await {
        Ok(Some(reply)) => println!("moq-rs answered the probe: {reply:?}"),
        Ok(None) => println!("moq-rs refused the probe stream"),
        Err(_) => panic!("the probe neither got a reply nor ended within {WAIT:?}"),
    }
    assert!(!session.is_closed(), "the probe must not end the session");
    // moq-net does not probe us either.
    assert_eq!(session.probe_targets().latest(), None);

    let frames = read_groups(&session, BroadcastPath::new("live/probe"), "frames", 2).await;
    assert_eq!(frames, expected(0, 2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs python3-venv and PyPI moq-rs; run scripts/peers"]
async fn the_interop_binary_as_client_against_moq_rs() {
    let mut peer = Peer::start("scenario_server.py", &[PEER_LIFETIME]);
    let addr = peer.listening().await;

    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(env!("CARGO_BIN_EXE_interop"))
            .args(["client", "--url", &format!("moqt://{addr}"), "--insecure"])
            .args(["--skip", "fetch,probe,goaway"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the interop client ends in time")
    .expect("the interop client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    let expect: Vec<String> = STEP_NAMES
        .iter()
        .enumerate()
        .map(|(n, name)| match n {
            4 | 5 | 8 | 9 => format!("STEP {n} {name}: skipped"),
            _ => format!("STEP {n} {name}: ok"),
        })
        .collect();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expect);
    assert!(output.status.success(), "exit status {:?}", output.status);

    // moq-rs, as the server, read our HELLO (step 7 of the scenario).
    assert_eq!(
        peer.frames_until_done().await,
        vec![(1, "HELLO".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs python3-venv and PyPI moq-rs; run scripts/peers"]
async fn the_interop_server_against_moq_rs_as_client() {
    let server = InteropServer::bind(&ServerOpts {
        addr: "127.0.0.1:0".parse().unwrap(),
        wt_addr: None,
        cert: None,
    })
    .expect("bind");
    let url = format!("moqt://127.0.0.1:{}", server.local_addr().port());
    let (tx, mut steps) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(server.run(tx));

    let mut peer = Peer::start("scenario_client.py", &[&url, PEER_LIFETIME]);
    peer.expect("CONNECTED").await;

    let mut results = Vec::new();
    while results.len() < 4 {
        let step = tokio::time::timeout(Duration::from_secs(30), steps.recv())
            .await
            .expect("the server reports its steps in time")
            .expect("the server is running");
        println!("server: {step}");
        results.push(step);
    }
    let [announce, subscribe, probe, goaway] = &results[..] else {
        unreachable!()
    };
    assert!(announce.is_ok(), "{announce}");
    assert!(subscribe.is_ok(), "{subscribe}");
    // moq-net refuses the probe stream (see above): a clean end, never a hang.
    assert!(
        probe.is_ok()
            || matches!(&probe.outcome, Outcome::Failed(r) if r.contains("without a reply")),
        "{probe}"
    );
    // moq-net acts on GOAWAY: it refuses to follow a redirect off its host and closes the
    // session with code 0, which is what step 9 asks of a client.
    assert!(goaway.is_ok(), "{goaway}");
    let closed = peer.expect("CLOSED").await;
    assert!(closed.contains("GOAWAY"), "{closed}");
    // moq-rs read our HELLO (our group 1), and served its own to us.
    assert!(
        peer.seen.iter().any(|l| l == "FRAME 1 HELLO"),
        "{:?}",
        peer.seen
    );
    assert!(peer.seen.iter().any(|l| l == "SERVED"), "{:?}", peer.seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs python3-venv and PyPI moq-rs; run scripts/peers"]
async fn our_interop_client_reports_moq_rs_limits_as_failures_not_hangs() {
    // Without --skip, the steps moq-rs cannot do fail with a reason, in bounded time.
    let mut peer = Peer::start("scenario_server.py", &[PEER_LIFETIME]);
    let addr = peer.listening().await;
    let opts = ClientOpts::insecure(format!("moqt://{addr}"));
    let start = Instant::now();
    let results = tokio::time::timeout(Duration::from_secs(60), run_client(&opts))
        .await
        .expect("bounded");
    for result in &results {
        println!("client: {result}");
    }
    assert!(start.elapsed() < Duration::from_secs(40));
    for n in [0, 1, 2, 3, 6, 7] {
        assert!(results[n].is_ok(), "{}", results[n]);
    }
    for n in [4, 5, 8, 9] {
        assert!(results[n].is_failed(), "{}", results[n]);
    }
}
