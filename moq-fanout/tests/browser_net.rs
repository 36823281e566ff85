//! moq-dev's newest browser library, npm `@moq/net` 0.3.4, in headless Chromium against our
//! WebTransport server and against moq-fanout: it subscribes, publishes and discovers, and
//! negotiates moq-lite-04 with us. It offers, as `WT-Available-Protocols`, moq-lite-05,
//! moq-lite-04, moq-lite-03, moql and IETF moqt-20…15; we select moq-lite-04. Peer suite
//! (`scripts/peers` installs Chromium, Node.js and npm).

mod common;

use std::time::Duration;

use common::*;
use moq_tests::browser::{Page, bundle, hex, run_clock, serve_page};

/// Frames each page reads or writes.
const FRAMES: u64 = 20;
/// Frames per group of our clocks (the page's publisher writes 5 per group too).
const GROUP_FRAMES: u64 = 5;
/// One page's whole run.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The numbers of a page's `frame GROUP INDEX N` lines, checked to run on without a gap.
fn frames_in_order(log: &[String]) -> Vec<u64> {
    let numbers: Vec<u64> = log
        .iter()
        .filter_map(|l| l.strip_prefix("frame "))
        .map(|l| l.rsplit(' ').next().unwrap().parse().expect("a number"))
        .collect();
    assert_eq!(
        numbers.len() as u64,
        FRAMES,
        "every frame arrived: {log:#?}"
    );
    for pair in numbers.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "in order, none missing: {numbers:?}");
    }
    numbers
}

/// What every page must have said: it offered moq-lite-04 among others and got it.
fn negotiated_lite_04(page: &Page) {
    let offered = page
        .log
        .iter()
        .find_map(|l| l.strip_prefix("offered "))
        .unwrap_or_else(|| panic!("the page says what it offers: {:#?}", page.log));
    assert!(offered.contains("moq-lite-04"), "offered: {offered}");
    assert!(
        page.log.iter().any(|l| l == "version moq-lite-04"),
        "negotiated moq-lite-04: {:#?}",
        page.log
    );
    assert!(page.log.iter().any(|l| l == "transport webtransport"));
}

/// Reads `FRAMES` frames of `track` on `session` (the page's publisher): groups of five
/// numbered from 0, payloads 0, 1, 2...
async fn read_page_clock(session: &moq_quinn::Session, path: &str) {
    let mut reader = session.subscribe(path, "seconds", ordered()).unwrap();
    let mut numbers = Vec::new();
    while (numbers.len() as u64) < FRAMES {
        let mut group = within("a group from the page", reader.next_group())
            .await
            .expect("the page serves the track")
            .expect("the track goes on");
        for (index, frame) in read_all(&mut group).await.into_iter().enumerate() {
            let n: u64 = std::str::from_utf8(&frame).unwrap().parse().unwrap();
            assert_eq!(
                (group.sequence().0, index as u64),
                (n / 5, n % 5),
                "frame {n}"
            );
            numbers.push(n);
        }
    }
    assert_eq!(numbers, (0..FRAMES).collect::<Vec<_>>());
}

fn page_url(http: std::net::SocketAddr, wt: &str, hash: &[u8], query: &str) -> String {
    format!("http://{http}/?url={wt}&hash={}&{query}", hex(hash))
}

/// A page that subscribes to `/clock` at `wt` and reads [`FRAMES`] frames in order, having
/// negotiated moq-lite-04.
async fn page_reads_the_clock(http: std::net::SocketAddr, wt: &str, hash: &[u8]) -> Page {
    let query = format!("mode=subscribe&broadcast=clock&track=seconds&frames={FRAMES}");
    let mut page = Page::open("subscribe", &page_url(http, wt, hash, &query));
    assert!(
        page.wait_for(PAGE_TIMEOUT, |l| l.starts_with("done")).await,
        "{:#?}",
        page.log
    );
    negotiated_lite_04(&page);
    frames_in_order(&page.log);
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs Chromium, Node.js and npm; run scripts/peers"]
async fn moq_net_subscribes_publishes_and_discovers_on_our_server() {
    let http = serve_page(bundle("browser-net").await).await;
    let identity = moq_webtransport::Identity::self_signed(&["localhost", "127.0.0.1"]).unwrap();
    let hash = identity.certificate_hash().unwrap();
    let router = moq_webtransport::Router::new();
    let broadcast = moq_quinn::Broadcast::new();
    let _clock = run_clock(broadcast.create_track("seconds", 4), GROUP_FRAMES);
    router.publish("/clock", broadcast);
    let server = moq_webtransport::Server::builder("127.0.0.1:0".parse().unwrap(), identity)
        .router(router)
        .bind()
        .unwrap();
    let wt = format!("https://127.0.0.1:{}/", server.local_addr().unwrap().port());
    let (sessions_tx, mut sessions) = tokio::sync::mpsc::unbounded_channel();
    let accept = tokio::spawn(async move {
        while let Some(accepted) = server.accept().await {
            if let Ok(session) = accepted {
                let _ = sessions_tx.send(session);
            }
        }
    });

    // Discovers our broadcast.
    let mut discover = Page::open(
        "discover",
        &page_url(http, &wt, &hash, "mode=discover&prefix="),
    );
    discover
        .wait_for(PAGE_TIMEOUT, |l| l == "announced clock")
        .await;
    negotiated_lite_04(&discover);
    let _discovering = within("the discover session", sessions.recv())
        .await
        .unwrap();

    // Subscribes to it.
    let _subscribe = page_reads_the_clock(http, &wt, &hash).await;
    let _subscribing = within("the subscribe session", sessions.recv())
        .await
        .unwrap();

    // Publishes to us: our side of its session discovers the broadcast and reads it.
    let query = format!("mode=publish&broadcast=browser&track=seconds&frames={FRAMES}");
    let mut publish = Page::open("publish", &page_url(http, &wt, &hash, &query));
    publish
        .wait_for(PAGE_TIMEOUT, |l| l.starts_with("published"))
        .await;
    negotiated_lite_04(&publish);
    let session = within("the publish session", sessions.recv())
        .await
        .unwrap();
    let mut announcements = session.announced("/").unwrap();
    announced(&mut announcements, "/browser").await;
    read_page_clock(&session, "/browser").await;
    assert!(
        publish
            .wait_for(PAGE_TIMEOUT, |l| l.starts_with("served"))
            .await
    );
    accept.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs Chromium, Node.js and npm; run scripts/peers"]
async fn moq_net_subscribes_publishes_and_discovers_through_moq_fanout() {
    let http = serve_page(bundle("browser-net").await).await;
    let mut config = config();
    config.listen.webtransport = Some("127.0.0.1:0".parse().unwrap());
    config.tls.generate = vec!["localhost".into(), "127.0.0.1".into()];
    let relay = relay(config).await;
    let hash = moq_quinn::transport::certificate_hash(relay.certificate().unwrap());
    let wt = format!(
        "https://127.0.0.1:{}/",
        relay.webtransport_addr().unwrap().port()
    );
    let client = client();
    let url = url(&relay);

    // Our publisher's clock, through the relay, to the page.
    let ours = publisher(&client, &url, "/clock", &["seconds"], 4).await;
    let _clock = run_clock(ours.tracks[0].clone(), GROUP_FRAMES);
    known(&relay, 1).await;
    let _subscribe = page_reads_the_clock(http, &wt, &hash).await;

    // The page's broadcast, through the relay, to our subscriber over native QUIC.
    let query = format!("mode=publish&broadcast=net/cam&track=seconds&frames={FRAMES}");
    let mut publish = Page::open("publish", &page_url(http, &wt, &hash, &query));
    publish
        .wait_for(PAGE_TIMEOUT, |l| l.starts_with("published"))
        .await;
    negotiated_lite_04(&publish);
    until("the relay learns the page's broadcast", || {
        relay
            .relay()
            .broadcasts()
            .iter()
            .any(|b| b.path.as_str() == "net/cam")
    })
    .await;
    let viewer = connect(&client, &url, None).await;
    read_page_clock(&viewer, "/net/cam").await;

    // Discovery through the relay sees both.
    let mut discover = Page::open(
        "discover",
        &page_url(http, &wt, &hash, "mode=discover&prefix="),
    );
    discover
        .wait_for(PAGE_TIMEOUT, |l| l == "announced clock")
        .await;
    if !discover.log.iter().any(|l| l == "announced net/cam") {
        discover
            .wait_for(PAGE_TIMEOUT, |l| l == "announced net/cam")
            .await;
    }
    negotiated_lite_04(&discover);
    drop((publish, discover, viewer, ours));
    relay.shutdown().await;
}
