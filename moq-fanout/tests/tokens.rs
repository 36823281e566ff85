//! One JWT for a moq-relay cluster and moq-fanout as its edge: keys and tokens made with
//! moq-dev's `moq-token` CLI (crates.io `moq-token-cli`), checked by moq-fanout itself and,
//! for moq-dev's `moq-relay` 0.17.10 (which verifies tokens through an auth server,
//! `[auth] url`), by moq-fanout's `POST /auth` answering that contract. Peer suite
//! (`scripts/peers` installs both programs); fails loudly when either is missing.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::moq_relay::{MoqRelay, free_port};
use common::*;
use moq_fanout::{JwtAuth, RelayServer};
use moq_quinn::{Broadcast, Config, Router, Session, code};

/// `$MOQ_TOKEN_BIN`, else the copy `scripts/peers` installs into the peer cache.
fn moq_token_bin() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("MOQ_TOKEN_BIN") {
        Some(bin) => vec![PathBuf::from(bin)],
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|cache| cache.join("moq-lite-rs/moq-token-cli-0.5.48/bin/moq-token"))
            .into_iter()
            .collect(),
    };
    match candidates.iter().find(|bin| bin.exists()) {
        Some(bin) => bin.clone(),
        None => panic!(
            "moq-dev's moq-token is missing (looked at {candidates:?}): set MOQ_TOKEN_BIN, or \
             run scripts/peers, which installs moq-token-cli 0.5.48: this test cannot run without it"
        ),
    }
}

/// Runs `moq-token ARGS`; its standard output, trimmed.
fn moq_token(args: &[&str]) -> String {
    let out = std::process::Command::new(moq_token_bin())
        .args(args)
        .output()
        .expect("run moq-token");
    assert!(
        out.status.success(),
        "moq-token {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn unix(at: SystemTime) -> String {
    at.duration_since(UNIX_EPOCH).unwrap().as_secs().to_string()
}

/// Signs a token with `key`: `--root`, then `--publish`/`--subscribe` prefixes.
fn sign(
    key: &Path,
    root: &str,
    publish: &[&str],
    subscribe: &[&str],
    expires: SystemTime,
) -> String {
    let key = key.to_str().unwrap();
    let expires = unix(expires);
    let mut args = vec!["sign", "--key", key, "--root", root, "--expires", &expires];
    for p in publish {
        args.extend(["--publish", p]);
    }
    for s in subscribe {
        args.extend(["--subscribe", s]);
    }
    moq_token(&args)
}

/// A WebTransport session to `base` with `jwt`: the session, or the session code it was
/// closed with during setup.
async fn dial(
    client: &moq_webtransport::Client,
    base: &str,
    jwt: &str,
    router: Option<Router>,
) -> Result<Session, moq_quinn::code::ErrorCode> {
    let url = format!("{base}?jwt={jwt}");
    match within(
        "connect",
        client.connect_with(&url, Config::default(), router),
    )
    .await
    {
        Ok(session) => Ok(session),
        Err(moq_webtransport::error::ConnectError::Closed { code, .. }) => Err(code),
        Err(e) => panic!("connect to {base}: {e}"),
    }
}

/// The code a session is closed with (at setup, or within the bounded wait).
async fn refused_with(client: &moq_webtransport::Client, base: &str, jwt: &str) -> code::ErrorCode {
    match dial(client, base, jwt, None).await {
        Err(code) => code,
        Ok(session) => match within("the close", session.closed()).await {
            moq_quinn::error::CloseReason::Peer { code, .. } => code,
            other => panic!("{base}: expected the peer to close the session, got {other:?}"),
        },
    }
}

/// Whether `session` can subscribe to `path` and read a group within a few seconds.
async fn plays(session: &Session, path: &str, track: &moq_quinn::TrackProducer) -> bool {
    let mut reader = session.subscribe(path, "video", ordered()).unwrap();
    for _ in 0..40 {
        write_group(track, 1, 100);
        if let Ok(next) =
            tokio::time::timeout(Duration::from_millis(100), reader.next_group()).await
        {
            return matches!(next, Ok(Some(_)));
        }
    }
    false
}

async fn one_token_on_both(algorithm: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tokens-{algorithm}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("root.jwk");
    let other_key = dir.join("other.jwk");
    for k in [&key, &other_key] {
        moq_token(&[
            "generate",
            "--algorithm",
            algorithm,
            "--out",
            k.to_str().unwrap(),
        ]);
    }
    let hour = SystemTime::now() + Duration::from_secs(3600);
    let alice = sign(&key, "demo", &["alice"], &[], hour);
    let viewer = sign(&key, "demo", &[], &[""], hour);
    let cluster = sign(&key, "", &[""], &[""], hour);
    let forged = sign(&other_key, "demo", &[], &[""], hour);
    let soon = sign(
        &key,
        "demo",
        &[],
        &[""],
        SystemTime::now() + Duration::from_secs(1),
    );

    // moq-relay asks moq-fanout's /auth; moq-fanout checks the same keys itself.
    let metrics_port = free_port();
    let node =
        MoqRelay::start_with_auth(&format!("url = \"http://127.0.0.1:{metrics_port}/auth\"")).await;
    let node_url = format!("https://localhost:{}/", node.port);
    let mut config = config();
    config.listen.webtransport = Some("127.0.0.1:0".parse().unwrap());
    config.metrics.listen = Some(format!("127.0.0.1:{metrics_port}").parse().unwrap());
    config.auth.jwt_keys = vec![key.clone()];
    config.relay.upstreams = vec![format!("{node_url}?jwt={cluster}")];
    config.relay.upstream_insecure = true;
    let access = std::sync::Arc::new(JwtAuth::from_config(&config.auth).unwrap());
    let edge = RelayServer::start(config, access).await.unwrap();
    let edge_url = wt_url(&edge);
    let client = moq_webtransport::Client::new(moq_webtransport::ServerTrust::Insecure).unwrap();

    // Alice publishes on the cluster node: demo/alice/cam is hers, demo/bob/cam is not.
    let broadcast = Broadcast::new();
    let track = broadcast.create_track("video", 2);
    let router = Router::new();
    router.publish("/demo/alice/cam", broadcast.clone());
    router.publish("/demo/bob/cam", broadcast.clone());
    let _alice = dial(&client, &node_url, &alice, Some(router))
        .await
        .expect("moq-relay accepts alice's token");
    let at_node = dial(&client, &node_url, &viewer, None)
        .await
        .expect("moq-relay accepts the viewer's token");
    let at_edge = dial(&client, &edge_url, &viewer, None)
        .await
        .expect("moq-fanout accepts the viewer's token");
    until("the edge learns alice's broadcast through the node", || {
        edge.relay()
            .broadcasts()
            .iter()
            .any(|b| b.path.as_str() == "demo/alice/cam")
    })
    .await;
    assert!(
        plays(&at_node, "/demo/alice/cam", &track).await,
        "on moq-relay"
    );
    assert!(
        plays(&at_edge, "/demo/alice/cam", &track).await,
        "on moq-fanout"
    );
    assert!(
        !plays(&at_node, "/demo/bob/cam", &track).await,
        "bob's path on moq-relay"
    );
    assert!(
        !plays(&at_edge, "/demo/bob/cam", &track).await,
        "bob's path on moq-fanout"
    );

    // Alice's token on moq-fanout directly: the same paths, and no others.
    let direct = Broadcast::new();
    let router = Router::new();
    router.publish("/demo/alice/direct", direct.clone());
    router.publish("/demo/bob/direct", direct);
    let _alice_edge = dial(&client, &edge_url, &alice, Some(router))
        .await
        .expect("moq-fanout accepts alice's token");
    until("moq-fanout takes alice's direct broadcast", || {
        edge.relay()
            .broadcasts()
            .iter()
            .any(|b| b.path.as_str() == "demo/alice/direct")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !edge
            .relay()
            .broadcasts()
            .iter()
            .any(|b| b.path.as_str() == "demo/bob/direct")
    );

    // A wrongly signed token and an expired one: both close the session with code 0x2.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for (what, jwt) in [("forged", &forged), ("expired", &soon)] {
        assert_eq!(
            refused_with(&client, &node_url, jwt).await,
            code::session::UNAUTHORIZED,
            "{what} on moq-relay"
        );
        assert_eq!(
            refused_with(&client, &edge_url, jwt).await,
            code::session::UNAUTHORIZED,
            "{what} on moq-fanout"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    drop(node);
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: moq-dev's moq-relay 0.17.10 and moq-token-cli 0.5.48 (scripts/peers)"]
async fn one_hs256_token_works_on_moq_relay_and_moq_fanout_alike() {
    one_token_on_both("HS256").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: moq-dev's moq-relay 0.17.10 and moq-token-cli 0.5.48 (scripts/peers)"]
async fn one_es256_token_works_on_moq_relay_and_moq_fanout_alike() {
    one_token_on_both("ES256").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: moq-dev's moq-token-cli 0.5.48 (scripts/peers)"]
async fn keys_of_every_algorithm_moq_token_makes_verify_its_tokens() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("algs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for algorithm in [
        "HS256", "HS384", "HS512", "ES256", "ES384", "RS256", "PS256", "EdDSA",
    ] {
        let key = dir.join(format!("{algorithm}.jwk"));
        moq_token(&[
            "generate",
            "--algorithm",
            algorithm,
            "--out",
            key.to_str().unwrap(),
        ]);
        let hour = SystemTime::now() + Duration::from_secs(3600);
        let jwt = sign(&key, "r", &["p"], &["s"], hour);
        let policy = JwtAuth::from_files(&[&key], &[] as &[&str], &[]).unwrap();
        let access = policy
            .access(Some(&jwt), "/", SystemTime::now())
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        assert!(access.may_publish(&"/r/p/x".into()), "{algorithm}");
        assert!(!access.may_publish(&"/r/s/x".into()), "{algorithm}");
        assert!(access.may_subscribe(&"/r/s".into()), "{algorithm}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
