//! Portico's own answers when a request cannot be served: 502 (backend failed), 503 (no
//! backend available), 504 (route timeout), 431 (headers too large), 413 (body too large),
//! and which failures are retried on another backend.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{H2Connection, echoed, pool, pools_of};
use crate::harness::http_backend::{DeadPort, Echoed, HttpBackend};
use crate::harness::real_clients::Curl;
use crate::harness::{Portico, WAIT, field};

#[test]
fn a_dead_backend_gets_502() {
    let dead = DeadPort::new();
    let portico = Portico::start(&format!(
        r#"{pool}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"
pool = "dead"
"#,
        pool = pool("dead", &[dead.addr], ""),
    ));
    for extra in [None, Some("--http2-prior-knowledge")] {
        let mut curl = Curl::http(portico.addr("web"), "/");
        if let Some(a) = extra {
            curl = curl.arg(a);
        }
        let r = curl.run();
        assert_eq!(r.status, 502, "{r:#?}");
        assert_eq!(r.body, "bad gateway\n");
    }
}

#[test]
fn get_is_retried_past_a_dead_backend_and_post_is_not() {
    let alive = HttpBackend::start("alive");
    let alive_post = HttpBackend::start("alive-post");
    let alive_no_retry = HttpBackend::start("alive-no-retry");
    let (dead, dead_post, dead_no_retry) = (DeadPort::new(), DeadPort::new(), DeadPort::new());
    let portico = Portico::start(&format!(
        r#"{get_pool}{post_pool}{no_retry_pool}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"

[[listeners.web.routes]]
path_prefix = "/get"
pool = "mixed"

[[listeners.web.routes]]
path_prefix = "/post"
pool = "mixed-post"

[[listeners.web.routes]]
path_prefix = "/no-retry"
pool = "mixed-no-retry"
retries = 0
"#,
        get_pool = pool("mixed", &[dead.addr, alive.addr], ""),
        post_pool = pool("mixed-post", &[dead_post.addr, alive_post.addr], ""),
        no_retry_pool = pool(
            "mixed-no-retry",
            &[dead_no_retry.addr, alive_no_retry.addr],
            ""
        ),
    ));
    let web = portico.addr("web");

    // Round robin sends every other GET to the dead backend first: each is retried.
    for i in 0..8 {
        let r = Curl::http(web, &format!("/get/{i}")).run();
        assert_eq!(echoed(&r).backend, "alive", "GET {i}");
    }
    assert_eq!(alive.requests(), 8);
    // Passive health: three connect failures in a row eject the dead backend.
    let ejected = portico.wait_for_log(
        |l| l.contains("backend ejected") && l.contains(&dead.addr.to_string()),
        WAIT,
    );
    assert!(ejected.is_some(), "{}", portico.log_text());

    // A POST that could not connect is not retried elsewhere: one of two POSTs lands on the
    // dead backend (round robin) and gets 502; the other reaches the live one.
    let mut statuses: Vec<u16> = (0..2)
        .map(|i| {
            Curl::http(web, &format!("/post/{i}"))
                .arg("--data")
                .arg("a=1")
                .run()
                .status
        })
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 502]);
    assert_eq!(alive_post.requests(), 1);

    // `retries = 0`: a GET is not retried either.
    let mut statuses: Vec<u16> = (0..2)
        .map(|i| Curl::http(web, &format!("/no-retry/{i}")).run().status)
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 502]);
    assert_eq!(alive_no_retry.requests(), 1);
}

#[test]
fn all_backends_down_gets_503_with_refuse() {
    // The backend itself answers, but its health check (on another, dead port) says it is down.
    let backend = HttpBackend::start("checked");
    let health_port = DeadPort::new();
    let health = format!(
        "[pools.{{}}.health]\nkind = \"tcp\"\nport = {}\ninitial = \"down\"\ninterval = \"100ms\"\n\
         timeout = \"100ms\"\nrise = 1\n",
        health_port.addr.port()
    );
    let portico = Portico::start(&format!(
        r#"{refuse}{refuse_health}{try_all}{try_all_health}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"

[[listeners.web.routes]]
path_prefix = "/refuse"
pool = "refuse"

[[listeners.web.routes]]
path_prefix = "/try-all"
pool = "try-all"
"#,
        refuse = pool("refuse", &[backend.addr], "when_all_down = \"refuse\""),
        refuse_health = health.replace("{}", "refuse"),
        try_all = pool("try-all", &[backend.addr], "when_all_down = \"try_all\""),
        try_all_health = health.replace("{}", "try-all"),
    ));
    let web = portico.addr("web");
    for extra in [None, Some("--http2-prior-knowledge")] {
        let mut curl = Curl::http(web, "/refuse");
        if let Some(a) = extra {
            curl = curl.arg(a);
        }
        let r = curl.run();
        assert_eq!(r.status, 503, "{r:#?}");
        assert_eq!(r.body, "no healthy backend\n");
    }
    assert_eq!(backend.requests(), 0);
    // try_all: the health check can be wrong, so the backend is tried anyway.
    let r = Curl::http(web, "/try-all").run();
    assert_eq!(echoed(&r).backend, "checked");

    // The check passes once its port listens: the refusing pool serves again.
    health_port.start_listening();
    let target = health_port.addr.to_string();
    let up = portico.wait_for_log(
        |l| l.contains("health check: up") && field(l, "target").as_deref() == Some(&target),
        WAIT,
    );
    assert!(up.is_some(), "{}", portico.log_text());
    let deadline = Instant::now() + WAIT;
    loop {
        // The verdict is logged just before the pools see it.
        let r = Curl::http(web, "/refuse").run();
        if r.status == 200 {
            assert_eq!(echoed(&r).backend, "checked");
            break;
        }
        assert_eq!(r.status, 503, "{r:#?}");
        assert!(
            Instant::now() < deadline,
            "still 503 after the check went up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_backend_slower_than_the_route_timeout_gets_504() {
    let slow = HttpBackend::builder("slow")
        .delay(Duration::from_secs(3))
        .start();
    let portico = Portico::start(&format!(
        r#"{pools}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"

[[listeners.web.routes]]
path_prefix = "/"
pool = "slow"
timeout = "300ms"
"#,
        pools = pools_of(&[&slow]),
    ));
    let started = Instant::now();
    let r = Curl::http(portico.addr("web"), "/").run();
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{r:#?}");
    assert_eq!(r.body, "gateway timeout\n");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(2500),
        "answered after {took:?}"
    );
    assert_eq!(slow.requests(), 1);
    // Once the backend is quick again, the route serves.
    slow.set_delay(Duration::ZERO);
    let r = Curl::http(portico.addr("web"), "/").run();
    assert_eq!(echoed(&r).backend, "slow");
}

#[test]
fn headers_larger_than_max_header_bytes_get_431() {
    let backend = HttpBackend::start("web");
    let portico = Portico::start(&format!(
        r#"{pools}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"
pool = "web"
max_header_bytes = 16384
"#,
        pools = pools_of(&[&backend]),
    ));
    let addr = portico.addr("web");
    let header = |n: usize| format!("X-Big: {}", "b".repeat(n));
    for extra in [None, Some("--http2-prior-knowledge")] {
        let curl = |n: usize| {
            let c = Curl::http(addr, "/").header(&header(n));
            match extra {
                Some(a) => c.arg(a),
                None => c,
            }
        };
        let r = curl(8_000).run();
        assert_eq!(
            echoed(&r).backend,
            "web",
            "{extra:?}: a header under the limit"
        );
        let r = curl(20_000).run();
        assert_eq!(r.status, 431, "{extra:?}: {r:#?}");
    }
    assert_eq!(backend.requests(), 2);
}

/// `max_header_bytes` accepts 1024 and up; below hyper's 8 KiB minimum read buffer it must
/// still hold.
#[test]
fn max_header_bytes_is_at_least_8_kib_and_holds_on_http1_and_http2() {
    // hyper's HTTP/1 buffer cannot be smaller than 8 KiB, so a smaller limit is refused at
    // load rather than silently not applied on HTTP/1.1.
    let backend = HttpBackend::start("web");
    let listener = |limit: usize| {
        format!(
            "{pools}\n[listeners.web]\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\npool = \"web\"\nmax_header_bytes = {limit}\n",
            pools = pools_of(&[&backend]),
        )
    };
    let err = Portico::try_start(&listener(2048))
        .err()
        .expect("2048 must be refused");
    assert!(
        err.contains("listeners.web.max_header_bytes: 2048 is out of range (8192"),
        "{err}"
    );

    let portico = Portico::start(&listener(8192));
    let addr = portico.addr("web");
    let big = format!("X-Big: {}", "b".repeat(12_000));
    let r = Curl::http(addr, "/")
        .arg("--http2-prior-knowledge")
        .header(&big)
        .run();
    assert_eq!(r.status, 431, "HTTP/2: {r:#?}");
    let r = Curl::http(addr, "/").header(&big).run();
    assert_eq!(r.status, 431, "HTTP/1.1: {r:#?}");
    assert_eq!(backend.requests(), 0);
    let r = Curl::http(addr, "/").header("X-Small: ok").run();
    assert_eq!(r.status, 200, "{r:#?}");
}

#[test]
fn bodies_larger_than_max_body_bytes_get_413() {
    let backend = HttpBackend::start("upload");
    let portico = Portico::start(&format!(
        r#"{pools}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"

[[listeners.web.routes]]
path_prefix = "/"
pool = "upload"
max_body_bytes = 1000
"#,
        pools = pools_of(&[&backend]),
    ));
    let addr = portico.addr("web");
    let dir = tempfile::tempdir().unwrap();
    let file = |n: usize| {
        let p = dir.path().join(format!("body-{n}"));
        std::fs::write(&p, vec![b'x'; n]).unwrap();
        p
    };
    let r = Curl::http(addr, "/upload").data_file(&file(1000)).run();
    assert_eq!(echoed(&r).body_bytes, 1000);
    let r = Curl::http(addr, "/upload").data_file(&file(5000)).run();
    assert_eq!(r.status, 413, "{r:#?}");
    assert_eq!(r.body, "request body too large\n");

    // HTTP/2, on one connection: the stream over the limit is refused, the connection stays.
    let mut h2 = H2Connection::open(addr);
    let r = h2.request("POST", "app.test", "/upload", Bytes::from(vec![b'x'; 1000]));
    assert_eq!(Echoed::parse(&r.text()).body_bytes, 1000);
    let r = h2.request("POST", "app.test", "/upload", Bytes::from(vec![b'x'; 5000]));
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.text(), "request body too large\n");
    let r = h2.request("PUT", "app.test", "/upload", Bytes::from(vec![b'x'; 10]));
    assert_eq!(Echoed::parse(&r.text()).body_bytes, 10);
    assert_eq!(
        backend.requests(),
        3,
        "a body over the limit reached the backend"
    );
}

/// Without a Content-Length the limit can only be seen while the body streams: the client
/// is still at fault, so the answer must still be 413, not a 502 blaming the backend.
#[test]
fn a_chunked_body_over_max_body_bytes_gets_413() {
    let backend = HttpBackend::start("upload");
    let portico = Portico::start(&format!(
        r#"{pools}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"

[[listeners.web.routes]]
path_prefix = "/"
pool = "upload"
max_body_bytes = 1000
"#,
        pools = pools_of(&[&backend]),
    ));
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, vec![b'x'; 5000]).unwrap();
    let r = Curl::http(portico.addr("web"), "/upload")
        .header("Transfer-Encoding: chunked")
        .data_file(&body)
        .run();
    assert_eq!(r.status, 413, "{r:#?}");
}
