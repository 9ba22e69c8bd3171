//! Regression tests for admin-state bugs the black-box tests found: a stale API node list
//! kept after a restart with a changed file, and a reload that failed to persist the API
//! state without being logged or counted.

use std::time::Duration;

use serde_json::json;

use super::prometheus::scrape;
use super::{
    assert_error, cluster_status, persisted_config, restart_after_the_file_changed, start_nodes,
    status, write_config,
};
use crate::harness::Portico;
use crate::harness::http::{post, put_json};

#[test]
fn after_a_restart_with_a_changed_file_the_status_says_where_the_nodes_come_from() {
    let state = tempfile::tempdir().unwrap();
    let (portico, _nodes) = restart_after_the_file_changed(state.path());
    // The file's list applies (see `a_file_that_changed_the_cluster_while_portico_was_down_...`),
    // so the status should say it comes from the file.
    let c = cluster_status(&status(&portico, None), "c");
    assert_eq!(c["node_list_from"], "file", "{c}");
}

#[test]
fn a_reload_that_cannot_persist_the_api_state_is_still_counted_and_logged() {
    let (_nodes, port) = start_nodes(&[("a", "127.0.0.2"), ("b", "127.0.0.3")]);
    let parent = tempfile::tempdir().unwrap();
    let state = parent.path().join("state");
    let config = |file_nodes: &[&str]| persisted_config(&state, file_nodes, port);
    let portico = Portico::start(&config(&["127.0.0.2", "127.0.0.3"]));
    let admin = portico.admin_addr();
    put_json(
        admin,
        "/api/v1/clusters/c/nodes",
        None,
        &json!({"nodes": ["127.0.0.3"]}),
    )
    .expect(200);
    // state_dir can no longer be written (a file where the directory was), and the file now
    // changes the cluster, so the reload has to persist the pruned API state.
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::write(&state, "not a directory").unwrap();
    write_config(&portico, &config(&["127.0.0.2"]));
    let mark = portico.log_mark();
    let r = post(admin, "/api/v1/reload", None);
    assert_error(&r, 422, "a reload that cannot persist");
    assert!(
        portico
            .wait_for_log_after(
                mark,
                |l| l.contains("reload failed"),
                Duration::from_secs(2)
            )
            .is_some(),
        "the failed reload is logged like any other:\n{}",
        portico.log_text()
    );
    let m = scrape(&portico);
    assert_eq!(
        m.value("portico_config_reloads_total", &[("result", "error")]),
        Some(1.0),
        "the failed reload is counted"
    );
}
