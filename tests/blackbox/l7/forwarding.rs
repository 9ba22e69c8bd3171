//! What crosses Portico besides the body: forwarding headers added, hop-by-hop headers
//! removed both ways, request ids; and an upgraded (WebSocket-style) connection tunnelled end
//! to end.

use std::io::{Read, Write};
use std::net::Shutdown;

use super::{echoed, pools_of, read_response};
use crate::harness::http_backend::{Echoed, HttpBackend};
use crate::harness::real_clients::Curl;
use crate::harness::{Portico, connect};

fn forwarding_config(backend: &HttpBackend) -> String {
    format!(
        r#"{pools}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"
pool = "{name}"
forwarded = true
request_id = "x-request-id"
"#,
        pools = pools_of(&[backend]),
        name = backend.name,
    )
}

#[test]
fn the_backend_sees_forwarding_headers_and_no_hop_by_hop_ones() {
    let backend = HttpBackend::start("web");
    let portico = Portico::start(&forwarding_config(&backend));
    let addr = portico.addr("web");

    let r = Curl::http(addr, "/path?q=1")
        .host("app.test")
        .header("X-Forwarded-For: 203.0.113.9")
        .header("Connection: x-secret")
        .header("X-Secret: do not forward")
        .header("Keep-Alive: timeout=5")
        .header("Proxy-Authorization: Basic Zm9vOmJhcg==")
        .header("Proxy-Connection: keep-alive")
        .header("X-Keep: end to end")
        .header("X-Forwarded-Proto: https")
        .header("X-Forwarded-Host: spoofed.test")
        .run();
    let e = echoed(&r);
    assert_eq!(e.request_line, "GET /path?q=1 HTTP/1.1");
    assert_eq!(e.header("host"), Some("app.test"), "Host is kept");
    assert_eq!(e.header("x-forwarded-for"), Some("203.0.113.9, 127.0.0.1"));
    // A client's own X-Forwarded-Proto/-Host are replaced, not believed.
    assert_eq!(e.header("x-forwarded-proto"), Some("http"));
    assert_eq!(e.header("x-forwarded-host"), Some("app.test"));
    assert_eq!(
        e.header("forwarded"),
        Some("for=127.0.0.1;proto=http;host=app.test")
    );
    assert_eq!(e.header("x-keep"), Some("end to end"));
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert_eq!(e.header(gone), None, "{gone} reached the backend: {e:#?}");
    }
    let generated = e.header("x-request-id").expect("a generated request id");
    assert_eq!(generated.len(), 32, "{generated}");
    assert!(
        generated.bytes().all(|b| b.is_ascii_hexdigit()),
        "{generated}"
    );

    // And on the way back: the backend's hop-by-hop header stops at Portico.
    assert_eq!(r.header("x-backend"), Some("web"));
    assert_eq!(r.header("x-backend-hop"), None, "{:#?}", r.headers);

    // Ids differ between requests, and a client's own id is kept.
    let again = echoed(&Curl::http(addr, "/").run());
    assert_ne!(again.header("x-request-id"), Some(generated));
    let mine = echoed(&Curl::http(addr, "/").header("X-Request-Id: mine-42").run());
    assert_eq!(mine.header("x-request-id"), Some("mine-42"));
    // Without an incoming X-Forwarded-For, the list starts with the client.
    assert_eq!(mine.header("x-forwarded-for"), Some("127.0.0.1"));
}

/// RFC 7239 §4: a value that is not a `token` must be a quoted-string, and `:` is not a token
/// character: `host=app.test:8080` is malformed, `host="app.test:8080"` is right.
#[test]
fn a_forwarded_host_with_a_port_is_quoted() {
    let backend = HttpBackend::start("web");
    let portico = Portico::start(&forwarding_config(&backend));
    let e = echoed(
        &Curl::http(portico.addr("web"), "/")
            .host("app.test:8080")
            .run(),
    );
    assert_eq!(e.header("x-forwarded-host"), Some("app.test:8080"));
    assert_eq!(
        e.header("forwarded"),
        Some("for=127.0.0.1;proto=http;host=\"app.test:8080\"")
    );
}

#[test]
fn a_websocket_upgrade_is_tunnelled_both_ways() {
    let backend = HttpBackend::start("ws");
    let portico = Portico::start(&format!(
        r#"{pools}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"

[[listeners.web.routes]]
path_prefix = "/ws"
pool = "ws"
"#,
        pools = pools_of(&[&backend]),
    ));
    let mut s = connect(portico.addr("web"));
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 101, "{r:?}");
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert!(
        r.header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("upgrade")),
        "{r:?}"
    );
    assert_eq!(r.header("x-backend"), Some("ws"));

    // Small messages, one at a time.
    for msg in [
        &b"hello through the tunnel"[..],
        b"\x81\x05bytes",
        b"\x00\xff",
    ] {
        s.write_all(msg).unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
    }
    // 1 MiB written while it is read back.
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut writer = s.try_clone().unwrap();
    let to_send = big.clone();
    let sender = std::thread::spawn(move || {
        writer.write_all(&to_send).unwrap();
        // Half-close: the backend sees EOF, finishes echoing and closes its side.
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    sender.join().unwrap();
    assert_eq!(got.len(), big.len());
    assert!(got == big, "the echoed bytes differ");
    assert_eq!(backend.requests(), 1);
}

#[test]
fn backend_statuses_pass_through_and_backend_connections_are_reused() {
    let pooled = HttpBackend::start("pooled");
    let closing = HttpBackend::builder("closing").keep_alive(false).start();
    let teapot = HttpBackend::builder("teapot").status(418).start();
    let portico = Portico::start(&format!(
        r#"{pools}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"

[[listeners.web.routes]]
path_prefix = "/pooled"
pool = "pooled"

[[listeners.web.routes]]
path_prefix = "/closing"
pool = "closing"

[[listeners.web.routes]]
path_prefix = "/teapot"
pool = "teapot"
"#,
        pools = pools_of(&[&pooled, &closing, &teapot]),
    ));
    let web = portico.addr("web");
    // Five client connections, one backend connection kept alive between them.
    for i in 0..5 {
        let r = Curl::http(web, &format!("/pooled/{i}")).run();
        assert_eq!(echoed(&r).backend, "pooled");
    }
    assert_eq!(pooled.requests(), 5);
    assert_eq!(
        pooled.connections(),
        1,
        "the idle backend connection was not reused"
    );
    // A backend that closes after each answer costs a connection per request, nothing more.
    for i in 0..3 {
        let r = Curl::http(web, &format!("/closing/{i}")).run();
        assert_eq!(echoed(&r).backend, "closing");
    }
    assert_eq!(closing.connections(), 3);

    // A backend's own error statuses are its answer, passed through with its body.
    let r = Curl::http(web, "/teapot").run();
    assert_eq!(r.status, 418);
    assert_eq!(Echoed::parse(&r.body).backend, "teapot");
    teapot.set_status(503);
    let r = Curl::http(web, "/teapot").run();
    assert_eq!(r.status, 503);
    assert_eq!(Echoed::parse(&r.body).backend, "teapot");
}

#[test]
fn a_route_can_rewrite_the_host_the_backend_sees() {
    let backend = HttpBackend::start("internal");
    let portico = Portico::start(&format!(
        r#"{pools}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"

[[listeners.web.routes]]
path_prefix = "/api/"
pool = "internal"
host_rewrite = "api.internal.svc"

[[listeners.web.routes]]
path_prefix = "/"
pool = "internal"
"#,
        pools = pools_of(&[&backend]),
    ));
    let addr = portico.addr("web");
    let rewritten = echoed(&Curl::http(addr, "/api/x").host("shop.example.com").run());
    assert_eq!(rewritten.header("host"), Some("api.internal.svc"));
    // The client's host is not lost: X-Forwarded-Host carries it.
    assert_eq!(
        rewritten.header("x-forwarded-host"),
        Some("shop.example.com")
    );
    let kept = echoed(&Curl::http(addr, "/other").host("shop.example.com").run());
    assert_eq!(
        kept.header("host"),
        Some("shop.example.com"),
        "Host is kept by default"
    );

    let err = Portico::try_start(&format!(
        "{pools}\n[listeners.web]\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n[[listeners.web.routes]]\npool = \"internal\"\nhost_rewrite = \"bad host/x\"\n",
        pools = pools_of(&[&backend]),
    ))
    .err()
    .expect("a bad host_rewrite is a config error");
    assert!(err.contains("listeners.web.routes.0.host_rewrite"), "{err}");
}
