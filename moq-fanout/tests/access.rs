//! Access control with the built-in static-token policy: tokens travel in the WebTransport
//! URL (`?token=`); native QUIC carries none, so it is anonymous.

mod common;

use std::time::Duration;

use common::*;
use moq_fanout::{Access, ConnectionRequest, RelayServer, TokenConfig};
use moq_quinn::{Broadcast, Config, FetchRequest, Router, code, error::EndReason};

fn wt_url(relay: &RelayServer, token: Option<&str>) -> String {
    let port = relay.webtransport_addr().unwrap().port();
    match token {
        Some(t) => format!("https://localhost:{port}/relay?token={t}"),
        None => format!("https://localhost:{port}/relay"),
    }
}

/// A WebTransport session, with its client endpoint (kept alive alongside).
async fn wt_connect(
    url: &str,
    router: Option<Router>,
) -> (moq_quinn::Session, moq_webtransport::Client) {
    let client =
        moq_webtransport::Client::new(moq_webtransport::ServerTrust::Insecure).expect("client");
    let session = within(
        "WebTransport connect",
        client.connect_with(url, Config::default(), router),
    )
    .await
    .expect("connect");
    (session, client)
}

fn token(token: &str, publish: &[&str], subscribe: &[&str]) -> TokenConfig {
    let mut t = TokenConfig::default();
    t.token = token.to_owned();
    t.publish = publish.iter().map(|s| s.to_string()).collect();
    t.subscribe = subscribe.iter().map(|s| s.to_string()).collect();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_limit_what_a_connection_may_publish_and_subscribe() {
    let mut config = config();
    config.listen.webtransport = Some("127.0.0.1:0".parse().unwrap());
    config.auth.tokens = vec![token("pub", &["/"], &[]), token("ta", &["a/"], &["a/"])];
    let relay = relay(config).await;

    // A publisher with the "pub" token publishes /a/x and /b/x.
    let broadcast = Broadcast::new();
    let track = broadcast.create_track("video", 2);
    let router = Router::new();
    router.publish("/a/x", broadcast.clone());
    router.publish("/b/x", broadcast.clone());
    let _publisher = wt_connect(&wt_url(&relay, Some("pub")), Some(router)).await;
    until("the relay has both broadcasts", || {
        relay.relay().broadcasts().len() == 2
    })
    .await;

    // No token (native QUIC is always anonymous here): refused with Subscribe 0x4, and no
    // announcement at all.
    let anonymous = connect(&client(), &url(&relay), None).await;
    let mut nothing = anonymous.announced("/").unwrap();
    let mut refused = anonymous.subscribe("/a/x", "video", ordered()).unwrap();
    assert_eq!(
        within("refusal", refused.next()).await.unwrap_err(),
        EndReason::PeerReset(code::subscribe::UNAUTHORIZED)
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), nothing.next())
            .await
            .is_err(),
        "an anonymous subscriber sees no broadcast"
    );
    // Nor over WebTransport without a token, nor with an unknown one.
    for url in [wt_url(&relay, None), wt_url(&relay, Some("nope"))] {
        let (session, _client) = wt_connect(&url, None).await;
        let mut refused = session.subscribe("/a/x", "video", ordered()).unwrap();
        assert_eq!(
            within("refusal", refused.next()).await.unwrap_err(),
            EndReason::PeerReset(code::subscribe::UNAUTHORIZED)
        );
    }

    // The "ta" token: /a/ only. It hears of /a/x alone, reads it, and is refused /b/x.
    let (ta, _ta_client) = wt_connect(&wt_url(&relay, Some("ta")), None).await;
    let mut announcements = ta.announced("/").unwrap();
    let first = within("an announcement", announcements.next())
        .await
        .unwrap();
    assert_eq!(first.path().as_str(), "a/x");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), announcements.next())
            .await
            .is_err(),
        "/b/x is not announced to it"
    );
    let mut a = ta.subscribe("/a/x", "video", ordered()).unwrap();
    accepted(&a).await;
    let mut b = ta.subscribe("/b/x", "video", ordered()).unwrap();
    assert_eq!(
        within("refusal", b.next()).await.unwrap_err(),
        EndReason::PeerReset(code::subscribe::UNAUTHORIZED)
    );
    write_group(&track, 3, 10);
    assert_eq!(read_groups(&mut a, 1).await, expected(1, 1, 3, 10));
    // Fetch outside its prefixes: refused (the Fetch stream's only refusal code, 0x0).
    let mut fetch = ta
        .fetch(FetchRequest::new("/b/x", "video", seq(1)))
        .unwrap();
    assert_eq!(
        within("fetch refusal", fetch.read_all()).await.unwrap_err(),
        EndReason::PeerReset(code::fetch::INTERNAL)
    );

    // Publishing: "ta" may publish under /a/ only. Its /b/y is refused (the relay resets
    // the announce stream with Announce code 0x4 and listens again under /a/ only), its
    // /a/y gets through.
    let own = Broadcast::new();
    own.create_track("video", 1);
    let router = Router::new();
    router.publish("/b/y", own.clone());
    router.publish("/a/y", own.clone());
    let _ta_publisher = wt_connect(&wt_url(&relay, Some("ta")), Some(router)).await;
    until("/a/y is relayed", || {
        relay
            .relay()
            .broadcasts()
            .iter()
            .any(|b| b.path.as_str() == "a/y")
    })
    .await;
    // An anonymous publisher may publish nothing.
    let router = Router::new();
    router.publish("/a/z", own.clone());
    let _anonymous_publisher = connect(&client(), &url(&relay), Some(router)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paths: Vec<String> = relay
        .relay()
        .broadcasts()
        .iter()
        .map(|b| b.path.to_string())
        .collect();
    assert_eq!(paths, ["/a/x", "/a/y", "/b/x"]);
}

#[test]
fn the_hook_sees_the_connection() {
    // A custom policy: by peer address and URL path.
    let policy = |request: &ConnectionRequest| match (request.remote, request.path.as_deref()) {
        (Some(addr), Some("/admin")) if addr.ip().is_loopback() => Access::all(),
        _ => Access::new(&[] as &[&str], &["public/"]),
    };
    let hook: &dyn moq_fanout::AccessControl = &policy;
    let mut local = ConnectionRequest::new("webtransport").with_url_path("/admin?token=x");
    local.remote = Some("127.0.0.1:5000".parse().unwrap());
    assert_eq!(hook.check(&local), Access::all());
    let mut remote = local.clone();
    remote.remote = Some("192.0.2.1:5000".parse().unwrap());
    let access = hook.check(&remote);
    assert!(access.may_subscribe(&"/public/a".into()));
    assert!(!access.may_publish(&"/public/a".into()));
}
