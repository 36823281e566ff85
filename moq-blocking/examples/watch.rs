//! A viewer on one thread with no async runtime: discovers a broadcast, subscribes, reads
//! groups, fetches one again, probes, and closes (`moq_blocking::watch`).
//!
//! ```sh
//! cargo run -p moq-interop -- server --addr 127.0.0.1:4443 &
//! cargo run -p moq-blocking --example watch -- 127.0.0.1:4443 --insecure
//! ```
//!
//! Arguments: the server's `ADDR` (host:port), then `--insecure` (any certificate) or
//! `--cert-hash HEX` (the SHA-256 of its certificate), `--name NAME` (the TLS server name,
//! default `localhost`), `--track NAME` (default the empty name) and `--groups N`
//! (default 1).

use std::net::ToSocketAddrs;

use moq_blocking::{Connection, Watch, watch};
use moq_proto::Config;
use moq_tls::ServerTrust;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .ok_or("usage: watch ADDR [--insecure | --cert-hash HEX] [--name NAME] [--track NAME] [--groups N]")?;
    let addr = addr.to_socket_addrs()?.next().ok_or("no address")?;
    let mut trust = ServerTrust::default();
    let mut name = "localhost".to_owned();
    let mut what = Watch::default();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--insecure" => trust = ServerTrust::Insecure,
            "--cert-hash" => trust = ServerTrust::from_hash_hex(&value()?)?,
            "--name" => name = value()?,
            "--track" => what.track = value()?,
            "--groups" => what.groups = value()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let conn = Connection::connect(addr, &name, &trust, Config::default())?;
    println!("connected to {addr}");
    let watched = watch(conn, &what)?;
    if let Some(path) = &watched.path {
        println!("watched {path}");
    }
    for (sequence, frames) in &watched.groups {
        println!("group {}: {} frames", sequence.0, frames.len());
        for frame in frames {
            println!("  {}", String::from_utf8_lossy(frame));
        }
    }
    println!("fetched again: {} frames", watched.fetched.len());
    if let Some((bitrate, rtt)) = watched.probe {
        println!("probe: {bitrate} bit/s, RTT {rtt:?}");
    }
    Ok(())
}
