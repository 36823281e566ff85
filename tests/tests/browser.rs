//! A real browser against our WebTransport server: headless Chromium loads a page whose
//! script is the npm package `@moq/lite` 0.2.2 (an independent moq-lite-04 client, bundled
//! with esbuild), connects with `serverCertificateHashes`, subscribes to a clock track and
//! prints each frame to the console. The test reads the console from Chromium's stderr and
//! asserts the negotiated protocol and that the frames arrived in order.
//!
//! Needs `chromium` (or `$MOQ_CHROMIUM`) and `npm`; without them the test fails and says
//! so (`scripts/peers` installs both; the test is in the peer suite). The npm packages go to `target/moq-browser/` (`npm ci`
//! from `tests/browser/package-lock.json`), reinstalled only when the lock file changes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use moq_webtransport::{
    Broadcast, Identity, Router, Server, Session, code::ErrorCode, error::CloseReason,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// Frames the page must receive.
const FRAMES: usize = 30;
/// Frames per group.
const GROUP_FRAMES: u64 = 5;
/// The whole browser run, from launch to the last frame.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Runs a command to completion, failing the test with its output if it fails.
async fn run(dir: &Path, program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program}: {e}. The browser test needs Node.js and npm \
                 (apt-get install nodejs npm, or run scripts/peers, which installs them)"
            )
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed in {}:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Installs @moq/lite and esbuild under `target/moq-browser/` and bundles the page script;
/// returns the bundle.
async fn bundle() -> String {
    let source = workspace().join("tests/browser");
    let dir = workspace().join("target/moq-browser");
    std::fs::create_dir_all(&dir).expect("create target/moq-browser");
    let lock = std::fs::read(source.join("package-lock.json")).expect("package-lock.json");
    let stamp = dir.join("installed-lock.json");
    for file in ["package.json", "package-lock.json", "client.js"] {
        std::fs::copy(source.join(file), dir.join(file)).expect("copy the browser sources");
    }
    let installed = std::fs::read(&stamp).ok();
    if installed.as_deref() != Some(lock.as_slice())
        || !dir.join("node_modules/@moq/lite/package.json").exists()
    {
        run(&dir, "npm", &["ci", "--no-audit", "--no-fund"]).await;
        std::fs::write(&stamp, &lock).expect("write the install stamp");
    }
    run(
        &dir,
        "node_modules/.bin/esbuild",
        &[
            "client.js",
            "--bundle",
            "--format=esm",
            "--target=es2022",
            "--log-level=warning",
            "--outfile=bundle.js",
        ],
    )
    .await;
    std::fs::read_to_string(dir.join("bundle.js")).expect("bundle.js")
}

/// Serves the page and the bundle over HTTP on loopback (a secure context for
/// WebTransport), until the test ends.
async fn serve_page(bundle: String) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind http");
    let addr = listener.local_addr().expect("http addr");
    let page = "<!doctype html><meta charset=utf-8><title>moq browser test</title>\
                <script type=module src=/bundle.js></script>";
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let bundle = bundle.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, kind, body) = if path.starts_with("/bundle.js") {
                    ("200 OK", "text/javascript", bundle)
                } else if path == "/" || path.starts_with("/?") {
                    ("200 OK", "text/html", page.to_owned())
                } else {
                    ("404 Not Found", "text/plain", String::new())
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n\
                     cache-control: no-store\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
            });
        }
    });
    addr
}

/// Publishes `/clock`, track `seconds`: groups of [`GROUP_FRAMES`] frames, each frame the
/// next number, every 20 ms, until dropped.
fn publish_clock(router: &Router) -> tokio::task::JoinHandle<()> {
    let broadcast = Broadcast::new();
    let track = broadcast.create_track("seconds", 4);
    router.publish("/clock", broadcast);
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            let group = track.append_group();
            for _ in 0..GROUP_FRAMES {
                group.write_frame(Bytes::from(n.to_string()));
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            group.finish();
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The text of a `MOQTEST` console line in Chromium's log, e.g. from
/// `[...:INFO:CONSOLE(1)] "MOQTEST frame 1 0 5", source: http://... (1)`.
fn console_line(line: &str) -> Option<String> {
    let start = line.find("\"MOQTEST ")? + 1;
    let rest = &line[start..];
    let end = rest.rfind("\", source:").unwrap_or(rest.len());
    Some(rest[..end].trim_start_matches("MOQTEST ").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs Chromium, Node.js and npm; run scripts/peers"]
async fn chromium_subscribes_through_moq_lite() {
    let chromium = moq_tests::chromium();
    let bundle = bundle().await;

    let identity = Identity::self_signed(&["localhost", "127.0.0.1"]).expect("certificate");
    let hash = identity.certificate_hash().expect("certificate hash");
    let router = Router::new();
    let _clock = publish_clock(&router);
    let server = Server::builder("127.0.0.1:0".parse().expect("addr"), identity)
        .router(router)
        .bind()
        .expect("bind");
    let wt_port = server.local_addr().expect("addr").port();
    let (sessions_tx, mut sessions) = tokio::sync::mpsc::unbounded_channel::<Session>();
    let accept = tokio::spawn(async move {
        while let Some(accepted) = server.accept().await {
            match accepted {
                Ok(session) => {
                    let _ = sessions_tx.send(session);
                }
                Err(e) => eprintln!("server: a session failed: {e}"),
            }
        }
    });

    let http = serve_page(bundle).await;
    let page = format!(
        "http://{http}/?url=https://127.0.0.1:{wt_port}/clock&hash={}&broadcast=clock&track=seconds&frames={FRAMES}",
        hex(&hash)
    );
    let profile = std::env::temp_dir().join(format!(
        "moq-chromium-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let mut child = Command::new(&chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&page)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    let stderr = child.stderr.take().expect("stderr");

    let mut log = Vec::new();
    let mut lines = BufReader::new(stderr).lines();
    let outcome = tokio::time::timeout(BROWSER_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(text) = console_line(&line) {
                println!("page: {text}");
                let end = text.starts_with("done")
                    || text.starts_with("error")
                    || text.starts_with("ended");
                log.push(text);
                if end {
                    return true;
                }
            }
        }
        false
    })
    .await;
    // The server side of the browser's session. The page closes its connection after the
    // last frame: that close (a CLOSE_WEBTRANSPORT_SESSION capsule) reaches the server.
    let session = sessions.try_recv().ok();
    let closed = match &session {
        Some(session) if outcome == Ok(true) => {
            tokio::time::timeout(Duration::from_secs(10), session.closed())
                .await
                .ok()
        }
        _ => None,
    };
    println!("server: the browser's session ended: {closed:?}");
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&profile);
    accept.abort();

    assert!(
        outcome.is_ok(),
        "the page did not finish within {BROWSER_TIMEOUT:?}; its console: {log:#?}"
    );
    assert_eq!(
        outcome,
        Ok(true),
        "Chromium's stderr ended early; console: {log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.starts_with("error")),
        "the page failed: {log:#?}"
    );
    assert!(
        log.iter().any(|l| l == "version moq-lite-04"),
        "@moq/lite negotiated moq-lite-04 through wt-protocol: {log:#?}"
    );
    // `frame GROUP INDEX N`: N is the number the publisher wrote, so it also tells which
    // group and index the frame had (groups are numbered from 1).
    let frames: Vec<u64> = log
        .iter()
        .filter_map(|l| l.strip_prefix("frame "))
        .map(|l| {
            let fields: Vec<u64> = l.split(' ').filter_map(|f| f.parse().ok()).collect();
            let [group, index, n] = fields[..] else {
                panic!("a frame line is `frame GROUP INDEX N`: {l:?}");
            };
            assert_eq!(
                (group, index),
                (n / GROUP_FRAMES + 1, n % GROUP_FRAMES),
                "frame {n} arrived in its group at its index"
            );
            n
        })
        .collect();
    assert_eq!(frames.len(), FRAMES, "every frame arrived: {log:#?}");
    for pair in frames.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "frames in order, none missing: {frames:?}"
        );
    }
    assert!(log.contains(&format!("done {FRAMES}")), "{log:#?}");
    // @moq/lite opens a PROBE stream without writing a PROBE and reads RTT replies.
    let rtt = log
        .iter()
        .find_map(|l| l.strip_prefix("probe-rtt "))
        .expect("the page reports the probe RTT");
    assert!(
        rtt.parse::<u64>().is_ok_and(|ms| ms >= 1),
        "the server answered the browser's PROBE stream with an RTT: {rtt:?}"
    );
    let session = session.expect("the server accepted the browser's session");
    let info = session.connection_info();
    assert_eq!(info.transport, "webtransport");
    assert_eq!(info.path.as_deref(), Some("/clock"));
    assert_eq!(info.version.as_deref(), Some("moq-lite-04"));
    assert_eq!(
        closed,
        Some(CloseReason::Peer {
            code: ErrorCode(0),
            reason: String::new()
        }),
        "the browser's close reached the server with code 0"
    );
    println!("server: stats {:?}", session.stats());
}
