//! One relay on loopback: fan-out to many subscribers, a slow subscriber beside fast ones,
//! late joiners, FETCH from the cache and upstream, and a publisher that goes away.

mod common;

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use moq_proto::message::{
    Announce, AnnounceInterest, AnnounceStatus, FrameHeader, GroupHeader, StreamType, Subscribe,
    SubscribeOk, SubscribeParams as WireParams, SubscribeResponse,
};
use moq_proto::{BroadcastPath, Limits, Message, SubscribeId};
use moq_quinn::{
    Client, Config, FetchRequest, QuicOptions, ServerTrust, SubscribeParams, TrackEvent, code,
    error::EndReason,
};

const PATH: &str = "/live/demo";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publisher_to_64_subscribers_every_frame_of_every_group_in_order() {
    const SUBSCRIBERS: usize = 64;
    const GROUPS: u64 = 5;
    const FRAMES: usize = 20;
    const SIZE: usize = 1000;
    let relay = relay(config()).await;
    let url = url(&relay);
    let client = client();
    let publisher = publisher(&client, &url, PATH, &["video"], 1).await;
    let track = publisher.tracks[0].clone();
    known(&relay, 1).await;

    let mut tasks = Vec::new();
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..SUBSCRIBERS {
        let (client, url, ready) = (client.clone(), url.clone(), ready_tx.clone());
        tasks.push(tokio::spawn(async move {
            let session = connect(&client, &url, None).await;
            // Discovery through announce interest, then the subscription.
            let (_announcements, announcement) = discover(&session, PATH).await;
            let mut reader = session
                .subscribe(announcement.path().clone(), "video", ordered())
                .expect("subscribe");
            accepted(&reader).await;
            ready.send(()).unwrap();
            let groups = read_groups(&mut reader, GROUPS as usize).await;
            drop(session);
            groups
        }));
    }
    for _ in 0..SUBSCRIBERS {
        within("every subscriber ready", ready.recv())
            .await
            .unwrap();
    }
    // One upstream subscription however many downstream ones (the relay accepts a
    // subscriber before its own upstream subscription is through: wait for that first).
    until("the upstream subscription", || track.subscriber_count() > 0).await;
    assert_eq!(track.subscriber_count(), 1);
    for _ in 0..GROUPS {
        write_group(&track, FRAMES, SIZE);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let want = expected(1, GROUPS, FRAMES, SIZE);
    for task in tasks {
        let got = within("a subscriber's groups", task).await.unwrap();
        assert_eq!(got, want);
    }
}

/// Reads one message of type `M`, after its stream's type byte `ty`, from a raw stream.
async fn read_message<M: Message>(recv: &mut quinn::RecvStream, ty: StreamType) -> M {
    let mut buf = Vec::new();
    loop {
        if let [first, rest @ ..] = buf.as_slice()
            && let Some((message, _)) = M::decode(rest, &Limits::default()).unwrap()
        {
            assert_eq!(*first, ty.to_byte(), "{}'s stream type", M::NAME);
            return message;
        }
        let chunk = within(M::NAME, recv.read_chunk(1024, true))
            .await
            .unwrap()
            .expect("the message's bytes");
        buf.extend_from_slice(&chunk.bytes);
    }
}

/// A group stream's bytes: its type, GROUP, one FRAME.
fn group_bytes(id: SubscribeId, sequence: u64, payload: &'static [u8]) -> BytesMut {
    let mut bytes = BytesMut::new();
    bytes.put_u8(StreamType::Group.to_byte());
    GroupHeader {
        subscribe_id: id,
        sequence: seq(sequence),
    }
    .encode(&mut bytes)
    .unwrap();
    bytes.extend_from_slice(&FrameHeader::encode_frame(payload).unwrap());
    bytes
}

/// Group streams race: the publisher's second group reaches the relay before its first.
/// The first must still reach the subscriber (the relay opens it downstream before the
/// second, so the subscriber's start, which its first group settles, covers it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_group_overtaken_by_the_second_still_reaches_subscribers() {
    let relay = relay(config()).await;
    // A publisher speaking moq-lite-04 by hand, to order its group streams as it likes.
    let (_endpoint, publisher) = raw_connection(
        relay.quic_addr().unwrap(),
        quinn::TransportConfig::default(),
    )
    .await;
    let (mut send, mut recv) = within("the relay's announce interest", publisher.accept_bi())
        .await
        .unwrap();
    let interest: AnnounceInterest = read_message(&mut recv, StreamType::Announce).await;
    let path = BroadcastPath::new(PATH);
    let suffix = interest.prefix.suffix_of(&path).expect("under the prefix");
    let mut announce = BytesMut::new();
    Announce {
        status: AnnounceStatus::Active,
        suffix: suffix.to_owned(),
        hops: Vec::new(),
    }
    .encode(&mut announce)
    .unwrap();
    send.write_all(&announce).await.unwrap();
    known(&relay, 1).await;

    let client = client();
    let session = connect(&client, &url(&relay), None).await;
    let mut reader = session
        .subscribe(PATH, "video", SubscribeParams::default())
        .expect("subscribe");
    let (mut send, mut recv) = within("the relay's subscription", publisher.accept_bi())
        .await
        .unwrap();
    let subscribe: Subscribe = read_message(&mut recv, StreamType::Subscribe).await;
    assert_eq!(subscribe.params.start, None, "from the latest group");
    // The first group will be 1.
    let mut ok = BytesMut::new();
    SubscribeResponse::Ok(SubscribeOk {
        params: WireParams {
            start: Some(seq(1)),
            ..WireParams::default()
        },
    })
    .encode(&mut ok)
    .unwrap();
    send.write_all(&ok).await.unwrap();

    // Group 1's stream is opened first (nothing goes on the wire until it has bytes), then
    // group 2's is sent whole: the relay sees group 2 first.
    let mut first = publisher.open_uni().await.unwrap();
    let mut second = publisher.open_uni().await.unwrap();
    second
        .write_all(&group_bytes(subscribe.id, 2, b"two"))
        .await
        .unwrap();
    second.finish().unwrap();

    // The subscriber reads each group as it comes, in its own task.
    let (groups, mut received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(mut group)) = reader.next_group().await {
            let groups = groups.clone();
            tokio::spawn(async move {
                let frames = group.read_all().await;
                let _ = groups.send((group.sequence().0, frames));
            });
        }
    });
    let (sequence, frames) = within("group 2", received.recv()).await.unwrap();
    assert_eq!(
        (sequence, frames),
        (2, Ok(vec![Bytes::from_static(b"two")]))
    );

    first
        .write_all(&group_bytes(subscribe.id, 1, b"one"))
        .await
        .unwrap();
    first.finish().unwrap();
    let (sequence, frames) = within("group 1, overtaken on its way", received.recv())
        .await
        .unwrap();
    assert_eq!(
        (sequence, frames),
        (1, Ok(vec![Bytes::from_static(b"one")]))
    );
    drop(session);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_loses_old_groups_while_fast_ones_get_everything() {
    const FAST: usize = 3;
    const GROUPS: u64 = 40;
    const FRAMES: usize = 8;
    const SIZE: usize = 8 * 1024;
    const LIMIT: usize = 128 * 1024;
    let mut config = config();
    config.limits.max_queued_bytes_per_subscriber = LIMIT;
    let relay = relay(config).await;
    let url = url(&relay);
    let client = client();
    let publisher = publisher(&client, &url, PATH, &["video"], 1).await;
    let track = publisher.tracks[0].clone();
    known(&relay, 1).await;

    let mut fast = Vec::new();
    for _ in 0..FAST {
        let session = connect(&client, &url, None).await;
        let reader = session.subscribe(PATH, "video", ordered()).unwrap();
        accepted(&reader).await;
        fast.push((session, reader));
    }
    // The slow one: few concurrent streams and a small receive budget, so QUIC flow
    // control pushes back on the relay instead of its buffers absorbing everything.
    let mut options = QuicOptions::default();
    options.max_streams = 2;
    let slow_client = Client::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .trust(ServerTrust::Insecure)
        .options(options)
        .build()
        .unwrap();
    let mut slow_config = Config::default();
    slow_config.max_unread_bytes = 16 * 1024;
    let slow_session = within("connect", slow_client.connect_with(&url, slow_config, None))
        .await
        .unwrap();
    let mut slow = slow_session.subscribe(PATH, "video", ordered()).unwrap();
    accepted(&slow).await;

    let readers: Vec<_> = fast
        .into_iter()
        .map(|(session, mut reader)| {
            tokio::spawn(async move {
                let groups = read_groups(&mut reader, GROUPS as usize).await;
                (session, groups, Instant::now())
            })
        })
        .collect();
    let slow_task = tokio::spawn(async move {
        let (mut frames, mut dropped, mut groups) = (0, 0, 0);
        // It reads until it has been told of a drop and the track then goes quiet (a busy
        // machine only delays the drop notice), for at most WAIT.
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(500), slow.next()).await {
                Ok(Ok(Some(TrackEvent::Group(mut group)))) => {
                    groups += 1;
                    while let Ok(Ok(Some(_))) =
                        tokio::time::timeout(Duration::from_millis(500), group.read_frame()).await
                    {
                        frames += 1;
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                }
                Ok(Ok(Some(TrackEvent::Dropped { start, end, .. }))) => {
                    dropped += end.0 - start.0 + 1
                }
                Ok(Ok(Some(_))) => {}
                Err(_) if dropped == 0 => {}
                _ => break,
            }
        }
        (frames, dropped, groups, slow_session)
    });

    // Publish at 20 ms per group; sample what the relay holds meanwhile.
    let (mut peak_queued, mut peak_cache) = (0u64, 0usize);
    let start = Instant::now();
    for _ in 0..GROUPS {
        write_group(&track, FRAMES, SIZE);
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (_, stats) in relay.relay().peer_stats() {
            peak_queued = peak_queued.max(stats.queued_bytes);
        }
        peak_cache = peak_cache.max(relay.relay().cached_bytes());
    }
    let published = start.elapsed();

    let want = expected(1, GROUPS, FRAMES, SIZE);
    for reader in readers {
        let (_session, groups, done) = within("a fast subscriber", reader).await.unwrap();
        assert_eq!(groups, want, "a fast subscriber gets every frame");
        // A fast subscriber held back by the slow one would wait on reads that never come:
        // it would not finish at all. The bound only has to be finite, and wide enough
        // that a busy machine cannot breach it.
        let lag = done.duration_since(start).saturating_sub(published);
        println!("fast subscriber: {lag:?} behind the publisher");
        assert!(lag < WAIT, "fast subscriber lagged {lag:?}");
    }
    let (frames, dropped, groups, _slow_session) =
        within("the slow subscriber", slow_task).await.unwrap();
    println!(
        "slow subscriber: {frames} frames in {groups} groups, {dropped} groups dropped; \
         relay peak queued {peak_queued} B (limit {LIMIT}), peak cache {peak_cache} B"
    );
    assert!(dropped > 0, "the slow subscriber is told of drops");
    assert!(
        frames < GROUPS as usize * FRAMES,
        "the slow subscriber did fall behind"
    );
    // Bounded: the limit plus the newest group (and one more being opened).
    let group_bytes = (FRAMES * (SIZE + 4) + 16) as u64;
    assert!(
        peak_queued <= LIMIT as u64 + 2 * group_bytes,
        "relay queue peaked at {peak_queued} B"
    );
    assert!(peak_cache <= relay.relay().config().cache.bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_starts_at_the_latest_cached_group_at_once() {
    const FRAMES: usize = 4;
    const SIZE: usize = 100;
    let mut config = config();
    config.cache.groups = 4;
    let relay = relay(config).await;
    let url = url(&relay);
    let client = client();
    let publisher = publisher(&client, &url, PATH, &["video"], 1).await;
    let track = publisher.tracks[0].clone();
    known(&relay, 1).await;

    // An early subscriber keeps the track relayed while groups 1..=6 go by.
    let early = connect(&client, &url, None).await;
    let mut early_reader = early.subscribe(PATH, "video", ordered()).unwrap();
    accepted(&early_reader).await;
    until("the upstream subscription", || track.subscriber_count() > 0).await;
    for _ in 0..6 {
        write_group(&track, FRAMES, SIZE);
    }
    assert_eq!(read_groups(&mut early_reader, 6).await.len(), 6);
    until("the relay caches 3..=6", || {
        relay.relay().broadcasts()[0].tracks == vec![("video".to_owned(), vec![3, 4, 5, 6])]
    })
    .await;

    // The late joiner gets group 6 whole, without waiting for the publisher.
    // (Nothing is published until it has it, so it cannot have waited for the publisher.)
    let late = connect(&client, &url, None).await;
    let mut late_reader = late
        .subscribe(PATH, "video", SubscribeParams::default())
        .unwrap();
    let first = read_groups(&mut late_reader, 1).await;
    assert_eq!(first, expected(6, 1, FRAMES, SIZE));
    // Then it follows live.
    write_group(&track, FRAMES, SIZE);
    assert_eq!(
        read_groups(&mut late_reader, 1).await,
        expected(7, 1, FRAMES, SIZE)
    );

    // A joiner asking for a start gets every cached group from there on.
    let from = connect(&client, &url, None).await;
    let params = SubscribeParams {
        start: Some(seq(5)),
        ..ordered()
    };
    let mut from_reader = from.subscribe(PATH, "video", params).unwrap();
    assert_eq!(
        read_groups(&mut from_reader, 3).await,
        expected(5, 3, FRAMES, SIZE)
    );
    // Still one upstream subscription.
    assert_eq!(track.subscriber_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_is_served_from_the_cache_or_upstream_and_an_evicted_group_is_refused() {
    const FRAMES: usize = 3;
    const SIZE: usize = 50;
    let mut config = config();
    config.cache.groups = 3;
    let relay = relay(config).await;
    let url = url(&relay);
    let client = client();
    // The publisher keeps 5 groups, the relay 3.
    let publisher = publisher(&client, &url, PATH, &["video"], 5).await;
    let track = publisher.tracks[0].clone();
    known(&relay, 1).await;
    let session = connect(&client, &url, None).await;
    let mut reader = session.subscribe(PATH, "video", ordered()).unwrap();
    accepted(&reader).await;
    until("the upstream subscription", || track.subscriber_count() > 0).await;
    for _ in 0..10 {
        write_group(&track, FRAMES, SIZE);
    }
    read_groups(&mut reader, 10).await;
    until("the relay caches 8..=10", || {
        relay.relay().broadcasts()[0].tracks == vec![("video".to_owned(), vec![8, 9, 10])]
    })
    .await;

    let fetch = |group: u64| {
        let session = session.clone();
        async move {
            let mut group = session
                .fetch(FetchRequest::new(PATH, "video", seq(group)))
                .unwrap();
            within("a fetch", group.read_all()).await
        }
    };
    // In the relay's cache.
    let want = |g: u64| -> Vec<Bytes> { (0..FRAMES).map(|f| payload(g, f, SIZE)).collect() };
    assert_eq!(fetch(9).await.unwrap(), want(9));
    // Evicted from the relay but kept by the publisher: forwarded upstream.
    assert_eq!(fetch(6).await.unwrap(), want(6));
    // Evicted everywhere: refused with Fetch code 0x0, passed on by the relay.
    assert_eq!(
        fetch(2).await.unwrap_err(),
        EndReason::PeerReset(code::fetch::INTERNAL)
    );
    // An unknown broadcast: the same code.
    let mut unknown = session
        .fetch(FetchRequest::new("/nobody", "video", seq(1)))
        .unwrap();
    assert_eq!(
        within("a fetch", unknown.read_all()).await.unwrap_err(),
        EndReason::PeerReset(code::fetch::INTERNAL)
    );

    // Served from the cache indeed: with the publisher gone, the cached groups still come.
    drop(publisher);
    let mut cached = session
        .fetch(FetchRequest::new(PATH, "video", seq(10)))
        .unwrap();
    let got = within("a fetch", cached.read_all()).await;
    // Either served (the relay still had the track) or refused once the broadcast ended.
    if let Ok(frames) = got {
        assert_eq!(frames, want(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_leaves_subscribers_see_ended_and_their_subscription_end() {
    let mut config = config();
    config.relay.failover_grace_ms = 300;
    let relay = relay(config).await;
    let url = url(&relay);
    let client = client();
    let publisher = publisher(&client, &url, PATH, &["video", "audio"], 1).await;

    let mut subscribers = Vec::new();
    for _ in 0..3 {
        let session = connect(&client, &url, None).await;
        let (announcements, announcement) = discover(&session, PATH).await;
        let video = session.subscribe(PATH, "video", ordered()).unwrap();
        let audio = session.subscribe(PATH, "audio", ordered()).unwrap();
        accepted(&video).await;
        accepted(&audio).await;
        subscribers.push((session, announcements, announcement, video, audio));
    }
    write_group(&publisher.tracks[0], 2, 10);
    write_group(&publisher.tracks[1], 2, 10);
    for (_, _, _, video, audio) in &mut subscribers {
        read_groups(video, 1).await;
        read_groups(audio, 1).await;
    }

    // The publisher's connection goes away.
    publisher.session.close(code::session::NO_ERROR, "bye");
    drop(publisher);
    for (_, _, announcement, video, audio) in &mut subscribers {
        within("ENDED", announcement.ended()).await;
        assert!(announcement.is_ended());
        for reader in [video, audio] {
            let end = within("the subscription's end", async {
                loop {
                    match reader.next().await {
                        Ok(Some(_)) => continue,
                        other => return other,
                    }
                }
            })
            .await;
            // No publisher came back within the grace: an explicit end, never a silent one.
            assert_eq!(
                end.map(|_| ()),
                Err(EndReason::PeerReset(code::subscribe::NOT_FOUND)),
                "the broadcast's end"
            );
        }
    }
    until("the relay forgets the broadcast", || {
        relay.relay().broadcasts().is_empty()
    })
    .await;
    // A new subscription to it is refused as not found.
    let (session, ..) = &subscribers[0];
    let mut again = session.subscribe(PATH, "video", ordered()).unwrap();
    assert_eq!(
        within("refusal", again.next()).await.unwrap_err(),
        EndReason::PeerReset(code::subscribe::NOT_FOUND)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_subscription_ends_with_the_last_downstream_one() {
    let relay = relay(config()).await;
    let url = url(&relay);
    let client = client();
    let publisher = publisher(&client, &url, PATH, &["video"], 1).await;
    let track = publisher.tracks[0].clone();
    known(&relay, 1).await;
    let a = connect(&client, &url, None).await;
    let b = connect(&client, &url, None).await;
    let ra = a.subscribe(PATH, "video", ordered()).unwrap();
    let rb = b.subscribe(PATH, "video", ordered()).unwrap();
    accepted(&ra).await;
    accepted(&rb).await;
    until("the upstream subscription", || track.subscriber_count() > 0).await;
    assert_eq!(track.subscriber_count(), 1);
    drop(ra);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        track.subscriber_count(),
        1,
        "one downstream subscriber is left"
    );
    drop(rb);
    until("the upstream subscription ends", || {
        track.subscriber_count() == 0
    })
    .await;
    until("the relay drops the fan-out", || {
        relay.relay().broadcasts()[0].tracks.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_goaway_with_the_next_uri_and_drains() {
    let mut config = config();
    config.relay.next_session_uri = "moqt://next.example:4443".to_owned();
    config.relay.drain_timeout_ms = 3000;
    let relay = relay(config).await;
    let url = url(&relay);
    let client = client();
    let leaving = connect(&client, &url, None).await;
    let staying = connect(&client, &url, None).await;
    until("the relay sees both sessions", || {
        relay.relay().peer_count() == 2
    })
    .await;
    let started = Instant::now();
    let stop = tokio::spawn(relay.shutdown());
    for session in [&leaving, &staying] {
        let uri = within("GOAWAY", session.goaway_received()).await;
        assert_eq!(uri.as_deref(), Some("moqt://next.example:4443"));
    }
    // New requests are refused locally once GOAWAY arrived.
    assert!(leaving.subscribe(PATH, "video", ordered()).is_err());
    // One leaves at once; the other stays until the drain timeout closes it (0x10).
    leaving.close(code::session::NO_ERROR, "leaving");
    let reason = within("the relay closes the lingering session", staying.closed()).await;
    println!("lingering session closed: {reason:?}");
    within("shutdown", stop).await.unwrap();
    let took = started.elapsed();
    // At least the drain timeout; at most that plus the wait any step may take here.
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(3) + WAIT,
        "drained for {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_vanishing_mid_group_reaches_subscribers_as_a_reset_never_a_fin() {
    let relay = relay(config()).await;
    let url = url(&relay);
    let client = client();
    let publisher = publisher(&client, &url, PATH, &["video"], 1).await;
    let mut subscribers = Vec::new();
    for _ in 0..2 {
        let session = connect(&client, &url, None).await;
        let (announcements, _) = discover(&session, PATH).await;
        let video = session.subscribe(PATH, "video", ordered()).unwrap();
        accepted(&video).await;
        subscribers.push((session, announcements, video));
    }
    // One frame of a group that is never finished.
    let group = publisher.tracks[0].append_group();
    group.write_frame(payload(1, 0, 10));
    let mut readers = Vec::new();
    for (_, _, video) in &mut subscribers {
        let mut reader = within("group", video.next_group())
            .await
            .expect("ok")
            .expect("group");
        assert_eq!(
            within("first frame", reader.read_frame()).await,
            Ok(Some(payload(1, 0, 10)))
        );
        readers.push(reader);
    }
    // The publisher's connection goes away in the middle of the group.
    publisher.session.close(code::session::NO_ERROR, "gone");
    drop(publisher);
    for mut reader in readers {
        let end = within("the cut group's end", reader.read_frame()).await;
        assert_eq!(
            end,
            Err(EndReason::PeerReset(code::group::PUBLISH_ABORTED)),
            "a truncated group must not end cleanly"
        );
    }
    drop(group);
}
