use super::*;
use crate::config::load_str;

const FILE: &str = r#"
[clusters.prod]
nodes = ["10.0.0.1", "10.0.0.2"]

[pools.web]
cluster = "prod"
node_port = 30080

[pools.api]
servers = ["10.1.0.5:8080", "10.1.0.6:8080"]

[listeners.web]
bind = "127.0.0.1:18080"
pool = "web"
"#;

fn file(text: &str) -> Config {
    load_str(text, "test").unwrap()
}

fn nodes(ips: &[&str]) -> ClusterConfig {
    ClusterConfig {
        nodes: ips
            .iter()
            .map(|ip| NodeConfig {
                ip: ip.parse().unwrap(),
                weight: 1,
                drain: false,
            })
            .collect(),
    }
}

#[test]
fn api_node_list_replaces_the_file_list_and_reexpands_pools() {
    let f = file(FILE);
    let mut api = ApiState::default();
    api.set_nodes(&f, "prod", &nodes(&["10.0.0.1", "10.0.0.3", "10.0.0.4"]));
    let (c, notes) = api.apply(&f);
    assert!(notes.is_empty());
    let members: Vec<String> = c.pools["web"]
        .members
        .iter()
        .map(|m| m.addr.to_string())
        .collect();
    assert_eq!(
        members,
        ["10.0.0.1:30080", "10.0.0.3:30080", "10.0.0.4:30080"]
    );
}

#[test]
fn the_file_wins_once_it_changes_the_cluster() {
    let f = file(FILE);
    let mut api = ApiState::default();
    api.set_nodes(&f, "prod", &nodes(&["10.0.0.9"]));
    // A reload of an unchanged file keeps the API's list.
    assert_eq!(api.apply(&f).0.clusters["prod"], nodes(&["10.0.0.9"]));
    // The file changes the cluster: the file's list applies, with a note.
    let changed = file(&FILE.replace("\"10.0.0.2\"", "\"10.0.0.2\", \"10.0.0.7\""));
    let (c, notes) = api.apply(&changed);
    assert_eq!(
        c.clusters["prod"],
        nodes(&["10.0.0.1", "10.0.0.2", "10.0.0.7"])
    );
    assert_eq!(notes.len(), 1, "{notes:?}");
    api.prune(&changed);
    assert!(api.clusters.is_empty());
}

#[test]
fn drains_override_the_file_for_nodes_and_backends() {
    let f = file(&FILE.replace(
        "\"10.1.0.6:8080\"",
        "{ address = \"10.1.0.6:8080\", drain = true }",
    ));
    let mut api = ApiState::default();
    api.node_drains
        .entry("prod".into())
        .or_default()
        .insert("10.0.0.2".parse().unwrap(), true);
    api.backend_drains
        .entry("api".into())
        .or_default()
        .insert("10.1.0.6:8080".parse().unwrap(), false);
    let (c, _) = api.apply(&f);
    let web: Vec<bool> = c.pools["web"].members.iter().map(|m| m.drain).collect();
    assert_eq!(
        web,
        [false, true],
        "node drain reaches every pool of the cluster"
    );
    let api_pool: Vec<bool> = c.pools["api"].members.iter().map(|m| m.drain).collect();
    assert_eq!(
        api_pool,
        [false, false],
        "API enable beats the file's drain = true"
    );
}

#[test]
fn save_and_load_round_trip_atomically() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        ApiState::load(Some(dir.path())).unwrap(),
        ApiState::default()
    );
    let f = file(FILE);
    let mut api = ApiState::default();
    api.set_nodes(&f, "prod", &nodes(&["10.0.0.5"]));
    api.node_drains
        .entry("prod".into())
        .or_default()
        .insert("10.0.0.5".parse().unwrap(), true);
    let path = api.save(dir.path()).unwrap();
    assert!(path.ends_with(STATE_FILE));
    assert!(!dir.path().join(format!("{STATE_FILE}.tmp")).exists());
    assert_eq!(ApiState::load(Some(dir.path())).unwrap(), api);

    std::fs::write(&path, b"{ not json").unwrap();
    let err = ApiState::load(Some(dir.path())).unwrap_err();
    assert!(
        format!("{err:#}").contains("not valid Portico API state"),
        "{err:#}"
    );
}
