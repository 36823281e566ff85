//! TLS for native QUIC: self-signed certificates for tests and demos, and client
//! verification that trusts exactly one certificate (or, explicitly, any).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A certificate chain and its private key, for a server.
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
    /// A self-signed ECDSA P-256 certificate for `names`, valid for 14 days from now (short
    /// enough for browsers' `serverCertificateHashes`).
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
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }
}

/// How a client checks the server's certificate.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ServerTrust {
    /// Trust exactly this certificate (compared byte for byte), whatever its name and
    /// dates: for self-signed test and demo servers.
    Pinned(CertificateDer<'static>),
    /// Trust any certificate. For interop runs against servers with throwaway certificates
    /// only; never in production.
    Insecure,
}

/// The ring provider all our TLS uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts the pinned certificate, or any with [`ServerTrust::Insecure`]; handshake
/// signatures are always verified.
#[derive(Debug)]
pub(crate) struct Verifier {
    pinned: Option<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Verifier {
    pub(crate) fn new(trust: &ServerTrust) -> Arc<Self> {
        Arc::new(Self {
            pinned: match trust {
                ServerTrust::Pinned(cert) => Some(cert.clone()),
                ServerTrust::Insecure => None,
            },
            algorithms: provider().signature_verification_algorithms,
        })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pinned {
            Some(pinned) if pinned.as_ref() != end_entity.as_ref() => Err(
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            ),
            _ => Ok(ServerCertVerified::assertion()),
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
