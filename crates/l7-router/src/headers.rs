//! Header rewriting on the way to the backend and back: hop-by-hop headers removed (RFC 9110
//! §7.6.1, including those named in `Connection`; `Trailer` is end to end and stays, or
//! HTTP/1.1 trailers would be dropped), X-Forwarded-For appended,
//! X-Forwarded-Proto/-Host set, an optional RFC 7239 `Forwarded` element and request id added.

use std::net::{IpAddr, SocketAddr};

use http::header::{CONNECTION, HOST, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const PROXY_AUTHENTICATE: HeaderName = HeaderName::from_static("proxy-authenticate");
const PROXY_AUTHORIZATION: HeaderName = HeaderName::from_static("proxy-authorization");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// What the backend should learn about the client's request.
pub(crate) struct Forwarding<'a> {
    pub client: SocketAddr,
    pub tls: bool,
    /// The host the client asked for (Host header or :authority), if any.
    pub host: Option<&'a str>,
    /// Add an RFC 7239 `Forwarded` element.
    pub forwarded: bool,
    /// Generate this header when absent.
    pub request_id: Option<&'a HeaderName>,
    /// A WebSocket (or other) upgrade: `Connection: upgrade` and `Upgrade` pass through.
    pub upgrade: bool,
}

/// Rewrites a request's headers for the backend.
pub(crate) fn to_backend(headers: &mut HeaderMap, f: &Forwarding<'_>) {
    let upgrade_value = f.upgrade.then(|| headers.get(UPGRADE).cloned()).flatten();
    remove_hop_by_hop(headers);
    // gRPC over HTTP/2 needs `te: trailers`, the one TE value that is end to end in practice.
    if let Some(upgrade) = upgrade_value {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, upgrade);
    }

    let ip = client_ip(f.client);
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip}"),
        _ => ip.to_string(),
    };
    // Several X-Forwarded-For lines are one comma-separated list: fold them into one.
    headers.remove(&X_FORWARDED_FOR);
    if let Ok(v) = HeaderValue::try_from(xff) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    let proto = if f.tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(host) = f.host {
        if let Ok(v) = HeaderValue::from_str(host) {
            headers.insert(X_FORWARDED_HOST, v.clone());
            // The host the request was routed on: the Host header, or the target's authority
            // (HTTP/2, or an absolute-form target, whose host replaces Host: RFC 9112 §3.2.2).
            headers.insert(HOST, v);
        }
    }
    if f.forwarded {
        let for_ = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        let mut element = format!("for={for_};proto={proto}");
        if let Some(host) = f.host {
            element.push_str(";host=");
            push_token_or_quoted(&mut element, host);
        }
        let value = match headers.get(&FORWARDED).and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {element}"),
            None => element,
        };
        headers.remove(&FORWARDED);
        if let Ok(v) = HeaderValue::try_from(value) {
            headers.insert(FORWARDED, v);
        }
    }
    if let Some(name) = f.request_id {
        if !headers.contains_key(name) {
            let id = format!("{:032x}", fastrand::u128(..));
            if let Ok(v) = HeaderValue::try_from(id) {
                headers.insert(name.clone(), v);
            }
        }
    }
}

/// Rewrites a backend's response headers for the client.
pub(crate) fn to_client(headers: &mut HeaderMap, upgrade: bool) {
    let upgrade_value = upgrade.then(|| headers.get(UPGRADE).cloned()).flatten();
    remove_hop_by_hop(headers);
    if let Some(upgrade) = upgrade_value {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, upgrade);
    }
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if name != TE {
            headers.remove(name);
        }
    }
    let keep_te = headers
        .get(TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in [
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        headers.remove(name);
    }
    if !keep_te {
        headers.remove(TE);
    }
}

fn client_ip(addr: SocketAddr) -> IpAddr {
    match addr.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Appends `value` as an RFC 7239 value: a token as it is, anything else (a host with a port,
/// an IPv6 literal) as a quoted string.
fn push_token_or_quoted(out: &mut String, value: &str) {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !value.is_empty() && value.bytes().all(is_tchar) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarding(host: Option<&str>) -> Forwarding<'_> {
        Forwarding {
            client: "192.0.2.7:5555".parse().unwrap(),
            tls: true,
            host,
            forwarded: true,
            request_id: None,
            upgrade: false,
        }
    }

    #[test]
    fn hop_by_hop_headers_go_and_forwarding_headers_come() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(KEEP_ALIVE, HeaderValue::from_static("timeout=5"));
        h.insert(PROXY_AUTHORIZATION, HeaderValue::from_static("Basic x"));
        h.insert(TE, HeaderValue::from_static("gzip"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.2"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        to_backend(&mut h, &forwarding(Some("api.example.com")));
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "proxy-authorization",
            "te",
            "upgrade",
        ] {
            assert!(!h.contains_key(gone), "{gone} should be removed");
        }
        assert_eq!(h["x-keep"], "yes");
        assert_eq!(h[X_FORWARDED_FOR], "198.51.100.1, 192.0.2.7");
        assert_eq!(h[X_FORWARDED_PROTO], "https");
        assert_eq!(h[X_FORWARDED_HOST], "api.example.com");
        assert_eq!(h[HOST], "api.example.com");
        assert_eq!(
            h[FORWARDED],
            "for=192.0.2.7;proto=https;host=api.example.com"
        );
    }

    #[test]
    fn te_trailers_survives_for_grpc_and_upgrades_pass_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        let mut f = forwarding(None);
        f.upgrade = true;
        f.client = "[2001:db8::1]:1".parse().unwrap();
        to_backend(&mut h, &f);
        assert_eq!(h[TE], "trailers");
        assert_eq!(h[UPGRADE], "websocket");
        assert_eq!(h[CONNECTION], "upgrade");
        assert_eq!(h[FORWARDED], "for=\"[2001:db8::1]\";proto=https");
    }

    #[test]
    fn request_id_is_added_only_when_absent() {
        let name = HeaderName::from_static("x-request-id");
        let mut f = forwarding(None);
        f.request_id = Some(&name);
        let mut h = HeaderMap::new();
        to_backend(&mut h, &f);
        assert_eq!(h[&name].len(), 32);
        let mut h = HeaderMap::new();
        h.insert(name.clone(), HeaderValue::from_static("mine"));
        to_backend(&mut h, &f);
        assert_eq!(h[&name], "mine");
    }
}
