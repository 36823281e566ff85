//! Fan-in over real QUIC on loopback: one subscriber reading 16 KiB frames from our server,
//! the blocking driver (one thread, no runtime) against moq-tokio's subscriber, in the same
//! run and against the same server.
//!
//! `cargo bench -p moq-blocking --bench fanin` prints, per side, the median MB/s of
//! `FANIN_REPS` runs (default 3; the sides alternate) and the process's CPU time per MB
//! (server and subscriber together: the server's share is the same for both sides, so the
//! difference is the subscriber's). `FANIN_GROUPS` sets the groups per run (default 64 of
//! 256 frames: 256 MiB). The publisher stays at most two groups ahead of the subscriber, so
//! the rate is what the path delivers, not what a subscriber's budget sheds.

#![allow(clippy::disallowed_methods, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_blocking::Connection;
use moq_proto::message::SubscribeParams;
use moq_proto::{Event, FrameRead};
use moq_quinn::{Broadcast, Client, Config, Identity, Router, Server, ServerTrust, TrackProducer};

const FRAME: usize = 16 * 1024;
const FRAMES_PER_GROUP: usize = 256;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time this process has used (user and system), from `/proc/self/stat`.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn params() -> SubscribeParams {
    SubscribeParams {
        ordered: true,
        ..SubscribeParams::default()
    }
}

/// Groups the publisher may be ahead of the subscriber (8 MiB: inside the subscriber's
/// ledger, so nothing is shed and the rate is what the path delivers).
const AHEAD: usize = 2;

/// Writes `groups` groups of 256 frames of 16 KiB once the track has a subscriber, at
/// most [`AHEAD`] groups ahead of what the subscriber has read.
async fn publish(track: TrackProducer, groups: usize, read: Arc<AtomicUsize>) {
    while track.subscriber_count() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let payload = Bytes::from(vec![0xab; FRAME]);
    for written in 0..groups {
        while written >= read.load(Ordering::Acquire) + AHEAD {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let group = track.append_group();
        for _ in 0..FRAMES_PER_GROUP {
            group.write_frame(payload.clone());
        }
        group.finish();
        tokio::task::yield_now().await;
    }
}

/// The blocking driver on a thread of its own: bytes read.
fn blocking_reader(
    addr: std::net::SocketAddr,
    trust: ServerTrust,
    path: String,
    groups: usize,
    read: Arc<AtomicUsize>,
) -> usize {
    let mut conn = Connection::connect(addr, "localhost", &trust, moq_proto::Config::default())
        .expect("connect");
    let id = conn
        .session()
        .subscribe(path.as_str().into(), "data", params())
        .expect("subscribe");
    let mut bytes = 0;
    let mut done = 0;
    while done < groups {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = match conn.next_event(deadline).expect("driven") {
            Some(Event::GroupReceived {
                id: sub, stream, ..
            }) if sub == id => stream,
            Some(_) => continue,
            None => panic!("no group within 30 s"),
        };
        loop {
            match conn.read_frame(stream, deadline).expect("a frame") {
                FrameRead::Frame(payload) => bytes += payload.len(),
                FrameRead::Ended(_) => break,
                FrameRead::Blocked => unreachable!(),
            }
        }
        done += 1;
        read.store(done, Ordering::Release);
    }
    let _ = conn.close(moq_proto::ErrorCode(0), "done");
    bytes
}

/// moq-tokio's subscriber: bytes read.
async fn tokio_reader(
    url: String,
    trust: ServerTrust,
    path: String,
    groups: usize,
    read: Arc<AtomicUsize>,
) -> usize {
    let client = Client::new(trust).expect("client");
    let session = client.connect(&url).await.expect("connect");
    let mut reader = session
        .subscribe(path.as_str(), "data", params())
        .expect("subscribe");
    let mut bytes = 0;
    for done in 1..=groups {
        let mut group = reader.next_group().await.expect("a group").expect("open");
        while let Ok(Some(frame)) = group.read_frame().await {
            bytes += frame.len();
        }
        read.store(done, Ordering::Release);
    }
    bytes
}

fn main() {
    let reps = env("FANIN_REPS", 3);
    let groups = env("FANIN_GROUPS", 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let identity = Identity::self_signed(&["localhost"]).expect("cert");
    let trust = ServerTrust::Pinned(identity.leaf().cloned().expect("leaf"));
    let mut config = Config::default();
    // The whole run is written at once: it must fit the publisher's budgets.
    config.max_queued_bytes_per_subscription = 1 << 30;
    config.max_queued_bytes = 1 << 31;
    config.max_connection_bytes = 1 << 31;
    let router = Router::new();
    let server = runtime.block_on(async {
        Server::builder("127.0.0.1:0".parse().unwrap(), identity)
            .config(config)
            .router(router.clone())
            .bind()
            .expect("bind")
    });
    let addr = server.local_addr().expect("addr");
    let url = format!("moqt://localhost:{}", addr.port());
    runtime.spawn(async move {
        let mut sessions = Vec::new();
        while let Some(Ok(session)) = server.accept().await {
            sessions.push(session);
        }
    });

    println!(
        "fan-in over loopback: 1 subscriber, {groups} groups of {FRAMES_PER_GROUP} x 16 KiB per run, {reps} runs per side"
    );
    let mut results: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for rep in 0..reps {
        for (side, runs) in results.iter_mut().enumerate() {
            let path = format!("/fanin/{rep}/{side}");
            let broadcast = Broadcast::new();
            let track = broadcast.create_track("data", 1);
            router.publish(path.as_str(), broadcast);
            let cpu_before = cpu();
            let start = Instant::now();
            let read = Arc::new(AtomicUsize::new(0));
            let publisher = runtime.spawn(publish(track, groups, read.clone()));
            let bytes = if side == 0 {
                let (trust, path) = (trust.clone(), path.clone());
                std::thread::spawn(move || blocking_reader(addr, trust, path, groups, read))
                    .join()
                    .expect("the blocking reader")
            } else {
                let reader = tokio_reader(url.clone(), trust.clone(), path.clone(), groups, read);
                runtime.block_on(reader)
            };
            let elapsed = start.elapsed().as_secs_f64();
            let cpu_used = (cpu() - cpu_before).as_secs_f64();
            runtime.block_on(publisher).expect("publisher");
            router.unpublish(&path.as_str().into());
            assert_eq!(bytes, groups * FRAMES_PER_GROUP * FRAME, "every byte read");
            let mb = bytes as f64 / 1e6;
            runs.push((mb / elapsed, cpu_used / mb * 1e3));
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let mut summary = Vec::new();
    for (side, name) in ["blocking driver", "moq-tokio"].iter().enumerate() {
        let mut rates: Vec<f64> = results[side].iter().map(|r| r.0).collect();
        let mut cpus: Vec<f64> = results[side].iter().map(|r| r.1).collect();
        let runs: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        let (rate, cpu_ms) = (median(&mut rates), median(&mut cpus));
        println!(
            "{name:>16}: {rate:7.1} MB/s (runs {}), {cpu_ms:.2} ms of process CPU per MB",
            runs.join(", ")
        );
        summary.push((rate, cpu_ms));
    }
    println!(
        "blocking / moq-tokio: {:.2}x the MB/s, {:.2}x the CPU per MB",
        summary[0].0 / summary[1].0,
        summary[0].1 / summary[1].1
    );
}
