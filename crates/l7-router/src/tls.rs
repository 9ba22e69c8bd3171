//! TLS termination for https listeners: certificates loaded from PEM at validation time, the
//! SNI certificate resolver and the rustls `ServerConfig` a listener accepts with.
//!
//! The daemon reads each `{ cert, key }` pair of a listener's `certificates` and hands the
//! **contents** to [`load_certified_key`] while validating (this crate never reads files). The
//! resulting [`LoadedCert`]s, in config order, build a [`CertResolver`], and [`server_config`]
//! wraps it in an `Arc<rustls::ServerConfig>` for the snapshot. A reload builds a new
//! `ServerConfig` from scratch, so nothing in here is swapped in place.
//!
//! # Certificate names
//! A certificate serves the DNS names of its leaf's subjectAltName extension: exact names
//! (`api.example.com`) and wildcards (`*.example.com`). Only when the leaf has **no** DNS
//! subjectAltName at all does the subject's common name (CN) count instead, and only if it is a
//! DNS name or wildcard ([`LoadedCert::names_from_common_name`]; browsers ignore the CN, so such
//! a certificate deserves a warning). IP-address subjectAltNames are not names here: a client
//! connecting by IP address sends no SNI and gets the default certificate.
//!
//! # Selection (the SNI the client sent, compared without case)
//! 1. a certificate with that exact name,
//! 2. a certificate with the wildcard for its parent: `*.example.com` matches `a.example.com`
//!    but neither `a.b.example.com` nor `example.com` (one label, as browsers and RFC 6125 do),
//! 3. the **default certificate**, the first of the list, also used when there is no SNI.
//!
//! When several certificates claim the same name, the first in config order wins.
//!
//! # Protocol
//! TLS 1.3 and 1.2 only, with the ring provider, no client authentication, ALPN `h2` and
//! `http/1.1` (or `http/1.1` alone, see [`Alpn`]); rustls' defaults for everything else
//! (cipher suites, key exchange groups, an in-memory session cache for resumption).

mod resolver;
mod x509;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};
use rustls::{InconsistentKeys, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, DnsName, PrivateKeyDer};

pub use resolver::CertResolver;

/// Why a certificate/key pair (or a listener's certificate list) cannot be used. Every variant
/// is the operator's to fix; none is worth a retry with the same files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is not well-formed PEM (bad base64, a BEGIN without its END).
    #[error("the certificate file is not valid PEM")]
    CertificatePem(#[source] pem::Error),
    /// The certificate file holds no `CERTIFICATE` block (empty, DER instead of PEM, garbage).
    #[error("the certificate file has no CERTIFICATE block")]
    NoCertificate,
    /// The certificate file holds a private key but no certificate.
    #[error(
        "the certificate file holds a private key and no certificate: are `cert` and `key` swapped?"
    )]
    KeyInCertificateFile,
    /// The first `CERTIFICATE` block is not a certificate rustls can serve (not X.509 v3 DER,
    /// an unknown critical extension, ...).
    #[error(
        "the leaf certificate (the first CERTIFICATE block) is not a usable X.509 v3 certificate"
    )]
    InvalidCertificate(#[source] webpki::Error),
    /// The key file is not well-formed PEM.
    #[error("the key file is not valid PEM")]
    KeyPem(#[source] pem::Error),
    /// The key file holds no `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block.
    #[error("the key file has no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block")]
    NoPrivateKey,
    /// The key file holds a passphrase-protected key.
    #[error("the private key is encrypted; Portico needs it unencrypted")]
    EncryptedKey,
    /// The key block is not a key the ring provider can sign with: an unsupported type or size,
    /// or corrupt contents.
    #[error(
        "the private key is of an unsupported type or corrupt: Portico supports RSA (2048 bits or more), ECDSA P-256 and P-384, and Ed25519"
    )]
    UnsupportedKey(#[source] rustls::Error),
    /// The key belongs to no certificate of the file.
    #[error("the private key does not match the leaf certificate's public key")]
    KeyMismatch,
    /// The key belongs to a later certificate of the chain: the file is in the wrong order.
    #[error(
        "the private key matches CERTIFICATE block {position} of the chain, not the first: put the leaf certificate first"
    )]
    LeafNotFirst {
        /// 1-based position of the matching block in the certificate file.
        position: usize,
    },
    /// rustls rejected the certificate and key for another reason.
    #[error("rustls rejected the certificate and key")]
    Rejected(#[source] rustls::Error),
    /// A TLS listener was given an empty certificate list.
    #[error("a TLS listener needs at least one certificate")]
    NoCertificates,
}

/// A certificate chain with its private key, ready to serve, and what the daemon may want to
/// warn about.
#[derive(Clone, Debug)]
pub struct LoadedCert {
    /// The chain (leaf first) and the signing key, as rustls serves them.
    pub key: Arc<CertifiedKey>,
    /// The names this certificate serves, lowercase, without a trailing dot, in certificate
    /// order without duplicates: exact names and `*.`-wildcards. Empty when the leaf has neither
    /// a DNS subjectAltName nor a DNS-name CN: such a certificate can only be the default.
    pub names: Vec<String>,
    /// `names` came from the subject CN because the leaf has no DNS subjectAltName (browsers
    /// reject such certificates).
    pub names_from_common_name: bool,
    /// The leaf's `notAfter`, or `None` if it could not be read (or lies before 1970).
    pub not_after: Option<SystemTime>,
}

impl LoadedCert {
    /// Whether the leaf has expired at `now`. An expired certificate still loads and serves
    /// (as with nginx); the daemon should warn.
    pub fn expired_at(&self, now: SystemTime) -> bool {
        self.not_after.is_some_and(|not_after| now > not_after)
    }
}

/// Which ALPN protocols an https listener offers, in preference order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Alpn {
    /// `h2`, then `http/1.1`.
    #[default]
    H2AndHttp11,
    /// `http/1.1` only (HTTP/2 disabled on this listener).
    Http11Only,
}

impl Alpn {
    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::H2AndHttp11 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Alpn::Http11Only => vec![b"http/1.1".to_vec()],
        }
    }
}

/// Loads one `{ cert, key }` pair from the contents of its two PEM files.
///
/// `cert_pem` holds one or more `CERTIFICATE` blocks, leaf first, then intermediates (other
/// blocks are ignored, so a combined cert+key file works). `key_pem` holds the leaf's private
/// key as PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`); the
/// first such block is used. Checks that the key signs with the ring provider and matches the
/// leaf; does **not** check the chain, nor expiry (see [`LoadedCert::expired_at`]).
pub fn load_certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<LoadedCert, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::CertificatePem)?;
    let Some(leaf) = chain.first() else {
        return Err(match PrivateKeyDer::from_pem_slice(cert_pem) {
            Ok(_) => TlsError::KeyInCertificateFile,
            Err(_) => TlsError::NoCertificate,
        });
    };
    let (names, names_from_common_name, not_after) = {
        let parsed = webpki::EndEntityCert::try_from(leaf).map_err(TlsError::InvalidCertificate)?;
        let (names, from_cn) = dns_names(&parsed);
        (names, from_cn, x509::not_after(leaf))
    };

    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|err| {
        // Checked first: a legacy encrypted PEM (`Proc-Type: 4,ENCRYPTED` headers) is not
        // even valid base64, and PKCS#8 `ENCRYPTED PRIVATE KEY` blocks are skipped as unknown.
        if is_encrypted_key(key_pem) {
            TlsError::EncryptedKey
        } else if matches!(err, pem::Error::NoItemsFound) {
            TlsError::NoPrivateKey
        } else {
            TlsError::KeyPem(err)
        }
    })?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(TlsError::UnsupportedKey)?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key cannot tell its public half; rustls' `from_der` accepts that too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(match position_of_key(&certified) {
                Some(position) => TlsError::LeafNotFirst { position },
                None => TlsError::KeyMismatch,
            });
        }
        Err(err) => return Err(TlsError::Rejected(err)),
    }

    Ok(LoadedCert {
        key: Arc::new(certified),
        names,
        names_from_common_name,
        not_after,
    })
}

/// The rustls server config of an https listener: TLS 1.3 and 1.2 with the ring provider, no
/// client authentication, certificates chosen by `resolver`, ALPN as `alpn` says.
pub fn server_config(resolver: Arc<CertResolver>, alpn: Alpn) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&TLS13, &TLS12])
        .expect("the ring provider supports TLS 1.3 and 1.2")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.protocols();
    Arc::new(config)
}

/// Portico's one crypto provider, passed explicitly: never the process default, so this crate
/// works whether or not (and whichever) provider the binary installed.
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The leaf's DNS names (see the module docs), and whether they came from the CN.
fn dns_names(leaf: &webpki::EndEntityCert<'_>) -> (Vec<String>, bool) {
    let mut names = Vec::new();
    for name in leaf.valid_dns_names() {
        push_name(&mut names, name);
    }
    if !names.is_empty() {
        return (names, false);
    }
    if let Some(cn) = x509::common_name(leaf.subject()).filter(|cn| is_dns_name_or_wildcard(cn)) {
        push_name(&mut names, cn);
    }
    let from_cn = !names.is_empty();
    (names, from_cn)
}

fn push_name(names: &mut Vec<String>, name: &str) {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if !names.contains(&name) {
        names.push(name);
    }
}

/// A DNS name, or `*.` followed by one (the forms webpki's `valid_dns_names` yields).
fn is_dns_name_or_wildcard(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    // `DnsName` also rejects IPv4 literals, so a CN of `10.0.0.1` is not taken as a name.
    DnsName::try_from(name).is_ok()
}

fn is_encrypted_key(key_pem: &[u8]) -> bool {
    const MARKERS: [&[u8]; 2] = [b"BEGIN ENCRYPTED PRIVATE KEY", b"Proc-Type: 4,ENCRYPTED"];
    MARKERS.iter().any(|marker| {
        key_pem
            .windows(marker.len())
            .any(|window| window == *marker)
    })
}

/// The 1-based position of the chain certificate whose public key is the signing key's, if it
/// is not the leaf.
fn position_of_key(certified: &CertifiedKey) -> Option<usize> {
    let spki = certified.key.public_key()?;
    certified
        .cert
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, cert)| {
            webpki::EndEntityCert::try_from(*cert)
                .is_ok_and(|parsed| parsed.subject_public_key_info() == spki)
        })
        .map(|(index, _)| index + 1)
}
