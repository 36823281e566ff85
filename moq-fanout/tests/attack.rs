//! Attacks on the relay by one anonymous client, on loopback: each asserts what the relay
//! may hold for the attacker (its own accounting, and this process's resident memory), that
//! the relay stays responsive, and that a well-behaved client is still served. The classes
//! and their budgets are in docs/security.md.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use moq_fanout::RelayServer;
use moq_proto::message::{StreamType, Subscribe, SubscribeParams as WireParams};
use moq_proto::{BroadcastPath, Message, SubscribeId};
use moq_quinn::{ServerTrust, SessionStats, code, error::EndReason};

const MIB: usize = 1024 * 1024;

/// The attacks run one at a time: they measure this process's resident memory.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// CPU time this process has used (user and system), from `/proc/self/stat`.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which ends with ')'): utime is the 12th, stime
    // the 13th, in clock ticks of 10 ms.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// A raw QUIC connection to the relay, speaking moq-lite-04 by hand.
struct Raw {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

async fn raw(addr: SocketAddr, transport: quinn::TransportConfig) -> Raw {
    let (endpoint, conn) = raw_connection(addr, transport).await;
    Raw {
        _endpoint: endpoint,
        conn,
    }
}

impl Raw {
    /// Sends SUBSCRIBE (id 1) for `path` `track` on a new stream; the stream is returned
    /// to be held, never read.
    async fn subscribe(&self, path: &str, track: &str) -> (quinn::SendStream, quinn::RecvStream) {
        let (mut send, recv) = self.conn.open_bi().await.unwrap();
        let mut msg = BytesMut::new();
        msg.put_u8(StreamType::Subscribe.to_byte());
        Subscribe {
            id: SubscribeId(1),
            path: BroadcastPath::new(path),
            track: track.into(),
            params: WireParams::default(),
        }
        .encode(&mut msg)
        .unwrap();
        send.write_all(&msg).await.unwrap();
        (send, recv)
    }
}

/// The highest ledger peak among the relay's peers.
fn ledger_peak(stats: &[(moq_fanout::PeerId, SessionStats)]) -> u64 {
    stats
        .iter()
        .map(|(_, s)| s.ledger_peak_total)
        .max()
        .unwrap_or(0)
}

/// The relay's accounting for its peer at `index` in the order they connected.
fn attacker_stats(relay: &RelayServer, index: usize) -> Option<SessionStats> {
    let stats = relay.relay().peer_stats();
    stats.into_iter().nth(index).map(|(_, s)| s)
}

/// A well-behaved client subscribes to the live broadcast and gets a whole new group: the
/// relay is still serving. Returns how long the group took (printed by the callers; the
/// bound is [`WAIT`], so that a machine busy with other work cannot fail it, while a relay
/// that stopped serving still does).
async fn good_client_is_served(url: &str, track: &moq_quinn::TrackProducer) -> Duration {
    let client = client();
    let session = connect(&client, url, None).await;
    let mut reader = session.subscribe(PATH, "video", ordered()).unwrap();
    accepted(&reader).await;
    let start = Instant::now();
    let seq = write_group(track, 2, 100);
    loop {
        let mut group = within("a good client to be served", reader.next_group())
            .await
            .expect("the subscription lives")
            .expect("a group");
        if group.sequence().0 == seq {
            let frames = read_all(&mut group).await;
            assert_eq!(frames.len(), 2);
            return start.elapsed();
        }
    }
}

const PATH: &str = "/live/good";

/// The relay under attack, its URL, a well-behaved client, and a publisher of PATH (track
/// "video") through it.
struct Target {
    relay: RelayServer,
    url: String,
    good: moq_quinn::Client,
    publisher: Publisher,
}

async fn target(config: moq_fanout::RelayConfig) -> Target {
    let relay = relay(config).await;
    let url = url(&relay);
    let good = client();
    let publisher = publisher(&good, &url, PATH, &["video"], 1).await;
    Target {
        relay,
        url,
        good,
        publisher,
    }
}

/// `ATTACK_FRAMES` from the environment (to scale a flood up), else `default`.
fn attack_frames(default: usize) -> usize {
    std::env::var("ATTACK_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A subscriber of the flood track, accepted by the relay.
async fn flood_subscriber(
    good: &moq_quinn::Client,
    url: &str,
) -> (moq_quinn::Session, moq_quinn::TrackReader) {
    let session = connect(good, url, None).await;
    let reader = session.subscribe(PATH, "flood", ordered()).unwrap();
    accepted(&reader).await;
    (session, reader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_control_messages_are_bounded_per_connection() {
    let _serial = SERIAL.lock().await;
    let mut config = config();
    config.limits.max_control_bytes_per_session = MIB;
    let Target {
        relay,
        url,
        good: _,
        publisher,
    } = target(config).await;
    known(&relay, 1).await;

    // 100 streams, each a SUBSCRIBE whose length says 60 000 bytes, of which 30 000 are
    // sent: 3 MB offered, none of it ever a whole message.
    let before = rss_kib();
    let cpu_before = cpu();
    let attacker = raw(
        relay.quic_addr().unwrap(),
        quinn::TransportConfig::default(),
    )
    .await;
    let mut head = vec![StreamType::Subscribe.to_byte()];
    head.extend_from_slice(&[0x80, 0x00, 0xea, 0x60]);
    head.extend(std::iter::repeat_n(0u8, 30_000));
    let mut streams = Vec::new();
    for _ in 0..100 {
        let (mut send, recv) = attacker.conn.open_bi().await.unwrap();
        send.write_all(&head).await.unwrap();
        streams.push((send, recv));
    }
    until("the relay cancels what passes the budget", || {
        attacker_stats(&relay, 1).is_some_and(|s| s.streams_abandoned >= 60)
    })
    .await;
    let stats = attacker_stats(&relay, 1).unwrap();
    let grown = rss_kib().saturating_sub(before);
    println!(
        "half-sent: {} streams cancelled, {} bytes held, RSS +{} KiB, {:?} of CPU",
        stats.streams_abandoned,
        stats.control_bytes_buffered,
        grown,
        cpu() - cpu_before
    );
    assert!(stats.control_bytes_buffered as usize <= MIB);
    assert!(stats.streams_abandoned >= 60);
    assert!(grown < 32 * 1024, "RSS grew {grown} KiB");
    // The attacker's connection itself goes on (a limit, not a protocol error).
    assert!(attacker.conn.close_reason().is_none());
    good_client_is_served(&url, &publisher.tracks[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_streams_are_cut_after_the_timeout() {
    let _serial = SERIAL.lock().await;
    let mut config = config();
    config.limits.incomplete_message_timeout_ms = 500;
    let Target {
        relay,
        url,
        good: _,
        publisher,
    } = target(config).await;
    known(&relay, 1).await;

    let attacker = raw(
        relay.quic_addr().unwrap(),
        quinn::TransportConfig::default(),
    )
    .await;
    let mut streams = Vec::new();
    // Ten silent streams, and ten that send a SUBSCRIBE one byte every 100 ms.
    for _ in 0..10 {
        let (mut send, recv) = attacker.conn.open_bi().await.unwrap();
        // The stream reaches the relay only with its first byte: a bare type byte.
        send.write_all(&[StreamType::Subscribe.to_byte()])
            .await
            .unwrap();
        streams.push((send, recv));
    }
    let subscribe = Subscribe {
        id: SubscribeId(1),
        path: BroadcastPath::new(PATH),
        track: "video".into(),
        params: WireParams::default(),
    }
    .to_bytes()
    .unwrap();
    let mut trickled = Vec::new();
    for _ in 0..10 {
        let (mut send, recv) = attacker.conn.open_bi().await.unwrap();
        send.write_all(&[StreamType::Subscribe.to_byte()])
            .await
            .unwrap();
        trickled.push((send, recv));
    }
    let start = Instant::now();
    for i in 0..subscribe.len() - 1 {
        if start.elapsed() > Duration::from_secs(2) {
            break;
        }
        for (send, _) in &mut trickled {
            let _ = send.write_all(&subscribe[i..i + 1]).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until("every slow stream is cut", || {
        attacker_stats(&relay, 1).is_some_and(|s| s.streams_abandoned >= 20)
    })
    .await;
    println!("slowloris: cut after {} ms", ms(start));
    // Each was reset with Subscribe code 0x5 (timeout).
    let (_, recv) = &mut streams[0];
    let mut buf = [0u8; 8];
    let err = within("the reset", recv.read(&mut buf)).await.unwrap_err();
    assert_eq!(
        err,
        quinn::ReadError::Reset(quinn::VarInt::from_u64(code::subscribe::TIMEOUT.0).unwrap())
    );
    good_client_is_served(&url, &publisher.tracks[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_costs_at_most_its_budget() {
    let _serial = SERIAL.lock().await;
    const SESSION: usize = 2 * MIB;
    let mut config = config();
    config.limits.max_queued_bytes_per_subscriber = MIB;
    config.limits.max_queued_bytes_per_session = SESSION;
    let Target {
        relay,
        url,
        good,
        publisher,
    } = target(config).await;
    known(&relay, 1).await;
    let track = publisher.tracks[0].clone();

    // The attacker subscribes with small QUIC windows and never reads a byte.
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(quinn::VarInt::from_u32(64 * 1024));
    transport.receive_window(quinn::VarInt::from_u32(256 * 1024));
    let attacker = raw(relay.quic_addr().unwrap(), transport).await;
    let _subscription = attacker.subscribe(PATH, "video").await;

    // A good subscriber reads everything.
    let session = connect(&good, &url, None).await;
    let mut reader = session.subscribe(PATH, "video", ordered()).unwrap();
    accepted(&reader).await;
    until("both subscriptions reach the relay", || {
        relay.relay().peer_stats().len() >= 3
    })
    .await;
    // The good subscriber's progress paces the publisher: it is never more than two groups
    // behind (well within its budget), so however slow the machine it is owed every group,
    // while the attacker, who reads nothing, falls behind without end.
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress = received.clone();
    let good_task = tokio::spawn(async move {
        let mut groups = 0;
        while let Ok(Ok(Some(mut group))) = tokio::time::timeout(WAIT, reader.next_group()).await {
            read_all(&mut group).await;
            groups += 1;
            progress.store(groups, std::sync::atomic::Ordering::Release);
            if groups == 200 {
                break;
            }
        }
        groups
    });

    // Publish 40 MB: 200 groups of 8 frames of 25 KB, a group every 10 ms at most.
    let before = rss_kib();
    let cpu_before = cpu();
    let (mut peak_unsent, mut peak_rss) = (0u64, 0u64);
    for i in 0..200usize {
        until("the good subscriber to keep up", || {
            received.load(std::sync::atomic::Ordering::Acquire) + 2 >= i
        })
        .await;
        write_group(&track, 8, 25_000);
        tokio::time::sleep(Duration::from_millis(10)).await;
        for (_, stats) in relay.relay().peer_stats() {
            peak_unsent = peak_unsent.max(stats.unsent_bytes);
        }
        peak_rss = peak_rss.max(rss_kib());
    }
    let dropped: u64 = relay
        .relay()
        .peer_stats()
        .iter()
        .map(|(_, s)| s.groups_dropped)
        .sum();
    let grown = peak_rss.saturating_sub(before);
    println!(
        "never-reading subscriber: peak unsent {peak_unsent} bytes, {dropped} groups dropped, \
         RSS +{grown} KiB, {:?} of CPU",
        cpu() - cpu_before
    );
    // What the relay holds for any one peer: its budget plus the group being written.
    assert!(peak_unsent as usize <= SESSION + 8 * 25_100);
    assert!(dropped > 50, "{dropped} groups dropped");
    assert!(
        grown < 40 * 1024,
        "RSS grew {grown} KiB while 40 MB were published"
    );
    let groups = good_task.await.unwrap();
    assert_eq!(
        groups, 200,
        "the good subscriber got {groups} of 200 groups"
    );
    drop(attacker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_empty_frames_leaves_the_relay_responsive() {
    let _serial = SERIAL.lock().await;
    // ATTACK_FRAMES scales the flood (the closing figures use 2 000 000 in release).
    let frames_sent = attack_frames(300_000);
    const MAX: usize = 100_000;
    let mut config = config();
    config.limits.max_frames_per_group = MAX;
    let Target {
        relay,
        url,
        good,
        publisher,
    } = target(config).await;
    let flood = publisher.broadcast.create_track("flood", 1);
    known(&relay, 1).await;

    let (_session, mut reader) = flood_subscriber(&good, &url).await;
    let start = Instant::now();
    let cpu_before = cpu();
    let group = flood.append_group();
    // The limit's worth of frames first; the rest once the subscriber has read them all,
    // so what it reads does not depend on how far it got before the relay cut the group
    // (a reset discards what the subscriber has not read yet).
    let (read_max, all_read) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let mut all_read = Some(all_read);
        for i in 0..frames_sent {
            if i == MAX
                && let Some(all_read) = all_read.take()
            {
                let _ = all_read.await;
            }
            group.write_frame(Bytes::new());
            if i % 1000 == 0 {
                tokio::task::yield_now().await;
            }
        }
        group.finish();
    });
    let mut group = within("the flood group", reader.next_group())
        .await
        .unwrap()
        .unwrap();
    let counter = tokio::spawn(async move {
        let mut read_max = Some(read_max);
        let mut frames = 0;
        let end = loop {
            match within("flood frames", group.read_frame()).await {
                Ok(Some(_)) => frames += 1,
                other => break other,
            }
            if frames == MAX
                && let Some(tx) = read_max.take()
            {
                let _ = tx.send(());
            }
        };
        (frames, end)
    });
    // While it runs, a good client is served.
    let served = good_client_is_served(&url, &publisher.tracks[0]).await;
    let (frames, end) = within("the flood's end", counter).await.unwrap();
    writer.await.unwrap();
    println!(
        "empty-frame flood: {frames_sent} sent, {frames} relayed in {} ms, {:?} of CPU (whole \
         process), good client served in {served:?}",
        ms(start),
        cpu() - cpu_before
    );
    // The group is cut at the limit, and says so.
    assert_eq!(frames, MAX);
    assert_eq!(end, Err(EndReason::PeerReset(code::group::PUBLISH_ABORTED)));
    assert!(relay.relay().cached_bytes() <= 8 * MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announce_flood_costs_each_idle_connection_little() {
    let _serial = SERIAL.lock().await;
    const BROADCASTS: usize = 1000;
    const PATH_LEN: usize = 4000;
    const IDLE: usize = 16;
    let mut flood_config = config();
    flood_config.limits.max_announcements_per_session = 2 * BROADCASTS;
    let relay = relay(flood_config).await;
    let url = url(&relay);
    let attacker = client();
    // One publisher announces 1000 broadcasts with 4000-byte paths: 4 MB of paths.
    let router = moq_quinn::Router::new();
    for i in 0..BROADCASTS {
        let mut path = format!("/flood/{i}/");
        path.push_str(&"x".repeat(PATH_LEN - path.len()));
        router.publish(path.as_str(), moq_quinn::Broadcast::new());
    }
    let _publisher = connect(&attacker, &url, Some(router)).await;
    known(&relay, BROADCASTS).await;

    // Idle connections: each must not copy every path.
    let before = rss_kib();
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(connect(&attacker, &url, None).await);
    }
    until("the relay has every peer", || {
        relay.relay().peer_count() == IDLE + 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per_connection = rss_kib().saturating_sub(before) / IDLE as u64;
    println!("announce flood: RSS +{per_connection} KiB per idle connection");
    // The paths alone are 4 MB: a copy per connection would show.
    assert!(
        per_connection < 1024,
        "{per_connection} KiB per idle connection"
    );

    // A publisher cannot announce more than its limit.
    let mut small_config = config();
    small_config.limits.max_announcements_per_session = 50;
    let small = relay_with(small_config).await;
    let router = moq_quinn::Router::new();
    for i in 0..80 {
        router.publish(format!("/many/{i}").as_str(), moq_quinn::Broadcast::new());
    }
    let _many = connect(&attacker, &common::url(&small), Some(router)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let known = small.relay().broadcasts().len();
    println!("announce limit: {known} of 80 broadcasts kept with a limit of 50");
    assert!(known <= 50, "{known} broadcasts kept");
}

async fn relay_with(config: moq_fanout::RelayConfig) -> RelayServer {
    relay(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_frames_spread_over_groups_are_relayed_and_the_relay_stays_responsive() {
    let _serial = SERIAL.lock().await;
    // Groups of 50 000 empty frames (under the per-group cap): every frame is relayed.
    // ATTACK_FRAMES scales the total (the closing figures use 2 000 000 in release).
    const PER_GROUP: usize = 50_000;
    let total = attack_frames(200_000);
    let groups = total.div_ceil(PER_GROUP);
    let Target {
        relay,
        url,
        good,
        publisher,
    } = target(config()).await;
    let flood = publisher.broadcast.create_track("flood", 1);
    known(&relay, 1).await;
    let (_session, mut reader) = flood_subscriber(&good, &url).await;
    let start = Instant::now();
    let cpu_before = cpu();
    let counter = tokio::spawn(async move {
        let mut frames = 0;
        for _ in 0..groups {
            let mut group = within("a flood group", reader.next_group())
                .await
                .unwrap()
                .unwrap();
            while let Some(_frame) = within("flood frames", group.read_frame()).await.unwrap() {
                frames += 1;
            }
        }
        frames
    });
    let writer = tokio::spawn(async move {
        for _ in 0..groups {
            let group = flood.append_group();
            for i in 0..PER_GROUP {
                group.write_frame(Bytes::new());
                if i % 1000 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            group.finish();
        }
    });
    let served = good_client_is_served(&url, &publisher.tracks[0]).await;
    writer.await.unwrap();
    let frames = within("every flood frame", counter).await.unwrap();
    println!(
        "empty frames in {groups} groups: {frames} relayed in {} ms, {:?} of CPU (whole \
         process), good client served in {served:?}",
        ms(start),
        cpu() - cpu_before
    );
    assert_eq!(frames, groups * PER_GROUP);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_for_a_huge_target_buys_a_bounded_amount_of_padding() {
    let _serial = SERIAL.lock().await;
    const BURST: u64 = 512 * 1024;
    const REFILL_BPS: u64 = 200_000;
    let mut config = config();
    config.limits.probe_padding_burst_bytes = BURST;
    config.limits.probe_padding_refill_rate = REFILL_BPS;
    let relay = relay(config).await;
    let url = url(&relay);
    let attacker = client();
    let session = connect(&attacker, &url, None).await;
    // A terabit target, held for two seconds.
    let started = Instant::now();
    let mut replies = session.probe(1 << 40).unwrap();
    let _ = within("a probe reply", replies.next()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let elapsed = started.elapsed();
    let padding = relay
        .relay()
        .peer_stats()
        .into_iter()
        .map(|(_, s)| s.padding_bytes)
        .sum::<u64>();
    let sent_by_attacker = session.stats().bytes_sent;
    // The bucket's bound for the time that passed, with one second to spare for the probe's
    // sampling (load only lengthens `elapsed`, and so the bound).
    let bound = BURST + REFILL_BPS / 8 * (elapsed.as_secs() + 1);
    println!(
        "probe padding: {padding} bytes in {elapsed:?} (bound {bound}) for {sent_by_attacker} \
         bytes sent by the prober: {:.0}x",
        padding as f64 / sent_by_attacker.max(1) as f64
    );
    assert!(padding > 0, "the relay pads a probe");
    assert!(padding <= bound, "{padding} bytes of padding > {bound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_larger_than_the_ledger_are_shed_as_they_arrive() {
    let _serial = SERIAL.lock().await;
    // The relay's default ledger: 8 MiB per connection; frames stalled for a second are
    // expired (5 s by default).
    let mut config = config();
    config.limits.frame_stall_timeout_ms = 1000;
    let relay = relay(config).await;
    let cap = relay.relay().config().limits.max_connection_bytes as u64;
    let url = url(&relay);
    let good = client();
    // A publisher (of ours, with room to queue) sends eight 20 MiB frames at once and
    // never finishes a group: 160 MiB the relay would reassemble.
    let broadcast = moq_quinn::Broadcast::new();
    let track = broadcast.create_track("video", 1);
    let router = moq_quinn::Router::new();
    router.publish("/live/big", broadcast.clone());
    let mut roomy = moq_quinn::Config::default();
    roomy.max_connection_bytes = 1024 * MIB;
    roomy.max_queued_bytes = 1024 * MIB;
    roomy.max_queued_bytes_per_subscription = 1024 * MIB;
    let attacker = client();
    let _publisher = within("connect", attacker.connect_with(&url, roomy, Some(router)))
        .await
        .unwrap();
    known(&relay, 1).await;
    let session = connect(&good, &url, None).await;
    let mut reader = session
        .subscribe("/live/big", "video", moq_quinn::SubscribeParams::default())
        .unwrap();
    accepted(&reader).await;

    let before = rss_kib();
    let mut peak_rss = before;
    let frame = Bytes::from(vec![0x5a; 20 * MIB]);
    let mut groups = Vec::new();
    for _ in 0..8 {
        let group = track.append_group();
        group.write_frame(frame.clone());
        groups.push(group);
    }
    // Every one of them ends at the relay (its downstream group ends in error), and
    // nothing reaches the subscriber as a frame.
    let mut ended = 0;
    while ended < 8 {
        let mut group = within("a group downstream", reader.next_group())
            .await
            .unwrap()
            .unwrap();
        let read = within("its end", group.read_frame()).await;
        assert!(read.is_err(), "a 20 MiB frame was relayed whole: {read:?}");
        ended += 1;
        peak_rss = peak_rss.max(rss_kib());
    }
    let stats = relay.relay().peer_stats();
    let peak = ledger_peak(&stats);
    let shed: u64 = stats.iter().map(|(_, s)| s.ledger_shed).sum();
    let stalled: u64 = stats.iter().map(|(_, s)| s.streams_abandoned).sum();
    let grown = peak_rss.saturating_sub(before);
    println!(
        "eight 20 MiB frames: ledger peak {peak} bytes (cap {cap}), {shed} shed, {stalled} \
         expired stalled, RSS +{grown} KiB (the publisher's frame included)"
    );
    assert!(peak <= cap, "{peak} > {cap}");
    // Those the relay was reading were shed past the cap; the ones QUIC flow control held
    // back (their data waiting behind the shed ones) were expired once stalled.
    assert!(shed >= 1, "{shed}");
    assert_eq!(shed + stalled, 8);
    assert!(grown < 64 * 1024, "RSS grew {grown} KiB");
    let served = good_client_is_served_on(&session, &track).await;
    println!("good client served in {served:?}");
    drop(groups);
}

/// A new group on `track` reaches a new subscriber of `/live/big` on `session`: the relay
/// still serves.
async fn good_client_is_served_on(
    session: &moq_quinn::Session,
    track: &moq_quinn::TrackProducer,
) -> Duration {
    let mut reader = session.subscribe("/live/big", "video", ordered()).unwrap();
    accepted(&reader).await;
    let start = Instant::now();
    let seq = write_group(track, 2, 100);
    loop {
        let mut group = within("a good client to be served", reader.next_group())
            .await
            .expect("the subscription lives")
            .expect("a group");
        if group.sequence().0 == seq {
            assert_eq!(read_all(&mut group).await.len(), 2);
            return start.elapsed();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_grants_no_stream_credit_costs_at_most_the_ledger() {
    let _serial = SERIAL.lock().await;
    let Target {
        relay,
        url,
        good: _,
        publisher,
    } = target(config()).await;
    let cap = relay.relay().config().limits.max_connection_bytes as u64;
    known(&relay, 1).await;
    let track = publisher.tracks[0].clone();

    // The attacker subscribes and lets the relay open no unidirectional stream: every
    // group for it waits for credit that never comes.
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_uni_streams(0u32.into());
    let attacker = raw(relay.quic_addr().unwrap(), transport).await;
    let _subscription = attacker.subscribe(PATH, "video").await;
    until("the attacker's subscription reaches the relay", || {
        relay.relay().peer_stats().len() >= 2
            && relay
                .relay()
                .peer_stats()
                .iter()
                .any(|(_, s)| s.ledger.streams > 0 && s.groups_sent == 0)
    })
    .await;

    // Groups of one byte, until the relay has opened 40 000 for the attacker (at most
    // 60 s): 10 MB of stream table alone at 256 bytes a stream, past the 8 MiB cap.
    let before = rss_kib();
    let cpu_before = cpu();
    let mut peak_rss = before;
    let started = Instant::now();
    let attacker_groups = |relay: &RelayServer| {
        relay
            .relay()
            .peer_stats()
            .iter()
            .map(|(_, s)| s.groups_sent)
            .max()
            .unwrap_or(0)
    };
    let mut written = 0;
    while attacker_groups(&relay) < 40_000 && started.elapsed() < Duration::from_secs(60) {
        for _ in 0..500 {
            write_group(&track, 1, 1);
        }
        written += 500;
        tokio::time::sleep(Duration::from_millis(20)).await;
        peak_rss = peak_rss.max(rss_kib());
    }
    let stats = relay.relay().peer_stats();
    let peak = ledger_peak(&stats);
    let dropped: u64 = stats.iter().map(|(_, s)| s.groups_dropped).sum();
    let grown = peak_rss.saturating_sub(before);
    println!(
        "no stream credit: {written} groups written, {} opened for the attacker, ledger peak \
         {peak} (cap {cap}), {dropped} dropped, RSS +{grown} KiB, {:?} of CPU",
        attacker_groups(&relay),
        cpu() - cpu_before
    );
    assert!(peak <= cap, "{peak} > {cap}");
    assert!(dropped > 10_000, "{dropped}");
    assert!(grown < 48 * 1024, "RSS grew {grown} KiB");
    let served = good_client_is_served(&url, &track).await;
    println!("good client served in {served:?}");
    drop(attacker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_server_wide_mark_new_connections_are_refused() {
    let _serial = SERIAL.lock().await;
    // A mark of 1 MiB, and 2 MB in the relay's cache: the relay holds more than it may.
    let mut config = config();
    config.limits.max_total_bytes = MIB;
    let Target {
        relay,
        url,
        good,
        publisher,
    } = target(config).await;
    known(&relay, 1).await;
    let session = connect(&good, &url, None).await;
    let mut reader = session.subscribe(PATH, "video", ordered()).unwrap();
    accepted(&reader).await;
    let seq = write_group(&publisher.tracks[0], 20, 100_000);
    let mut group = within("the group", reader.next_group())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(group.sequence().0, seq);
    read_all(&mut group).await;
    let held = relay.relay().held_bytes();
    println!("the relay holds {held} bytes against a mark of {MIB}");
    assert!(held > MIB as u64);
    // Admission sums at most every 200 ms: past that, a new connection is refused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = within(
        "a refused connect",
        good.connect_with(&url, moq_quinn::Config::default(), None),
    )
    .await;
    assert!(refused.is_err(), "a connection was admitted past the mark");
    // Those already in go on.
    let seq = write_group(&publisher.tracks[0], 1, 10);
    let group = within("a group after", reader.next_group())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(group.sequence().0, seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_track_names_past_the_cap_are_refused() {
    let _serial = SERIAL.lock().await;
    let mut config = config();
    config.limits.max_tracks_per_broadcast = 8;
    let Target {
        relay,
        url,
        good,
        publisher,
    } = target(config).await;
    known(&relay, 1).await;
    // The publisher serves whatever names it is asked for (as an attacker's would).
    let _names: Vec<_> = (0..9)
        .map(|i| publisher.broadcast.create_track(&format!("made-up-{i}"), 1))
        .collect();
    let session = connect(&good, &url, None).await;
    // "video" and 7 made-up names fill the cap; the next made-up name is refused.
    let mut held = Vec::new();
    let video = session.subscribe(PATH, "video", ordered()).unwrap();
    accepted(&video).await;
    for i in 0..7 {
        held.push(
            session
                .subscribe(PATH, &format!("made-up-{i}"), ordered())
                .unwrap(),
        );
    }
    until("eight tracks relayed", || {
        relay
            .relay()
            .broadcasts()
            .iter()
            .any(|b| b.tracks.len() >= 8)
    })
    .await;
    let mut refused = session.subscribe(PATH, "made-up-8", ordered()).unwrap();
    let end = within("the refusal", refused.next_group()).await;
    assert_eq!(
        end.err(),
        Some(EndReason::PeerReset(code::subscribe::INTERNAL)),
        "a ninth track was relayed"
    );
    // A track already relayed is still joined.
    let mut again = session.subscribe(PATH, "video", ordered()).unwrap();
    accepted(&again).await;
    let seq = write_group(&publisher.tracks[0], 1, 10);
    let group = within("a group", again.next_group())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(group.sequence().0, seq);
    drop((held, video));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_churn_is_taken_at_the_rate_and_costs_idle_peers_one_entry_per_path() {
    let _serial = SERIAL.lock().await;
    const RATE: u64 = 200;
    const BURST: u64 = 100;
    const CHANGES: usize = 4000;
    const PATHS: usize = 8;
    const PATH_LEN: usize = 1000;
    const IDLE: usize = 4;
    let mut config = config();
    config.limits.announce_rate = RATE;
    config.limits.announce_burst = BURST;
    let Target {
        relay,
        url,
        good,
        publisher,
    } = target(config).await;
    known(&relay, 1).await;
    let addr = relay.quic_addr().unwrap();

    // Peers that ask for every announcement and never read it (4 KiB of stream window).
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        let mut transport = quinn::TransportConfig::default();
        transport.stream_receive_window(4096u32.into());
        let peer = raw(addr, transport).await;
        let (mut send, recv) = peer.conn.open_bi().await.unwrap();
        let mut msg = BytesMut::new();
        msg.put_u8(StreamType::Announce.to_byte());
        moq_proto::message::AnnounceInterest {
            prefix: moq_proto::PathPrefix::root(),
            exclude_hop: moq_proto::HopId(0),
        }
        .encode(&mut msg)
        .unwrap();
        send.write_all(&msg).await.unwrap();
        idle.push((peer, send, recv));
    }
    // A client that reads them.
    let watcher = connect(&good, &url, None).await;
    let mut announcements = watcher.announced("/").expect("interest");
    until("every peer is in", || {
        relay.relay().peer_count() == IDLE + 2
    })
    .await;

    // The attacker publishes: it answers the relay's announce interest with 4000 changes
    // to eight 1000-byte paths (each active, then ended), then one last broadcast.
    let attacker = raw(addr, quinn::TransportConfig::default()).await;
    let (mut send, mut recv) = within("the relay's announce interest", attacker.conn.accept_bi())
        .await
        .unwrap();
    let mut header = [0u8; 8];
    let _ = within("the interest", recv.read(&mut header)).await;
    let mut churn = BytesMut::new();
    let announce = |buf: &mut BytesMut, status, suffix: &str| {
        moq_proto::message::Announce {
            status,
            suffix: suffix.to_owned(),
            hops: Vec::new(),
        }
        .encode(buf)
        .unwrap();
    };
    for i in 0..CHANGES / 2 {
        let mut suffix = format!("churn/{}/", i % PATHS);
        suffix.push_str(&"x".repeat(PATH_LEN - suffix.len()));
        announce(
            &mut churn,
            moq_proto::message::AnnounceStatus::Active,
            &suffix,
        );
        announce(
            &mut churn,
            moq_proto::message::AnnounceStatus::Ended,
            &suffix,
        );
    }
    announce(
        &mut churn,
        moq_proto::message::AnnounceStatus::Active,
        "churn/done",
    );
    let before = rss_kib();
    let started = Instant::now();
    send.write_all(&churn).await.unwrap();
    let done = |relay: &RelayServer| {
        relay
            .relay()
            .broadcasts()
            .iter()
            .any(|b| b.path.as_str() == "churn/done")
    };
    until("the relay reads the churn", || done(&relay)).await;
    let took = started.elapsed();
    let grown = rss_kib().saturating_sub(before);
    let stats = relay.relay().peer_stats();
    // In the order they connected: the publisher, the idle peers, the watcher, the attacker.
    let idle_peaks: Vec<u64> = stats[1..=IDLE]
        .iter()
        .map(|(_, s)| s.ledger_peak_total)
        .collect();
    let attacker_stats = &stats[IDLE + 2].1;
    let (received, reported) = (
        attacker_stats.announcements_received,
        attacker_stats.announcements_reported,
    );
    println!(
        "announce churn: {received} changes received in {took:?}, {reported} taken by the \
         relay (rate {RATE}/s after {BURST}), throttled {} times; idle peers' ledger peaks \
         {idle_peaks:?}; RSS +{grown} KiB",
        attacker_stats.announce_throttled
    );
    // Every change is read, and the relay works on no more than the rate allows: the rest
    // is coalesced per path.
    assert_eq!(received, CHANGES as u64 + 1);
    let allowed = BURST + (RATE as f64 * took.as_secs_f64()).ceil() as u64;
    assert!(reported <= allowed, "{reported} > {allowed}");
    assert!(attacker_stats.announce_throttled > 0);
    // An idle peer holds what its stream takes ahead (4 KiB), a message, and one mark per
    // path; not a message per change (4 MB of them).
    for peak in &idle_peaks {
        assert!(*peak < 64 * 1024, "idle peer's ledger peak {peak}");
    }
    assert!(grown < 32 * 1024, "RSS grew {grown} KiB");
    // The watcher learns the last broadcast; a good client is served.
    announced(&mut announcements, "/churn/done").await;
    let served = good_client_is_served(&url, &publisher.tracks[0]).await;
    println!("good client served in {served:?}");
    drop((idle, attacker, send));
}

/// Serves any track name and holds the writers: each accepted subscription keeps its
/// stream open, as a live track does.
#[derive(Clone, Default)]
struct AnyTrack {
    served: Arc<std::sync::Mutex<Vec<(String, moq_quinn::publish::TrackWriter)>>>,
}

impl AnyTrack {
    fn names(&self) -> Vec<String> {
        let served = self.served.lock().unwrap();
        served.iter().map(|(name, _)| name.clone()).collect()
    }
}

impl moq_quinn::publish::TrackHandler for AnyTrack {
    fn serve_track(
        &self,
        request: moq_quinn::publish::TrackRequest,
        mut writer: moq_quinn::publish::TrackWriter,
    ) {
        let _ = writer.accept(Default::default());
        self.served.lock().unwrap().push((request.track, writer));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_downstream_peer_cannot_take_every_stream_of_a_route() {
    let _serial = SERIAL.lock().await;
    const SHARE: usize = 8;
    const CREDIT: u32 = 12;
    let mut config = config();
    config.upstream.max_requests_per_peer = SHARE;
    let relay = relay(config).await;
    let url = url(&relay);
    // The publisher lets the relay open 12 streams at once, and serves any track name.
    let mut options = moq_quinn::QuicOptions::default();
    options.max_streams = CREDIT;
    let publisher_client = moq_quinn::Client::builder()
        .trust(ServerTrust::Insecure)
        .options(options)
        .build()
        .expect("publisher endpoint");
    let tracks = AnyTrack::default();
    let router = moq_quinn::Router::new();
    router.publish(PATH, tracks.clone());
    let _publisher = connect(&publisher_client, &url, Some(router)).await;
    known(&relay, 1).await;

    // The attacker asks for 40 names: each would hold one of the route's 12 streams.
    let attacker = connect(&client(), &url, None).await;
    let mut readers: Vec<_> = (0..40)
        .map(|i| {
            attacker
                .subscribe(PATH, &format!("grab-{i}"), ordered())
                .unwrap()
        })
        .collect();
    let mut refused = 0;
    for reader in readers.iter_mut() {
        let outcome = within("accepted or refused", async {
            loop {
                if reader.publisher_params().is_some() {
                    return None;
                }
                if let Ok(Err(end)) =
                    tokio::time::timeout(Duration::from_millis(10), reader.next_group()).await
                {
                    return Some(end);
                }
            }
        })
        .await;
        if let Some(end) = outcome {
            assert_eq!(end, EndReason::PeerReset(code::subscribe::INTERNAL));
            refused += 1;
        }
    }
    // A downstream subscription is accepted by the relay's fan-out at once; its upstream
    // SUBSCRIBE reaches the publisher a moment later.
    until("the route's share reaches the publisher", || {
        tracks.names().len() >= SHARE
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let served = tracks.names().len();
    println!("route share: {served} of 40 names reached the publisher, {refused} refused");
    assert_eq!(served, SHARE);
    assert_eq!(refused, 40 - SHARE);

    // Another client is still served through the same route: a new track gets a stream.
    let good = connect(&client(), &url, None).await;
    let reader = good.subscribe(PATH, "good", ordered()).unwrap();
    accepted(&reader).await;
    assert!(tracks.names().contains(&"good".to_owned()));
    // The attacker's share comes back as its requests end.
    drop(readers);
    until("the attacker's share is given back", || {
        relay.relay().broadcasts()[0].tracks.len() == 1
    })
    .await;
    let again = attacker.subscribe(PATH, "grab-again", ordered()).unwrap();
    accepted(&again).await;
}
