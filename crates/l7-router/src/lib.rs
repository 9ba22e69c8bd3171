//! Portico's L7 data path: HTTP/1.1 and HTTP/2 listeners (h2 by ALPN on https, h2c by prior
//! knowledge on http) with TLS termination, host/path routing to pools and pooled upstream
//! clients.
//!
//! Like the L4 forwarder, the crate never reads files or binds from config: the daemon hands
//! [`serve`] an already-bound listener, a [`ConfigSource`] that yields the current snapshot's
//! settings (loaded once per request, so a reload applies to the next request even on a
//! kept-alive HTTP/2 connection), a stop signal and the task tracker that shutdown waits on.
#![forbid(unsafe_code)]

mod body;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod headers;
mod metrics;
mod passed;
mod proxy;
pub mod routes;
mod server;
pub mod tls;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use net_core::Pool;

pub use metrics::RouteMetrics;
pub use server::{HttpListenerShared, serve};
pub use upstream::{Upstream, UpstreamSettings};

/// Where a route sends requests, with its per-route policy.
#[derive(Debug)]
pub struct RouteTarget {
    /// The route's name in metrics and logs.
    pub name: Arc<str>,
    pub pool: Arc<Pool>,
    /// The pool's pooled client (long-lived: it outlives snapshots with its connections).
    pub upstream: Arc<Upstream>,
    /// From the start of the request to the backend's response headers.
    pub timeout: Duration,
    /// Largest request body; larger is refused with 413.
    pub max_body_bytes: Option<u64>,
    /// Extra attempts on other backends for idempotent requests that never reached one.
    pub retries: u32,
    pub metrics: RouteMetrics,
    /// Sent to the backend as `Host` instead of the client's.
    pub host_rewrite: Option<http::HeaderValue>,
    /// Each backend's `ip:port` as a URI authority, by backend index, made once per snapshot.
    authorities: Box<[http::uri::Authority]>,
    /// Each backend's Host value for requests that come without one, by backend index.
    host_values: Box<[http::HeaderValue]>,
    /// Each backend's pooled HTTP/1.1 connections, by backend index (empty for HTTP/2
    /// upstreams), looked up once per snapshot rather than per request.
    conns: Box<[Arc<upstream::BackendConns>]>,
}

impl RouteTarget {
    /// A route target; `route` and `listener` name its metrics.
    pub fn new(
        listener: &str,
        route: &str,
        pool: Arc<Pool>,
        upstream: Arc<Upstream>,
        policy: RoutePolicy,
    ) -> Self {
        let authorities: Box<[http::uri::Authority]> = pool
            .backends()
            .iter()
            .map(|b| {
                http::uri::Authority::try_from(b.addr().to_string())
                    .expect("a socket address is a valid authority")
            })
            .collect();
        let host_values = pool
            .backends()
            .iter()
            .map(|b| host_value(b.addr()))
            .collect();
        let conns = pool
            .backends()
            .iter()
            .filter_map(|b| upstream.backend_conns(b.addr()))
            .collect();
        Self {
            name: Arc::from(route),
            pool,
            upstream,
            timeout: policy.timeout,
            max_body_bytes: policy.max_body_bytes,
            retries: policy.retries,
            metrics: RouteMetrics::new(listener, route),
            host_rewrite: policy.host_rewrite,
            authorities,
            host_values,
            conns,
        }
    }

    pub(crate) fn authority(&self, backend: usize) -> http::uri::Authority {
        self.authorities[backend].clone()
    }

    pub(crate) fn host_value(&self, backend: usize) -> http::HeaderValue {
        self.host_values[backend].clone()
    }

    /// Backend `backend`'s pooled connections; HTTP/1.1 upstreams only.
    pub(crate) fn conns(&self, backend: usize) -> &Arc<upstream::BackendConns> {
        &self.conns[backend]
    }
}

/// The Host a request without one gets: the backend's address, without the port when it is
/// 80 (as hyper-util's client made it).
fn host_value(addr: std::net::SocketAddr) -> http::HeaderValue {
    let host = match (addr.ip(), addr.port()) {
        (std::net::IpAddr::V4(ip), 80) => ip.to_string(),
        (std::net::IpAddr::V6(ip), 80) => format!("[{ip}]"),
        _ => addr.to_string(),
    };
    http::HeaderValue::try_from(host).expect("a socket address is a valid header value")
}

/// A route's request policy.
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    pub timeout: Duration,
    pub max_body_bytes: Option<u64>,
    pub retries: u32,
    /// Send this `Host` to the backend instead of the client's.
    pub host_rewrite: Option<http::HeaderValue>,
}

/// An http/https listener's settings as one snapshot sees them.
#[derive(Debug)]
pub struct HttpListenerConfig {
    /// Compiled once at config validation; a route's target is an index into `targets`.
    pub routes: Arc<routes::RouteTable<usize>>,
    pub targets: Box<[Arc<RouteTarget>]>,
    /// `Some` on https listeners: certificates chosen by SNI, ALPN h2 + http/1.1.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Answer every request with a 308 to the same URL on https.
    pub redirect_https: bool,
    /// Request line + headers, at most.
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// How long a client may take to send a request's headers (slowloris); also how long a
    /// kept-alive HTTP/1.1 connection may sit idle before its next request.
    pub header_timeout: Duration,
    /// HTTP/2 streams per client connection.
    pub max_concurrent_streams: u32,
    /// Add an RFC 7239 `Forwarded` header besides the X-Forwarded-* ones.
    pub forwarded: bool,
    /// Generate this header with a random id when the request has none.
    pub request_id: Option<HeaderName>,
    /// One log line per request (target `access`).
    pub access_log: bool,
}

impl HttpListenerConfig {
    /// The request fields the config reads by name: those routes match on, and the
    /// request-id header.
    pub(crate) fn read_fields(&self) -> impl Iterator<Item = &http::HeaderName> {
        self.routes.header_names().iter().chain(&self.request_id)
    }
}

/// Where a listener finds its current settings: the daemon implements it over its snapshot.
pub trait ConfigSource: Send + Sync + 'static {
    /// The settings of http listener `name` in the current snapshot, or None when it is being
    /// removed.
    fn http_listener(&self, name: &str) -> Option<Arc<HttpListenerConfig>>;
}
