//! The whole path on loopback: publishers on both transports → the relay → a subscriber that
//! dials by URL, through a publisher restart, with nothing in the application for it.
//!
//! - A relay (`moq-fanout`) listens on native QUIC and WebTransport, with a self-signed
//!   certificate that the clients pin by its SHA-256.
//! - `/cam` is published over WebTransport and `/mic` over native QUIC, each a reconnecting
//!   session ([`moq_dial::Reconnecting`]) whose router publishes on every session. Group
//!   numbers come from the wall clock, so they keep increasing when a publisher restarts.
//! - A subscriber discovers both and watches `/cam` with a [`moq_dial::ResumingTrack`].
//! - Halfway, the camera's publisher stops (its process "restarts": a new session with a new
//!   producer); the relay moves the subscription to the new publisher and the subscriber
//!   reads on.
//!
//! ```sh
//! cargo run -p moq-fanout --example cam
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use moq_dial::{Dialer, Reconnect, Reconnecting, ServerTrust};
use moq_fanout::{RelayConfig, RelayServer, StaticTokens};
use moq_quinn::{Broadcast, GroupSequence, Router, SubscribeParams, TrackProducer};

/// A group per this period: its number is the periods since the epoch.
const PERIOD: Duration = Duration::from_millis(100);

/// What the subscriber saw.
#[derive(Debug)]
pub struct Outcome {
    /// Broadcasts discovered.
    pub discovered: Vec<String>,
    /// `(group number, frame, ms since the start)` for each group read.
    pub groups: Vec<(u64, String, u128)>,
    /// When the camera restarted, ms since the start.
    pub restart_at: u128,
}

/// A publisher of `path` with one track: a reconnecting session and the producer.
struct Publisher {
    _session: Reconnecting,
    track: TrackProducer,
}

fn publish(url: &str, hash: &str, path: &str, track: &str) -> Publisher {
    let broadcast = Broadcast::new();
    let producer = broadcast.create_track(track, 2);
    // Numbers from the wall clock: a restarted publisher goes on from where it was.
    let _ = producer.continue_from(GroupSequence::from_time(SystemTime::now(), PERIOD));
    let router = Router::new();
    router.publish(path, broadcast);
    Publisher {
        _session: Dialer::builder()
            .trust(trust(hash))
            .router(router)
            .build()
            .expect("a dialer")
            .reconnecting(url, Reconnect::default()),
        track: producer,
    }
}

/// The clients' trust: the relay's self-signed certificate, by its SHA-256.
fn trust(hash: &str) -> ServerTrust {
    ServerTrust::from_hash_hex(hash).expect("a SHA-256 in hex")
}

/// Writes one group named `tag` with the time it was written.
fn write(track: &TrackProducer, tag: &str) {
    let group = track.append_group();
    group.write_frame(Bytes::from(format!("{tag} {}", group.sequence().0)));
    group.finish();
}

/// Runs the demo for `duration`; the camera restarts halfway.
pub async fn run(duration: Duration, print: bool) -> Outcome {
    let mut config = RelayConfig::default();
    config.listen.quic = Some("127.0.0.1:0".parse().expect("addr"));
    config.listen.webtransport = Some("127.0.0.1:0".parse().expect("addr"));
    config.tls.generate = vec!["localhost".into()];
    let access = Arc::new(StaticTokens::from_config(&config.auth));
    let relay = RelayServer::start(config, access).await.expect("the relay");
    let hash = hex::encode(moq_quinn::transport::certificate_hash(
        relay.certificate().expect("a certificate"),
    ));
    let quic = format!(
        "moqt://localhost:{}",
        relay.quic_addr().expect("quic").port()
    );
    let wt = format!(
        "https://localhost:{}/",
        relay.webtransport_addr().expect("webtransport").port()
    );
    let dialer = || Dialer::new(trust(&hash)).expect("a dialer");

    let start = Instant::now();
    let camera = publish(&wt, &hash, "/cam", "video");
    let mic = publish(&quic, &hash, "/mic", "audio");

    let subscriber = dialer().reconnecting(&quic, Reconnect::default());
    let mut announced = subscriber.announced("/");
    let mut discovered = Vec::new();
    while discovered.len() < 2 {
        write(&camera.track, "cam");
        write(&mic.track, "mic");
        if let Ok(Some(a)) = tokio::time::timeout(PERIOD, announced.next()).await {
            discovered.push(a.path().to_string());
            if print {
                println!(
                    "{:>5} ms  discovered {}",
                    start.elapsed().as_millis(),
                    a.path()
                );
            }
        }
    }
    let mut video = subscriber.subscribe("/cam", "video", SubscribeParams::default());

    let mut camera = Some(camera);
    let mut restart_at = 0;
    let mut groups = Vec::new();
    let reading = async {
        loop {
            let Ok(Some(mut group)) = video.next_group().await else {
                return;
            };
            let frame = group.read_frame().await.ok().flatten().unwrap_or_default();
            groups.push((
                group.sequence().0,
                String::from_utf8_lossy(&frame).into_owned(),
                start.elapsed().as_millis(),
            ));
            if print {
                println!(
                    "{:>5} ms  group {} {:?}",
                    start.elapsed().as_millis(),
                    group.sequence().0,
                    String::from_utf8_lossy(&frame)
                );
            }
        }
    };
    let writing = async {
        let end = start + duration;
        let half = start + duration / 2;
        while Instant::now() < end {
            if Instant::now() >= half && restart_at == 0 {
                // The camera restarts: its session and producer go, new ones come.
                camera = None;
                restart_at = start.elapsed().as_millis();
                if print {
                    println!("{restart_at:>5} ms  the camera restarts");
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                camera = Some(publish(&wt, &hash, "/cam", "video"));
            }
            if let Some(camera) = &camera {
                write(&camera.track, "cam");
            }
            write(&mic.track, "mic");
            tokio::time::sleep(PERIOD).await;
        }
    };
    tokio::select! {
        () = reading => {}
        () = writing => {}
    }
    drop(camera);
    subscriber.close(moq_quinn::code::session::NO_ERROR, "done");
    subscriber.stopped().await;
    relay.shutdown().await;
    Outcome {
        discovered,
        groups,
        restart_at,
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() {
    let outcome = run(Duration::from_secs(4), true).await;
    let after = outcome
        .groups
        .iter()
        .filter(|(_, _, at)| *at > outcome.restart_at)
        .count();
    println!(
        "{} groups of /cam, {after} of them after the restart at {} ms; numbers always increasing: {}",
        outcome.groups.len(),
        outcome.restart_at,
        outcome.groups.windows(2).all(|w| w[0].0 < w[1].0)
    );
}
