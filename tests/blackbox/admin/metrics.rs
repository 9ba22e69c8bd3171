//! /metrics: who may read it, its format, and counters that follow the traffic.

use std::net::SocketAddr;

use super::prometheus::{Scrape, scrape};
use super::{TOKEN, admin_with_token, assert_error, eventually, ip, write_config};
use crate::harness::backend::{Behavior, TestBackend};
use crate::harness::http::{http, post};
use crate::harness::{Portico, assert_echo, connect, read_line};
use crate::l4::servers;

#[test]
fn metrics_need_the_token_when_protected() {
    let secrets = tempfile::tempdir().unwrap();
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let pool = format!("[pools.p]\nservers = {}\n", servers(&[&b]));
    let bearer = format!("Bearer {TOKEN}");
    // Explicitly protected on loopback, and protected by default on a non-loopback address.
    let explicit = admin_with_token(secrets.path(), "protect_metrics = true");
    let by_default = admin_with_token(secrets.path(), "").replace("127.0.0.1:0", "0.0.0.0:0");
    for admin_section in [explicit, by_default] {
        let portico = Portico::start(&format!("{admin_section}{pool}"));
        // An admin server on 0.0.0.0 is reached on loopback.
        let admin = SocketAddr::new(ip("127.0.0.1"), portico.admin_addr().port());
        for headers in [
            vec![],
            vec![("Authorization", "Bearer not-the-token-at-all")],
        ] {
            let r = http(admin, "GET", "/metrics", &headers, None);
            assert_error(
                &r,
                401,
                &format!("{admin_section}: /metrics with {headers:?}"),
            );
            assert!(r.header("www-authenticate").is_some(), "{r:?}");
        }
        let r = http(
            admin,
            "GET",
            "/metrics",
            &[("Authorization", &bearer)],
            None,
        );
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.body.contains("portico_backend_up"), "{r:?}");
        for path in ["/healthz", "/readyz"] {
            let r = http(admin, "GET", path, &[], None);
            assert_eq!(r.status, 200, "{path} stays open: {r:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Metrics.

#[test]
fn metrics_are_prometheus_text_and_follow_the_traffic() {
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let (_reserved, dead) = refusing_address();
    let config = format!(
        "[pools.p]\nservers = [\"{}\"]\n[pools.q]\nservers = [\"{dead}\"]\n\
         [listeners.l]\nbind = \"127.0.0.1:0\"\npool = \"p\"\n\
         [listeners.m]\nbind = \"127.0.0.1:0\"\npool = \"q\"\n",
        b.addr
    );
    let portico = Portico::start(&config);
    let backend = b.addr.to_string();
    let l = [("listener", "l")];
    let pb = [("pool", "p"), ("backend", backend.as_str())];
    let bytes = |s: &Scrape, dir: &str| {
        s.value(
            "portico_bytes_total",
            &[("listener", "l"), ("direction", dir)],
        )
        .unwrap_or(0.0)
    };

    let m = scrape(&portico);
    let connections_before = m.value("portico_connections_total", &l).unwrap_or(0.0);
    let (in_before, out_before) = (bytes(&m, "in"), bytes(&m, "out"));
    assert_eq!(m.value("portico_backend_up", &pb), Some(1.0), "{m:?}");
    assert_eq!(
        m.value("portico_backend_connections_active", &pb),
        Some(0.0)
    );

    // Five connections, each greeted with "b\n" (2 bytes out) and echoing 100 bytes; one stays
    // open. In and out differ, so a swapped direction shows.
    let payload = [b'x'; 100];
    let mut open = connect(portico.addr("l"));
    assert_eq!(read_line(&mut open), "b");
    assert_echo(&mut open, &payload);
    for _ in 0..4 {
        let mut s = connect(portico.addr("l"));
        assert_eq!(read_line(&mut s), "b");
        assert_echo(&mut s, &payload);
    }
    let mut last = Scrape::default();
    let counted = eventually(|| {
        last = scrape(&portico);
        let m = &last;
        m.value("portico_connections_total", &l) == Some(connections_before + 5.0)
            && bytes(m, "in") == in_before + 500.0
            && bytes(m, "out") == out_before + 510.0
            && m.value("portico_connections_active", &l) == Some(1.0)
            && m.value("portico_backend_connections_active", &pb) == Some(1.0)
    });
    assert!(
        counted,
        "5 connections, 500 bytes in, 510 out, 1 open: {last:#?}"
    );
    drop(open);
    let closed = eventually(|| {
        last = scrape(&portico);
        last.value("portico_connections_active", &l) == Some(0.0)
            && last.value("portico_backend_connections_active", &pb) == Some(0.0)
    });
    assert!(
        closed,
        "the closed connection is no longer counted: {last:#?}"
    );

    // A refused connect counts as an error of that backend.
    let mut s = connect(portico.addr("m"));
    let _ = std::io::Read::read(&mut s, &mut [0u8; 1]);
    let dead_label = dead.to_string();
    let errors = [("pool", "q"), ("backend", dead_label.as_str())];
    let counted = eventually(|| {
        last = scrape(&portico);
        last.value("portico_backend_connect_errors_total", &errors)
            .is_some_and(|v| v >= 1.0)
    });
    assert!(counted, "the refused connect is counted: {last:#?}");

    // Reloads, by result.
    post(portico.admin_addr(), "/api/v1/reload", None).expect(200);
    write_config(&portico, "this is [not toml");
    assert_error(
        &post(portico.admin_addr(), "/api/v1/reload", None),
        422,
        "broken",
    );
    let m = scrape(&portico);
    let reloads = |result: &str| m.value("portico_config_reloads_total", &[("result", result)]);
    assert_eq!(reloads("ok"), Some(1.0), "{m:?}");
    assert_eq!(reloads("error"), Some(1.0), "{m:?}");

    // Every L4 metric of the contract is there, with its type.
    for (name, kind) in [
        ("portico_connections_total", "counter"),
        ("portico_connections_active", "gauge"),
        ("portico_bytes_total", "counter"),
        ("portico_backend_up", "gauge"),
        ("portico_backend_connections_active", "gauge"),
        ("portico_backend_connect_errors_total", "counter"),
        ("portico_config_reloads_total", "counter"),
    ] {
        assert!(m.has(name), "{name} is exported");
        assert_eq!(
            m.types.get(name).map(String::as_str),
            Some(kind),
            "type of {name}"
        );
    }
}

/// An address where every connect is refused: a socket bound but not listening. Keeping it
/// bound keeps the port from going to a listener of another test meanwhile.
fn refusing_address() -> (socket2::Socket, SocketAddr) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let addr = socket
        .local_addr()
        .unwrap()
        .as_socket()
        .expect("an IP address");
    (socket, addr)
}
