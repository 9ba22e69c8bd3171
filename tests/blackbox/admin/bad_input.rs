//! Every route with bad input: the right status and a JSON error, and nothing changed.

use super::{
    MAX_BODY, assert_error, backend_status, cluster_config, cluster_status, details, status,
};
use crate::harness::Portico;
use crate::harness::backend::{Behavior, TestBackend};
use crate::harness::http::{http, post};

// ---------------------------------------------------------------------------------------------
// 2. Bad input.

#[test]
fn bad_requests_get_the_right_status_and_a_json_error() {
    let s = TestBackend::start("s", Behavior::GreetEcho);
    // Nothing connects to the nodes or to [::1]:8080 in this test: they are only names.
    let config = format!(
        "{}\n[pools.s]\nservers = [\"{}\", \"[::1]:8080\"]\n",
        cluster_config(&["127.0.0.2", "127.0.0.3"], 30080, &[("n", "l")]),
        s.addr
    );
    let portico = Portico::start(&config);
    let admin = portico.admin_addr();
    let json_ct = [("Content-Type", "application/json")];
    let put = |body: &[u8]| {
        http(
            admin,
            "PUT",
            "/api/v1/clusters/c/nodes",
            &json_ct,
            Some(body),
        )
    };

    // Unknown names.
    for (path, what) in [
        ("/api/v1/clusters/nope/nodes/127.0.0.2/drain", "cluster"),
        ("/api/v1/clusters/c/nodes/127.0.0.9/drain", "node"),
        ("/api/v1/clusters/c/nodes/127.0.0.9/enable", "node"),
        ("/api/v1/pools/nope/backends/127.0.0.1:1/drain", "pool"),
        ("/api/v1/pools/s/backends/127.0.0.1:1/drain", "backend"),
        ("/api/v1/pools/s/backends/127.0.0.1:1/enable", "backend"),
    ] {
        assert_error(
            &post(admin, path, None),
            404,
            &format!("unknown {what}: {path}"),
        );
    }
    let r = http(
        admin,
        "PUT",
        "/api/v1/clusters/nope/nodes",
        &json_ct,
        Some(br#"{"nodes": ["127.0.0.2"]}"#),
    );
    assert_error(&r, 404, "PUT to an unknown cluster");
    // Addresses that are not addresses.
    assert_error(
        &post(admin, "/api/v1/clusters/c/nodes/not-an-ip/drain", None),
        400,
        "a node that is not an IP",
    );
    assert_error(
        &post(admin, "/api/v1/pools/s/backends/127.0.0.1/drain", None),
        400,
        "a backend without a port",
    );
    assert_error(
        &post(admin, "/api/v1/pools/s/backends/%zz/drain", None),
        400,
        "a bad %-escape",
    );

    // Node list bodies.
    assert_error(&put(br#"{"nodes": ["#), 400, "malformed JSON");
    assert_error(&put(b""), 400, "an empty body");
    assert_error(&put(br#"{"nodez": ["127.0.0.2"]}"#), 400, "a misspelt key");
    assert_error(&put(br#"["127.0.0.2"]"#), 400, "a bare list");
    let body = assert_error(
        &put(br#"{"nodes": ["127.0.0.2", "300.1.1.1"]}"#),
        400,
        "a bad IP",
    );
    let d = details(&body);
    assert!(
        d.iter()
            .any(|d| d.contains("clusters.c.nodes.1") && d.contains("300.1.1.1")),
        "the details name the key and the value: {d:?}"
    );
    let body = assert_error(
        &put(br#"{"nodes": ["127.0.0.2", {"address": "127.0.0.3", "weight": -1}]}"#),
        400,
        "a bad weight",
    );
    assert!(
        details(&body)
            .iter()
            .any(|d| d.contains("clusters.c.nodes.1.weight")),
        "{body}"
    );
    let body = assert_error(
        &put(br#"{"nodes": ["127.0.0.2", "127.0.0.2"]}"#),
        400,
        "a duplicate",
    );
    assert!(details(&body).iter().any(|d| d.contains("twice")), "{body}");
    let body = assert_error(&put(br#"{"nodes": []}"#), 400, "an empty list");
    assert!(
        details(&body)
            .iter()
            .any(|d| d.contains("clusters.c.nodes")),
        "{body}"
    );
    // Content types.
    for ct in [vec![], vec![("Content-Type", "text/plain")]] {
        let r = http(
            admin,
            "PUT",
            "/api/v1/clusters/c/nodes",
            &ct,
            Some(br#"{"nodes": ["127.0.0.2"]}"#),
        );
        assert_error(&r, 415, &format!("Content-Type {ct:?}"));
    }
    // Size: one byte over the limit is refused; exactly the limit is read (and then judged).
    let padded = |len: usize| {
        let mut body = br#"{"nodes": []}"#.to_vec();
        body.resize(len, b' ');
        body
    };
    assert_error(&put(&padded(MAX_BODY + 1)), 413, "a body over the limit");
    let body = assert_error(&put(&padded(MAX_BODY)), 400, "a body of exactly the limit");
    assert!(details(&body).iter().any(|d| d.contains("empty")), "{body}");

    // Wrong methods: 405 with Allow.
    for (method, path, allow) in [
        ("GET", "/api/v1/reload", "POST"),
        ("POST", "/api/v1/status", "GET"),
        ("DELETE", "/api/v1/status", "GET"),
        ("GET", "/api/v1/clusters/c/nodes", "PUT"),
        ("POST", "/api/v1/clusters/c/nodes", "PUT"),
        ("GET", "/api/v1/clusters/c/nodes/127.0.0.2/drain", "POST"),
        ("PUT", "/api/v1/pools/s/backends/127.0.0.1:1/enable", "POST"),
        ("POST", "/metrics", "GET"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/readyz", "GET"),
    ] {
        let r = http(admin, method, path, &[], None);
        assert_error(&r, 405, &format!("{method} {path}"));
        let allowed = r.header("allow").unwrap_or("");
        assert!(
            allowed.split(',').any(|m| m.trim() == allow),
            "{method} {path}: Allow names {allow}: {r:?}"
        );
    }
    // Unknown routes.
    for (method, path) in [
        ("GET", "/api/v1/nope"),
        ("GET", "/api/v1"),
        ("GET", "/api/v2/status"),
        ("GET", "/nope"),
        ("POST", "/api/v1/clusters/c/nodes/127.0.0.2/reboot"),
        ("POST", "/api/v1/pools/s/backends"),
    ] {
        assert_error(
            &http(admin, method, path, &[], None),
            404,
            &format!("{method} {path}"),
        );
    }

    // None of it changed anything.
    let st = status(&portico, None);
    let c = cluster_status(&st, "c");
    assert_eq!(c["node_list_from"], "file", "{c}");
    assert_eq!(c["nodes"].as_array().unwrap().len(), 2, "{c}");
    for b in st["pools"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["backends"].as_array().unwrap())
    {
        assert_eq!(b["drained"], false, "{b}");
    }

    // A percent-encoded IPv6 backend address works.
    let r = post(
        admin,
        "/api/v1/pools/s/backends/%5B%3A%3A1%5D%3A8080/drain",
        None,
    );
    let body = r.expect(200);
    assert_eq!(body["backend"], "[::1]:8080", "{body}");
    assert_eq!(body["drained"], true, "{body}");
    let st = status(&portico, None);
    assert_eq!(backend_status(&st, "s", "[::1]:8080")["drained"], true);
    assert_eq!(
        backend_status(&st, "s", &s.addr.to_string())["drained"],
        false
    );
    // A Content-Type with parameters is still JSON.
    let r = http(
        admin,
        "PUT",
        "/api/v1/clusters/c/nodes",
        &[("Content-Type", "application/json; charset=utf-8")],
        Some(br#"{"nodes": ["127.0.0.2"]}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
}
