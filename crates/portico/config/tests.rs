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
        // One fixed file with the same content in every run, so nothing piles up in the temp
        // directory; written aside and renamed, so a concurrent run never reads it half written.
        let path = std::env::temp_dir().join("portico-config-test.token");
        let aside =
            std::env::temp_dir().join(format!("portico-config-test.{}", std::process::id()));
        std::fs::write(&aside, format!("{TEST_TOKEN}\n")).unwrap();
        std::fs::rename(&aside, &path).unwrap();
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

mod diff;
mod env;
mod errors;
mod options;
mod valid;
