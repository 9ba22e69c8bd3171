//! The admin API through the real binary (DESIGN.md "Admin API" and "Metrics"): bearer-token
//! auth, errors for bad input, node and backend drains, node lists set by the API and persisted
//! across restarts, reload over HTTP, /metrics, /readyz during shutdown, and the status document.
//!
//! Cluster "nodes" are loopback addresses 127.0.0.2, 127.0.0.3, ... (all of 127/8 is loopback on
//! Linux), each with a test backend on one shared port: the NodePort.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;

use serde_json::{Value, json};

use crate::harness::backend::{Behavior, TestBackend};
use crate::harness::http::{Response, get_json, http, post, put_json};
use crate::harness::{
    Portico, WAIT, assert_echo, connect, eventually, read_line, who_answers, with_test_admin,
    write_file,
};
use crate::l4::one_listener;

mod bad_input;
mod metrics;
mod prometheus;
mod regressions;

use prometheus::scrape;

/// The admin token the tests configure (at least 16 characters).
const TOKEN: &str = "correct-horse-battery-staple";
/// `portico::admin::MAX_BODY`: the largest request body the API accepts.
const MAX_BODY: usize = 256 * 1024;

// ---------------------------------------------------------------------------------------------
// Helpers.

fn ip(text: &str) -> IpAddr {
    text.parse().expect("IP address")
}

/// One GreetEcho backend per `(name, ip)`, all on one port (the NodePort); returns them and the port.
fn start_nodes(nodes: &[(&str, &str)]) -> (Vec<TestBackend>, u16) {
    let nodes: Vec<(&str, IpAddr)> = nodes.iter().map(|&(n, a)| (n, ip(a))).collect();
    let backends = TestBackend::start_nodes(&nodes, Behavior::GreetEcho);
    let port = backends[0].addr.port();
    (backends, port)
}

/// `["127.0.0.2", ...]` for a cluster's `nodes`.
fn node_list(ips: &[&str]) -> String {
    let quoted: Vec<String> = ips.iter().map(|a| format!("\"{a}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// An `[admin]` section on an OS-chosen loopback port with a token file written in `dir`.
/// The file ends with a newline, as `echo token > file` writes it.
fn admin_with_token(dir: &Path, extra: &str) -> String {
    let path = write_file(dir, "admin.token", &format!("{TOKEN}\n"));
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n{extra}\n",
        path.display()
    )
}

/// Cluster `c` of `node_ips` at `port`, one round-robin pool per `(pool, listener)` on it.
fn cluster_config(node_ips: &[&str], port: u16, pools: &[(&str, &str)]) -> String {
    let mut config = format!(
        "[runtime]\nshutdown_grace = \"5s\"\n\n[clusters.c]\nnodes = {}\n",
        node_list(node_ips)
    );
    for (pool, listener) in pools {
        config.push_str(&format!(
            "\n[pools.{pool}]\ncluster = \"c\"\nnode_port = {port}\nbalance = \"round_robin\"\n\
             \n[listeners.{listener}]\nbind = \"127.0.0.1:0\"\npool = \"{pool}\"\n"
        ));
    }
    config
}

/// Who answers each of `n` new connections to `addr`: backend name -> count.
fn tally(addr: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        *counts.entry(who_answers(addr)).or_insert(0) += 1;
    }
    counts
}

fn names(counts: &BTreeMap<String, usize>) -> BTreeSet<&str> {
    counts.keys().map(String::as_str).collect()
}

/// A connection through `addr` whose backend greets as `name` (round robin gets there within
/// a few tries); connections that reach another backend are closed.
fn connection_to(addr: SocketAddr, name: &str) -> TcpStream {
    for _ in 0..10 {
        let mut s = connect(addr);
        if read_line(&mut s) == name {
            return s;
        }
    }
    panic!("no connection through {addr} reached {name} in 10 tries");
}

fn status(portico: &Portico, token: Option<&str>) -> Value {
    get_json(portico.admin_addr(), "/api/v1/status", token)
}

/// The status entry of backend `addr` in pool `pool`.
fn backend_status(status: &Value, pool: &str, addr: &str) -> Value {
    let pool_entry = status["pools"]
        .as_array()
        .expect("pools array")
        .iter()
        .find(|p| p["name"] == pool)
        .unwrap_or_else(|| panic!("no pool {pool} in {status:#}"));
    pool_entry["backends"]
        .as_array()
        .expect("backends array")
        .iter()
        .find(|b| b["address"] == addr)
        .cloned()
        .unwrap_or_else(|| panic!("no backend {addr} in pool {pool}: {pool_entry:#}"))
}

fn cluster_status(status: &Value, cluster: &str) -> Value {
    status["clusters"]
        .as_array()
        .expect("clusters array")
        .iter()
        .find(|c| c["name"] == cluster)
        .cloned()
        .unwrap_or_else(|| panic!("no cluster {cluster} in {status:#}"))
}

/// Asserts an error answer: `status`, JSON content type, and a JSON body with a string `error`.
fn assert_error(r: &Response, status: u16, what: &str) -> Value {
    assert_eq!(r.status, status, "{what}: {r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "{what}: an error is JSON: {r:?}"
    );
    let body = r.json();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: the body names the error: {body}"
    );
    body
}

/// The `details` of an error body, as strings.
fn details(body: &Value) -> Vec<String> {
    body["details"]
        .as_array()
        .unwrap_or_else(|| panic!("no details in {body}"))
        .iter()
        .map(|d| d.as_str().expect("detail is a string").to_owned())
        .collect()
}

/// Writes `config` (with the test admin section unless it has its own) where Portico reloads
/// from, without signalling it.
fn write_config(portico: &Portico, config: &str) {
    std::fs::write(portico.config_path(), with_test_admin(config)).expect("write config");
}

// ---------------------------------------------------------------------------------------------
// 1. Auth.

#[test]
fn api_routes_need_the_bearer_token_and_open_routes_stay_open() {
    let secrets = tempfile::tempdir().unwrap();
    let (_nodes, port) = start_nodes(&[("a", "127.0.0.2"), ("b", "127.0.0.3")]);
    let s = TestBackend::start("s", Behavior::GreetEcho);
    let config = format!(
        "{}{}\n[pools.s]\nservers = [\"{}\"]\n",
        admin_with_token(secrets.path(), ""),
        cluster_config(&["127.0.0.2", "127.0.0.3"], port, &[("n", "l")]),
        s.addr
    );
    let portico = Portico::start(&config);
    let admin = portico.admin_addr();
    let nodes_body = br#"{"nodes": ["127.0.0.2", "127.0.0.3"]}"#.to_vec();
    let routes: Vec<(&str, String, Option<Vec<u8>>)> = vec![
        ("GET", "/api/v1/status".into(), None),
        ("POST", "/api/v1/reload".into(), None),
        ("PUT", "/api/v1/clusters/c/nodes".into(), Some(nodes_body)),
        (
            "POST",
            "/api/v1/clusters/c/nodes/127.0.0.2/drain".into(),
            None,
        ),
        (
            "POST",
            "/api/v1/clusters/c/nodes/127.0.0.2/enable".into(),
            None,
        ),
        (
            "POST",
            format!("/api/v1/pools/s/backends/{}/drain", s.addr),
            None,
        ),
        (
            "POST",
            format!("/api/v1/pools/s/backends/{}/enable", s.addr),
            None,
        ),
    ];
    let short = &TOKEN[..TOKEN.len() - 1];
    let wrong_auth: Vec<Option<String>> = vec![
        None,
        Some("Bearer wrong-token-wrong-token".into()),
        Some(format!("Bearer {short}")),  // a prefix of the token
        Some(format!("Bearer {TOKEN}x")), // the token and more
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.into()), // no scheme
        Some("Bearer ".into()),
    ];
    for (method, path, body) in &routes {
        for auth in &wrong_auth {
            let mut headers = vec![("Content-Type", "application/json")];
            if let Some(a) = auth {
                headers.push(("Authorization", a.as_str()));
            }
            let r = http(admin, method, path, &headers, body.as_deref());
            let what = format!("{method} {path} with Authorization {auth:?}");
            assert_error(&r, 401, &what);
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "{what}: a 401 says which scheme to use: {r:?}"
            );
        }
    }
    // None of the refused calls did anything.
    let before = status(&portico, Some(TOKEN));
    assert_eq!(
        backend_status(&before, "n", &format!("127.0.0.2:{port}"))["drained"],
        false
    );
    assert_eq!(
        backend_status(&before, "s", &s.addr.to_string())["drained"],
        false
    );
    assert!(
        !scrape(&portico).has("portico_config_reloads_total"),
        "a refused reload did not run"
    );

    // The right token opens every route (the token file's trailing newline is not part of it).
    let bearer = format!("Bearer {TOKEN}");
    for (method, path, body) in &routes {
        let headers = [
            ("Content-Type", "application/json"),
            ("Authorization", bearer.as_str()),
        ];
        let r = http(admin, method, path, &headers, body.as_deref());
        assert_eq!(r.status, 200, "{method} {path}: {r:?}");
        assert!(r.json().is_object(), "{method} {path}: {r:?}");
    }
    let after = status(&portico, Some(TOKEN));
    assert_eq!(
        backend_status(&after, "n", &format!("127.0.0.2:{port}"))["drained"],
        false,
        "drained, then enabled"
    );

    // The open endpoints need no token; /metrics is open on a loopback admin address.
    let open = |path: &str| http(admin, "GET", path, &[], None);
    let r = open("/healthz");
    assert_eq!(r.status, 200, "{r:?}");
    let r = open("/readyz");
    assert_eq!(r.status, 200, "{r:?}");
    let r = open("/metrics");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("portico_connections_total"), "{r:?}");
    let r = open("/");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/html")),
        "{r:?}"
    );

    // The token file is read at every reload: a new token replaces the old one.
    let rotated = "a-brand-new-token-after-rotation";
    write_file(secrets.path(), "admin.token", rotated);
    post(admin, "/api/v1/reload", Some(TOKEN)).expect(200);
    assert_error(
        &http(
            admin,
            "GET",
            "/api/v1/status",
            &[("Authorization", &bearer)],
            None,
        ),
        401,
        "the old token after a rotation",
    );
    get_json(admin, "/api/v1/status", Some(rotated));
}

// ---------------------------------------------------------------------------------------------
// 3. Drains.

#[test]
fn draining_a_node_stops_new_connections_in_every_pool_and_lets_open_ones_finish() {
    let (_nodes, port) = start_nodes(&[("a", "127.0.0.2"), ("b", "127.0.0.3")]);
    let config = cluster_config(
        &["127.0.0.2", "127.0.0.3"],
        port,
        &[("p1", "l1"), ("p2", "l2")],
    );
    let portico = Portico::start(&config);
    let admin = portico.admin_addr();
    let (l1, l2) = (portico.addr("l1"), portico.addr("l2"));
    let mut open = connection_to(l1, "a");

    let r = post(admin, "/api/v1/clusters/c/nodes/127.0.0.2/drain", None);
    let body = r.expect(200);
    assert_eq!(body["node"], "127.0.0.2", "{body}");
    assert_eq!(body["drained"], true, "{body}");
    assert_eq!(
        body["pools"],
        json!(["p1", "p2"]),
        "every pool of the cluster: {body}"
    );
    assert_eq!(body["active_connections"], 1, "the open connection: {body}");

    for listener in [l1, l2] {
        let counts = tally(listener, 20);
        assert_eq!(
            counts.get("b"),
            Some(&20),
            "only b after the drain: {counts:?}"
        );
    }
    assert_echo(&mut open, b"still served while drained");
    let st = status(&portico, None);
    let a1 = backend_status(&st, "p1", &format!("127.0.0.2:{port}"));
    assert_eq!(a1["drained"], true, "{a1}");
    assert_eq!(a1["active_connections"], 1, "{a1}");
    assert_eq!(
        backend_status(&st, "p2", &format!("127.0.0.2:{port}"))["drained"],
        true
    );

    // A drain survives a reload of the unchanged file.
    post(admin, "/api/v1/reload", None).expect(200);
    assert_eq!(
        tally(l1, 6).get("b"),
        Some(&6),
        "still drained after a reload"
    );

    let body = post(admin, "/api/v1/clusters/c/nodes/127.0.0.2/enable", None).expect(200);
    assert_eq!(body["drained"], false, "{body}");
    for listener in [l1, l2] {
        let counts = tally(listener, 10);
        assert_eq!(names(&counts), BTreeSet::from(["a", "b"]), "{counts:?}");
    }
    assert_echo(&mut open, b"and after the enable");
}

#[test]
fn draining_a_backend_takes_it_out_of_that_pool_only() {
    let (_nodes, port) = start_nodes(&[("a", "127.0.0.2"), ("b", "127.0.0.3")]);
    let config = cluster_config(
        &["127.0.0.2", "127.0.0.3"],
        port,
        &[("p1", "l1"), ("p2", "l2")],
    );
    let portico = Portico::start(&config);
    let admin = portico.admin_addr();
    let (l1, l2) = (portico.addr("l1"), portico.addr("l2"));
    let mut open = connection_to(l1, "a");
    let backend = format!("127.0.0.2:{port}");

    let body = post(
        admin,
        &format!("/api/v1/pools/p1/backends/{backend}/drain"),
        None,
    )
    .expect(200);
    assert_eq!(body["pool"], "p1", "{body}");
    assert_eq!(body["backend"], backend.as_str(), "{body}");
    assert_eq!(body["drained"], true, "{body}");
    assert_eq!(body["active_connections"], 1, "{body}");

    let counts = tally(l1, 20);
    assert_eq!(
        counts.get("b"),
        Some(&20),
        "p1 no longer uses a: {counts:?}"
    );
    let counts = tally(l2, 10);
    assert_eq!(
        names(&counts),
        BTreeSet::from(["a", "b"]),
        "p2 still uses a: {counts:?}"
    );
    assert_echo(&mut open, b"open connection continues");
    let st = status(&portico, None);
    assert_eq!(backend_status(&st, "p1", &backend)["drained"], true);
    assert_eq!(backend_status(&st, "p2", &backend)["drained"], false);

    post(
        admin,
        &format!("/api/v1/pools/p1/backends/{backend}/enable"),
        None,
    )
    .expect(200);
    let counts = tally(l1, 10);
    assert_eq!(names(&counts), BTreeSet::from(["a", "b"]), "{counts:?}");
}

// ---------------------------------------------------------------------------------------------
// 4. Node lists set through the API, persisted.

#[test]
fn a_node_list_set_by_the_api_survives_a_restart_until_the_file_changes_the_cluster() {
    let (_nodes, port) = start_nodes(&[
        ("a", "127.0.0.2"),
        ("b", "127.0.0.3"),
        ("c", "127.0.0.4"),
        ("d", "127.0.0.5"),
    ]);
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("api-state.json");
    let config = |file_nodes: &[&str]| persisted_config(state.path(), file_nodes, port);
    let original = config(&["127.0.0.2", "127.0.0.3"]);
    let mut portico = Portico::start(&original);
    assert_eq!(
        names(&tally(portico.addr("l"), 4)),
        BTreeSet::from(["a", "b"])
    );

    let r = put_json(
        portico.admin_addr(),
        "/api/v1/clusters/c/nodes",
        None,
        &json!({"nodes": ["127.0.0.4", {"address": "127.0.0.5", "weight": 2}]}),
    );
    let body = r.expect(200);
    assert_eq!(body["persisted"], true, "{body}");
    assert_eq!(body["nodes"], json!(["127.0.0.4", "127.0.0.5"]), "{body}");
    let weighted = BTreeMap::from([("c".to_owned(), 10), ("d".to_owned(), 20)]);
    assert_eq!(
        tally(portico.addr("l"), 30),
        weighted,
        "the API's list, by weight"
    );

    let saved: Value = serde_json::from_slice(&std::fs::read(&state_file).expect("state file"))
        .expect("the state file is JSON");
    let saved_nodes: Vec<&Value> = saved["clusters"]["c"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no node list for c in {saved}"))
        .iter()
        .map(|n| &n["address"])
        .collect();
    assert_eq!(
        saved_nodes,
        [&json!("127.0.0.4"), &json!("127.0.0.5")],
        "{saved}"
    );
    let c = cluster_status(&status(&portico, None), "c");
    assert_eq!(c["node_list_from"], "api", "{c}");
    assert_eq!(
        c["nodes"],
        json!([
            {"address": "127.0.0.4", "weight": 1, "drained": false},
            {"address": "127.0.0.5", "weight": 2, "drained": false},
        ]),
        "{c}"
    );

    // A reload of the unchanged file keeps the API's list.
    post(portico.admin_addr(), "/api/v1/reload", None).expect(200);
    assert_eq!(tally(portico.addr("l"), 30), weighted, "after a reload");

    // A restart with the same config and state_dir keeps it too.
    portico.signal("TERM");
    assert_eq!(portico.wait_exit(WAIT).code(), Some(0));
    let mut portico = Portico::start(&original);
    let c = cluster_status(&status(&portico, None), "c");
    assert_eq!(c["node_list_from"], "api", "after a restart: {c}");
    assert_eq!(tally(portico.addr("l"), 30), weighted, "after a restart");

    // The file changes the cluster: the file's list applies again, and the override is gone
    // for good (it does not come back when the file returns to the list it replaced).
    let outcome = portico.reload(&config(&["127.0.0.2"]));
    assert!(outcome.contains("reload applied"), "{outcome}");
    let c = cluster_status(&status(&portico, None), "c");
    assert_eq!(c["node_list_from"], "file", "{c}");
    assert_eq!(tally(portico.addr("l"), 6).get("a"), Some(&6));
    let saved: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert!(
        saved["clusters"].get("c").is_none(),
        "the obsolete override is dropped from the state file: {saved}"
    );
    let outcome = portico.reload(&original);
    assert!(outcome.contains("reload applied"), "{outcome}");
    assert_eq!(
        names(&tally(portico.addr("l"), 4)),
        BTreeSet::from(["a", "b"])
    );
}

/// Cluster `c` of `file_nodes` at `port` with `runtime.state_dir`, behind pool `p` and listener `l`.
fn persisted_config(state_dir: &Path, file_nodes: &[&str], port: u16) -> String {
    cluster_config(file_nodes, port, &[("p", "l")]).replace(
        "[runtime]\n",
        &format!("[runtime]\nstate_dir = \"{}\"\n", state_dir.display()),
    )
}

/// Nodes a, b, c (127.0.0.2-4); the file lists a and b, the API replaces them with c; then
/// Portico stops, the file changes the cluster to a alone, and a new Portico starts.
fn restart_after_the_file_changed(state_dir: &Path) -> (Portico, Vec<TestBackend>) {
    let (nodes, port) = start_nodes(&[("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.4")]);
    let mut portico = Portico::start(&persisted_config(
        state_dir,
        &["127.0.0.2", "127.0.0.3"],
        port,
    ));
    let body = json!({"nodes": ["127.0.0.4"]});
    put_json(
        portico.admin_addr(),
        "/api/v1/clusters/c/nodes",
        None,
        &body,
    )
    .expect(200);
    assert_eq!(tally(portico.addr("l"), 2).get("c"), Some(&2));
    portico.signal("TERM");
    assert_eq!(portico.wait_exit(WAIT).code(), Some(0));
    let portico = Portico::start(&persisted_config(state_dir, &["127.0.0.2"], port));
    (portico, nodes)
}

#[test]
fn a_file_that_changed_the_cluster_while_portico_was_down_wins_at_start() {
    let state = tempfile::tempdir().unwrap();
    let (portico, _nodes) = restart_after_the_file_changed(state.path());
    assert_eq!(
        tally(portico.addr("l"), 4).get("a"),
        Some(&4),
        "the file's new list, not the API's older one"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Reload over HTTP.

#[test]
fn api_reload_answers_the_errors_and_keeps_serving_or_applies_the_change() {
    let old = TestBackend::start("old", Behavior::GreetEcho);
    let new = TestBackend::start("new", Behavior::GreetEcho);
    let good = one_listener(&[&old], "round_robin", "");
    let portico = Portico::start(&good);
    let (admin, addr) = (portico.admin_addr(), portico.addr("l"));
    let mut open = connect(addr);
    assert_eq!(read_line(&mut open), "old");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let short_token = write_file(portico.dir(), "short.token", "too-short\n");
    let short_token_admin = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
        short_token.display()
    );
    for (broken, expect_detail, at_least) in [
        ("this is [not toml".to_owned(), "", 1),
        (
            good.replace("pool = \"p\"", "pool = \"nope\""),
            "listeners.l.pool",
            1,
        ),
        (
            good.replace("pool = \"p\"", "pool = \"nope\"")
                .replace("round_robin", "fastest"),
            "pools.p.balance",
            2,
        ),
        (
            format!("{good}\n[listeners.extra]\nbind = \"{taken_addr}\"\npool = \"p\"\n"),
            "cannot bind",
            1,
        ),
        (format!("{short_token_admin}{good}"), "admin.token_file", 1),
    ] {
        write_config(&portico, &broken);
        let r = post(admin, "/api/v1/reload", None);
        let body = assert_error(&r, 422, &broken);
        let d = details(&body);
        assert!(d.len() >= at_least, "every error is reported: {d:?}");
        assert!(
            d.iter().any(|d| d.contains(expect_detail)),
            "the details name {expect_detail:?}: {d:?}"
        );
        assert_eq!(who_answers(addr), "old", "still serving the old config");
        assert_echo(&mut open, b"still here");
    }

    write_config(&portico, &one_listener(&[&new], "round_robin", ""));
    let body = post(admin, "/api/v1/reload", None).expect(200);
    assert_eq!(body["result"], "applied", "{body}");
    assert!(
        body["changes"]
            .as_str()
            .is_some_and(|c| c.contains("pools ~p")),
        "the answer carries the diff: {body}"
    );
    for _ in 0..3 {
        assert_eq!(who_answers(addr), "new");
    }
    assert_echo(&mut open, b"after the reload");
}

// ---------------------------------------------------------------------------------------------
// 7. Readiness during shutdown.

#[test]
fn readyz_answers_503_during_the_shutdown_drain() {
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let mut portico = Portico::start(&one_listener(&[&b], "round_robin", ""));
    let admin = portico.admin_addr();
    assert_eq!(http(admin, "GET", "/readyz", &[], None).status, 200);
    assert_eq!(status(&portico, None)["ready"], true);
    let mut open = connect(portico.addr("l"));
    assert_eq!(read_line(&mut open), "b");

    portico.signal("TERM");
    assert!(
        eventually(|| http(admin, "GET", "/readyz", &[], None).status == 503),
        "/readyz answers 503 once the shutdown started"
    );
    assert!(portico.is_running(), "still draining the open connection");
    let r = http(admin, "GET", "/healthz", &[], None);
    assert_eq!(r.status, 200, "alive while draining: {r:?}");
    assert_error(
        &post(admin, "/api/v1/reload", None),
        503,
        "a reload during the shutdown",
    );
    assert_echo(&mut open, b"finishing");
    drop(open);
    assert_eq!(portico.wait_exit(WAIT).code(), Some(0));
}

// ---------------------------------------------------------------------------------------------
// 8. The status document.

#[test]
fn status_lists_listeners_pools_and_backends_with_their_live_state() {
    let b1 = TestBackend::start("b1", Behavior::GreetEcho);
    let b2 = TestBackend::start("b2", Behavior::GreetEcho);
    let (_nodes, port) = start_nodes(&[("a", "127.0.0.2"), ("b", "127.0.0.3")]);
    let config = format!(
        "{}\n[pools.p]\nservers = [\"{}\", {{ address = \"{}\", weight = 3 }}]\n\
         balance = \"least_conn\"\n\
         [pools.p.health]\nkind = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"1s\"\n\
         [listeners.l]\nbind = \"127.0.0.1:0\"\npool = \"p\"\n",
        cluster_config(&["127.0.0.2", "127.0.0.3"], port, &[("n", "m")]),
        b1.addr,
        b2.addr
    );
    let portico = Portico::start(&config);
    let mut open = connect(portico.addr("l"));
    let first = read_line(&mut open);
    let (b1_addr, b2_addr) = (b1.addr.to_string(), b2.addr.to_string());

    let mut st = Value::Null;
    let checked = eventually(|| {
        st = status(&portico, None);
        [&b1_addr, &b2_addr].iter().all(|a| {
            let b = backend_status(&st, "p", a);
            b["health"] == "up" && b["last_check"].is_object()
        })
    });
    assert!(checked, "both backends of p are checked and up: {st:#}");
    assert_eq!(st["ready"], true);
    assert!(st["version"].is_string(), "{st}");

    let listeners = st["listeners"].as_array().expect("listeners");
    assert_eq!(listeners.len(), 2, "{st:#}");
    for (name, pool, active) in [("l", "p", 1), ("m", "n", 0)] {
        let entry = listeners
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no listener {name}: {st:#}"));
        assert_eq!(entry["address"], portico.addr(name).to_string(), "{entry}");
        assert_eq!(entry["pool"], pool, "{entry}");
        assert_eq!(entry["protocol"], "tcp", "{entry}");
        assert_eq!(entry["active_connections"], active, "{entry}");
    }

    for (addr, weight, name) in [(&b1_addr, 1, "b1"), (&b2_addr, 3, "b2")] {
        let b = backend_status(&st, "p", addr);
        assert_eq!(b["health"], "up", "{b}");
        assert_eq!(b["weight"], weight, "{b}");
        assert_eq!(b["drained"], false, "{b}");
        let active = u64::from(first == name);
        assert_eq!(b["active_connections"], active, "{b}");
        let check = &b["last_check"];
        assert!(check["at"].as_f64().is_some_and(|t| t > 0.0), "{b}");
        assert_eq!(check["healthy"], true, "{b}");
    }
    for node in ["127.0.0.2", "127.0.0.3"] {
        let b = backend_status(&st, "n", &format!("{node}:{port}"));
        assert_eq!(b["health"], "not checked", "{b}");
        assert!(b["last_check"].is_null(), "{b}");
        assert_eq!(b["node"], node, "{b}");
        assert_eq!(b["weight"], 1, "{b}");
        assert_eq!(b["drained"], false, "{b}");
        assert_eq!(b["active_connections"], 0, "{b}");
    }
    let c = cluster_status(&st, "c");
    assert_eq!(c["node_list_from"], "file", "{c}");
    assert_echo(&mut open, b"bye");
}
