//! A real browser against our WebTransport server: headless Chromium loads a page whose
//! script is the npm package `@moq/lite` 0.2.2 (an independent moq-lite-04 client, bundled
//! with esbuild), connects with `serverCertificateHashes`, subscribes to a clock track and
//! prints each frame to the console. The test reads the console from Chromium's stderr and
//! asserts the negotiated protocol and that the frames arrived in order.
//!
//! Needs `chromium` (or `$MOQ_CHROMIUM`) and `npm`; without them the test fails and says
//! so (`scripts/peers` installs both; the test is in the peer suite). The npm packages go to `target/moq-browser/` (`npm ci`
//! from `tests/browser/package-lock.json`), reinstalled only when the lock file changes.

use std::time::Duration;

use moq_tests::browser::{Page, bundle, hex, run_clock, serve_page};
use moq_webtransport::{
    Broadcast, Identity, Router, Server, Session, code::ErrorCode, error::CloseReason,
};

/// Frames the page must receive.
const FRAMES: usize = 30;
/// Frames per group.
const GROUP_FRAMES: u64 = 5;
/// The whole browser run, from launch to the last frame.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs Chromium, Node.js and npm; run scripts/peers"]
async fn chromium_subscribes_through_moq_lite() {
    let bundle = bundle("browser").await;

    let identity = Identity::self_signed(&["localhost", "127.0.0.1"]).expect("certificate");
    let hash = identity.certificate_hash().expect("certificate hash");
    let router = Router::new();
    let broadcast = Broadcast::new();
    let _clock = run_clock(broadcast.create_track("seconds", 4), GROUP_FRAMES);
    router.publish("/clock", broadcast);
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
    let mut page = Page::open("page", &page);
    let ended = |l: &str| l.starts_with("done") || l.starts_with("ended");
    let outcome =
        tokio::time::timeout(BROWSER_TIMEOUT, page.wait_for(BROWSER_TIMEOUT, ended)).await;
    let log = page.log.clone();
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
    drop(page);
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
