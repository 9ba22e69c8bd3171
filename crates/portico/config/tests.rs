//! Config loading and validation tests: TOML text in through `load_str`, the typed model or the
//! list of errors out. `parse_duration` has its own tests in duration.rs.
//!
//! Most cases are tables of TOML snippets, each followed by the errors it must produce (see
//! [`check_cases`]), so that a case reads as the file an operator would write.
//!
//! `PORTICO_*` variables in the environment would change every result here, and the crate
//! forbids the `unsafe` that `std::env::set_var` needs, so the environment-override tests run
//! `load_str` in a child process (this test binary, running only `env_child`) whose environment
//! `std::process::Command` sets. No test changes this process's environment, so none needs a lock.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::*;
use net_core::pool::PassiveHealth;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Configs in these tests name `/etc/portico/admin.token`; it is read at validation, so they
/// get a real token file instead.
const TOKEN_PATH_IN_TESTS: &str = "/etc/portico/admin.token";
const TEST_TOKEN: &str = "0123456789abcdef-test-token";

fn token_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("portico-config-test-{}.token", std::process::id()));
        std::fs::write(&path, format!("{TEST_TOKEN}\n")).unwrap();
        path.display().to_string()
    })
}

fn load(toml: &str) -> Result<Config, ConfigErrors> {
    load_str(
        &toml.replace(TOKEN_PATH_IN_TESTS, token_path()),
        "test.toml",
    )
}

#[track_caller]
fn ok(toml: &str) -> Config {
    load(toml).unwrap_or_else(|e| panic!("expected a valid config, got {e}\nin:\n{toml}"))
}

/// Runs every case in `cases`. A case starts with a `=== title` line; then comes its TOML, in
/// which `# -> key: fragment` comment lines list the errors it must produce, exactly and in
/// order (an empty key before the `: ` for errors about no key). No such line: it must be valid.
/// Every failing case is reported, not only the first.
#[track_caller]
fn check_cases(cases: &str) {
    let mut failures = Vec::new();
    for case in cases.split("=== ").skip(1) {
        let (title, toml) = case.split_once('\n').unwrap_or((case, ""));
        let expected: Vec<(&str, &str)> = toml
            .lines()
            .filter_map(|l| l.trim().strip_prefix("# -> "))
            .map(|l| l.split_once(": ").unwrap_or((l, "")))
            .collect();
        let got = load(toml).err().map(|e| e.errors).unwrap_or_default();
        let matches = got.len() == expected.len()
            && got
                .iter()
                .zip(&expected)
                .all(|(g, (key, fragment))| g.key == *key && g.message.contains(fragment));
        if !matches {
            failures.push(format!("case `{title}`:\n{toml}  got {got:#?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
#[should_panic(expected = "2 case(s) failed")]
fn check_cases_reports_every_mismatch() {
    check_cases("=== wrong key\nbogus = 1\n# -> other: unknown field\n=== no error\n# -> log: x\n");
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn node(address: &str, weight: u32, drain: bool) -> NodeConfig {
    NodeConfig {
        ip: ip(address),
        weight,
        drain,
    }
}

fn member(address: &str, node: Option<&str>, weight: u32, drain: bool) -> MemberConfig {
    MemberConfig {
        addr: addr(address),
        node: node.map(ip),
        weight,
        drain,
    }
}

fn default_pool_http() -> PoolHttpConfig {
    PoolHttpConfig {
        http2: false,
        keepalive_timeout: Duration::from_secs(30),
        max_idle: 64,
    }
}

fn default_health() -> HealthConfig {
    HealthConfig {
        kind: HealthKind::None,
        port: None,
        path: "/".into(),
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        rise: 2,
        fall: 3,
        expect_status: None,
        initial_up: true,
        use_endpoint_weight: true,
    }
}

// ---------------------------------------------------------------------------------------------
// Valid configs

/// DESIGN.md's tcp parts, every key set, most to a value that is not the default.
const FULL: &str = r#"
[admin]
listen = "127.0.0.1:9901"
token_file = "/etc/portico/admin.token"

[runtime]
shutdown_grace = "45s"
worker_threads = 2
state_dir = "/var/lib/portico"
upgrade_socket = "/run/portico/upgrade.sock"

[log]
level = "debug"
format = "json"
access_log = false

[clusters.prod]
nodes = ["10.0.0.11", { address = "10.0.0.12", weight = 3 }, { address = "2001:db8::13", drain = true }]

[pools.web]
cluster = "prod"
node_port = 30080
balance = "maglev"
when_all_down = "refuse"
[pools.web.health]
kind = "http"
port = 32080
path = "/healthz"
interval = "5s"
timeout = "500ms"
rise = 1
fall = 5

[pools.db]
servers = ["10.1.0.5:5432", { address = "10.1.0.6:5432", weight = 2 }, { address = "[2001:db8::7]:5432", drain = true }]
balance = "least_conn"

[listeners.postgres]
bind = "0.0.0.0:5432"
protocol = "tcp"
pool = "db"
proxy_protocol = "v2"
accept_proxy_protocol = true
connect_timeout = "250ms"
idle_timeout = "1h30m"
max_connections = 500

[listeners.web]
bind = "[::]:8080"
pool = "web"
proxy_protocol = "v1"
"#;

#[test]
fn full_config_becomes_the_typed_model() {
    let c = ok(FULL);
    let admin = AdminConfig {
        listen: addr("127.0.0.1:9901"),
        token_file: Some(PathBuf::from(token_path())),
        token: Some(AdminToken::new(TEST_TOKEN)),
        protect_metrics: false,
    };
    assert_eq!(c.admin, admin);
    let runtime = RuntimeConfig {
        shutdown_grace: Duration::from_secs(45),
        worker_threads: NonZeroUsize::new(2),
        state_dir: Some(PathBuf::from("/var/lib/portico")),
        upgrade_socket: Some(PathBuf::from("/run/portico/upgrade.sock")),
    };
    assert_eq!(c.runtime, runtime);
    let log = LogConfig {
        level: tracing::Level::DEBUG,
        format: LogFormat::Json,
        access_log: false,
    };
    assert_eq!(c.log, log);

    let nodes = [
        node("10.0.0.11", 1, false),
        node("10.0.0.12", 3, false),
        node("2001:db8::13", 1, true),
    ];
    assert_eq!(c.clusters["prod"].nodes, nodes);

    // A cluster pool's members are its nodes at the NodePort, each with its node's IP, weight
    // and drain flag.
    let web = PoolConfig {
        source: PoolSource::Cluster {
            name: "prod".into(),
            node_port: 30080,
        },
        balance: BalanceKind::Maglev,
        when_all_down: WhenAllDown::Refuse,
        members: vec![
            member("10.0.0.11:30080", Some("10.0.0.11"), 1, false),
            member("10.0.0.12:30080", Some("10.0.0.12"), 3, false),
            member("[2001:db8::13]:30080", Some("2001:db8::13"), 1, true),
        ],
        health: HealthConfig {
            kind: HealthKind::Http,
            port: Some(32080),
            path: "/healthz".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_millis(500),
            rise: 1,
            fall: 5,
            expect_status: None,
            initial_up: true,
            use_endpoint_weight: true,
        },
        passive: PassiveHealth::default(),
        http: default_pool_http(),
    };
    assert_eq!(c.pools["web"], web);
    let db = PoolConfig {
        source: PoolSource::Servers,
        balance: BalanceKind::LeastConn,
        when_all_down: WhenAllDown::TryAll,
        members: vec![
            member("10.1.0.5:5432", None, 1, false),
            member("10.1.0.6:5432", None, 2, false),
            member("[2001:db8::7]:5432", None, 1, true),
        ],
        health: default_health(),
        passive: PassiveHealth::default(),
        http: default_pool_http(),
    };
    assert_eq!(c.pools["db"], db);

    let postgres = ListenerConfig {
        bind: addr("0.0.0.0:5432"),
        protocol: Protocol::Tcp,
        pool: Some("db".into()),
        proxy_protocol: Some(ProxyVersion::V2),
        accept_proxy_protocol: true,
        connect_timeout: Duration::from_millis(250),
        idle_timeout: Duration::from_secs(5400),
        max_connections: 500,
        http: None,
    };
    assert_eq!(c.listeners["postgres"], postgres);
    let web = ListenerConfig {
        bind: addr("[::]:8080"),
        pool: Some("web".into()),
        proxy_protocol: Some(ProxyVersion::V1),
        accept_proxy_protocol: false,
        connect_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(3600),
        max_connections: 10_000,
        ..postgres
    };
    assert_eq!(c.listeners["web"], web);
    assert_eq!(
        (c.clusters.len(), c.pools.len(), c.listeners.len()),
        (1, 2, 2)
    );
}

#[test]
fn omitted_keys_take_their_defaults() {
    let c = ok(r#"
[pools.db]
servers = ["10.1.0.5:5432"]
[listeners.db]
bind = "127.0.0.1:5432"
pool = "db"
"#);
    let admin = AdminConfig {
        listen: addr("127.0.0.1:9900"),
        token_file: None,
        token: None,
        protect_metrics: false,
    };
    assert_eq!(c.admin, admin);
    let runtime = RuntimeConfig {
        shutdown_grace: Duration::from_secs(30),
        worker_threads: None,
        state_dir: None,
        upgrade_socket: None,
    };
    assert_eq!(c.runtime, runtime);
    let log = LogConfig {
        level: tracing::Level::INFO,
        format: LogFormat::Text,
        access_log: true,
    };
    assert_eq!(c.log, log);
    assert!(c.clusters.is_empty());
    let db = PoolConfig {
        source: PoolSource::Servers,
        balance: BalanceKind::RoundRobin,
        when_all_down: WhenAllDown::TryAll,
        members: vec![member("10.1.0.5:5432", None, 1, false)],
        health: default_health(),
        passive: PassiveHealth::default(),
        http: default_pool_http(),
    };
    assert_eq!(c.pools["db"], db);
    let listener = ListenerConfig {
        bind: addr("127.0.0.1:5432"),
        protocol: Protocol::Tcp,
        pool: Some("db".into()),
        proxy_protocol: None,
        accept_proxy_protocol: false,
        connect_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(3600),
        max_connections: 10_000,
        http: None,
    };
    assert_eq!(c.listeners["db"], listener);

    // An empty file is valid: defaults, nothing to serve.
    let empty = ok("");
    assert_eq!(
        (empty.admin, empty.runtime, empty.log),
        (admin, runtime, log)
    );
    assert!(empty.clusters.is_empty() && empty.pools.is_empty() && empty.listeners.is_empty());
}

#[test]
fn health_section_without_kind_checks_tcp() {
    // No [health] section: no checks. A section without `kind`: TCP connect checks.
    let c = ok("[pools.db]\nservers = [\"10.1.0.5:5432\"]\n[pools.db.health]\n");
    let tcp = HealthConfig {
        kind: HealthKind::Tcp,
        ..default_health()
    };
    assert_eq!(c.pools["db"].health, tcp);
    let c = ok("[pools.db]\nservers = [\"10.1.0.5:5432\"]\nhealth = { kind = \"none\" }\n");
    assert_eq!(c.pools["db"].health, default_health());
}

#[test]
fn pools_of_one_cluster_share_its_nodes_at_their_own_ports() {
    let c = ok(r#"
[clusters.prod]
nodes = ["10.0.0.11", { address = "10.0.0.12", weight = 0 }]
[pools.web]
cluster = "prod"
node_port = 30080
[pools.api]
cluster = "prod"
node_port = 31000
"#);
    let web = [
        member("10.0.0.11:30080", Some("10.0.0.11"), 1, false),
        member("10.0.0.12:30080", Some("10.0.0.12"), 0, false),
    ];
    assert_eq!(c.pools["web"].members, web);
    let api = [
        member("10.0.0.11:31000", Some("10.0.0.11"), 1, false),
        member("10.0.0.12:31000", Some("10.0.0.12"), 0, false),
    ];
    assert_eq!(c.pools["api"].members, api);
}

#[test]
fn edge_values_that_are_accepted() {
    let c = ok(r#"
[runtime]
shutdown_grace = "0s"   # do not wait for connections at shutdown
worker_threads = 1024
[clusters.later]
nodes = []              # an unused cluster may be empty (a node watcher fills it in)
[pools.db]
servers = [{ address = " 10.0.0.1:80 ", weight = 0 }, { address = "10.0.0.2:80", weight = 1000 }]
health = { rise = 100, fall = 1 }
[listeners.a]
bind = "127.0.0.1:1"
pool = "db"
max_connections = 1
[listeners.b]
bind = "127.0.0.1:2"
pool = "db"
max_connections = 10000000
"#);
    assert_eq!(c.runtime.shutdown_grace, Duration::ZERO);
    assert_eq!(c.runtime.worker_threads, NonZeroUsize::new(1024));
    assert!(c.clusters["later"].nodes.is_empty());
    let db = &c.pools["db"];
    let servers = [
        member("10.0.0.1:80", None, 0, false),
        member("10.0.0.2:80", None, 1000, false),
    ];
    assert_eq!(db.members, servers);
    assert_eq!((db.health.rise, db.health.fall), (100, 1));
    assert_eq!(c.listeners["a"].max_connections, 1);
    assert_eq!(c.listeners["b"].max_connections, 10_000_000);
}

#[test]
fn binds_and_admin_addresses_that_are_accepted() {
    check_cases(
        r##"
=== [::]:X and 0.0.0.0:X do not conflict: IPv6 listeners are V6ONLY
pools.db.servers = ["10.1.0.5:5432"]
[listeners]
v4 = { bind = "0.0.0.0:5432", pool = "db" }
v6 = { bind = "[::]:5432", pool = "db" }
=== two addresses on one port, one address on two ports, port 0, the admin port on another IP
pools.db.servers = ["10.1.0.5:5432"]
[listeners]
a = { bind = "127.0.0.1:5432", pool = "db" }
b = { bind = "127.0.0.2:5432", pool = "db" }
c = { bind = "127.0.0.1:5433", pool = "db" }
d = { bind = "127.0.0.1:0", pool = "db" }
e = { bind = "127.0.0.1:0", pool = "db" }
f = { bind = "127.0.0.2:9900", pool = "db" }
=== admin on IPv6 loopback needs no token
[admin]
listen = "[::1]:9900"
=== admin on another loopback address needs no token
[admin]
listen = "127.0.0.2:9900"
=== admin on a public address with a token
[admin]
listen = "0.0.0.0:9900"
token_file = "/etc/portico/admin.token"
=== names of digits and dashes
[pools.pg-15]
servers = ["10.1.0.5:5432"]
[listeners]
0-pg = { bind = "127.0.0.1:5432", pool = "pg-15" }
"##,
    );
}

#[test]
fn shipped_config_files_are_valid() {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files = Vec::new();
    for dir in [config.clone(), config.join("examples")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    assert!(
        files.iter().any(|f| f.ends_with("config/portico.toml")),
        "{files:?}"
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            load_str(&text, &f.display().to_string()).err()
        })
        .map(|e| e.to_string())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Errors serde finds: unknown keys, types, syntax (one at a time: serde stops at the first)

#[test]
fn unknown_keys() {
    check_cases(
        r##"
=== at top level
bogus = 1
# -> bogus: unknown field: found `bogus`
=== a misspelt section
[listener.db]
bind = "127.0.0.1:1"
# -> listener: unknown field
=== in admin
[admin]
token = "x"
# -> admin.token: unknown field
=== in runtime
[runtime]
workers = 2
# -> runtime.workers: unknown field
=== in log
[log]
levle = "info"
# -> log.levle: unknown field
=== in a cluster
[clusters.prod]
nodes = []
port = 1
# -> clusters.prod.port: unknown field
=== in a pool
[pools.db]
servres = ["10.0.0.1:80"]
# -> pools.db.servres: unknown field: found `servres`
=== in a health section
[pools.db]
servers = ["10.0.0.1:80"]
[pools.db.health]
intervall = "1s"
# -> pools.db.health.intervall: unknown field
=== in a listener
pools.db.servers = ["10.1.0.5:5432"]
[listeners]
db = { bnd = "127.0.0.1:1", pool = "db" }
# -> listeners.db.bnd: unknown field: found `bnd`, expected `one of `bind`
=== in a server table
[pools.db]
servers = ["10.0.0.1:80", { address = "10.0.0.2:80", wieght = 2 }]
# -> pools.db.servers.1.wieght: unknown field: found `wieght`, expected `one of `address`, `weight`, `drain``
=== in a node table
[clusters.prod]
nodes = [{ address = "10.0.0.1", port = 80 }]
# -> clusters.prod.nodes.0.port: unknown field
"##,
    );
}

#[test]
fn wrong_types_missing_keys_and_syntax() {
    check_cases(
        r##"
=== a server table without address
[pools.db]
servers = [{ weight = 2 }]
# -> pools.db.servers.0: missing field `address`
=== a server that is a number
[pools.db]
servers = [5432]
# -> pools.db.servers.0: expected an address string or a table { address, weight, drain }
=== a bind that is a number
[listeners.db]
bind = 5432
# -> listeners.db.bind: expected a string
=== a boolean as a string
[log]
access_log = "yes"
# -> log.access_log: expected a boolean
=== a number as a string
[runtime]
worker_threads = "2"
# -> runtime.worker_threads: invalid type
=== a cluster without nodes
[clusters.prod]
# -> clusters.prod: missing field `nodes`
=== a number too large for any key
[runtime]
worker_threads = 99999999999999999999
# -> : number too large
=== TOML syntax: the error names the line
[pools.db]
servers = ["10.0.0.1:80"
# -> : TOML parse error at line 3
=== a table given twice
[pools.db]
servers = ["10.0.0.1:80"]
[pools.db]
balance = "p2c"
# -> : duplicate key `db`
"##,
    );
}

// ---------------------------------------------------------------------------------------------
// Errors validate finds (all at once)

#[test]
fn bad_addresses_and_durations() {
    check_cases(
        r##"
=== a server without a port
[pools.db]
servers = ["10.0.0.1"]
# -> pools.db.servers.0: "10.0.0.1" is not an address with a port (e.g. "10.0.0.5:8080" or "[::1]:8080")
=== a server given by name, a port out of range, port 0
[pools.db]
servers = ["10.0.0.1:80", "db.internal:5432", "10.0.0.2:99999", "10.0.0.3:0"]
# -> pools.db.servers.1: "db.internal:5432" is not an address with a port
# -> pools.db.servers.2: "10.0.0.2:99999" is not an address with a port
# -> pools.db.servers.3: 10.0.0.3:0: port 0 is not a server port
=== a bind address by name
pools.db.servers = ["10.1.0.5:5432"]
[listeners]
db = { bind = "localhost:5432", pool = "db" }
# -> listeners.db.bind: "localhost:5432" is not an address with a port
=== an IPv6 bind without brackets
pools.db.servers = ["10.1.0.5:5432"]
[listeners]
db = { bind = "::1:5432", pool = "db" }
# -> listeners.db.bind: is not an address with a port
=== admin.listen without an address
[admin]
listen = "9900"
# -> admin.listen: "9900" is not an address with a port
=== a node by name
[clusters.prod]
nodes = ["node-1"]
# -> clusters.prod.nodes.0: "node-1" is not an IP address
=== a node given with a port
[clusters.prod]
nodes = ["10.0.0.11:30080"]
# -> clusters.prod.nodes.0: (a node is an IP address without a port; pools give the node_port)
=== an IPv6 node given with a port
[clusters.prod]
nodes = ["10.0.0.11", "[2001:db8::1]:30080"]
# -> clusters.prod.nodes.1: a node is an IP address without a port
=== durations: no unit, unknown unit, fraction, words
[runtime]
shutdown_grace = "soon"
[pools.db]
servers = ["10.1.0.5:5432"]
health = { interval = "1.5s" }
[listeners.db]
bind = "127.0.0.1:1"
pool = "db"
connect_timeout = "3"
idle_timeout = "1hour"
# -> runtime.shutdown_grace: "soon" is not a duration
# -> pools.db.health.interval: "1.5s"
# -> listeners.db.connect_timeout: "3": a unit is required (ms, s, m, h, d)
# -> listeners.db.idle_timeout: unknown unit "hour"
=== zero durations where they make no sense
pools.db.servers = ["10.1.0.5:5432"]
[pools.db.health]
interval = "0s"
timeout = "0ms"
[listeners.db]
bind = "127.0.0.1:1"
pool = "db"
connect_timeout = "0s"
idle_timeout = "0h"
# -> pools.db.health.interval: must be longer than 0
# -> pools.db.health.timeout: must be longer than 0
# -> listeners.db.connect_timeout: must be longer than 0
# -> listeners.db.idle_timeout: must be longer than 0
"##,
    );
}

#[test]
fn references_and_pool_sources() {
    check_cases(
        r##"
=== a listener's pool that does not exist
pools.db.servers = ["10.1.0.5:5432"]
[listeners]
db = { bind = "127.0.0.1:5432", pool = "dbb" }
# -> listeners.db.pool: no pool named "dbb"
=== a pool's cluster that does not exist
[clusters.prod]
nodes = ["10.0.0.11"]
[pools.web]
cluster = "prd"
node_port = 30080
# -> pools.web.cluster: no cluster named "prd"
=== an empty servers list
[pools.db]
servers = []
# -> pools.db.servers: the list is empty; a pool needs at least one server
=== both servers and a cluster
[clusters.prod]
nodes = ["10.0.0.11"]
[pools.db]
servers = ["10.0.0.1:80"]
cluster = "prod"
node_port = 30080
# -> pools.db: set either `servers` or `cluster` + `node_port`, not both
=== neither servers nor a cluster
[pools.db]
balance = "p2c"
# -> pools.db: the pool has no backends: set `servers`, or `cluster` + `node_port`
=== a pool of a cluster without nodes
[clusters.prod]
nodes = []
[pools.web]
cluster = "prod"
node_port = 30080
# -> pools.web.cluster: cluster "prod" has no nodes, so the pool would be empty
=== a cluster without node_port
[clusters.prod]
nodes = ["10.0.0.11"]
[pools.web]
cluster = "prod"
# -> pools.web.node_port: a pool of cluster "prod" needs the Service's node_port
=== node_port with servers
[pools.db]
servers = ["10.0.0.1:80"]
node_port = 30080
# -> pools.db.node_port: node_port goes with `cluster`, not with `servers`
=== node_port out of range, and the missing cluster too
[pools.a]
cluster = "prod"
node_port = 0
[pools.b]
cluster = "prod"
node_port = 65536
# -> pools.a.node_port: 0 is not a port (1 to 65535)
# -> pools.a.cluster: no cluster named "prod"
# -> pools.b.node_port: 65536 is not a port (1 to 65535)
# -> pools.b.cluster: no cluster named "prod"
=== duplicate servers, whatever their form
[pools.db]
servers = ["10.0.0.1:80", "10.0.0.2:80", { address = "10.0.0.1:80", weight = 2 }]
# -> pools.db.servers.2: server 10.0.0.1:80 is listed twice
=== duplicate nodes, however written
[clusters.prod]
nodes = ["2001:db8::1", "2001:db8:0::1"]
# -> clusters.prod.nodes.1: node 2001:db8::1 is listed twice
"##,
    );
}

#[test]
fn conflicting_binds() {
    check_cases(
        r##"
=== two listeners on one address
pools.db.servers = ["10.1.0.5:5432"]
[listeners]
a = { bind = "127.0.0.1:5432", pool = "db" }
b = { bind = "127.0.0.1:5432", pool = "db" }
# -> listeners.b.bind: 127.0.0.1:5432 conflicts with listeners.a.bind (127.0.0.1:5432)
=== the IPv4 wildcard and a specific address
pools.db.servers = ["10.1.0.5:5432"]
[listeners]
a = { bind = "0.0.0.0:5432", pool = "db" }
b = { bind = "127.0.0.1:5432", pool = "db" }
# -> listeners.b.bind: 127.0.0.1:5432 conflicts with listeners.a.bind (0.0.0.0:5432)
=== the IPv6 wildcard and a specific address
pools.db.servers = ["10.1.0.5:5432"]
[listeners]
a = { bind = "[::1]:5432", pool = "db" }
b = { bind = "[::]:5432", pool = "db" }
# -> listeners.b.bind: [::]:5432 conflicts with listeners.a.bind ([::1]:5432)
=== a listener on the default admin address
pools.db.servers = ["10.1.0.5:5432"]
[listeners]
db = { bind = "127.0.0.1:9900", pool = "db" }
# -> listeners.db.bind: 127.0.0.1:9900 conflicts with admin.listen (127.0.0.1:9900)
=== a wildcard listener on the admin port
[admin]
listen = "127.0.0.1:7000"
[pools.db]
servers = ["10.1.0.5:5432"]
[listeners]
db = { bind = "0.0.0.0:7000", pool = "db" }
# -> listeners.db.bind: 0.0.0.0:7000 conflicts with admin.listen (127.0.0.1:7000)
=== a conflict is found beside the listener's other errors and a bad admin.listen
[admin]
listen = "nope"
[pools.db]
servers = ["10.1.0.5:5432"]
[listeners]
a = { bind = "127.0.0.1:5432", pool = "db" }
b = { bind = "127.0.0.1:5432", pool = "dbb" }
# -> admin.listen: "nope" is not an address with a port
# -> listeners.b.pool: no pool named "dbb"
# -> listeners.b.bind: conflicts with listeners.a.bind
"##,
    );
}

#[test]
fn bad_choices_names_and_numbers() {
    check_cases(
        r##"
=== balance
[pools.db]
servers = ["10.0.0.1:80"]
balance = "fastest"
# -> pools.db.balance: "fastest" is not one of round_robin, least_conn, p2c, random, maglev
=== protocol
pools.db.servers = ["10.1.0.5:5432"]
[listeners]
db = { bind = "127.0.0.1:1", pool = "db", protocol = "sctp" }
# -> listeners.db.protocol: "sctp" is not one of tcp, udp, tls_passthrough, http, https
=== proxy_protocol, when_all_down, health kind and path, log level and format
[log]
level = "verbose"
format = "xml"
[pools.db]
servers = ["10.1.0.5:5432"]
when_all_down = "panic"
health = { kind = "icmp", path = "healthz" }
[pools.web]
servers = ["10.1.0.6:80"]
health = { path = "/a b" }
[listeners]
db = { bind = "127.0.0.1:1", pool = "db", proxy_protocol = "v3" }
# -> log.level: "verbose" is not one of error, warn, info, debug, trace
# -> log.format: "xml" is not one of text, json
# -> pools.db.when_all_down: "panic" is not one of try_all, refuse
# -> pools.db.health.kind: "icmp" is not one of tcp, http, none
# -> pools.db.health.path: "healthz" must start with '/' and contain only visible ASCII
# -> pools.web.health.path: "/a b" must start with '/' and contain only visible ASCII
# -> listeners.db.proxy_protocol: "v3" is not one of none, v1, v2
=== names: uppercase, underscore, space, empty
[clusters.prod_1]
nodes = []
[clusters.""]
nodes = []
[pools.Web]
servers = ["10.0.0.1:80"]
[listeners]
"my db" = { bind = "127.0.0.1:1", pool = "Web" }
# -> clusters.: "" is not a valid name (use lowercase letters, digits and '-')
# -> clusters.prod_1: "prod_1" is not a valid name
# -> pools.Web: "Web" is not a valid name (use lowercase letters, digits and '-')
# -> listeners.my db: "my db" is not a valid name
=== weights out of range
[clusters.prod]
nodes = ["10.0.0.11", { address = "10.0.0.12", weight = 5000 }]
[pools.db]
servers = [{ address = "10.0.0.1:80", weight = 1001 }, { address = "10.0.0.2:80", weight = -1 }]
# -> clusters.prod.nodes.1.weight: 5000 is out of range (0 to 1000; 0 sends nothing)
# -> pools.db.servers.0.weight: 1001 is out of range (0 to 1000; 0 sends nothing)
# -> pools.db.servers.1.weight: -1 is out of range (0 to 1000
=== max_connections 0, too many, negative
pools.db.servers = ["10.1.0.5:5432"]
[listeners]
a = { bind = "127.0.0.1:1", pool = "db", max_connections = 0 }
b = { bind = "127.0.0.1:2", pool = "db", max_connections = 10000001 }
c = { bind = "127.0.0.1:3", pool = "db", max_connections = -5 }
# -> listeners.a.max_connections: 0 is out of range (1 to 10000000)
# -> listeners.b.max_connections: 10000001 is out of range (1 to 10000000)
# -> listeners.c.max_connections: -5 is out of range (1 to 10000000)
=== worker_threads 0
[runtime]
worker_threads = 0
# -> runtime.worker_threads: 0 is out of range (1 to 1024)
=== worker_threads 1025
[runtime]
worker_threads = 1025
# -> runtime.worker_threads: 1025 is out of range (1 to 1024)
=== health rise, fall and port
[pools.db]
servers = ["10.1.0.5:5432"]
health = { rise = 0, fall = 101, port = 0 }
# -> pools.db.health.port: 0 is not a port (1 to 65535)
# -> pools.db.health.rise: 0 is out of range (1 to 100)
# -> pools.db.health.fall: 101 is out of range (1 to 100)
=== a non-loopback admin.listen without token_file
[admin]
listen = "0.0.0.0:9900"
# -> admin.listen: 0.0.0.0:9900 is not a loopback address, so admin.token_file is required
=== the IPv6 wildcard admin.listen without token_file
[admin]
listen = "[::]:9900"
# -> admin.listen: is not a loopback address, so admin.token_file is required
=== a listener without bind or pool
[listeners.db]
proxy_protocol = "v1"
# -> listeners.db.bind: missing; e.g. bind = "0.0.0.0:5432"
# -> listeners.db.pool: missing: a tcp listener needs a pool
"##,
    );
}

#[test]
fn listeners_not_supported_yet() {
    // Their keys parse, so a config written for them gets one precise error per listener.
    check_cases(
        r##"
=== https with unreadable certificates, udp, tls_passthrough
[pools.db]
servers = ["10.1.0.5:5432"]
[listeners.a]
bind = "127.0.0.1:8080"
protocol = "http"
pool = "db"
[listeners.b]
bind = "127.0.0.1:8443"
protocol = "https"
certificates = [{ cert = "/etc/portico/tls/site.crt", key = "/etc/portico/tls/site.key" }]
max_header_bytes = 32768
max_headers = 100
header_timeout = "10s"
routes = [{ host = "api.example.com", path_prefix = "/v1", pool = "db" }]
# -> listeners.b.certificates.0.cert: cannot read /etc/portico/tls/site.crt
[listeners.c]
bind = "127.0.0.1:5353"
protocol = "udp"
pool = "db"
# -> listeners.c.protocol: "udp" listeners are not supported
[listeners.d]
bind = "127.0.0.1:9443"
protocol = "tls_passthrough"
routes = [{ sni = "db.example.com", pool = "db" }]
# -> listeners.d.protocol: "tls_passthrough" listeners are not supported
=== their keys on a tcp listener
[pools.db]
servers = ["10.1.0.5:5432"]
[listeners.db]
bind = "127.0.0.1:1"
pool = "db"
routes = []
max_headers = 100
# -> listeners.db.routes: not a key of a "tcp" listener
# -> listeners.db.max_headers: not a key of a "tcp" listener
"##,
    );
}

// ---------------------------------------------------------------------------------------------
// Several errors: all reported, each once

#[test]
fn several_errors_are_all_reported_at_once() {
    let toml = r#"
[log]
level = "loud"

[pools.db]
servers = ["10.1.0.5:5432"]
balance = "fastest"

[listeners.db]
bind = "127.0.0.1:5432"
pool = "dbb"

[listeners.web]
bind = "127.0.0.1:8080"
pool = "db"
connect_timeout = "0s"
"#;
    let err = load(toml).unwrap_err();
    let keys: Vec<&str> = err.errors.iter().map(|e| e.key.as_str()).collect();
    let expected = [
        "log.level",
        "pools.db.balance",
        "listeners.db.pool",
        "listeners.web.connect_timeout",
    ];
    assert_eq!(keys, expected);
    let text = err.to_string();
    assert!(
        text.starts_with("test.toml has 4 errors:\n  log.level: \"loud\" is not"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 5, "{text}");
}

#[test]
fn an_error_does_not_cascade_to_what_uses_it() {
    check_cases(
        r##"
=== a bad node: no error on the pool of its cluster or the listener of that pool
[clusters.prod]
nodes = ["10.0.0.11", "10.0.0.300"]
[pools.db]
cluster = "prod"
node_port = 30080
[listeners]
db = { bind = "127.0.0.1:5432", pool = "db" }
# -> clusters.prod.nodes.1: "10.0.0.300" is not an IP address
=== a bad server: no error on the listener
[pools.db]
servers = ["10.0.0.1:80", { address = "10.0.0.2:80", weight = 1001 }]
[listeners]
db = { bind = "127.0.0.1:5432", pool = "db" }
# -> pools.db.servers.1.weight: 1001 is out of range
"##,
    );
}

#[test]
fn error_display() {
    let e = ConfigError {
        key: "pools.db".into(),
        message: "bad".into(),
    };
    assert_eq!(e.to_string(), "pools.db: bad");
    let e = ConfigError {
        key: String::new(),
        message: "TOML parse error".into(),
    };
    assert_eq!(e.to_string(), "TOML parse error");
    let err = load("bogus = 1\n").unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("test.toml has 1 error:\n  bogus: unknown field"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Environment overrides (in a child process, see the module comment)

/// Where the child finds the TOML text; not `PORTICO_`-prefixed, so figment ignores it.
const CHILD_TOML_VAR: &str = "CONFIG_TESTS_CHILD_TOML";
const CHILD_OK: &str = "ENV-CHILD-OK ";
const CHILD_ERR: &str = "ENV-CHILD-ERR ";

/// The child side: loads the TOML given in its environment and prints the outcome.
#[test]
#[ignore = "run by the environment-override tests, in a child process"]
fn env_child() {
    let Ok(toml) = std::env::var(CHILD_TOML_VAR) else {
        return;
    };
    match load(&toml) {
        Ok(config) => println!("{CHILD_OK}{config:?}"),
        Err(err) => {
            for e in err.errors {
                println!("{CHILD_ERR}{}\t{}", e.key, e.message.replace('\n', " "));
            }
        }
    }
}

/// Loads `toml` in a child process whose environment holds exactly these `PORTICO_` variables:
/// the config's `Debug` text, or its errors.
fn load_with_env(toml: &str, vars: &[(&str, &str)]) -> Result<String, Vec<ConfigError>> {
    let test = format!("{}::env_child", module_path!().split_once("::").unwrap().1);
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        &test,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with(ENV_PREFIX) {
            cmd.env_remove(key);
        }
    }
    cmd.env(CHILD_TOML_VAR, toml).envs(vars.iter().copied());
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}{stderr}");
    let mut errors = Vec::new();
    for line in stdout.lines() {
        // libtest may print "test ... " before the first line of output.
        if let Some((_, config)) = line.split_once(CHILD_OK) {
            return Ok(config.to_owned());
        }
        if let Some((_, error)) = line.split_once(CHILD_ERR) {
            let (key, message) = error.split_once('\t').unwrap();
            errors.push(ConfigError {
                key: key.into(),
                message: message.into(),
            });
        }
    }
    assert!(
        !errors.is_empty(),
        "the child printed no outcome:\n{stdout}{stderr}"
    );
    Err(errors)
}

const ENV_BASE: &str = r#"
[pools.db]
servers = ["10.1.0.5:5432"]
[listeners.db]
bind = "127.0.0.1:5432"
pool = "db"
max_connections = 500
"#;

#[test]
fn env_override_replaces_a_file_value() {
    let mut expected = ok(ENV_BASE);
    assert_eq!(load_with_env(ENV_BASE, &[]), Ok(format!("{expected:?}")));

    expected.listeners.get_mut("db").unwrap().max_connections = 7;
    expected.log.level = tracing::Level::DEBUG;
    expected.admin.listen = addr("127.0.0.1:9911");
    let vars = [
        ("PORTICO_LISTENERS__DB__MAX_CONNECTIONS", "7"),
        ("PORTICO_LOG__LEVEL", "debug"),
        ("PORTICO_ADMIN__LISTEN", "127.0.0.1:9911"),
    ];
    assert_eq!(load_with_env(ENV_BASE, &vars), Ok(format!("{expected:?}")));
}

#[test]
fn env_override_sets_keys_the_file_lacks() {
    let mut expected = ok(ENV_BASE);
    let db = expected.listeners.get_mut("db").unwrap();
    db.bind = addr("[::]:5432");
    db.idle_timeout = Duration::from_secs(120);
    let vars = [
        ("PORTICO_LISTENERS__DB__BIND", "[::]:5432"),
        ("PORTICO_LISTENERS__DB__IDLE_TIMEOUT", "2m"),
    ];
    assert_eq!(load_with_env(ENV_BASE, &vars), Ok(format!("{expected:?}")));
}

#[test]
fn env_override_with_a_bad_value_names_the_key() {
    let errs = load_with_env(
        ENV_BASE,
        &[("PORTICO_LISTENERS__DB__MAX_CONNECTIONS", "lots")],
    )
    .unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].key, "listeners.db.max_connections");
    let message = &errs[0].message;
    assert!(message.contains("found string \"lots\""), "{message}");
    assert!(
        message.ends_with("(from a PORTICO_ environment variable)"),
        "{message}"
    );

    let errs =
        load_with_env(ENV_BASE, &[("PORTICO_LISTENERS__DB__MAX_CONECTIONS", "7")]).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].key, "listeners.db.max_conections");
    assert!(errs[0].message.contains("unknown field"), "{errs:#?}");

    // Values from the environment are validated like the file's.
    let errs =
        load_with_env(ENV_BASE, &[("PORTICO_LISTENERS__DB__MAX_CONNECTIONS", "0")]).unwrap_err();
    let expected = ConfigError {
        key: "listeners.db.max_connections".into(),
        message: "0 is out of range (1 to 10000000)".into(),
    };
    assert_eq!(errs, [expected]);
}

// ---------------------------------------------------------------------------------------------
// diff()

const DIFF_OLD: &str = r#"
[runtime]
worker_threads = 2
[clusters.prod]
nodes = ["10.0.0.11", "10.0.0.12"]
[clusters.old]
nodes = ["10.9.0.1"]
[pools.web]
cluster = "prod"
node_port = 30080
[pools.db]
servers = ["10.1.0.5:5432"]
[pools.gone]
servers = ["10.1.0.9:80"]
[listeners.same]
bind = "127.0.0.1:1000"
pool = "db"
[listeners.tuned]
bind = "127.0.0.1:1001"
pool = "db"
[listeners.moved]
bind = "127.0.0.1:1002"
pool = "db"
[listeners.old]
bind = "127.0.0.1:1003"
pool = "gone"
"#;

#[test]
fn diff_of_a_config_with_itself_is_empty() {
    let c = ok(DIFF_OLD);
    let d = diff(&c, &c.clone());
    assert!(d.is_empty());
    assert_eq!(d, ConfigDiff::default());
    assert_eq!(d.to_string(), "no changes");
}

#[test]
fn diff_lists_every_change() {
    let old = ok(DIFF_OLD);
    let new = ok(r#"
[runtime]
worker_threads = 4
[log]
level = "debug"
[clusters.prod]
nodes = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
[clusters.new]
nodes = []
[pools.web]
cluster = "prod"
node_port = 30080
[pools.db]
servers = ["10.1.0.5:5432"]
balance = "p2c"
[pools.fresh]
servers = ["10.1.0.8:80"]
[listeners.same]
bind = "127.0.0.1:1000"
pool = "db"
[listeners.tuned]
bind = "127.0.0.1:1001"
pool = "db"
max_connections = 5
[listeners.moved]
bind = "127.0.0.1:2002"
pool = "db"
[listeners.added]
bind = "127.0.0.1:1004"
pool = "fresh"
"#);
    let d = diff(&old, &new);
    assert_eq!(d.listeners_added, ["added"]);
    assert_eq!(d.listeners_removed, ["old"]);
    // A new bind address is a change too; `listeners_rebound` says which changes need a socket.
    assert_eq!(d.listeners_changed, ["moved", "tuned"]);
    assert_eq!(d.listeners_rebound, ["moved"]);
    assert_eq!(d.pools_added, ["fresh"]);
    assert_eq!(d.pools_removed, ["gone"]);
    // `web` changed because its cluster gained a node: its members are the cluster's nodes.
    assert_eq!(d.pools_changed, ["db", "web"]);
    assert_eq!(d.clusters_added, ["new"]);
    assert_eq!(d.clusters_removed, ["old"]);
    assert_eq!(d.clusters_changed, ["prod"]);
    assert_eq!(d.needs_restart, ["runtime.worker_threads"]);
    assert_eq!(d.other_changed, ["log"]);
    assert_eq!(
        d.to_string(),
        "listeners +added -old ~moved ~tuned; pools +fresh -gone ~db ~web; \
         clusters +new -old ~prod; log; needs restart: runtime.worker_threads"
    );
}

#[test]
fn diff_of_admin_and_runtime_settings() {
    let old = ok("");
    let new = ok("[admin]\nlisten = \"127.0.0.1:9901\"\n[runtime]\nshutdown_grace = \"5s\"\n");
    let d = diff(&old, &new);
    assert_eq!(d.other_changed, ["admin", "runtime"]);
    assert!(d.needs_restart.is_empty());
    assert_eq!(d.to_string(), "admin; runtime");

    let d = diff(&old, &ok("[runtime]\nstate_dir = \"/var/lib/portico\"\n"));
    assert_eq!(d.to_string(), "runtime");
    let d = diff(&old, &ok("[runtime]\nworker_threads = 3\n"));
    assert_eq!(d.to_string(), "needs restart: runtime.worker_threads");
    assert!(d.other_changed.is_empty());
}

#[test]
fn diff_of_a_drained_node_changes_the_cluster_and_its_pools() {
    let toml = |drain: bool| {
        format!(
            "[clusters.prod]\nnodes = [\"10.0.0.11\", {{ address = \"10.0.0.12\", drain = {drain} }}]\n\
             [pools.web]\ncluster = \"prod\"\nnode_port = 30080\n\
             [pools.api]\ncluster = \"prod\"\nnode_port = 31000\n\
             [pools.db]\nservers = [\"10.1.0.5:5432\"]\n\
             [listeners.web]\nbind = \"127.0.0.1:8080\"\npool = \"web\"\n"
        )
    };
    let d = diff(&ok(&toml(false)), &ok(&toml(true)));
    assert_eq!(d.to_string(), "pools ~api ~web; clusters ~prod");
    assert!(d.listeners_changed.is_empty() && d.listeners_rebound.is_empty());
}

#[test]
fn health_and_passive_options() {
    let c = load_str(
        r#"
[pools.web]
servers = ["10.1.0.5:80"]
[pools.web.health]
kind = "http"
path = "/healthz"
expect_status = 204
initial = "down"
endpoint_weight = false
[pools.web.passive]
failures = 5
ejection = "500ms"
max_ejection = "10s"

[listeners.web]
bind = "127.0.0.1:8080"
pool = "web"
"#,
        "test",
    )
    .unwrap();
    let h = &c.pools["web"].health;
    assert_eq!(h.expect_status, Some(204));
    assert!(!h.initial_up);
    assert!(!h.use_endpoint_weight);
    assert_eq!(
        c.pools["web"].passive,
        PassiveHealth {
            failures: 5,
            ejection: Duration::from_millis(500),
            max_ejection: Duration::from_secs(10),
        }
    );

    let bad = r#"
[pools.web]
servers = ["10.1.0.5:80"]
[pools.web.health]
expect_status = 700
initial = "maybe"
path = "/with space"
[pools.web.passive]
failures = -1
ejection = "10s"
max_ejection = "1s"
"#;
    let errors = load_str(bad, "test").unwrap_err().errors;
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "pools.web.health.path",
        "pools.web.health.expect_status",
        "pools.web.health.initial",
        "pools.web.passive.failures",
        "pools.web.passive.max_ejection",
    ] {
        assert!(keys.contains(&key), "{key} missing from {errors:?}");
    }
}

#[test]
fn admin_token_file_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.token");
    std::fs::write(&short, "abc").unwrap();
    let missing = dir.path().join("missing.token");
    for (path, fragment) in [
        (&short, "at least 16 characters"),
        (&missing, "cannot read"),
    ] {
        let text = format!(
            "[admin]\nlisten = \"0.0.0.0:9900\"\ntoken_file = \"{}\"\n",
            path.display()
        );
        let errors = load(&text).unwrap_err().errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].key, "admin.token_file");
        assert!(errors[0].message.contains(fragment), "{errors:?}");
    }
    // A public admin address protects /metrics by default; loopback does not, unless asked.
    let public =
        ok("[admin]\nlisten = \"0.0.0.0:9900\"\ntoken_file = \"/etc/portico/admin.token\"\n");
    assert!(public.admin.protect_metrics);
    assert!(
        public
            .admin
            .token
            .as_ref()
            .unwrap()
            .matches(TEST_TOKEN.as_bytes())
    );
    assert!(
        !public
            .admin
            .token
            .as_ref()
            .unwrap()
            .matches(b"0123456789abcdef-test-tokem")
    );
    assert!(!public.admin.token.as_ref().unwrap().matches(b"short"));
    assert_eq!(
        format!("{:?}", public.admin.token),
        "Some(AdminToken(<redacted>))"
    );
    let local = ok("[admin]\nprotect_metrics = true\n");
    assert!(local.admin.protect_metrics);
}
