//! Our WebTransport server's HTTP/3 SETTINGS, read off the wire by a bare HTTP/3 client:
//! what draft-ietf-webtrans-http3-15 asks of a server, and the older setting that clients
//! from before it look for.

use std::collections::HashMap;
use std::time::Duration;

use moq_webtransport::{Identity, QuicOptions, Server, ServerTrust};

/// SETTINGS_WT_ENABLED (draft-15).
const WT_ENABLED: u64 = 0x2c7c_f000;
/// SETTINGS_ENABLE_WEBTRANSPORT (before draft-15).
const ENABLE_WEBTRANSPORT: u64 = 0x2b60_3742;
/// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 9220).
const ENABLE_CONNECT_PROTOCOL: u64 = 0x08;
/// SETTINGS_H3_DATAGRAM (RFC 9297).
const H3_DATAGRAM: u64 = 0x33;

/// A QUIC varint at the front of `buf`: its value and length, or `None` if incomplete.
fn varint(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    if buf.len() < len {
        return None;
    }
    let mut value = u64::from(first & 0x3f);
    for byte in &buf[1..len] {
        value = (value << 8) | u64::from(*byte);
    }
    Some((value, len))
}

/// The SETTINGS frame at the front of a control stream's bytes (after its type, 0x00).
fn settings(buf: &[u8]) -> Option<HashMap<u64, u64>> {
    let (kind, a) = varint(buf)?;
    assert_eq!(kind, 0x04, "the control stream starts with SETTINGS");
    let (len, b) = varint(&buf[a..])?;
    let payload = buf.get(a + b..a + b + usize::try_from(len).ok()?)?;
    let mut out = HashMap::new();
    let mut at = 0;
    while at < payload.len() {
        let (id, n) = varint(&payload[at..]).expect("a setting id");
        at += n;
        let (value, n) = varint(&payload[at..]).expect("a setting value");
        at += n;
        out.insert(id, value);
    }
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_announces_webtransport_as_draft_15_asks_and_as_before() {
    let identity = Identity::self_signed(&["localhost"]).expect("certificate");
    let server = Server::builder("127.0.0.1:0".parse().unwrap(), identity)
        .bind()
        .expect("bind");
    let addr = server.local_addr().unwrap();
    let accepting = tokio::spawn(async move {
        let _ = server.accept().await;
        server
    });

    // A bare HTTP/3 connection: QUIC with ALPN h3, nothing sent.
    let config = moq_quic::client_config(&ServerTrust::Insecure, b"h3", &QuicOptions::default())
        .expect("client config");
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("endpoint");
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        endpoint.connect_with(config, addr, "localhost").unwrap(),
    )
    .await
    .expect("in time")
    .expect("QUIC connects");

    // The server's control stream: the unidirectional stream of type 0x00.
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut recv = conn.accept_uni().await.expect("a server stream");
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            loop {
                let n = recv
                    .read(&mut chunk)
                    .await
                    .expect("read")
                    .expect("the control stream stays open");
                buf.extend_from_slice(&chunk[..n]);
                let Some((kind, len)) = varint(&buf) else {
                    continue;
                };
                if kind != 0x00 {
                    break;
                }
                if let Some(settings) = settings(&buf[len..]) {
                    return settings;
                }
            }
        }
    })
    .await
    .expect("SETTINGS within 10 s");

    assert_eq!(found.get(&WT_ENABLED), Some(&1), "{found:x?}");
    assert_eq!(found.get(&ENABLE_WEBTRANSPORT), Some(&1), "{found:x?}");
    assert_eq!(found.get(&ENABLE_CONNECT_PROTOCOL), Some(&1), "{found:x?}");
    assert_eq!(found.get(&H3_DATAGRAM), Some(&1), "{found:x?}");
    // The max_datagram_frame_size transport parameter, > 0.
    assert!(
        conn.max_datagram_size().is_some_and(|size| size > 0),
        "QUIC datagrams enabled"
    );
    conn.close(0u32.into(), b"done");
    accepting.abort();
}
