//! Why a forwarded connection ended early, and whose fault it was.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use net_core::proxy_protocol::ProxyReadError;

/// Who caused a connection to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
    Portico,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("bad PROXY header from the client")]
    ProxyHeader(#[source] ProxyReadError),
    #[error("no PROXY header from the client within {0:?}")]
    ProxyHeaderTimeout(Duration),
    #[error("pool {pool} has no available backend")]
    NoBackend { pool: String },
    #[error(
        "could not connect to any backend of pool {pool} ({attempts} attempts, last {last_backend})"
    )]
    Connect {
        pool: String,
        attempts: usize,
        last_backend: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("sending the first bytes to backend {backend}")]
    BackendWrite {
        backend: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("idle for {0:?}")]
    IdleTimeout(Duration),
    #[error("forwarding between client and backend")]
    Copy(#[source] io::Error),
}

impl ConnError {
    pub fn side(&self) -> Side {
        match self {
            ConnError::ProxyHeader(_) | ConnError::ProxyHeaderTimeout(_) => Side::Client,
            ConnError::NoBackend { .. } => Side::Portico,
            ConnError::Connect { .. } | ConnError::BackendWrite { .. } => Side::Backend,
            // Either peer may have reset or gone quiet; idle timeouts are policy, not failure.
            ConnError::IdleTimeout(_) | ConnError::Copy(_) => Side::Client,
        }
    }
}
