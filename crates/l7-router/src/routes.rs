//! The compiled route table of an http/https listener: which target (a pool) serves a request,
//! by host, path, method and headers.
//!
//! [`RouteTable::compile`] validates a listener's ordered routes ([`RouteSpec`]) once, at load
//! time, and returns every error at once; [`RouteTable::lookup`] then runs per request and
//! allocates nothing.
//!
//! # Host
//! A route's `host` is an exact name (`api.example.com`), a wildcard (`*.example.com`) or absent
//! (any host). Patterns are DNS names: ASCII letters, digits, `-` and `.` (internationalised
//! names in their punycode `xn--` form; IPv4 literals are fine, IPv6 literals are not supported),
//! lowercased at compile time; one trailing dot is dropped.
//!
//! The request's host (the `Host` header or HTTP/2 `:authority`) is compared case-insensitively,
//! without its `:port` suffix and without one trailing dot. An IPv6 literal (`[::1]:8443`), an
//! empty host and a host longer than 253 characters match only routes without `host`.
//!
//! `*.example.com` matches a name that ends in `.example.com` at **any depth** (`a.example.com`
//! and `a.b.example.com`, as nginx's `*.example.com` and Envoy's `*.example.com` do), never
//! `example.com` itself: list `example.com` as a second route for that.
//!
//! # Precedence
//! Routes are grouped by host pattern, and the groups matching a request's host are tried from
//! the most to the least specific:
//! 1. the exact host,
//! 2. the wildcards, longest suffix first (`*.api.example.com`, then `*.example.com`),
//! 3. the routes without `host`,
//! 4. the listener's default target, if it has one; otherwise no match (404).
//!
//! The first group that has a route matching the request's path, method and headers wins. A
//! group with no such route **falls through** to the next: routes without `host` act as a
//! fallback for every host (Envoy's virtual hosts and nginx's server blocks do not fall through;
//! here the first match in this order wins, as with Traefik's rules). To keep a host's requests
//! from reaching the fallback, give that host a catch-all route (no path) of its own.
//!
//! Within a group, paths are tried from the most to the least specific:
//! 1. `path_exact`: the whole path, byte for byte (case-sensitive),
//! 2. `path_prefix`, **longest prefix first**, whatever the config order,
//! 3. routes without a path.
//!
//! A prefix is a plain string prefix, as nginx's `location /v1` and Envoy's `prefix`: `/v1`
//! matches `/v1`, `/v1/users` **and `/v10`**. Write `/v1/` (plus a `path_exact = "/v1"` if needed)
//! to stop at a segment boundary.
//!
//! The path is taken as received, without normalisation (no percent-decoding, no `..` or `//`
//! resolution): routing picks a pool, it is not access control. A query string (from the first
//! `?`) is ignored, so a path-and-query may be passed.
//!
//! # Methods and headers
//! `methods` (none = any) and `headers` (exact name/value pairs, all of which must be present)
//! narrow a route further. Methods are case-sensitive and written in uppercase; `GET` also admits
//! `HEAD`, as in nginx. A header constraint is met when any of the request's values of that name
//! equals the configured value exactly.
//!
//! When a route's constraints fail, the next candidate is tried: the next route with the same
//! path, then the next less specific path, then the next host group. Among routes with the same
//! host pattern and the same path, the ones with method or header constraints are tried first, in
//! config order, and the unconstrained one last, so it acts as the fallback for that path
//! wherever it is written.
//!
//! # Compile-time errors
//! Each [`RouteError`] names the route by its index in the list. Besides malformed hosts, paths,
//! methods and headers, a route that can never match is an error: an exact duplicate of an
//! earlier route ([`RouteError::Duplicate`]), or a route whose every request is already taken by
//! a route tried before it with the same host and path ([`RouteError::Shadowed`]).
//!
//! # Cost
//! Exact hosts are found with one hash lookup, wildcards with one per label of the request's host
//! (at most), exact paths with one hash lookup; prefixes are scanned longest first, so a group
//! should hold tens of prefixes, not thousands (1,000 hosts x 10 prefixes is fine). Hosts are
//! hashed with the standard library's keyed SipHash, since clients choose them.

use std::collections::HashMap;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

mod host;
#[cfg(test)]
mod tests;

pub use host::HostError;
use host::{HostPattern, MAX_HOST_LEN};

/// The route name [`Matched::route`] reports when the listener's default target serves a
/// request; no route may be named so.
pub const DEFAULT_ROUTE: &str = "default";

/// One route as configured, in config order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec<T> {
    /// The route's name, for metrics and logs; not empty, not [`DEFAULT_ROUTE`]. Routes may share
    /// a name (they then share its metrics).
    pub name: String,
    /// `api.example.com`, `*.example.com`, or `None` for any host.
    pub host: Option<String>,
    /// The whole path must be this (starts with `/`; no query).
    pub path_exact: Option<String>,
    /// The path must start with this (starts with `/`; no query). Exclusive with `path_exact`.
    pub path_prefix: Option<String>,
    /// Accepted methods (`GET`, `POST`, extension methods); empty = any.
    pub methods: Vec<String>,
    /// Headers (name, exact value) the request must all carry; empty = no constraint.
    pub headers: Vec<(String, String)>,
    /// What serves the matching requests (a pool, or its index).
    pub target: T,
}

/// A [`RouteSpec`] without its target, borrowed: what [`RouteTable::compile_borrowed`] reads.
#[derive(Debug, Clone, Copy)]
pub struct RouteRef<'a> {
    pub name: &'a str,
    pub host: Option<&'a str>,
    pub path_exact: Option<&'a str>,
    pub path_prefix: Option<&'a str>,
    pub methods: &'a [String],
    pub headers: &'a [(String, String)],
}

impl<T> RouteSpec<T> {
    /// This route's strings, borrowed.
    pub fn borrowed(&self) -> RouteRef<'_> {
        RouteRef {
            name: &self.name,
            host: self.host.as_deref(),
            path_exact: self.path_exact.as_deref(),
            path_prefix: self.path_prefix.as_deref(),
            methods: &self.methods,
            headers: &self.headers,
        }
    }
}

/// What served a request: a route's target or the listener's default.
#[derive(Debug)]
pub struct Matched<'a, T> {
    /// The route's target, or the listener's default target.
    pub target: &'a T,
    /// The route's name, or [`DEFAULT_ROUTE`].
    pub route: &'a str,
}

impl<T> Clone for Matched<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Matched<'_, T> {}

/// Why a route was rejected; `route` is its index in the list given to [`RouteTable::compile`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The name is empty.
    #[error("route {route}: the name is empty")]
    EmptyName { route: usize },
    /// The name is [`DEFAULT_ROUTE`].
    #[error("route {route}: the name \"default\" is reserved for the listener's default pool")]
    ReservedName { route: usize },
    /// The host pattern is malformed.
    #[error("route {route}: invalid host {host:?}: {reason}")]
    InvalidHost {
        route: usize,
        host: String,
        reason: HostError,
    },
    /// A path does not start with `/`, or holds characters no request path can.
    #[error("route {route}: invalid path {path:?}: {reason}")]
    InvalidPath {
        route: usize,
        path: String,
        reason: PathError,
    },
    /// Both `path_exact` and `path_prefix` are set.
    #[error("route {route}: path_exact and path_prefix are mutually exclusive")]
    BothPaths { route: usize },
    /// A method is not an uppercase HTTP token.
    #[error(
        "route {route}: invalid method {method:?} (methods are case-sensitive tokens, \
         written in uppercase, such as GET)"
    )]
    InvalidMethod { route: usize, method: String },
    /// A header name is not a valid HTTP field name.
    #[error("route {route}: invalid header name {name:?}")]
    InvalidHeaderName { route: usize, name: String },
    /// A header value has characters outside visible ASCII, or leading/trailing whitespace.
    #[error(
        "route {route}: invalid value {value:?} for header {name:?} (visible ASCII, \
         no leading or trailing whitespace)"
    )]
    InvalidHeaderValue {
        route: usize,
        name: String,
        value: String,
    },
    /// Same host, path, methods and headers as an earlier route: it could never match.
    #[error("route {route} duplicates route {earlier}")]
    Duplicate { route: usize, earlier: usize },
    /// Same host and path as a route tried before it that accepts all of its requests (a superset
    /// of its methods, a subset of its headers): it could never match. Checked route by route: a
    /// route whose requests are split among several earlier ones is not reported.
    #[error(
        "route {route} can never match: route {earlier} has the same host and path and takes \
         every request it would (GET also admits HEAD)"
    )]
    Shadowed { route: usize, earlier: usize },
}

impl RouteError {
    /// The index of the offending route.
    pub fn route(&self) -> usize {
        match *self {
            Self::EmptyName { route }
            | Self::ReservedName { route }
            | Self::InvalidHost { route, .. }
            | Self::InvalidPath { route, .. }
            | Self::BothPaths { route }
            | Self::InvalidMethod { route, .. }
            | Self::InvalidHeaderName { route, .. }
            | Self::InvalidHeaderValue { route, .. }
            | Self::Duplicate { route, .. }
            | Self::Shadowed { route, .. } => route,
        }
    }
}

/// Why a route's path was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// It does not start with `/`.
    #[error("it must start with '/'")]
    NotAbsolute,
    /// It holds `?` or `#`; the query is not part of what routes match.
    #[error("it must not contain '?' or '#' (the query string is not matched)")]
    QueryOrFragment,
    /// It holds a space or a control character, which no request path does.
    #[error("it must not contain spaces or control characters")]
    InvalidCharacter,
}

/// A listener's routes, compiled for lookup.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    /// Every route, in config order; groups refer to them by index.
    routes: Vec<Route<T>>,
    exact_hosts: HashMap<Box<[u8]>, Group>,
    /// Keyed by the suffix after `*.`.
    wildcard_hosts: HashMap<Box<[u8]>, Group>,
    /// Shortest and longest key of `wildcard_hosts`, to skip suffixes no key can equal.
    wildcard_len: (usize, usize),
    any_host: Group,
    default: Option<T>,
    /// Every header name a route matches on, once each.
    header_names: Vec<HeaderName>,
}

/// A validated route.
#[derive(Debug, Clone)]
struct Route<T> {
    name: Box<str>,
    /// Sorted and deduplicated, `HEAD` added when `GET` is there; empty = any.
    methods: Box<[Method]>,
    /// Deduplicated.
    headers: Box<[(HeaderName, HeaderValue)]>,
    target: T,
}

impl<T> Route<T> {
    fn is_constrained(&self) -> bool {
        !self.methods.is_empty() || !self.headers.is_empty()
    }

    fn accepts(&self, method: &Method, headers: &HeaderMap) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self
                .headers
                .iter()
                .all(|(name, value)| headers.get_all(name).iter().any(|v| v == value))
    }

    /// Whether every request this route accepts (by method and headers) `other` accepts too.
    fn is_covered_by(&self, other: &Self) -> bool {
        let methods = other.methods.is_empty()
            || (!self.methods.is_empty() && self.methods.iter().all(|m| other.methods.contains(m)));
        methods && other.headers.iter().all(|h| self.headers.contains(h))
    }
}

/// The routes of one host pattern, by path. Each path's candidates are a span of `order`, in the
/// order they are tried (one allocation per group, not one per path).
#[derive(Debug, Clone, Default)]
struct Group {
    exact: HashMap<Box<str>, Span>,
    /// Longest prefix first.
    prefixes: Box<[PrefixRoutes]>,
    any_path: Span,
    order: Box<[usize]>,
}

/// A range of [`Group::order`].
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: usize,
    end: usize,
}

/// The routes of one `path_prefix` in a group, in the order they are tried.
#[derive(Debug, Clone)]
struct PrefixRoutes {
    prefix: Box<str>,
    routes: Span,
}

impl Group {
    fn candidates(&self, span: Span) -> &[usize] {
        &self.order[span.start..span.end]
    }

    fn find<T>(
        &self,
        routes: &[Route<T>],
        path: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<usize> {
        let first = |span: Span| {
            self.candidates(span)
                .iter()
                .copied()
                .find(|&i| routes[i].accepts(method, headers))
        };
        if !self.exact.is_empty()
            && let Some(found) = self.exact.get(path).and_then(|&c| first(c))
        {
            return Some(found);
        }
        self.prefixes
            .iter()
            .filter(|p| path.starts_with(&*p.prefix))
            .find_map(|p| first(p.routes))
            .or_else(|| first(self.any_path))
    }
}

impl<T> RouteTable<T> {
    /// Validates `routes` (in config order) and compiles them; `default` serves the requests no
    /// route matches. Returns every error at once, ordered by route.
    pub fn compile(routes: Vec<RouteSpec<T>>, default: Option<T>) -> Result<Self, Vec<RouteError>> {
        let mut targets = Vec::with_capacity(routes.len());
        let specs: Vec<RouteSpec<()>> = routes
            .into_iter()
            .map(|spec| {
                targets.push(spec.target);
                RouteSpec {
                    name: spec.name,
                    host: spec.host,
                    path_exact: spec.path_exact,
                    path_prefix: spec.path_prefix,
                    methods: spec.methods,
                    headers: spec.headers,
                    target: (),
                }
            })
            .collect();
        Self::compile_borrowed(specs.iter().map(RouteSpec::borrowed).zip(targets), default)
    }

    /// [`compile`](Self::compile) for routes whose strings the caller keeps (the daemon keeps
    /// its validated config): nothing is copied but what the table holds.
    pub fn compile_borrowed<'a>(
        routes: impl IntoIterator<Item = (RouteRef<'a>, T)>,
        default: Option<T>,
    ) -> Result<Self, Vec<RouteError>> {
        let routes = routes.into_iter();
        let mut errors = Vec::new();
        let mut compiled = Vec::with_capacity(routes.size_hint().0);
        // One builder per host pattern. Routes of one host are usually written together, so the
        // previous route's host is compared before the map is looked up.
        let mut builders: Vec<(Option<HostPattern>, GroupBuilder)> = Vec::new();
        let mut group_of: HashMap<Option<HostPattern>, usize> = HashMap::new();
        let mut last: Option<usize> = None;
        for (index, (spec, target)) in routes.enumerate() {
            // Invalid routes are left out of the groups but keep their index.
            let before = errors.len();
            let (route, host, path) = validate(index, spec, target, &mut errors);
            if errors.len() == before {
                let group = match last.filter(|&g| builders[g].0 == host) {
                    Some(g) => g,
                    None => *group_of.entry(host.clone()).or_insert_with(|| {
                        builders.push((host, GroupBuilder::default()));
                        builders.len() - 1
                    }),
                };
                builders[group].1.add(path, index);
                last = Some(group);
            }
            compiled.push(route);
        }
        drop(group_of);

        let mut table = RouteTable {
            exact_hosts: HashMap::new(),
            wildcard_hosts: HashMap::new(),
            wildcard_len: (usize::MAX, 0),
            any_host: Group::default(),
            default,
            routes: Vec::new(),
            header_names: Vec::new(),
        };
        for (host, builder) in builders {
            let group = builder.build(&compiled, &mut errors);
            match host {
                None => table.any_host = group,
                Some(HostPattern::Exact(name)) => {
                    table.exact_hosts.insert(name, group);
                }
                Some(HostPattern::Wildcard(suffix)) => {
                    let (min, max) = &mut table.wildcard_len;
                    *min = (*min).min(suffix.len());
                    *max = (*max).max(suffix.len());
                    table.wildcard_hosts.insert(suffix, group);
                }
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(RouteError::route);
            return Err(errors);
        }
        for (name, _) in compiled.iter().flat_map(|r| r.headers.iter()) {
            if !table.header_names.contains(name) {
                table.header_names.push(name.clone());
            }
        }
        table.routes = compiled;
        Ok(table)
    }

    /// The header names routes match on (a request's fields of these names must be in the
    /// map given to [`Self::lookup`]).
    pub fn header_names(&self) -> &[HeaderName] {
        &self.header_names
    }

    /// The target serving a request to `host` (the `Host` header or `:authority`, port allowed)
    /// and `path` (a query string is ignored), or `None` (404). Allocates nothing.
    pub fn lookup(
        &self,
        host: &str,
        path: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<Matched<'_, T>> {
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        let find = |group: &Group| group.find(&self.routes, path, method, headers);
        let mut buf = [0u8; MAX_HOST_LEN];
        let by_host = host::normalize_request_host(host, &mut buf).and_then(|host| {
            let exact = self.exact_hosts.get(host).and_then(find);
            exact.or_else(|| {
                if self.wildcard_hosts.is_empty() {
                    return None;
                }
                let (min, max) = self.wildcard_len;
                host::wildcard_suffixes(host)
                    .skip_while(|suffix| suffix.len() > max)
                    .take_while(|suffix| suffix.len() >= min)
                    .find_map(|suffix| self.wildcard_hosts.get(suffix).and_then(find))
            })
        });
        match by_host.or_else(|| find(&self.any_host)) {
            Some(index) => {
                let route = &self.routes[index];
                Some(Matched {
                    target: &route.target,
                    route: &route.name,
                })
            }
            None => self.default.as_ref().map(|target| Matched {
                target,
                route: DEFAULT_ROUTE,
            }),
        }
    }

    /// The number of routes (the default target not counted).
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table has no routes (it may still have a default target).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The listener's default target.
    pub fn default_target(&self) -> Option<&T> {
        self.default.as_ref()
    }
}

/// What a route's path must be.
enum PathSpec {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
}

/// Validates one route, pushing its errors. The route is returned even when invalid (it is then
/// left out of the table), so that indices stay those of the config.
fn validate<T>(
    index: usize,
    spec: RouteRef<'_>,
    target: T,
    errors: &mut Vec<RouteError>,
) -> (Route<T>, Option<HostPattern>, PathSpec) {
    let route = index;
    if spec.name.is_empty() {
        errors.push(RouteError::EmptyName { route });
    } else if spec.name == DEFAULT_ROUTE {
        errors.push(RouteError::ReservedName { route });
    }

    let host = spec.host.and_then(|host| match host::parse_pattern(host) {
        Ok(pattern) => Some(pattern),
        Err(reason) => {
            errors.push(RouteError::InvalidHost {
                route,
                host: host.to_owned(),
                reason,
            });
            None
        }
    });

    let mut check_path = |path: &str| match path_error(path) {
        None => Box::from(path),
        Some(reason) => {
            errors.push(RouteError::InvalidPath {
                route,
                path: path.to_owned(),
                reason,
            });
            Box::from("")
        }
    };
    let path = match (spec.path_exact, spec.path_prefix) {
        (None, None) => PathSpec::Any,
        (Some(exact), None) => PathSpec::Exact(check_path(exact)),
        (None, Some(prefix)) => PathSpec::Prefix(check_path(prefix)),
        (Some(_), Some(_)) => {
            errors.push(RouteError::BothPaths { route });
            PathSpec::Any
        }
    };

    // No allocation for the usual route without methods.
    let mut methods = Vec::with_capacity(match spec.methods.len() {
        0 => 0,
        n => n + 1,
    });
    for method in spec.methods {
        match Method::from_bytes(method.as_bytes()) {
            Ok(m) if !method.bytes().any(|b| b.is_ascii_lowercase()) => methods.push(m),
            _ => errors.push(RouteError::InvalidMethod {
                route,
                method: method.clone(),
            }),
        }
    }
    if methods.contains(&Method::GET) {
        methods.push(Method::HEAD);
    }
    methods.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    methods.dedup();

    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(spec.headers.len());
    for (name, value) in spec.headers {
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            errors.push(RouteError::InvalidHeaderName {
                route,
                name: name.clone(),
            });
            continue;
        };
        let trimmed = value.trim_matches([' ', '\t']).len() == value.len();
        match HeaderValue::from_str(value) {
            Ok(v) if trimmed => {
                if !headers.iter().any(|(n, x)| *n == header && *x == v) {
                    headers.push((header, v));
                }
            }
            _ => errors.push(RouteError::InvalidHeaderValue {
                route,
                name: name.clone(),
                value: value.clone(),
            }),
        }
    }

    let route = Route {
        name: Box::from(spec.name),
        methods: methods.into_boxed_slice(),
        headers: headers.into_boxed_slice(),
        target,
    };
    (route, host, path)
}

fn path_error(path: &str) -> Option<PathError> {
    if !path.starts_with('/') {
        Some(PathError::NotAbsolute)
    } else if path.contains(['?', '#']) {
        Some(PathError::QueryOrFragment)
    } else if path.chars().any(|c| c == ' ' || c.is_control()) {
        Some(PathError::InvalidCharacter)
    } else {
        None
    }
}

/// The routes of one host pattern while they are collected, in config order.
#[derive(Default)]
struct GroupBuilder {
    exact: Vec<(Box<str>, usize)>,
    prefixes: Vec<(Box<str>, usize)>,
    any_path: Vec<usize>,
}

impl GroupBuilder {
    fn add(&mut self, path: PathSpec, index: usize) {
        match path {
            PathSpec::Any => self.any_path.push(index),
            PathSpec::Exact(path) => self.exact.push((path, index)),
            PathSpec::Prefix(prefix) => self.prefixes.push((prefix, index)),
        }
    }

    fn build<T>(mut self, routes: &[Route<T>], errors: &mut Vec<RouteError>) -> Group {
        let mut order =
            Vec::with_capacity(self.exact.len() + self.prefixes.len() + self.any_path.len());
        let mut exact = HashMap::new();
        for_each_path(self.exact, |path, candidates| {
            exact.insert(path, try_order(candidates, routes, errors, &mut order));
        });
        let mut prefixes = Vec::new();
        for_each_path(self.prefixes, |prefix, candidates| {
            let routes = try_order(candidates, routes, errors, &mut order);
            prefixes.push(PrefixRoutes { prefix, routes });
        });
        // Longest first; equal lengths are different strings, so at most one of them matches.
        prefixes.sort_by(|a, b| {
            (b.prefix.len().cmp(&a.prefix.len())).then_with(|| a.prefix.cmp(&b.prefix))
        });
        let any_path = try_order(&mut self.any_path, routes, errors, &mut order);
        Group {
            exact,
            prefixes: prefixes.into_boxed_slice(),
            any_path,
            order: order.into_boxed_slice(),
        }
    }
}

/// Calls `f` once per distinct path of `pairs` (`(path, route)`, in config order) with the
/// path's routes in config order.
fn for_each_path(mut pairs: Vec<(Box<str>, usize)>, mut f: impl FnMut(Box<str>, &mut Vec<usize>)) {
    // Stable: the routes of one path stay in config order.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut candidates = Vec::new();
    let mut pairs = pairs.into_iter().peekable();
    while let Some((path, first)) = pairs.next() {
        candidates.clear();
        candidates.push(first);
        while let Some((_, index)) = pairs.next_if(|(p, _)| *p == path) {
            candidates.push(index);
        }
        f(path, &mut candidates);
    }
}

/// Orders the routes sharing a host pattern and a path (given in config order) as they are tried:
/// constrained ones first, in config order, then unconstrained ones, and appends them to `order`.
/// Reports those that can never match because one tried before takes all their requests.
fn try_order<T>(
    candidates: &mut [usize],
    routes: &[Route<T>],
    errors: &mut Vec<RouteError>,
    order: &mut Vec<usize>,
) -> Span {
    let start = order.len();
    candidates.sort_by_key(|&i| !routes[i].is_constrained());
    for &mut index in candidates {
        let route = &routes[index];
        match order[start..]
            .iter()
            .find(|&&k| route.is_covered_by(&routes[k]))
        {
            Some(&earlier) => {
                let same = routes[earlier].is_covered_by(route);
                errors.push(if same {
                    RouteError::Duplicate {
                        route: index,
                        earlier,
                    }
                } else {
                    RouteError::Shadowed {
                        route: index,
                        earlier,
                    }
                });
            }
            None => order.push(index),
        }
    }
    Span {
        start,
        end: order.len(),
    }
}
