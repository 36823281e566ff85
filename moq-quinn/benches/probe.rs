//! How well the probe estimates the path, over real QUIC through an emulated link.
//!
//! `cargo bench -p moq-quinn --bench probe` runs one condition per row: links of 2, 10 and
//! 50 Mbit/s, RTTs of 10 and 100 ms, random loss of 0 and 1 %. In each, a publisher sends
//! media at 10 % of the probe target, and the subscriber probes with a target of twice the
//! link rate, so the responder must pad to find the link. Each row gives the estimate the
//! subscriber holds at 0.5, 1, 2 and 5 s after the probe starts, the worst error against the
//! link rate from 2 s on, the time after which every estimate stays within ±10 % of the link
//! rate, and the padding bytes the responder sent. The last line is
//! `worst error after 2 s: X %`.
//!
//! The link is `moq_netsim` (user-space, on loopback): the rate shapes the server → client
//! direction (UDP payload bytes, the unit the estimate counts), the delay is half the RTT
//! each way, the loss applies both ways, and the bottleneck queue holds one
//! bandwidth-delay product (at least 30 KB).
//!
//! Knobs: `PROBE_QUICK=1` runs each row for 2.5 s instead of 5 s (under a minute in all; the
//! 5 s column is then empty); `PROBE_ROWS=2/10,50/100` runs only the rows whose
//! `rate/rtt` label contains one of the comma-separated parts; `PROBE_CC=bbr` uses quinn's
//! BBR congestion controller on both ends instead of the default (Cubic).

#![allow(clippy::disallowed_methods, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_netsim::{Link, Shape};
use moq_quinn::{
    Broadcast, Client, Identity, QuicOptions, Router, Server, ServerTrust, SubscribeParams,
};

/// One emulated link.
#[derive(Clone, Copy)]
struct Condition {
    rate_bps: u64,
    rtt: Duration,
    loss: f64,
}

impl Condition {
    fn label(&self) -> String {
        format!(
            "{}/{}/{}",
            self.rate_bps / 1_000_000,
            self.rtt.as_millis(),
            if self.loss > 0.0 { "1%" } else { "0%" }
        )
    }
}

/// What one row measured.
struct Row {
    /// (time since the probe started, estimate in bits/s), in arrival order.
    replies: Vec<(Duration, u64)>,
    padding_bytes: u64,
    media_bps: u64,
    /// What the link carried toward the subscriber from 2 s to the end, bits/s: the rate
    /// the connection achieved, whatever the link's own rate.
    carried_bps: u64,
}

fn quic_options() -> QuicOptions {
    let mut o = QuicOptions::default();
    if std::env::var("PROBE_CC").is_ok_and(|v| v == "bbr") {
        o.congestion = moq_quinn::transport::Congestion::Bbr;
    }
    o
}

async fn run(c: Condition, duration: Duration) -> Row {
    let identity = Identity::self_signed(&["localhost"]).expect("cert");
    let cert = identity.leaf().cloned().expect("leaf");
    let router = Router::new();
    let server = Server::builder("127.0.0.1:0".parse().expect("addr"), identity)
        .router(router.clone())
        .options(quic_options())
        .bind()
        .expect("bind");
    let server_addr: SocketAddr = server.local_addr().expect("addr");

    // The link: the rate limits what the server sends; one BDP of queue, at least 30 KB.
    let one_way = c.rtt / 2;
    let bdp = (c.rate_bps as f64 / 8.0 * c.rtt.as_secs_f64()) as usize;
    let down = Shape::new(c.rate_bps, one_way)
        .with_loss(c.loss)
        .with_queue_bytes(bdp.max(30_000))
        .with_seed(7);
    let up = Shape::new(0, one_way).with_loss(c.loss).with_seed(11);
    let link = Link::start(server_addr, up, down).await.expect("link");

    // Media at 10 % of the target (the target is twice the link rate): 30 frames a second,
    // a group per second.
    let target = c.rate_bps * 2;
    let media_bps = target / 10;
    let broadcast = Broadcast::new();
    let track = broadcast.create_track("video", 2);
    router.publish("/probe", broadcast);
    let frame = Bytes::from(vec![0x5a; (media_bps / 8 / 30) as usize]);
    let publisher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / 30));
        loop {
            let group = track.append_group();
            for _ in 0..30 {
                tick.tick().await;
                group.write_frame(frame.clone());
            }
            group.finish();
        }
    });

    let accept = tokio::spawn(async move {
        let session = server.accept().await.expect("a session").expect("accepted");
        (server, session)
    });
    let client = Client::builder()
        .trust(ServerTrust::Pinned(cert))
        .options(quic_options())
        .build()
        .expect("client");
    let url = format!("moqt://localhost:{}", link.addr().port());
    let session = client
        .connect(&url)
        .await
        .expect("connect through the link");
    let (server, server_session) = accept.await.expect("accept task");
    let mut media = session
        .subscribe("/probe", "video", SubscribeParams::default())
        .expect("subscribe");
    let reader = tokio::spawn(async move {
        while let Ok(Some(mut group)) = media.next_group().await {
            tokio::spawn(async move { while let Ok(Some(_)) = group.read_frame().await {} });
        }
    });
    // Let the media settle for a moment, as a player would before probing.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut results = session.probe(target).expect("probe");
    let start = Instant::now();
    let link = std::sync::Arc::new(link);
    let tracer = std::env::var("PROBE_TRACE").is_ok_and(|v| v == "1").then(|| {
        let link = link.clone();
        let server_session = server_session.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut last = (link.down_stats(), server_session.stats().bytes_sent);
            loop {
                tick.tick().await;
                let now = (link.down_stats(), server_session.stats().bytes_sent);
                let s = server_session.stats();
                println!(
                    "  t={:>5.2} link {:>6.2} Mb/s  sent {:>6.2} Mb/s  est {:>6.2}  qdrop {} loss {} rtt {:?}",
                    start.elapsed().as_secs_f64(),
                    (now.0.forwarded_bytes - last.0.forwarded_bytes) as f64 * 80.0 / 1e6,
                    (now.1 - last.1) as f64 * 80.0 / 1e6,
                    s.send_bitrate.unwrap_or(0) as f64 / 1e6,
                    now.0.dropped_queue,
                    now.0.dropped_loss,
                    s.rtt,
                );
                last = now;
            }
        })
    });
    let mut replies = Vec::new();
    let begin = tokio::time::Instant::now();
    let deadline = begin + duration;
    let from_two = {
        let link = link.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(begin + Duration::from_secs(2)).await;
            (Instant::now(), link.down_stats().forwarded_bytes)
        })
    };
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline, results.next()).await {
        replies.push((start.elapsed(), r.bitrate));
    }
    let padding_bytes = server_session.stats().padding_bytes;
    let (two, carried_from) = from_two.await.expect("link sampler");
    let carried_bps = ((link.down_stats().forwarded_bytes - carried_from) as f64 * 8.0
        / two.elapsed().as_secs_f64()) as u64;
    if let Some(t) = tracer {
        t.abort();
    }
    publisher.abort();
    reader.abort();
    session.close(moq_quinn::code::ErrorCode(0), "done");
    server.close(moq_quinn::code::ErrorCode(0), "done");
    drop(link);
    Row {
        replies,
        padding_bytes,
        media_bps,
        carried_bps,
    }
}

/// The estimate held at `t`: the latest reply at or before it.
fn at(replies: &[(Duration, u64)], t: Duration) -> Option<u64> {
    replies
        .iter()
        .take_while(|(when, _)| *when <= t)
        .last()
        .map(|(_, b)| *b)
}

fn error(estimate: u64, link: u64) -> f64 {
    (estimate as f64 / link as f64 - 1.0) * 100.0
}

fn main() {
    let quick = std::env::var("PROBE_QUICK").is_ok_and(|v| v == "1");
    let duration = Duration::from_millis(if quick { 2500 } else { 5000 });
    let filter: Vec<String> = std::env::var("PROBE_ROWS")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut conditions = Vec::new();
    for rate in [2_000_000, 10_000_000, 50_000_000] {
        for rtt in [10, 100] {
            for loss in [0.0, 0.01] {
                let c = Condition {
                    rate_bps: rate,
                    rtt: Duration::from_millis(rtt),
                    loss,
                };
                if filter.is_empty() || filter.iter().any(|f| c.label().contains(f.as_str())) {
                    conditions.push(c);
                }
            }
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "probe: target = 2 × link, media = 10 % of target, {} s per row{}",
        duration.as_secs_f64(),
        if std::env::var("PROBE_CC").is_ok_and(|v| v == "bbr") {
            ", BBR"
        } else {
            ", Cubic"
        }
    );
    println!(
        "{:<14} {:>7} {:>7} {:>7} {:>7} {:>6} {:>9} {:>8} {:>8} {:>11} {:>8}",
        "link Mb/ms/loss",
        "0.5 s",
        "1 s",
        "2 s",
        "5 s",
        "media",
        "worst≥2s",
        "settled",
        "carried",
        "vs carried",
        "pad MB"
    );
    let mut worst_overall: f64 = 0.0;
    for c in conditions {
        let row = rt.block_on(run(c, duration));
        let mbps = |b: Option<u64>| match b {
            Some(b) => format!("{:.2}", b as f64 / 1e6),
            None => "—".to_owned(),
        };
        let after: Vec<u64> = row
            .replies
            .iter()
            .filter(|(t, _)| *t >= Duration::from_secs(2))
            .map(|(_, b)| *b)
            .collect();
        // The estimate held at 2 s counts too: it stands until the next reply.
        let held = at(&row.replies, Duration::from_secs(2));
        let worst = held
            .into_iter()
            .chain(after)
            .map(|b| error(b, c.rate_bps))
            .fold(None::<f64>, |w, e| {
                Some(match w {
                    Some(w) if w.abs() >= e.abs() => w,
                    _ => e,
                })
            });
        // Settled: the first reply after which every estimate is within ±10 %.
        let settled = {
            let mut since = None;
            for (t, b) in &row.replies {
                if error(*b, c.rate_bps).abs() <= 10.0 {
                    since.get_or_insert(*t);
                } else {
                    since = None;
                }
            }
            since
        };
        let worst_text = match worst {
            Some(w) => {
                worst_overall = if w.abs() > worst_overall.abs() {
                    w
                } else {
                    worst_overall
                };
                format!("{w:+.1} %")
            }
            None => {
                worst_overall = 100.0_f64.max(worst_overall.abs());
                "no reply".to_owned()
            }
        };
        // The final estimate against what the connection carried from 2 s on.
        let versus_carried = row.replies.last().map_or("—".to_owned(), |(_, b)| {
            format!("{:+.1} %", error(*b, row.carried_bps))
        });
        println!(
            "{:<14} {:>7} {:>7} {:>7} {:>7} {:>6} {:>9} {:>8} {:>8.2} {:>11} {:>8.2}",
            c.label(),
            mbps(at(&row.replies, Duration::from_millis(500))),
            mbps(at(&row.replies, Duration::from_secs(1))),
            mbps(at(&row.replies, Duration::from_secs(2))),
            if quick {
                "—".to_owned()
            } else {
                mbps(at(&row.replies, Duration::from_secs(5)))
            },
            format!("{:.2}", row.media_bps as f64 / 1e6),
            worst_text,
            settled.map_or("never".to_owned(), |t| format!("{:.1} s", t.as_secs_f64())),
            row.carried_bps as f64 / 1e6,
            versus_carried,
            row.padding_bytes as f64 / 1e6,
        );
    }
    println!("worst error after 2 s: {:.1} %", worst_overall.abs());
}
