//! `portico check`, `--version`, `--help`: exit codes and messages.

use crate::harness::{run_cli, write_file};

const GOOD: &str = r#"
[clusters.prod]
nodes = ["10.0.0.11", "10.0.0.12"]

[pools.web]
cluster = "prod"
node_port = 30080

[pools.db]
servers = ["10.1.0.5:5432", { address = "10.1.0.6:5432", weight = 2 }]
balance = "least_conn"

[listeners.web]
bind = "127.0.0.1:18080"
pool = "web"

[listeners.db]
bind = "127.0.0.1:15432"
protocol = "tcp"
pool = "db"
proxy_protocol = "v2"
"#;

#[test]
fn check_accepts_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "good.toml", GOOD);
    let (code, stdout, stderr) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(
        stdout.contains("OK (2 listeners, 2 pools, 1 clusters)"),
        "{stdout}"
    );
}

#[test]
fn check_reports_every_error_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = GOOD
        .replace("pool = \"db\"", "pool = \"dbb\"")
        .replace(
            "node_port = 30080",
            "node_port = 30080\nbalance = \"fastest\"",
        )
        .replace(
            "proxy_protocol = \"v2\"",
            "proxy_protocol = \"v3\"\nidle_timeout = \"forever\"",
        )
        .replace("\"10.0.0.12\"", "\"10.0.0.12:30080\"");
    let path = write_file(dir.path(), "bad.toml", &bad);
    let (code, stdout, stderr) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "stdout: {stdout}");
    for expected in [
        "listeners.db.pool: no pool named \"dbb\"",
        "pools.web.balance: \"fastest\" is not one of",
        "listeners.db.proxy_protocol: \"v3\"",
        "listeners.db.idle_timeout: \"forever\" is not a duration",
        "clusters.prod.nodes.1: \"10.0.0.12:30080\" is not an IP address",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn check_rejects_unknown_keys_and_duplicate_binds() {
    let dir = tempfile::tempdir().unwrap();
    let bad = GOOD.replace(
        "bind = \"127.0.0.1:15432\"",
        "bind = \"127.0.0.1:18080\"\nbnid = 1",
    );
    let path = write_file(dir.path(), "bad.toml", &bad);
    let (code, _, stderr) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("listeners.db.bnid"), "{stderr}");
    assert!(stderr.contains("unknown field"), "{stderr}");

    let dup = GOOD.replace("bind = \"127.0.0.1:15432\"", "bind = \"0.0.0.0:18080\"");
    let path = write_file(dir.path(), "dup.toml", &dup);
    let (code, _, stderr) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("listeners.web.bind: 127.0.0.1:18080 conflicts with listeners.db.bind"),
        "{stderr}"
    );
}

#[test]
fn check_of_a_missing_file_fails_clearly() {
    let (code, _, stderr) = run_cli(&["check", "--config", "/nonexistent/portico.toml"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read the config file"), "{stderr}");
}

#[test]
fn check_every_shipped_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec![
        format!("{root}/config/portico.toml"),
        format!("{root}/config/demo.toml"),
    ];
    if let Ok(dir) = std::fs::read_dir(format!("{root}/config/examples")) {
        for entry in dir.flatten() {
            files.push(entry.path().display().to_string());
        }
    }
    for f in files {
        let (code, stdout, stderr) = run_cli(&["check", "--config", &f]);
        assert_eq!(code, 0, "{f}: {stdout}{stderr}");
    }
}

#[test]
fn version_and_help() {
    let (code, stdout, _) = run_cli(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("portico "), "{stdout}");
    let (code, stdout, _) = run_cli(&["--help"]);
    assert_eq!(code, 0);
    for sub in ["run", "check", "demo"] {
        assert!(stdout.contains(sub), "{stdout}");
    }
}
