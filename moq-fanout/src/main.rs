//! `moq-fanout`: the relay program. See `moq-fanout --help` and [`moq_fanout::RelayConfig`].

use std::sync::Arc;

use clap::Parser;
use moq_fanout::{AccessControl, Args, JwtAuth, RelayServer, StaticTokens};

fn main() -> std::process::ExitCode {
    let config = match Args::parse().into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("moq-fanout: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // RUST_LOG wins; else the configured level or directives.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: redirected logs stay plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("moq-fanout: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let access: Arc<dyn AccessControl> = if config.auth.jwt_keys.is_empty() {
            Arc::new(StaticTokens::from_config(&config.auth))
        } else {
            match JwtAuth::from_config(&config.auth) {
                Ok(jwt) => Arc::new(jwt),
                Err(e) => {
                    tracing::error!(error = %e, "cannot load the JWT keys");
                    return std::process::ExitCode::FAILURE;
                }
            }
        };
        let server = match RelayServer::start(config, access).await {
            Ok(server) => server,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return std::process::ExitCode::FAILURE;
            }
        };
        // A signal, or a drain started over HTTP (POST /drain).
        tokio::select! {
            () = wait_for_signal() => {}
            () = server.relay().shutting_down() => tracing::info!("drain started"),
        }
        server.shutdown().await;
        std::process::ExitCode::SUCCESS
    })
}

/// Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
                    _ = term.recv() => tracing::info!("terminated"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
