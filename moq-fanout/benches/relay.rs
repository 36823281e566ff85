//! Relay benchmark: the same publisher and subscribers (ours) through two relays, each run
//! as its own process: ours (`moq-fanout`) and moq-dev's `moq-relay` 0.17.10.
//!
//! `cargo bench -p moq-fanout --bench relay [-- FILTER...]` runs, for each relay, each load
//! and N = 1, 4, 16, 64 subscribers (each on its own connection), one publisher → relay →
//! N subscribers, and prints per run: delivered MB/s and frames/s (summed over the
//! subscribers, in the measurement window), the relay process's CPU time per delivered
//! frame (and frames per CPU-second; per-thread nanoseconds from `schedstat`), its peak RSS and peak RSS growth per subscriber, and
//! p50/p99 frame latency from the publisher's write to the subscriber's read.
//!
//! Loads:
//! - `media`: 4 tracks, each 30 frames/s, frames 4–12 KB, 60 frames per group;
//! - `saturate`: 1 track of 16 KiB frames, 64 frames per group, written as fast as the
//!   publisher's session drains them (unpaced, back-pressured at 4 MiB queued).
//!
//! FILTER words select runs whose label has all of them as words (`ours`, `moq-relay`, `media`,
//! `saturate`, `n=16`). `BENCH_SECS` sets the measurement window (default 5 s, after 2 s of
//! warm-up); `BENCH_REPS` runs each one that many times, the relays alternating, and prints
//! per-column medians and a ratio table. moq-relay is found like the interop test finds it (`$MOQ_RELAY_BIN`, then
//! `target/moq-relay/bin/moq-relay`, then `~/.cache/moq-lite-rs/moq-relay-0.17.10/bin`, where `scripts/peers install` builds it).

#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use moq_quinn::{
    Broadcast, Client, Config, QuicOptions, Router, ServerTrust, SubscribeParams, TrackEvent,
    TrackProducer,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const PATH: &str = "/bench";
const WARMUP: Duration = Duration::from_secs(2);
const COUNTS: [usize; 4] = [1, 4, 16, 64];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    Media,
    Saturate,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::Media => "media",
            Load::Saturate => "saturate",
        }
    }

    fn tracks(self) -> usize {
        match self {
            Load::Media => 4,
            Load::Saturate => 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ours,
    MoqRelay,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::MoqRelay => "moq-relay",
        }
    }
}

// ---- The relay processes ----

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("in the workspace")
        .to_path_buf()
}

fn moq_relay_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("MOQ_RELAY_BIN") {
        return bin.into();
    }
    let mut candidates = vec![workspace_root().join("target/moq-relay/bin/moq-relay")];
    if let Some(home) = std::env::var_os("HOME") {
        candidates
            .push(PathBuf::from(home).join(".cache/moq-lite-rs/moq-relay-0.17.10/bin/moq-relay"));
    }
    candidates
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "moq-relay not found: set MOQ_RELAY_BIN or run `cargo install moq-relay@0.17.10 \
                 --no-default-features --features noq --root target/moq-relay`"
            )
        })
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

struct RelayProcess {
    child: Child,
    pid: u32,
    port: u16,
}

impl RelayProcess {
    async fn start(kind: Kind) -> Self {
        let port = free_port();
        let mut cmd = match kind {
            Kind::Ours => {
                // `MOQ_FANOUT_BIN` runs another binary (or a wrapper, e.g. a profiler).
                let bin = std::env::var_os("MOQ_FANOUT_BIN")
                    .unwrap_or_else(|| env!("CARGO_BIN_EXE_moq-fanout").into());
                let mut cmd = Command::new(bin);
                cmd.args(["--bind", &format!("127.0.0.1:{port}"), "--log", "info"]);
                cmd
            }
            Kind::MoqRelay => {
                let config = std::env::temp_dir().join(format!("moq-relay-bench-{port}.toml"));
                std::fs::write(
                    &config,
                    format!(
                        "[listen]\nbind = \"127.0.0.1:{port}\"\n[listen.tls]\n\
                         generate = [\"localhost\"]\n[auth]\npublic = [\"**\"]\n"
                    ),
                )
                .expect("write the config");
                let mut cmd = Command::new(moq_relay_bin());
                cmd.arg(config).env("RUST_LOG", "info").env("NO_COLOR", "1");
                cmd
            }
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the relay");
        let pid = child.id().expect("a pid");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("the relay listens within 10 s")
            .expect("the relay's log");
        Self { child, pid, port }
    }

    /// (user + system CPU seconds, RSS KiB, peak RSS KiB).
    fn usage(&self) -> (f64, u64, u64) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // After the command: state is field 3, utime 14, stime 15 (1-based in proc(5)).
        let ticks = |i: usize| {
            fields
                .get(i - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let cpu = (ticks(14) + ticks(15)) as f64 / clock_ticks();
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
        };
        (cpu, kib("VmRSS:"), kib("VmHWM:"))
    }

    /// CPU nanoseconds of each live thread (`/proc/<pid>/task/*/schedstat`, first field).
    fn thread_cpu_ns(&self) -> HashMap<u64, u64> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return HashMap::new();
        };
        tasks
            .flatten()
            .filter_map(|task| {
                let tid = task.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
                Some((tid, stat.split_whitespace().next()?.parse().ok()?))
            })
            .collect()
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

// ---- Publisher and subscribers (ours, the same for both relays) ----

/// What the subscribers count: frames and bytes during the measurement window, every frame
/// (for the saturating publisher's credit), and latency samples.
#[derive(Default)]
struct Meter {
    measuring: AtomicBool,
    frames: AtomicU64,
    bytes: AtomicU64,
    groups_dropped: AtomicU64,
    delivered: AtomicU64,
    latencies: std::sync::Mutex<Vec<u32>>,
}

/// Microseconds since the bench's epoch, stamped in each frame's first 8 bytes.
fn stamp(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

fn frame(epoch: Instant, size: usize) -> Bytes {
    // One allocation per frame, at the publisher only (a timestamp per frame).
    let mut b = BytesMut::with_capacity(size);
    b.put_u64(stamp(epoch));
    b.resize(size, 0);
    b.freeze()
}

fn media_size(i: u64) -> usize {
    // 4..=12 KB, spread deterministically.
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33;
    4000 + (h % 8001) as usize
}

async fn publish_media(track: TrackProducer, epoch: Instant, stop: Arc<AtomicBool>, salt: u64) {
    let mut tick = tokio::time::interval(Duration::from_micros(33_333));
    let mut i = 0u64;
    let mut group: Option<moq_quinn::GroupProducer> = None;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if i.is_multiple_of(60) {
            if let Some(g) = group.take() {
                g.finish();
            }
            group = Some(track.append_group());
        }
        if let Some(g) = &group {
            g.write_frame(frame(epoch, media_size(i ^ salt)));
        }
        i += 1;
    }
    if let Some(g) = group {
        g.finish();
    }
}

/// Frames the saturating publisher may be ahead of the average subscriber: it writes as
/// fast as the relay delivers, with bounded queues (so latency measures the relay, not a
/// backlog).
const SATURATE_AHEAD: u64 = 128;

async fn publish_saturate(
    track: TrackProducer,
    meter: Arc<Meter>,
    subscribers: u64,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) {
    let mut i = 0u64;
    let mut group: Option<moq_quinn::GroupProducer> = None;
    while !stop.load(Ordering::Relaxed) {
        let waited = Instant::now();
        while i.saturating_sub(meter.delivered.load(Ordering::Relaxed) / subscribers)
            > SATURATE_AHEAD
            && waited.elapsed() < Duration::from_millis(50)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if i.is_multiple_of(64) {
            if let Some(g) = group.take() {
                g.finish();
            }
            group = Some(track.append_group());
        }
        if let Some(g) = &group {
            g.write_frame(frame(epoch, 16 * 1024));
        }
        i += 1;
        if i.is_multiple_of(8) {
            tokio::task::yield_now().await;
        }
    }
    if let Some(g) = group {
        g.finish();
    }
}

fn params() -> SubscribeParams {
    // A non-zero max latency: moq-net reads 0 as "only the newest group".
    SubscribeParams {
        max_latency: Duration::from_secs(5),
        ..SubscribeParams::default()
    }
}

/// One subscriber: discovers the broadcast, subscribes to every track, reads everything,
/// recording latencies (µs) while the meter is on. Runs until aborted.
async fn subscriber(
    url: String,
    tracks: usize,
    epoch: Instant,
    meter: Arc<Meter>,
    ready: tokio::sync::mpsc::UnboundedSender<()>,
) {
    let client = Client::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .trust(ServerTrust::Insecure)
        .options(QuicOptions::default())
        .build()
        .expect("client");
    let session = client.connect(&url).await.expect("connect");
    let mut announced = session.announced("/").expect("interest");
    loop {
        let a = announced.next().await.expect("announcements");
        if a.path().as_str() == "bench" {
            break;
        }
    }
    let mut readers = Vec::new();
    for t in 0..tracks {
        readers.push(
            session
                .subscribe(PATH, &format!("t{t}"), params())
                .expect("subscribe"),
        );
    }
    let _ = ready.send(());
    let mut tasks = tokio::task::JoinSet::new();
    for mut reader in readers {
        let meter = meter.clone();
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(1024);
            loop {
                match reader.next().await {
                    Ok(Some(TrackEvent::Group(mut group))) => {
                        while let Ok(Some(frame)) = group.read_frame().await {
                            meter.delivered.fetch_add(1, Ordering::Relaxed);
                            if !meter.measuring.load(Ordering::Relaxed) {
                                continue;
                            }
                            let sent = frame
                                .get(..8)
                                .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()))
                                .unwrap_or(0);
                            let now = stamp(epoch);
                            samples.push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
                            meter.frames.fetch_add(1, Ordering::Relaxed);
                            meter.bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
                            if samples.len() == samples.capacity() {
                                meter.latencies.lock().unwrap().append(&mut samples);
                            }
                        }
                        meter.latencies.lock().unwrap().append(&mut samples);
                    }
                    Ok(Some(TrackEvent::Dropped { start, end, .. })) => {
                        if meter.measuring.load(Ordering::Relaxed) {
                            meter
                                .groups_dropped
                                .fetch_add(end.0.saturating_sub(start.0) + 1, Ordering::Relaxed);
                        }
                    }
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    drop(session);
    drop(client);
}

#[derive(Clone)]
struct Row {
    label: String,
    mbps: f64,
    fps: f64,
    cpu_per_frame_us: f64,
    frames_per_cpu_s: f64,
    peak_rss_mb: f64,
    rss_per_sub_kb: f64,
    p50_ms: f64,
    p99_ms: f64,
    dropped: u64,
}

async fn run(kind: Kind, load: Load, n: usize, window: Duration) -> Row {
    let relay = RelayProcess::start(kind).await;
    let url = format!("moqt://localhost:{}", relay.port);
    let epoch = Instant::now();

    // The publisher.
    let broadcast = Broadcast::new();
    let tracks: Vec<TrackProducer> = (0..load.tracks())
        .map(|t| broadcast.create_track(&format!("t{t}"), 1))
        .collect();
    let router = Router::new();
    router.publish(PATH, broadcast);
    let pub_client = Client::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .trust(ServerTrust::Insecure)
        .options(QuicOptions::default())
        .build()
        .expect("client");
    let mut pub_config = Config::default();
    pub_config.max_queued_bytes_per_subscription = 64 * 1024 * 1024;
    pub_config.max_queued_bytes = 64 * 1024 * 1024;
    let publisher = pub_client
        .connect_with(&url, pub_config, Some(router))
        .await
        .expect("publisher connects");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, baseline_rss, _) = relay.usage();

    // The subscribers.
    let meter = Arc::new(Meter::default());
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel();
    let subs: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(subscriber(
                url.clone(),
                load.tracks(),
                epoch,
                meter.clone(),
                ready_tx.clone(),
            ))
        })
        .collect();
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(20), ready.recv())
            .await
            .expect("every subscriber subscribes")
            .expect("ready");
    }
    let start = Instant::now();
    while tracks.iter().any(|t| t.subscriber_count() == 0) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the relay subscribes upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Publish; measure after the warm-up.
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for (t, track) in tracks.iter().enumerate() {
        let (track, stop) = (track.clone(), stop.clone());
        publishers.push(match load {
            Load::Media => tokio::spawn(publish_media(track, epoch, stop, t as u64 * 7919)),
            Load::Saturate => tokio::spawn(publish_saturate(
                track,
                meter.clone(),
                n as u64,
                epoch,
                stop,
            )),
        });
    }
    tokio::time::sleep(WARMUP).await;
    let (cpu0, _, _) = relay.usage();
    let threads0 = relay.thread_cpu_ns();
    meter.measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    meter.measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let (cpu1, _, peak_rss) = relay.usage();
    let threads1 = relay.thread_cpu_ns();
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        let _ = p.await;
    }
    for s in &subs {
        s.abort();
    }
    for s in subs {
        let _ = s.await;
    }
    drop(publisher);
    relay.stop().await;
    let mut latencies = std::mem::take(&mut *meter.latencies.lock().unwrap());
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |&us| us as f64 / 1000.0)
    };
    let frames = meter.frames.load(Ordering::Relaxed) as f64;
    let bytes = meter.bytes.load(Ordering::Relaxed) as f64;
    // Per-thread nanoseconds when every thread of the window's start is still there (a
    // thread that exited took its time with it), else the process's 10 ms ticks.
    let cpu = if !threads1.is_empty() && threads0.keys().all(|t| threads1.contains_key(t)) {
        threads1
            .iter()
            .map(|(t, &ns)| ns - threads0.get(t).copied().unwrap_or(0).min(ns))
            .sum::<u64>() as f64
            / 1e9
    } else {
        cpu1 - cpu0
    };
    Row {
        label: format!("{} {} n={n}", kind.name(), load.name()),
        mbps: bytes / elapsed / 1e6,
        fps: frames / elapsed,
        cpu_per_frame_us: if frames > 0.0 {
            cpu / frames * 1e6
        } else {
            f64::NAN
        },
        frames_per_cpu_s: if cpu > 0.0 { frames / cpu } else { f64::NAN },
        peak_rss_mb: peak_rss as f64 / 1024.0,
        rss_per_sub_kb: peak_rss.saturating_sub(baseline_rss) as f64 / n as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        dropped: meter.groups_dropped.load(Ordering::Relaxed),
    }
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let window = Duration::from_secs(
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "relay bench: window {window:?} after {WARMUP:?} warm-up; CPU and RSS of the relay \
         process; latency publisher write -> subscriber read\n"
    );
    println!(
        "{:<24} {:>9} {:>9} {:>11} {:>12} {:>9} {:>10} {:>8} {:>8} {:>7}",
        "run",
        "MB/s",
        "frames/s",
        "CPU us/frm",
        "frames/CPU-s",
        "peak MB",
        "KB/sub",
        "p50 ms",
        "p99 ms",
        "dropped"
    );
    // `BENCH_REPS` runs of each (default 1), the two relays alternating; each column of a
    // printed row is the median over the runs.
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut summary = Vec::new();
    for load in [Load::Media, Load::Saturate] {
        for n in COUNTS {
            let kinds: Vec<Kind> = [Kind::Ours, Kind::MoqRelay]
                .into_iter()
                .filter(|kind| {
                    let label = format!("{} {} n={n}", kind.name(), load.name());
                    filters
                        .iter()
                        .all(|f| label.split(' ').any(|word| word == f.as_str()))
                })
                .collect();
            let mut rows: Vec<Vec<Row>> = kinds.iter().map(|_| Vec::new()).collect();
            for _ in 0..reps {
                for (kind, runs) in kinds.iter().zip(&mut rows) {
                    runs.push(runtime.block_on(run(*kind, load, n, window)));
                }
            }
            let medians: Vec<Row> = rows.into_iter().map(median_row).collect();
            for row in &medians {
                println!(
                    "{:<24} {:>9.2} {:>9.0} {:>11.1} {:>12.0} {:>9.1} {:>10.0} {:>8.2} {:>8.2} {:>7}",
                    row.label,
                    row.mbps,
                    row.fps,
                    row.cpu_per_frame_us,
                    row.frames_per_cpu_s,
                    row.peak_rss_mb,
                    row.rss_per_sub_kb,
                    row.p50_ms,
                    row.p99_ms,
                    row.dropped
                );
            }
            if let [ours, theirs] = &medians[..] {
                summary.push((
                    format!("{} n={n}", load.name()),
                    ours.clone(),
                    theirs.clone(),
                ));
            }
        }
    }
    if !summary.is_empty() {
        println!("\nours / moq-relay ({reps} run(s) each, medians)");
        println!(
            "{:<16} {:>13} {:>9} {:>9} {:>9}",
            "run", "frames/CPU-s", "KB/sub", "p50", "p99"
        );
        for (label, ours, theirs) in &summary {
            println!(
                "{:<16} {:>13.2} {:>9.2} {:>9.2} {:>9.2}",
                label,
                ours.frames_per_cpu_s / theirs.frames_per_cpu_s,
                ours.rss_per_sub_kb / theirs.rss_per_sub_kb,
                ours.p50_ms / theirs.p50_ms,
                ours.p99_ms / theirs.p99_ms
            );
        }
        // Media only: under the saturating load the relays' queues, not their subscribers,
        // set the peak.
        {
            let load = Load::Media;
            let at = |n: usize| {
                summary
                    .iter()
                    .find(|(label, _, _)| *label == format!("{} n={n}", load.name()))
            };
            if let (Some((_, o16, t16)), Some((_, o64, t64))) = (at(16), at(64)) {
                let marginal = |a: &Row, b: &Row| (b.peak_rss_mb - a.peak_rss_mb) * 1024.0 / 48.0;
                let (ours, theirs) = (marginal(o16, o64), marginal(t16, t64));
                println!(
                    "{} peak RSS per added subscriber (n=16 -> 64): ours {ours:.0} KB, moq-relay {theirs:.0} KB ({:.2})",
                    load.name(),
                    ours / theirs
                );
            }
        }
    }
}

/// A row whose every column is the median of `rows`' (which share their label).
fn median_row(rows: Vec<Row>) -> Row {
    let median = |f: &dyn Fn(&Row) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Row {
        label: rows[0].label.clone(),
        mbps: median(&|r| r.mbps),
        fps: median(&|r| r.fps),
        cpu_per_frame_us: median(&|r| r.cpu_per_frame_us),
        frames_per_cpu_s: median(&|r| r.frames_per_cpu_s),
        peak_rss_mb: median(&|r| r.peak_rss_mb),
        rss_per_sub_kb: median(&|r| r.rss_per_sub_kb),
        p50_ms: median(&|r| r.p50_ms),
        p99_ms: median(&|r| r.p99_ms),
        dropped: median(&|r| r.dropped as f64) as u64,
    }
}
