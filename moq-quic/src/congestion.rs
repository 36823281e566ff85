//! The congestion controller, and what it tells the probe.
//!
//! quinn counts the bytes it sends and those it declares lost, but not those the peer
//! acknowledged: the only measure of what the path delivered. Every connection we make runs
//! its controller inside a counting wrapper, which passes every call through and adds up the
//! acknowledged bytes on the way. [`transport_stats`] reads them back, with the rest of
//! quinn's counters, as the [`TransportStats`] the session's probe responder samples
//! (docs/probe.md).

use std::any::Any;
use std::sync::Arc;

use moq_proto::TransportStats;
use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics};
use quinn_proto::RttEstimator;
use std::time::Instant;

/// Which congestion controller quinn runs. It decides how fast the connection may send,
/// and so what a probe finds (docs/probe.md).
///
/// ```
/// use moq_quic::{Congestion, QuicOptions};
/// let mut options = QuicOptions::default();
/// options.congestion = Congestion::Bbr;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Congestion {
    /// CUBIC (RFC 9438): loss-based, quinn's default.
    #[default]
    Cubic,
    /// NewReno (RFC 9002): loss-based, halves on every loss event.
    NewReno,
    /// BBR, as quinn implements it (experimental there): model-based, keeps the path's
    /// rate under random loss where loss-based controllers back off.
    Bbr,
}

impl Congestion {
    /// The controller factory for a transport config: the chosen controller, counted.
    pub(crate) fn factory(self) -> Arc<CountingFactory> {
        let inner: Arc<dyn ControllerFactory + Send + Sync> = match self {
            Congestion::Cubic => Arc::new(quinn::congestion::CubicConfig::default()),
            Congestion::NewReno => Arc::new(quinn::congestion::NewRenoConfig::default()),
            Congestion::Bbr => Arc::new(quinn::congestion::BbrConfig::default()),
        };
        Arc::new(CountingFactory { inner })
    }
}

/// Builds [`Counting`] controllers around another factory's.
pub(crate) struct CountingFactory {
    inner: Arc<dyn ControllerFactory + Send + Sync>,
}

impl ControllerFactory for CountingFactory {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Counting {
            inner: self.inner.clone().build(now, current_mtu),
            acked: 0,
        })
    }
}

/// A congestion controller that counts the bytes the peer acknowledged, and otherwise does
/// exactly what the controller inside it does.
struct Counting {
    inner: Box<dyn Controller>,
    /// Bytes in acknowledged ack-eliciting packets, since the connection began.
    acked: u64,
}

impl Controller for Counting {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.inner.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.acked = self.acked.saturating_add(bytes);
        self.inner.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.inner
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.inner
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.inner.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        self.inner.window()
    }

    fn metrics(&self) -> ControllerMetrics {
        self.inner.metrics()
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Counting {
            inner: self.inner.clone_box(),
            acked: self.acked,
        })
    }

    fn initial_window(&self) -> u64 {
        self.inner.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// What quinn knows of `conn`, for the session: RTT, byte counters, losses, the congestion
/// window, and the acknowledged bytes when the connection's controller counts them (every
/// connection this crate or moq-webtransport makes).
///
/// ```no_run
/// # fn demo(conn: quinn::Connection) {
/// let stats = moq_quic::congestion::transport_stats(&conn);
/// println!("rtt {:?}, cwnd {:?}", stats.rtt, stats.congestion_window);
/// # }
/// ```
pub fn transport_stats(conn: &quinn::Connection) -> TransportStats {
    let stats = conn.stats();
    let bytes_acked = conn
        .congestion_state()
        .into_any()
        .downcast::<Counting>()
        .ok()
        .map(|c| c.acked);
    TransportStats {
        rtt: Some(conn.rtt()),
        bytes_sent: Some(stats.udp_tx.bytes),
        bytes_received: Some(stats.udp_rx.bytes),
        congestion_window: Some(stats.path.cwnd),
        lost_packets: Some(stats.path.lost_packets),
        lost_bytes: Some(stats.path.lost_bytes),
        congestion_events: Some(stats.path.congestion_events),
        bytes_acked,
    }
}

/// Sets `congestion` on a transport config, inside the counting wrapper that
/// [`transport_stats`] reads.
///
/// ```
/// let mut transport = quinn::TransportConfig::default();
/// moq_quic::congestion::configure(&mut transport, moq_quic::Congestion::NewReno);
/// ```
pub fn configure(t: &mut quinn::TransportConfig, congestion: Congestion) {
    t.congestion_controller_factory(congestion.factory());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QuicOptions;
    use crate::tls::{Identity, ServerTrust, client_crypto, server_crypto};

    /// Sends `len` bytes from a client to a server over loopback with `congestion`, and
    /// returns the sender's statistics once they count `len` acknowledged bytes (or after
    /// 5 s, if they never do).
    async fn send(len: usize, congestion: Congestion) -> TransportStats {
        let identity = Identity::self_signed(&["localhost"]).expect("cert");
        let cert = identity.leaf().cloned().expect("leaf");
        let options = QuicOptions {
            congestion,
            ..QuicOptions::default()
        };
        let transport = Arc::new(options.transport_config());
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(
            server_crypto(identity, b"test").expect("server tls"),
        ));
        server_config.transport_config(transport.clone());
        let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().expect("addr"))
            .expect("server");
        let mut client_config = quinn::ClientConfig::new(Arc::new(
            client_crypto(&ServerTrust::Pinned(cert), b"test").expect("client tls"),
        ));
        client_config.transport_config(transport);
        let client = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
        let addr = server.local_addr().expect("addr");
        let receiver = tokio::spawn(async move {
            let conn = server
                .accept()
                .await
                .expect("incoming")
                .await
                .expect("accept");
            let mut recv = conn.accept_uni().await.expect("stream");
            let data = recv.read_to_end(len).await.expect("read");
            // Kept open until the sender has read its statistics.
            (conn, data.len())
        });
        let conn = client
            .connect_with(client_config, addr, "localhost")
            .expect("connect")
            .await
            .expect("handshake");
        let mut stream = conn.open_uni().await.expect("open");
        stream.write_all(&vec![7; len]).await.expect("write");
        stream.finish().expect("finish");
        // Bounded, and wide enough for a busy machine: the loop ends as soon as all is acknowledged.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut stats = transport_stats(&conn);
        while stats.bytes_acked.is_some_and(|a| a < len as u64)
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            stats = transport_stats(&conn);
        }
        // The receiver has read everything before the connection closes.
        let (server_conn, received) = receiver.await.expect("receiver");
        assert_eq!(received, len);
        conn.close(0u32.into(), b"done");
        drop(server_conn);
        stats
    }

    #[tokio::test]
    async fn acknowledged_bytes_count_what_the_peer_received_under_every_controller() {
        let len = 1_000_000;
        for congestion in [Congestion::Cubic, Congestion::NewReno, Congestion::Bbr] {
            let stats = send(len, congestion).await;
            let acked = stats
                .bytes_acked
                .expect("the counting controller is installed");
            let sent = stats.bytes_sent.expect("bytes sent");
            // Every stream byte was acknowledged (the receiver read them all), with packet
            // overheads on top; nothing was acknowledged that was not sent.
            assert!(acked >= len as u64, "{congestion:?}: acked {acked} < {len}");
            assert!(acked <= sent, "{congestion:?}: acked {acked} > sent {sent}");
        }
    }
}
