//! Health, passive-health and admin-token options.

use super::*;

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
    let local = ok("[admin]\nprotect_metrics = true\ntoken_file = \"/etc/portico/admin.token\"\n");
    assert!(local.admin.protect_metrics);
    // Protecting /metrics with no token would protect nothing.
    let errors = load("[admin]\nprotect_metrics = true\n")
        .unwrap_err()
        .errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].key, "admin.protect_metrics");
}
