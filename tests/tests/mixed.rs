//! One publisher, two subscribers on different transports: a server that listens on native
//! QUIC and on WebTransport (two UDP ports) with one router; a quinn client and a
//! wtransport client subscribe to the same track and each receives every frame in order.

use std::time::Duration;

use bytes::Bytes;
use moq_quinn::{Broadcast, GroupSequence, Router, SubscribeParams};
use moq_tests::within;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_and_webtransport_subscribers_get_every_frame() {
    let router = Router::new();
    let broadcast = Broadcast::new();
    let track = broadcast.create_track("seconds", 8);
    router.publish("/clock", broadcast);

    // One certificate for both listeners.
    let quic_identity = moq_quinn::Identity::self_signed(&["localhost"]).expect("certificate");
    let cert = quic_identity.leaf().cloned().expect("leaf");
    let wt_identity = moq_webtransport::Identity {
        chain: quic_identity.chain.clone(),
        key: quic_identity.key.clone_key(),
    };
    let any = "127.0.0.1:0".parse().expect("addr");
    let quic_server = moq_quinn::Server::builder(any, quic_identity)
        .router(router.clone())
        .bind()
        .expect("bind quic");
    let wt_server = moq_webtransport::Server::builder(any, wt_identity)
        .router(router.clone())
        .bind()
        .expect("bind webtransport");
    let quic_url = format!(
        "moqt://localhost:{}",
        quic_server.local_addr().expect("addr").port()
    );
    let wt_url = format!(
        "https://localhost:{}/clock",
        wt_server.local_addr().expect("addr").port()
    );
    let servers = tokio::spawn(async move {
        let a = quic_server
            .accept()
            .await
            .expect("quic")
            .expect("quic handshake");
        let b = wt_server.accept().await.expect("wt").expect("wt handshake");
        assert_eq!(a.connection_info().transport, "quic");
        let info = b.connection_info();
        assert_eq!(info.transport, "webtransport");
        assert_eq!(info.alpn.as_deref(), Some("h3"));
        assert_eq!(info.version.as_deref(), Some("moq-lite-04"));
        assert_eq!(info.path.as_deref(), Some("/clock"));
        (quic_server, wt_server, a, b)
    });

    let quic_client =
        moq_quinn::Client::new(moq_quinn::ServerTrust::Pinned(cert.clone())).expect("quic client");
    let quic = within("quic connect", quic_client.connect(&quic_url))
        .await
        .expect("quic session");
    let wt_client =
        moq_webtransport::Client::new(moq_webtransport::ServerTrust::Pinned(cert)).expect("client");
    let wt = within("wt connect", wt_client.connect(&wt_url))
        .await
        .expect("wt session");
    let _servers = within("accept", servers).await.expect("accept task");

    let mut readers = [&quic, &wt].map(|s| {
        s.subscribe("clock", "seconds", SubscribeParams::default())
            .expect("subscribe")
    });
    within("both subscribers", async {
        while track.subscriber_count() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    const GROUPS: u64 = 5;
    const FRAMES: u64 = 4;
    let publisher = {
        let track = track.clone();
        tokio::spawn(async move {
            for g in 0..GROUPS {
                let group = track.append_group();
                for f in 0..FRAMES {
                    group.write_frame(Bytes::from(format!("{}", g * FRAMES + f)));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                group.finish();
            }
        })
    };
    for (reader, name) in readers.iter_mut().zip(["quic", "webtransport"]) {
        let mut groups = Vec::new();
        while groups.len() < GROUPS as usize {
            let mut group = within("group", reader.next_group())
                .await
                .expect("track open")
                .expect("a group");
            let frames = within("frames", group.read_all()).await.expect("frames");
            groups.push((group.sequence(), frames));
        }
        groups.sort_by_key(|(s, _)| *s);
        let mut expect = 0u64;
        for (i, (seq, frames)) in groups.iter().enumerate() {
            assert_eq!(*seq, GroupSequence(i as u64 + 1), "{name}: group numbers");
            for frame in frames {
                assert_eq!(
                    frame,
                    &Bytes::from(expect.to_string()),
                    "{name}: frame order"
                );
                expect += 1;
            }
        }
        assert_eq!(expect, GROUPS * FRAMES, "{name}: every frame");
    }
    publisher.await.expect("publisher");
    assert!(wt.stats().rtt.is_some() && wt.stats().bytes_received > 0);
}
