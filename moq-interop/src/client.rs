//! The client role: steps 0–5 against the server, then serving `/interop/client` and
//! the server's probe until GOAWAY arrives (steps 6–9).

use std::io::Write;
use std::time::Duration;

use moq_dial::Dialer;
use moq_quinn::{BroadcastPath, Router, ServerTrust, Session};

use crate::flows::{discover, fetch_hello, first_group, probe, read_hello};
use crate::hello::Hello;
use crate::steps::{STEP_NAMES, Skip, StepResult, Steps};
use crate::{CLIENT_BROADCAST, GOAWAY_URI, SERVER_BROADCAST, STEP_TIMEOUT};

/// What the client runs against, and how.
#[derive(Clone, Debug)]
pub struct ClientOpts {
    /// `moqt://host:port` (native QUIC) or `https://host:port/path` (WebTransport).
    pub url: String,
    /// How to check the server's certificate; `None` (no trust anchor available) fails
    /// step 0.
    pub trust: Option<ServerTrust>,
    /// Steps the peer does not implement, reported `skipped`.
    pub skip: Skip,
    /// Print each step's line to stdout as soon as it ends.
    pub echo: bool,
}

impl ClientOpts {
    /// Runs every step against `url`, trusting any certificate (`--insecure`), silently.
    pub fn insecure(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            trust: Some(ServerTrust::Insecure),
            skip: Skip::default(),
            echo: false,
        }
    }
}

/// Plays the client role once and returns one result per step, in step order.
pub async fn run_client(opts: &ClientOpts) -> Vec<StepResult> {
    let echo = opts.echo;
    let mut steps = Steps::new(opts.skip, move |result| {
        if echo {
            // A closed stdout must not abort the run.
            let _ = writeln!(std::io::stdout(), "{result}");
        }
    });

    // Our router starts empty: `/interop/client` is published at step 6, as the scenario
    // says, so a server cannot race ahead to its steps 6–9 (ending in GOAWAY) while we are
    // still at steps 4–5.
    let router = Router::new();
    let Some(dialled) = steps.run(0, STEP_TIMEOUT, dial(opts, router.clone())).await else {
        for step in 1..STEP_NAMES.len() {
            steps.fail(step, "not connected");
        }
        return steps.finish();
    };
    let session = &dialled.session;

    let path = steps
        .run(1, STEP_TIMEOUT, discover(session, SERVER_BROADCAST))
        .await;
    // Later steps still try the well-known path when discovery failed.
    let path = path.unwrap_or_else(|| BroadcastPath::new(SERVER_BROADCAST));
    let subscribed = steps
        .run(2, STEP_TIMEOUT, first_group(session, path.clone()))
        .await;
    match subscribed {
        Some((_track, mut group)) => {
            steps.run(3, STEP_TIMEOUT, read_hello(&mut group)).await;
        }
        None => steps.fail(3, "no group (step 2 failed)"),
    }
    steps.run(4, STEP_TIMEOUT, fetch_hello(session, path)).await;
    steps.run(5, STEP_TIMEOUT, probe(session)).await;

    // Step 6: publish `/interop/client`; the session announces it to the server's interest
    // (which the API does not report).
    let hello = Hello::new();
    let mut served = hello.served();
    steps
        .run(6, STEP_TIMEOUT, async {
            if session.is_closed() {
                return Err("the session ended".to_owned());
            }
            router.publish(CLIENT_BROADCAST, hello);
            Ok(())
        })
        .await;
    steps
        .run(7, STEP_TIMEOUT, async {
            served
                .wait_for(|n| *n > 0)
                .await
                .map(|_| ())
                .map_err(|_| "the broadcast was dropped".to_owned())
        })
        .await;
    steps
        .run(8, STEP_TIMEOUT, async {
            let mut targets = session.probe_targets();
            targets
                .next()
                .await
                .map(|_| ())
                .ok_or_else(|| "the session ended before the server probed".to_owned())
        })
        .await;
    // The server sends GOAWAY once it has seen our probe, or after STEP_TIMEOUT without
    // one (a client that skips probing): allow for that wait.
    steps.run(9, 2 * STEP_TIMEOUT, goaway(session)).await;
    if opts.skip.goaway {
        // No GOAWAY will end the session: leave the server time to finish its steps (it
        // may still be reading our HELLO); its GOAWAY or close ends the wait early.
        let _ = tokio::time::timeout(STEP_TIMEOUT, session.goaway_received()).await;
    }

    dialled.close().await;
    steps.finish()
}

/// Waits for GOAWAY and checks its URI (step 9). The caller then closes with code 0.
async fn goaway(session: &Session) -> Result<(), String> {
    match session.goaway_received().await {
        Some(uri) if uri == GOAWAY_URI => Ok(()),
        Some(uri) => Err(format!("GOAWAY to {uri:?}, expected {GOAWAY_URI:?}")),
        None => Err(format!(
            "the session ended without GOAWAY: {}",
            session.closed().await
        )),
    }
}

/// A session and the dialer that carries it.
struct Dialled {
    session: Session,
    dialer: Dialer,
}

impl Dialled {
    /// Closes with code 0 and waits (briefly) until the close has been sent.
    async fn close(self) {
        self.session
            .close(moq_quinn::code::session::NO_ERROR, "interop done");
        drop(self.session);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.dialer.wait_idle()).await;
    }
}

/// Connects to `opts.url`, the scheme picking the transport (`moqt://` native QUIC,
/// `https://` WebTransport).
async fn dial(opts: &ClientOpts, router: Router) -> Result<Dialled, String> {
    let trust = opts
        .trust
        .clone()
        .ok_or("no trust policy for the server's certificate")?;
    let dialer = Dialer::builder()
        .trust(trust)
        .router(router)
        .build()
        .map_err(|e| e.to_string())?;
    let session = dialer.connect(&opts.url).await.map_err(|e| e.to_string())?;
    Ok(Dialled { session, dialer })
}
