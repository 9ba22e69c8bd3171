//! [`CertResolver`]: picks a listener's certificate from the client's SNI, per handshake.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{LoadedCert, TlsError};

/// Longest DNS name (RFC 1035 without the trailing dot); rustls rejects longer SNI values.
const MAX_DNS_NAME: usize = 253;

/// The certificates of one https listener, indexed by name (see the [module docs](super) for
/// the selection rules). Built once per snapshot; [`select`](Self::select) allocates nothing.
pub struct CertResolver {
    /// The first certificate: for no SNI and for names nothing else serves.
    default: Arc<CertifiedKey>,
    /// Exact names, lowercase.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` certificates, keyed by the suffix (`example.com`), lowercase.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertResolver {
    /// Indexes `certs` in config order; the first is the default, and the first certificate
    /// claiming a name serves it. Fails only on an empty list.
    pub fn new(certs: Vec<LoadedCert>) -> Result<Self, TlsError> {
        let default = certs.first().ok_or(TlsError::NoCertificates)?.key.clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for cert in certs {
            for name in cert.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(suffix) => (&mut wildcard, suffix.to_owned()),
                    None => (&mut exact, name),
                };
                map.entry(key).or_insert_with(|| cert.key.clone());
            }
        }
        Ok(Self {
            default,
            exact,
            wildcard,
        })
    }

    /// The certificate for a handshake with this SNI (`None`: the client sent none), compared
    /// without ASCII case and without one trailing dot. Never fails: the default certificate
    /// answers whatever nothing else serves.
    pub fn select(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        server_name
            .and_then(|name| self.lookup(name))
            .unwrap_or(&self.default)
    }

    fn lookup(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        // rustls lowercases the SNI before resolvers see it, but `ClientHello::server_name`
        // does not promise so: lowercase into a stack buffer when needed, never on the heap.
        if name.len() > MAX_DNS_NAME + 1 {
            return None; // one more for a trailing dot
        }
        let mut buffer = [0u8; MAX_DNS_NAME + 1];
        let name = if name.bytes().any(|byte| byte.is_ascii_uppercase()) {
            let lower = buffer.get_mut(..name.len())?;
            lower.copy_from_slice(name.as_bytes());
            lower.make_ascii_lowercase();
            std::str::from_utf8(lower).ok()?
        } else {
            name
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(key) = self.exact.get(name) {
            return Some(key);
        }
        match name.split_once('.') {
            Some((label, parent)) if !label.is_empty() => self.wildcard.get(parent),
            _ => None,
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.select(client_hello.server_name()).clone())
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: the keys' Debug output is long and says nothing useful.
        let mut exact: Vec<_> = self.exact.keys().collect();
        exact.sort();
        let mut wildcard: Vec<_> = self.wildcard.keys().collect();
        wildcard.sort();
        f.debug_struct("CertResolver")
            .field("exact", &exact)
            .field("wildcard", &wildcard)
            .finish_non_exhaustive()
    }
}
