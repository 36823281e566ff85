//! Certificate trust with a private certificate authority made here: a client that trusts
//! the CA connects; one that trusts only the platform's roots is refused with an error naming
//! the problem; an expired leaf and a leaf for another name are refused. Over native QUIC
//! and WebTransport.

use std::time::{Duration, SystemTime};

use moq_quinn::{ConnectionInfo, Identity, ServerTrust};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A private CA: its certificate, and what signs with it.
struct Ca {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca() -> Ca {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "moq-lite-rs test CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap().der().clone();
    Ca {
        cert,
        issuer: Issuer::new(params, key),
    }
}

/// A leaf for `name` signed by `ca`, valid from `from` to `until` (relative to now, in days).
fn leaf(ca: &Ca, name: &str, from: i64, until: i64) -> Identity {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    let day = |d: i64| {
        let now = SystemTime::now();
        let span = Duration::from_secs(d.unsigned_abs() * 86_400);
        if d < 0 { now - span } else { now + span }
    };
    params.not_before = day(from).into();
    params.not_after = day(until).into();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Identity {
        chain: vec![cert.der().clone(), ca.cert.clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// Connects over native QUIC, or WebTransport, to a server presenting `identity`; the
/// error's text if refused.
async fn dial(
    identity: Identity,
    trust: ServerTrust,
    over_webtransport: bool,
) -> Result<ConnectionInfo, String> {
    let addr = "127.0.0.1:0".parse().unwrap();
    let (url, accept) = if over_webtransport {
        let server = moq_webtransport::Server::builder(addr, identity)
            .bind()
            .unwrap();
        let url = format!("https://localhost:{}/", server.local_addr().unwrap().port());
        (url, hold(async move { (server.accept().await, server) }))
    } else {
        let server = moq_quinn::Server::builder(addr, identity).bind().unwrap();
        let url = format!("moqt://localhost:{}", server.local_addr().unwrap().port());
        (url, hold(async move { (server.accept().await, server) }))
    };
    let dialer = moq_dial::Dialer::new(trust).expect("dialer");
    let result = tokio::time::timeout(Duration::from_secs(10), dialer.connect(&url))
        .await
        .expect("the handshake ends in time");
    accept.abort();
    result
        .map(|s| s.connection_info().clone())
        .map_err(|e| e.to_string())
}

/// Runs a server's accept, holding what it accepted until aborted (after the client's
/// connect has returned).
fn hold<T: Send + 'static>(
    accept: impl std::future::Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _accepted = accept.await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
}

/// Whether an error's text names `problem` (in rustls' words, spaced or CamelCase).
fn names(err: &str, problem: &str) -> bool {
    let flat = |s: &str| s.to_lowercase().replace(' ', "");
    flat(err).contains(&flat(problem))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_is_trusted_when_given_and_refused_otherwise() {
    let ca = ca();
    let with_ca = || ServerTrust::platform_and([ca.cert.clone()]);
    for over_webtransport in [false, true] {
        let dial = |identity, trust| dial(identity, trust, over_webtransport);
        let kind = if over_webtransport {
            "webtransport"
        } else {
            "quic"
        };
        // Given the CA: connects, and reports what was negotiated, nothing made up.
        let identity = leaf(&ca, "localhost", -1, 30);
        let chain: Vec<&[u8]> = identity.chain.iter().map(|c| c.as_ref()).collect();
        let info = dial(identity.clone(), with_ca())
            .await
            .unwrap_or_else(|e| panic!("{kind}: with the CA: {e}"));
        let got: Vec<&[u8]> = info.peer_certificates.iter().map(|c| c.as_ref()).collect();
        assert_eq!(got, chain, "{kind}: the server's chain, leaf first");
        assert_eq!(info.server_name.as_deref(), Some("localhost"), "{kind}");
        let alpn = if over_webtransport {
            "h3"
        } else {
            "moq-lite-04"
        };
        assert_eq!(info.alpn.as_deref(), Some(alpn), "{kind}");
        assert_eq!(info.transport, kind, "{kind}");
        // The platform's roots only: refused, and the error says why.
        let err = dial(leaf(&ca, "localhost", -1, 30), ServerTrust::platform())
            .await
            .expect_err("an unknown CA is refused");
        assert!(names(&err, "unknown issuer"), "{kind}: {err}");
        // An expired leaf, even from the trusted CA.
        let err = dial(leaf(&ca, "localhost", -30, -1), with_ca())
            .await
            .expect_err("an expired certificate is refused");
        assert!(names(&err, "expired"), "{kind}: {err}");
        // A leaf for another name.
        let err = dial(leaf(&ca, "example.com", -1, 30), with_ca())
            .await
            .expect_err("a certificate for another name is refused");
        assert!(names(&err, "not valid for name"), "{kind}: {err}");
    }
}
