//! The route table as a client sees it: host (exact, wildcard, any), path (exact, longest
//! prefix), method and header constraints, the listener's default pool, 404; and the http
//! listener that only redirects to https.

use super::pools_of;
use crate::harness::Portico;
use crate::harness::http_backend::{Echoed, HttpBackend};
use crate::harness::real_clients::Curl;

#[test]
fn requests_are_routed_by_host_path_method_and_headers() {
    let names = [
        "exact-host",
        "wildcard",
        "exact-path",
        "prefix-health",
        "prefix-v1",
        "prefix-v1-users",
        "post-only",
        "canary",
        "fallback",
    ];
    let backends: Vec<HttpBackend> = names.iter().map(|n| HttpBackend::start(n)).collect();
    let refs: Vec<&HttpBackend> = backends.iter().collect();
    // The shorter prefix is listed first: the longest one must win anyway.
    let portico = Portico::start(&format!(
        r#"{pools}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"
pool = "fallback"

[[listeners.web.routes]]
host = "api.test"
pool = "exact-host"

[[listeners.web.routes]]
host = "*.test"
pool = "wildcard"

[[listeners.web.routes]]
path_exact = "/health"
pool = "exact-path"

[[listeners.web.routes]]
path_prefix = "/health"
pool = "prefix-health"

[[listeners.web.routes]]
path_prefix = "/v1/"
pool = "prefix-v1"

[[listeners.web.routes]]
path_prefix = "/v1/users/"
pool = "prefix-v1-users"

[[listeners.web.routes]]
path_prefix = "/submit"
methods = ["POST"]
pool = "post-only"

[[listeners.web.routes]]
path_prefix = "/canary"
headers = {{ x-canary = "yes" }}
pool = "canary"

[listeners.strict]
bind = "127.0.0.1:0"
protocol = "http"

[[listeners.strict.routes]]
host = "api.test"
path_prefix = "/api/"
pool = "exact-host"
"#,
        pools = pools_of(&refs),
    ));
    let web = portico.addr("web");

    // (Host, method, path, extra header, the backend that must answer)
    let cases: &[(&str, &str, &str, Option<&str>, &str)] = &[
        // Exact host first, even where an any-host route has the exact path.
        ("api.test", "GET", "/health", None, "exact-host"),
        ("API.Test:8080", "GET", "/x", None, "exact-host"),
        ("api.test.", "GET", "/x", None, "exact-host"),
        // Wildcards at any depth, before any-host routes, never the bare suffix.
        ("www.test", "GET", "/health", None, "wildcard"),
        ("a.b.test", "GET", "/", None, "wildcard"),
        ("test", "GET", "/nothing", None, "fallback"),
        // Any host: exact path, then the longest prefix, whatever the config order.
        ("example.org", "GET", "/health", None, "exact-path"),
        ("example.org", "GET", "/health?probe=1", None, "exact-path"),
        ("example.org", "GET", "/healthz", None, "prefix-health"),
        ("example.org", "GET", "/health/live", None, "prefix-health"),
        ("example.org", "GET", "/v1/users/7", None, "prefix-v1-users"),
        ("example.org", "GET", "/v1/items", None, "prefix-v1"),
        ("example.org", "GET", "/v1/users", None, "prefix-v1"),
        ("example.org", "GET", "/v1", None, "fallback"),
        // Methods and headers narrow a route; a miss falls through to the default pool.
        ("example.org", "POST", "/submit", None, "post-only"),
        ("example.org", "GET", "/submit", None, "fallback"),
        (
            "example.org",
            "GET",
            "/canary",
            Some("X-Canary: yes"),
            "canary",
        ),
        (
            "example.org",
            "GET",
            "/canary",
            Some("X-Canary: no"),
            "fallback",
        ),
        ("example.org", "GET", "/canary", None, "fallback"),
    ];
    for http2 in [false, true] {
        for &(host, method, path, header, expected) in cases {
            let mut curl = Curl::http(web, path).host(host).method(method);
            if let Some(h) = header {
                curl = curl.header(h);
            }
            if http2 {
                curl = curl.arg("--http2-prior-knowledge");
            }
            let r = curl.run();
            let what = format!("{method} {path} Host: {host} {header:?} (h2: {http2})");
            assert_eq!(r.status, 200, "{what}: {r:#?}");
            let e = Echoed::parse(&r.body);
            assert_eq!(e.backend, expected, "{what}");
            assert!(e.request_line.starts_with(&format!("{method} {path} ")));
        }
    }
    let total: usize = backends.iter().map(HttpBackend::requests).sum();
    assert_eq!(total, 2 * cases.len());

    // No default pool: what no route takes gets a 404 from Portico itself.
    let strict = portico.addr("strict");
    let r = Curl::http(strict, "/api/users").host("api.test").run();
    assert_eq!(Echoed::parse(&r.body).backend, "exact-host");
    for (host, path) in [("other.test", "/api/users"), ("api.test", "/web/")] {
        let r = Curl::http(strict, path).host(host).run();
        assert_eq!(r.status, 404, "{host}{path}: {r:#?}");
        assert_eq!(r.body, "no route for this host and path\n");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    }
    let total: usize = backends.iter().map(HttpBackend::requests).sum();
    assert_eq!(total, 2 * cases.len() + 1, "a 404 reached a backend");
}

#[test]
fn redirect_https_answers_308_to_the_same_url() {
    let portico = Portico::start(
        r#"
[listeners.plain]
bind = "127.0.0.1:0"
protocol = "http"
redirect_https = true
"#,
    );
    let addr = portico.addr("plain");
    let r = Curl::http(addr, "/a/b?x=1&y=two")
        .host("shop.test:8080")
        .run();
    assert_eq!(r.status, 308, "{r:#?}");
    assert_eq!(
        r.header("location"),
        Some("https://shop.test/a/b?x=1&y=two")
    );

    let r = Curl::http(addr, "/form")
        .host("shop.test")
        .arg("--data")
        .arg("a=1")
        .run();
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://shop.test/form"));

    let r = Curl::http(addr, "/h2?z")
        .host("shop.test")
        .arg("--http2-prior-knowledge")
        .run();
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://shop.test/h2?z"));
}
