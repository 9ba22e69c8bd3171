//! `diff()`: what a reload changes, and its one-line display.

use super::*;

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
