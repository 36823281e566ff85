//! TLS for QUIC and WebTransport (both adapters): self-signed certificates
//! that browsers also accept through `serverCertificateHashes`; client verification against
//! the platform's certificate authorities (the default, with extra CAs if given), or of
//! exactly one certificate (by its DER or its SHA-256), or explicitly none; and the TLS 1.3
//! ring configurations both adapters build on.
//!
//! The platform's roots come from the operating system's store (`rustls-native-certs`);
//! where it has none (a minimal container), Mozilla's root program (`webpki-roots`) stands
//! in. Chains are checked by rustls' own WebPKI verifier, so names, dates and usages are
//! checked as any rustls client checks them. We chose this over `rustls-platform-verifier`
//! for the same answer on every platform (no OS-specific revocation fetches during a
//! handshake) and because it works in containers without a CA bundle.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A certificate chain and its private key, for a server.
///
/// ```
/// let identity = moq_tls::Identity::self_signed(&["localhost"]).unwrap();
/// assert_eq!(identity.chain.len(), 1);
/// ```
#[derive(Debug)]
pub struct Identity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// Errors making or loading a certificate.
///
/// ```
/// match moq_tls::Identity::from_pem_files("/nonexistent.crt", "/nonexistent.key") {
///     Err(moq_tls::CertError::Pem { path, .. }) => assert_eq!(path, "/nonexistent.crt"),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The certificate could not be generated.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file could not be read or parsed.
    #[error("invalid PEM in {path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

impl Identity {
    /// A self-signed ECDSA P-256 certificate for `names`, valid from an hour ago for 13 days
    /// from now: within the 14 days that browsers allow for `serverCertificateHashes`.
    ///
    /// ```
    /// let identity = moq_tls::Identity::self_signed(&["localhost", "127.0.0.1"]).unwrap();
    /// assert!(identity.leaf().is_some());
    /// ```
    pub fn self_signed(names: &[&str]) -> Result<Self, CertError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )?;
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(3600)).into();
        params.not_after = (now + std::time::Duration::from_secs(13 * 24 * 3600)).into();
        let cert = params.self_signed(&key)?;
        Ok(Self {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    /// Loads a PEM certificate chain and private key from files.
    ///
    /// ```no_run
    /// let identity = moq_tls::Identity::from_pem_files("relay.crt", "relay.key")?;
    /// # Ok::<(), moq_tls::CertError>(())
    /// ```
    pub fn from_pem_files(cert: &str, key: &str) -> Result<Self, CertError> {
        use rustls::pki_types::pem::PemObject;
        let err = |path: &str, e: &dyn std::fmt::Display| CertError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| err(cert, &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(cert, &e))?;
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| err(key, &e))?;
        Ok(Self {
            chain,
            key: key_der,
        })
    }

    /// The leaf certificate, for a client to pin.
    ///
    /// ```
    /// let identity = moq_tls::Identity::self_signed(&["localhost"]).unwrap();
    /// let pinned = moq_tls::ServerTrust::Pinned(identity.leaf().unwrap().clone());
    /// ```
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }

    /// The SHA-256 of the leaf certificate's DER: the value a browser passes in
    /// `serverCertificateHashes` (`{ algorithm: "sha-256", value }`).
    ///
    /// ```
    /// let identity = moq_tls::Identity::self_signed(&["localhost"]).unwrap();
    /// let hash = identity.certificate_hash().unwrap();
    /// assert_eq!(hash, moq_tls::certificate_hash(identity.leaf().unwrap()));
    /// ```
    pub fn certificate_hash(&self) -> Option<[u8; 32]> {
        self.leaf().map(|cert| certificate_hash(cert))
    }
}

/// The SHA-256 of a certificate's DER encoding.
///
/// ```
/// let identity = moq_tls::Identity::self_signed(&["localhost"]).unwrap();
/// let hex: String = moq_tls::certificate_hash(identity.leaf().unwrap())
///     .iter()
///     .map(|b| format!("{b:02x}"))
///     .collect();
/// assert_eq!(hex.len(), 64);
/// ```
pub fn certificate_hash(cert: &CertificateDer<'_>) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(cert.as_ref()).into()
}

/// How a client checks the server's certificate.
///
/// ```
/// use moq_tls::ServerTrust;
/// let public = ServerTrust::platform();
/// let pinned_by_hash = ServerTrust::from_hash_hex(&"ab".repeat(32)).unwrap();
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ServerTrust {
    /// A chain to a trusted certificate authority, valid now and for the server's name: the
    /// platform's roots plus these extra CA certificates (for a private CA). The default
    /// (no extra CAs), as for any TLS client on the internet.
    Roots(Vec<CertificateDer<'static>>),
    /// Trust exactly this certificate (compared byte for byte), whatever its name and
    /// dates: for self-signed test and demo servers.
    Pinned(CertificateDer<'static>),
    /// Trust a certificate whose DER has this SHA-256, as a browser's
    /// `serverCertificateHashes` does (without its validity-period checks).
    Hash([u8; 32]),
    /// Trust any certificate. For interop runs against servers with throwaway certificates
    /// only; never in production.
    Insecure,
}

impl Default for ServerTrust {
    fn default() -> Self {
        Self::Roots(Vec::new())
    }
}

impl ServerTrust {
    /// The platform's certificate authorities (the default).
    ///
    /// ```
    /// let trust = moq_tls::ServerTrust::platform();
    /// ```
    pub fn platform() -> Self {
        Self::default()
    }

    /// The platform's certificate authorities and these (a private CA, say).
    ///
    /// ```no_run
    /// # fn demo(private_ca: rustls::pki_types::CertificateDer<'static>) {
    /// let trust = moq_tls::ServerTrust::platform_and([private_ca]);
    /// # }
    /// ```
    pub fn platform_and(cas: impl IntoIterator<Item = CertificateDer<'static>>) -> Self {
        Self::Roots(cas.into_iter().collect())
    }

    /// [`ServerTrust::Hash`] from the SHA-256 in hex, as servers print it (64 digits;
    /// colons between bytes allowed).
    ///
    /// ```
    /// let trust = moq_tls::ServerTrust::from_hash_hex(&"ab".repeat(32))?;
    /// assert!(matches!(trust, moq_tls::ServerTrust::Hash(h) if h == [0xab; 32]));
    /// # Ok::<(), moq_tls::HashError>(())
    /// ```
    pub fn from_hash_hex(text: &str) -> Result<Self, HashError> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(text.trim().replace(':', ""), &mut hash)?;
        Ok(Self::Hash(hash))
    }
}

/// A certificate hash that is not 64 hex digits.
///
/// ```
/// assert!(moq_tls::ServerTrust::from_hash_hex("not hex").is_err());
/// ```
#[derive(Debug, thiserror::Error)]
#[error("a certificate hash is the SHA-256 in 64 hex digits: {0}")]
pub struct HashError(#[from] hex::FromHexError);

/// The platform's trusted roots, loaded once: the operating system's store, or Mozilla's
/// roots where it has none.
fn platform_roots() -> &'static rustls::RootCertStore {
    static ROOTS: std::sync::OnceLock<rustls::RootCertStore> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        roots
    })
}

/// A QUIC client crypto config: TLS 1.3 with ring, checking the server with `trust`,
/// offering the ALPN token `alpn`.
///
/// ```
/// let tls = moq_tls::client_crypto(&moq_tls::ServerTrust::platform(), b"moq-lite-04").unwrap();
/// let shared = std::sync::Arc::new(tls); // what quinn::ClientConfig::new takes
/// ```
pub fn client_crypto(
    trust: &ServerTrust,
    alpn: &[u8],
) -> Result<quinn_proto::crypto::rustls::QuicClientConfig, rustls::Error> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Verifier::new(trust)?)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| rustls::Error::General(e.to_string()))
}

/// A QUIC server crypto config: TLS 1.3 with ring, presenting `identity`, selecting the
/// ALPN token `alpn`.
///
/// ```
/// let identity = moq_tls::Identity::self_signed(&["localhost"]).unwrap();
/// let tls = moq_tls::server_crypto(identity, b"moq-lite-04").unwrap();
/// ```
pub fn server_crypto(
    identity: Identity,
    alpn: &[u8],
) -> Result<quinn_proto::crypto::rustls::QuicServerConfig, rustls::Error> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    quinn_proto::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| rustls::Error::General(e.to_string()))
}

/// The ring provider all our TLS uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks the server as [`ServerTrust`] says: a CA chain through rustls' WebPKI verifier,
/// the pinned certificate, or any with [`ServerTrust::Insecure`]; handshake signatures are
/// always verified.
#[derive(Debug)]
pub(crate) struct Verifier {
    trust: ServerTrust,
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Verifier {
    pub(crate) fn new(trust: &ServerTrust) -> Result<Arc<Self>, rustls::Error> {
        let webpki = match trust {
            ServerTrust::Roots(extra) => {
                let mut roots = platform_roots().clone();
                for ca in extra {
                    roots.add(ca.clone())?;
                }
                let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
                Some(verifier)
            }
            _ => None,
        };
        Ok(Arc::new(Self {
            trust: trust.clone(),
            webpki,
            algorithms: provider().signature_verification_algorithms,
        }))
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(webpki) = &self.webpki {
            return webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        }
        let trusted = match &self.trust {
            ServerTrust::Pinned(pinned) => pinned.as_ref() == end_entity.as_ref(),
            ServerTrust::Hash(hash) => certificate_hash(end_entity) == *hash,
            ServerTrust::Insecure => true,
            ServerTrust::Roots(_) => false,
        };
        match trusted {
            true => Ok(ServerCertVerified::assertion()),
            false => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_the_der() {
        // SHA-256("abc"), FIPS 180-2.
        use sha2::Digest;
        assert_eq!(
            <[u8; 32]>::from(sha2::Sha256::digest(b"abc")),
            [
                0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
                0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
                0xf2, 0x00, 0x15, 0xad
            ]
        );
        let identity = Identity::self_signed(&["localhost"]).unwrap();
        let leaf = identity.leaf().unwrap();
        assert_eq!(identity.certificate_hash(), Some(certificate_hash(leaf)));
    }
}
