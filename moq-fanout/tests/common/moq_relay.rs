//! moq-dev's relay (crates.io `moq-relay` 0.17.10) as a child process, for the peer tests:
//! found through `$MOQ_RELAY_BIN`, else `target/moq-relay/bin/moq-relay` under the workspace,
//! else `~/.cache/moq-lite-rs/moq-relay-0.17.10` (where `scripts/peers` builds it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::WAIT;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_path_buf()
}

/// A free UDP port on loopback (bound, read, released).
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

/// Strips ANSI colour sequences from a log line.
pub fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// moq-dev's relay running as a child process; killed when dropped.
pub struct MoqRelay {
    _child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

/// `$MOQ_RELAY_BIN`, else `target/moq-relay/bin/moq-relay` under the workspace, else the
/// copy `scripts/peers` keeps under `~/.cache/moq-lite-rs/moq-relay-0.17.10`.
pub fn moq_relay_bin() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("MOQ_RELAY_BIN") {
        Some(bin) => vec![PathBuf::from(bin)],
        None => {
            let mut list = vec![workspace_root().join("target/moq-relay/bin/moq-relay")];
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
            if let Some(cache) = cache {
                list.push(cache.join("moq-lite-rs/moq-relay-0.17.10/bin/moq-relay"));
            }
            list
        }
    };
    match candidates.iter().find(|bin| bin.exists()) {
        Some(bin) => bin.clone(),
        None => panic!(
            "moq-dev's relay is missing (looked at {candidates:?}): set MOQ_RELAY_BIN, or build \
             it with `cargo install moq-relay@0.17.10 --no-default-features --features noq \
             --root target/moq-relay`, or run scripts/peers, which does: this interop test cannot run without it"
        ),
    }
}

impl MoqRelay {
    /// One node on a free loopback port, anonymous access, self-signed for localhost.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// The same with extra command-line arguments (cluster flags, say).
    pub async fn start_with(extra: &[String]) -> Self {
        Self::start_on(free_port(), extra).await
    }

    /// The same on `port` (a node started again where one was).
    pub async fn start_on(port: u16, extra: &[String]) -> Self {
        Self::start_configured(port, "public = [\"**\"]", extra).await
    }

    /// One node whose `[auth]` section is `auth` (an auth server's `url`, say).
    pub async fn start_with_auth(auth: &str) -> Self {
        Self::start_configured(free_port(), auth, &[]).await
    }

    async fn start_configured(port: u16, auth: &str, extra: &[String]) -> Self {
        let bin = moq_relay_bin();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let config = dir.join(format!("moq-relay-{}-{port}.toml", std::process::id()));
        std::fs::write(
            &config,
            format!(
                "[listen]\nbind = \"127.0.0.1:{port}\"\n\n[listen.tls]\ngenerate = [\"localhost\"]\n\n\
                 [auth]\n{auth}\n"
            ),
        )
        .expect("write the moq-relay config");
        let mut child = Command::new(&bin)
            .arg(&config)
            .args(extra)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let lines = log.clone();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let line = plain(&line);
                if line.contains("listening")
                    && line.contains("addr=")
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(());
                }
                lines.lock().unwrap().push(line);
            }
        });
        if tokio::time::timeout(WAIT, ready).await.is_err() {
            panic!(
                "moq-relay did not log `listening addr=` within {WAIT:?}:\n{}",
                log.lock().unwrap().join("\n")
            );
        }
        Self {
            _child: child,
            port,
            log,
        }
    }

    /// Its native QUIC URL.
    pub fn url(&self) -> String {
        format!("moqt://localhost:{}", self.port)
    }

    /// Every log line so far, colours stripped.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Whether a log line contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}
