//! Valid configs become the typed model; omitted keys take their defaults.

use super::*;

// ---------------------------------------------------------------------------------------------
// Valid configs

/// DESIGN.md's tcp parts, every key set, most to a value that is not the default.
const FULL: &str = r#"
[admin]
listen = "127.0.0.1:9901"
token_file = "/etc/portico/admin.token"

[runtime]
shutdown_grace = "45s"
shutdown_delay = "3s"
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
splice = false

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
        shutdown_delay: Duration::from_secs(3),
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
        splice: false,
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
        splice: validate::DEFAULT_SPLICE,
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
        shutdown_delay: Duration::ZERO,
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
        splice: validate::DEFAULT_SPLICE,
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

/// The direct parse (no `PORTICO_` variables) and figment's parse read every shipped config,
/// and a config using every key, into the same model.
#[test]
fn direct_and_figment_parses_agree() {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut texts = vec![FULL.replace(TOKEN_PATH_IN_TESTS, token_path())];
    for dir in [config.clone(), config.join("examples")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                texts.push(std::fs::read_to_string(path).unwrap());
            }
        }
    }
    for text in texts {
        let direct = crate::config::parse_direct(&text).expect("direct parse");
        let figment = crate::config::parse_with_figment(&text).expect("figment parse");
        let (direct, figment) = (validate::validate(direct), validate::validate(figment));
        assert_eq!(direct, figment, "in:\n{text}");
        assert!(direct.is_ok(), "{direct:?}");
    }
}
