//! The operator's HTTP listener (`[metrics] listen`, `--metrics ADDR`):
//!
//! - `GET /metrics`: Prometheus text exposition (prometheus-client), see docs/operations.md;
//! - `GET /health`: `200 ok`, or `503 draining` once a drain has started;
//! - `GET /`: the live status page, drawn from `GET /status.json` (a [`Status`] and the last
//!   five minutes of [`crate::Sample`]s);
//! - `POST /drain` with `Authorization: Bearer <secret>` (`drain_token_file`): starts the
//!   drain that SIGTERM starts (GOAWAY with the next URI to every session, then the drain
//!   timeout).
//! - `POST /auth`: moq-relay's auth-server contract, answered with the relay's JWT policy
//!   (see [`crate::JwtAuth`]), so a moq-relay node checks the same tokens.
//!
//! Bounded: at most `max_connections` connections are served at once (the others wait in the
//! kernel's backlog), each with a header timeout and a lifetime; request bodies are read only
//! by `/auth`, up to [`MAX_BODY`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::jwt::JwtAuth;
use crate::observe::{HandshakeStatus, LinkState, Status};
use crate::relay::Relay;

/// The largest request body read (`/auth`).
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one connection may last, keep-alive included.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The status page.
const PAGE: &str = include_str!("status.html");

/// What the listener serves from.
pub(crate) struct Site {
    pub(crate) relay: Relay,
    pub(crate) registry: Registry,
    pub(crate) drain_token: Option<String>,
    pub(crate) top: usize,
    pub(crate) jwt: Option<Arc<JwtAuth>>,
}

impl Site {
    pub(crate) fn new(
        relay: Relay,
        top: usize,
        drain_token: Option<String>,
        jwt: Option<Arc<JwtAuth>>,
    ) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Metrics {
            relay: relay.clone(),
            top,
        }));
        Self {
            relay,
            registry,
            drain_token,
            top,
            jwt,
        }
    }
}

/// Serves `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, site: Arc<Site>, max_connections: usize) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let site = site.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| {
                let site = site.clone();
                async move { Ok::<_, Infallible>(respond(&site, request, remote).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(64 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "metrics connection failed"),
                Err(_) => tracing::debug!(%remote, "metrics connection closed: lifetime over"),
                Ok(Ok(())) => {}
            }
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body)
}

async fn respond(
    site: &Site,
    request: Request<Incoming>,
    remote: SocketAddr,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    match (request.method(), path.as_str()) {
        (&Method::GET, "/metrics") => {
            let mut body = String::new();
            match prometheus_client::encoding::prometheus_text::encode(&mut body, &site.registry) {
                Ok(()) => reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    body,
                ),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
            }
        }
        (&Method::GET, "/health") => {
            if site.relay.is_shutting_down() {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else {
                text(StatusCode::OK, "ok\n")
            }
        }
        (&Method::GET, "/") => reply(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        (&Method::GET, "/status.json") => {
            let page = serde_json::json!({
                "status": site.relay.status(site.top),
                "history": site.relay.history(),
            });
            reply(StatusCode::OK, "application/json", page.to_string())
        }
        (&Method::POST, "/drain") => drain(site, &request, remote),
        (&Method::POST, "/auth") => auth(site, request).await,
        (_, "/metrics" | "/health" | "/" | "/status.json" | "/drain" | "/auth") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn drain(site: &Site, request: &Request<Incoming>, remote: SocketAddr) -> Response<Full<Bytes>> {
    use subtle::ConstantTimeEq;
    let Some(secret) = &site.drain_token else {
        return text(StatusCode::NOT_FOUND, "drain over HTTP is not enabled\n");
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Digests compared in constant time: neither length nor content leaks.
    use crate::auth::digest;
    if presented.is_empty() || !bool::from(digest(presented).ct_eq(&digest(secret))) {
        tracing::warn!(%remote, "drain refused: wrong or missing token");
        site.relay
            .refused("drain", "wrong or missing token", remote.to_string(), None);
        return text(StatusCode::UNAUTHORIZED, "unauthorized\n");
    }
    tracing::info!(%remote, "drain requested over HTTP");
    if site.relay.begin_drain() {
        text(StatusCode::ACCEPTED, "draining\n")
    } else {
        text(StatusCode::OK, "already draining\n")
    }
}

async fn auth(site: &Site, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(jwt) = &site.jwt else {
        return text(StatusCode::NOT_FOUND, "no JWT keys are configured\n");
    };
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "request too large\n"),
    };
    match jwt.answer_auth_request(&body) {
        Ok(grant) => reply(StatusCode::OK, "application/json", grant),
        Err(refusal) => {
            site.relay.refused(
                "connection",
                "token refused (auth request)",
                String::new(),
                None,
            );
            reply(
                StatusCode::FORBIDDEN,
                "text/plain; charset=utf-8",
                format!("{refusal}\n"),
            )
        }
    }
}

/// Encodes [`Relay::status`] on each scrape.
#[derive(Debug)]
struct Metrics {
    relay: Relay,
    top: usize,
}

/// One family at a time: its descriptor, then a sample per label set.
struct Families<'a> {
    encoder: DescriptorEncoder<'a>,
}

/// No labels.
const NONE: [(&str, &str); 0] = [];

impl Families<'_> {
    fn family<L, V, M>(
        &mut self,
        kind: MetricType,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, V)>,
        metric: impl Fn(V) -> M,
    ) -> Result<(), std::fmt::Error>
    where
        L: EncodeLabelSet,
        M: EncodeMetric,
    {
        let mut encoder = self.encoder.encode_descriptor(name, help, None, kind)?;
        for (labels, value) in samples {
            metric(value).encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn gauge<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, u64)>,
    ) -> Result<(), std::fmt::Error> {
        self.family(MetricType::Gauge, name, help, samples, ConstGauge::new)
    }

    fn counter<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, u64)>,
    ) -> Result<(), std::fmt::Error> {
        self.family(MetricType::Counter, name, help, samples, ConstCounter::new)
    }
}

impl Collector for Metrics {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s: Status = self.relay.status(self.top);
        let mut f = Families { encoder };
        let one = |n: u64| [(NONE, n)];
        f.gauge(
            "moq_fanout_draining",
            "1 once a drain has started (GOAWAY sent, no new sessions).",
            one(u64::from(s.draining)),
        )?;
        f.gauge(
            "moq_fanout_uptime_seconds",
            "Seconds since the relay started.",
            one(s.uptime_s),
        )?;
        let by_transport = |get: &dyn Fn(&str) -> u64| {
            ["quic", "webtransport"].map(|t| ([("transport", t)], get(t)))
        };
        f.gauge(
            "moq_fanout_sessions",
            "Sessions now, by transport.",
            by_transport(&|t| s.sessions.get(t).copied().unwrap_or(0) as u64),
        )?;
        f.counter(
            "moq_fanout_sessions_started",
            "Sessions started, by transport.",
            by_transport(&|t| s.sessions_started.get(t).copied().unwrap_or(0)),
        )?;
        let handshakes = |get: fn(&HandshakeStatus) -> u64| {
            by_transport(&|t| s.handshakes.get(t).map(get).unwrap_or(0))
        };
        f.gauge(
            "moq_fanout_handshakes_in_flight",
            "Handshakes in flight, by listener.",
            handshakes(|h| h.in_flight as u64),
        )?;
        f.counter(
            "moq_fanout_handshakes_refused",
            "Handshakes refused for too many in flight, by listener.",
            handshakes(|h| h.refused),
        )?;
        f.counter(
            "moq_fanout_handshakes_retried",
            "Handshakes asked to retry (address validation), by listener.",
            handshakes(|h| h.retried),
        )?;
        f.counter(
            "moq_fanout_refusals",
            "Requests refused, by what and why.",
            s.refusals
                .iter()
                .map(|(what, why, n)| ([("what", *what), ("why", *why)], *n)),
        )?;
        f.gauge(
            "moq_fanout_subscriptions",
            "Subscriptions: downstream (served) and upstream (one per relayed track).",
            [
                ([("side", "downstream")], s.subscriptions_downstream as u64),
                ([("side", "upstream")], s.subscriptions_upstream as u64),
            ],
        )?;
        f.gauge(
            "moq_fanout_broadcasts",
            "Broadcasts known.",
            one(s.broadcasts_total as u64),
        )?;
        f.gauge(
            "moq_fanout_routes",
            "Announcements in force (routes to broadcasts).",
            one(s.routes as u64),
        )?;
        let t = &s.totals;
        f.counter(
            "moq_fanout_announcements_received",
            "ANNOUNCE messages received from peers.",
            one(t.announcements_in),
        )?;
        let io = |i: u64, o: u64| [([("direction", "in")], i), ([("direction", "out")], o)];
        f.counter(
            "moq_fanout_bytes",
            "Bytes the transports received and sent.",
            io(t.bytes_in, t.bytes_out),
        )?;
        f.counter(
            "moq_fanout_frames",
            "Frames received and queued for peers.",
            io(t.frames_in, t.frames_out),
        )?;
        f.counter(
            "moq_fanout_groups",
            "Groups received and opened for peers.",
            io(t.groups_in, t.groups_out),
        )?;
        f.counter(
            "moq_fanout_groups_dropped",
            "Groups dropped, by why: a subscriber too far behind or past its latency (late), \
             or a connection over its memory cap (memory).",
            [
                ([("reason", "late")], t.groups_dropped),
                ([("reason", "memory")], t.ledger_shed),
            ],
        )?;
        f.counter(
            "moq_fanout_streams_abandoned",
            "Peer streams cancelled for an incomplete message held too long or too large.",
            one(t.streams_abandoned),
        )?;
        let m = &s.memory;
        f.gauge(
            "moq_fanout_ledger_bytes",
            "What the connections hold for their peers, summed, by category of the ledger.",
            [
                ("control_in", m.control_in),
                ("control_out", m.control_out),
                ("data_in", m.data_in),
                ("data_out", m.data_out),
                ("streams", m.streams),
                ("external", m.external),
            ]
            .map(|(category, n)| ([("category", category)], n)),
        )?;
        f.gauge(
            "moq_fanout_connection_ledger_max_bytes",
            "The largest ledger of one connection now.",
            one(m.connection_max),
        )?;
        f.gauge(
            "moq_fanout_cache_bytes",
            "Bytes in the group caches.",
            one(m.cache),
        )?;
        f.gauge(
            "moq_fanout_held_bytes",
            "Every ledger plus the caches (what admission compares with limits.max_total_bytes).",
            one(m.total()),
        )?;
        f.counter(
            "moq_fanout_fetches",
            "FETCHes, by where they were served from.",
            [
                ([("source", "cache")], s.fetch_cache_hits),
                ([("source", "upstream")], s.fetch_cache_misses),
            ],
        )?;
        f.gauge(
            "moq_fanout_upstream_links",
            "Links to upstream relays, by state.",
            [
                LinkState::Connecting,
                LinkState::Connected,
                LinkState::Waiting,
            ]
            .map(|state| {
                let n = s.links.iter().filter(|l| l.state == state).count() as u64;
                ([("state", state.as_str())], n)
            }),
        )?;
        f.counter(
            "moq_fanout_upstream_connects",
            "Sessions established on each upstream link (its URL without credentials).",
            s.links
                .iter()
                .map(|l| ([("url", l.url.as_str())], l.connects)),
        )?;
        f.gauge(
            "moq_fanout_broadcast_subscribers",
            "Downstream subscriptions to the most watched broadcasts, over their tracks \
             (metrics.top_broadcasts).",
            s.broadcasts
                .iter()
                .map(|b| ([("broadcast", b.path.as_str())], b.subscribers as u64)),
        )?;
        f.gauge(
            "moq_fanout_broadcast_bitrate_bps",
            "Payload bits per second of the most watched broadcasts, over the last second.",
            s.broadcasts
                .iter()
                .map(|b| ([("broadcast", b.path.as_str())], b.bitrate_bps)),
        )?;
        f.gauge(
            "moq_fanout_broadcasts_not_shown",
            "Broadcasts left out of the per-broadcast families.",
            one(s.broadcasts_total.saturating_sub(s.broadcasts.len()) as u64),
        )?;
        Ok(())
    }
}
