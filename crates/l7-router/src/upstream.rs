//! The pooled client of one pool: keep-alive connections to its backends, reused across
//! requests and kept across reloads (the daemon keeps `Upstream`s in a registry by pool).
//!
//! HTTP/1.1 backends (the common case) use our own small pool ([`h1`]): one idle list per
//! backend, and a connection is driven by the task of the request that uses it, so a request
//! costs no hop through a per-connection dispatch task. HTTP/2 backends (`http2 = true`, for
//! gRPC) multiplex many requests on one connection and keep hyper-util's pooled client.

pub(crate) mod codec;
mod h1;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::ProxyRequestBody;

/// What the server side writes the same way: fields, lengths, chunks.
pub(crate) use codec::{
    ResponseFields, encode_chunk_header, encode_last_chunk, parse_decimal, push_content_length,
};
pub(crate) use h1::{BackendConns, H1Body};

/// Errors a request or response body can carry through the proxy.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// TCP keep-alive probes on backend connections start after this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this long; keep it below the backends'
    /// keep-alive timeout so a request never lands on a connection the backend is closing.
    pub idle_timeout: Duration,
    /// Idle connections kept per backend.
    pub max_idle_per_backend: usize,
    /// Speak HTTP/2 (h2c, prior knowledge) to the backends: for gRPC.
    pub http2: bool,
}

#[derive(Debug)]
pub struct Upstream {
    settings: UpstreamSettings,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Http1(h1::Pool),
    Http2(Box<Client<HttpConnector, ProxyRequestBody>>),
}

impl Upstream {
    pub fn new(settings: UpstreamSettings) -> Self {
        let kind = if settings.http2 {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(settings.connect_timeout));
            connector.set_keepalive(Some(TCP_KEEPALIVE));
            connector.enforce_http(true);
            let client = Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(settings.idle_timeout)
                .pool_max_idle_per_host(settings.max_idle_per_backend)
                .http2_only(true)
                .build(connector);
            Kind::Http2(Box::new(client))
        } else {
            Kind::Http1(h1::Pool::new(h1::PoolSettings {
                connect_timeout: settings.connect_timeout,
                idle_timeout: settings.idle_timeout,
                max_idle: settings.max_idle_per_backend,
                tcp_keepalive: TCP_KEEPALIVE,
            }))
        };
        Self { settings, kind }
    }

    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    /// The HTTP/1.1 connections to `addr` (made once per snapshot, per backend), or None for
    /// an HTTP/2 upstream.
    pub(crate) fn backend_conns(&self, addr: SocketAddr) -> Option<Arc<BackendConns>> {
        match &self.kind {
            Kind::Http1(pool) => Some(pool.backend(addr)),
            Kind::Http2(_) => None,
        }
    }

    /// The HTTP/2 client, or None for an HTTP/1.1 upstream.
    pub(crate) fn http2_client(&self) -> Option<&Client<HttpConnector, ProxyRequestBody>> {
        match &self.kind {
            Kind::Http1(_) => None,
            Kind::Http2(client) => Some(client),
        }
    }
}

/// Why a request got no answer from a backend.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connect to {addr} failed")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connect to {addr} took longer than {timeout:?}")]
    ConnectTimeout { addr: SocketAddr, timeout: Duration },
    /// An upgrade (WebSocket) request, which goes through hyper's client.
    #[error("HTTP/1.1 exchange with the backend failed")]
    Http1(#[source] hyper::Error),
    #[error("writing the request to the backend failed")]
    Write(#[source] std::io::Error),
    #[error("reading the response from the backend failed")]
    Read(#[source] std::io::Error),
    #[error("the backend closed the connection before its response was complete")]
    Closed,
    #[error("the backend's response is not valid HTTP/1.1")]
    Response(#[source] codec::ResponseError),
    #[error("the request body failed")]
    RequestBody(#[source] BodyError),
    #[error("the request body does not match its content-length")]
    BodyLength,
    #[error("HTTP/2 exchange with the backend failed")]
    Http2(#[source] hyper_util::client::legacy::Error),
}
