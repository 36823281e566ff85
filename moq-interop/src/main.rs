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
use std::path::PathBuf;
use std::process::ExitCode;

use moq_interop::{ClientOpts, ServerOpts, Skip, run_client};
use moq_quinn::ServerTrust;
use tokio::sync::mpsc;

const USAGE: &str = "usage: interop server --addr HOST:PORT [--wt-addr HOST:PORT] [--cert FILE --key FILE]
       interop client --url moqt://HOST:PORT|https://HOST:PORT/PATH [--insecure] [--skip fetch,probe,goaway]";

enum Command {
    Server(ServerOpts),
    Client(ClientOpts),
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let role = args.next().ok_or("missing role")?;
    let mut addr = None;
    let mut wt_addr = None;
    let mut cert = None;
    let mut key = None;
    let mut url = None;
    let mut insecure = false;
    let mut skip = Skip::default();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match (role.as_str(), arg.as_str()) {
            ("server", "--addr") => {
                let v = value()?;
                addr = Some(v.parse().map_err(|_| format!("invalid address {v:?}"))?);
            }
            ("server", "--wt-addr") => {
                let v = value()?;
                wt_addr = Some(v.parse().map_err(|_| format!("invalid address {v:?}"))?);
            }
            ("server", "--cert") => cert = Some(PathBuf::from(value()?)),
            ("server", "--key") => key = Some(PathBuf::from(value()?)),
            ("client", "--url") => url = Some(value()?),
            ("client", "--insecure") => insecure = true,
            ("client", "--skip") => skip = value()?.parse()?,
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    match role.as_str() {
        "server" => Ok(Command::Server(ServerOpts {
            addr: addr.ok_or("missing --addr")?,
            wt_addr,
            cert: match (cert, key) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => return Err("--cert and --key go together".into()),
            },
        })),
        "client" => Ok(Command::Client(ClientOpts {
            url: url.ok_or("missing --url")?,
            // Without --insecure there is nothing to check the certificate against (no
            // system trust store here): step 0 fails and says so.
            trust: insecure.then_some(ServerTrust::Insecure),
            skip,
            echo: true,
        })),
        other => Err(format!("unknown role {other:?}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let command = match parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("interop: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Client(opts) => {
            let results = run_client(&opts).await;
            match results.iter().any(|r| r.is_failed()) {
                false => ExitCode::SUCCESS,
                true => ExitCode::FAILURE,
            }
        }
        Command::Server(opts) => serve(&opts).await,
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
