//! Validation of http and https listeners: routes (compiled into the route table here, so
//! every route error is a config error with its key), certificates (read and checked here, so
//! a bad certificate fails the reload and the old one keeps serving), and HTTP limits.

use std::time::{Duration, SystemTime};

use l7_router::routes::{RouteRef, RouteTable};
use l7_router::tls;

use super::raw::{RawConfig, RawListener, RawRoute};
use super::validate::{Errors, positive_duration, range};
use super::{CertificateConfig, HttpListenerSpec, Protocol, RouteConfig};

pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// hyper's HTTP/1 buffer cannot hold less, so a smaller limit could not hold on HTTP/1.1.
const MIN_HEADER_BYTES: i64 = 8192;
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_RETRIES: u32 = 2;
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;
/// A certificate expiring sooner than this gets a warning at every load.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

pub(super) fn validate_http(
    key: &str,
    protocol: Protocol,
    raw: &RawListener,
    raw_routes: Option<Vec<RawRoute>>,
    config: &RawConfig,
    default_pool: Option<&str>,
    e: &mut Errors,
) -> Option<HttpListenerSpec> {
    let before = e.0.len();
    let routes = validate_routes(key, raw_routes.unwrap_or_default(), config, e);
    let certificates = match (protocol, &raw.certificates) {
        (Protocol::Https, None) => {
            e.add(
                format!("{key}.certificates"),
                "an https listener needs at least one certificate",
            );
            None
        }
        (Protocol::Https, Some(list)) if list.is_empty() => {
            e.add(
                format!("{key}.certificates"),
                "an https listener needs at least one certificate",
            );
            None
        }
        (Protocol::Https, Some(list)) => Some(load_certificates(key, list, e)),
        (_, Some(_)) => {
            e.add(
                format!("{key}.certificates"),
                "certificates go on an https listener",
            );
            None
        }
        (_, None) => Some(Vec::new()),
    };
    if raw.redirect_https.is_some() && protocol != Protocol::Http {
        e.add(
            format!("{key}.redirect_https"),
            "redirect_https goes on an http listener",
        );
    }
    let redirect_https = raw.redirect_https.unwrap_or(false);
    if !redirect_https && routes.as_ref().is_some_and(Vec::is_empty) && default_pool.is_none() {
        e.add(
            format!("{key}.routes"),
            "the listener has no routes and no default pool: every request would get 404",
        );
    }
    let max_header_bytes = range(
        e,
        &format!("{key}.max_header_bytes"),
        raw.max_header_bytes,
        DEFAULT_MAX_HEADER_BYTES as i64,
        MIN_HEADER_BYTES,
        1024 * 1024,
    );
    let max_headers = range(
        e,
        &format!("{key}.max_headers"),
        raw.max_headers,
        DEFAULT_MAX_HEADERS as i64,
        1,
        1000,
    );
    let max_concurrent_streams = range(
        e,
        &format!("{key}.max_concurrent_streams"),
        raw.max_concurrent_streams,
        i64::from(DEFAULT_MAX_CONCURRENT_STREAMS),
        1,
        10_000,
    );
    let header_timeout = positive_duration(
        e,
        &format!("{key}.header_timeout"),
        &raw.header_timeout,
        DEFAULT_HEADER_TIMEOUT,
    );
    let request_id = match &raw.request_id {
        None => Some(None),
        Some(name) => match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => Some(Some(h)),
            Err(_) => {
                e.add(
                    format!("{key}.request_id"),
                    format!("\"{name}\" is not a header name"),
                );
                None
            }
        },
    };
    let routes = routes?;
    let table = compile(key, &routes, default_pool, e)?;
    if e.0.len() > before {
        return None;
    }
    Some(HttpListenerSpec {
        routes,
        table: std::sync::Arc::new(table),
        certificates: certificates?,
        redirect_https,
        max_header_bytes: max_header_bytes? as usize,
        max_headers: max_headers? as usize,
        header_timeout: header_timeout?,
        max_concurrent_streams: max_concurrent_streams? as u32,
        forwarded: raw.forwarded.unwrap_or(false),
        request_id: request_id?,
    })
}

/// Validates a listener's routes, taking their strings over (a 10,000-route file has 30,000 of
/// them, which copying would allocate and freeing the originals would cost again).
fn validate_routes(
    key: &str,
    raw_routes: Vec<RawRoute>,
    config: &RawConfig,
    e: &mut Errors,
) -> Option<Vec<RouteConfig>> {
    let mut routes = Vec::with_capacity(raw_routes.len());
    let mut ok = true;
    for (i, r) in raw_routes.into_iter().enumerate() {
        // A key is spelled out only for an error: formatting the keys of every route up front
        // was a third of the validation of a 10,000-route file.
        let rkey = |field: &str| format!("{key}.routes.{i}.{field}");
        if r.sni.is_some() {
            e.add(
                rkey("sni"),
                "sni goes in tls_passthrough routes; http routes match `host`",
            );
            ok = false;
        }
        let pool = match r.pool {
            None => {
                e.add(rkey("pool"), "missing: a route needs a pool");
                None
            }
            Some(p) if !config.pools.contains_key(&p) => {
                e.add(rkey("pool"), format!("no pool named \"{p}\""));
                None
            }
            Some(p) => Some(p),
        };
        let timeout = match &r.timeout {
            None => Some(DEFAULT_ROUTE_TIMEOUT),
            Some(_) => positive_duration(e, &rkey("timeout"), &r.timeout, DEFAULT_ROUTE_TIMEOUT),
        };
        let max_body_bytes = match r.max_body_bytes {
            None => Some(None),
            Some(n) if n >= 0 => Some(Some(n as u64)),
            Some(n) => {
                e.add(rkey("max_body_bytes"), format!("{n} is negative"));
                None
            }
        };
        let retries = match r.retries {
            None => Some(i64::from(DEFAULT_RETRIES)),
            Some(_) => range(
                e,
                &rkey("retries"),
                r.retries,
                i64::from(DEFAULT_RETRIES),
                0,
                10,
            ),
        };
        let host_rewrite = match &r.host_rewrite {
            None => Some(None),
            Some(h)
                if !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) =>
            {
                http::HeaderValue::from_str(h).ok().map(Some)
            }
            Some(h) => {
                e.add(
                    rkey("host_rewrite"),
                    format!("\"{h}\" is not a host (name or address, optional :port)"),
                );
                None
            }
        };
        let name = r.name.unwrap_or_else(|| {
            default_route_name(
                i,
                r.host.as_deref(),
                r.path_exact.as_deref().or(r.path_prefix.as_deref()),
            )
        });
        match (pool, timeout, max_body_bytes, retries, host_rewrite) {
            (
                Some(pool),
                Some(timeout),
                Some(max_body_bytes),
                Some(retries),
                Some(host_rewrite),
            ) => routes.push(RouteConfig {
                name,
                host: r.host,
                path_prefix: r.path_prefix,
                path_exact: r.path_exact,
                methods: r.methods.unwrap_or_default(),
                headers: r.headers.unwrap_or_default().into_iter().collect(),
                pool,
                timeout,
                max_body_bytes,
                retries: retries as u32,
                host_rewrite,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(routes)
}

/// `api.example.com/v1`, `*/static`: readable in metrics and logs.
fn default_route_name(index: usize, host: Option<&str>, path: Option<&str>) -> String {
    match (host, path) {
        (None, None) => format!("route-{index}"),
        (h, p) => {
            let (h, p) = (h.unwrap_or("*"), p.unwrap_or(""));
            let mut name = String::with_capacity(h.len() + p.len());
            name.push_str(h);
            name.push_str(p);
            name
        }
    }
}

fn compile(
    key: &str,
    routes: &[RouteConfig],
    default_pool: Option<&str>,
    e: &mut Errors,
) -> Option<RouteTable<usize>> {
    let specs = routes.iter().enumerate().map(|(i, r)| {
        let spec = RouteRef {
            name: &r.name,
            host: r.host.as_deref(),
            path_exact: r.path_exact.as_deref(),
            path_prefix: r.path_prefix.as_deref(),
            methods: &r.methods,
            headers: &r.headers,
        };
        (spec, i)
    });
    let default = default_pool.map(|_| routes.len());
    let start = std::time::Instant::now();
    let compiled = RouteTable::compile_borrowed(specs, default);
    tracing::debug!(
        key,
        routes = routes.len(),
        compile_us = start.elapsed().as_micros() as u64,
        "route table compiled"
    );
    match compiled {
        Ok(table) => Some(table),
        Err(errors) => {
            for err in errors {
                e.add(format!("{key}.routes.{}", err.route()), err.to_string());
            }
            None
        }
    }
}

fn load_certificates(
    key: &str,
    list: &[super::raw::RawCertificate],
    e: &mut Errors,
) -> Vec<CertificateConfig> {
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let ckey = format!("{key}.certificates.{i}");
        let cert = std::fs::read(&c.cert)
            .map_err(|err| format!("cannot read {}: {err}", c.cert.display()));
        let private =
            std::fs::read(&c.key).map_err(|err| format!("cannot read {}: {err}", c.key.display()));
        let (cert, private) = match (cert, private) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(m), _) => {
                e.add(format!("{ckey}.cert"), m);
                continue;
            }
            (_, Err(m)) => {
                e.add(format!("{ckey}.key"), m);
                continue;
            }
        };
        match tls::load_certified_key(&cert, &private) {
            Ok(loaded) => {
                warn_about(&ckey, &c.cert, &loaded);
                out.push(CertificateConfig {
                    cert_file: c.cert.clone(),
                    key_file: c.key.clone(),
                    loaded,
                    fingerprint: (cert, private),
                });
            }
            Err(err) => e.add(
                &ckey,
                format!("{} / {}: {err}", c.cert.display(), c.key.display()),
            ),
        }
    }
    out
}

fn warn_about(key: &str, file: &std::path::Path, cert: &tls::LoadedCert) {
    let now = SystemTime::now();
    if cert.expired_at(now) {
        tracing::warn!(key, file = %file.display(), "certificate has expired; it is served anyway");
    } else if cert.expired_at(now + EXPIRY_WARNING) {
        tracing::warn!(key, file = %file.display(), "certificate expires within 14 days");
    }
    if cert.names.is_empty() {
        tracing::warn!(key, file = %file.display(), "certificate has no DNS names; it can only be the default");
    }
}
