//! The clock demo: a publisher and a subscriber over real QUIC on loopback.
//!
//! `cargo run --release --example clock` starts a server that publishes `/clock` (track
//! `seconds`: a group per second, a frame per 100 ms tick), a client that discovers it by
//! announcement and subscribes, prints every frame with its delivery latency, and ends by
//! itself with a summary. Native QUIC (`moq-quinn`) by default; `--webtransport` runs the
//! same over WebTransport (`moq-webtransport`, HTTP/3). The API is the same either way: only
//! the endpoint differs.
//!
//! Flags:
//! - `--seconds N`: run for N seconds (default 5).
//! - `--webtransport`: use WebTransport instead of native QUIC.
//! - `--serve ADDR`: only publish, listening on ADDR (e.g. `127.0.0.1:4443`), until Ctrl-C or
//!   N seconds. Prints the URL and the certificate's SHA-256 (for `--hash`, or a browser's
//!   `serverCertificateHashes` with `--webtransport`).
//! - `--subscribe URL`: only subscribe, to `moqt://host:port` (native QUIC) or
//!   `https://host:port/path` (WebTransport), trusting the certificate whose SHA-256 is
//!   `--hash HEX`, or any with `--insecure`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use moq_dial::Dialer;
use moq_webtransport::{Broadcast, Identity, Router, ServerTrust, Session, SubscribeParams};

const BROADCAST: &str = "/clock";
const TRACK: &str = "seconds";
const TICK: Duration = Duration::from_millis(100);
const TICKS_PER_GROUP: u32 = 10;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The clock demo: a publisher and a subscriber over real QUIC on loopback.
#[derive(Debug, clap::Parser)]
#[command(name = "clock")]
struct Args {
    /// Run for this many seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Use WebTransport instead of native QUIC.
    #[arg(long)]
    webtransport: bool,
    /// Only publish, listening on ADDR (e.g. 127.0.0.1:4443), until Ctrl-C or --seconds.
    #[arg(long, value_name = "ADDR", conflicts_with = "subscribe")]
    serve: Option<String>,
    /// Only subscribe, to moqt://host:port or https://host:port/path.
    #[arg(long, value_name = "URL")]
    subscribe: Option<String>,
    /// Trust any certificate (with --subscribe).
    #[arg(long, requires = "subscribe")]
    insecure: bool,
    /// Trust the certificate with this SHA-256, as printed by --serve (64 hex digits,
    /// colons allowed).
    #[arg(long, value_name = "HEX", requires = "subscribe", value_parser = parse_hash)]
    hash: Option<ServerTrust>,
}

fn parse_hash(text: &str) -> Result<ServerTrust, String> {
    ServerTrust::from_hash_hex(text).map_err(|e| format!("{e} (printed by --serve)"))
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A frame: 8 bytes of send time (µs since the epoch), then the tick as text.
fn tick_frame(group: u64, tick: u32) -> Bytes {
    let mut frame = unix_micros().to_be_bytes().to_vec();
    frame.extend_from_slice(format!("group {group} tick {tick}").as_bytes());
    Bytes::from(frame)
}

/// Publishes the clock on `router` until `duration` has passed.
async fn publish(router: &Router, duration: Duration) {
    let broadcast = Broadcast::new();
    let track = broadcast.create_track(TRACK, 4);
    router.publish(BROADCAST, broadcast);
    let mut ticker = tokio::time::interval(TICK);
    let end = tokio::time::Instant::now() + duration;
    while tokio::time::Instant::now() < end {
        let group = track.append_group();
        for tick in 0..TICKS_PER_GROUP {
            ticker.tick().await;
            group.write_frame(tick_frame(group.sequence().0, tick));
        }
        group.finish();
    }
}

struct Summary {
    frames: u64,
    groups: u64,
    bytes: u64,
    latencies: Vec<Duration>,
}

/// Discovers the clock, subscribes, prints frames until `duration` has passed.
async fn subscribe(session: &Session, duration: Duration) -> Result<Summary, Error> {
    let mut announced = session.announced("/")?;
    let announcement = tokio::time::timeout(Duration::from_secs(5), announced.next())
        .await?
        .ok_or("the announce stream ended")?;
    println!("discovered {}", announcement.path());
    let mut track = session.subscribe(
        announcement.path().clone(),
        TRACK,
        SubscribeParams::default(),
    )?;
    let mut summary = Summary {
        frames: 0,
        groups: 0,
        bytes: 0,
        latencies: Vec::new(),
    };
    let verbose = duration <= Duration::from_secs(10);
    let deadline = tokio::time::Instant::now() + duration;
    let run = async {
        while let Some(mut group) = track.next_group().await? {
            summary.groups += 1;
            while let Some(frame) = group.read_frame().await? {
                summary.frames += 1;
                summary.bytes += frame.len() as u64;
                let sent = frame
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_be_bytes);
                let latency = Duration::from_micros(unix_micros().saturating_sub(sent));
                summary.latencies.push(latency);
                if verbose {
                    let text = String::from_utf8_lossy(frame.get(8..).unwrap_or_default());
                    println!(
                        "  {text:<20} latency {:>7.3} ms",
                        latency.as_secs_f64() * 1e3
                    );
                }
            }
            if !verbose {
                println!(
                    "group {} complete: {} frames so far",
                    group.sequence(),
                    summary.frames
                );
            }
        }
        Ok::<_, Error>(())
    };
    match tokio::time::timeout_at(deadline, run).await {
        Ok(result) => result?,
        Err(_elapsed) => {}
    }
    Ok(summary)
}

fn print_summary(summary: &mut Summary, session: &Session, elapsed: Duration) {
    let stats = session.stats();
    summary.latencies.sort();
    let pct = |p: f64| {
        let i = ((summary.latencies.len() as f64 - 1.0) * p).round() as usize;
        summary
            .latencies
            .get(i)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "summary: {} frames in {} groups, {:.1} kbit/s of payload, latency p50 {:.3} ms p99 {:.3} ms, rtt {:?}, {} bytes received on the connection",
        summary.frames,
        summary.groups,
        summary.bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e3,
        pct(0.5),
        pct(0.99),
        stats.rtt.unwrap_or_default(),
        stats.bytes_received,
    );
}

/// Dials `url`, the scheme picking the transport; the dialer carries the session.
async fn connect(url: &str, trust: ServerTrust) -> Result<(Dialer, Session), Error> {
    let dialer = Dialer::new(trust)?;
    let session = dialer.connect(url).await?;
    Ok((dialer, session))
}

/// Starts a server on `addr` publishing what `router` holds; returns its URL.
fn serve(
    addr: std::net::SocketAddr,
    identity: Identity,
    router: Router,
    webtransport: bool,
) -> Result<(String, tokio::task::JoinHandle<()>), Error> {
    fn keep(session: Result<Session, impl std::fmt::Display>, sessions: &mut Vec<Session>) {
        match session {
            Ok(session) => {
                println!("server: session from {:?}", session.remote_addr());
                sessions.push(session);
            }
            Err(err) => eprintln!("server: {err}"),
        }
    }
    if webtransport {
        let server = moq_webtransport::Server::builder(addr, identity)
            .router(router)
            .bind()?;
        let url = format!("https://localhost:{}/clock", server.local_addr()?.port());
        let task = tokio::spawn(async move {
            let mut sessions = Vec::new();
            while let Some(session) = server.accept().await {
                keep(session, &mut sessions);
            }
        });
        Ok((url, task))
    } else {
        let server = moq_quinn::Server::builder(addr, identity)
            .router(router)
            .bind()?;
        let url = format!("moqt://localhost:{}", server.local_addr()?.port());
        let task = tokio::spawn(async move {
            let mut sessions = Vec::new();
            while let Some(session) = server.accept().await {
                keep(session, &mut sessions);
            }
        });
        Ok((url, task))
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = <Args as clap::Parser>::parse();
    let duration = Duration::from_secs(args.seconds);

    if let Some(url) = &args.subscribe {
        let trust = match (args.hash, args.insecure) {
            (Some(trust), _) => trust,
            (None, true) => ServerTrust::Insecure,
            (None, false) => {
                return Err(
                    "--subscribe needs --hash HEX (printed by --serve) or --insecure".into(),
                );
            }
        };
        let (_dialer, session) = connect(url, trust).await?;
        let start = std::time::Instant::now();
        let mut summary = subscribe(&session, duration).await?;
        print_summary(&mut summary, &session, start.elapsed());
        session.close(moq_webtransport::code::session::NO_ERROR, "done");
        return Ok(());
    }

    let identity = Identity::self_signed(&["localhost", "127.0.0.1"])?;
    let cert = identity.leaf().cloned().ok_or("no certificate")?;
    let hash = hex::encode(identity.certificate_hash().ok_or("no certificate")?);
    let addr = args.serve.as_deref().unwrap_or("127.0.0.1:0").parse()?;
    let router = Router::new();
    let (url, accept) = serve(addr, identity, router.clone(), args.webtransport)?;
    let transport = if args.webtransport {
        "WebTransport"
    } else {
        "native QUIC"
    };
    println!("server listening on {url} (moq-lite-04 over {transport})");
    let publisher = {
        let router = router.clone();
        tokio::spawn(async move { publish(&router, duration + Duration::from_secs(1)).await })
    };

    if args.serve.is_some() {
        println!("certificate sha-256 {hash}");
        println!(
            "subscribe with: cargo run --release --example clock -- --subscribe {url} --hash {hash}"
        );
        tokio::select! {
            _ = publisher => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        accept.abort();
        return Ok(());
    }

    let (_dialer, session) = connect(&url, ServerTrust::Pinned(cert)).await?;
    let info = session.connection_info();
    println!(
        "client: connected over {}, alpn {}, version {}",
        info.transport,
        info.alpn.as_deref().unwrap_or("?"),
        info.version
            .as_deref()
            .unwrap_or("not visible to this client")
    );
    let start = std::time::Instant::now();
    let mut summary = subscribe(&session, duration).await?;
    print_summary(&mut summary, &session, start.elapsed());
    session.close(moq_webtransport::code::session::NO_ERROR, "done");
    accept.abort();
    publisher.abort();
    if summary.frames == 0 {
        return Err("no frame was received".into());
    }
    Ok(())
}
