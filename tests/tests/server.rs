//! The library's server as an application holds it: `serve` keeps every session until it
//! ends, and `close` then `wait_idle` reaches the clients with its code and reason at once
//! (not at their idle timeout).

use std::sync::Arc;

use bytes::Bytes;
use moq_quinn::{
    Broadcast, BroadcastPath, Client, Identity, Router, Server, ServerTrust, SubscribeParams,
    error::CloseReason,
};
use moq_tests::within;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_sessions_and_close_reaches_clients_at_once() {
    let identity = Identity::self_signed(&["localhost"]).unwrap();
    let trust = ServerTrust::Pinned(identity.leaf().cloned().unwrap());
    let router = Router::new();
    let broadcast = Broadcast::new();
    let track = broadcast.create_track("clock", 4);
    router.publish("/demo", broadcast);
    let server = Arc::new(
        Server::builder("127.0.0.1:0".parse().unwrap(), identity)
            .router(router)
            .bind()
            .unwrap(),
    );
    let url = format!("moqt://localhost:{}", server.local_addr().unwrap().port());
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve().await }
    });

    // Two clients; each session lives on the server without the application keeping it.
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let client = Client::new(trust.clone()).unwrap();
        let session = within("connect", client.connect(&url)).await.unwrap();
        sessions.push((client, session));
    }
    let mut reader = sessions[1]
        .1
        .subscribe("/demo", "clock", SubscribeParams::default())
        .unwrap();
    while track.subscriber_count() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let group = track.append_group();
    group.write_frame(Bytes::from_static(b"tick"));
    group.finish();
    let mut got = within("a group", reader.next_group())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        within("a frame", got.read_frame()).await.unwrap(),
        Some(Bytes::from_static(b"tick"))
    );

    // Close: every client learns the code and reason well inside its 30 s idle timeout.
    server.close(moq_quinn::code::ErrorCode(0x7), "maintenance");
    within("the close to leave", server.wait_idle()).await;
    for (_, session) in &sessions {
        let reason = within("the client to see the close", session.closed()).await;
        match reason {
            CloseReason::Peer { code, reason } => {
                assert_eq!(code, moq_quinn::code::ErrorCode(0x7), "{reason}");
                assert_eq!(reason, "maintenance");
            }
            other => panic!("{other:?}"),
        }
    }
    let served = within("serve to return", serving).await.unwrap();
    assert_eq!(served, 2);
    // Paths compare with strings in any form.
    assert!(BroadcastPath::new("/demo") == "/demo");
}
