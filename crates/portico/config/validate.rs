//! Raw config -> typed config, collecting every error (each naming its key) rather than
//! stopping at the first.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::time::Duration;

use net_core::proxy_protocol::ProxyVersion;

use super::pools::{validate_cluster, validate_pool};
use super::raw::{RawConfig, RawListener, RawRoute};
use super::{
    AdminConfig, AdminToken, Config, ConfigError, ListenerConfig, LogConfig, LogFormat, Protocol,
    RuntimeConfig, parse_duration,
};

pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9900";
/// Shortest admin token accepted: a guessable token is no protection.
pub const MIN_TOKEN_LEN: usize = 16;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// tcp listeners' `splice`: bulk through splice(2), small messages copied either way, so it
/// costs nothing where it does not help (measurements in config/portico.toml).
pub const DEFAULT_SPLICE: bool = true;
pub const MAX_MAX_CONNECTIONS: i64 = 10_000_000;
pub const DEFAULT_WEIGHT: u32 = 1;
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_IDLE: usize = 64;
pub const MAX_WEIGHT: i64 = 1_000;
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 3;

/// Collects errors while validation goes on.
#[derive(Default)]
pub(super) struct Errors(pub(super) Vec<ConfigError>);

impl Errors {
    pub(super) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Unwraps `r`, recording its error under `key`.
    pub(super) fn check<T>(&mut self, key: &str, r: Result<T, String>) -> Option<T> {
        r.map_err(|m| self.add(key, m)).ok()
    }
}

pub fn validate(mut raw: RawConfig) -> Result<Config, Vec<ConfigError>> {
    let mut e = Errors::default();

    let admin = validate_admin(&raw, &mut e);
    let runtime = validate_runtime(&raw, &mut e);
    let log = validate_log(&raw, &mut e);

    let mut clusters = BTreeMap::new();
    for (name, cluster) in &raw.clusters {
        check_name(&mut e, "clusters", name);
        if let Some(c) = validate_cluster(name, cluster, &mut e) {
            clusters.insert(name.clone(), c);
        }
    }

    let mut pools = BTreeMap::new();
    for (name, pool) in &raw.pools {
        check_name(&mut e, "pools", name);
        if let Some(p) = validate_pool(name, pool, &raw.clusters, &clusters, &mut e) {
            pools.insert(name.clone(), p);
        }
    }

    let mut listeners = BTreeMap::new();
    // The bind address of every listener whose address parsed, even one with other errors, so
    // that a conflict is reported together with them (and without a valid admin.listen).
    let mut binds = Vec::new();
    // Routes are moved out, for the validated routes to take their strings over.
    let routes: Vec<_> = raw
        .listeners
        .values_mut()
        .map(|l| l.routes.take())
        .collect();
    for ((name, listener), routes) in raw.listeners.iter().zip(routes) {
        check_name(&mut e, "listeners", name);
        if let Some(l) = validate_listener(name, listener, routes, &raw, &mut binds, &mut e) {
            listeners.insert(name.clone(), l);
        }
    }
    check_binds(admin.as_ref().map(|a| a.listen), &binds, &mut e);

    match (admin, runtime, log) {
        (Some(admin), Some(runtime), Some(log)) if e.0.is_empty() => Ok(Config {
            admin,
            runtime,
            log,
            clusters,
            pools,
            listeners,
        }),
        _ => Err(e.0),
    }
}

fn check_name(e: &mut Errors, section: &str, name: &str) {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        e.add(
            format!("{section}.{name}"),
            format!("\"{name}\" is not a valid name (use lowercase letters, digits and '-')"),
        );
    }
}

fn validate_admin(raw: &RawConfig, e: &mut Errors) -> Option<AdminConfig> {
    let text = raw.admin.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
    let listen = e.check("admin.listen", parse_socket_addr(text))?;
    if !listen.ip().is_loopback() && raw.admin.token_file.is_none() {
        e.add(
            "admin.listen",
            format!(
                "{listen} is not a loopback address, so admin.token_file is required \
                 (the admin API can drain nodes and reload the config)"
            ),
        );
    }
    let token = match &raw.admin.token_file {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) if text.trim().len() >= MIN_TOKEN_LEN => Some(AdminToken::new(text.trim())),
            Ok(_) => {
                e.add(
                    "admin.token_file",
                    format!(
                        "{}: the token must be at least {MIN_TOKEN_LEN} characters",
                        path.display()
                    ),
                );
                return None;
            }
            Err(err) => {
                e.add(
                    "admin.token_file",
                    format!("cannot read {}: {err}", path.display()),
                );
                return None;
            }
        },
    };
    if raw.admin.protect_metrics == Some(true) && raw.admin.token_file.is_none() {
        e.add(
            "admin.protect_metrics",
            "needs admin.token_file: without a token there is nothing to protect /metrics with",
        );
    }
    Some(AdminConfig {
        listen,
        token_file: raw.admin.token_file.clone(),
        token,
        protect_metrics: raw
            .admin
            .protect_metrics
            .unwrap_or(!listen.ip().is_loopback()),
    })
}

fn validate_runtime(raw: &RawConfig, e: &mut Errors) -> Option<RuntimeConfig> {
    let r = &raw.runtime;
    let shutdown_grace = duration_or(
        e,
        "runtime.shutdown_grace",
        &r.shutdown_grace,
        DEFAULT_SHUTDOWN_GRACE,
    );
    let shutdown_delay = duration_or(
        e,
        "runtime.shutdown_delay",
        &r.shutdown_delay,
        Duration::ZERO,
    );
    let worker_threads = match r.worker_threads {
        None => Some(None),
        Some(n) => range(e, "runtime.worker_threads", Some(n), 1, 1, 1024)
            .map(|n| NonZeroUsize::new(n as usize)),
    };
    Some(RuntimeConfig {
        shutdown_grace: shutdown_grace?,
        shutdown_delay: shutdown_delay?,
        worker_threads: worker_threads?,
        state_dir: r.state_dir.clone(),
        upgrade_socket: r.upgrade_socket.clone(),
    })
}

fn validate_log(raw: &RawConfig, e: &mut Errors) -> Option<LogConfig> {
    let l = &raw.log;
    let level = match l.level.as_deref().unwrap_or("info") {
        "error" => Some(tracing::Level::ERROR),
        "warn" => Some(tracing::Level::WARN),
        "info" => Some(tracing::Level::INFO),
        "debug" => Some(tracing::Level::DEBUG),
        "trace" => Some(tracing::Level::TRACE),
        other => {
            e.add(
                "log.level",
                format!("\"{other}\" is not one of error, warn, info, debug, trace"),
            );
            None
        }
    };
    let format = match l.format.as_deref().unwrap_or("text") {
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        other => {
            e.add(
                "log.format",
                format!("\"{other}\" is not one of text, json"),
            );
            None
        }
    };
    Some(LogConfig {
        level: level?,
        format: format?,
        access_log: l.access_log.unwrap_or(true),
    })
}

fn validate_listener(
    name: &str,
    raw: &RawListener,
    routes: Option<Vec<RawRoute>>,
    config: &RawConfig,
    binds: &mut Vec<(String, SocketAddr, Protocol)>,
    e: &mut Errors,
) -> Option<ListenerConfig> {
    let key = format!("listeners.{name}");
    let errors_before = e.0.len();
    let bind = match &raw.bind {
        None => {
            e.add(
                format!("{key}.bind"),
                "missing; e.g. bind = \"0.0.0.0:5432\"",
            );
            None
        }
        Some(b) => e.check(&format!("{key}.bind"), parse_socket_addr(b)),
    };
    let p = raw.protocol.as_deref().unwrap_or("tcp");
    let protocol = Protocol::ALL
        .into_iter()
        .find(|x| x.as_str() == p)
        .or_else(|| {
            e.add(
                format!("{key}.protocol"),
                format!("\"{p}\" is not one of tcp, udp, tls_passthrough, http, https"),
            );
            None
        })?;
    if matches!(protocol, Protocol::Udp | Protocol::TlsPassthrough) {
        e.add(
            format!("{key}.protocol"),
            format!("\"{protocol}\" listeners are not supported by this version of Portico yet (supported: tcp, http, https)"),
        );
        return None;
    }
    if let Some(bind) = bind {
        binds.push((format!("{key}.bind"), bind, protocol));
    }
    let is_http = matches!(protocol, Protocol::Http | Protocol::Https);
    let not_for = |present: bool, field: &str, e: &mut Errors| {
        if present {
            e.add(
                format!("{key}.{field}"),
                format!("not a key of a \"{protocol}\" listener"),
            );
        }
    };
    if is_http {
        not_for(raw.proxy_protocol.is_some(), "proxy_protocol", e);
        not_for(
            raw.accept_proxy_protocol.is_some(),
            "accept_proxy_protocol",
            e,
        );
        not_for(raw.idle_timeout.is_some(), "idle_timeout", e);
        not_for(raw.splice.is_some(), "splice", e);
    } else {
        for (present, field) in [
            (routes.is_some(), "routes"),
            (raw.certificates.is_some(), "certificates"),
            (raw.max_header_bytes.is_some(), "max_header_bytes"),
            (raw.max_headers.is_some(), "max_headers"),
            (raw.header_timeout.is_some(), "header_timeout"),
            (raw.redirect_https.is_some(), "redirect_https"),
            (
                raw.max_concurrent_streams.is_some(),
                "max_concurrent_streams",
            ),
            (raw.forwarded.is_some(), "forwarded"),
            (raw.request_id.is_some(), "request_id"),
        ] {
            not_for(present, field, e);
        }
    }
    let pool = match &raw.pool {
        None if is_http => Some(None),
        None => {
            e.add(
                format!("{key}.pool"),
                "missing: a tcp listener needs a pool",
            );
            None
        }
        Some(p) if !config.pools.contains_key(p) => {
            e.add(format!("{key}.pool"), format!("no pool named \"{p}\""));
            None
        }
        Some(p) => Some(Some(p.clone())),
    };
    let proxy_protocol = match raw.proxy_protocol.as_deref().unwrap_or("none") {
        "none" => Some(None),
        "v1" => Some(Some(ProxyVersion::V1)),
        "v2" => Some(Some(ProxyVersion::V2)),
        other => {
            e.add(
                format!("{key}.proxy_protocol"),
                format!("\"{other}\" is not one of none, v1, v2"),
            );
            None
        }
    };
    let connect_timeout = positive_duration(
        e,
        &format!("{key}.connect_timeout"),
        &raw.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
    );
    let idle_timeout = positive_duration(
        e,
        &format!("{key}.idle_timeout"),
        &raw.idle_timeout,
        DEFAULT_IDLE_TIMEOUT,
    );
    let max_connections = range(
        e,
        &format!("{key}.max_connections"),
        raw.max_connections,
        DEFAULT_MAX_CONNECTIONS as i64,
        1,
        MAX_MAX_CONNECTIONS,
    )
    .map(|n| n as usize);
    let http = if is_http {
        let default_pool = pool.clone().flatten();
        let default_pool = default_pool.as_deref();
        super::http::validate_http(&key, protocol, raw, routes, config, default_pool, e)
            .map(|spec| Some(std::sync::Arc::new(spec)))
    } else {
        Some(None)
    };
    if e.0.len() > errors_before {
        return None;
    }
    Some(ListenerConfig {
        bind: bind?,
        protocol,
        pool: pool?,
        proxy_protocol: proxy_protocol?,
        accept_proxy_protocol: raw.accept_proxy_protocol.unwrap_or(false),
        connect_timeout: connect_timeout?,
        idle_timeout: idle_timeout?,
        max_connections: max_connections?,
        splice: !is_http && raw.splice.unwrap_or(DEFAULT_SPLICE),
        http: http?,
    })
}

/// Two stream listeners (or a listener and the admin server) on one address, or one on a
/// wildcard address and another on a specific address of the same port, cannot both bind.
fn check_binds(
    admin: Option<SocketAddr>,
    binds: &[(String, SocketAddr, Protocol)],
    e: &mut Errors,
) {
    let stream: Vec<(String, SocketAddr)> = admin
        .map(|a| ("admin.listen".to_owned(), a))
        .into_iter()
        .chain(
            binds
                .iter()
                .filter(|(_, _, p)| p.is_stream())
                .map(|(key, addr, _)| (key.clone(), *addr)),
        )
        .collect();
    for (i, (key_a, a)) in stream.iter().enumerate() {
        for (key_b, b) in &stream[i + 1..] {
            if a.port() != 0 && a.port() == b.port() && ips_overlap(a.ip(), b.ip()) {
                e.add(key_b, format!("{b} conflicts with {key_a} ({a})"));
            }
        }
    }
}

/// IPv6 listeners are bound IPV6_V6ONLY (as nginx does), so only one family can collide.
fn ips_overlap(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a == b || a.is_unspecified() || b.is_unspecified())
}

pub(super) fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse::<SocketAddr>().map_err(|_| {
        format!(
            "\"{text}\" is not an address with a port (e.g. \"10.0.0.5:8080\" or \"[::1]:8080\")"
        )
    })
}

pub(super) fn port(e: &mut Errors, key: &str, p: i64) -> Option<u16> {
    match u16::try_from(p) {
        Ok(p) if p != 0 => Some(p),
        _ => {
            e.add(key, format!("{p} is not a port (1 to 65535)"));
            None
        }
    }
}

pub(super) fn duration_or(
    e: &mut Errors,
    key: &str,
    raw: &Option<String>,
    default: Duration,
) -> Option<Duration> {
    match raw {
        None => Some(default),
        Some(text) => e.check(key, parse_duration(text)),
    }
}

/// An integer key: `default` when absent, else it must lie within `min..=max`.
pub(super) fn range(
    e: &mut Errors,
    key: &str,
    v: Option<i64>,
    default: i64,
    min: i64,
    max: i64,
) -> Option<i64> {
    match v {
        None => Some(default),
        Some(n) if (min..=max).contains(&n) => Some(n),
        Some(n) => {
            e.add(key, format!("{n} is out of range ({min} to {max})"));
            None
        }
    }
}

pub(super) fn positive_duration(
    e: &mut Errors,
    key: &str,
    raw: &Option<String>,
    default: Duration,
) -> Option<Duration> {
    let d = duration_or(e, key, raw, default)?;
    if d.is_zero() {
        e.add(key, "must be longer than 0");
        return None;
    }
    Some(d)
}
