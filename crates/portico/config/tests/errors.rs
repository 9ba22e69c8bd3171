//! Every class of error, each naming its key; several errors are all reported at once.

use super::*;

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
=== splice on an http listener (it is a tcp listener's key)
[pools.web]
servers = ["10.1.0.5:80"]
[listeners.web]
bind = "127.0.0.1:8080"
protocol = "http"
pool = "web"
splice = true
# -> listeners.web.splice: not a key of a "http" listener
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
