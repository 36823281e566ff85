//! The server's side of the sub-protocol negotiation, seen from a plain wtransport client
//! that sends whatever `wt-available-protocols` a test wants.

use moq_webtransport::{Identity, Server};

async fn server() -> (Server, String, [u8; 32]) {
    let identity = Identity::self_signed(&["localhost"]).expect("certificate");
    let hash = identity.certificate_hash().expect("hash");
    let server = Server::builder("127.0.0.1:0".parse().expect("addr"), identity)
        .bind()
        .expect("bind");
    let url = format!(
        "https://localhost:{}/moq",
        server.local_addr().expect("addr").port()
    );
    (server, url, hash)
}

/// Dials `url` offering `protocols` (no header when `None`).
async fn dial(
    url: &str,
    hash: [u8; 32],
    protocols: Option<&str>,
) -> Result<wtransport::Connection, wtransport::error::ConnectingError> {
    let config = wtransport::ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(hash)])
        .build();
    let endpoint = wtransport::Endpoint::client(config).expect("client");
    let mut options = wtransport::endpoint::ConnectOptions::builder(url);
    if let Some(protocols) = protocols {
        options = options.add_header("wt-available-protocols", protocols);
    }
    endpoint.connect(options.build()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offered_absent_and_refused() {
    let (server, url, hash) = server().await;
    let server = std::sync::Arc::new(server);
    let within = |f| tokio::time::timeout(std::time::Duration::from_secs(10), f);

    // Offered among others: accepted, moq-lite-04 selected.
    let accept = tokio::spawn({
        let server = server.clone();
        async move { server.accept().await }
    });
    let conn = within(dial(&url, hash, Some(r#""moq-lite-03", "moq-lite-04""#)))
        .await
        .expect("in time");
    assert!(conn.is_ok(), "{conn:?}");
    let session = accept
        .await
        .expect("task")
        .expect("open")
        .expect("accepted");
    assert_eq!(
        session.connection_info().version.as_deref(),
        Some("moq-lite-04")
    );

    // No list: accepted, moq-lite-04 assumed.
    let accept = tokio::spawn({
        let server = server.clone();
        async move { server.accept().await }
    });
    let conn = within(dial(&url, hash, None)).await.expect("in time");
    assert!(conn.is_ok(), "{conn:?}");
    assert!(accept.await.expect("task").expect("open").is_ok());

    // A list without moq-lite-04: refused with HTTP 400 (wtransport reports any non-2xx as
    // SessionRejected).
    let accept = tokio::spawn({
        let server = server.clone();
        async move { server.accept().await }
    });
    let conn = within(dial(&url, hash, Some(r#""moq-lite-03", "moqt-16""#)))
        .await
        .expect("in time");
    assert!(
        matches!(
            conn,
            Err(wtransport::error::ConnectingError::SessionRejected)
        ),
        "{conn:?}"
    );
    match accept.await.expect("task").expect("open") {
        Err(moq_webtransport::error::ConnectError::Protocol(offered)) => {
            assert_eq!(offered, vec!["moq-lite-03", "moqt-16"]);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// An unknown stream type is reset with code 0x1 (spec §3): on the wire it is the
/// WebTransport-mapped 0x52e4a40fa8dc, as a browser expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_codes_are_mapped_on_the_wire() {
    let (server, url, hash) = server().await;
    let accept = tokio::spawn(async move {
        let session = server.accept().await.expect("open").expect("accepted");
        (server, session)
    });
    let conn = dial(&url, hash, Some(r#""moq-lite-04""#))
        .await
        .expect("connect");
    let _server = accept.await.expect("task");
    let (mut send, mut recv) = conn.open_bi().await.expect("open").await.expect("opened");
    send.write_all(&[0x3f]).await.expect("write the type");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), recv.read(&mut buf))
        .await
        .expect("in time");
    match read {
        Err(wtransport::error::StreamReadError::Reset(code)) => {
            assert_eq!(code.into_inner(), 0x52e4a40fa8dc);
            assert_eq!(
                moq_webtransport::transport::code_mapping::from_http3(code.into_inner()),
                Some(moq_webtransport::code::ErrorCode(1))
            );
        }
        other => panic!("expected a reset, got {other:?}"),
    }
}
