//! Running an http listener: access log lines, route changes by SIGHUP applying to the next
//! request on a kept-alive connection (HTTP/1.1 and HTTP/2), the request metrics, and what a
//! graceful stop does to open connections.

use std::io::{ErrorKind, Read};
use std::time::Duration;

use super::{H2Connection, echoed, keep_alive_get, pools_of};
use crate::harness::http::http;
use crate::harness::http_backend::{Echoed, HttpBackend};
use crate::harness::real_clients::Curl;
use crate::harness::{Portico, WAIT, connect, eventually, field};

/// Listener `web`: `/api` -> pool `api` (route "api"), `/slow` -> pool `slow` (route "slow",
/// 300 ms timeout), nothing else (404).
fn api_config(api: &HttpBackend, slow: &HttpBackend, log: &str) -> String {
    format!(
        r#"{log}
{pools}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"

[[listeners.web.routes]]
name = "api"
path_prefix = "/api"
pool = "api"

[[listeners.web.routes]]
name = "slow"
path_prefix = "/slow"
pool = "slow"
timeout = "300ms"
"#,
        pools = pools_of(&[api, slow]),
    )
}

fn is_access_line(line: &str) -> bool {
    line.contains(" access: ")
}

#[test]
fn the_access_log_has_one_line_per_request() {
    let api = HttpBackend::start("api");
    let slow = HttpBackend::builder("slow")
        .delay(Duration::from_secs(2))
        .start();
    let portico = Portico::start(&api_config(&api, &slow, ""));
    let web = portico.addr("web");

    let ok = Curl::http(web, "/api/one?x=1").host("app.test").run();
    assert_eq!(ok.status, 200);
    let missing = Curl::http(web, "/missing").host("app.test").run();
    assert_eq!(missing.status, 404);
    let posted = Curl::http(web, "/api/two")
        .host("app.test")
        .arg("--http2-prior-knowledge")
        .arg("--data")
        .arg("0123456789")
        .run();
    assert_eq!(posted.status, 200);
    let timed_out = Curl::http(web, "/slow").host("app.test").run();
    assert_eq!(timed_out.status, 504);
    // The last request's line comes after every earlier one's.
    let marker = Curl::http(web, "/api/marker").host("app.test").run();
    assert_eq!(marker.status, 200);
    assert!(
        portico
            .wait_for_log(
                |l| is_access_line(l) && l.contains("path=/api/marker"),
                WAIT
            )
            .is_some(),
        "{}",
        portico.log_text()
    );
    let log = portico.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| is_access_line(l)).collect();
    assert_eq!(lines.len(), 5, "one line per request:\n{log}");

    let fields = |line: &str| -> Vec<Option<String>> {
        [
            "listener", "method", "host", "path", "status", "bytes", "backend", "route",
        ]
        .iter()
        .map(|k| field(line, k))
        .collect()
    };
    let expect = |line: &str, want: [&str; 8]| {
        let got = fields(line);
        let want: Vec<Option<String>> = want.iter().map(|w| Some((*w).to_owned())).collect();
        assert_eq!(got, want, "{line}");
    };
    let api_addr = api.addr.to_string();
    let slow_addr = slow.addr.to_string();
    let len = |r: &crate::harness::real_clients::CurlResponse| r.body.len().to_string();
    expect(
        lines[0],
        [
            "web",
            "GET",
            "app.test",
            "/api/one?x=1",
            "200",
            &len(&ok),
            &api_addr,
            "api",
        ],
    );
    expect(
        lines[1],
        ["web", "GET", "app.test", "/missing", "404", "32", "-", "-"],
    );
    expect(
        lines[2],
        [
            "web",
            "POST",
            "app.test",
            "/api/two",
            "200",
            &len(&posted),
            &api_addr,
            "api",
        ],
    );
    // A 504: no backend answered in time. (Which backend it waited on is worth logging.)
    let t = fields(lines[3]);
    assert_eq!(t[4].as_deref(), Some("504"), "{}", lines[3]);
    assert_eq!(t[7].as_deref(), Some("slow"), "{}", lines[3]);
    assert!(
        t[6].as_deref() == Some("-") || t[6].as_deref() == Some(slow_addr.as_str()),
        "{}",
        lines[3]
    );
}

#[test]
fn access_log_false_writes_no_access_lines() {
    let api = HttpBackend::start("api");
    let slow = HttpBackend::start("slow");
    let config = api_config(&api, &slow, "[log]\naccess_log = false\n");
    let mut portico = Portico::start(&config);
    let web = portico.addr("web");
    assert_eq!(Curl::http(web, "/api/a").run().status, 200);
    assert_eq!(Curl::http(web, "/nothing").run().status, 404);
    // The reload's outcome line comes after anything the requests logged.
    let outcome = portico.sighup();
    assert!(outcome.contains("reload applied"), "{outcome}");
    assert_eq!(
        portico.count_lines(is_access_line),
        0,
        "{}",
        portico.log_text()
    );
    assert_eq!(api.requests(), 1);
}

/// Listener `web` sending `/app` to pool `target` (one of the backends' names).
fn reroute_config(old: &HttpBackend, new: &HttpBackend, target: &str) -> String {
    format!(
        r#"{pools}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"

[[listeners.web.routes]]
name = "app"
path_prefix = "/app"
pool = "{target}"
"#,
        pools = pools_of(&[old, new]),
    )
}

#[test]
fn a_reload_reroutes_the_next_request_on_a_kept_alive_http1_connection() {
    let old = HttpBackend::start("old");
    let new = HttpBackend::start("new");
    let mut portico = Portico::start(&reroute_config(&old, &new, "old"));
    let mut s = connect(portico.addr("web"));

    let r = keep_alive_get(&mut s, "app.test", "/app/1");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(Echoed::parse(&r.text()).backend, "old");

    let outcome = portico.reload(&reroute_config(&old, &new, "new"));
    assert!(outcome.contains("reload applied"), "{outcome}");

    // Same TCP connection: the request is routed by the new table.
    let r = keep_alive_get(&mut s, "app.test", "/app/2");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(Echoed::parse(&r.text()).backend, "new");
    let r = keep_alive_get(&mut s, "app.test", "/other");
    assert_eq!(r.status, 404, "the default-less table: {r:?}");
    assert_eq!((old.requests(), new.requests()), (1, 1));
}

#[test]
fn a_reload_reroutes_the_next_request_on_the_same_http2_connection() {
    let old = HttpBackend::start("old");
    let new = HttpBackend::start("new");
    let mut portico = Portico::start(&reroute_config(&old, &new, "old"));
    let mut h2 = H2Connection::open(portico.addr("web"));

    let r = h2.get("app.test", "/app/1");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(Echoed::parse(&r.text()).backend, "old");

    let outcome = portico.reload(&reroute_config(&old, &new, "new"));
    assert!(outcome.contains("reload applied"), "{outcome}");

    let r = h2.get("app.test", "/app/2");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(Echoed::parse(&r.text()).backend, "new");
    assert_eq!((old.requests(), new.requests()), (1, 1));
    assert!(h2.is_open());
}

/// The value of the sample `name{labels...}` whose labels include all of `labels`.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let rest = rest.strip_suffix('}')?;
            let has_all = labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            has_all.then(|| value.parse().ok()).flatten()
        })
}

#[test]
fn metrics_count_requests_by_route_and_code_with_a_duration_histogram() {
    let api = HttpBackend::start("api");
    let slow = HttpBackend::builder("slow")
        .delay(Duration::from_secs(2))
        .start();
    let portico = Portico::start(&api_config(&api, &slow, ""));
    let web = portico.addr("web");
    for i in 0..3 {
        let r = Curl::http(web, &format!("/api/{i}")).run();
        assert_eq!(echoed(&r).backend, "api");
    }
    let r = Curl::http(web, "/api/h2")
        .arg("--http2-prior-knowledge")
        .run();
    assert_eq!(r.status, 200);
    assert_eq!(Curl::http(web, "/nowhere").run().status, 404);
    assert_eq!(Curl::http(web, "/slow").run().status, 504);

    let response = http(portico.admin_addr(), "GET", "/metrics", &[], None);
    assert_eq!(response.status, 200);
    let m = &response.body;
    let requests = |route: &str, code: &str| {
        sample(
            m,
            "portico_http_requests_total",
            &[("listener", "web"), ("route", route), ("code", code)],
        )
    };
    assert_eq!(requests("api", "200"), Some(4.0), "{m}");
    assert_eq!(requests("none", "404"), Some(1.0), "{m}");
    assert_eq!(requests("slow", "504"), Some(1.0), "{m}");
    assert_eq!(requests("api", "404").unwrap_or(0.0), 0.0, "{m}");

    let duration = "portico_http_request_duration_seconds";
    let bucket = |route: &str, le: &str| {
        sample(
            m,
            &format!("{duration}_bucket"),
            &[("listener", "web"), ("route", route), ("le", le)],
        )
    };
    let api_labels = [("listener", "web"), ("route", "api")];
    assert_eq!(
        sample(m, &format!("{duration}_count"), &api_labels),
        Some(4.0),
        "{m}"
    );
    assert_eq!(bucket("api", "+Inf"), Some(4.0), "{m}");
    // Loopback requests take well under a second.
    assert_eq!(bucket("api", "1"), Some(4.0), "{m}");
    // The 504 took the route's 300 ms: nothing in the 0.25 s bucket, at most 2.5 s (a busy machine is slow).
    assert_eq!(bucket("slow", "0.25"), Some(0.0), "{m}");
    assert_eq!(bucket("slow", "2.5"), Some(1.0), "{m}");
}

/// A connection Portico accepted before a graceful stop (SIGTERM, or the old process of a
/// binary upgrade) has a client whose request may still be on its way: it is answered, with
/// `Connection: close`, not cut unread. A kept-alive connection between requests is closed.
#[test]
fn sigterm_answers_the_first_request_of_a_connection_it_had_accepted() {
    let app = HttpBackend::start("app");
    let other = HttpBackend::start("other");
    let mut portico = Portico::start(&reroute_config(&app, &other, "app"));
    let web = portico.addr("web");
    let mut kept = connect(web);
    let r = keep_alive_get(&mut kept, "app.test", "/app/1");
    assert_eq!(r.status, 200, "{r:?}");
    let mut fresh = connect(web);
    // Both are Portico's (accepted, not still in the listen backlog) before the stop.
    let accepted = eventually(|| {
        let metrics = http(portico.admin_addr(), "GET", "/metrics", &[], None).body;
        sample(
            &metrics,
            "portico_connections_active",
            &[("listener", "web")],
        ) == Some(2.0)
    });
    assert!(accepted, "both connections were accepted");

    portico.signal("TERM");
    assert!(
        portico
            .wait_for_log(|l| l.contains("stopped accepting"), WAIT)
            .is_some(),
        "{}",
        portico.log_text()
    );
    // Closed by the stop, well before header_timeout (10 s) would have closed it.
    kept.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 1];
    let closed = kept.read(&mut buf);
    assert!(
        matches!(&closed, Ok(0))
            || closed
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::ConnectionReset),
        "the idle kept-alive connection is closed at once: {closed:?}"
    );
    let r = keep_alive_get(&mut fresh, "app.test", "/app/2");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(
        matches!(fresh.read(&mut buf), Ok(0)),
        "closed after its answer"
    );
    assert_eq!(app.requests(), 2);
    assert_eq!(portico.wait_exit(WAIT).code(), Some(0));
}
