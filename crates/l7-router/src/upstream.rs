//! The pooled client of one pool: keep-alive connections to its backends, reused across
//! requests and kept across reloads (the daemon keeps `Upstream`s in a registry by pool).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Errors a request or response body can carry through the proxy.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// The body type sent to backends.
pub type UpstreamBody = BoxBody<Bytes, BodyError>;

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
    pub(crate) client: Client<HttpConnector, UpstreamBody>,
}

impl Upstream {
    pub fn new(settings: UpstreamSettings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(settings.idle_timeout)
            .pool_max_idle_per_host(settings.max_idle_per_backend)
            .http2_only(settings.http2)
            .build(connector);
        Self { settings, client }
    }

    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }
}
