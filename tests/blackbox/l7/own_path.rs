//! Portico's own HTTP/1.1 server path (HTTP/1.1 requests in origin form, without a body or with
//! a small one that came with its head) and its handover to hyper (the first request it does
//! not serve: a chunked body, a body still to come, HTTP/1.0, a head too large,
//! ...), pinned from the wire: pipelining, a handover in the middle of a kept-alive connection
//! with bytes already read, response framing (chunked, HEAD, 204, 304), `Connection: close`,
//! one `date`, a client that leaves before its answer, HTTP/1.0 and an oversized head,
//! trailers, a backend answering in HTTP/1.0, and a graceful stop.
//!
//! Most scenarios run twice: on a fresh connection (Portico's own path serves it) and on a
//! connection whose first request carried an empty chunked body (hyper serves it from then on):
//! a client must not be able to tell the two apart.
//!
//! The backend (`own_path/backend.rs`) answers by path, with raw bytes in the field case
//! servers use (`Content-Length`, `Date`, `Transfer-Encoding`), and records every request it
//! read (bodies included). Responses are read (`own_path/client.rs`) as a strict client
//! would: a second content-length, or a content-length next to a transfer-encoding, fails the
//! test.

mod backend;
mod client;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::pool;
use crate::harness::{Portico, WAIT, connect, eventually};
use backend::{BACKEND_DATE, CHUNKS, LAG_LARGE, ScriptedBackend, default_body};
use client::{
    BOTH, Server, assert_closed, assert_default, backend_active, get, masked_head, open,
    read_answer, request,
};

/// Portico in front of `backend`: listener `web` sends everything to it; listener `hosts`
/// only `Host: app.test` (anything else is Portico's own 404). Both take heads of at most
/// 8192 bytes (the least allowed), and keep idle connections longer than [`WAIT`]: a
/// connection closed within a test's wait was not closed by `header_timeout`.
fn start_portico(backend: &ScriptedBackend) -> Portico {
    Portico::start(&format!(
        r#"{pool}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"
pool = "b"
max_header_bytes = 8192
header_timeout = "60s"

[listeners.hosts]
bind = "127.0.0.1:0"
protocol = "http"
max_header_bytes = 8192
header_timeout = "60s"

[[listeners.hosts.routes]]
host = "app.test"
pool = "b"
"#,
        pool = pool("b", &[backend.addr], ""),
    ))
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Three GETs in one write: three answers, in order, each whole and framed right (a length,
/// a chunked body, a length); then two heads that come a few bytes at a time. Catches
/// pipelined bytes lost or served twice, answers out of order, a body whose framing leaves
/// bytes for (or takes bytes from) the next answer, and a head lost between two reads.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    for server in BOTH {
        let mut s = open(portico.addr("web"), server);
        let first = format!("/first-{server:?}");
        let third = format!("/third-{server:?}");
        let requests = format!(
            "GET {first} HTTP/1.1\r\nHost: app.test\r\n\r\n\
             GET /chunked HTTP/1.1\r\nHost: app.test\r\n\r\n\
             GET {third} HTTP/1.1\r\nHost: app.test\r\n\r\n"
        );
        s.write_all(requests.as_bytes()).unwrap();
        let r = read_answer(&mut s, "GET");
        assert_default(&r, &first, &format!("{server:?}: first"));
        let r = read_answer(&mut s, "GET");
        assert_eq!(r.status, 200, "{server:?}: second: {r:#?}");
        assert_eq!(r.text(), CHUNKS.concat(), "{server:?}: second: {r:#?}");
        let r = read_answer(&mut s, "GET");
        assert_default(&r, &third, &format!("{server:?}: third"));
        // Still usable after the pipeline.
        let r = get(&mut s, "/after");
        assert_default(&r, "/after", &format!("{server:?}: after"));
        assert_eq!(backend.seen_for(&first).len(), 1, "{server:?}");
        assert_eq!(backend.seen_for(&third).len(), 1, "{server:?}");

        // Two heads written a few bytes at a time, the second starting in the piece that
        // ends the first.
        let (a, b) = (
            format!("/piece-a-{server:?}"),
            format!("/piece-b-{server:?}"),
        );
        let both = format!(
            "GET {a} HTTP/1.1\r\nHost: app.test\r\n\r\nGET {b} HTTP/1.1\r\nHost: app.test\r\n\r\n"
        );
        for piece in both.as_bytes().chunks(7) {
            s.write_all(piece).unwrap();
        }
        assert_default(
            &read_answer(&mut s, "GET"),
            &a,
            &format!("{server:?}: pieces"),
        );
        assert_default(
            &read_answer(&mut s, "GET"),
            &b,
            &format!("{server:?}: pieces"),
        );
    }
}

/// GET (own path), POST with a body (handed to hyper, with the bytes already read), GET
/// (hyper): each answered, the body whole at the backend. Then the same three in one write,
/// where the handover carries the POST's body and the next request with it; and a POST whose
/// body comes in a second write. Catches bytes lost or repeated at the handover (`Rewind`),
/// a body cut or read as a request, and a connection dropped at the switch.
#[test]
fn a_body_mid_connection_is_handed_to_hyper_and_the_connection_goes_on() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    let addr = portico.addr("web");
    // Larger than the own path's first read (8 KiB): the handover carries part of the body,
    // the rest is still in the socket.
    let body: String = (0..2000).map(|i| format!("line {i};")).collect();
    let post = |target: &str| {
        format!(
            "POST {target} HTTP/1.1\r\nHost: app.test\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };

    // One request at a time.
    let mut s = connect(addr);
    assert_default(&get(&mut s, "/before"), "/before", "GET before");
    s.write_all(post("/echo").as_bytes()).unwrap();
    let r = read_answer(&mut s, "POST");
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.text(), body, "the POST's body came back changed");
    assert_default(&get(&mut s, "/after"), "/after", "GET after the POST");
    assert_default(&get(&mut s, "/again"), "/again", "a second GET after it");

    // All three in one write: the handover starts with the POST's head, its body and the
    // next GET, all read already.
    let mut s = connect(addr);
    let all = format!(
        "GET /p1 HTTP/1.1\r\nHost: app.test\r\n\r\n{}GET /p3 HTTP/1.1\r\nHost: app.test\r\n\r\n",
        post("/echo")
    );
    s.write_all(all.as_bytes()).unwrap();
    assert_default(&read_answer(&mut s, "GET"), "/p1", "pipelined GET before");
    let r = read_answer(&mut s, "POST");
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(
        r.text(),
        body,
        "the pipelined POST's body came back changed"
    );
    assert_default(&read_answer(&mut s, "GET"), "/p3", "pipelined GET after");
    assert_default(&get(&mut s, "/p4"), "/p4", "a GET after the pipeline");

    // The head in one write, the body in another.
    let mut s = connect(addr);
    assert_default(&get(&mut s, "/h1"), "/h1", "GET before a split POST");
    let split = post("/echo");
    let (head, rest) = split.split_at(split.find("\r\n\r\n").unwrap() + 4);
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(rest.as_bytes()).unwrap();
    let r = read_answer(&mut s, "POST");
    assert_eq!(r.text(), body, "the split POST's body came back changed");
    assert_default(&get(&mut s, "/h3"), "/h3", "GET after a split POST");

    let echoes = backend.seen_for("/echo");
    assert_eq!(echoes.len(), 3, "{echoes:#?}");
    for e in &echoes {
        assert_eq!(e.method, "POST");
        assert_eq!(
            String::from_utf8_lossy(&e.body),
            body,
            "the backend got another body"
        );
    }
}

/// Small `Content-Length` bodies that come with their heads (the own path serves them): a POST
/// with the next GET in the same write, three pipelined POSTs in one write, an empty PUT; each
/// answered in order with its own body, the backend seeing each body once, on both servers.
/// Catches a body read as the next request (or the next request as a body), a body lost or
/// sent twice, and the length not passed on.
#[test]
fn small_bodies_that_come_with_their_heads_are_answered_in_order() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    let post = |target: &str, body: &str| {
        format!(
            "POST {target} HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    for server in BOTH {
        let mut s = open(portico.addr("web"), server);
        let first = format!(
            "{}GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n",
            post("/echo", "hello")
        );
        s.write_all(first.as_bytes()).unwrap();
        let r = read_answer(&mut s, "POST");
        assert_eq!(
            (r.status, r.text()),
            (200, "hello".to_owned()),
            "{server:?}: {r:#?}"
        );
        assert_default(
            &read_answer(&mut s, "GET"),
            "/next",
            &format!("{server:?}: after"),
        );

        let bodies = ["one", "GET / HTTP/1.1\r\n\r\n", &"x".repeat(3000)];
        let three: String = bodies.iter().map(|b| post("/echo", b)).collect();
        s.write_all(three.as_bytes()).unwrap();
        for body in bodies {
            let r = read_answer(&mut s, "POST");
            assert_eq!(r.status, 200, "{server:?}: {r:#?}");
            assert_eq!(r.text(), body, "{server:?}: pipelined POSTs");
        }
        s.write_all(b"PUT /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        let r = read_answer(&mut s, "PUT");
        assert_eq!(
            (r.status, r.header("content-length")),
            (200, Some("0")),
            "{server:?}: {r:#?}"
        );
        assert_default(&get(&mut s, "/last"), "/last", &format!("{server:?}: last"));
    }
    let echoes: Vec<String> = backend
        .seen_for("/echo")
        .iter()
        .map(|e| String::from_utf8_lossy(&e.body).into_owned())
        .collect();
    let once = [
        "hello",
        "one",
        "GET / HTTP/1.1\r\n\r\n",
        &"x".repeat(3000),
        "",
    ];
    let want: Vec<&str> = once.iter().chain(once.iter()).copied().collect();
    assert_eq!(echoes, want);
}

/// A backend's chunked answer (no length) goes to the client chunked, byte for byte, and the
/// connection carries another request. Catches a body buffered into a wrong length, a lost
/// last chunk (the client would wait), and chunk framing passed through twice.
#[test]
fn a_chunked_answer_goes_out_chunked_and_whole() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    for server in BOTH {
        let mut s = open(portico.addr("web"), server);
        for round in 0..2 {
            let r = get(&mut s, "/chunked");
            assert_eq!(r.status, 200, "{server:?} {round}: {r:#?}");
            assert_eq!(r.framing, "chunked", "{server:?} {round}: {r:#?}");
            assert_eq!(r.header("content-length"), None, "{server:?}: {r:#?}");
            assert_eq!(r.text(), CHUNKS.concat(), "{server:?} {round}: {r:#?}");
        }
        assert_default(&get(&mut s, "/next"), "/next", &format!("{server:?}: next"));
    }
}

/// HEAD: the backend's content-length (that of the GET), no body, and the next answer starts
/// right after the head. Also for a backend whose GET would be chunked. Catches a HEAD answer
/// with a body (or a `content-length: 0` replacing the real one), which the next GET's answer
/// would show as garbage.
#[test]
fn a_head_answer_has_the_length_and_no_body() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    for server in BOTH {
        let mut s = open(portico.addr("web"), server);
        let target = format!("/sized-{server:?}");
        let r = request(&mut s, "HEAD", &target, "");
        assert_eq!(r.status, 200, "{server:?}: {r:#?}");
        let expected = default_body(&target).len().to_string();
        assert_eq!(
            r.header("content-length"),
            Some(expected.as_str()),
            "{server:?}: the backend's length: {r:#?}"
        );
        assert_default(&get(&mut s, &target), &target, &format!("{server:?}: GET"));

        let seen = backend.seen_for(&target);
        assert_eq!(seen[0].method, "HEAD", "{server:?}: {seen:#?}");

        let r = request(&mut s, "HEAD", "/chunked", "");
        assert_eq!(r.status, 200, "{server:?}: {r:#?}");
        assert_default(&get(&mut s, "/next"), "/next", &format!("{server:?}: next"));
    }
}

/// 204 and 304 (this one with the `Content-Length` of its representation, as RFC 9110 §8.6
/// allows) carry no body and, as hyper writes them, no content-length nor transfer-encoding;
/// the next request on the connection is answered. Catches Portico reading or writing a body
/// for them (the backend's 17 bytes never come: a hang, or the next answer cut).
#[test]
fn no_content_and_not_modified_have_no_body_and_no_length() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    for server in BOTH {
        let mut s = open(portico.addr("web"), server);
        for (target, status) in [("/204", 204), ("/304", 304), ("/204", 204)] {
            let r = get(&mut s, target);
            assert_eq!(r.status, status, "{server:?}: {r:#?}");
            assert_eq!(
                r.header("x-answer"),
                Some(&target[1..]),
                "{server:?}: {r:#?}"
            );
            assert_eq!(r.header("content-length"), None, "{server:?}: {r:#?}");
            assert_eq!(r.header("transfer-encoding"), None, "{server:?}: {r:#?}");
            let next = format!("/after{target}");
            assert_default(&get(&mut s, &next), &next, &format!("{server:?}: next"));
        }
    }
}

/// `Connection: close` from the client: the answer says `connection: close`, the connection
/// is closed right after it, and a request pipelined behind it is not served. Catches a
/// kept-open connection (the client waits for a close), a missing header, and bytes after
/// the close request served anyway.
#[test]
fn connection_close_gets_connection_close_and_a_close() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    for server in BOTH {
        let mut s = open(portico.addr("web"), server);
        let target = format!("/closing-{server:?}");
        let r = request(&mut s, "GET", &target, "Connection: close\r\n");
        assert_default(&r, &target, &format!("{server:?}"));
        assert!(r.connection_has("close"), "{server:?}: {r:#?}");
        assert_closed(&mut s, &format!("{server:?}: after Connection: close"));

        // A request behind the closing one, in the same write.
        let mut s = open(portico.addr("web"), server);
        let target = format!("/closing-first-{server:?}");
        let never = format!("/never-{server:?}");
        let both = format!(
            "GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n\
             GET {never} HTTP/1.1\r\nHost: app.test\r\n\r\n"
        );
        s.write_all(both.as_bytes()).unwrap();
        let r = read_answer(&mut s, "GET");
        assert_default(&r, &target, &format!("{server:?}"));
        assert!(r.connection_has("close"), "{server:?}: {r:#?}");
        assert_closed(&mut s, &format!("{server:?}: a request behind a close"));
        assert!(
            backend.seen_for(&never).is_empty(),
            "{server:?}: a request after `Connection: close` reached the backend"
        );
    }
}

/// Exactly one `date` on every answer: added when the backend sends none, the backend's own
/// kept as it is (not doubled, not replaced), and on Portico's own 404. Catches a `Date`
/// compared case-sensitively (`Date` vs `date`: two of them) and a missing one.
#[test]
fn every_answer_has_exactly_one_date() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    for server in BOTH {
        let mut s = open(portico.addr("hosts"), server);
        let r = get(&mut s, "/plain");
        assert_default(&r, "/plain", &format!("{server:?}"));
        let date = r.all("date");
        assert_eq!(date.len(), 1, "{server:?}: {r:#?}");
        assert!(
            date[0].len() == BACKEND_DATE.len() && date[0].ends_with(" GMT"),
            "{server:?}: not an HTTP date: {r:#?}"
        );

        let r = get(&mut s, "/dated");
        assert_eq!(r.status, 200, "{server:?}: {r:#?}");
        assert_eq!(r.all("date"), [BACKEND_DATE], "{server:?}: {r:#?}");

        // Portico's own answer: no route for this host.
        s.write_all(b"GET /x HTTP/1.1\r\nHost: nowhere.test\r\n\r\n")
            .unwrap();
        let r = read_answer(&mut s, "GET");
        assert_eq!(r.status, 404, "{server:?}: {r:#?}");
        let date = r.all("date");
        assert_eq!(date.len(), 1, "{server:?}: {r:#?}");
        assert!(date[0].ends_with(" GMT"), "{server:?}: {r:#?}");
        assert_default(&get(&mut s, "/next"), "/next", &format!("{server:?}: next"));
    }
}

/// A client that sends a GET and goes away before the (held) answer: Portico cancels the
/// backend exchange (the backend sees its connection closed, the backend's in-flight count
/// goes back to 0) long before the route timeout, and serves other clients meanwhile and
/// after. Catches a request left running for a client that is gone (the backend is held
/// longer than the test waits), a stuck count, and a crash.
#[test]
fn a_client_gone_before_its_answer_cancels_the_backend_request() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    let addr = portico.addr("web");
    for (i, server) in BOTH.into_iter().enumerate() {
        let mut s = open(addr, server);
        s.write_all(b"GET /hold HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .unwrap();
        assert!(
            eventually(|| backend.holding() == i + 1),
            "{server:?}: the held request did not reach the backend"
        );
        assert!(
            eventually(|| backend_active(&portico, backend.addr) == 1),
            "{server:?}: the held request is not counted in flight"
        );
        // Another client is served while that one waits.
        let mut other = connect(addr);
        assert_default(&get(&mut other, "/meanwhile"), "/meanwhile", "meanwhile");

        drop(s);
        assert!(
            eventually(|| backend.released() == i + 1),
            "{server:?}: the backend request outlived its client"
        );
        let mut active = u64::MAX;
        assert!(
            eventually(|| {
                active = backend_active(&portico, backend.addr);
                active == 0
            }),
            "{server:?}: the backend still counts {active} in-flight request(s)"
        );
        assert_default(&get(&mut other, "/later"), "/later", "later");
        assert_default(&get(&mut connect(addr), "/new"), "/new", "a new client");
    }
}

/// HTTP/1.0 without Host (handed to hyper), on a fresh connection and after a request the own
/// path served: a valid HTTP/1.x answer from the backend, and the connection closed after it
/// (HTTP/1.0 without keep-alive). Catches an HTTP/1.0 request dropped, refused, or answered
/// in a framing an HTTP/1.0 client cannot read (chunked).
#[test]
fn an_http10_request_is_answered() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    let addr = portico.addr("web");
    for warm in [false, true] {
        for (target, expected) in [
            ("/ten", default_body("/ten")),
            ("/chunked", CHUNKS.concat()),
        ] {
            let what = format!("{target}, after a served request: {warm}");
            let mut s = connect(addr);
            if warm {
                assert_default(&get(&mut s, "/first"), "/first", &what);
            }
            s.write_all(format!("GET {target} HTTP/1.0\r\n\r\n").as_bytes())
                .unwrap();
            let r = read_answer(&mut s, "GET");
            assert!(
                r.status_line.starts_with("HTTP/1.0 ") || r.status_line.starts_with("HTTP/1.1 "),
                "{what}: {r:#?}"
            );
            assert_eq!(r.status, 200, "{what}: {r:#?}");
            assert_ne!(r.framing, "chunked", "{what}: chunked to HTTP/1.0: {r:#?}");
            assert_eq!(r.text(), expected, "{what}: {r:#?}");
            if r.framing != "close" {
                assert_closed(&mut s, &what);
            }
        }
    }
}

/// A request head over `max_header_bytes` (8192) on a connection that already served one:
/// 431 (hyper's, after the handover), while a large head under the limit is served. Catches
/// an oversized head served, a connection dropped without an answer, and a limit applied to
/// the bytes of the whole connection rather than to one head.
#[test]
fn an_oversized_head_after_a_served_request_gets_431() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    let addr = portico.addr("web");
    let under = format!("X-Big: {}\r\n", "u".repeat(6000));
    let over = format!("X-Big: {}\r\n", "o".repeat(20_000));

    let mut s = connect(addr);
    assert_default(&get(&mut s, "/first"), "/first", "first");
    // Under the limit, several times on one connection (more than 8192 bytes in all).
    for i in 0..3 {
        let target = format!("/under-{i}");
        let r = request(&mut s, "GET", &target, &under);
        assert_default(&r, &target, "a head under the limit");
    }
    let head = format!("GET /over HTTP/1.1\r\nHost: app.test\r\n{over}\r\n");
    // Portico may answer and close before it read the whole head: a write error is no failure.
    let _ = s.write_all(head.as_bytes());
    let r = read_answer(&mut s, "GET");
    assert_eq!(r.status, 431, "{r:#?}");
    assert!(
        backend.seen_for("/over").is_empty(),
        "the oversized request reached the backend"
    );
    // Portico still serves.
    assert_default(&get(&mut connect(addr), "/next"), "/next", "after the 431");
}

/// The same backend answers through both servers look the same to a client: status line,
/// fields (names lowercased; sorted by name, the values of one name in their order; the
/// generated `date` masked), framing and body. head.rs promises it
/// ("a client cannot tell which of the two answered"). Catches a field one path adds, drops,
/// doubles or rewrites and the other does not.
#[test]
fn both_servers_write_the_same_heads() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    let mut own = open(portico.addr("hosts"), Server::Own);
    let mut hyper = open(portico.addr("hosts"), Server::Hyper);
    let cases = [
        ("GET", "/plain", ""),
        ("GET", "/chunked", ""),
        ("GET", "/dated", ""),
        ("GET", "/204", ""),
        ("GET", "/304", ""),
        ("GET", "/empty", ""),
        ("GET", "/empty-chunked", ""),
        ("GET", "/cookies", ""),
        ("GET", "/two-lengths", ""),
        ("GET", "/interim", ""),
        ("GET", "/reason", ""),
        ("HEAD", "/plain", ""),
        ("HEAD", "/chunked", ""),
        ("HEAD", "/empty", ""),
        ("HEAD", "/204", ""),
        ("GET", "/x", "X-Route: none\r\n"),
        ("GET", "/plain", "Connection: close\r\n"),
    ];
    let mut differences = Vec::new();
    for (method, target, extra) in cases {
        // The 404 case: a host no route takes.
        let host_line = if extra.starts_with("X-Route") {
            "Host: nowhere.test\r\n"
        } else {
            "Host: app.test\r\n"
        };
        let head = format!("{method} {target} HTTP/1.1\r\n{host_line}{extra}\r\n");
        let mut answers = Vec::new();
        for s in [&mut own, &mut hyper] {
            s.write_all(head.as_bytes()).unwrap();
            answers.push(read_answer(s, method));
        }
        let (a, b) = (masked_head(&answers[0]), masked_head(&answers[1]));
        if a != b || answers[0].body != answers[1].body || answers[0].framing != answers[1].framing
        {
            differences.push(format!(
                "{method} {target} {extra:?}:\n  own:   {a:?} {} body {:?}\n  hyper: {b:?} {} body {:?}",
                answers[0].framing,
                answers[0].text(),
                answers[1].framing,
                answers[1].text()
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "the two servers answered differently:\n{}",
        differences.join("\n")
    );
}

/// The backend gets the same fields from both servers: the own path passes the fields it
/// does not read as they came (names lowercased, as from a header map) instead of putting
/// them in a map, and must still drop hop-by-hop ones, append to X-Forwarded-For, keep the
/// order of one name's values, and add nothing else. Compared as the backend read them, sorted
/// by name (the values of one name in their order), for a browser's GET, a POST with a small
/// body, and a request whose `Connection` names a field. Catches a field lost, doubled,
/// reordered within its name, or passed on that should have been dropped.
#[test]
fn both_servers_send_the_backend_the_same_fields() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    let browser = "Host: app.test\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n\
        Accept: text/html,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\n\
        Cookie: a=1\r\nSec-Fetch-Mode: navigate\r\nX-Forwarded-For: 192.0.2.1\r\n\
        Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
        cookie: b=2\r\nX-Empty:\r\nX-Spaced:   a  b   \r\n";
    let cases = [
        ("GET", "/fields/browser", browser.to_owned(), ""),
        (
            "POST",
            "/fields/post",
            "Host: app.test\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nAccept: */*\r\n"
                .to_owned(),
            "hello",
        ),
        (
            "GET",
            "/fields/named",
            "Host: app.test\r\nX-Hop: 1\r\nAccept: */*\r\nConnection: X-Hop\r\n".to_owned(),
            "",
        ),
    ];
    for server in BOTH {
        let mut s = open(portico.addr("web"), server);
        for (method, target, fields, body) in &cases {
            let head = format!("{method} {target} HTTP/1.1\r\n{fields}\r\n{body}");
            s.write_all(head.as_bytes()).unwrap();
            let r = read_answer(&mut s, method);
            assert_eq!(r.status, 200, "{server:?} {target}: {r:#?}");
        }
    }
    let sorted = |target: &str| -> Vec<Vec<(String, String)>> {
        let seen = backend.seen_for(target);
        assert_eq!(seen.len(), 2, "{target}: one request from each server");
        seen.into_iter()
            .map(|mut s| {
                s.fields.sort_by(|a, b| a.0.cmp(&b.0));
                s.fields
            })
            .collect()
    };
    for (_, target, _, _) in &cases {
        let both = sorted(target);
        assert_eq!(both[0], both[1], "{target}: own path, then hyper");
    }
    let browser = &sorted("/fields/browser")[0];
    let values = |name: &str| -> Vec<&str> {
        browser
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("cookie"), ["a=1", "b=2"]);
    assert_eq!(values("x-forwarded-for"), ["192.0.2.1, 127.0.0.1"]);
    assert_eq!(values("x-spaced"), ["a  b"]);
    assert_eq!(values("x-empty"), [""]);
    assert_eq!(values("te"), ["trailers"]);
    assert_eq!(values("keep-alive"), Vec::<&str>::new(), "hop-by-hop");
    assert_eq!(values("user-agent"), ["Mozilla/5.0 (X11; Linux x86_64)"]);
    let named = &sorted("/fields/named")[0];
    assert!(
        !named.iter().any(|(n, _)| n == "x-hop"),
        "a field Connection names goes no further: {named:?}"
    );
    assert!(named.iter().any(|(n, v)| n == "accept" && v == "*/*"));
}

/// Trailer fields go out after a chunked body only to a client that said it takes them
/// (`TE: trailers`), as hyper does, and then only those the head announced (`Trailer:
/// X-Sum`). Catches trailers sent to a client that did not ask for them (hyper's path sends
/// none: the two would differ), an announced trailer lost, an unannounced one passed on.
#[test]
fn trailers_go_only_to_a_client_that_takes_them() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    for server in BOTH {
        let mut s = open(portico.addr("web"), server);
        let r = request(&mut s, "GET", "/trailers", "TE: trailers\r\n");
        assert_eq!(r.status, 200, "{server:?}: {r:#?}");
        assert_eq!(r.framing, "chunked", "{server:?}: {r:#?}");
        assert_eq!(r.text(), "abcd", "{server:?}: {r:#?}");
        let trailers: Vec<String> = r.trailers.iter().map(|t| t.to_ascii_lowercase()).collect();
        assert_eq!(
            trailers,
            ["x-sum: 42"],
            "{server:?}: with TE: trailers, the announced trailer only: {r:#?}"
        );

        let r = get(&mut s, "/trailers");
        assert_eq!(r.text(), "abcd", "{server:?}: {r:#?}");
        assert_eq!(
            r.trailers,
            Vec::<String>::new(),
            "{server:?}: trailers to a client that did not send TE: trailers: {r:#?}"
        );
        assert_default(&get(&mut s, "/next"), "/next", &format!("{server:?}: next"));
    }
}

/// A backend that answers in HTTP/1.0 (its body delimited by the close of its connection):
/// the client still gets Portico's own version, HTTP/1.1 (RFC 9110 §6.2: an intermediary
/// sends its own HTTP-version), the whole body, and a connection that carries the next
/// request. Catches the backend's version leaking to the client, which makes hyper answer
/// `HTTP/1.0`, delimit the body by a close and end a kept-alive client connection because
/// one backend is old.
#[test]
fn a_backend_answering_in_http10_does_not_downgrade_the_client_connection() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    for server in BOTH {
        let mut s = open(portico.addr("web"), server);
        for method in ["GET", "HEAD"] {
            let r = request(&mut s, method, "/http10", "");
            assert_eq!(r.status, 200, "{server:?} {method}: {r:#?}");
            assert!(
                r.status_line.starts_with("HTTP/1.1 "),
                "{server:?} {method}: the backend's version reached the client: {r:#?}"
            );
            if method == "GET" {
                assert_eq!(r.text(), "until close\n", "{server:?}: {r:#?}");
            }
            let next = format!("/after-{method}");
            assert_default(
                &get(&mut s, &next),
                &next,
                &format!("{server:?}: the request after an HTTP/1.0 answer to {method}"),
            );
        }
    }
}

/// A graceful stop (SIGTERM): kept-alive connections between requests are closed at once,
/// a request in progress on a kept-alive connection is answered, with `connection: close`,
/// and its connection closed after it; on both servers. Catches an in-progress request cut
/// by the stop, an answer that says nothing of the close (the client would send its next
/// request into a closing connection), and idle connections kept until header_timeout.
#[test]
fn a_graceful_stop_answers_requests_in_progress_with_close_and_closes_idle_connections() {
    let backend = ScriptedBackend::start();
    let mut portico = start_portico(&backend);
    let addr = portico.addr("web");
    let mut idle: Vec<TcpStream> = BOTH
        .iter()
        .map(|&server| {
            let mut s = open(addr, server);
            let target = format!("/idle-{server:?}");
            assert_default(&get(&mut s, &target), &target, "before the stop");
            s
        })
        .collect();
    let mut busy: Vec<TcpStream> = BOTH
        .iter()
        .map(|&server| {
            let mut s = open(addr, server);
            let target = format!("/busy-{server:?}");
            assert_default(&get(&mut s, &target), &target, "before the stop");
            s.write_all(b"GET /gate HTTP/1.1\r\nHost: app.test\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    assert!(
        eventually(|| backend.gated() == BOTH.len()),
        "the gated requests did not reach the backend"
    );

    portico.signal("TERM");
    assert!(
        portico
            .wait_for_log(|l| l.contains("stopped accepting"), WAIT)
            .is_some(),
        "{}",
        portico.log_text()
    );
    for (s, server) in idle.iter_mut().zip(BOTH) {
        assert_closed(
            s,
            &format!("{server:?}: an idle kept-alive connection at the stop"),
        );
    }
    backend.open_gate();
    for (s, server) in busy.iter_mut().zip(BOTH) {
        let r = read_answer(s, "GET");
        assert_default(&r, "/gate", &format!("{server:?}: in progress at the stop"));
        assert!(
            r.connection_has("close"),
            "{server:?}: an answer during the stop without connection: close: {r:#?}"
        );
        assert_closed(s, &format!("{server:?}: after the answer during the stop"));
    }
    assert_eq!(portico.wait_exit(WAIT).code(), Some(0));
}

/// HTTP/2's preface is a connection's first bytes or nothing: at the start it gets HTTP/2
/// (the server's SETTINGS frame), after a request the own path served it is a malformed
/// HTTP/1.1 request (the connection is closed), as it was when hyper served every request. Catches a handover to hyper's version-sniffing builder mid-connection, which
/// let a kept-alive HTTP/1.1 connection turn into HTTP/2.
#[test]
fn an_http2_preface_after_a_served_request_is_no_http2() {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    let addr = portico.addr("web");
    let first_bytes = |s: &mut TcpStream| {
        s.write_all(&[PREFACE, SETTINGS].concat()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 9 {
            match std::io::Read::read(s, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    };

    let fresh = first_bytes(&mut connect(addr));
    assert_eq!(
        fresh.get(3),
        Some(&4),
        "a fresh connection speaks HTTP/2: {fresh:?}"
    );

    let mut s = connect(addr);
    assert_default(&get(&mut s, "/first"), "/first", "first");
    // hyper closes an HTTP/1.1 connection that sends the preface without an answer.
    let later = first_bytes(&mut s);
    assert!(
        later.is_empty() || later.starts_with(b"HTTP/1.1 4"),
        "after a served request: {:?}",
        String::from_utf8_lossy(&later)
    );
    assert_closed(&mut s, "after the preface");
    // Portico still serves.
    assert_default(
        &get(&mut connect(addr), "/next"),
        "/next",
        "after the preface",
    );
}

/// Reads from `s` until a response head has ended: what was read.
fn read_past_head(s: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!("{what}: no whole head before the backend sent the rest: {other:?}"),
        }
    }
    got
}

/// A backend that writes a small answer's head and body apart (nginx with sendfile does): the
/// own path holds the head until the body is there, so the client gets the answer in one
/// piece; a large or chunked body's head is never held (its client would wait on a backend
/// that may stream). Catches a head written on its own, and a stream held back: the backend
/// sends the rest only once the client has what came before it (or after [`WAIT`], twice as
/// long as the client waits).
#[test]
fn a_small_answer_goes_out_whole_and_a_large_or_streamed_one_does_not_wait() {
    let backend = ScriptedBackend::start();
    let portico = start_portico(&backend);
    let mut s = open(portico.addr("web"), Server::Own);
    s.write_all(b"GET /lag/small HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    assert!(
        eventually(|| backend.lagging() == 1),
        "the backend did not write the head"
    );
    // Time for Portico to read the head (on a slow machine the check below passes anyway).
    std::thread::sleep(Duration::from_millis(100));
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the head went out before its 100-byte body: {other:?}"),
    }
    s.set_read_timeout(Some(WAIT)).unwrap();
    backend.open_gate();
    let r = read_answer(&mut s, "GET");
    assert_eq!((r.status, r.body.len()), (200, 100), "{r:#?}");

    let mut buf = vec![0u8; 64 * 1024];
    for server in BOTH {
        backend.close_gate();
        let mut s = open(portico.addr("web"), server);
        // Shorter than the backend waits for the gate: what is held back does not come.
        s.set_read_timeout(Some(WAIT / 2)).unwrap();
        let lagging = backend.lagging();
        s.write_all(b"GET /lag/large HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .unwrap();
        let got = read_past_head(&mut s, &format!("{server:?} large"));
        assert!(
            got.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        // (The backend counts the answer just after it wrote the head.)
        assert!(eventually(|| backend.lagging() == lagging + 1));
        backend.open_gate();
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut body = got.len() - head_end;
        while body < LAG_LARGE {
            let n = s.read(&mut buf).expect("the large body");
            assert!(
                n > 0,
                "{server:?}: closed after {body} of {LAG_LARGE} bytes"
            );
            body += n;
        }
        assert_eq!(body, LAG_LARGE, "{server:?}");

        backend.close_gate();
        s.write_all(b"GET /lag/chunked HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .unwrap();
        let mut got = read_past_head(&mut s, &format!("{server:?} chunked"));
        let first = format!("{:x}\r\n{}\r\n", CHUNKS[0].len(), CHUNKS[0]);
        while !String::from_utf8_lossy(&got).contains(&first) {
            let n = s.read(&mut buf).expect("the first chunk before the rest");
            assert!(n > 0, "{server:?}: closed");
            got.extend_from_slice(&buf[..n]);
        }
        backend.open_gate();
    }
}
