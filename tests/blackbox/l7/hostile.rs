//! Clients that are slow, odd or malicious: silent and slow (slowloris) connections against
//! `header_timeout`, header count limits on both protocols, and requests whose host is
//! ambiguous (two Host headers, an absolute-form target that disagrees with Host).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{pools_of, read_response};
use crate::harness::http_backend::{Echoed, HttpBackend};
use crate::harness::real_clients::Curl;
use crate::harness::{Portico, connect};

/// Slack on top of a configured timeout before a test calls it missed (CI has 2 busy cores).
const MARGIN: Duration = Duration::from_secs(3);

/// How long until Portico closes `s` (EOF or reset), reading and dropping what it sends;
/// None if it is still open after `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some(started.elapsed()),
        }
        if started.elapsed() > limit {
            return None;
        }
    }
}

fn timeout_config(backend: &HttpBackend) -> String {
    format!(
        r#"{pools}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"
pool = "{name}"
header_timeout = "1s"
"#,
        pools = pools_of(&[backend]),
        name = backend.name,
    )
}

#[test]
fn slow_headers_and_idle_keep_alive_connections_are_closed_after_header_timeout() {
    let backend = HttpBackend::start("web");
    let portico = Portico::start(&timeout_config(&backend));
    let addr = portico.addr("web");
    let limit = Duration::from_secs(1) + MARGIN;

    // Slowloris: a request head that never ends.
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: 1\r\n")
        .unwrap();
    let took = closed_within(&mut s, limit);
    assert!(took.is_some(), "an unfinished head was kept open");
    assert!(took.unwrap() >= Duration::from_millis(900), "{took:?}");

    // A kept-alive connection idle after its first request.
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s);
    assert_eq!(Echoed::parse(&r.text()).backend, "web");
    assert!(
        closed_within(&mut s, limit).is_some(),
        "an idle kept-alive connection was kept open"
    );
}

/// A connection that sends nothing at all is idle before its first request: `header_timeout`
/// must close it too, or silent connections pile up to `max_connections` and lock every
/// client out.
#[test]
fn a_connection_that_sends_nothing_is_closed_after_header_timeout() {
    let backend = HttpBackend::start("web");
    let portico = Portico::start(&timeout_config(&backend));
    let mut s = connect(portico.addr("web"));
    let took = closed_within(&mut s, Duration::from_secs(1) + MARGIN);
    assert!(
        took.is_some(),
        "a silent connection is still open {:?} after header_timeout = 1s",
        MARGIN
    );
}

#[test]
fn max_headers_holds_on_http1_and_http2() {
    let backend = HttpBackend::start("web");
    let portico = Portico::start(&format!(
        r#"{pools}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"
pool = "web"
max_headers = 10
"#,
        pools = pools_of(&[&backend]),
    ));
    let addr = portico.addr("web");
    // curl adds Host, User-Agent and Accept.
    let with_headers = |n: usize, http2: bool| {
        let mut c = Curl::http(addr, "/");
        for i in 0..n {
            c = c.header(&format!("X-H{i}: v"));
        }
        if http2 {
            c = c.arg("--http2-prior-knowledge");
        }
        c.run()
    };
    for http2 in [false, true] {
        let r = with_headers(3, http2);
        assert_eq!(r.status, 200, "h2 {http2}: 6 headers are fine: {r:#?}");
        let r = with_headers(20, http2);
        assert_eq!(
            r.status, 431,
            "h2 {http2}: 23 headers over max_headers = 10"
        );
    }
    assert_eq!(backend.requests(), 2);
}

fn host_config(api: &HttpBackend, other: &HttpBackend) -> String {
    format!(
        r#"{pools}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"

[[listeners.web.routes]]
host = "api.test"
pool = "api"

[[listeners.web.routes]]
host = "other.test"
pool = "other"
"#,
        pools = pools_of(&[api, other]),
    )
}

/// RFC 9112 §3.2: a server MUST answer 400 to a request with more than one Host line.
/// Portico routes by one of them; a backend may read the other.
#[test]
fn two_host_headers_get_400() {
    let api = HttpBackend::start("api");
    let other = HttpBackend::start("other");
    let portico = Portico::start(&host_config(&api, &other));
    let mut s = connect(portico.addr("web"));
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: api.test\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut s);
    let seen = (r.status == 200).then(|| Echoed::parse(&r.text()));
    assert_eq!(
        r.status,
        400,
        "routed to {:?}, which saw Host {:?}",
        seen.as_ref().map(|e| &e.backend),
        seen.as_ref().map(|e| e.all("host"))
    );
    assert_eq!(api.requests() + other.requests(), 0);
}

/// RFC 9112 §3.2: a request without a host, or whose host is not `host [":" port]`, gets 400:
/// on the own path (no body, a small one) and hyper's (a chunked body), over HTTP/1.1 and
/// HTTP/2, from the Host header or the target's authority. A catch-all route stands behind the host route, so a
/// request that slipped through would get a backend's 200.
#[test]
fn a_missing_or_invalid_host_gets_400() {
    let api = HttpBackend::start("api");
    let other = HttpBackend::start("other");
    let portico = Portico::start(&format!(
        r#"{pools}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"

[[listeners.web.routes]]
host = "api.test"
pool = "api"

[[listeners.web.routes]]
pool = "other"
"#,
        pools = pools_of(&[&api, &other]),
    ));
    let ask = |request: &[u8]| {
        let mut s = connect(portico.addr("web"));
        s.write_all(request).unwrap();
        let r = read_response(&mut s);
        (r.status, r.text())
    };
    for request in [
        &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        // A chunked body: hyper serves it (the own path serves small bodies sent with the head).
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        b"GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: other.test@api.test\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: api.test/x\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: api.test:80,evil.test\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: api.test:http\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: api test\r\n\r\n",
        b"GET http://api.test:@evil.test/ HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET http://api.test/ HTTP/1.1\r\nHost: api.test/x\r\nConnection: close\r\n\r\n",
    ] {
        let (status, text) = ask(request);
        assert_eq!(
            status,
            400,
            "{:?}: {text}",
            String::from_utf8_lossy(request)
        );
        assert!(text.contains("Host"), "{text}");
    }
    // HTTP/2: curl sends the Host header as :authority.
    for host in ["api.test:@evil.test", "api.test:80,evil.test"] {
        let r = Curl::http(portico.addr("web"), "/")
            .arg("--http2-prior-knowledge")
            .header(&format!("Host: {host}"))
            .run();
        assert_eq!(r.status, 400, "h2 :authority {host}: {r:#?}");
    }
    assert_eq!(api.requests() + other.requests(), 0);

    // Hosts to route on: HTTP/1.0 needs none; an absolute-form target stands in for Host.
    assert_eq!(ask(b"GET / HTTP/1.0\r\n\r\n").0, 200);
    assert_eq!(
        ask(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n").0,
        200
    );
    assert_eq!(other.requests(), 2);
    assert_eq!(
        ask(b"GET http://api.test/ HTTP/1.1\r\nConnection: close\r\n\r\n").0,
        200
    );
    assert_eq!(
        ask(b"GET / HTTP/1.1\r\nHost: api.test.:80\r\nConnection: close\r\n\r\n").0,
        200
    );
    assert_eq!(api.requests(), 2);
}

/// RFC 9112 §3.2.2: with an absolute-form target, a proxy ignores the Host header and uses the
/// target's host. Portico routes by the target: the backend must see that host too, not the
/// one the route was not chosen for.
#[test]
fn an_absolute_form_target_decides_the_host_for_routing_and_for_the_backend() {
    let api = HttpBackend::start("api");
    let other = HttpBackend::start("other");
    let portico = Portico::start(&host_config(&api, &other));
    let mut s = connect(portico.addr("web"));
    s.write_all(b"GET http://api.test/x HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 200, "{r:?}");
    let e = Echoed::parse(&r.text());
    assert_eq!(e.backend, "api");
    assert_eq!(e.header("x-forwarded-host"), Some("api.test"));
    assert_eq!(
        e.header("host"),
        Some("api.test"),
        "routed as api.test, but the backend was told another host"
    );
}
