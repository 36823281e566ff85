//! What an operator runs: `/metrics`, `/health`, the status data, a drain started over
//! HTTP, and moq-relay's JWTs.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use common::*;
use moq_fanout::{JwtAuth, RelayConfig, RelayServer};
use moq_quinn::{Config, Router, code};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request over a fresh connection: the status code and the body.
async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    within("an HTTP answer", async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for h in headers {
            request.push_str(h);
            request.push_str("\r\n");
        }
        request.push_str("Content-Length: 0\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    })
    .await
}

/// The samples of a Prometheus text exposition: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn with_metrics(mut config: RelayConfig) -> RelayConfig {
    config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_every_family_with_live_values() {
    let mut config = with_metrics(config());
    config.listen.webtransport = Some("127.0.0.1:0".parse().unwrap());
    config.auth.anonymous_publish = Some(vec!["/".into()]);
    config.auth.anonymous_subscribe = Some(vec!["live/".into()]);
    let relay = relay(config).await;
    let http_addr = relay.metrics_addr().expect("a metrics listener");
    let url = url(&relay);
    let client = client();
    let publisher = publisher(&client, &url, "/live/cam", &["video"], 4).await;
    known(&relay, 1).await;

    // Two subscribers, one per transport, and one refused subscription.
    let quic = connect(&client, &url, None).await;
    let mut quic_reader = quic.subscribe("/live/cam", "video", ordered()).unwrap();
    let wt = wt_connect(&relay).await;
    let mut wt_reader = wt.subscribe("/live/cam", "video", ordered()).unwrap();
    accepted(&quic_reader).await;
    accepted(&wt_reader).await;
    let mut refused = quic.subscribe("/private", "video", ordered()).unwrap();
    let end = within("a refusal", refused.next_group()).await.unwrap_err();
    assert_eq!(
        end,
        moq_quinn::error::EndReason::PeerReset(code::subscribe::UNAUTHORIZED)
    );

    // Traffic for a few seconds: the sampler sees a bitrate.
    for _ in 0..6 {
        write_group(&publisher.tracks[0], 4, 1000);
        read_groups(&mut quic_reader, 1).await;
        read_groups(&mut wt_reader, 1).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    let (status, body) = http(http_addr, "GET", "/metrics", &[]).await;
    assert_eq!(status, 200);
    let m = samples(&body);
    let get = |key: &str| {
        *m.get(key)
            .unwrap_or_else(|| panic!("no sample {key} in\n{body}"))
    };
    assert_eq!(get(r#"moq_fanout_sessions{transport="quic"}"#), 2.0);
    assert_eq!(get(r#"moq_fanout_sessions{transport="webtransport"}"#), 1.0);
    assert!(get(r#"moq_fanout_sessions_started_total{transport="quic"}"#) >= 2.0);
    assert_eq!(
        get(r#"moq_fanout_handshakes_in_flight{transport="quic"}"#),
        0.0
    );
    assert!(m.contains_key(r#"moq_fanout_handshakes_refused_total{transport="webtransport"}"#));
    assert_eq!(get(r#"moq_fanout_subscriptions{side="downstream"}"#), 2.0);
    assert_eq!(get(r#"moq_fanout_subscriptions{side="upstream"}"#), 1.0);
    assert_eq!(get("moq_fanout_broadcasts"), 1.0);
    assert!(get("moq_fanout_routes") >= 1.0);
    assert!(get("moq_fanout_announcements_received_total") >= 1.0);
    assert!(get(r#"moq_fanout_bytes_total{direction="in"}"#) > 24_000.0);
    assert!(get(r#"moq_fanout_bytes_total{direction="out"}"#) > 48_000.0);
    assert!(get(r#"moq_fanout_frames_total{direction="in"}"#) >= 24.0);
    assert!(get(r#"moq_fanout_frames_total{direction="out"}"#) >= 48.0);
    assert!(get(r#"moq_fanout_groups_total{direction="out"}"#) >= 12.0);
    assert!(m.contains_key(r#"moq_fanout_groups_dropped_total{reason="late"}"#));
    assert!(m.contains_key(r#"moq_fanout_groups_dropped_total{reason="memory"}"#));
    assert!(get(r#"moq_fanout_ledger_bytes{category="streams"}"#) > 0.0);
    assert!(get("moq_fanout_connection_ledger_max_bytes") > 0.0);
    assert!(get("moq_fanout_cache_bytes") > 4000.0);
    assert!(get("moq_fanout_held_bytes") >= get("moq_fanout_cache_bytes"));
    assert!(m.contains_key(r#"moq_fanout_fetches_total{source="cache"}"#));
    assert_eq!(get(r#"moq_fanout_upstream_links{state="connected"}"#), 0.0);
    assert_eq!(
        get(r#"moq_fanout_refusals_total{what="subscribe",why="unauthorized"}"#),
        1.0
    );
    assert_eq!(
        get(r#"moq_fanout_broadcast_subscribers{broadcast="live/cam"}"#),
        2.0
    );
    assert!(get(r#"moq_fanout_broadcast_bitrate_bps{broadcast="live/cam"}"#) > 0.0);
    assert_eq!(get("moq_fanout_draining"), 0.0);

    let (status, body) = http(http_addr, "GET", "/health", &[]).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = http(http_addr, "GET", "/status.json", &[]).await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"]["broadcasts"][0]["path"], "live/cam");
    assert_eq!(
        json["status"]["broadcasts"][0]["tracks"][0]["subscribers"],
        2
    );
    assert_eq!(json["status"]["recent_refusals"][0]["what"], "subscribe");
    assert!(json["history"].as_array().unwrap().len() >= 2);
    let (status, body) = http(http_addr, "GET", "/", &[]).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("status.json"),
        "the page draws from status.json"
    );
    assert_eq!(http(http_addr, "GET", "/nothing", &[]).await.0, 404);
    assert_eq!(http(http_addr, "POST", "/metrics", &[]).await.0, 405);
    drop((quic, wt, publisher));
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exposition_stays_bounded_under_a_flood_of_broadcasts() {
    let mut config = with_metrics(config());
    config.metrics.top_broadcasts = 5;
    let relay = relay(config).await;
    let http_addr = relay.metrics_addr().unwrap();
    let url = url(&relay);
    let client = client();
    let router = Router::new();
    for i in 0..300 {
        router.publish(format!("/flood/{i}"), moq_quinn::Broadcast::new());
    }
    let _publisher = connect(&client, &url, Some(router)).await;
    known(&relay, 300).await;
    let (status, body) = http(http_addr, "GET", "/metrics", &[]).await;
    assert_eq!(status, 200);
    let per_broadcast = body
        .lines()
        .filter(|l| l.starts_with("moq_fanout_broadcast_subscribers{"))
        .count();
    assert_eq!(per_broadcast, 5, "only the top broadcasts have samples");
    let m = samples(&body);
    assert_eq!(m["moq_fanout_broadcasts"], 300.0);
    assert_eq!(m["moq_fanout_broadcasts_not_shown"], 295.0);
    assert!(body.len() < 16 * 1024, "exposition of {} bytes", body.len());
    let (_, json) = http(http_addr, "GET", "/status.json", &[]).await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["status"]["broadcasts"].as_array().unwrap().len(), 5);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_started_over_http_sends_goaway_to_every_session() {
    let dir = std::env::temp_dir().join(format!("moq-fanout-drain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("drain.secret");
    std::fs::write(&secret, "open-sesame\n").unwrap();
    let mut config = with_metrics(config());
    config.listen.webtransport = Some("127.0.0.1:0".parse().unwrap());
    config.metrics.drain_token_file = Some(secret);
    config.relay.next_session_uri = "moqt://next.example:4443".into();
    config.relay.drain_timeout_ms = 5000;
    let relay = relay(config).await;
    let http_addr = relay.metrics_addr().unwrap();
    let client = client();
    let quic = connect(&client, &url(&relay), None).await;
    let wt = wt_connect(&relay).await;
    until("both sessions are attached", || {
        relay.relay().peer_count() == 2
    })
    .await;

    // Refused without the secret, or with a wrong one: nothing happens.
    assert_eq!(http(http_addr, "POST", "/drain", &[]).await.0, 401);
    let wrong = http(
        http_addr,
        "POST",
        "/drain",
        &["Authorization: Bearer open-sesam"],
    )
    .await;
    assert_eq!(wrong.0, 401);
    assert!(!relay.relay().is_shutting_down());
    assert_eq!(http(http_addr, "GET", "/health", &[]).await.0, 200);

    let (status, _) = http(
        http_addr,
        "POST",
        "/drain",
        &["Authorization: Bearer open-sesame"],
    )
    .await;
    assert_eq!(status, 202);
    for session in [&quic, &wt] {
        let uri = within("GOAWAY", session.goaway_received()).await;
        assert_eq!(uri.as_deref(), Some("moqt://next.example:4443"));
    }
    let (status, body) = http(http_addr, "GET", "/health", &[]).await;
    assert_eq!((status, body.as_str()), (503, "draining\n"));
    let (_, body) = http(http_addr, "GET", "/metrics", &[]).await;
    assert_eq!(samples(&body)["moq_fanout_draining"], 1.0);
    let again = http(
        http_addr,
        "POST",
        "/drain",
        &["Authorization: Bearer open-sesame"],
    )
    .await;
    assert_eq!(again.0, 200);
    let _ = std::fs::remove_dir_all(&dir);
    drop((quic, wt));
    relay.shutdown().await;
}

const SECRET: &[u8] = b"an HMAC secret of at least 32 bytes";

/// A JWK file for [`SECRET`], as moq-token writes it (base64url of the JSON).
fn key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwk = format!(
        r#"{{"kty":"oct","alg":"HS256","key_ops":["sign","verify"],"k":"{}","kid":"test"}}"#,
        b64.encode(SECRET)
    );
    let path = dir.join("root.jwk");
    std::fs::write(&path, b64.encode(jwk)).unwrap();
    path
}

fn sign(claims: serde_json::Value, secret: &[u8]) -> String {
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moq_relay_jwts_allow_their_paths_and_bad_ones_close_with_code_2() {
    let dir = std::env::temp_dir().join(format!("moq-fanout-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = config();
    config.listen.webtransport = Some("127.0.0.1:0".parse().unwrap());
    config.auth.jwt_keys = vec![key_file(&dir)];
    let access = std::sync::Arc::new(JwtAuth::from_config(&config.auth).unwrap());
    let relay = RelayServer::start(config, access).await.unwrap();
    let port = relay.webtransport_addr().unwrap().port();
    let wt_url = |jwt: &str| format!("https://localhost:{port}/?jwt={jwt}");
    let wt_client = moq_webtransport::Client::new(moq_webtransport::ServerTrust::Insecure).unwrap();
    let exp = unix_now() + 3600;

    // The publisher's token: publish under demo/alice.
    let alice = sign(
        serde_json::json!({"root": "demo", "put": "alice", "exp": exp}),
        SECRET,
    );
    let broadcast = moq_quinn::Broadcast::new();
    let track = broadcast.create_track("video", 2);
    let router = Router::new();
    router.publish("/demo/alice/cam", broadcast.clone());
    router.publish("/demo/bob/cam", broadcast);
    let _publisher = within(
        "publisher",
        wt_client.connect_with(&wt_url(&alice), Config::default(), Some(router)),
    )
    .await
    .unwrap();
    until("alice's broadcast is known", || {
        relay
            .relay()
            .broadcasts()
            .iter()
            .any(|b| b.path.as_str() == "demo/alice/cam")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !relay
            .relay()
            .broadcasts()
            .iter()
            .any(|b| b.path.as_str() == "demo/bob/cam"),
        "a path outside the token's is not taken"
    );

    // A viewer's token: subscribe under demo; alice's broadcast plays, others are refused.
    let viewer = sign(serde_json::json!({"root": "demo", "get": ""}), SECRET);
    let session = within("viewer", wt_client.connect(&wt_url(&viewer)))
        .await
        .unwrap();
    let mut reader = session
        .subscribe("/demo/alice/cam", "video", ordered())
        .unwrap();
    accepted(&reader).await;
    write_group(&track, 2, 100);
    assert_eq!(read_groups(&mut reader, 1).await.len(), 1);
    let mut outside = session.subscribe("/other/cam", "video", ordered()).unwrap();
    let end = within("a refusal", outside.next_group()).await.unwrap_err();
    assert_eq!(
        end,
        moq_quinn::error::EndReason::PeerReset(code::subscribe::UNAUTHORIZED)
    );

    // Expired, wrongly signed, and no token at all: the session closes with code 0x2.
    let expired = sign(
        serde_json::json!({"get": "", "exp": unix_now() - 10}),
        SECRET,
    );
    let forged = sign(
        serde_json::json!({"get": ""}),
        b"another secret, also 32 bytes long!!",
    );
    for jwt in [expired.as_str(), forged.as_str(), ""] {
        // The close may come as the session is set up, or just after.
        let code = match within("connect", wt_client.connect(&wt_url(jwt))).await {
            Err(moq_webtransport::error::ConnectError::Closed { code, .. }) => code,
            Err(e) => panic!("expected a close with code 0x2, got {e}"),
            Ok(session) => match within("the close", session.closed()).await {
                moq_quinn::error::CloseReason::Peer { code, .. } => code,
                other => panic!("expected a close with code 0x2, got {other:?}"),
            },
        };
        assert_eq!(code, code::session::UNAUTHORIZED, "token {jwt:?}");
    }
    // A token that expires during the session ends it with code 0x2.
    let short = sign(
        serde_json::json!({"get": "", "exp": unix_now() + 2}),
        SECRET,
    );
    let session = within("connect", wt_client.connect(&wt_url(&short)))
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .expect("closed when the token expires");
    assert!(
        matches!(closed, moq_quinn::error::CloseReason::Peer { code, .. } if code == code::session::UNAUTHORIZED)
    );
    let refusals = relay.relay().status(1).refusals;
    assert!(
        refusals
            .iter()
            .any(|(what, why, n)| *what == "connection" && *why == "unauthorized" && *n >= 3)
    );
    let _ = std::fs::remove_dir_all(&dir);
    relay.shutdown().await;
}
