//! The server role: publish `/interop/server` to every session, then per session steps 6–9
//! on its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use moq_quinn::{
    BroadcastPath, Config, Identity, Router, Server, Session, code, error::CloseReason,
    transport::CertificateDer,
};
use tokio::sync::mpsc;

use crate::flows::{discover, first_group, probe, read_hello};
use crate::hello::Hello;
use crate::steps::{Skip, StepResult, Steps};
use crate::{CLIENT_BROADCAST, GOAWAY_DRAIN, GOAWAY_URI, SERVER_BROADCAST, STEP_TIMEOUT};

/// Where and with which certificate the server listens.
#[derive(Clone, Debug)]
pub struct ServerOpts {
    /// The UDP address to listen on (native QUIC).
    pub addr: SocketAddr,
    /// A second UDP address for WebTransport (`https://host:port/<any path>`), if any.
    pub wt_addr: Option<SocketAddr>,
    /// A PEM certificate chain and private key; `None` generates a self-signed one.
    pub cert: Option<(PathBuf, PathBuf)>,
}

/// A bound interop server.
#[derive(Debug)]
pub struct InteropServer {
    server: Server,
    wt: Option<moq_webtransport::Server>,
    certificate: Option<CertificateDer<'static>>,
}

impl InteropServer {
    /// Listens on `opts.addr` (native QUIC) and, with `opts.wt_addr`, on WebTransport too
    /// (same certificate, same broadcasts), and publishes `/interop/server`.
    pub fn bind(opts: &ServerOpts) -> Result<Self, String> {
        let identity = match &opts.cert {
            Some((cert, key)) => {
                Identity::from_pem_files(&cert.to_string_lossy(), &key.to_string_lossy())
            }
            None => Identity::self_signed(&["localhost"]),
        }
        .map_err(|e| e.to_string())?;
        let certificate = identity.leaf().cloned();
        let router = Router::new();
        router.publish(SERVER_BROADCAST, Hello::new());
        let mut config = Config::default();
        // After GOAWAY the core itself closes with 0x10 once the drain time has passed.
        config.goaway_timeout = GOAWAY_DRAIN;
        let wt = match opts.wt_addr {
            Some(addr) => {
                let identity = moq_webtransport::Identity {
                    chain: identity.chain.clone(),
                    key: identity.key.clone_key(),
                };
                Some(
                    moq_webtransport::Server::builder(addr, identity)
                        .config(config.clone())
                        .router(router.clone())
                        .bind()
                        .map_err(|e| e.to_string())?,
                )
            }
            None => None,
        };
        let server = Server::builder(opts.addr, identity)
            .config(config)
            .router(router)
            .bind()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            server,
            wt,
            certificate,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The WebTransport address, when it listens on one.
    pub fn wt_local_addr(&self) -> Option<SocketAddr> {
        self.wt.as_ref().and_then(|wt| wt.local_addr().ok())
    }

    /// Its leaf certificate, for a client to pin.
    pub fn certificate(&self) -> Option<&CertificateDer<'static>> {
        self.certificate.as_ref()
    }

    /// Accepts sessions until the endpoint closes; for each, runs steps 6–9 on its own task
    /// and sends their results to `report` as they end.
    pub async fn run(self, report: mpsc::UnboundedSender<StepResult>) {
        let quic = async {
            while let Some(accepted) = self.server.accept().await {
                serve(accepted, &report);
            }
        };
        let wt = async {
            if let Some(wt) = &self.wt {
                while let Some(accepted) = wt.accept().await {
                    serve(accepted, &report);
                }
            }
        };
        tokio::join!(quic, wt);
    }
}

/// Runs steps 6–9 on an accepted session, on its own task.
fn serve<E: std::fmt::Display>(
    accepted: Result<Session, E>,
    report: &mpsc::UnboundedSender<StepResult>,
) {
    match accepted {
        Ok(session) => {
            tokio::spawn(serve_session(session, report.clone()));
        }
        Err(e) => eprintln!("interop server: a connection failed: {e}"),
    }
}

/// Binds and runs the server (see [`InteropServer::run`]).
pub async fn run_server(
    opts: &ServerOpts,
    report: mpsc::UnboundedSender<StepResult>,
) -> Result<(), String> {
    InteropServer::bind(opts)?.run(report).await;
    Ok(())
}

/// Steps 6–9 on one session.
async fn serve_session(session: Session, report: mpsc::UnboundedSender<StepResult>) {
    let mut steps = Steps::new(Skip::default(), move |result| {
        let _ = report.send(result.clone());
    });
    let path = steps
        .run(6, STEP_TIMEOUT, discover(&session, CLIENT_BROADCAST))
        .await;
    let path = path.unwrap_or_else(|| BroadcastPath::new(CLIENT_BROADCAST));
    steps
        .run(7, STEP_TIMEOUT, async {
            let (_track, mut group) = first_group(&session, path).await?;
            read_hello(&mut group).await
        })
        .await;
    steps.run(8, STEP_TIMEOUT, probe(&session)).await;
    // The client's last request is its probe (step 5); a GOAWAY before it would forbid it.
    // A client that skips probing costs one bounded wait.
    let mut probed = session.probe_targets();
    let _ = tokio::time::timeout(STEP_TIMEOUT, probed.next()).await;
    // The core closes with 0x10 at GOAWAY_DRAIN; the margin only guards against a stall.
    steps
        .run(9, GOAWAY_DRAIN + Duration::from_secs(2), goaway(&session))
        .await;
    steps.finish();
}

/// Sends GOAWAY and waits for the client to close with code 0.
async fn goaway(session: &Session) -> Result<(), String> {
    session
        .goaway(GOAWAY_URI)
        .map_err(|e| format!("cannot send GOAWAY: {e}"))?;
    match session.closed().await {
        CloseReason::Peer { code, .. } if code == code::session::NO_ERROR => Ok(()),
        CloseReason::Peer { code, reason } => {
            Err(format!("the client closed with code {code}: {reason}"))
        }
        CloseReason::Local { code, .. } if code == code::session::GOAWAY_TIMEOUT => Err(format!(
            "the client did not close within {} s; closed with 0x10",
            GOAWAY_DRAIN.as_secs()
        )),
        other => Err(format!("the session ended otherwise: {other}")),
    }
}
