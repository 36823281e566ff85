//! A running relay: its listeners (native QUIC, WebTransport), its links to upstream
//! relays, and a clean shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use moq_quinn::transport::CertificateDer;
use tokio::task::JoinHandle;

use crate::auth::{Access, AccessControl};
use crate::config::RelayConfig;
use crate::observe::LinkState;
use crate::redact::log_refusal;
use crate::relay::{Relay, connection_request};

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The certificate could not be made or loaded.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The upstream client could not be set up.
    #[error("upstream: {0}")]
    Upstream(String),
    /// A JWT key could not be loaded.
    #[error("JWT key: {0}")]
    Key(#[from] crate::jwt::KeyError),
    /// The drain token file could not be read, or is empty.
    #[error("drain token file {path}: {reason}")]
    DrainToken {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

/// A relay that is listening and linked to its upstreams.
#[derive(Debug)]
pub struct RelayServer {
    relay: Relay,
    quic: Option<Arc<moq_quinn::Server>>,
    webtransport: Option<Arc<moq_webtransport::Server>>,
    certificate: Option<CertificateDer<'static>>,
    metrics: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

fn identity(config: &RelayConfig) -> Result<moq_quinn::Identity, StartError> {
    let err = |e: &dyn std::fmt::Display| StartError::Certificate(e.to_string());
    match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => {
            moq_quinn::Identity::from_pem_files(&cert.to_string_lossy(), &key.to_string_lossy())
                .map_err(|e| err(&e))
        }
        _ => {
            let names: Vec<&str> = config.tls.generate.iter().map(String::as_str).collect();
            moq_quinn::Identity::self_signed(&names).map_err(|e| err(&e))
        }
    }
}

/// How upstream relays are checked: insecure, a pinned certificate, or the platform's
/// certificate authorities plus `upstream_ca`.
fn upstream_trust(config: &RelayConfig) -> Result<moq_quinn::ServerTrust, StartError> {
    use rustls::pki_types::pem::PemObject;
    let relay = &config.relay;
    if relay.upstream_insecure {
        return Ok(moq_quinn::ServerTrust::Insecure);
    }
    let read = |path: &std::path::Path| {
        CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| StartError::Upstream(format!("{}: {e}", path.display())))
    };
    if let Some(path) = &relay.upstream_cert {
        let cert = read(path)?
            .into_iter()
            .next()
            .ok_or_else(|| StartError::Upstream(format!("{}: no certificate", path.display())))?;
        return Ok(moq_quinn::ServerTrust::Pinned(cert));
    }
    let cas = match &relay.upstream_ca {
        Some(path) => read(path)?,
        None => Vec::new(),
    };
    Ok(moq_quinn::ServerTrust::platform_and(cas))
}

impl RelayServer {
    /// Starts a relay from `config`, checking every connection with `access`: binds the
    /// listeners, then dials the upstream relays (and keeps redialling them).
    pub async fn start(
        config: RelayConfig,
        access: Arc<dyn AccessControl>,
    ) -> Result<Self, StartError> {
        let identity = identity(&config)?;
        let certificate = identity.leaf().cloned();
        // Clients pin a self-signed certificate by this hash (`--cert-hash`, a browser's
        // serverCertificateHashes): logged with every listener.
        let hash: String = certificate
            .as_ref()
            .map(moq_quinn::transport::certificate_hash)
            .map(hex::encode)
            .unwrap_or_default();
        let relay = Relay::new(config.clone(), access);
        let limits = &config.limits;
        let idle = Duration::from_millis(limits.idle_timeout_ms);
        tracing::info!(hop = relay.hop_id().0, "relay starting");

        let mut tasks = Vec::new();
        // One set of QUIC settings for every endpoint, native QUIC and WebTransport alike.
        let mut quic_options = moq_quinn::QuicOptions::default();
        quic_options.idle_timeout = idle;
        // A live peer answers our keep-alives: at least three per liveness window, so that
        // only a peer that is gone falls silent (relay.liveness_ms).
        let liveness = Duration::from_millis(config.relay.liveness_ms.max(3));
        quic_options.keep_alive = quic_options.keep_alive.min(liveness / 3);
        quic_options.max_streams = limits.max_streams;
        quic_options.receive_window = limits.quic_receive_window;
        quic_options.send_window = limits.quic_send_window;
        let mut handshake = moq_quinn::transport::HandshakeLimits::default();
        handshake.max_in_flight = limits.max_handshakes;
        handshake.retry_above = limits.retry_above_handshakes;
        handshake.timeout = Duration::from_millis(limits.handshake_timeout_ms);
        quic_options.handshake = handshake;
        let mut quic = None;
        if let Some(addr) = config.listen.quic {
            let options = quic_options.clone();
            let server = moq_quinn::Server::builder(addr, identity.clone())
                .config(relay.session_config())
                .options(options)
                .bind()
                .map_err(|e| StartError::Listen {
                    addr,
                    reason: e.to_string(),
                })?;
            let server = Arc::new(server);
            let local = server.local_addr().map_err(|e| StartError::Listen {
                addr,
                reason: e.to_string(),
            })?;
            tracing::info!(addr = %local, kind = "quic", cert_sha256 = %hash, "listening");
            let counted = server.clone();
            relay.add_handshake_source(
                "quic",
                Box::new(move || handshakes(counted.handshake_stats())),
            );
            tasks.push(tokio::spawn(accept_quic(relay.clone(), server.clone())));
            quic = Some(server);
        }
        let mut webtransport = None;
        if let Some(addr) = config.listen.webtransport {
            let options = quic_options.clone();
            let wt_identity = moq_webtransport::Identity {
                chain: identity.chain.clone(),
                key: identity.key.clone_key(),
            };
            let server = moq_webtransport::Server::builder(addr, wt_identity)
                .config(relay.session_config())
                .router(moq_webtransport::Router::new())
                .options(options)
                .bind()
                .map_err(|e| StartError::Listen {
                    addr,
                    reason: e.to_string(),
                })?;
            let server = Arc::new(server);
            let local = server.local_addr().map_err(|e| StartError::Listen {
                addr,
                reason: e.to_string(),
            })?;
            tracing::info!(addr = %local, kind = "webtransport", cert_sha256 = %hash, "listening");
            let counted = server.clone();
            relay.add_handshake_source(
                "webtransport",
                Box::new(move || handshakes(counted.handshake_stats())),
            );
            tasks.push(tokio::spawn(accept_webtransport(
                relay.clone(),
                server.clone(),
            )));
            webtransport = Some(server);
        }

        if !config.relay.upstreams.is_empty() {
            let trust = upstream_trust(&config)?;
            let dialer = moq_dial::Dialer::builder()
                .trust(trust)
                .options(quic_options.clone())
                .build()
                .map_err(|e| StartError::Upstream(e.to_string()))?;
            let dialer = Arc::new(dialer);
            for url in &config.relay.upstreams {
                tasks.push(tokio::spawn(upstream_link(
                    relay.clone(),
                    url.clone(),
                    dialer.clone(),
                )));
            }
        }
        // History for the status page and the bitrates, sampled once a second.
        let top = config.metrics.top_broadcasts;
        let sampled = relay.clone();
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::observe::SAMPLE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                sampled.sample(top);
            }
        }));
        let mut metrics = None;
        if let Some(addr) = config.metrics.listen {
            let drain_token = match &config.metrics.drain_token_file {
                Some(path) => Some(read_secret(path)?),
                None => None,
            };
            let jwt = if config.auth.jwt_keys.is_empty() {
                None
            } else {
                Some(Arc::new(crate::jwt::JwtAuth::from_config(&config.auth)?))
            };
            let listener =
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| StartError::Listen {
                        addr,
                        reason: e.to_string(),
                    })?;
            let local = listener.local_addr().map_err(|e| StartError::Listen {
                addr,
                reason: e.to_string(),
            })?;
            tracing::info!(addr = %local, kind = "http", drain = drain_token.is_some(), "metrics and status page listening");
            let site = Arc::new(crate::http::Site::new(relay.clone(), top, drain_token, jwt));
            tasks.push(tokio::spawn(crate::http::serve(
                listener,
                site,
                config.metrics.max_connections,
            )));
            metrics = Some(local);
        }
        Ok(Self {
            relay,
            quic,
            webtransport,
            certificate,
            metrics,
            tasks,
        })
    }

    /// Where the metrics listener (`/metrics`, `/health`, the status page) listens.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// The relay's tables.
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Where native QUIC listens.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.quic.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Where WebTransport listens.
    pub fn webtransport_addr(&self) -> Option<SocketAddr> {
        self.webtransport.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The certificate the relay presents (for a client to pin).
    pub fn certificate(&self) -> Option<&CertificateDer<'static>> {
        self.certificate.as_ref()
    }

    /// Shuts down cleanly: no new connections, GOAWAY to every peer (upstream links
    /// included), then waits for them to leave until the drain timeout, closes what is
    /// left, and closes the endpoints.
    pub async fn shutdown(self) {
        if let Some(server) = &self.quic {
            server.stop_accepting();
        }
        if let Some(server) = &self.webtransport {
            server.stop_accepting();
        }
        self.relay.shutdown().await;
        for task in &self.tasks {
            task.abort();
        }
        if let Some(server) = &self.quic {
            server.close(moq_quinn::code::session::NO_ERROR, "relay stopped");
        }
        if let Some(server) = &self.webtransport {
            server.close(moq_quinn::code::session::NO_ERROR, "relay stopped");
        }
        tracing::info!("relay stopped");
    }
}

fn handshakes(h: moq_quinn::transport::HandshakeStats) -> crate::observe::HandshakeStatus {
    crate::observe::HandshakeStatus {
        in_flight: h.in_flight,
        refused: h.refused,
        retried: h.retried,
    }
}

/// A secret from a file (surrounding whitespace removed), which must not be empty.
fn read_secret(path: &std::path::Path) -> Result<String, StartError> {
    let err = |reason: String| StartError::DrainToken {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(err("empty".into()));
    }
    Ok(secret.to_owned())
}

/// The accept loop of one listener: both servers offer the same `incoming()` /
/// `refuse()` / `accept(|info| router)` shape, with their own types.
macro_rules! accept_loop {
    ($relay:expr, $server:expr, $failure:literal) => {{
        let (relay, server) = ($relay, $server);
        loop {
            let incoming = tokio::select! {
                incoming = server.incoming() => incoming,
                () = relay.shutting_down() => return,
            };
            let Some(incoming) = incoming else { return };
            if !relay.accepting() {
                log_refusal!(tracing::Level::WARN, remote = %incoming.remote_addr(), "connection refused: session or memory limit");
                relay.refused("connection", "session or memory limit", incoming.remote_addr().to_string(), None);
                incoming.refuse();
                continue;
            }
            let relay = relay.clone();
            tokio::spawn(async move {
                let remote = incoming.remote_addr();
                let mut prepared = None;
                let session = incoming
                    .accept(|info| {
                        let peer = relay.prepare(&connection_request(info, Some(remote)));
                        let router = peer.router();
                        prepared = Some(peer);
                        Some(router)
                    })
                    .await;
                match (session, prepared) {
                    (Ok(session), Some(peer)) => relay.attach(peer, session).await,
                    (Err(e), _) => tracing::debug!(%remote, error = %e, $failure),
                    (Ok(_), None) => {}
                }
            });
        }
    }};
}

async fn accept_quic(relay: Relay, server: Arc<moq_quinn::Server>) {
    accept_loop!(relay, server, "handshake failed")
}

async fn accept_webtransport(relay: Relay, server: Arc<moq_webtransport::Server>) {
    accept_loop!(relay, server, "WebTransport CONNECT failed")
}

/// Keeps a link to one upstream relay: dial, run until the session ends (or the upstream
/// sends GOAWAY), wait, redial. Upstream relays may publish and subscribe anything.
async fn upstream_link(relay: Relay, url: String, dialer: Arc<moq_dial::Dialer>) {
    let base = Duration::from_millis(relay.config().relay.reconnect_ms.max(10));
    let mut delay = base;
    // Upstream URLs may carry a token (`?jwt=`): the log shows them without it.
    let shown = crate::redact::url(&url);
    while !relay.is_shutting_down() {
        relay.link_state(&shown, LinkState::Connecting);
        let peer = relay.prepare_with(Access::all());
        let config = relay.link_config();
        let router = Some(peer.router());
        let connect = async {
            dialer
                .connect_with(&url, config, router)
                .await
                .map_err(|e| e.to_string())
        };
        let session = tokio::select! {
            session = connect => session,
            () = relay.shutting_down() => return,
        };
        match session {
            Ok(session) => {
                tracing::info!(url = %shown, peer = %peer.id(), "upstream connected");
                relay.link_state(&shown, LinkState::Connected);
                delay = base;
                relay.attach(peer, session).await;
                tracing::info!(url = %shown, "upstream link ended");
            }
            // The error's text may quote the URL it was given: that part is redacted too.
            Err(e) => {
                let error = e.replace(url.as_str(), &shown);
                tracing::warn!(url = %shown, %error, "upstream connect failed");
            }
        }
        relay.link_state(&shown, LinkState::Waiting);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = relay.shutting_down() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}
