//! A running relay: its listeners (native QUIC, WebTransport), its links to upstream
//! relays, and a clean shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use moq_quinn::transport::CertificateDer;
use tokio::task::JoinHandle;

use crate::auth::{Access, AccessControl};
use crate::config::RelayConfig;
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
}

/// A relay that is listening and linked to its upstreams.
#[derive(Debug)]
pub struct RelayServer {
    relay: Relay,
    quic: Option<Arc<moq_quinn::Server>>,
    webtransport: Option<Arc<moq_webtransport::Server>>,
    certificate: Option<CertificateDer<'static>>,
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
        Ok(Self {
            relay,
            quic,
            webtransport,
            certificate,
            tasks,
        })
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
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = relay.shutting_down() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}
