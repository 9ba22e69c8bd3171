//! Node-aware health through the real binary: active tcp and http checks, kube-proxy's
//! healthCheckNodePort answers and their endpoint weights, passive ejection, shared probers and
//! health state across reloads.
//!
//! Cluster "nodes" are loopback addresses 127.0.0.2, 127.0.0.3, ... (all of 127/8 is loopback
//! on Linux), each with a NodePort backend and a kube-proxy-like health server, every node on
//! the same two ports. The health server runs on its own port, so a backend's accept counter
//! counts client connections only, never probes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::backend::{Behavior, TestBackend, bind_same_port};
use crate::harness::{Portico, WAIT, connect, connect_from, field, read_line, who_answers};
use crate::l4::servers;

/// Added to every timing bound: CI machines are slow and busy (2 cores), and a bound that only
/// holds on an idle laptop is a flaky test.
const CI_MARGIN: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// A kube-proxy-like health server.

/// What one node's health server answers; changeable while a test runs.
#[derive(Default)]
struct NodeHealth {
    /// kube-proxy's local endpoint count for the Service on this node: 200 when > 0, else 503.
    endpoints: AtomicU32,
    /// While set, requests are read but not answered: a probe can only time out.
    hold: AtomicBool,
    /// Complete requests received (answered or held).
    requests: AtomicUsize,
}

/// kube-proxy's healthCheckNodePort server on every node: one listener per node address, all on
/// one port, so each knows which node was probed.
struct KubeProxyHealth {
    port: u16,
    ips: Vec<IpAddr>,
    nodes: Vec<Arc<NodeHealth>>,
    stop: Arc<AtomicBool>,
}

/// Upper bound on a probe's request head; a longer one is dropped unanswered.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

impl KubeProxyHealth {
    /// One server per address in `ips`, answering `endpoints[i]` for node `i`.
    fn start(ips: &[IpAddr], endpoints: &[u32]) -> KubeProxyHealth {
        assert_eq!(ips.len(), endpoints.len());
        let listeners = bind_same_port(ips);
        let port = listeners[0].local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let nodes = listeners
            .into_iter()
            .zip(endpoints)
            .map(|(listener, &n)| {
                let node = Arc::new(NodeHealth {
                    endpoints: AtomicU32::new(n),
                    ..NodeHealth::default()
                });
                serve_health(listener, Arc::clone(&node), Arc::clone(&stop));
                node
            })
            .collect();
        KubeProxyHealth {
            port,
            ips: ips.to_vec(),
            nodes,
            stop,
        }
    }

    /// The address Portico probes for node `i` (the `target=` of its health log lines).
    fn target(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.ips[i], self.port)
    }

    fn set_endpoints(&self, i: usize, n: u32) {
        self.nodes[i].endpoints.store(n, Ordering::SeqCst);
    }

    fn set_hold(&self, i: usize, hold: bool) {
        self.nodes[i].hold.store(hold, Ordering::SeqCst);
    }

    fn requests(&self, i: usize) -> usize {
        self.nodes[i].requests.load(Ordering::SeqCst)
    }
}

impl Drop for KubeProxyHealth {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve_health(listener: TcpListener, node: Arc<NodeHealth>, stop: Arc<AtomicBool>) {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let (node, stop) = (Arc::clone(&node), Arc::clone(&stop));
                    std::thread::spawn(move || {
                        let _ = answer_probe(stream, &node, &stop);
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
}

fn answer_probe(mut s: TcpStream, node: &NodeHealth, stop: &AtomicBool) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(WAIT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 || head.len() > MAX_REQUEST_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    node.requests.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + WAIT;
    while node.hold.load(Ordering::SeqCst)
        && !stop.load(Ordering::SeqCst)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let endpoints = node.endpoints.load(Ordering::SeqCst);
    s.write_all(kube_proxy_answer(endpoints).as_bytes())
}

/// kube-proxy's answer on a healthCheckNodePort (`pkg/proxy/healthcheck/service_health.go`),
/// byte for byte as Go's net/http sends it for Service default/web.
fn kube_proxy_answer(endpoints: u32) -> String {
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t}},\n\t\
         \"localEndpoints\": {endpoints},\n\t\"serviceProxyHealthy\": true\n}}"
    );
    let status = if endpoints > 0 {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n\
         X-Load-Balancing-Endpoint-Weight: {endpoints}\r\nDate: Mon, 02 Jun 2025 10:00:00 GMT\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

// ---------------------------------------------------------------------------------------------
// A test cluster: NodePort backends and health servers on loopback "nodes".

/// Nodes 127.0.0.2, 127.0.0.3, ...: each a NodePort backend named after it in `names`, and a
/// health server answering its endpoint count.
struct Cluster {
    nodes: Vec<TestBackend>,
    health: KubeProxyHealth,
}

impl Cluster {
    fn start(names: &[&str], endpoints: &[u32]) -> Cluster {
        let ips: Vec<IpAddr> = (0..names.len())
            .map(|i| IpAddr::from([127, 0, 0, 2 + u8::try_from(i).unwrap()]))
            .collect();
        let named: Vec<(&str, IpAddr)> = names.iter().copied().zip(ips.iter().copied()).collect();
        Cluster {
            nodes: TestBackend::start_nodes(&named, Behavior::GreetEcho),
            health: KubeProxyHealth::start(&ips, endpoints),
        }
    }

    fn node_port(&self) -> u16 {
        self.nodes[0].addr.port()
    }

    /// The first `count` nodes as a cluster's `nodes` list.
    fn nodes_toml(&self, count: usize) -> String {
        let list: Vec<String> = self.nodes[..count]
            .iter()
            .map(|n| format!("\"{}\"", n.addr.ip()))
            .collect();
        format!("[{}]", list.join(", "))
    }

    /// A config with the first `count` nodes in cluster `k8s`, pool `web` on its NodePort with
    /// an http check of the health port (plus `health` keys), and listener `web`.
    fn config(&self, count: usize, balance: &str, health: &str) -> String {
        self.config_pools(count, &[("web", balance)], health)
    }

    /// Like [`Self::config`], with one pool and one listener of that name per (name, balance).
    fn config_pools(&self, count: usize, pools: &[(&str, &str)], health: &str) -> String {
        let mut config = format!("[clusters.k8s]\nnodes = {}\n", self.nodes_toml(count));
        for (name, balance) in pools {
            config.push_str(&format!(
                r#"
[pools.{name}]
cluster = "k8s"
node_port = {node_port}
balance = "{balance}"
[pools.{name}.health]
kind = "http"
port = {health_port}
path = "/healthz"
{health}

[listeners.{name}]
bind = "127.0.0.1:0"
pool = "{name}"
"#,
                node_port = self.node_port(),
                health_port = self.health.port,
            ));
        }
        config
    }

    /// Waits for the first verdict on each of the first `count` nodes: up where its endpoint
    /// count is positive, else down.
    fn wait_first_verdicts(&self, portico: &Portico, count: usize) {
        for i in 0..count {
            let up = self.health.nodes[i].endpoints.load(Ordering::SeqCst) > 0;
            wait_verdict(portico, 0, up, self.health.target(i));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Observing Portico.

/// Whether `line` is Portico's "health check: up|down" line for `target`.
fn is_verdict(line: &str, up: bool, target: SocketAddr) -> bool {
    let verdict = if up {
        "health check: up"
    } else {
        "health check: down"
    };
    line.contains(verdict) && field(line, "target") == Some(target.to_string())
}

/// Waits for the "health check: up|down" line of `target` written after `mark`; returns it.
fn wait_verdict(portico: &Portico, mark: usize, up: bool, target: SocketAddr) -> String {
    portico
        .wait_for_log_after(mark, |l| is_verdict(l, up, target), WAIT)
        .unwrap_or_else(|| {
            panic!(
                "no \"health check: {}\" for {target}:\n{}",
                if up { "up" } else { "down" },
                portico.log_text()
            )
        })
}

/// Connect attempts from Portico to `backend` that failed so far (its debug "connect failed").
fn connect_failures(portico: &Portico, backend: SocketAddr) -> usize {
    portico.count_lines(|l| {
        l.contains("connect failed") && field(l, "backend") == Some(backend.to_string())
    })
}

/// Waits until Portico logged the end of `count` connections in all. A connection logs its
/// "connect failed" lines before its end, so after this they are all in the log too.
fn wait_connections_logged(portico: &Portico, count: usize) {
    wait_until(&format!("{count} connection ends are logged"), || {
        portico.count_lines(|l| l.contains("connection closed") || l.contains("connection ended"))
            >= count
    });
}

/// Polls `cond` every 10 ms until it holds; fails the test after [`WAIT`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Opens `n` connections one after another; counts which backend greeted each.
fn tally(addr: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        *counts.entry(who_answers(addr)).or_default() += 1;
    }
    counts
}

/// Client threads of [`tally_parallel`].
const CLIENT_THREADS: usize = 8;

/// Opens connection `i` for each `i` in `0..n` with `open`, several at a time; counts which
/// backend greeted each. Picks then happen in no particular order: only for counts that do not
/// depend on it.
fn tally_parallel(n: usize, open: impl Fn(usize) -> TcpStream + Sync) -> BTreeMap<String, usize> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENT_THREADS)
            .map(|_| {
                scope.spawn(|| {
                    let mut counts = BTreeMap::<String, usize>::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return counts;
                        }
                        *counts.entry(read_line(&mut open(i))).or_default() += 1;
                    }
                })
            })
            .collect();
        let mut counts = BTreeMap::new();
        for worker in workers {
            for (name, n) in worker.join().unwrap() {
                *counts.entry(name).or_default() += n;
            }
        }
        counts
    })
}

/// Asserts that the connections in `counts` split in proportion to `weights` (name, weight),
/// each backend within 10% of its share, and that a backend of weight 0 got none at all.
fn assert_split(counts: &BTreeMap<String, usize>, weights: &[(&str, u32)]) {
    let total: usize = counts.values().sum();
    let weight_sum: u32 = weights.iter().map(|&(_, w)| w).sum();
    for name in counts.keys() {
        assert!(
            weights.iter().any(|&(n, _)| n == name),
            "{name} is not one of {weights:?}: {counts:?}"
        );
    }
    for &(name, weight) in weights {
        let got = counts.get(name).copied().unwrap_or(0);
        let want = total as f64 * f64::from(weight) / f64::from(weight_sum);
        if weight == 0 {
            assert_eq!(got, 0, "{name} has weight 0 but got {got}: {counts:?}");
        } else {
            assert!(
                (got as f64 - want).abs() <= want * 0.1,
                "{name} got {got} of {total}, want {want:.0} ±10%: {counts:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// Active tcp checks: a backend that stops is marked down after `fall` failed probes and gets no
/// connection attempt after that; restarted on its address it is back after `rise` probes.
#[test]
fn a_stopped_backend_is_marked_down_and_comes_back_after_rise_probes() {
    const INTERVAL: Duration = Duration::from_millis(100);
    const RISE: u32 = 3;
    const FALL: u32 = 2;
    // On addresses of their own: c's port, free while it is stopped, cannot be taken by
    // another test's backend on 127.0.0.1 before c restarts on it.
    let [a, b, c] = [("a", 1), ("b", 2), ("c", 3)].map(|(name, host)| {
        TestBackend::start_on(IpAddr::from([127, 0, 1, host]), name, Behavior::GreetEcho)
    });
    // Passive ejection off: only the active check may keep clients away from a dead backend.
    let config = format!(
        r#"
[pools.p]
servers = {servers}
[pools.p.health]
kind = "tcp"
interval = "{interval}ms"
timeout = "500ms"
rise = {RISE}
fall = {FALL}
[pools.p.passive]
failures = 0

[listeners.l]
bind = "127.0.0.1:0"
pool = "p"
"#,
        servers = servers(&[&a, &b, &c]),
        interval = INTERVAL.as_millis(),
    );
    let portico = Portico::start(&config);
    let addr = portico.addr("l");
    for backend in [&a, &b, &c] {
        wait_verdict(&portico, 0, true, backend.addr);
    }
    assert_split(&tally(addr, 30), &[("a", 1), ("b", 1), ("c", 1)]);

    let c_addr = c.addr;
    let mark = portico.log_mark();
    let stopped = Instant::now();
    drop(c);
    let line = wait_verdict(&portico, mark, false, c_addr);
    let took = stopped.elapsed();
    let budget = INTERVAL * (FALL + 1);
    eprintln!("marked down {took:?} after the stop (fall x interval + interval = {budget:?})");
    assert!(
        took <= budget + CI_MARGIN,
        "marked down only after {took:?}"
    );
    assert!(line.contains("refused"), "the reason says why: {line}");

    // From now on no client connection even tries the dead backend.
    wait_connections_logged(&portico, 30);
    let failures = connect_failures(&portico, c_addr);
    let counts = tally(addr, 30);
    assert_split(&counts, &[("a", 1), ("b", 1)]);
    wait_connections_logged(&portico, 60);
    assert_eq!(
        connect_failures(&portico, c_addr),
        failures,
        "a backend marked down was still tried:\n{}",
        portico.log_text()
    );

    let mark = portico.log_mark();
    let restarted = Instant::now();
    let c = TestBackend::start_at(c_addr, "c", Behavior::GreetEcho);
    wait_verdict(&portico, mark, true, c_addr);
    let took = restarted.elapsed();
    // No client was sent there yet: every connection it accepted is a tcp probe. The last
    // probe may still wait in the accept queue; the ones before it came an interval earlier.
    let probes = c.accepted();
    eprintln!("up again {took:?} after the restart, {probes} probes accepted (rise = {RISE})");
    assert!(
        probes >= RISE as usize - 1,
        "up after {probes} successful probes, rise is {RISE}"
    );
    assert!(
        took <= INTERVAL * (RISE + 1) + CI_MARGIN,
        "up only after {took:?}"
    );
    wait_until("the restarted backend answers a client", || {
        who_answers(addr) == "c"
    });
    assert_split(&tally(addr, 30), &[("a", 1), ("b", 1), ("c", 1)]);
}

/// kube-proxy's healthCheckNodePort answers weigh the nodes: endpoint counts 2, 1, 0 split the
/// connections 2:1:0, with round robin and with Maglev; a node whose count becomes 1 comes up
/// and gets its share.
#[test]
fn kube_proxy_endpoint_counts_weigh_the_nodes() {
    let cluster = Cluster::start(&["a", "b", "c"], &[2, 1, 0]);
    // Two pools on the same nodes and checks: round robin and Maglev. A high `fall`: this test
    // is about weights, and on a loaded CI machine two slow probes in a row would otherwise
    // take a node down in the middle of a tally (a probe with no answer keeps the weight).
    let config = cluster.config_pools(
        3,
        &[("web", "round_robin"), ("mg", "maglev")],
        "interval = \"100ms\"\nrise = 2\nfall = 100",
    );
    let portico = Portico::start(&config);
    cluster.wait_first_verdicts(&portico, 3);

    // Node c is down and weighs 0, so it has no turn to skip: round robin's split is exact in
    // whatever order concurrent picks happen.
    let started = Instant::now();
    let counts = tally_parallel(3000, |_| connect(portico.addr("web")));
    eprintln!(
        "round robin, 3000 connections: {counts:?} ({:?})",
        started.elapsed()
    );
    assert_split(&counts, &[("a", 2), ("b", 1), ("c", 0)]);

    let clients: Vec<IpAddr> = (0..3000u32)
        .map(|i| IpAddr::from([127, 11, (i / 250) as u8, (i % 250 + 1) as u8]))
        .collect();
    let started = Instant::now();
    let counts = tally_parallel(clients.len(), |i| {
        connect_from(clients[i], portico.addr("mg"))
    });
    eprintln!("maglev, 3000 clients: {counts:?} ({:?})", started.elapsed());
    assert_split(&counts, &[("a", 2), ("b", 1), ("c", 0)]);
    assert_eq!(cluster.nodes[2].accepted(), 0, "node c has no endpoint");

    // The Service gets a pod on node c.
    let mark = portico.log_mark();
    let changed = Instant::now();
    cluster.health.set_endpoints(2, 1);
    wait_verdict(&portico, mark, true, cluster.health.target(2));
    eprintln!("node c up {:?} after its count became 1", changed.elapsed());
    wait_until("node c gets a client", || {
        who_answers(portico.addr("web")) == "c"
    });
    let counts = tally_parallel(400, |_| connect(portico.addr("web")));
    eprintln!("round robin after the change, 400 connections: {counts:?}");
    assert_split(&counts, &[("a", 2), ("b", 1), ("c", 1)]);
}

/// Passive health alone (no active check): one refused connect ejects a dead backend, and no
/// connection tries it again while the ejection lasts.
#[test]
fn passive_ejection_stops_connect_attempts_to_a_dead_backend() {
    const CONNECTIONS: usize = 20;
    let dead: SocketAddr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }; // closed again: connections to it are refused
    let alive = TestBackend::start("alive", Behavior::GreetEcho);
    let config = format!(
        r#"
[pools.p]
servers = ["{dead}", "{}"]
[pools.p.passive]
failures = 1
ejection = "5s"

[listeners.l]
bind = "127.0.0.1:0"
pool = "p"
"#,
        alive.addr
    );
    let portico = Portico::start(&config);
    let started = Instant::now();
    let counts = tally(portico.addr("l"), CONNECTIONS);
    assert_eq!(counts.get("alive"), Some(&CONNECTIONS), "{counts:?}");
    wait_connections_logged(&portico, CONNECTIONS);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "too slow to observe a 5 s ejection"
    );
    assert_eq!(
        connect_failures(&portico, dead),
        1,
        "the ejected backend was tried again:\n{}",
        portico.log_text()
    );
    assert_eq!(
        portico.count_lines(|l| l.contains("backend ejected after connect failures")),
        1
    );
}

/// A reload that keeps a backend keeps its health verdict: a node marked down stays down, with
/// no client sent there even when its checks can say nothing for a while. A node the reload adds
/// is checked at once, not an interval later.
#[test]
fn reload_keeps_a_down_verdict_and_checks_a_new_node_at_once() {
    const INTERVAL: Duration = Duration::from_secs(2);
    let cluster = Cluster::start(&["a", "b", "c"], &[1, 0, 1]);
    let health = format!(
        "interval = \"{}s\"\ntimeout = \"1s\"\nrise = 2\nfall = 2",
        INTERVAL.as_secs()
    );
    let mut portico = Portico::start(&cluster.config(2, "round_robin", &health));
    cluster.wait_first_verdicts(&portico, 2);
    // From now on node b's health server answers nothing: if the reload forgot b's verdict
    // (default initial state "up"), no probe could take b down again for a whole timeout.
    cluster.health.set_hold(1, true);
    assert_eq!(
        cluster.health.requests(2),
        0,
        "node c is not in the config yet"
    );

    let reloaded = Instant::now();
    let outcome = portico.reload(&cluster.config(3, "round_robin", &health));
    assert!(outcome.contains("reload applied"), "{outcome}");
    let counts = tally(portico.addr("web"), 20);
    assert_eq!(counts.get("b"), None, "node b got clients: {counts:?}");
    assert_eq!(cluster.nodes[1].accepted(), 0);

    wait_until("node c is probed", || cluster.health.requests(2) > 0);
    let took = reloaded.elapsed();
    wait_verdict(&portico, 0, true, cluster.health.target(2));
    eprintln!("new node c first probed {took:?} after the reload (interval {INTERVAL:?})");
    assert!(
        took < INTERVAL * 3 / 4,
        "a new node waited {took:?} for its first probe"
    );
    wait_until("node c gets a client", || {
        who_answers(portico.addr("web")) == "c"
    });
    assert_eq!(cluster.nodes[1].accepted(), 0, "node b got a client");
}

/// Three pools (Services) of one cluster with one healthCheckNodePort and the same timing share
/// one prober per node: each node sees one probe per interval, not three.
#[test]
fn pools_sharing_a_health_port_share_one_prober_per_node() {
    const INTERVAL: Duration = Duration::from_millis(100);
    const WINDOW: Duration = Duration::from_millis(1500);
    let cluster = Cluster::start(&["a", "b", "c"], &[1, 1, 1]);
    let ips: Vec<(&str, IpAddr)> = cluster.nodes.iter().map(|n| ("x", n.addr.ip())).collect();
    let others = [
        TestBackend::start_nodes(&ips, Behavior::GreetEcho),
        TestBackend::start_nodes(&ips, Behavior::GreetEcho),
    ];
    let mut config = format!("[clusters.k8s]\nnodes = {}\n", cluster.nodes_toml(3));
    let node_ports = [
        cluster.node_port(),
        others[0][0].addr.port(),
        others[1][0].addr.port(),
    ];
    for (i, node_port) in node_ports.iter().enumerate() {
        config.push_str(&format!(
            r#"
[pools.svc{i}]
cluster = "k8s"
node_port = {node_port}
[pools.svc{i}.health]
kind = "http"
port = {health_port}
path = "/healthz"
interval = "{interval}ms"

[listeners.svc{i}]
bind = "127.0.0.1:0"
pool = "svc{i}"
"#,
            health_port = cluster.health.port,
            interval = INTERVAL.as_millis(),
        ));
    }
    let portico = Portico::start(&config);
    cluster.wait_first_verdicts(&portico, 3);
    for i in 0..3 {
        let name = who_answers(portico.addr(&format!("svc{i}")));
        assert!(["a", "b", "c", "x"].contains(&name.as_str()), "{name}");
    }

    let before: Vec<usize> = (0..3).map(|i| cluster.health.requests(i)).collect();
    std::thread::sleep(WINDOW); // a measuring window, not a synchronisation
    let probes: Vec<usize> = (0..3)
        .map(|i| cluster.health.requests(i) - before[i])
        .collect();
    let one_prober = (WINDOW.as_millis() / INTERVAL.as_millis()) as usize;
    eprintln!("probes per node in {WINDOW:?}: {probes:?} (one prober: about {one_prober})");
    for (i, &n) in probes.iter().enumerate() {
        assert!(
            n < one_prober * 3 / 2,
            "node {i} got {n} probes in {WINDOW:?}: more than one prober (~{one_prober})"
        );
        assert!(n >= one_prober / 4, "node {i} is hardly probed: {n}");
    }
}

/// `initial = "down"`: a new node gets no client until its first successful probe, neither while
/// its health server has not answered yet nor while it answers 503.
#[test]
fn initial_down_keeps_a_node_idle_until_its_first_successful_probe() {
    let cluster = Cluster::start(&["a", "b"], &[1, 0]);
    cluster.health.set_hold(1, true);
    let portico = Portico::start(&cluster.config(
        2,
        "round_robin",
        "interval = \"100ms\"\ntimeout = \"10s\"\nrise = 1\ninitial = \"down\"",
    ));
    let addr = portico.addr("web");
    wait_verdict(&portico, 0, true, cluster.health.target(0));
    wait_until("node b's first probe arrives", || {
        cluster.health.requests(1) > 0
    });
    assert_split(&tally(addr, 20), &[("a", 1), ("b", 0)]);

    cluster.health.set_hold(1, false);
    wait_verdict(&portico, 0, false, cluster.health.target(1));
    assert_split(&tally(addr, 20), &[("a", 1), ("b", 0)]);
    assert_eq!(cluster.nodes[1].accepted(), 0, "node b got a client");

    cluster.health.set_endpoints(1, 1);
    wait_verdict(&portico, 0, true, cluster.health.target(1));
    wait_until("node b gets a client", || who_answers(addr) == "b");
    assert_split(&tally(addr, 20), &[("a", 1), ("b", 1)]);
}

/// `endpoint_weight = false`: kube-proxy's endpoint counts are ignored (equal split), but a 503
/// still takes its node down.
#[test]
fn endpoint_weight_false_ignores_counts_but_not_503() {
    let cluster = Cluster::start(&["a", "b", "c"], &[3, 1, 0]);
    let portico = Portico::start(&cluster.config(
        3,
        "round_robin",
        "interval = \"100ms\"\nendpoint_weight = false",
    ));
    cluster.wait_first_verdicts(&portico, 3);
    // One at a time: round robin gives the turns of down node c to the next node in order,
    // which only alternates exactly when picks do not overlap.
    let counts = tally(portico.addr("web"), 300);
    eprintln!("endpoint_weight = false, counts 3, 1, 0: {counts:?}");
    assert_split(&counts, &[("a", 1), ("b", 1), ("c", 0)]);
}

/// A reload that turns `endpoint_weight` on applies the counts the running checks already know.
#[test]
fn reload_turning_endpoint_weight_on_applies_the_known_counts() {
    let cluster = Cluster::start(&["a", "b"], &[3, 1]);
    let health = |on: bool| format!("interval = \"100ms\"\nendpoint_weight = {on}");
    let mut portico = Portico::start(&cluster.config(2, "round_robin", &health(false)));
    cluster.wait_first_verdicts(&portico, 2);
    assert_split(&tally(portico.addr("web"), 40), &[("a", 1), ("b", 1)]);

    let outcome = portico.reload(&cluster.config(2, "round_robin", &health(true)));
    assert!(outcome.contains("reload applied"), "{outcome}");
    let counts = tally(portico.addr("web"), 400);
    eprintln!("after turning endpoint_weight on, counts 3, 1: {counts:?}");
    assert_split(&counts, &[("a", 3), ("b", 1)]);
}
