//! A demo to open in a browser: moq-fanout with a self-signed certificate, and a page with
//! moq-dev's publisher (your camera) and player wired to it.
//!
//! ```sh
//! cargo run -p moq-fanout --example demo        # then open http://localhost:8080
//! ```
//!
//! The page is served over plain HTTP on localhost (a secure context, as WebTransport
//! needs) and trusts the relay's certificate by its SHA-256 (`serverCertificateHashes`,
//! which browsers allow for ECDSA certificates valid for at most 14 days). The left frame
//! publishes the camera as `demo.hang`; the right frame plays it back through the relay.
//! Options: `--http ADDR` (default `127.0.0.1:8080`), `--webtransport ADDR` (default
//! `127.0.0.1:4443`).
//!
//! The pages' script, `examples/demo/player.js`, is npm `@moq/publish` 0.2.17 and
//! `@moq/watch` 0.3.2 (MIT OR Apache-2.0) with `tests/browser-media/client.js`, bundled by
//! esbuild 0.28.2; the peer suite checks that it is what the pinned packages build
//! (`moq-fanout/tests/demo.rs`, which also rewrites it when `MOQ_WRITE_DEMO=1`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, header};
use moq_fanout::{Anonymous, RelayConfig, RelayServer};

/// The bundled publisher and player.
pub const PLAYER_JS: &str = include_str!("demo/player.js");

/// The broadcast the demo publishes and plays.
pub const BROADCAST: &str = "demo.hang";

/// A running demo: the relay, and the page's HTTP address.
pub struct Demo {
    /// The relay.
    pub relay: RelayServer,
    /// Where the page is served.
    pub http: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Demo {
    /// Stops the page and the relay.
    pub async fn stop(self) {
        self.server.abort();
        self.relay.shutdown().await;
    }
}

fn page(webtransport: SocketAddr, hash: &str) -> String {
    let frame = |mode: &str| {
        format!("/client?mode={mode}&url=https://{webtransport}/&hash={hash}&broadcast={BROADCAST}")
    };
    format!(
        r#"<!doctype html>
<html lang="en"><meta charset="utf-8"><title>moq-fanout demo</title>
<style>
  body {{ font: 15px/1.4 system-ui, sans-serif; margin: 1.2em; background: #f7f8fa; color: #1d2330; }}
  .panes {{ display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }}
  figure {{ margin: 0; background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: .5em; }}
  iframe {{ width: 100%; height: 60vh; border: 0; background: #111; }}
  code {{ background: #eef1f6; padding: 0 .3em; border-radius: 3px; }}
</style>
<h1>moq-fanout demo</h1>
<p>Your camera is published to the relay at <code>https://{webtransport}/</code> as
<code>{BROADCAST}</code> (moq-lite-04 over WebTransport) and played back through it.</p>
<div class="panes">
  <figure><figcaption>Publisher (@moq/publish)</figcaption>
    <iframe src="{publish}" allow="camera; microphone; autoplay"></iframe></figure>
  <figure><figcaption>Player, through the relay (@moq/watch)</figcaption>
    <iframe src="{watch}" allow="autoplay"></iframe></figure>
</div>
</html>
"#,
        publish = frame("publish"),
        watch = frame("watch"),
    )
}

const CLIENT: &str = "<!doctype html><meta charset=utf-8><title>moq</title>\
                      <style>body{margin:0;background:#111}</style>\
                      <script type=module src=/player.js></script>";

fn respond(index: &str, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, kind, body) = match request.uri().path() {
        "/" => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from(index.to_owned()),
        ),
        "/client" => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(CLIENT.as_bytes()),
        ),
        "/player.js" => (
            StatusCode::OK,
            "text/javascript",
            Bytes::from_static(PLAYER_JS.as_bytes()),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
    response
}

/// Starts the relay (WebTransport on `webtransport`, anonymous) and the page on `http`.
pub async fn start(
    http: SocketAddr,
    webtransport: SocketAddr,
) -> Result<Demo, Box<dyn std::error::Error>> {
    let mut config = RelayConfig::default();
    config.listen.quic = None;
    config.listen.webtransport = Some(webtransport);
    config.tls.generate = vec!["localhost".into(), "127.0.0.1".into()];
    config.relay.drain_timeout_ms = 500;
    let relay = RelayServer::start(config, Arc::new(Anonymous)).await?;
    let certificate = relay.certificate().ok_or("no certificate")?;
    let hash = hex::encode(moq_quinn::transport::certificate_hash(certificate));
    let webtransport = relay
        .webtransport_addr()
        .ok_or("no WebTransport listener")?;
    let index: Arc<str> = page(webtransport, &hash).into();
    let listener = tokio::net::TcpListener::bind(http).await?;
    let http = listener.local_addr()?;
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let index = index.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let response = respond(&index, &request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Demo {
        relay,
        http,
        server,
    })
}

fn arg(name: &str, default: &str) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let value = args
        .iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, String::as_str);
    Ok(value.parse()?)
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let http = arg("--http", "127.0.0.1:8080")?;
    let webtransport = arg("--webtransport", "127.0.0.1:4443")?;
    let demo = start(http, webtransport).await?;
    println!(
        "moq-fanout demo: open http://localhost:{}/ (relay on https://{}/; Ctrl-C to stop)",
        demo.http.port(),
        demo.relay
            .webtransport_addr()
            .map_or_else(String::new, |a| a.to_string())
    );
    tokio::signal::ctrl_c().await?;
    demo.stop().await;
    Ok(())
}
