//! A publisher that restarts, is killed, or is replaced: subscribers on the relay follow the
//! new publisher with no code beyond subscribing (docs/relay.md, "Failover").

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use moq_quinn::{Broadcast, Client, GroupSequence, Router, Session, TrackProducer, TrackReader};

const PATH: &str = "/cam";

/// A publisher of `PATH` with one track, "video", writing a group every 50 ms (one frame
/// naming `tag` and the publisher's own group number) until dropped.
struct Camera {
    session: Session,
    track: TrackProducer,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn camera(client: &Client, url: &str, tag: &'static str, first: Option<u64>) -> Camera {
    let broadcast = Broadcast::new();
    let track = broadcast.create_track("video", 1);
    if let Some(first) = first {
        assert!(track.continue_from(GroupSequence(first)));
    }
    let router = Router::new();
    router.publish(PATH, broadcast);
    let session = connect(client, url, Some(router)).await;
    let writer = track.clone();
    let task = tokio::spawn(async move {
        // Bounded: a test lasts well under this.
        for _ in 0..2000 {
            let group = writer.append_group();
            let seq = group.sequence().0;
            group.write_frame(Bytes::from(format!("{tag}{seq}")));
            group.finish();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    Camera {
        session,
        track,
        task,
    }
}

/// The next group's number and frame.
async fn next(reader: &mut TrackReader) -> (u64, String) {
    let mut group = within("a group", reader.next_group())
        .await
        .expect("the subscription goes on")
        .expect("the track goes on");
    let frames = read_all(&mut group).await;
    let frame = String::from_utf8(frames.concat()).expect("text");
    (group.sequence().0, frame)
}

/// Reads until a group from `tag` arrives, within `limit`; returns the groups read, the
/// last one `tag`'s. Every group number is above the one before.
async fn until_from(reader: &mut TrackReader, tag: &str, limit: Duration) -> Vec<(u64, String)> {
    let mut seen: Vec<(u64, String)> = Vec::new();
    let result = tokio::time::timeout(limit, async {
        loop {
            let (seq, frame) = next(reader).await;
            if let Some((last, _)) = seen.last() {
                assert!(
                    seq > *last,
                    "group numbers go on increasing: {seen:?} then {seq}"
                );
            }
            seen.push((seq, frame.clone()));
            if frame.starts_with(tag) {
                return;
            }
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "no group from {tag} within {limit:?}: {seen:?}"
    );
    seen
}

/// A subscriber on the relay, with its first groups from the first publisher.
async fn subscriber(client: &Client, url: &str, camera: &Camera) -> (Session, TrackReader) {
    let session = connect(client, url, None).await;
    let _ = discover(&session, PATH).await;
    let mut reader = session.subscribe(PATH, "video", ordered()).unwrap();
    accepted(&reader).await;
    until("the upstream subscription", || {
        camera.track.subscriber_count() > 0
    })
    .await;
    for _ in 0..3 {
        let (_, frame) = next(&mut reader).await;
        assert!(frame.starts_with('A'), "{frame}");
    }
    (session, reader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_publisher_is_followed_and_its_numbers_continue() {
    let relay = relay(config()).await;
    let url = url(&relay);
    let client = client();
    let a = camera(&client, &url, "A", None).await;
    let (_session, mut reader) = subscriber(&client, &url, &a).await;

    // The publisher stops (a clean close) and starts again, its numbers from 1.
    a.session
        .close(moq_quinn::code::session::NO_ERROR, "restart");
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = camera(&client, &url, "B", None).await;
    until("the new publisher's subscription", || {
        b.track.subscriber_count() > 0
    })
    .await;
    // Within 2 s of its first group, with nothing done on this side, and numbered after
    // the old publisher's.
    let seen = until_from(&mut reader, "B", Duration::from_secs(2)).await;
    let (seq, frame) = seen.last().unwrap();
    assert!(frame.starts_with("B"), "{seen:?}");
    assert!(*seq >= 4, "{seen:?}");
    // And it goes on.
    let (after, frame) = next(&mut reader).await;
    assert!(after > *seq && frame.starts_with('B'), "{after} {frame}");
    assert_eq!(relay.relay().broadcasts().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_publisher_is_replaced_at_once_by_a_new_one() {
    let relay = relay(config()).await;
    let url = url(&relay);
    let client = client();
    // The first publisher reaches the relay through a UDP relay that can be cut: then it
    // vanishes without a close, as after kill -9, and its session lives on at the relay
    // until the idle timeout.
    let (via, cut) = moq_tests::udp_relay(relay.quic_addr().unwrap()).await;
    let a = camera(
        &client,
        &format!("moqt://localhost:{}", via.port()),
        "A",
        None,
    )
    .await;
    let (_session, mut reader) = subscriber(&client, &url, &a).await;

    cut.store(true, std::sync::atomic::Ordering::SeqCst);
    // The new publisher continues the numbering from the wall clock (here: from 1000).
    let b = camera(&client, &url, "B", Some(1000)).await;
    let seen = until_from(&mut reader, "B", Duration::from_secs(2)).await;
    let (seq, _) = seen.last().unwrap();
    assert!(*seq >= 1000, "its own numbers, already above: {seen:?}");
    let (after, frame) = next(&mut reader).await;
    assert!(after > *seq && frame.starts_with('B'), "{after} {frame}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_publisher_loses_the_route_to_a_live_one() {
    let mut config = config();
    config.relay.liveness_ms = 500;
    let relay = relay(config).await;
    let url = url(&relay);
    let client = client();
    // B publishes first; A, newer and with the same hops, takes the broadcast over.
    let b = camera(&client, &url, "B", Some(5000)).await;
    known(&relay, 1).await;
    let (via, cut) = moq_tests::udp_relay(relay.quic_addr().unwrap()).await;
    let a = camera(
        &client,
        &format!("moqt://localhost:{}", via.port()),
        "A",
        Some(6000),
    )
    .await;
    until("the relay knows both routes", || {
        relay
            .relay()
            .broadcasts()
            .first()
            .is_some_and(|b| b.routes == 2)
    })
    .await;
    let (_session, mut reader) = subscriber(&client, &url, &a).await;

    // A goes quiet (no close); within the liveness window B has the subscription back.
    cut.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = until_from(&mut reader, "B", Duration::from_secs(3)).await;
    let (seq, _) = seen.last().unwrap();
    // B's numbers (5000…) are behind A's (6000…): shifted to follow them.
    assert!(*seq > 6000, "{seen:?}");
    let (after, frame) = next(&mut reader).await;
    assert!(after > *seq && frame.starts_with('B'), "{after} {frame}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_publisher_takes_over_and_the_first_can_leave() {
    let relay = relay(config()).await;
    let url = url(&relay);
    let client = client();
    let a = camera(&client, &url, "A", Some(100)).await;
    let (_session, mut reader) = subscriber(&client, &url, &a).await;

    // B comes with the same broadcast: it takes over (the newer route with the same hops).
    let b = camera(&client, &url, "B", Some(200)).await;
    let seen = until_from(&mut reader, "B", Duration::from_secs(2)).await;
    assert!(seen.last().unwrap().0 >= 200, "{seen:?}");
    until("the first publisher's subscription ends", || {
        a.track.subscriber_count() == 0
    })
    .await;
    // A leaves: nothing changes for the subscriber.
    a.session.close(moq_quinn::code::session::NO_ERROR, "bye");
    drop(a);
    for _ in 0..5 {
        let (_, frame) = next(&mut reader).await;
        assert!(frame.starts_with('B'), "{frame}");
    }
    drop(b);
}

/// A relay on `addr`, once its port is free again (a relay that was there just stopped).
async fn relay_on(addr: std::net::SocketAddr, webtransport: bool) -> moq_fanout::RelayServer {
    let mut config = config();
    if webtransport {
        config.listen.quic = None;
        config.listen.webtransport = Some(addr);
    } else {
        config.listen.quic = Some(addr);
    }
    let access = std::sync::Arc::new(moq_fanout::StaticTokens::from_config(&config.auth));
    for _ in 0..100 {
        if let Ok(relay) = moq_fanout::RelayServer::start(config.clone(), access.clone()).await {
            return relay;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the port of the relay that stopped stays taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_restarts_under_clients_with_the_reconnect_policy() {
    relay_restarts(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_restarts_under_webtransport_clients_with_the_reconnect_policy() {
    relay_restarts(true).await;
}

/// A relay restarted under a reconnecting publisher and subscriber, over native QUIC or
/// WebTransport.
async fn relay_restarts(webtransport: bool) {
    use moq_dial::{ConnectionEvent, Dialer, Reconnect, ServerTrust};
    let mut config = config();
    if webtransport {
        config.listen.quic = None;
        config.listen.webtransport = Some("127.0.0.1:0".parse().unwrap());
    }
    let first = relay(config).await;
    let (addr, url) = match webtransport {
        true => {
            let addr = first.webtransport_addr().unwrap();
            (addr, format!("https://localhost:{}/", addr.port()))
        }
        false => {
            let addr = first.quic_addr().unwrap();
            (addr, format!("moqt://localhost:{}", addr.port()))
        }
    };
    let mut policy = Reconnect::default();
    policy.initial_delay = Duration::from_millis(50);
    policy.max_delay = Duration::from_millis(400);
    policy.max_attempts = Some(100);

    // A publisher and a subscriber, each a reconnecting session: no code of their own for
    // the restart.
    let broadcast = Broadcast::new();
    let track = broadcast.create_track("video", 1);
    let router = Router::new();
    router.publish(PATH, broadcast);
    let publisher = Dialer::builder()
        .trust(ServerTrust::Insecure)
        .router(router)
        .build()
        .unwrap()
        .reconnecting(&url, policy.clone());
    let writer = track.clone();
    let writing = tokio::spawn(async move {
        for _ in 0..2000 {
            let group = writer.append_group();
            group.write_frame(Bytes::from(format!("A{}", group.sequence().0)));
            group.finish();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let subscriber = Dialer::new(ServerTrust::Insecure)
        .unwrap()
        .reconnecting(&url, policy);
    within("the first session", subscriber.connected()).await;
    known(&first, 1).await;
    let mut reader = subscriber.subscribe(PATH, "video", ordered());
    let mut last = 0;
    for _ in 0..3 {
        let mut group = within("a group", reader.next_group())
            .await
            .unwrap()
            .unwrap();
        last = group.sequence().0;
        read_all(&mut group).await;
    }

    // The relay goes away (GOAWAY, then closed) and a new one takes its port.
    first.shutdown().await;
    let second = relay_on(addr, webtransport).await;
    // The subscriber's next group, numbered after the last one, within 5 s of the new relay.
    let mut group = tokio::time::timeout(Duration::from_secs(5), reader.next_group())
        .await
        .expect("groups again through the new relay")
        .unwrap_or_else(|e| panic!("the subscription resumes: {e:?}"))
        .expect("the track goes on");
    assert!(
        group.sequence().0 > last,
        "{} after {last}",
        group.sequence().0
    );
    let frame = read_all(&mut group).await.concat();
    assert_eq!(frame, format!("A{}", group.sequence().0).into_bytes());

    // The application was told: connected, disconnected, connected again.
    let mut events = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(100), subscriber.next_event()).await
    {
        events.push(event);
    }
    assert!(
        matches!(
            events.first(),
            Some(ConnectionEvent::Connected { reconnects: 0 })
        ),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ConnectionEvent::Disconnected(_))),
        "{events:?}"
    );
    assert!(
        matches!(
            events.last(),
            Some(ConnectionEvent::Connected { reconnects: 1 })
        ),
        "{events:?}"
    );
    assert_eq!(second.relay().broadcasts().len(), 1);

    // A local close stops the dialing and ends the readers.
    subscriber.close(moq_quinn::code::session::NO_ERROR, "done");
    within("the dialing stops", subscriber.stopped()).await;
    let end = within("the subscription's end", async {
        loop {
            match reader.next_group().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(end.is_err(), "{end:?}");
    writing.abort();
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_subscription_waits_for_a_broadcast_not_published_yet() {
    use moq_dial::{Dialer, Reconnect, ServerTrust};
    let relay = relay(config()).await;
    let url = url(&relay);
    let subscriber = Dialer::new(ServerTrust::Insecure)
        .unwrap()
        .reconnecting(&url, Reconnect::default());
    // As a futures Stream of groups.
    let groups = subscriber.subscribe(PATH, "video", ordered()).into_stream();
    // Refused as not found at first; the broadcast comes 300 ms later.
    let reading = tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut groups = std::pin::pin!(groups);
        let mut group = groups.next().await.unwrap().unwrap();
        read_all(&mut group).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = client();
    let _camera = camera(&client, &url, "A", None).await;
    let frames = tokio::time::timeout(Duration::from_secs(3), reading)
        .await
        .expect("a group once the broadcast is announced")
        .unwrap();
    assert!(frames.concat().starts_with(b"A"));
}
