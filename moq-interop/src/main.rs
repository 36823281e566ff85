//! `interop`: the moq-lite-04 interop scenario, client or server role.
//!
//! ```text
//! interop server --addr 127.0.0.1:PORT [--wt-addr 127.0.0.1:PORT] [--cert FILE --key FILE]
//! interop client --url moqt://127.0.0.1:PORT [--insecure] [--skip fetch,probe,goaway]
//! interop client --url https://127.0.0.1:PORT/interop [--insecure] [...]
//! ```
//!
//! Prints one `STEP <n> <name>: ok|FAILED <reason>|skipped` line per step. The client exits
//! 0 only if every step that was not skipped passed; the server runs until Ctrl-C and then
//! exits 0 only if every step of every session passed.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use moq_interop::{ClientOpts, ServerOpts, Skip, run_client};
use moq_quinn::ServerTrust;
use tokio::sync::mpsc;

/// The moq-lite-04 interop scenario (connect, announce, subscribe, fetch, probe, the
/// reverse direction, GOAWAY), in either role.
#[derive(Debug, Parser)]
#[command(name = "interop", version)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Serve the scenario's server role until Ctrl-C.
    Server {
        /// Native QUIC listen address.
        #[arg(long, value_name = "HOST:PORT")]
        addr: SocketAddr,
        /// Also listen for WebTransport here (same certificate and broadcasts).
        #[arg(long, value_name = "HOST:PORT")]
        wt_addr: Option<SocketAddr>,
        /// PEM certificate chain (self-signed for localhost when absent).
        #[arg(long, value_name = "FILE", requires = "key")]
        cert: Option<PathBuf>,
        /// PEM private key of --cert.
        #[arg(long, value_name = "FILE", requires = "cert")]
        key: Option<PathBuf>,
    },
    /// Play the client role once; exit 0 only if every step that ran passed.
    Client {
        /// `moqt://HOST:PORT` (native QUIC) or `https://HOST:PORT/PATH` (WebTransport).
        #[arg(long)]
        url: String,
        /// Skip certificate verification (throwaway test servers only). Without it the
        /// server must present a certificate from a CA the platform trusts, or from --ca.
        #[arg(long, conflicts_with = "ca")]
        insecure: bool,
        /// PEM CA certificate(s) to trust besides the platform's roots.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Steps the peer does not implement, reported `skipped`: any of fetch, probe,
        /// goaway, comma-separated.
        #[arg(long, value_name = "LIST", default_value = "")]
        skip: String,
    },
}

fn trust(insecure: bool, ca: Option<PathBuf>) -> Result<ServerTrust, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    if insecure {
        return Ok(ServerTrust::Insecure);
    }
    let cas = match ca {
        Some(path) => CertificateDer::pem_file_iter(&path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", path.display()))?,
        None => Vec::new(),
    };
    Ok(ServerTrust::platform_and(cas))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.role {
        Role::Client {
            url,
            insecure,
            ca,
            skip,
        } => {
            let (trust, skip) = match (trust(insecure, ca), skip.parse::<Skip>()) {
                (Ok(trust), Ok(skip)) => (trust, skip),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("interop: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = ClientOpts {
                url,
                trust: Some(trust),
                skip,
                echo: true,
            };
            let results = run_client(&opts).await;
            match results.iter().any(|r| r.is_failed()) {
                false => ExitCode::SUCCESS,
                true => ExitCode::FAILURE,
            }
        }
        Role::Server {
            addr,
            wt_addr,
            cert,
            key,
        } => {
            let opts = ServerOpts {
                addr,
                wt_addr,
                cert: cert.zip(key),
            };
            serve(&opts).await
        }
    }
}

/// Runs the server until Ctrl-C, printing every session's steps as they end.
async fn serve(opts: &ServerOpts) -> ExitCode {
    let server = match moq_interop::InteropServer::bind(opts) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("interop: cannot listen on {}: {e}", opts.addr);
            return ExitCode::FAILURE;
        }
    };
    eprintln!("interop server listening on moqt://{}", server.local_addr());
    if let Some(wt) = server.wt_local_addr() {
        eprintln!("interop server listening on https://{wt}/interop (WebTransport)");
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let run = tokio::spawn(server.run(tx));
    let mut failed = false;
    loop {
        tokio::select! {
            result = rx.recv() => match result {
                Some(result) => {
                    let _ = writeln!(std::io::stdout(), "{result}");
                    failed |= result.is_failed();
                }
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    run.abort();
    match failed {
        false => ExitCode::SUCCESS,
        true => ExitCode::FAILURE,
    }
}
