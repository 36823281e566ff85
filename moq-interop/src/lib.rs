//! The moq-lite-04 interop program, as a library: the client and the server role of the
//! shared scenario (`shared/spec/interop-scenario.md`), each reporting one [`StepResult`] per
//! step so that tests can run both in one process.
//!
//! | # | client ([`run_client`]) | server ([`InteropServer`]) |
//! |---|---|---|
//! | 0 | connect | publish `/interop/server`, track `""`, served by [`Hello`] |
//! | 1 | announce interest `/`; see `/interop/server` active | serve the announce stream |
//! | 2 | subscribe to it | serve the subscription |
//! | 3 | read frame `HELLO` from the group | |
//! | 4 | fetch group 0; read `HELLO` and the end | |
//! | 5 | probe 1 000 000 b/s; wait for the first reply | reply to probes |
//! | 6 | publish `/interop/client` (the same way) | announce interest `/`; see `/interop/client` |
//! | 7 | serve the subscription | subscribe to it; read `HELLO` |
//! | 8 | reply to probes | probe 1 000 000 b/s; wait for the first reply |
//! | 9 | receive GOAWAY to `https://next.example.com`; close with code 0 | send that GOAWAY; wait ≤ 10 s for the close, else close 0x10 |
//!
//! Every wait is bounded, so a broken peer fails the run instead of hanging it: by
//! [`STEP_TIMEOUT`], except in step 9. There the server first waits (at most
//! [`STEP_TIMEOUT`]) for the client's probe, the client's last request, so the client waits
//! twice as long for GOAWAY; the server then waits [`GOAWAY_DRAIN`] for the close. Paths are compared in normalised form, so a peer
//! that announces `interop/server` under the empty prefix (moq-net, spec D20) is found too.

mod client;
mod flows;
mod hello;
mod server;
mod steps;

use std::time::Duration;

pub use client::{ClientOpts, run_client};
pub use hello::Hello;
pub use server::{InteropServer, ServerOpts, run_server};
pub use steps::{Outcome, STEP_NAMES, Skip, StepResult};

/// The broadcast the server publishes.
pub const SERVER_BROADCAST: &str = "/interop/server";
/// The broadcast the client publishes.
pub const CLIENT_BROADCAST: &str = "/interop/client";
/// The one frame of every group and fetch in the scenario.
pub const HELLO: &[u8] = b"HELLO";
/// The probe target both sides ask for, bits per second.
pub const PROBE_TARGET: u64 = 1_000_000;
/// The URI the server's GOAWAY redirects to.
pub const GOAWAY_URI: &str = "https://next.example.com";
/// The bound on every wait, unless the scenario says otherwise.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server waits for the client to close after GOAWAY before closing 0x10.
pub const GOAWAY_DRAIN: Duration = Duration::from_secs(10);
