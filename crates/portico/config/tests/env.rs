//! `PORTICO_*` environment overrides, loaded in a child process (see the parent module).

use super::*;

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
