//! `portico ctl` against a running Portico: tables for people, exit codes for scripts.

use crate::harness::backend::{Behavior, TestBackend};
use crate::harness::{Portico, run_cli, who_answers};

#[test]
fn ctl_status_drain_enable_and_reload() {
    let a = TestBackend::start_on("127.0.0.2".parse().unwrap(), "a", Behavior::GreetEcho);
    let b = TestBackend::start_at(
        format!("127.0.0.3:{}", a.addr.port()).parse().unwrap(),
        "b",
        Behavior::GreetEcho,
    );
    let config = format!(
        r#"
[clusters.k8s]
nodes = ["127.0.0.2", "127.0.0.3"]

[pools.web]
cluster = "k8s"
node_port = {}

[listeners.web]
bind = "127.0.0.1:0"
pool = "web"
"#,
        a.addr.port()
    );
    let portico = Portico::start(&config);
    let admin = portico.admin_addr().to_string();
    let ctl = |args: &[&str]| {
        let mut all = vec!["ctl", "--admin", admin.as_str()];
        all.extend_from_slice(args);
        run_cli(&all)
    };

    let (code, out, err) = ctl(&["status"]);
    assert_eq!(code, 0, "{err}");
    for expected in [
        "LISTENER",
        "web",
        "pool web (round_robin, cluster k8s",
        &a.addr.to_string(),
        &b.addr.to_string(),
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }

    let (code, out, err) = ctl(&["drain", "127.0.0.2"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("drained node 127.0.0.2 in cluster k8s"),
        "{out}"
    );
    for _ in 0..6 {
        assert_eq!(who_answers(portico.addr("web")), "b");
    }
    let (_, out, _) = ctl(&["status"]);
    assert!(out.contains("drained"), "{out}");

    let (code, _, err) = ctl(&["enable", "127.0.0.2"]);
    assert_eq!(code, 0, "{err}");
    let names: Vec<String> = (0..6).map(|_| who_answers(portico.addr("web"))).collect();
    assert!(names.iter().any(|n| n == "a"), "{names:?}");

    let (code, _, err) = ctl(&["drain", "10.9.9.9"]);
    assert_eq!(code, 1);
    assert!(err.contains("no cluster lists node 10.9.9.9"), "{err}");

    let (code, out, err) = ctl(&["reload"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reload applied"), "{out}");
}

#[test]
fn ctl_reports_an_unreachable_admin_server() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, _, err) = run_cli(&["ctl", "--admin", &closed.to_string(), "status"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the admin server"), "{err}");
}
