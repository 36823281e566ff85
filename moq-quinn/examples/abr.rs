//! Adaptive bitrate over MOQ: a player that probes the path and switches renditions.
//!
//! `cargo run --release -p moq-quinn --example abr` runs it over real QUIC on loopback,
//! through an emulated link (`moq_netsim`) whose rate steps 10 → 3 → 10 Mbit/s.
//!
//! - The publisher offers one broadcast with three renditions as tracks, `low`, `mid` and
//!   `high`, at 0.5, 2 and 8 Mbit/s: 30 frames a second, a group (a key frame and what
//!   follows) every half second, the three in step so that group `n` starts at the same
//!   moment in each.
//! - The player subscribes to one rendition and probes the path with a target just above
//!   the next rendition up. The publisher's session pads up to that target, so the estimate
//!   it sends back says whether the path could carry the next rendition before the player
//!   asks for it.
//! - It switches at group boundaries: up, at the group after the one it is receiving, once
//!   the estimate clears the next rendition with 15 % to spare; down, at the group it is
//!   receiving, as soon as the estimate falls below the current rendition or a group runs
//!   late.
//! - It prints a timeline (link rate, rendition, estimate, stalls) and, for each step of the
//!   link, when it settled on the highest rendition that fits.
//!
//! Playback is modelled, not decoded: the player starts a group when it has fully arrived
//! and the previous one has played for its half second; waiting for one is a stall.

#![allow(clippy::disallowed_methods, missing_docs, dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use moq_netsim::{Link, Shape};
use moq_quinn::{
    Broadcast, Client, GroupSequence, Identity, Router, Server, ServerTrust, SubscribeParams,
    TrackReader,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The renditions: track name and bitrate.
pub const RENDITIONS: [(&str, u64); 3] =
    [("low", 500_000), ("mid", 2_000_000), ("high", 8_000_000)];
/// One group: half a second.
pub const GROUP: Duration = Duration::from_millis(500);
const FPS: u64 = 30;
/// An up-switch needs the next rendition's bitrate plus this share (percent) in the estimate.
const HEADROOM_PERCENT: u64 = 15;
/// The probe target: the next rendition up (or the current, at the top) plus this share.
const TARGET_PERCENT: u64 = 20;
/// The link's round-trip time.
const RTT: Duration = Duration::from_millis(40);

/// What the player saw at one moment.
#[derive(Clone, Debug)]
pub struct Point {
    /// Since the player started.
    pub at: Duration,
    /// The link rate then, bits/s.
    pub link_bps: u64,
    /// The rendition it was receiving (index into [`RENDITIONS`]).
    pub rendition: usize,
    /// Its latest estimate of the path, bits/s (0 before the first).
    pub estimate: u64,
    /// Stall time so far.
    pub stalled: Duration,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Sampled every 100 ms.
    pub timeline: Vec<Point>,
    /// The longest single stall.
    pub longest_stall: Duration,
    /// Every stall: when playback stopped, and for how long.
    pub stalls: Vec<(Duration, Duration)>,
    /// Groups played.
    pub played: usize,
}

impl Outcome {
    /// The rendition the player held from `from` until `to`, if it held one throughout; else
    /// `None`.
    pub fn held(&self, from: Duration, to: Duration) -> Option<usize> {
        let mut held = None;
        for p in self.timeline.iter().filter(|p| p.at >= from && p.at < to) {
            match held {
                None => held = Some(p.rendition),
                Some(r) if r == p.rendition => {}
                Some(_) => return None,
            }
        }
        held
    }

    /// When the player last switched into the rendition it held at `to`, at or after
    /// `from` (or `from` if it already held it then).
    pub fn settled_at(&self, from: Duration, to: Duration) -> Option<Duration> {
        let points: Vec<&Point> = self
            .timeline
            .iter()
            .filter(|p| p.at >= from && p.at < to)
            .collect();
        let last = points.last()?.rendition;
        let mut at = points.first()?.at;
        for w in points.windows(2) {
            if w[1].rendition != w[0].rendition {
                at = w[1].at;
            }
        }
        (points.last()?.rendition == last).then_some(at)
    }
}

/// The highest rendition that fits `bps`.
pub fn fits(bps: u64) -> usize {
    RENDITIONS
        .iter()
        .rposition(|(_, rate)| *rate <= bps)
        .unwrap_or(0)
}

/// The link rate at `t` for a schedule of (start, rate).
fn rate_at(schedule: &[(Duration, u64)], t: Duration) -> u64 {
    schedule
        .iter()
        .take_while(|(start, _)| *start <= t)
        .last()
        .map_or(schedule[0].1, |(_, r)| *r)
}

fn probe_target(rendition: usize) -> u64 {
    let next = (rendition + 1).min(RENDITIONS.len() - 1);
    RENDITIONS[next].1 * (100 + TARGET_PERCENT) / 100
}

/// Publishes the three renditions in step until the task is dropped.
fn publish(router: &Router) -> tokio::task::JoinHandle<()> {
    let broadcast = Broadcast::new();
    let tracks: Vec<_> = RENDITIONS
        .iter()
        .map(|(name, _)| broadcast.create_track(name, 2))
        .collect();
    router.publish("/abr", broadcast);
    let frames: Vec<Bytes> = RENDITIONS
        .iter()
        .map(|(_, rate)| Bytes::from(vec![0x42; (rate / 8 / FPS) as usize]))
        .collect();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / FPS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let per_group = (GROUP.as_millis() as u64 * FPS / 1000) as usize;
        loop {
            let groups: Vec<_> = tracks.iter().map(|t| t.append_group()).collect();
            for _ in 0..per_group {
                tick.tick().await;
                for (g, f) in groups.iter().zip(&frames) {
                    g.write_frame(f.clone());
                }
            }
            for g in groups {
                g.finish();
            }
        }
    })
}

/// A subscription to one rendition, and the group from which it is no longer wanted.
struct Sub {
    rendition: usize,
    reader: TrackReader,
    until: Option<u64>,
    /// When it delivered its first unwanted group: it is dropped a group later, so that
    /// the group before still completes.
    retiring: Option<Instant>,
}

/// Runs the player for `duration` against a link following `schedule` (start, rate).
pub async fn run(schedule: Vec<(Duration, u64)>, duration: Duration, print: bool) -> Outcome {
    let identity = Identity::self_signed(&["localhost"]).expect("cert");
    let cert = identity.leaf().cloned().expect("leaf");
    let router = Router::new();
    let server = Server::builder("127.0.0.1:0".parse().expect("addr"), identity)
        .router(router.clone())
        .bind()
        .expect("bind");
    let down = Shape::new(schedule[0].1, RTT / 2)
        .with_schedule(schedule.clone())
        .with_queue_bytes(64 * 1024);
    let up = Shape::new(0, RTT / 2);
    let link = Link::start(server.local_addr().expect("addr"), up, down)
        .await
        .expect("link");
    let start = Instant::now();
    let publisher = publish(&router);
    let accept = tokio::spawn(async move {
        let session = server.accept().await;
        (server, session)
    });

    let client = Client::new(ServerTrust::Pinned(cert)).expect("client");
    let url = format!("moqt://localhost:{}", link.addr().port());
    let session = client
        .connect(&url)
        .await
        .expect("connect through the link");

    // Groups that arrived whole: sequence → (arrival, rendition).
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(u64, usize, Instant)>();
    let mut arrived: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut rendition = 0;
    let subscribe = |rendition: usize, from: Option<u64>| {
        let reader = session
            .subscribe(
                "/abr",
                RENDITIONS[rendition].0,
                SubscribeParams {
                    start: from.map(GroupSequence),
                    // Oldest group first: a player plays them in order.
                    ordered: true,
                    ..SubscribeParams::default()
                },
            )
            .expect("subscribe");
        Sub {
            rendition,
            reader,
            until: None,
            retiring: None,
        }
    };
    let mut subs = vec![subscribe(rendition, None)];
    let mut results = session.probe(probe_target(rendition)).expect("probe");
    let mut estimate = 0u64;
    // The newest group a subscription has delivered, and when it started arriving.
    let mut receiving: Option<(u64, Instant)> = None;
    let mut timeline = Vec::new();
    let mut sample = tokio::time::interval(Duration::from_millis(100));
    let end = start + duration;
    // Stalls are counted from the arrivals, by the playback model, at the end; the
    // timeline's running figure uses the same model on what has arrived so far.
    let stall_so_far =
        |arrived: &BTreeMap<u64, Instant>, now: Instant| playback(arrived, now, start).0;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        // Next group from any subscription.
        let next = async {
            let futures = subs
                .iter_mut()
                .enumerate()
                .map(|(i, s)| Box::pin(async move { (i, s.reader.next_group().await) }));
            futures_select(futures).await
        };
        tokio::select! {
            (i, group) = next => {
                let sub = &mut subs[i];
                match group {
                    Ok(Some(mut group)) => {
                        let seq = group.sequence().0;
                        if sub.until.is_some_and(|u| seq >= u) {
                            // Past the switch: the other subscription carries it.
                            sub.retiring.get_or_insert_with(Instant::now);
                            continue;
                        }
                        let r = sub.rendition;
                        if receiving.is_none_or(|(s, _)| seq > s) {
                            receiving = Some((seq, Instant::now()));
                        }
                        let tx = done_tx.clone();
                        tokio::spawn(async move {
                            while let Ok(Some(_)) = group.read_frame().await {}
                            if group.read_frame().await.is_ok() {
                                let _ = tx.send((seq, r, Instant::now()));
                            }
                        });
                    }
                    _ => {
                        subs.remove(i);
                        if subs.is_empty() {
                            subs.push(subscribe(rendition, None));
                        }
                    }
                }
            }
            Some((seq, r, at)) = done_rx.recv() => {
                if std::env::var("ABR_TRACE").is_ok() {
                    println!("    group {seq} ({}) arrived at {:.2} s", RENDITIONS[r].0, (at - start).as_secs_f64());
                }
                arrived.entry(seq).or_insert(at);
            }
            Some(reply) = results.next() => {
                estimate = reply.bitrate;
                let late = receiving.is_some_and(|(s, since)| {
                    !arrived.contains_key(&s) && since.elapsed() > GROUP + GROUP / 2
                });
                let want = if estimate * 100 < RENDITIONS[rendition].1 * 100 || late {
                    // The current rendition no longer fits: down, to what fits now.
                    fits(estimate).min(rendition.saturating_sub(1))
                } else if rendition + 1 < RENDITIONS.len()
                    && estimate * 100 >= RENDITIONS[rendition + 1].1 * (100 + HEADROOM_PERCENT)
                {
                    // The next one fits with room to spare: up one.
                    rendition + 1
                } else {
                    rendition
                };
                if want != rendition {
                    let current = receiving.map_or(0, |(s, _)| s);
                    if print {
                        println!("    switch {} -> {} at {:.2} s (estimate {:.2}, late {late}, receiving {current})", RENDITIONS[rendition].0, RENDITIONS[want].0, start.elapsed().as_secs_f64(), estimate as f64 / 1e6);
                    }
                    // Down: from the group being received, which the old one may be too
                    // slow to finish. Up: from the next group, after the old one's last.
                    let from = if want < rendition { current } else { current + 1 };
                    for s in subs.iter_mut() {
                        s.until = Some(s.until.map_or(from, |u| u.min(from)));
                    }
                    if want < rendition {
                        subs.clear();
                    }
                    subs.push(subscribe(want, Some(from)));
                    rendition = want;
                    results = session.probe(probe_target(rendition)).expect("probe");
                }
            }
            _ = sample.tick() => {
                subs.retain(|s| s.retiring.is_none_or(|since| since.elapsed() < GROUP));
                let at = start.elapsed();
                let point = Point {
                    at,
                    link_bps: rate_at(&schedule, at),
                    rendition,
                    estimate,
                    stalled: stall_so_far(&arrived, Instant::now()),
                };
                if print && at.as_millis() % 500 < 100 {
                    println!(
                        "{:>5.1} s  link {:>4.1} Mb/s  {:<5} {:>4.1} Mb/s  estimate {:>5.2} Mb/s  stalled {:>4.2} s",
                        at.as_secs_f64(),
                        point.link_bps as f64 / 1e6,
                        RENDITIONS[rendition].0,
                        RENDITIONS[rendition].1 as f64 / 1e6,
                        estimate as f64 / 1e6,
                        point.stalled.as_secs_f64(),
                    );
                }
                timeline.push(point);
            }
        }
    }
    publisher.abort();
    session.close(moq_quinn::code::ErrorCode(0), "done");
    let (server, _) = accept.await.expect("accept task");
    server.close(moq_quinn::code::ErrorCode(0), "done");
    drop(link);
    let (_, stalls, played) = playback(&arrived, end, start);
    Outcome {
        longest_stall: stalls.iter().map(|(_, d)| *d).max().unwrap_or_default(),
        stalls,
        timeline,
        played,
    }
}

/// Plays the groups that arrived, in order, up to `now`: a group starts when it has arrived
/// and the one before has played for [`GROUP`]; a group that never came costs [`GROUP`] of
/// stall once a later one is there. Playback starts with the first group, after a buffer of
/// half a group. Returns the total stall, each stall (start, length), and the groups played.
fn playback(
    arrived: &BTreeMap<u64, Instant>,
    now: Instant,
    start: Instant,
) -> (Duration, Vec<(Duration, Duration)>, usize) {
    let mut stalls = Vec::new();
    let mut total = Duration::ZERO;
    let mut iter = arrived.iter();
    let Some((&first, &first_at)) = iter.next() else {
        return (total, stalls, 0);
    };
    let mut played = 1;
    let mut expected = first + 1;
    let mut free_at = first_at + GROUP / 2 + GROUP;
    for (&seq, &at) in iter {
        if at > now {
            break;
        }
        // Groups that never came: the picture freezes for each.
        let missing = seq.saturating_sub(expected) as u32;
        let mut stall = GROUP * missing;
        let begin = free_at;
        free_at += GROUP * missing;
        if at > free_at {
            stall += at - free_at;
            free_at = at;
        }
        if !stall.is_zero() {
            stalls.push((begin.saturating_duration_since(start), stall));
            total += stall;
        }
        free_at += GROUP;
        expected = seq + 1;
        played += 1;
    }
    // Still waiting for the next group at `now`.
    if now > free_at + GROUP {
        let stall = now - free_at;
        stalls.push((free_at.saturating_duration_since(start), stall));
        total += stall;
    }
    (total, stalls, played)
}

/// Polls several futures, resolving with the first to complete (none: never).
async fn futures_select<F: std::future::Future + Unpin>(
    futures: impl Iterator<Item = F>,
) -> F::Output {
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(move |cx| {
        for f in futures.iter_mut() {
            if let std::task::Poll::Ready(out) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(out);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// The schedule of the demonstration: 10 Mbit/s, 3 Mbit/s from 10 s, 10 Mbit/s from 20 s.
pub fn demo_schedule(step: Duration) -> Vec<(Duration, u64)> {
    vec![
        (Duration::ZERO, 10_000_000),
        (step, 3_000_000),
        (step * 2, 10_000_000),
    ]
}

/// Checks an outcome against the goals: after each step of `schedule`, the highest
/// rendition that fits the link is held from within `settle` of the step until the next;
/// no stall lasts longer than one group. Returns one line per step, or what failed.
pub fn check(
    outcome: &Outcome,
    schedule: &[(Duration, u64)],
    duration: Duration,
    settle: Duration,
) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for (i, (from, rate)) in schedule.iter().enumerate() {
        let to = schedule.get(i + 1).map_or(duration, |(t, _)| *t);
        // The rendition that fits with the player's headroom for up-switches.
        let expected = fits(rate * 100 / (100 + HEADROOM_PERCENT));
        let held = outcome.held(*from + settle, to);
        let settled = outcome.settled_at(*from, to);
        let line = format!(
            "link {:>4.1} Mb/s from {:>4.1} s: expected {}, held {} from {}",
            *rate as f64 / 1e6,
            from.as_secs_f64(),
            RENDITIONS[expected].0,
            held.map_or("(switching)".to_owned(), |r| RENDITIONS[r].0.to_owned()),
            settled.map_or("—".to_owned(), |t| format!(
                "{:.1} s (+{:.1} s)",
                t.as_secs_f64(),
                t.saturating_sub(*from).as_secs_f64()
            )),
        );
        if held != Some(expected) {
            failures.push(line.clone());
        }
        lines.push(line);
    }
    if outcome.longest_stall > GROUP {
        failures.push(format!(
            "a stall of {:.2} s, longer than one group ({:.1} s): {:?}",
            outcome.longest_stall.as_secs_f64(),
            GROUP.as_secs_f64(),
            outcome.stalls
        ));
    }
    if failures.is_empty() {
        Ok(lines)
    } else {
        Err(failures.join("\n"))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let step = Duration::from_secs(10);
    let duration = step * 3;
    let schedule = demo_schedule(step);
    println!(
        "abr: renditions low 0.5, mid 2, high 8 Mb/s; groups of {:.1} s; link 10 → 3 → 10 Mb/s, RTT {} ms",
        GROUP.as_secs_f64(),
        RTT.as_millis()
    );
    let outcome = run(schedule.clone(), duration, true).await;
    println!(
        "played {} groups; stalls: {} (longest {:.2} s)",
        outcome.played,
        outcome.stalls.len(),
        outcome.longest_stall.as_secs_f64()
    );
    match check(&outcome, &schedule, duration, Duration::from_secs(3)) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            println!("settled within 3 s of every step, no stall longer than one group");
        }
        Err(e) => {
            println!("FAILED:\n{e}");
            std::process::exit(1);
        }
    }
}
