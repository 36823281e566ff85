//! Relays linked to relays: three in a line and three in a ring (a triangle, every relay
//! linked to both others). Announcements reach every edge exactly once with the hops they
//! passed, nothing loops, subscriptions travel to the relay that has the publisher, and a
//! publisher leaving ends the broadcast everywhere.

mod common;

use std::time::Duration;

use common::*;
use moq_fanout::{RelayConfig, RelayServer};
use moq_quinn::{Announcements, Session, code, error::EndReason};

const PATH: &str = "/live/cam";

fn hop_config(hop: u64, upstreams: Vec<String>) -> RelayConfig {
    let mut config = config();
    config.relay.hop_id = Some(hop);
    config.relay.upstreams = upstreams;
    config.relay.upstream_insecure = true;
    config
}

/// Every announcement (path, hops) an edge sees within `window` after the first.
async fn announcements_within(
    announcements: &mut Announcements,
    window: Duration,
) -> Vec<(String, Vec<u64>)> {
    let mut seen = Vec::new();
    let first = within("an announcement", announcements.next())
        .await
        .expect("announce stream open");
    seen.push(first);
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(a)) = tokio::time::timeout_at(deadline, announcements.next()).await {
        seen.push(a);
    }
    seen.iter()
        .map(|a| (a.path().to_string(), a.hops().iter().map(|h| h.0).collect()))
        .collect()
}

/// An edge subscriber on `relay`, listening under `/`.
async fn edge(relay: &RelayServer) -> (Session, Announcements) {
    let session = connect(&client(), &url(relay), None).await;
    let announcements = session.announced("/").unwrap();
    (session, announcements)
}

/// Waits until every relay has linked to its upstreams (each sees `links` relay peers).
async fn linked(relays: &[&RelayServer], links: &[usize]) {
    for (relay, &n) in relays.iter().zip(links) {
        until("the relay links", || relay.relay().peer_count() >= n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_in_a_line() {
    // r1 <- r2 <- r3 (each dials the one before).
    let r1 = relay(hop_config(1, vec![])).await;
    let r2 = relay(hop_config(2, vec![url(&r1)])).await;
    let r3 = relay(hop_config(3, vec![url(&r2)])).await;
    linked(&[&r1, &r2, &r3], &[1, 2, 1]).await;

    let (_e1, mut a1) = edge(&r1).await;
    let (e2, mut a2) = edge(&r2).await;
    let (e3, mut a3) = edge(&r3).await;

    // A publisher at one end.
    let client = client();
    let publisher = publisher(&client, &url(&r1), PATH, &["video"], 1).await;
    let window = Duration::from_millis(500);
    let path = "/live/cam".to_owned();
    assert_eq!(
        announcements_within(&mut a1, window).await,
        [(path.clone(), vec![1])]
    );
    assert_eq!(
        announcements_within(&mut a2, window).await,
        [(path.clone(), vec![1, 2])]
    );
    assert_eq!(
        announcements_within(&mut a3, window).await,
        [(path.clone(), vec![1, 2, 3])]
    );

    // A subscriber at the other end gets every frame, through one upstream subscription.
    let mut far = e3.subscribe(PATH, "video", ordered()).unwrap();
    let mut mid = e2.subscribe(PATH, "video", ordered()).unwrap();
    accepted(&far).await;
    accepted(&mid).await;
    let track = publisher.tracks[0].clone();
    // The relays accept a subscriber before their own upstream subscription is through.
    until("the upstream subscription", || track.subscriber_count() > 0).await;
    assert_eq!(track.subscriber_count(), 1);
    for _ in 0..3 {
        write_group(&track, 5, 200);
    }
    assert_eq!(read_groups(&mut far, 3).await, expected(1, 3, 5, 200));
    assert_eq!(read_groups(&mut mid, 3).await, expected(1, 3, 5, 200));

    // And the other way: a publisher on r3 reaches a subscriber on r1.
    let back = publisher_on(&r3, "/live/back").await;
    let e1 = connect(&client, &url(&r1), None).await;
    let (_a, announcement) = discover(&e1, "/live/back").await;
    assert_eq!(
        announcement.hops().iter().map(|h| h.0).collect::<Vec<_>>(),
        [3, 2, 1]
    );
    let mut reader = e1.subscribe("/live/back", "video", ordered()).unwrap();
    accepted(&reader).await;
    write_group(&back.tracks[0], 2, 10);
    assert_eq!(read_groups(&mut reader, 1).await, expected(1, 1, 2, 10));

    // The publisher leaves: every edge sees the broadcast end.
    drop(publisher);
    for relay in [&r1, &r2, &r3] {
        until("the broadcast ends everywhere", || {
            relay
                .relay()
                .broadcasts()
                .iter()
                .all(|b| b.path.as_str() != "live/cam")
        })
        .await;
    }
}

async fn publisher_on(relay: &RelayServer, path: &str) -> Publisher {
    publisher(&client(), &url(relay), path, &["video"], 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_in_a_ring_do_not_loop() {
    // r1 <- r2 <- r3 <- r1: each relay is linked to both others, so every broadcast
    // arrives over two routes.
    // r1 must know r3's address before r3 exists: the port is held until r3 binds it (a
    // port found free and released at once was taken by another test meanwhile).
    let r3_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let r3_port = r3_socket.local_addr().unwrap().port();
    let r1 = relay(hop_config(1, vec![format!("moqt://localhost:{r3_port}")])).await;
    let r2 = relay(hop_config(2, vec![url(&r1)])).await;
    let mut c3 = hop_config(3, vec![url(&r2)]);
    c3.listen.quic = Some(format!("127.0.0.1:{r3_port}").parse().unwrap());
    drop(r3_socket);
    let r3 = relay(c3).await;
    linked(&[&r1, &r2, &r3], &[2, 2, 2]).await;

    let (_e1, mut a1) = edge(&r1).await;
    let (e2, mut a2) = edge(&r2).await;
    let (e3, mut a3) = edge(&r3).await;
    let publisher = publisher_on(&r1, PATH).await;

    // Each edge hears of the broadcast exactly once, with the hops of one of the two
    // routes (whichever reached its relay first; a relay does not re-announce a working
    // route just because a shorter one showed up, which edges would see as ENDED + ACTIVE).
    let window = Duration::from_millis(800);
    let path = "/live/cam".to_owned();
    assert_eq!(
        announcements_within(&mut a1, window).await,
        [(path.clone(), vec![1])]
    );
    let seen2 = announcements_within(&mut a2, window).await;
    assert!(
        seen2 == [(path.clone(), vec![1, 2])] || seen2 == [(path.clone(), vec![1, 3, 2])],
        "{seen2:?}"
    );
    let seen3 = announcements_within(&mut a3, window).await;
    assert!(
        seen3 == [(path.clone(), vec![1, 3])] || seen3 == [(path.clone(), vec![1, 2, 3])],
        "{seen3:?}"
    );
    // r2 and r3 learn the longer route through each other (it crosses two more hops: wait
    // for it, bounded, rather than assume it already arrived). Each forwards the first
    // route it learnt: should r2 hear of the broadcast through r3 first, what r2 forwards
    // carries r3's hop and r3 (excluding its own hop) never hears it, so r3 knows only the
    // direct route. One of them, at least, knows both; neither knows more.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let routes: Vec<usize> = [&r2, &r3]
            .iter()
            .map(|relay| {
                let info = relay.relay().broadcasts();
                assert_eq!(info.len(), 1);
                info[0].routes
            })
            .collect();
        assert!(routes.iter().all(|&n| (1..=2).contains(&n)), "{routes:?}");
        if routes.iter().sum::<usize>() >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no relay learnt the second route: {routes:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A subscriber on r3 is served through the shortest route, straight from r1: r2
    // relays nothing.
    let mut s3 = e3.subscribe(PATH, "video", ordered()).unwrap();
    accepted(&s3).await;
    let track = publisher.tracks[0].clone();
    assert!(r2.relay().broadcasts()[0].tracks.is_empty());
    assert_eq!(r1.relay().broadcasts()[0].tracks.len(), 1);
    let mut s2 = e2.subscribe(PATH, "video", ordered()).unwrap();
    accepted(&s2).await;
    until("the upstream subscription", || track.subscriber_count() > 0).await;
    for _ in 0..3 {
        write_group(&track, 4, 100);
    }
    assert_eq!(read_groups(&mut s2, 3).await, expected(1, 3, 4, 100));
    assert_eq!(read_groups(&mut s3, 3).await, expected(1, 3, 4, 100));
    // One track subscription at the publisher, whatever the ring does.
    assert_eq!(track.subscriber_count(), 1);

    // The publisher leaves: the broadcast ends on every relay (no route keeps it alive
    // through the ring) and every edge sees ENDED.
    drop(publisher);
    for relay in [&r1, &r2, &r3] {
        until("the broadcast ends everywhere", || {
            relay.relay().broadcasts().is_empty()
        })
        .await;
    }
    for reader in [&mut s2, &mut s3] {
        let end = within("the subscription's end", async {
            loop {
                match reader.next().await {
                    Ok(Some(_)) => continue,
                    other => return other,
                }
            }
        })
        .await;
        // No publisher came back: an explicit end, never a silent one.
        assert_eq!(
            end.map(|_| ()),
            Err(EndReason::PeerReset(code::subscribe::NOT_FOUND))
        );
    }
    // Nothing comes back later (no ghost announcement circling the ring).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for relay in [&r1, &r2, &r3] {
        assert!(relay.relay().broadcasts().is_empty());
    }

    // A new publisher on r2 is seen on r1 and r3, once each.
    let _p2 = publisher_on(&r2, "/live/two").await;
    let (_x, mut a1b) = edge(&r1).await;
    let (_y, mut a3b) = edge(&r3).await;
    let path = "/live/two".to_owned();
    let seen1 = announcements_within(&mut a1b, window).await;
    assert!(
        seen1 == [(path.clone(), vec![2, 1])] || seen1 == [(path.clone(), vec![2, 3, 1])],
        "{seen1:?}"
    );
    let seen3 = announcements_within(&mut a3b, window).await;
    assert!(
        seen3 == [(path.clone(), vec![2, 3])] || seen3 == [(path.clone(), vec![2, 1, 3])],
        "{seen3:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_link_over_webtransport_too() {
    let mut c1 = hop_config(1, vec![]);
    c1.listen.webtransport = Some("127.0.0.1:0".parse().unwrap());
    let r1 = relay(c1).await;
    let wt = format!(
        "https://localhost:{}/relay",
        r1.webtransport_addr().unwrap().port()
    );
    let r2 = relay(hop_config(2, vec![wt])).await;
    linked(&[&r1, &r2], &[1, 1]).await;

    let publisher = publisher_on(&r1, PATH).await;
    let e2 = connect(&client(), &url(&r2), None).await;
    let (_a, announcement) = discover(&e2, PATH).await;
    assert_eq!(
        announcement.hops().iter().map(|h| h.0).collect::<Vec<_>>(),
        [1, 2]
    );
    let mut reader = e2.subscribe(PATH, "video", ordered()).unwrap();
    accepted(&reader).await;
    write_group(&publisher.tracks[0], 3, 100);
    assert_eq!(read_groups(&mut reader, 1).await, expected(1, 1, 3, 100));
}
