//! Probe results.

use std::time::Duration;

use tokio::sync::mpsc;

/// A measurement the peer sent in reply to our probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// The bitrate the peer estimates it can send us, bits per second; 0 = unknown.
    pub bitrate: u64,
    /// The smoothed RTT the peer measured; zero = unknown.
    pub rtt: Duration,
}

/// The peer's replies to our probe, in arrival order.
#[derive(Debug)]
pub struct ProbeResults {
    rx: mpsc::UnboundedReceiver<ProbeResult>,
}

impl ProbeResults {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<ProbeResult>) -> Self {
        Self { rx }
    }

    /// The next reply; `None` once the probe or the session has ended.
    pub async fn next(&mut self) -> Option<ProbeResult> {
        self.rx.recv().await
    }
}
