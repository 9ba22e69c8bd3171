//! Header rewriting on the way to the backend and back: hop-by-hop headers removed (RFC 9110
//! §7.6.1, including those named in `Connection`; `Trailer` is end to end and stays, or
//! HTTP/1.1 trailers would be dropped), X-Forwarded-For appended,
//! X-Forwarded-Proto/-Host set, an optional RFC 7239 `Forwarded` element and request id added.

use std::net::{IpAddr, SocketAddr};

use http::header::{CONNECTION, Entry, HOST, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::proxy::RequestHost;

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
    /// `client`'s address as a header value.
    pub client_ip: &'a HeaderValue,
    pub tls: bool,
    /// The host the client asked for (Host header or :authority), if any.
    pub host: Option<&'a RequestHost>,
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

    // One X-Forwarded-For line: the client's address appended to the first one the request
    // had (one map lookup: most requests have none).
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(vacant) => {
            vacant.insert(f.client_ip.clone());
        }
        Entry::Occupied(mut prior) => {
            let list = prior
                .get()
                .to_str()
                .ok()
                .filter(|p| !p.trim().is_empty())
                .map(|p| format!("{p}, {}", client_ip(f.client)));
            let value = match list {
                Some(list) => HeaderValue::try_from(list).ok(),
                None => Some(f.client_ip.clone()),
            };
            match value {
                Some(value) => {
                    prior.insert(value);
                }
                None => {
                    prior.remove_entry_mult().1.for_each(drop);
                }
            }
        }
    }
    let proto = if f.tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(host) = f.host {
        headers.insert(X_FORWARDED_HOST, host.value.clone());
        // The host the request was routed on: the Host header, or the target's authority
        // (HTTP/2, or an absolute-form target, whose host replaces Host: RFC 9112 §3.2.2).
        if host.from_target {
            headers.insert(HOST, host.value.clone());
        }
    }
    if f.forwarded {
        let ip = client_ip(f.client);
        let for_ = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        let mut element = format!("for={for_};proto={proto}");
        if let Some(host) = f.host.and_then(|h| h.value.to_str().ok()) {
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

/// Hop-by-hop headers a message may carry, besides those its `Connection` names.
const HOP_BY_HOP_COUNT: usize = 7;
/// A static, not a const: a const array would be built and dropped at each use.
static HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// `name`'s index in [`HOP_BY_HOP`] (a match on the name is one length test and at most one
/// compare, where comparing with each name in turn is seven).
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    let i = match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "transfer-encoding" => 5,
        "upgrade" => 6,
        _ => return None,
    };
    debug_assert_eq!(HOP_BY_HOP[i], name);
    Some(i)
}

/// A field Portico reads by name (see [`read_field`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadField {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    Te,
    Upgrade,
    Expect,
    /// `keep-alive`, `proxy-connection`, `proxy-authenticate`, `proxy-authorization`: hop-by-hop
    /// (as are `connection`, `transfer-encoding`, `upgrade` and `te` but `trailers`).
    HopByHop,
    /// `x-forwarded-for`, `-host`, `-proto`, `forwarded`: Portico appends to or replaces them.
    Forwarding,
}

impl ReadField {
    /// Whether a field of this kind goes no further than this hop (`te` but its `trailers`
    /// aside, which [`is_hop_by_hop_field`] keeps).
    pub(crate) fn is_hop_by_hop(self) -> bool {
        use ReadField::*;
        matches!(
            self,
            Te | Connection | TransferEncoding | Upgrade | HopByHop
        )
    }
}

/// Which of the fields Portico reads or rewrites by name `name` is, in any case; `None` for
/// a field it passes on unread. Those it reads: the host it routes on, the framing, hop-by-hop
/// fields, the forwarding fields it appends to, and `Expect`. One length test and at most one
/// compare (names of one length differ in their first byte).
pub(crate) fn read_field(name: &[u8]) -> Option<ReadField> {
    use ReadField::*;
    let first = name.first()?.to_ascii_lowercase();
    let (candidate, kind): (&[u8], ReadField) = match (name.len(), first) {
        (2, _) => (b"te", Te),
        (4, _) => (b"host", Host),
        (6, _) => (b"expect", Expect),
        (7, _) => (b"upgrade", Upgrade),
        (9, _) => (b"forwarded", Forwarding),
        (10, b'c') => (b"connection", Connection),
        (10, _) => (b"keep-alive", HopByHop),
        (14, _) => (b"content-length", ContentLength),
        (15, _) => (b"x-forwarded-for", Forwarding),
        (16, b'p') => (b"proxy-connection", HopByHop),
        (16, _) => (b"x-forwarded-host", Forwarding),
        (17, b't') => (b"transfer-encoding", TransferEncoding),
        (17, _) => (b"x-forwarded-proto", Forwarding),
        (18, _) => (b"proxy-authenticate", HopByHop),
        (19, _) => (b"proxy-authorization", HopByHop),
        _ => return None,
    };
    name.eq_ignore_ascii_case(candidate).then_some(kind)
}

/// Whether Portico reads the field `name` (in any case): it must be in the header map.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn is_read_by_portico(name: &[u8]) -> bool {
    read_field(name).is_some()
}

/// Whether a field goes no further than this hop: one of the hop-by-hop names, or a `TE`
/// field other than `trailers` (gRPC needs `te: trailers`, the one TE value that is end to end
/// in practice). Fields that Connection names go too: see [`connection_named`]. For a field as
/// it came off the wire, its name in any case: one length test and at most one compare. (Its
/// own table rather than [`read_field`]'s: it runs for every field of every response, most of
/// whose names share a length with one `read_field` knows but none with a hop-by-hop one;
/// going through `read_field` cost about 1.5k instructions per response. A test keeps the two
/// in agreement.)
pub(crate) fn is_hop_by_hop_field(name: &[u8], value: &[u8]) -> bool {
    let hop: &[u8] = match name.len() {
        2 => {
            return name.eq_ignore_ascii_case(b"te") && !value.eq_ignore_ascii_case(b"trailers");
        }
        7 => b"upgrade",
        10 if name[0].eq_ignore_ascii_case(&b'c') => b"connection",
        10 => b"keep-alive",
        16 => b"proxy-connection",
        17 => b"transfer-encoding",
        18 => b"proxy-authenticate",
        19 => b"proxy-authorization",
        _ => return false,
    };
    name.eq_ignore_ascii_case(hop)
}

fn is_te_trailers(value: &HeaderValue) -> bool {
    value.as_bytes().eq_ignore_ascii_case(b"trailers")
}

/// The field a Connection token names, when it is not one that goes anyway (a hop-by-hop name
/// or `te`). `close` names a field `close` too (RFC 9110 §7.6.1), which goes with it.
pub(crate) fn connection_named(token: &[u8]) -> Option<HeaderName> {
    if !names_a_field(token) {
        return None;
    }
    HeaderName::from_bytes(token).ok()
}

/// Whether a Connection token names a field to drop at this hop that would not go anyway
/// (see [`connection_named`]), without making its name. `Host` is never dropped: Portico
/// routed on it, and an HTTP/1.1 request without one is a bad request (a client's
/// `Connection: host` would otherwise have the backend answer 400).
pub(crate) fn names_a_field(token: &[u8]) -> bool {
    !read_field(token).is_some_and(|kind| kind.is_hop_by_hop() || kind == ReadField::Host)
}

/// The non-empty elements of one comma-separated field value, optional whitespace trimmed.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

/// Whether `value` is `host [":" port]` (RFC 9110 §7.2, RFC 3986 §3.2.2): an IP literal in
/// brackets, or a non-empty reg-name (letters, digits, `-._~`, sub-delims, `%HH`; an IPv4
/// address is one), then optionally `:` and digits. No user info (`@`), no second `:` outside
/// brackets, no path, spaces, controls or non-ASCII: nothing a backend could read as another
/// host than the one Portico routes on (the text before the first `:`).
pub(crate) fn is_host_value(value: &[u8]) -> bool {
    let (host_ok, port) = match value.strip_prefix(b"[") {
        Some(literal) => match literal.iter().position(|&b| b == b']') {
            // IPv6, IPvFuture, a zone id (`%25eth0`): checked as characters.
            Some(close) => (
                close > 0
                    && literal[..close]
                        .iter()
                        .all(|&b| is_reg_name_byte(b) || b == b':'),
                &literal[close + 1..],
            ),
            None => return false,
        },
        None => {
            let colon = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            let name = &value[..colon];
            (!name.is_empty() && is_reg_name(name), &value[colon..])
        }
    };
    host_ok
        && match port.split_first() {
            None => true,
            Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
            Some(_) => false,
        }
}

/// RFC 3986 reg-name: unreserved, sub-delims and percent-encoded bytes.
fn is_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = name.get(i) {
        if b == b'%' {
            match name.get(i + 1..i + 3) {
                Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => i += 3,
                _ => return false,
            }
        } else if is_reg_name_byte(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Unreserved and sub-delims (RFC 3986 §2.2, §2.3), plus `%` (callers check what follows it).
fn is_reg_name_byte(b: u8) -> bool {
    REG_NAME_BYTES[usize::from(b)]
}

/// [`is_reg_name_byte`] as a table: every request's host goes through it, and a scan of the
/// punctuation list for each `.` cost about 500 instructions a request (callgrind).
static REG_NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let punctuation = b"-._~%!$&'()*+,;=";
    let mut i = 0;
    while i < punctuation.len() {
        table[punctuation[i] as usize] = true;
        i += 1;
    }
    table
};

/// `s` without the optional whitespace (spaces and tabs) around it.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Removes the hop-by-hop fields of a message that is already in a map (requests from hyper,
/// responses from HTTP/2 backends): the rules of [`is_hop_by_hop_field`] and [`connection_named`],
/// which the HTTP/1.1 client codec applies to response heads as it parses them.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds what is there, so a message without hop-by-hop headers
    // (most requests) costs no lookups for each of them.
    let mut present = [false; HOP_BY_HOP_COUNT];
    let mut te = false;
    for name in headers.keys() {
        match hop_by_hop_index(name) {
            Some(i) => present[i] = true,
            None => te |= *name == TE,
        }
    }
    if present[0] {
        // Headers named in Connection are hop-by-hop too. The usual tokens (`keep-alive`,
        // `upgrade`) name headers of the list above, which go anyway: only others are
        // collected (no allocation for the usual ones).
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|v| list_elements(v.as_bytes()))
            .filter_map(connection_named)
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (name, there) in HOP_BY_HOP.iter().zip(present) {
        if there {
            headers.remove(name);
        }
    }
    if te {
        // TE is a list of fields: each one is judged alone, as the codec judges it.
        let kept: Vec<HeaderValue> = headers
            .get_all(TE)
            .iter()
            .filter(|v| is_te_trailers(v))
            .cloned()
            .collect();
        headers.remove(TE);
        for value in kept {
            headers.append(TE, value);
        }
    }
}

pub(crate) fn client_ip(addr: SocketAddr) -> IpAddr {
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

    static V4_CLIENT: HeaderValue = HeaderValue::from_static("192.0.2.7");

    /// A host from the request target (as HTTP/2 carries it), so Host is set from it too.
    fn target_host(host: &'static str) -> RequestHost {
        RequestHost {
            value: HeaderValue::from_static(host),
            from_target: true,
        }
    }

    fn forwarding(host: Option<&RequestHost>) -> Forwarding<'_> {
        Forwarding {
            client: "192.0.2.7:5555".parse().unwrap(),
            client_ip: &V4_CLIENT,
            tls: true,
            host,
            forwarded: true,
            request_id: None,
            upgrade: false,
        }
    }

    #[test]
    fn host_values_are_hosts_and_ports() {
        for ok in [
            &b"api.example.com"[..],
            b"api.example.com:8443",
            b"api.example.com.",
            b"api.example.com:",
            b"192.0.2.7:80",
            b"[2001:db8::1]:443",
            b"[2001:db8::1]",
            b"[fe80::1%25eth0]",
            b"[v1.fe80::a+en1]",
            b"xn--bcher-kva.example",
            b"caf%C3%A9.example",
        ] {
            assert!(is_host_value(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b""[..],
            b"user@api.example.com",
            b"api.test:@evil.test",
            b"api.example.com/x",
            b"api.example.com?",
            b"api.example.com#",
            b"api example.com",
            b"api.example.com\t",
            b"api\\example.com",
            b"b\xc3\xbccher.example",
            b"api.test:80,evil.test",
            b"a.test:b.test:80",
            b"api.test:http",
            b":80",
            b"api%zz.test",
            b"api%2",
            b"[::1",
            b"[]:80",
            b"[::1]x",
            b"[::1]:8a",
            b"]x",
            b"x]:[",
        ] {
            assert!(!is_host_value(bad), "{:?}", String::from_utf8_lossy(bad));
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
        let host = target_host("api.example.com");
        to_backend(&mut h, &forwarding(Some(&host)));
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
        let v6_client = HeaderValue::from_static("2001:db8::1");
        let mut f = forwarding(None);
        f.upgrade = true;
        f.client = "[2001:db8::1]:1".parse().unwrap();
        f.client_ip = &v6_client;
        to_backend(&mut h, &f);
        assert_eq!(h[TE], "trailers");
        assert_eq!(h[UPGRADE], "websocket");
        assert_eq!(h[CONNECTION], "upgrade");
        assert_eq!(h[FORWARDED], "for=\"[2001:db8::1]\";proto=https");
    }

    #[test]
    fn every_hop_by_hop_name_is_found_by_its_index() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        for name in [
            TE,
            HOST,
            X_FORWARDED_FOR,
            HeaderName::from_static("upgrade-x"),
        ] {
            assert_eq!(hop_by_hop_index(&name), None, "{name}");
        }
    }

    #[test]
    fn a_field_off_the_wire_is_judged_as_its_header_map_entry_is() {
        let names = [
            "Connection",
            "KEEP-ALIVE",
            "proxy-Connection",
            "Proxy-Authenticate",
            "proxy-authorization",
            "Transfer-Encoding",
            "Upgrade",
            "TE",
            "te",
            "X-Other",
            "Content-Length",
            "connectioN",
            "keep-alivf",
            "Date",
            "Host",
            "Cookie",
        ];
        for name in names {
            for value in ["trailers", "TRAILERS", "gzip", "close"] {
                // What `remove_hop_by_hop` removes from a map.
                let header = HeaderName::from_bytes(name.as_bytes()).unwrap();
                let expected = hop_by_hop_index(&header).is_some()
                    || (header == TE && !is_te_trailers(&HeaderValue::from_static(value)));
                let got = is_hop_by_hop_field(name.as_bytes(), value.as_bytes());
                assert_eq!(got, expected, "{name}: {value}");
            }
        }
    }

    /// [`is_hop_by_hop_field`]'s table and [`read_field`]'s say the same of every name either
    /// knows, in any case.
    #[test]
    fn the_hop_by_hop_table_agrees_with_read_field() {
        let names = [
            "te",
            "Host",
            "expect",
            "Upgrade",
            "forwarded",
            "Connection",
            "KEEP-ALIVE",
            "content-length",
            "x-forwarded-for",
            "Proxy-Connection",
            "x-forwarded-host",
            "transfer-encoding",
            "X-Forwarded-Proto",
            "proxy-authenticate",
            "proxy-authorization",
            "Date",
            "Server",
            "ETag",
            "Content-Type",
            "x-upgrade",
        ];
        for name in names {
            let hop = read_field(name.as_bytes()).is_some_and(ReadField::is_hop_by_hop);
            assert_eq!(is_hop_by_hop_field(name.as_bytes(), b"gzip"), hop, "{name}");
        }
    }

    #[test]
    fn connection_tokens_and_names_are_matched_without_case() {
        let mut h = HeaderMap::new();
        h.append(CONNECTION, HeaderValue::from_static("Keep-Alive , X-Hop"));
        h.append(CONNECTION, HeaderValue::from_static("close"));
        h.insert(KEEP_ALIVE, HeaderValue::from_static("timeout=5"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("close", HeaderValue::from_static("named in Connection"));
        h.insert("x-end-to-end", HeaderValue::from_static("1"));
        to_client(&mut h, false);
        assert!(!h.contains_key(CONNECTION));
        assert!(!h.contains_key(KEEP_ALIVE));
        assert!(!h.contains_key("x-hop"));
        assert!(!h.contains_key("close"));
        assert_eq!(h["x-end-to-end"], "1");
        assert_eq!(h.len(), 1, "{h:?}");
    }

    #[test]
    fn a_message_without_hop_by_hop_headers_keeps_every_header() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        h.insert("content-length", HeaderValue::from_static("100"));
        h.append("set-cookie", HeaderValue::from_static("a=1"));
        h.append("set-cookie", HeaderValue::from_static("b=2"));
        let before = h.clone();
        to_client(&mut h, false);
        assert_eq!(h, before);
    }

    #[test]
    fn a_host_from_the_host_header_is_forwarded_and_left_in_place() {
        let host = RequestHost {
            value: HeaderValue::from_static("app.test:8080"),
            from_target: false,
        };
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("app.test:8080"));
        to_backend(&mut h, &forwarding(Some(&host)));
        assert_eq!(h.get_all(HOST).iter().count(), 1);
        assert_eq!(h[HOST], "app.test:8080");
        assert_eq!(h[X_FORWARDED_HOST], "app.test:8080");
        assert_eq!(h[X_FORWARDED_FOR], "192.0.2.7");
        assert_eq!(
            h[FORWARDED],
            "for=192.0.2.7;proto=https;host=\"app.test:8080\""
        );
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
