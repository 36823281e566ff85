//! Our interop client against our interop server over loopback: every step of both roles
//! must pass; skipped steps must say `skipped`, never `ok`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use moq_interop::{
    ClientOpts, InteropServer, Outcome, STEP_NAMES, ServerOpts, StepResult, run_client,
};
use moq_quinn::ServerTrust;
use tokio::sync::mpsc;

/// Far above what a passing run needs (well under a second), far below a hang.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts an interop server on an ephemeral loopback port.
fn start_server() -> (SocketAddr, ServerTrust, mpsc::UnboundedReceiver<StepResult>) {
    let opts = ServerOpts {
        addr: "127.0.0.1:0".parse().unwrap(),
        wt_addr: None,
        cert: None,
    };
    let server = InteropServer::bind(&opts).expect("bind");
    let addr = server.local_addr();
    let trust = ServerTrust::Pinned(server.certificate().expect("a certificate").clone());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(server.run(tx));
    (addr, trust, rx)
}

/// The server's lines for one session (steps 6 to 9).
async fn server_steps(rx: &mut mpsc::UnboundedReceiver<StepResult>) -> Vec<StepResult> {
    let mut steps = Vec::new();
    while steps.len() < 4 {
        let step = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("the server reports its steps in time")
            .expect("the server is running");
        steps.push(step);
    }
    steps
}

fn print(role: &str, steps: &[StepResult]) {
    for step in steps {
        println!("{role}: {step}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_passes_both_ways() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (addr, trust, mut server_rx) = start_server();
        let mut opts = ClientOpts::insecure(format!("moqt://localhost:{}", addr.port()));
        opts.trust = Some(trust);

        let client = run_client(&opts).await;
        let server = server_steps(&mut server_rx).await;
        print("client", &client);
        print("server", &server);

        let numbers: Vec<usize> = client.iter().map(|s| s.step).collect();
        assert_eq!(numbers, (0..STEP_NAMES.len()).collect::<Vec<_>>());
        assert!(client.iter().all(StepResult::is_ok), "client: {client:?}");
        let numbers: Vec<usize> = server.iter().map(|s| s.step).collect();
        assert_eq!(numbers, vec![6, 7, 8, 9]);
        assert!(server.iter().all(StepResult::is_ok), "server: {server:?}");
    })
    .await
    .expect("the run ends in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_passes_over_webtransport() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let opts = ServerOpts {
            addr: "127.0.0.1:0".parse().unwrap(),
            wt_addr: Some("127.0.0.1:0".parse().unwrap()),
            cert: None,
        };
        let server = InteropServer::bind(&opts).expect("bind");
        let wt = server.wt_local_addr().expect("a WebTransport listener");
        let trust = ServerTrust::Pinned(server.certificate().expect("a certificate").clone());
        let (tx, mut server_rx) = mpsc::unbounded_channel();
        tokio::spawn(server.run(tx));

        let mut opts = ClientOpts::insecure(format!("https://localhost:{}/interop", wt.port()));
        opts.trust = Some(trust);
        let client = run_client(&opts).await;
        let server = server_steps(&mut server_rx).await;
        print("client", &client);
        print("server", &server);

        let numbers: Vec<usize> = client.iter().map(|s| s.step).collect();
        assert_eq!(numbers, (0..STEP_NAMES.len()).collect::<Vec<_>>());
        assert!(client.iter().all(StepResult::is_ok), "client: {client:?}");
        let numbers: Vec<usize> = server.iter().map(|s| s.step).collect();
        assert_eq!(numbers, vec![6, 7, 8, 9]);
        assert!(server.iter().all(StepResult::is_ok), "server: {server:?}");
    })
    .await
    .expect("the run ends in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_in_turn_each_get_every_step() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (addr, _, mut server_rx) = start_server();
        let opts = ClientOpts::insecure(format!("moqt://127.0.0.1:{}", addr.port()));
        for _ in 0..2 {
            let client = run_client(&opts).await;
            let server = server_steps(&mut server_rx).await;
            assert!(client.iter().all(StepResult::is_ok), "client: {client:?}");
            assert!(server.iter().all(StepResult::is_ok), "server: {server:?}");
        }
    })
    .await
    .expect("the runs end in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_steps_report_skipped_never_ok() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (addr, _, _server_rx) = start_server();
        let mut opts = ClientOpts::insecure(format!("moqt://127.0.0.1:{}", addr.port()));
        opts.skip = "fetch,probe,goaway".parse().unwrap();

        let client = run_client(&opts).await;
        print("client", &client);
        for step in &client {
            match step.step {
                4 | 5 | 8 | 9 => assert_eq!(step.outcome, Outcome::Skipped, "{step}"),
                _ => assert!(step.is_ok(), "{step}"),
            }
        }
        assert!(
            client
                .iter()
                .any(|s| s.to_string() == "STEP 4 fetch: skipped")
        );
    })
    .await
    .expect("the run ends in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_server_every_step_fails_in_bounded_time() {
    // Nothing listens on this port: connect fails (or times out), the rest say why.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let mut opts = ClientOpts::insecure(format!("moqt://127.0.0.1:{port}"));
    opts.skip = "fetch".parse().unwrap();
    let start = Instant::now();
    let client = tokio::time::timeout(TEST_TIMEOUT, run_client(&opts))
        .await
        .expect("bounded");
    // Connect gives up after its step's 5 s; every later step fails at once.
    println!("every step failed within {:?}", start.elapsed());
    assert_eq!(client.len(), STEP_NAMES.len());
    assert!(client[0].is_failed());
    assert_eq!(client[4].outcome, Outcome::Skipped);
    assert!(client.iter().all(|s| !s.is_ok()));
}

/// Kills the child process when dropped, so a failing test leaves nothing behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_binary_prints_step_lines_and_exits_zero() {
    let exe = env!("CARGO_BIN_EXE_interop");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Child(
        Command::new(exe)
            .args(["server", "--addr", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server"),
    );
    // The server says it listens on stderr once bound.
    let mut line = String::new();
    let stderr = server.0.stderr.take().unwrap();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");

    let client = Command::new(exe)
        .args([
            "client",
            "--url",
            &format!("moqt://127.0.0.1:{port}"),
            "--insecure",
        ])
        .output()
        .expect("run the client");
    let stdout = String::from_utf8_lossy(&client.stdout);
    print!("{stdout}");
    assert!(client.status.success(), "client exit: {:?}", client.status);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 10);
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(*line, format!("STEP {n} {}: ok", STEP_NAMES[n]));
    }

    // The server printed its four lines for that session.
    let mut out = BufReader::new(server.0.stdout.take().unwrap());
    for (n, name) in STEP_NAMES.iter().enumerate().skip(6) {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), format!("STEP {n} {name}: ok"));
    }

    let usage = Command::new(exe)
        .args(["client", "--skip", "relay"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

/// The client publishes `/interop/client` at step 6, not at connect: a server that shows
/// interest at once sees the announcement only after the client's step 5 (its probe), so it
/// cannot run ahead to its GOAWAY while the client still has requests to make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_announces_its_broadcast_at_step_6_not_before() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let identity = moq_quinn::Identity::self_signed(&["localhost"]).expect("identity");
        let trust = ServerTrust::Pinned(identity.leaf().cloned().expect("a certificate"));
        let router = moq_quinn::Router::new();
        router.publish(moq_interop::SERVER_BROADCAST, moq_interop::Hello::new());
        let server = moq_quinn::Server::builder("127.0.0.1:0".parse().unwrap(), identity)
            .config(moq_quinn::Config::default())
            .router(router)
            .bind()
            .expect("bind");
        let port = server.local_addr().expect("addr").port();
        let watcher = tokio::spawn(async move {
            let session = server.accept().await.expect("a session").expect("accepted");
            let mut announced = session.announced("/").expect("interest");
            let probed = session.probe_targets();
            loop {
                let announcement = announced.next().await.expect("announcements");
                if *announcement.path() == moq_interop::CLIENT_BROADCAST {
                    // Whether the client's probe (step 5) had arrived by then.
                    return probed.latest().is_some();
                }
            }
        });
        let mut opts = ClientOpts::insecure(format!("moqt://localhost:{port}"));
        opts.trust = Some(trust);
        opts.skip.goaway = true;
        let client = tokio::spawn(async move { run_client(&opts).await });
        let probe_came_first = watcher.await.expect("the watcher");
        assert!(
            probe_came_first,
            "the client announced /interop/client before its step 5"
        );
        client.abort();
    })
    .await
    .expect("the run ends in time");
}

/// Every step over IPv6 loopback, native QUIC and WebTransport: `moqt://[::1]:port` and
/// `https://[::1]:port/...` (the client's socket is dual-stack).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_passes_over_ipv6() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let opts = ServerOpts {
            addr: "[::1]:0".parse().unwrap(),
            wt_addr: Some("[::1]:0".parse().unwrap()),
            cert: None,
        };
        let server = InteropServer::bind(&opts).expect("bind on [::1]");
        let quic = server.local_addr();
        let wt = server.wt_local_addr().expect("a WebTransport listener");
        assert!(quic.is_ipv6() && wt.is_ipv6());
        let trust = ServerTrust::Pinned(server.certificate().expect("a certificate").clone());
        let (tx, mut server_rx) = mpsc::unbounded_channel();
        tokio::spawn(server.run(tx));
        for url in [
            format!("moqt://[::1]:{}", quic.port()),
            format!("https://[::1]:{}/interop", wt.port()),
        ] {
            let mut opts = ClientOpts::insecure(url.clone());
            opts.trust = Some(trust.clone());
            let client = run_client(&opts).await;
            let server = server_steps(&mut server_rx).await;
            assert!(
                client.iter().all(StepResult::is_ok),
                "{url}: client: {client:?}"
            );
            assert!(
                server.iter().all(StepResult::is_ok),
                "{url}: server: {server:?}"
            );
        }
    })
    .await
    .expect("the runs end in time");
}
