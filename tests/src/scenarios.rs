//! The end-to-end scenario suite, generic over the transport: each function is one test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use moq_quinn::{
    Broadcast, Config, GroupSequence, SubscribeParams, TrackEvent, code, code::ErrorCode,
    error::CloseReason, error::EndReason, error::SessionError, publish::TrackRequest,
    publish::TrackWriter,
};

use crate::{Options, Transport, WAIT, within};

fn frame(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Publishes `path` with one track `name` on `router`, returning its producer.
fn broadcast(router: &moq_quinn::Router, path: &str, name: &str) -> moq_quinn::TrackProducer {
    let broadcast = Broadcast::new();
    let track = broadcast.create_track(name, 8);
    router.publish(path, broadcast);
    track
}

/// Waits until the publisher's side of `track` sees a subscriber, so what is written next
/// reaches it.
async fn has_a_subscriber(track: &moq_quinn::TrackProducer) {
    within("subscriber", async {
        while track.subscriber_count() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Waits until `session` holds no received group and no byte that a reader has not taken.
async fn holds_nothing_unread(session: &moq_quinn::Session) {
    within("unread groups and bytes released", async {
        loop {
            let stats = session.stats();
            if stats.unread_groups == 0 && stats.unread_bytes == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Announcements reach the other side; new ones arrive live; unpublishing ends them.
pub async fn announce_discovery<T: Transport>() {
    let pair = T::connect(Options::default()).await;
    let _a = broadcast(&pair.server_router, "/live/a", "t");
    let mut announced = pair.client.announced("/live/").expect("interest");
    let mut a = within("announcement a", announced.next()).await.expect("a");
    assert_eq!(a.path().to_string(), "/live/a");
    assert!(a.hops().is_empty());
    let _b = broadcast(&pair.server_router, "/live/b", "t");
    let _other = broadcast(&pair.server_router, "/other/c", "t");
    let b = within("announcement b", announced.next()).await.expect("b");
    assert_eq!(
        b.path().to_string(),
        "/live/b",
        "only paths under the prefix"
    );
    assert!(pair.server_router.unpublish(&"/live/a".into()));
    within("a ended", a.ended()).await;
    assert!(!b.is_ended());
    // The same as a stream.
    let _c = broadcast(&pair.server_router, "/live/c", "t");
    let c = within(
        "announcement c",
        futures_util::StreamExt::next(&mut announced),
    )
    .await
    .expect("c");
    assert!(*c.path() == "/live/c");
}

/// Subscribing delivers every frame of every group, in order, from `publisher` to the
/// other side.
async fn deliver(pair: &crate::Pair, server_publishes: bool) {
    let (router, subscriber) = if server_publishes {
        (&pair.server_router, &pair.client)
    } else {
        (&pair.client_router, &pair.server)
    };
    let track = broadcast(router, "/live/cam", "video");
    let mut reader = subscriber
        .subscribe("/live/cam", "video", SubscribeParams::default())
        .expect("subscribe");
    has_a_subscriber(&track).await;
    for g in 0..3 {
        let group = track.append_group();
        for f in 0..5 {
            group.write_frame(frame(&format!("g{g}f{f}")));
        }
        group.finish();
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let mut group = within("group", reader.next_group())
            .await
            .expect("track open")
            .expect("a group");
        let frames = within("frames", group.read_all()).await.expect("frames");
        seen.push((group.sequence(), frames));
    }
    seen.sort_by_key(|(s, _)| *s);
    for (i, (seq, frames)) in seen.iter().enumerate() {
        assert_eq!(*seq, GroupSequence(i as u64 + 1), "groups numbered from 1");
        let want: Vec<Bytes> = (0..5).map(|f| frame(&format!("g{i}f{f}"))).collect();
        assert_eq!(frames, &want);
    }
    let ok = reader.publisher_params().expect("SUBSCRIBE_OK arrived");
    assert!(ok.start.is_some(), "the resolved start arrived");
}

/// Server publishes, client subscribes.
pub async fn subscribe_server_to_client<T: Transport>() {
    let pair = T::connect(Options::default()).await;
    deliver(&pair, true).await;
}

/// Client publishes, server subscribes.
pub async fn subscribe_client_to_server<T: Transport>() {
    let pair = T::connect(Options::default()).await;
    deliver(&pair, false).await;
}

/// A handler that hands each writer to the test.
fn capture(
    router: &moq_quinn::Router,
    path: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<(TrackRequest, TrackWriter)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    router.publish(path, move |request: TrackRequest, writer: TrackWriter| {
        let _ = tx.send((request, writer));
    });
    rx
}

/// SUBSCRIBE_UPDATE reaches the publisher; SUBSCRIBE_DROP reaches the subscriber.
pub async fn update_and_drop<T: Transport>() {
    let pair = T::connect(Options::default()).await;
    let mut writers = capture(&pair.server_router, "/u");
    let mut reader = pair
        .client
        .subscribe("/u", "t", SubscribeParams::default())
        .expect("subscribe");
    let (request, mut writer) = within("request", writers.recv()).await.expect("writer");
    assert_eq!(
        (request.path.to_string(), request.track.as_str()),
        ("/u".into(), "t")
    );
    let new = SubscribeParams {
        priority: 7,
        ordered: true,
        max_latency: Duration::from_millis(500),
        start: Some(GroupSequence(2)),
        end: Some(GroupSequence(9)),
    };
    reader.update(new).expect("update");
    let got = within("update", writer.updated()).await.expect("updated");
    assert_eq!(got, new);
    writer
        .drop_groups(GroupSequence(5), GroupSequence(7), ErrorCode(0))
        .expect("drop");
    match within("drop", reader.next()).await.expect("open") {
        Some(TrackEvent::Dropped { start, end, code }) => {
            assert_eq!(
                (start, end, code),
                (GroupSequence(5), GroupSequence(7), ErrorCode(0))
            );
        }
        other => panic!("expected a drop, got {other:?}"),
    }
    // The range ends at 9: after groups 2..=9 are accounted for, the track ends.
    for seq in [2, 3, 4, 8, 9] {
        let mut g = writer.open_group_at(GroupSequence(seq)).expect("open");
        g.write_frame(frame("x")).expect("write");
        g.finish().expect("finish");
    }
    let mut groups = 0;
    while let Some(event) = within("track", reader.next()).await.expect("no error") {
        if let TrackEvent::Group(mut g) = event {
            assert_eq!(
                within("group", g.read_all()).await.expect("frames"),
                vec![frame("x")]
            );
            groups += 1;
        }
    }
    assert_eq!(groups, 5, "the bounded track ended after its last group");
}

/// A subscription to an unknown broadcast or track fails with Subscribe code 0x3.
pub async fn subscribe_not_found<T: Transport>() {
    let pair = T::connect(Options::default()).await;
    let _t = broadcast(&pair.server_router, "/known", "t");
    for (path, track) in [("/unknown", "t"), ("/known", "nope")] {
        let mut reader = pair
            .client
            .subscribe(path, track, SubscribeParams::default())
            .expect("subscribe");
        let err = within("refusal", reader.next_group())
            .await
            .expect_err("refused");
        assert_eq!(
            err,
            EndReason::PeerReset(code::subscribe::NOT_FOUND),
            "{path} {track}"
        );
        // As a stream of groups: the error once, then the end.
        let mut groups = pair
            .client
            .subscribe(path, track, SubscribeParams::default())
            .expect("subscribe");
        let first = within("refusal", futures_util::StreamExt::next(&mut groups)).await;
        assert!(matches!(first, Some(Err(EndReason::PeerReset(code)))
                if code == code::subscribe::NOT_FOUND));
        assert!(futures_util::StreamExt::next(&mut groups).await.is_none());
    }
}

/// FETCH returns a cached group; an unavailable one fails with Fetch code 0x0.
pub async fn fetch<T: Transport>() {
    let pair = T::connect(Options::default()).await;
    let track = broadcast(&pair.server_router, "/f", "t");
    let group = track.append_group();
    group.write_frame(frame("HELLO"));
    group.write_frame(frame("WORLD"));
    group.finish();
    let mut reader = pair
        .client
        .fetch(moq_quinn::FetchRequest::new("/f", "t", GroupSequence(1)))
        .expect("fetch");
    let frames = within("fetch", reader.read_all()).await.expect("frames");
    assert_eq!(frames, vec![frame("HELLO"), frame("WORLD")]);
    let mut missing = pair
        .client
        .fetch(moq_quinn::FetchRequest::new("/f", "t", GroupSequence(42)))
        .expect("fetch");
    let err = within("fetch refusal", missing.read_all())
        .await
        .expect_err("refused");
    assert_eq!(err, EndReason::PeerReset(code::fetch::INTERNAL));
}

/// A probe gets a reply with a plausible RTT; the peer sees our target.
pub async fn probe<T: Transport>() {
    let pair = T::connect(Options::default()).await;
    let mut targets = pair.server.probe_targets();
    let mut results = pair.client.probe(1_000_000).expect("probe");
    let reply = within("probe reply", results.next())
        .await
        .expect("a reply");
    assert!(
        reply.rtt > Duration::ZERO && reply.rtt < WAIT,
        "loopback rtt {:?}",
        reply.rtt
    );
    assert!(reply.bitrate < 10_000_000_000, "bitrate {}", reply.bitrate);
    assert_eq!(within("target", targets.next()).await, Some(1_000_000));
    assert_eq!(targets.latest(), Some(1_000_000));
    // A second probe call takes the replies over: the first reader ends, the second gets
    // them; both are streams.
    let mut again = pair.client.probe(2_000_000).expect("probe again");
    assert_eq!(within("the first reader ends", results.next()).await, None);
    let reply = within(
        "a reply to the second",
        futures_util::StreamExt::next(&mut again),
    )
    .await
    .expect("a reply");
    assert!(reply.rtt > Duration::ZERO);
    let mut targets = futures_util::StreamExt::boxed(targets.into_stream());
    assert_eq!(
        within(
            "the new target",
            futures_util::StreamExt::next(&mut targets)
        )
        .await,
        Some(2_000_000)
    );
    assert!(pair.client.stats().rtt.is_some());
}

/// GOAWAY carries its URI; new requests fail; the receiver closes and the sender sees it.
pub async fn goaway<T: Transport>() {
    let pair = T::connect(Options::default()).await;
    pair.server
        .goaway("https://next.example.com")
        .expect("goaway");
    let uri = within("goaway", pair.client.goaway_received()).await;
    assert_eq!(uri.as_deref(), Some("https://next.example.com"));
    assert_eq!(
        pair.client
            .subscribe("/x", "t", SubscribeParams::default())
            .expect_err("refused"),
        SessionError::GoingAway
    );
    pair.client.close(code::session::NO_ERROR, "moving");
    match within("server close", pair.server.closed()).await {
        CloseReason::Peer { code, reason } => {
            assert_eq!((code, reason.as_str()), (code::session::NO_ERROR, "moving"));
        }
        other => panic!("expected the client's close, got {other:?}"),
    }
}

/// A GOAWAY whose peer never leaves ends with a close 0x10 after the drain time.
pub async fn goaway_timeout<T: Transport>() {
    let mut options = Options::default();
    options.server.goaway_timeout = Duration::from_millis(300);
    let pair = T::connect(options).await;
    pair.server.goaway("").expect("goaway");
    match within("client sees close", pair.client.closed()).await {
        CloseReason::Peer { code, .. } => assert_eq!(code, code::session::GOAWAY_TIMEOUT),
        other => panic!("expected 0x10, got {other:?}"),
    }
}

/// A close code and reason reach the peer.
pub async fn close_with_code<T: Transport>() {
    let pair = T::connect(Options::default()).await;
    pair.client.close(ErrorCode(0x2), "unauthorized here");
    assert_eq!(
        within("close", pair.server.closed()).await,
        CloseReason::Peer {
            code: ErrorCode(0x2),
            reason: "unauthorized here".into()
        }
    );
}

/// 256 concurrent subscriptions on one connection each receive their group.
pub async fn many_subscriptions<T: Transport>() {
    // Each subscription holds a bidirectional stream: room for 256 of them beside the
    // session's own streams (over WebTransport, the CONNECT stream counts too).
    let mut options = Options::default();
    options.quic.max_streams = 320;
    let pair = T::connect(options).await;
    let broadcast = Broadcast::new();
    let tracks: Vec<_> = (0..256)
        .map(|i| broadcast.create_track(&format!("t{i}"), 2))
        .collect();
    pair.server_router.publish("/many", broadcast);
    let mut readers: Vec<_> = (0..256)
        .map(|i| {
            pair.client
                .subscribe("/many", &format!("t{i}"), SubscribeParams::default())
                .expect("subscribe")
        })
        .collect();
    within("all subscribers", async {
        while tracks.iter().any(|t| t.subscriber_count() == 0) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    for (i, track) in tracks.iter().enumerate() {
        let g = track.append_group();
        g.write_frame(frame(&format!("track {i}")));
        g.finish();
    }
    for (i, reader) in readers.iter_mut().enumerate() {
        let mut g = within("group", reader.next_group())
            .await
            .expect("ok")
            .expect("group");
        let frames = within("frames", g.read_all()).await.expect("frames");
        assert_eq!(frames, vec![frame(&format!("track {i}"))]);
    }
}

/// A frame of 8 MiB arrives intact, read in pieces and joined.
pub async fn large_frame<T: Transport>() {
    let pair = T::connect(Options::default()).await;
    let track = broadcast(&pair.server_router, "/big", "t");
    let mut reader = pair
        .client
        .subscribe("/big", "t", SubscribeParams::default())
        .expect("subscribe");
    has_a_subscriber(&track).await;
    let payload: Bytes = (0..8 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
    let g = track.append_group();
    g.write_frame(payload.clone());
    g.finish();
    let mut group = within("group", reader.next_group())
        .await
        .expect("ok")
        .expect("group");
    // Read in place: the frame spans many QUIC chunks and comes back as their pieces.
    let frame = within("frame", group.read_payload())
        .await
        .expect("ok")
        .expect("frame");
    assert!(frame.chunks().len() > 1, "an 8 MiB frame arrives in pieces");
    assert!(frame == payload, "8 MiB frame intact");
    assert!(
        within("end", group.read_payload())
            .await
            .expect("ok")
            .is_none()
    );
    // The same frame joined into one `Bytes` by `read_frame`.
    let g = track.append_group();
    g.write_frame(payload.clone());
    g.finish();
    let mut group = within("group", reader.next_group())
        .await
        .expect("ok")
        .expect("group");
    let frames = within("frame", group.read_all()).await.expect("frames");
    assert_eq!(frames.len(), 1);
    assert!(frames[0] == payload, "8 MiB frame intact");
}

/// A frame larger than the receiver's ledger (`max_connection_bytes`) is shed while it
/// arrives: its group ends with [`EndReason::Shed`], and the session goes on.
pub async fn a_frame_past_the_ledger_is_shed<T: Transport>() {
    let mut options = Options::default();
    options.client.max_connection_bytes = 2 * 1024 * 1024;
    let pair = T::connect(options).await;
    let track = broadcast(&pair.server_router, "/big", "t");
    let mut reader = pair
        .client
        .subscribe("/big", "t", SubscribeParams::default())
        .expect("subscribe");
    has_a_subscriber(&track).await;
    let g = track.append_group();
    g.write_frame(Bytes::from(vec![7u8; 4 * 1024 * 1024]));
    g.finish();
    let mut group = within("group", reader.next_group())
        .await
        .expect("ok")
        .expect("group");
    let end = within("its end", group.read_frame()).await;
    assert_eq!(end, Err(EndReason::Shed));
    assert!(pair.client.stats().ledger_shed >= 1);
    // A frame that fits still arrives.
    let g = track.append_group();
    g.write_frame(frame("small"));
    g.finish();
    let mut group = within("next group", reader.next_group())
        .await
        .expect("ok")
        .expect("group");
    assert_eq!(
        within("small frame", group.read_frame()).await.expect("ok"),
        Some(frame("small"))
    );
}

/// The peer vanishes mid-stream: every reader ends with an error naming the cause, and
/// nothing hangs.
pub async fn peer_vanishes<T: Transport>() {
    let mut options = Options {
        via_relay: true,
        ..Options::default()
    };
    // Short enough to keep the test quick, long enough (with keep-alives) that a busy
    // machine does not lose the connection before the cut.
    options.quic.idle_timeout = Duration::from_secs(3);
    options.quic.keep_alive = Duration::from_millis(300);
    let mut pair = T::connect(options).await;
    let track = broadcast(&pair.server_router, "/v", "t");
    let mut reader = pair
        .client
        .subscribe("/v", "t", SubscribeParams::default())
        .expect("subscribe");
    let mut announced = pair.client.announced("/").expect("interest");
    let mut announcement = within("announcement", announced.next()).await.expect("a");
    has_a_subscriber(&track).await;
    let g = track.append_group();
    g.write_frame(frame("before"));
    let mut group = within("group", reader.next_group())
        .await
        .expect("ok")
        .expect("group");
    assert_eq!(
        within("frame", group.read_frame()).await.expect("ok"),
        Some(frame("before"))
    );
    // Cut the path: nothing more flows either way.
    pair.cut
        .take()
        .expect("relay")
        .store(true, std::sync::atomic::Ordering::SeqCst);
    g.write_frame(frame("after"));
    let err = within("group end", group.read_frame())
        .await
        .expect_err("group fails");
    assert!(
        matches!(err, EndReason::SessionClosed(CloseReason::Transport(_))),
        "{err:?}"
    );
    let err = within("track end", reader.next_group())
        .await
        .expect_err("track fails");
    assert!(
        matches!(err, EndReason::SessionClosed(CloseReason::Transport(_))),
        "{err:?}"
    );
    within("announcement end", announcement.ended()).await;
    assert!(matches!(
        within("session end", pair.client.closed()).await,
        CloseReason::Transport(_)
    ));
}

/// A subscriber that does not read: the publisher's memory stays bounded and its oldest
/// groups are dropped, with a SUBSCRIBE_DROP the subscriber sees when it reads again.
pub async fn slow_subscriber<T: Transport>() {
    let mut options = Options::default();
    options.server.max_queued_bytes_per_subscription = 1024 * 1024;
    options.client.max_unread_bytes = 512 * 1024;
    let pair = T::connect(options).await;
    let track = broadcast(&pair.server_router, "/slow", "t");
    let mut reader = pair
        .client
        .subscribe("/slow", "t", SubscribeParams::default())
        .expect("subscribe");
    has_a_subscriber(&track).await;
    // 64 groups of 256 KiB = 16 MiB, far above every window and limit.
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    for _ in 0..64 {
        let g = track.append_group();
        for _ in 0..4 {
            g.write_frame(chunk.clone());
        }
        g.finish();
        tokio::task::yield_now().await;
    }
    let stats = within("drops", async {
        loop {
            let stats = pair.server.stats();
            if stats.groups_dropped > 0 {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(stats.groups_dropped > 0);
    // Reading again: drop notices arrive, and the newest group is delivered.
    let mut drops = 0;
    let mut last = GroupSequence(0);
    let deadline = tokio::time::Instant::now() + WAIT;
    // Group 64 and the drop notices travel on different streams: wait for both.
    while (last < GroupSequence(64) || drops == 0) && tokio::time::Instant::now() < deadline {
        match within("track", reader.next()).await.expect("ok") {
            Some(TrackEvent::Dropped { .. }) => drops += 1,
            Some(TrackEvent::Group(mut g)) => {
                let seq = g.sequence();
                if g.read_all().await.is_ok() {
                    last = last.max(seq);
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    assert!(drops > 0, "drop notices reached the subscriber");
    assert_eq!(last, GroupSequence(64), "the newest group was delivered");
}

/// Keeps a value alive; used to hold writers in handlers.
pub type Keep<T> = Arc<Mutex<Vec<T>>>;

/// The default config, for tests that tweak it.
pub fn config() -> Config {
    Config::default()
}

/// A reader that drains groups one at a time never deadlocks on the receive budget, even
/// when newer groups (sent first, newest-first) fill it: the group being read goes on.
pub async fn unread_budget_never_blocks_the_group_being_read<T: Transport>() {
    let mut options = Options::default();
    options.client.max_unread_bytes = 256 * 1024;
    options.server.max_queued_bytes_per_subscription = 1 << 30;
    let pair = T::connect(options).await;
    let track = broadcast(&pair.server_router, "/budget", "t");
    let mut reader = pair
        .client
        .subscribe("/budget", "t", SubscribeParams::default())
        .expect("subscribe");
    has_a_subscriber(&track).await;
    let chunk = Bytes::from(vec![1u8; 16 * 1024]);
    for _ in 0..8 {
        let g = track.append_group();
        for _ in 0..64 {
            g.write_frame(chunk.clone());
        }
        g.finish();
    }
    let mut total = 0;
    for _ in 0..8 {
        let mut g = within("group", reader.next_group())
            .await
            .expect("ok")
            .expect("group");
        let frames = within("whole group", g.read_all()).await.expect("frames");
        assert_eq!(frames.len(), 64, "group {}", g.sequence());
        total += frames.len();
    }
    assert_eq!(total, 8 * 64);
}

/// A track reader dropped with groups it never took: they go with it, and the session holds
/// nothing of them (no bytes, no group waiting for a reader).
pub async fn untaken_groups_go_with_their_track_reader<T: Transport>() {
    let pair = T::connect(Options::default()).await;
    let track = broadcast(&pair.server_router, "/untaken", "t");
    let reader = pair
        .client
        .subscribe("/untaken", "t", SubscribeParams::default())
        .expect("subscribe");
    has_a_subscriber(&track).await;
    for _ in 0..3 {
        let g = track.append_group();
        g.write_frame(Bytes::from(vec![1u8; 1000]));
        g.finish();
    }
    within("groups arrive", async {
        while pair.client.stats().groups_received < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(pair.client.stats().unread_groups, 3, "waiting for a reader");
    drop(reader);
    holds_nothing_unread(&pair.client).await;
}

/// Groups read to their end, and groups dropped half read, leave nothing in the session.
pub async fn read_groups_leave_nothing_behind<T: Transport>() {
    let pair = T::connect(Options::default()).await;
    let track = broadcast(&pair.server_router, "/read", "t");
    let mut reader = pair
        .client
        .subscribe("/read", "t", SubscribeParams::default())
        .expect("subscribe");
    has_a_subscriber(&track).await;
    for _ in 0..4 {
        let g = track.append_group();
        for _ in 0..3 {
            g.write_frame(Bytes::from(vec![2u8; 5000]));
        }
        g.finish();
    }
    for i in 0..4 {
        let mut g = within("group", reader.next_group())
            .await
            .expect("ok")
            .expect("group");
        if i % 2 == 0 {
            assert_eq!(
                within("whole", g.read_all()).await.expect("frames").len(),
                3
            );
        } else {
            within("first frame", g.read_frame())
                .await
                .expect("ok")
                .expect("frame");
        }
    }
    holds_nothing_unread(&pair.client).await;
}

/// One subscription on `path` with group 1 open and its first frame read (so the group's
/// reader has taken its stream over): the pair, the subscriber's track reader, the
/// publisher's track writer, group 1's writer and its reader.
async fn first_frame_read<T: Transport>(
    path: &str,
) -> (
    crate::Pair,
    moq_quinn::TrackReader,
    TrackWriter,
    moq_quinn::publish::GroupWriter,
    moq_quinn::GroupReader,
) {
    let pair = T::connect(Options::default()).await;
    let mut writers = capture(&pair.server_router, path);
    let mut reader = pair
        .client
        .subscribe(path, "t", SubscribeParams::default())
        .expect("subscribe");
    let (_, mut writer) = within("request", writers.recv()).await.expect("writer");
    let mut group_writer = writer.open_group_at(GroupSequence(1)).expect("open");
    group_writer.write_frame(frame("a")).expect("write");
    let mut group = within("group", reader.next_group())
        .await
        .expect("ok")
        .expect("group");
    assert_eq!(
        within("frame", group.read_frame()).await.expect("ok"),
        Some(frame("a"))
    );
    (pair, reader, writer, group_writer, group)
}

/// Waits (bounded) until the publisher's writes to a group fail: the subscriber's
/// STOP_SENDING, or the end of the subscription, reached it.
async fn until_writes_fail(what: &str, group: &mut moq_quinn::publish::GroupWriter) {
    within(what, async {
        while group.write_frame(frame("b")).is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A group the subscriber cancels (after its reader took over the stream) stops at the
/// publisher at once, while the subscription goes on.
pub async fn group_cancel_reaches_publisher<T: Transport>() {
    let (_pair, mut reader, mut writer, mut first, mut group) = first_frame_read::<T>("/c").await;
    group.cancel(code::group::SUBSCRIBE_CANCELLED);
    until_writes_fail("the publisher sees the cancel", &mut first).await;
    // The subscription itself lives on.
    let mut second = writer.open_group_at(GroupSequence(2)).expect("open");
    second.write_frame(frame("c")).expect("write");
    second.finish().expect("finish");
    let mut group = within("next group", reader.next_group())
        .await
        .expect("ok")
        .expect("group");
    assert_eq!(group.sequence(), GroupSequence(2));
    assert_eq!(
        within("frames", group.read_all()).await.expect("ok"),
        vec![frame("c")]
    );
}

/// A group reader the application holds without reading (its stream already taken over
/// from the driver) ends with an error when the subscription ends, and the publisher's
/// writes to that group fail instead of piling up.
pub async fn held_group_reader_ends_on_unsubscribe<T: Transport>() {
    let (_pair, reader, _writer, mut group_writer, mut group) = first_frame_read::<T>("/i").await;
    // Unsubscribe, keeping the group reader (idle).
    drop(reader);
    until_writes_fail("the publisher sees the end", &mut group_writer).await;
    // The held reader reports the end instead of waiting forever.
    let end = within("reader end", group.read_all()).await;
    assert!(end.is_err(), "the group ended early: {end:?}");
}

/// A group reader that found nothing new (so it reads the transport next), and whose
/// group the session then stops while no read is in progress, reports the end instead of
/// waiting for the connection to go.
pub async fn blocked_group_reader_ends_on_unsubscribe<T: Transport>() {
    let (_pair, reader, _writer, mut group_writer, mut group) =
        first_frame_read::<T>("/blocked").await;
    assert!(group.try_read_frame().is_none(), "no second frame was sent");
    drop(reader);
    until_writes_fail("the publisher sees the end", &mut group_writer).await;
    let end = within("reader end", group.read_all()).await;
    assert!(end.is_err(), "the group ended early: {end:?}");
}

/// Serves every fetch with one frame, then drops its writer unfinished.
struct CutFetch;

impl moq_quinn::publish::TrackHandler for CutFetch {
    fn serve_track(&self, _: TrackRequest, writer: TrackWriter) {
        writer.reject(code::subscribe::NOT_FOUND);
    }

    fn serve_fetch(&self, _: moq_quinn::FetchRequest, mut writer: moq_quinn::publish::FetchWriter) {
        writer.write_frame(frame("part")).expect("write");
    }
}

/// A group or fetch whose writer is dropped unfinished ends with RESET_STREAM and the
/// spec's code, never a FIN: the reader sees the frames sent so far, then an error.
pub async fn dropped_writers_never_look_complete<T: Transport>() {
    // A GroupWriter dropped mid-group: Group code 0x5 (publish aborted).
    let (pair, mut reader, mut writer, group_writer, mut group) =
        first_frame_read::<T>("/cut").await;
    drop(group_writer);
    let end = within("cut group", group.read_frame()).await;
    assert_eq!(end, Err(EndReason::PeerReset(code::group::PUBLISH_ABORTED)));
    // The subscription goes on.
    let mut next = writer.open_group_at(GroupSequence(2)).expect("open");
    next.write_frame(frame("b")).expect("write");
    next.finish().expect("finish");
    let mut group = within("next group", reader.next_group())
        .await
        .expect("ok")
        .expect("group");
    assert_eq!(
        within("frames", group.read_all()).await.expect("whole"),
        vec![frame("b")]
    );

    // A fan-out group (TrackProducer) dropped mid-group: the same code.
    let track = broadcast(&pair.server_router, "/cut/producer", "t");
    let mut reader = pair
        .client
        .subscribe("/cut/producer", "t", SubscribeParams::default())
        .expect("subscribe");
    has_a_subscriber(&track).await;
    let producer = track.append_group();
    producer.write_frame(frame("x"));
    let mut group = within("producer group", reader.next_group())
        .await
        .expect("ok")
        .expect("group");
    assert_eq!(
        within("first frame", group.read_frame()).await,
        Ok(Some(frame("x")))
    );
    drop(producer);
    assert_eq!(
        within("cut producer group", group.read_frame()).await,
        Err(EndReason::PeerReset(code::group::PUBLISH_ABORTED))
    );

    // A FetchWriter dropped after one frame: Fetch code 0x0.
    pair.server_router.publish("/cut/fetch", CutFetch);
    let mut fetch = pair
        .client
        .fetch(moq_quinn::FetchRequest::new(
            "/cut/fetch",
            "t",
            GroupSequence(1),
        ))
        .expect("fetch");
    assert_eq!(
        within("cut fetch", fetch.read_all()).await,
        Err(EndReason::PeerReset(code::fetch::INTERNAL))
    );
}

/// With QUIC stream credit for 4 streams, 10 subscriptions still all complete: opens past
/// the limit wait for credit (spec §6.3) and proceed as earlier subscriptions end; none
/// fails.
pub async fn opens_past_the_stream_limit_wait_for_credit<T: Transport>() {
    const TRACKS: usize = 10;
    let mut options = Options::default();
    options.quic.max_streams = 4;
    let pair = T::connect(options).await;
    let broadcast = Broadcast::new();
    let tracks: Vec<_> = (0..TRACKS)
        .map(|i| broadcast.create_track(&format!("t{i}"), 1))
        .collect();
    pair.server_router.publish("/limit", broadcast);
    // One finished group per track, replayed to each subscriber from the cache.
    for track in &tracks {
        let group = track.append_group();
        group.write_frame(frame("x"));
        group.finish();
    }
    let readers: Vec<_> = (0..TRACKS)
        .map(|i| {
            pair.client
                .subscribe("/limit", &format!("t{i}"), SubscribeParams::default())
                .expect("a subscription waits for credit, it is not refused")
        })
        .collect();
    // Each in turn: read its group, then end it, which frees credit for the next.
    for (i, mut reader) in readers.into_iter().enumerate() {
        let mut group = within("a group past the stream limit", reader.next_group())
            .await
            .expect("no error")
            .expect("a group");
        assert_eq!(
            within("frames", group.read_all()).await.expect("whole"),
            vec![frame("x")],
            "track t{i}"
        );
    }
    assert!(!pair.client.is_closed() && !pair.server.is_closed());
}

/// After GOAWAY, subscriptions already open keep delivering for the whole drain; the client
/// then resumes on the server the GOAWAY named, from that server's latest group.
pub async fn subscriptions_continue_through_goaway_and_resume_elsewhere<T: Transport>() {
    // The drain lasts as long as the test needs it, however busy the machine: the client
    // leaves on its own, and the old server's timeout is not what ends it.
    let mut options = Options::default();
    options.server.goaway_timeout = 2 * WAIT;
    let old = T::connect(options).await;
    let track = broadcast(&old.server_router, "/g", "t");
    let mut reader = old
        .client
        .subscribe("/g", "t", SubscribeParams::default())
        .expect("subscribe");
    let first = track.append_group();
    first.write_frame(frame("before"));
    first.finish();
    let mut group = within("first group", reader.next_group())
        .await
        .expect("ok")
        .expect("group");
    assert_eq!(
        within("frames", group.read_all()).await.expect("ok"),
        vec![frame("before")]
    );

    // The second server, where the first one sends its clients.
    let new = T::connect(Options::default()).await;
    let moved = broadcast(&new.server_router, "/g", "t");
    old.server
        .goaway("https://next.example.com/g")
        .expect("goaway");
    let uri = within("goaway", old.client.goaway_received()).await;
    assert_eq!(uri.as_deref(), Some("https://next.example.com/g"));

    // Draining: the open subscription still delivers new groups.
    for i in 0..3 {
        let g = track.append_group();
        g.write_frame(frame(&format!("draining {i}")));
        g.finish();
        let mut group = within("a group during the drain", reader.next_group())
            .await
            .expect("ok")
            .expect("group");
        assert_eq!(
            within("frames", group.read_all()).await.expect("ok"),
            vec![frame(&format!("draining {i}"))]
        );
    }

    // Resume on the new server, then leave the old one.
    let g = moved.append_group();
    g.write_frame(frame("after"));
    g.finish();
    let mut resumed = new
        .client
        .subscribe("/g", "t", SubscribeParams::default())
        .expect("subscribe on the new server");
    let mut group = within("the new server's latest group", resumed.next_group())
        .await
        .expect("ok")
        .expect("group");
    assert_eq!(
        within("frames", group.read_all()).await.expect("ok"),
        vec![frame("after")]
    );
    old.client.close(code::session::NO_ERROR, "moved");
    match within("the old server sees the close", old.server.closed()).await {
        CloseReason::Peer { code, .. } => assert_eq!(code, code::session::NO_ERROR),
        other => panic!("expected the client's close, got {other:?}"),
    }
}
