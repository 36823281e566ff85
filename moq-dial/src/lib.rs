//! One dial by URL, over either moq-lite-04 transport: `moqt://host:port` over native QUIC
//! (`moq-quinn`), `https://host[:port]/path` over WebTransport (`moq-webtransport`). The same
//! session API comes back either way. It sits above both adapters, so that neither depends
//! on the other.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub use moq_tokio::{Config, Router, Session};

use moq_webtransport::{Client, ConnectError, ServerTrust, WebTransportOptions};

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The URL's scheme is neither `moqt` nor `https`.
    #[error("unsupported URL {0:?}: expected moqt://host:port or https://host[:port]/path")]
    Scheme(String),
    /// Native QUIC failed.
    #[error(transparent)]
    Quic(#[from] moq_quinn::ConnectError),
    /// WebTransport failed.
    #[error(transparent)]
    WebTransport(#[from] ConnectError),
}

/// Dials `moqt://` and `https://` URLs with one certificate policy. Each transport's client
/// endpoint is made on its first use and kept for the next dials: keep the `Dialer` for as
/// long as its sessions.
#[derive(Debug)]
pub struct Dialer {
    trust: ServerTrust,
    bind: Option<SocketAddr>,
    quic_options: moq_quinn::QuicOptions,
    webtransport_options: WebTransportOptions,
    quic: Mutex<Option<moq_quinn::Client>>,
    webtransport: Mutex<Option<Arc<Client>>>,
}

impl Dialer {
    /// A dialer checking servers with `trust`, with default transport options, on an
    /// ephemeral local port (dual-stack where the system allows).
    pub fn new(trust: ServerTrust) -> Self {
        Self {
            trust,
            bind: None,
            quic_options: moq_quinn::QuicOptions::default(),
            webtransport_options: WebTransportOptions::default(),
            quic: Mutex::new(None),
            webtransport: Mutex::new(None),
        }
    }

    /// The same, with explicit options and local address for each transport.
    pub fn with_options(
        trust: ServerTrust,
        bind: Option<SocketAddr>,
        quic: moq_quinn::QuicOptions,
        webtransport: WebTransportOptions,
    ) -> Self {
        Self {
            bind,
            quic_options: quic,
            webtransport_options: webtransport,
            ..Self::new(trust)
        }
    }

    /// Dials `url` and starts a session: native QUIC for `moqt://`, WebTransport for
    /// `https://`. `router` serves what this end publishes.
    pub async fn connect(
        &self,
        url: &str,
        config: Config,
        router: Option<Router>,
    ) -> Result<Session, DialError> {
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        match scheme.to_ascii_lowercase().as_str() {
            "moqt" => {
                let client = self.quic_client()?;
                Ok(client.connect(url, config, router).await?)
            }
            "https" => {
                let client = self.webtransport_client()?;
                Ok(client.connect(url, config, router).await?)
            }
            _ => Err(DialError::Scheme(url.to_owned())),
        }
    }

    /// Waits until every connection of this dialer's endpoints has been closed and its
    /// close sent (after closing the sessions).
    pub async fn wait_idle(&self) {
        let quic = self.quic.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let webtransport = self
            .webtransport
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(client) = quic {
            client.wait_idle().await;
        }
        if let Some(client) = webtransport {
            client.wait_idle().await;
        }
    }

    fn quic_client(&self) -> Result<moq_quinn::Client, DialError> {
        let mut slot = self.quic.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = match self.bind {
            Some(addr) => {
                moq_quinn::Client::bind(addr, self.trust.clone(), self.quic_options.clone())?
            }
            None => moq_quinn::Client::with_options(self.trust.clone(), self.quic_options.clone())?,
        };
        *slot = Some(client.clone());
        Ok(client)
    }

    fn webtransport_client(&self) -> Result<Arc<Client>, DialError> {
        let mut slot = self.webtransport.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let options = self.webtransport_options.clone();
        let client = Arc::new(match self.bind {
            Some(addr) => Client::bind(addr, self.trust.clone(), options)?,
            None => Client::with_options(self.trust.clone(), options)?,
        });
        *slot = Some(client.clone());
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_scheme_picks_the_transport() {
        let dialer = Dialer::new(ServerTrust::Insecure);
        for url in ["ftp://a:1", "a:1", "http://a:1/x"] {
            assert!(
                matches!(
                    dialer.connect(url, Config::default(), None).await,
                    Err(DialError::Scheme(_))
                ),
                "{url}"
            );
        }
        // Each scheme reaches its own transport (and its own URL check).
        assert!(matches!(
            dialer.connect("moqt://a", Config::default(), None).await,
            Err(DialError::Quic(moq_quinn::ConnectError::InvalidUrl(_)))
        ));
        assert!(matches!(
            dialer.connect("https://:1", Config::default(), None).await,
            Err(DialError::WebTransport(ConnectError::InvalidUrl(_)))
        ));
    }
}
