//! The config: loaded by figment from the TOML file plus `PORTICO_` environment overrides into
//! raw serde structs (`raw`), then validated into the typed model below, which is all the
//! running code ever sees. Every error is reported at once, each naming its key.

mod diff;
mod duration;
mod http;
mod pools;
mod quick;
mod raw;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use net_core::BalanceKind;
use net_core::pool::{PassiveHealth, WhenAllDown};
use net_core::proxy_protocol::ProxyVersion;

pub use diff::{ConfigDiff, diff};
pub use duration::parse_duration;
pub use http::{DEFAULT_RETRIES, DEFAULT_ROUTE_TIMEOUT};
pub use pools::{cluster_members, validate_nodes};
pub use raw::RawMember;

/// Prefix of environment overrides; `__` separates levels:
/// `PORTICO_LISTENERS__DB__MAX_CONNECTIONS=500` sets `listeners.db.max_connections`.
pub const ENV_PREFIX: &str = "PORTICO_";

/// The validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub admin: AdminConfig,
    pub runtime: RuntimeConfig,
    pub log: LogConfig,
    pub clusters: BTreeMap<String, ClusterConfig>,
    pub pools: BTreeMap<String, PoolConfig>,
    pub listeners: BTreeMap<String, ListenerConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Status page, /metrics and /api/v1. Default 127.0.0.1:9900.
    pub listen: SocketAddr,
    /// Bearer token for /api/v1; required when `listen` is not a loopback address.
    pub token_file: Option<PathBuf>,
    /// The token read from `token_file`.
    pub token: Option<AdminToken>,
    /// Require the token for /metrics too. Default: when `listen` is not loopback.
    pub protect_metrics: bool,
}

/// The admin bearer token. Never printed; compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(std::sync::Arc<str>);

impl AdminToken {
    pub fn new(token: &str) -> Self {
        Self(std::sync::Arc::from(token))
    }

    /// Compares in time that depends only on the lengths, not on where the bytes differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        if expected.len() != candidate.len() {
            return false;
        }
        expected
            .iter()
            .zip(candidate)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// How long SIGTERM waits for open connections before exiting. Default 30s.
    pub shutdown_grace: Duration,
    /// On SIGTERM, how long Portico keeps accepting while /readyz answers 503, so that health
    /// checkers (keepalived, an upstream LB) take it out first (HAProxy's `grace`). Default 0.
    pub shutdown_delay: Duration,
    /// Tokio worker threads; default one per core. Read at start only.
    pub worker_threads: Option<NonZeroUsize>,
    /// Where API changes are persisted.
    pub state_dir: Option<PathBuf>,
    /// Unix socket that hands listening sockets to `portico run --upgrade`; unset means the
    /// best-effort default `/run/portico/upgrade.sock` (see `upgrade::socket_path`).
    pub upgrade_socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// error | warn | info | debug | trace; `RUST_LOG` overrides it.
    pub level: tracing::Level,
    pub format: LogFormat,
    pub access_log: bool,
}

/// A Kubernetes cluster's nodes, shared by every pool that names the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub nodes: Vec<NodeConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub ip: IpAddr,
    pub weight: u32,
    /// No new connections to this node in any pool; open ones finish.
    pub drain: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PoolSource {
    Servers,
    Cluster { name: String, node_port: u16 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub source: PoolSource,
    pub balance: BalanceKind,
    pub when_all_down: WhenAllDown,
    /// The backends: `servers`, or every node of `cluster` at `node_port`.
    pub members: Vec<MemberConfig>,
    pub health: HealthConfig,
    /// Passive health: eject a backend after consecutive connect failures.
    pub passive: PassiveHealth,
    /// How http listeners talk to this pool's backends.
    pub http: PoolHttpConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolHttpConfig {
    /// HTTP/2 with prior knowledge (h2c) to the backends, for gRPC. Default HTTP/1.1.
    pub http2: bool,
    /// Idle pooled connections are closed after this long (keep it below the backends' own
    /// keep-alive timeout). Default 30s.
    pub keepalive_timeout: Duration,
    /// Idle pooled connections kept per backend. Default 64.
    pub max_idle: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberConfig {
    pub addr: SocketAddr,
    /// The cluster node this member is the NodePort of.
    pub node: Option<IpAddr>,
    pub weight: u32,
    pub drain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthKind {
    None,
    Tcp,
    Http,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub kind: HealthKind,
    /// Probe this port instead of the backend's own (Kubernetes' healthCheckNodePort).
    pub port: Option<u16>,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// With `http`: healthy only on this status (default: any 2xx or 3xx).
    pub expect_status: Option<u16>,
    /// A new backend's state until its first check answers (default up).
    pub initial_up: bool,
    /// Use the endpoint count in kube-proxy's answer as the backend's weight (default true).
    pub use_endpoint_weight: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    TlsPassthrough,
    Http,
    Https,
}

impl Protocol {
    pub const ALL: [Protocol; 5] = [
        Protocol::Tcp,
        Protocol::Udp,
        Protocol::TlsPassthrough,
        Protocol::Http,
        Protocol::Https,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::TlsPassthrough => "tls_passthrough",
            Protocol::Http => "http",
            Protocol::Https => "https",
        }
    }

    /// Stream listeners conflict with each other on one address; UDP has its own port space.
    pub fn is_stream(self) -> bool {
        self != Protocol::Udp
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub bind: SocketAddr,
    pub protocol: Protocol,
    /// tcp: the pool (always set). http/https: the pool for requests no route matches.
    pub pool: Option<String>,
    pub proxy_protocol: Option<ProxyVersion>,
    pub accept_proxy_protocol: bool,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// tcp listeners: move bytes with splice(2) (see `validate::DEFAULT_SPLICE`).
    pub splice: bool,
    /// http and https listeners only. Shared, not copied, between the file config and the
    /// effective one (the admin API's changes never touch it): it holds every route.
    pub http: Option<std::sync::Arc<HttpListenerSpec>>,
}

/// An http or https listener's own settings.
#[derive(Debug, Clone)]
pub struct HttpListenerSpec {
    pub routes: Vec<RouteConfig>,
    /// The compiled route table (targets are indexes into `routes`; the listener's default
    /// pool, when set, is index `routes.len()`).
    pub table: std::sync::Arc<l7_router::routes::RouteTable<usize>>,
    /// https: the certificates, loaded and checked.
    pub certificates: Vec<CertificateConfig>,
    pub redirect_https: bool,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub header_timeout: Duration,
    pub max_concurrent_streams: u32,
    pub forwarded: bool,
    pub request_id: Option<::http::HeaderName>,
}

impl PartialEq for HttpListenerSpec {
    /// The table is compiled from `routes`: comparing the routes compares it.
    fn eq(&self, other: &Self) -> bool {
        self.routes == other.routes
            && self.certificates == other.certificates
            && self.redirect_https == other.redirect_https
            && self.max_header_bytes == other.max_header_bytes
            && self.max_headers == other.max_headers
            && self.header_timeout == other.header_timeout
            && self.max_concurrent_streams == other.max_concurrent_streams
            && self.forwarded == other.forwarded
            && self.request_id == other.request_id
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub path_exact: Option<String>,
    pub methods: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub pool: String,
    /// From the start of the request to the backend's response headers. Default 60s.
    pub timeout: Duration,
    pub max_body_bytes: Option<u64>,
    /// Extra attempts on other backends for idempotent requests that reached none. Default 2.
    pub retries: u32,
    /// Send this `Host` to the backend instead of the client's (X-Forwarded-Host keeps it).
    pub host_rewrite: Option<::http::HeaderValue>,
}

/// A certificate chain and key, as read from their files at validation.
#[derive(Debug, Clone)]
pub struct CertificateConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub loaded: l7_router::tls::LoadedCert,
    /// The files' bytes, so a reload notices a renewed certificate.
    pub fingerprint: (Vec<u8>, Vec<u8>),
}

impl PartialEq for CertificateConfig {
    fn eq(&self, other: &Self) -> bool {
        self.cert_file == other.cert_file
            && self.key_file == other.key_file
            && self.fingerprint == other.fingerprint
    }
}

/// One problem in the config, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Why a config could not be loaded: every problem found, in file order where possible.
#[derive(Debug)]
pub struct ConfigErrors {
    pub source: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{} has {n} error{}:",
            self.source,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads and validates the config file at `path`, with environment overrides.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let source = path.display().to_string();
    let start = Instant::now();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            return Err(ConfigErrors {
                source,
                errors: vec![ConfigError {
                    key: String::new(),
                    message: format!("cannot read the config file: {err}"),
                }],
            });
        }
    };
    let read = start.elapsed();
    load(&text, source, read)
}

/// Loads and validates a config given as TOML text (the embedded demo config).
pub fn load_str(toml: &str, source: &str) -> Result<Config, ConfigErrors> {
    load(toml, source.to_owned(), Duration::ZERO)
}

/// Parses `text` into the raw structs, then validates them. Without `PORTICO_` variables in the
/// environment (the usual case), serde reads the TOML straight into the raw structs: figment's
/// intermediate tree of tagged values costs as much as the parse itself on a 10,000-route file.
/// Figment does the work when there are overrides to merge, and when the direct parse fails, so
/// that errors always read the same (named by their key).
fn load(text: &str, source: String, read: Duration) -> Result<Config, ConfigErrors> {
    let start = Instant::now();
    let direct = if has_env_overrides() {
        None
    } else {
        parse_direct(text)
    };
    let raw = match direct {
        Some(raw) => raw,
        None => parse_with_figment(text).map_err(|errors| ConfigErrors {
            source: source.clone(),
            errors,
        })?,
    };
    let parsed = start.elapsed();
    let result = validate::validate(raw).map_err(|errors| ConfigErrors { source, errors });
    tracing::debug!(
        read_us = read.as_micros() as u64,
        parse_us = parsed.as_micros() as u64,
        validate_us = (start.elapsed() - parsed).as_micros() as u64,
        "config loaded"
    );
    result
}

/// The TOML read by serde straight into the raw structs; None on any error. The common subset
/// of TOML goes through `quick` (ten times faster on a 10,000-route file); what it leaves, toml
/// reads.
fn parse_direct(text: &str) -> Option<raw::RawConfig> {
    quick::parse(text).or_else(|| Toml::from_str::<raw::RawConfig>(text).ok())
}

/// The TOML with the environment's `PORTICO_` overrides merged, through figment.
fn parse_with_figment(text: &str) -> Result<raw::RawConfig, Vec<ConfigError>> {
    Figment::from(Toml::string(text))
        .merge(Env::prefixed(ENV_PREFIX).split("__"))
        .extract::<raw::RawConfig>()
        .map_err(|err| err.into_iter().map(figment_error).collect())
}

/// Whether any environment variable could be a `PORTICO_` override (figment matches the prefix
/// without regard to case).
fn has_env_overrides() -> bool {
    std::env::vars_os().any(|(key, _)| {
        key.to_string_lossy()
            .trim()
            .as_bytes()
            .get(..ENV_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(ENV_PREFIX.as_bytes()))
    })
}

fn figment_error(err: figment::Error) -> ConfigError {
    let from_env = err
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("environment"));
    let mut message = err.kind.to_string();
    if from_env {
        message.push_str(" (from a PORTICO_ environment variable)");
    }
    ConfigError {
        key: err.path.join("."),
        message,
    }
}
