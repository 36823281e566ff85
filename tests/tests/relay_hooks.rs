//! The hooks a relay builds on: a router fallback for unpublished paths, a track writer's
//! end awaited while the writer is stored elsewhere, and a per-connection router chosen at
//! accept time (`Server::incoming`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use moq_quinn::{
    Client, FetchRequest, Identity, Router, Server, ServerTrust, SubscribeParams, code,
    error::EndReason, publish::FetchWriter, publish::TrackHandler, publish::TrackRequest,
    publish::TrackWriter,
};
use moq_tests::within;

/// Refuses every subscription with Subscribe code 0x4 and every fetch with Fetch code 0x1.
struct Refuse;

impl TrackHandler for Refuse {
    fn serve_track(&self, _: TrackRequest, writer: TrackWriter) {
        writer.reject(code::subscribe::UNAUTHORIZED);
    }

    fn serve_fetch(&self, _: FetchRequest, writer: FetchWriter) {
        writer.reject(code::fetch::TIMEOUT);
    }
}

async fn server_with(router_for: impl Fn(usize) -> Router + Send + 'static) -> (u16, Client) {
    let identity = Identity::self_signed(&["localhost"]).expect("certificate");
    let cert = identity.leaf().cloned().expect("leaf");
    let server = Server::builder("127.0.0.1:0".parse().unwrap(), identity)
        .bind()
        .expect("bind");
    let port = server.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut sessions = Vec::new();
        let mut n = 0;
        while let Some(incoming) = server.incoming().await {
            let router = router_for(n);
            n += 1;
            if let Ok(session) = incoming.accept(move |_| Some(router)).await {
                sessions.push(session);
            }
        }
    });
    let client = Client::new(ServerTrust::Pinned(cert)).expect("client");
    (port, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_answers_for_unpublished_paths() {
    let (port, client) = server_with(|_| {
        let router = Router::new();
        router.set_fallback(Arc::new(Refuse));
        router
    })
    .await;
    let url = format!("moqt://localhost:{port}");
    let session = within("connect", client.connect(&url))
        .await
        .expect("connect");

    let mut track = session
        .subscribe("/nowhere", "t", SubscribeParams::default())
        .expect("subscribe");
    let end = within("refusal", track.next()).await.expect_err("refused");
    assert_eq!(end, EndReason::PeerReset(code::subscribe::UNAUTHORIZED));

    let mut fetch = session
        .fetch(FetchRequest::new(
            "/nowhere",
            "t",
            moq_quinn::GroupSequence(1),
        ))
        .expect("fetch");
    let end = within("fetch refusal", fetch.read_frame())
        .await
        .expect_err("refused");
    assert_eq!(end.code(), Some(code::fetch::TIMEOUT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_gets_its_own_router_and_closed_owned_fires_on_unsubscribe() {
    let ended: Arc<Mutex<Vec<moq_quinn::error::EndReason>>> = Arc::default();
    let kept: Arc<Mutex<Vec<TrackWriter>>> = Arc::default();
    let (ended2, kept2) = (ended.clone(), kept.clone());
    let (port, client) = server_with(move |n| {
        let router = Router::new();
        if n == 0 {
            let (ended, kept) = (ended2.clone(), kept2.clone());
            router.publish("/first", move |_: TrackRequest, mut writer: TrackWriter| {
                writer.accept(Default::default()).expect("accept");
                let end = writer.closed_owned();
                kept.lock().unwrap().push(writer);
                let ended = ended.clone();
                tokio::spawn(async move {
                    let reason = end.await;
                    ended.lock().unwrap().push(reason);
                });
            });
        }
        router
    })
    .await;
    let url = format!("moqt://localhost:{port}");
    let first = within("connect", client.connect(&url))
        .await
        .expect("connect");
    let second = within("connect", client.connect(&url))
        .await
        .expect("connect");

    // Only the first connection's router publishes /first.
    let mut refused = second
        .subscribe("/first", "t", SubscribeParams::default())
        .expect("subscribe");
    let end = within("refusal", refused.next())
        .await
        .expect_err("refused");
    assert_eq!(end, EndReason::PeerReset(code::subscribe::NOT_FOUND));

    let track = first
        .subscribe("/first", "t", SubscribeParams::default())
        .expect("subscribe");
    within("accepted", async {
        while kept.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(ended.lock().unwrap().is_empty());
    drop(track);
    within("the writer's end", async {
        while ended.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(kept.lock().unwrap()[0].is_closed());
}
