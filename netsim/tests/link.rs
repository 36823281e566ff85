//! Measurements of the emulated link on loopback: rate, delay (both ways),
//! loss, drop-tail queue, rate schedule, manual rate change, and jitter
//! without reordering.
//!
//! Every test runs on tokio's paused clock: the sockets are real loopback
//! sockets, but time only moves when every task waits (a datagram sent on
//! loopback is already in the receiver's buffer when `send_to` returns, so
//! no arrival is missed). Rates, delays and spans are therefore measured in
//! virtual time, exactly as the link's schedule set them, and no load on the
//! machine can move them: the tolerances below are for the link's own
//! rounding (its 1 ms timer slack, one datagram at a window's edge).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use moq_netsim::{Link, Shape};
use tokio::net::UdpSocket;
use tokio::time::{Instant, sleep, timeout};

const MS: Duration = Duration::from_millis(1);

async fn bind() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.expect("bind")
}

/// Offers `rate_bps` of `size`-byte datagrams to `to` until `until`, paced on
/// a ~1 ms tick (catching up after a late tick, in bursts of at most 64).
async fn offer(socket: Arc<UdpSocket>, to: SocketAddr, rate_bps: u64, size: usize, until: Instant) {
    let payload = vec![0x5a_u8; size];
    let start = Instant::now();
    let mut sent: u64 = 0;
    while Instant::now() < until {
        let elapsed = start.elapsed().as_nanos();
        let due = (elapsed * u128::from(rate_bps) / (8 * size as u128 * 1_000_000_000)) as u64 + 1;
        let burst = due.saturating_sub(sent).min(64);
        for _ in 0..burst {
            // Loopback sends may fail transiently (ENOBUFS); the link is
            // offered more than it carries anyway.
            let _ = socket.send_to(&payload, to).await;
        }
        sent += burst;
        sleep(MS).await;
    }
}

/// Receives datagrams until `until`, returning their arrival times and sizes.
async fn collect(socket: &UdpSocket, until: Instant) -> Vec<(Instant, usize)> {
    let mut buf = vec![0u8; 65_536];
    let mut out = Vec::new();
    while let Ok(Ok(n)) = timeout(
        until.saturating_duration_since(Instant::now()),
        socket.recv(&mut buf),
    )
    .await
    {
        out.push((Instant::now(), n));
    }
    out
}

// The rate tests keep the link saturated with a queue several hundred
// milliseconds deep, so the measured rate is the link's, not the sender's.

/// Delivered rate in bits/s over `[from, to]`: the least-squares slope of
/// cumulative bytes against arrival time, which a stall of the receiver at
/// either end of the window barely moves.
fn rate_bps(samples: &[(Instant, usize)], from: Instant, to: Instant) -> f64 {
    let mut points = Vec::new();
    let mut bytes = 0.0;
    for &(at, n) in samples.iter().filter(|(at, _)| *at >= from && *at <= to) {
        points.push((at.duration_since(from).as_secs_f64(), bytes));
        bytes += n as f64;
    }
    assert!(
        points.len() >= 50,
        "too few datagrams in the window: {}",
        points.len()
    );
    let count = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / count;
    let mean_b = points.iter().map(|p| p.1).sum::<f64>() / count;
    let cov: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.1 - mean_b)).sum();
    let var: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.0 - mean_t)).sum();
    cov / var * 8.0
}

fn assert_within(name: &str, measured: f64, expected: f64, tolerance: f64) {
    let error = (measured - expected).abs() / expected;
    println!(
        "{name}: measured {measured:.2}, expected {expected:.2} ({:+.2} %)",
        (measured / expected - 1.0) * 100.0
    );
    assert!(
        error <= tolerance,
        "{name}: measured {measured}, expected {expected} within {} %",
        tolerance * 100.0
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn stamp(base: Instant, seq: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&seq.to_be_bytes());
    out[8..].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_be_bytes());
    out
}

/// `(seq, seconds from send to now)` of a datagram made by [`stamp`].
fn read_stamp(base: Instant, data: &[u8]) -> (u64, f64) {
    let seq = u64::from_be_bytes(data[..8].try_into().unwrap());
    let sent = Duration::from_nanos(u64::from_be_bytes(data[8..16].try_into().unwrap()));
    (seq, (base.elapsed() - sent).as_secs_f64())
}

#[tokio::test(start_paused = true)]
async fn rate_10_mbit_up() {
    let server = bind().await;
    let up = Shape::new(10_000_000, Duration::ZERO).with_queue_bytes(512 * 1024);
    let link = Link::start(server.local_addr().unwrap(), up, Shape::default())
        .await
        .unwrap();
    let client = Arc::new(bind().await);

    let t0 = Instant::now();
    let end = t0 + Duration::from_millis(2300);
    let sender = tokio::spawn(offer(client, link.addr(), 20_000_000, 1200, end));
    let samples = collect(&server, end).await;
    sender.await.unwrap();

    let bps = rate_bps(
        &samples,
        t0 + Duration::from_millis(200),
        t0 + Duration::from_millis(2250),
    );
    assert_within("rate_10_mbit_up bits/s", bps, 10e6, 0.05);
    let stats = link.up_stats();
    println!("rate_10_mbit_up stats: {stats:?}");
    assert!(
        stats.dropped_queue > 100,
        "the offered 2x must overflow the queue: {stats:?}"
    );
    assert_eq!(stats.dropped_loss, 0);
}

#[tokio::test(start_paused = true)]
async fn rate_2_mbit_down() {
    let server = bind().await;
    let down = Shape::new(2_000_000, Duration::ZERO).with_queue_bytes(128 * 1024);
    let link = Link::start(server.local_addr().unwrap(), Shape::default(), down)
        .await
        .unwrap();
    let client = bind().await;

    // The client speaks first so the link knows where to send the replies.
    client.send_to(b"hello", link.addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let (_, link_side) = timeout(Duration::from_secs(2), server.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();

    let t0 = Instant::now();
    let end = t0 + Duration::from_millis(2500);
    let sender = tokio::spawn(offer(Arc::new(server), link_side, 4_000_000, 1200, end));
    let samples = collect(&client, end).await;
    sender.await.unwrap();

    let bps = rate_bps(
        &samples,
        t0 + Duration::from_millis(200),
        t0 + Duration::from_millis(2450),
    );
    assert_within("rate_2_mbit_down bits/s", bps, 2e6, 0.05);
    let stats = link.down_stats();
    println!("rate_2_mbit_down stats: {stats:?}");
    assert!(
        stats.dropped_queue > 100,
        "the offered 2x must overflow the queue: {stats:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn delay_one_way_and_round_trip() {
    let server = bind().await;
    let delay = Duration::from_millis(40);
    let link = Link::start(
        server.local_addr().unwrap(),
        Shape::new(0, delay),
        Shape::new(0, delay),
    )
    .await
    .unwrap();
    let client = Arc::new(bind().await);
    let base = Instant::now();
    const COUNT: u64 = 60;

    // The server records one-way delays and echoes every datagram.
    let echo = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        let mut one_way = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(4);
        while one_way.len() < COUNT as usize {
            let Ok(Ok((n, from))) = timeout(
                deadline.saturating_duration_since(Instant::now()),
                server.recv_from(&mut buf),
            )
            .await
            else {
                break;
            };
            one_way.push(read_stamp(base, &buf[..n]).1);
            server.send_to(&buf[..n], from).await.unwrap();
        }
        one_way
    });
    let receiver = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let mut rtts = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(4);
            while rtts.len() < COUNT as usize {
                let Ok(Ok(n)) = timeout(
                    deadline.saturating_duration_since(Instant::now()),
                    client.recv(&mut buf),
                )
                .await
                else {
                    break;
                };
                rtts.push(read_stamp(base, &buf[..n]).1);
            }
            rtts
        })
    };
    for seq in 0..COUNT {
        client
            .send_to(&stamp(base, seq), link.addr())
            .await
            .unwrap();
        sleep(20 * MS).await;
    }
    let mut one_way = echo.await.unwrap();
    let mut rtts = receiver.await.unwrap();
    assert_eq!(one_way.len(), COUNT as usize);
    assert_eq!(rtts.len(), COUNT as usize);
    assert_within(
        "delay one-way median ms",
        median(&mut one_way) * 1e3,
        40.0,
        0.05,
    );
    assert_within(
        "delay round-trip median ms",
        median(&mut rtts) * 1e3,
        80.0,
        0.05,
    );
    assert_eq!(link.up_stats().forwarded_packets, COUNT);
    assert_eq!(link.down_stats().forwarded_packets, COUNT);
}

#[tokio::test(start_paused = true)]
async fn loss_ten_percent() {
    let server = bind().await;
    let up = Shape::default().with_loss(0.1).with_seed(7);
    let link = Link::start(server.local_addr().unwrap(), up, Shape::default())
        .await
        .unwrap();
    let client = bind().await;
    const COUNT: u64 = 5000;

    let receiver = tokio::spawn(async move {
        let mut buf = [0u8; 256];
        let mut received = 0u64;
        while let Ok(Ok(_)) = timeout(Duration::from_millis(500), server.recv(&mut buf)).await {
            received += 1;
        }
        received
    });
    let payload = [7u8; 100];
    for i in 0..COUNT {
        client.send_to(&payload, link.addr()).await.unwrap();
        if i % 25 == 24 {
            sleep(MS).await;
        }
    }
    let received = receiver.await.unwrap();
    let stats = link.up_stats();
    let fraction = stats.dropped_loss as f64 / COUNT as f64;
    println!("loss_ten_percent: received {received}, {stats:?}, drop fraction {fraction:.4}");
    assert_eq!(stats.dropped_queue, 0);
    assert_eq!(stats.send_errors, 0);
    assert_eq!(stats.forwarded_packets + stats.dropped_loss, COUNT);
    assert_eq!(stats.forwarded_packets, received);
    assert_eq!(stats.forwarded_bytes, received * 100);
    assert!(
        (0.08..=0.12).contains(&fraction),
        "drop fraction {fraction}"
    );
}

#[tokio::test(start_paused = true)]
async fn queue_drop_tail() {
    let server = bind().await;
    let up = Shape::new(1_000_000, Duration::ZERO).with_queue_bytes(12_000);
    let link = Link::start(server.local_addr().unwrap(), up, Shape::default())
        .await
        .unwrap();
    let client = bind().await;

    let payload = [1u8; 1200];
    for _ in 0..100 {
        client.send_to(&payload, link.addr()).await.unwrap();
    }
    // Ten datagrams at 9.6 ms each: ~96 ms.
    let samples = collect(&server, Instant::now() + Duration::from_millis(400)).await;
    let stats = link.up_stats();
    println!("queue_drop_tail: delivered {}, {stats:?}", samples.len());
    assert!(
        (10..=11).contains(&samples.len()),
        "delivered {}",
        samples.len()
    );
    assert_eq!(stats.forwarded_packets, samples.len() as u64);
    assert_eq!(stats.forwarded_packets + stats.dropped_queue, 100);
    // They leave at the link rate: 9.6 ms apart.
    let span = samples.last().unwrap().0 - samples[0].0;
    let expected = 9.6 * (samples.len() - 1) as f64;
    assert_within(
        "queue_drop_tail span ms",
        span.as_secs_f64() * 1e3,
        expected,
        0.05,
    );
}

#[tokio::test(start_paused = true)]
async fn schedule_8_then_2_mbit() {
    let server = bind().await;
    let up = Shape::new(8_000_000, Duration::ZERO)
        .with_queue_bytes(256 * 1024)
        .with_schedule(vec![(Duration::from_secs(1), 2_000_000)]);
    let link = Link::start(server.local_addr().unwrap(), up, Shape::default())
        .await
        .unwrap();
    let t0 = Instant::now();
    let client = Arc::new(bind().await);

    let end = t0 + Duration::from_millis(2900);
    let sender = tokio::spawn(offer(client, link.addr(), 16_000_000, 1200, end));
    let samples = collect(&server, end).await;
    sender.await.unwrap();

    let first = rate_bps(
        &samples,
        t0 + Duration::from_millis(200),
        t0 + Duration::from_millis(980),
    );
    let second = rate_bps(
        &samples,
        t0 + Duration::from_millis(1200),
        t0 + Duration::from_millis(2850),
    );
    assert_within("schedule phase 1 bits/s", first, 8e6, 0.05);
    assert_within("schedule phase 2 bits/s", second, 2e6, 0.05);
}

#[tokio::test(start_paused = true)]
async fn set_rate_applies_now() {
    let server = bind().await;
    let link = Link::start(
        server.local_addr().unwrap(),
        Shape::default(),
        Shape::default(),
    )
    .await
    .unwrap();
    let client = bind().await;
    link.set_rate(Some(1_000_000), None);

    // 20 datagrams of 1250 B at 1 Mbit/s: 10 ms apart.
    let payload = [2u8; 1250];
    for _ in 0..20 {
        client.send_to(&payload, link.addr()).await.unwrap();
    }
    let samples = collect(&server, Instant::now() + Duration::from_millis(500)).await;
    assert_eq!(samples.len(), 20);
    let span = samples.last().unwrap().0 - samples[0].0;
    assert_within("set_rate span ms", span.as_secs_f64() * 1e3, 190.0, 0.05);
    assert_eq!(link.up_stats().forwarded_packets, 20);
}

#[tokio::test(start_paused = true)]
async fn jitter_never_reorders() {
    let server = bind().await;
    let up = Shape::new(0, Duration::from_millis(10))
        .with_jitter(Duration::from_millis(20))
        .with_seed(3);
    let link = Link::start(server.local_addr().unwrap(), up, Shape::default())
        .await
        .unwrap();
    let client = bind().await;
    let base = Instant::now();
    const COUNT: u64 = 400;

    let receiver = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while let Ok(Ok(n)) = timeout(Duration::from_millis(500), server.recv(&mut buf)).await {
            got.push(read_stamp(base, &buf[..n]));
        }
        got
    });
    for seq in 0..COUNT {
        client
            .send_to(&stamp(base, seq), link.addr())
            .await
            .unwrap();
        // Paced wider than the jitter's spread over the no-reorder rule's reach, so
        // the spread shows in the delays.
        sleep(5 * MS).await;
    }
    let got = receiver.await.unwrap();
    let seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(seqs, (0..COUNT).collect::<Vec<_>>(), "reordered or lost");
    let min = got.iter().map(|g| g.1).fold(f64::MAX, f64::min);
    let max = got.iter().map(|g| g.1).fold(0.0, f64::max);
    println!(
        "jitter_never_reorders: one-way delay {:.1}..{:.1} ms",
        min * 1e3,
        max * 1e3
    );
    assert!(min >= 0.010, "delay below the base delay: {min}");
    assert!(max - min >= 0.010, "no jitter visible: {min}..{max}");
}
