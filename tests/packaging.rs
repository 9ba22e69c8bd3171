//! Packaging: the systemd units pass `systemd-analyze verify` and the service keeps its
//! hardening score, `portico __generate-docs` writes the man pages and completions the .deb
//! ships, and the cargo-deb metadata and maintainer scripts are wired up. Building the .deb itself takes
//! minutes (LTO), so the test packages the binary the tests built, through the same script.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PORTICO: &str = env!("CARGO_BIN_EXE_portico");
const UNIT: &str = "packaging/systemd/portico.service";
/// The optional socket-activation unit.
const SOCKET_UNIT: &str = "packaging/systemd/portico.socket";
/// Where the unit (and the .deb) expect the binary.
const INSTALLED_BIN: &str = "/usr/bin/portico";
/// Highest accepted `systemd-analyze security` exposure, in tenths (systemd's `--threshold`
/// unit): 2.0. The unit scores 1.4 with systemd 252; the rest is what an L4/L7 proxy needs
/// (the network, CAP_NET_BIND_SERVICE).
const MAX_EXPOSURE_TENTHS: u32 = 20;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// `systemd-analyze`, or a failure that says how to get it (tests must not skip silently).
fn systemd_analyze() -> Command {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "systemd-analyze is not installed; on Debian: apt-get install systemd \
         (it only needs the tool, not systemd running as PID 1)"
    );
    Command::new("systemd-analyze")
}

/// The unit with the built binary in place of /usr/bin/portico, so that `verify` can check the
/// executables exist. Nothing else changes.
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let unit = read(UNIT);
    assert!(
        unit.contains(INSTALLED_BIN),
        "{UNIT} does not run {INSTALLED_BIN}"
    );
    let path = dir.join("portico.service");
    fs::write(&path, unit.replace(INSTALLED_BIN, PORTICO)).unwrap();
    path
}

fn generate_docs(out: &Path) {
    let output = run(Command::new(PORTICO)
        .arg("__generate-docs")
        .arg("--out")
        .arg(out));
    assert!(
        output.status.success(),
        "portico __generate-docs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let mut analyze = systemd_analyze();
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    // --man=no: `man` may be missing in CI; the man page named in Documentation= is checked by
    // docs_subcommand_writes_man_pages_and_completions.
    let output = run(analyze.args(["verify", "--man=no"]).arg(&unit));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // verify also loads the host's units the service depends on; only our own lines count.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("portico")).collect();
    assert!(
        output.status.success() && ours.is_empty(),
        "systemd-analyze verify {UNIT} failed ({}):\n{stderr}",
        output.status
    );
}

#[test]
fn socket_unit_passes_systemd_analyze_verify_and_matches_the_shipped_config() {
    let mut analyze = systemd_analyze();
    let dir = tempfile::tempdir().unwrap();
    unit_for_this_build(dir.path()); // the service it activates
    let socket = dir.path().join("portico.socket");
    let text = read(SOCKET_UNIT);
    fs::write(&socket, &text).unwrap();
    let output = run(analyze.args(["verify", "--man=no"]).arg(&socket));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("portico")).collect();
    assert!(
        output.status.success() && ours.is_empty(),
        "systemd-analyze verify {SOCKET_UNIT} failed ({}):\n{stderr}",
        output.status
    );
    // Portico adopts a socket only when its address equals a listener's bind exactly.
    let config = read("config/portico.toml");
    let listens: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ListenStream="))
        .collect();
    assert!(!listens.is_empty(), "{SOCKET_UNIT} has no ListenStream=");
    for addr in listens {
        assert!(
            config.contains(&format!("bind = \"{addr}\"")),
            "{SOCKET_UNIT}: ListenStream={addr} is no listener's bind in config/portico.toml"
        );
    }
}

#[test]
fn unit_keeps_its_hardening_score() {
    let mut analyze = systemd_analyze();
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let output = run(analyze
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(format!("--threshold={MAX_EXPOSURE_TENTHS}"))
        .arg(&unit));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let overall = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("(no overall exposure line)");
    assert!(
        output.status.success(),
        "systemd-analyze security: {overall}, above {}.{} ({}):\n{stdout}{}",
        MAX_EXPOSURE_TENTHS / 10,
        MAX_EXPOSURE_TENTHS % 10,
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{overall}");
}

#[test]
fn unit_matches_the_cli_contract_and_the_shipped_config() {
    let unit = read(UNIT);
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/portico run --config /etc/portico/portico.toml",
        "ExecReload=/usr/bin/portico check --config /etc/portico/portico.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Documentation=man:portico(1)",
        "User=portico",
        "StateDirectory=portico",
        "RuntimeDirectory=portico",
        "ConfigurationDirectory=portico",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    ] {
        assert!(has(line), "{UNIT} lacks `{line}`");
    }
    // SIGTERM drains for runtime.shutdown_grace: systemd must wait longer than that.
    let seconds = |text: &str, key: &str| -> u64 {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no `{key}`"));
        let value = line[key.len()..].trim_matches(|c: char| !c.is_ascii_digit());
        value
            .parse()
            .unwrap_or_else(|_| panic!("`{line}` is not in seconds"))
    };
    let stop = seconds(&unit, "TimeoutStopSec=");
    let grace = seconds(&read("config/portico.toml"), "shutdown_grace =");
    assert!(
        stop > grace,
        "TimeoutStopSec={stop}s must exceed shutdown_grace {grace}s"
    );
}

#[test]
fn docs_subcommand_writes_man_pages_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    generate_docs(dir.path());
    let file = |rel: &str| {
        fs::read_to_string(dir.path().join(rel)).unwrap_or_else(|e| panic!("no {rel}: {e}"))
    };

    let page = file("man1/portico.1");
    assert!(
        page.lines().any(|l| l.starts_with(".TH portico 1 ")),
        "not a roff page:\n{page}"
    );
    for needle in [
        ".SH SYNOPSIS",
        ".SH OPTIONS",
        "\\-\\-config",
        ".SH FILES",
        ".SH SIGNALS",
    ] {
        assert!(page.contains(needle), "portico.1 lacks {needle:?}");
    }
    for sub in [
        "run",
        "check",
        "demo",
        "ctl",
        "ctl-status",
        "ctl-reload",
        "ctl-drain",
    ] {
        let sub_page = file(&format!("man1/portico-{sub}.1"));
        let title = format!(".TH portico-{sub} 1 ");
        assert!(
            sub_page.lines().any(|l| l.starts_with(&title)),
            "{sub_page}"
        );
    }

    let bash = file("completions/portico.bash");
    let zsh = file("completions/_portico");
    let fish = file("completions/portico.fish");
    assert!(bash.contains("complete -F _portico"), "{bash}");
    assert!(zsh.starts_with("#compdef portico"), "{zsh}");
    assert!(fish.contains("complete -c portico"), "{fish}");
    for (name, text) in [("bash", &bash), ("zsh", &zsh), ("fish", &fish)] {
        assert!(
            text.contains("check") && text.contains("drain"),
            "{name}: {text}"
        );
        assert!(
            !text.contains("generate-docs"),
            "{name} completes the hidden command"
        );
    }
    let syntax = run(Command::new("bash")
        .arg("-n")
        .arg(dir.path().join("completions/portico.bash")));
    assert!(syntax.status.success(), "{syntax:?}");

    // Hidden from the public CLI.
    let help = run(Command::new(PORTICO).arg("--help"));
    assert!(help.status.success());
    assert!(!String::from_utf8_lossy(&help.stdout).contains("generate-docs"));
    assert!(
        !page.contains("__generate"),
        "portico.1 mentions the hidden command"
    );
}

#[test]
fn docs_subcommand_fails_cleanly_without_out() {
    let output = run(Command::new(PORTICO).arg("__generate-docs"));
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--out"));
}

/// `[package.metadata.deb]` of the root Cargo.toml, as text (no TOML parser among the deps).
fn deb_metadata() -> String {
    let manifest = read("Cargo.toml");
    let start = manifest
        .find("\n[package.metadata.deb]")
        .expect("Cargo.toml has no [package.metadata.deb]");
    let rest = &manifest[start + 1..];
    // Up to the next table header (asset lines are indented, so they never match).
    let end = rest[1..].find("\n[").map_or(rest.len(), |i| i + 1);
    rest[..end].to_owned()
}

#[test]
fn deb_metadata_lists_binary_unit_conffile_docs_and_scripts() {
    let deb = deb_metadata();
    for needle in [
        r#"["target/release/portico", "usr/bin/", "755"]"#,
        r#"["config/portico.toml", "etc/portico/portico.toml", "644"]"#,
        r#"conf-files = ["/etc/portico/portico.toml"]"#,
        r#"unit-scripts = "packaging/systemd""#,
        r#"maintainer-scripts = "packaging/deb/""#,
        r#"["target/portico-docs/man1/*.1", "usr/share/man/man1/", "644"]"#,
        "usr/share/bash-completion/completions/portico",
        "usr/share/zsh/vendor-completions/_portico",
        "usr/share/fish/vendor_completions.d/portico.fish",
        r#"depends = "$auto, adduser""#,
        r#"changelog = "packaging/deb/changelog""#,
    ] {
        assert!(
            deb.contains(needle),
            "[package.metadata.deb] lacks {needle}:\n{deb}"
        );
    }
    // The top changelog entry is this version (lintian: no-changelog, and dpkg shows it).
    let version = env!("CARGO_PKG_VERSION");
    let changelog = read("packaging/deb/changelog");
    assert!(
        changelog.starts_with(&format!("portico ({version}-")),
        "packaging/deb/changelog needs an entry for {version} at the top"
    );
    // cargo-deb finds the unit by the package name.
    assert!(root().join("packaging/systemd/portico.service").is_file());
}

fn assert_executable(rel: &str) {
    let mode = fs::metadata(root().join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0, "{rel} is not executable (mode {mode:o})");
}

#[test]
fn build_script_and_maintainer_scripts_are_executable_and_parse() {
    assert_executable("packaging/build-deb.sh");
    let syntax = run(Command::new("bash")
        .arg("-n")
        .arg(root().join("packaging/build-deb.sh")));
    assert!(syntax.status.success(), "{syntax:?}");
    for script in ["postinst", "prerm", "postrm"] {
        let rel = format!("packaging/deb/{script}");
        assert_executable(&rel);
        // cargo-deb writes the systemd snippets at every occurrence, comments included.
        let text = read(&rel);
        assert!(
            text.contains("\n#DEBHELPER#\n") && text.matches("#DEBHELPER#").count() == 1,
            "{rel}: needs exactly one #DEBHELPER# line"
        );
        let syntax = run(Command::new("sh").arg("-n").arg(root().join(&rel)));
        assert!(syntax.status.success(), "{rel}: {syntax:?}");
    }
    let postinst = read("packaging/deb/postinst");
    assert!(postinst.contains("adduser --quiet --system"));
}

#[test]
fn keepalived_example_checks_the_shipped_admin_address() {
    let conf = read("packaging/keepalived/keepalived.conf");
    let config = read("config/portico.toml");
    assert!(config.contains("listen = \"127.0.0.1:9900\""));
    assert!(conf.contains("http://127.0.0.1:9900/readyz"));
    assert!(conf.contains("track_script"));
}

/// Builds the .deb from this checkout with `packaging/build-deb.sh` (packaging the binary the
/// tests already built, so it takes seconds) and reads it back with `dpkg-deb`.
#[test]
fn the_deb_ships_the_binary_config_units_docs_and_scripts() {
    let cargo_deb = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        cargo_deb,
        "cargo-deb is missing: `cargo install --locked cargo-deb --version ^3.8` (.ci/run does)"
    );
    let target = tempfile::tempdir().expect("tempdir");
    let built = run(Command::new("bash")
        .arg(root().join("packaging/build-deb.sh"))
        .arg("--fast")
        .current_dir(root())
        .env("CARGO_TARGET_DIR", target.path())
        .env("DEB_PROFILE", "dev")
        .env("DEB_BIN", PORTICO));
    assert!(built.status.success(), "{built:?}");
    let stdout = String::from_utf8_lossy(&built.stdout);
    let deb = stdout.lines().last().expect("the .deb's path").trim();
    assert!(
        deb.ends_with(".deb") && Path::new(deb).is_file(),
        "{stdout}"
    );

    let contents = run(Command::new("dpkg-deb").args(["-c", deb]));
    assert!(contents.status.success(), "{contents:?}");
    let contents = String::from_utf8_lossy(&contents.stdout);
    let files: Vec<&str> = contents
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    for wanted in [
        "./usr/bin/portico",
        "./etc/portico/portico.toml",
        "./usr/lib/systemd/system/portico.service",
        "./usr/lib/systemd/system/portico.socket",
        "./usr/share/man/man1/portico.1.gz",
        "./usr/share/man/man1/portico-run.1.gz",
        "./usr/share/bash-completion/completions/portico",
        "./usr/share/zsh/vendor-completions/_portico",
        "./usr/share/fish/vendor_completions.d/portico.fish",
        "./usr/share/doc/portico/copyright",
        "./usr/share/doc/portico/examples/keepalived/keepalived.conf",
    ] {
        assert!(
            files.contains(&wanted),
            "{wanted} is not in the .deb:\n{contents}"
        );
    }
    let binary = contents
        .lines()
        .find(|l| l.ends_with("./usr/bin/portico"))
        .expect("binary line");
    assert!(
        binary.starts_with("-rwxr-xr-x 0/0"),
        "root-owned, mode 755: {binary}"
    );

    let conffiles = run(Command::new("dpkg-deb").args(["-I", deb, "conffiles"]));
    assert_eq!(
        String::from_utf8_lossy(&conffiles.stdout).trim(),
        "/etc/portico/portico.toml",
        "{conffiles:?}"
    );
    let info = run(Command::new("dpkg-deb").args(["-I", deb]));
    let info = String::from_utf8_lossy(&info.stdout);
    for wanted in [
        "Package: portico",
        "Depends: adduser",
        "postinst",
        "prerm",
        "postrm",
    ] {
        assert!(
            info.contains(wanted),
            "{wanted} missing from dpkg-deb -I:\n{info}"
        );
    }
    // The maintainer scripts inside are the ones with cargo-deb's systemd snippets.
    let control = tempfile::tempdir().expect("tempdir");
    let extracted = run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(deb)
        .arg(control.path()));
    assert!(extracted.status.success(), "{extracted:?}");
    let postinst = fs::read_to_string(control.path().join("postinst")).expect("postinst");
    assert!(
        postinst.contains("adduser"),
        "the postinst creates the user:\n{postinst}"
    );
    assert!(postinst.contains("deb-systemd-helper"), "{postinst}");
}
