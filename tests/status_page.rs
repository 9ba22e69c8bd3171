//! The admin status page (`GET /`), rendered by a real browser: Debian's Chromium in headless
//! mode loads the page from a running Portico, the page's script fetches `/api/v1/status`, and
//! the tests check the DOM it built (`--dump-dom`) and take desktop and phone screenshots.
//!
//! Chromium is required: without it these tests fail and say how to install it
//! (`apt-get install -y chromium`). `CHROMIUM=/path/to/chrome` picks another binary.
//! The screenshots of the last run are copied to `target/tmp/status_page/` for a look.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long Portico may take to start, to stop, or to reach an expected state.
const WAIT: Duration = Duration::from_secs(20);
/// How long one Chromium run may take before it is killed (CI has 2 cores).
const BROWSER_WAIT: Duration = Duration::from_secs(60);
/// Virtual time the page gets in the browser: enough for its first fetches and renders.
const VIRTUAL_TIME_MS: u32 = 5000;
/// A screenshot smaller than this is a blank or broken page.
const MIN_SCREENSHOT_BYTES: u64 = 10_000;
const TOKEN: &str = "status-page-test-token-0123456789";

#[test]
fn status_page_renders_pools_backends_health_and_drain_buttons() {
    let browser = chromium();
    let up_a = Backend::start();
    let up_b = Backend::start();
    let closed = closed_port();
    let (a, b) = (up_a.addr, up_b.addr);
    let config = format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[runtime]
shutdown_grace = "1s"

[clusters.edge]
nodes = ["127.0.0.1", "127.0.0.2"]

[pools.web-frontend]
servers = ["{a}", "{b}", "{closed}"]
balance = "least_conn"
[pools.web-frontend.health]
kind = "tcp"
interval = "200ms"
timeout = "500ms"
rise = 1
fall = 1

[pools.billing-api]
servers = ["{a}", {{ address = "{b}", weight = 3 }}]
[pools.billing-api.health]
kind = "tcp"
interval = "200ms"
timeout = "500ms"
rise = 1
fall = 1

[pools.ingress]
cluster = "edge"
node_port = {port}
[pools.ingress.health]
kind = "tcp"
interval = "200ms"
timeout = "500ms"
rise = 1
fall = 1

[listeners.web]
bind = "127.0.0.1:0"
pool = "web-frontend"
"#,
        port = a.port(),
    );
    let portico = Portico::start(&config);
    let admin = portico.admin;

    // Settle the state the page must show before the browser looks: checks have run (one
    // backend down), and one backend is drained through the API.
    let closed_s = closed.to_string();
    wait_for_status(admin, None, |s| {
        backend(s, "web-frontend", &closed_s)["health"] == "down"
            && backend(s, "web-frontend", &a.to_string())["health"] == "up"
            && backend(s, "ingress", &format!("127.0.0.2:{}", a.port()))["health"] == "down"
    });
    let b_escaped = b.to_string().replace(':', "%3A");
    let (code, body) = http(
        admin,
        "POST",
        &format!("/api/v1/pools/billing-api/backends/{b_escaped}/drain"),
        None,
    );
    assert_eq!(code, 200, "drain through the API: {body}");

    let url = format!("http://{admin}/");
    let dom = browser.dump_dom(&url);
    let fail = |what: &str| -> ! {
        panic!(
            "{what}; the rendered DOM:\n{dom}\n\nportico's log:\n{}",
            portico.log()
        )
    };

    if !dom.contains(r#"data-view="status""#) {
        fail("the page did not reach its status view");
    }
    for name in ["web-frontend", "billing-api", "ingress", "edge"] {
        if !dom.contains(&format!(">{name}<")) {
            fail(&format!("no pool or cluster named {name} on the page"));
        }
    }
    for addr in [a.to_string(), b.to_string(), closed_s.clone()] {
        if !dom.contains(&format!(">{addr}<")) {
            fail(&format!("backend {addr} is not on the page"));
        }
    }
    let closed_row =
        row_with(&dom, &closed_s).unwrap_or_else(|| fail("no table row for the closed backend"));
    if !(closed_row.contains("s-down") && closed_row.contains(">down<")) {
        fail(&format!(
            "the closed backend is not shown down: {closed_row}"
        ));
    }
    let up_row =
        row_with(&dom, &a.to_string()).unwrap_or_else(|| fail("no row for a live backend"));
    if !(up_row.contains("s-up") && up_row.contains(">up<")) {
        fail(&format!("a live backend is not shown up: {up_row}"));
    }
    let drained_row = rows_with(&dom, &b.to_string())
        .into_iter()
        .find(|r| r.contains(">drained<"))
        .unwrap_or_else(|| fail("the backend drained through the API has no drained badge"));
    if !drained_row.contains(r#"data-action="enable""#) {
        fail(&format!(
            "the drained backend has no Enable button: {drained_row}"
        ));
    }
    // One Drain button per backend or node that is not drained: 3 + 1 + 2 backends, 2 nodes.
    let drains = dom.matches(r#"data-action="drain""#).count();
    if drains < 8 || !dom.contains(">Drain</button>") {
        fail(&format!("expected 8 Drain buttons, found {drains}"));
    }
    if dom.contains("token-input") || dom.contains("Portico is unreachable") {
        fail("the page asks for a token or says the API is unreachable");
    }
    // Listener with its connections, header with the version.
    if !dom.contains(">web<") || !dom.contains(&format!("v{}", env!("CARGO_PKG_VERSION"))) {
        fail("the listener or the version is missing");
    }

    browser.screenshot(&url, "status-wide.png", (1280, 900));
    browser.screenshot(&url, "status-phone.png", (390, 844));
    portico.stop();
}

#[test]
fn status_page_asks_for_the_token_when_the_api_answers_401() {
    let browser = chromium();
    let up = Backend::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write the token");
    let config = format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token_file = "{}"

[runtime]
shutdown_grace = "1s"

[pools.secret-pool]
servers = ["{}"]

[listeners.web]
bind = "127.0.0.1:0"
pool = "secret-pool"
"#,
        token_file.display(),
        up.addr,
    );
    let portico = Portico::start(&config);
    let admin = portico.admin;
    let (code, _) = http(admin, "GET", "/api/v1/status", None);
    assert_eq!(code, 401, "the API must want the token");
    let (code, body) = http(admin, "GET", "/api/v1/status", Some(TOKEN));
    assert_eq!(code, 200, "the API with the token: {body}");

    let url = format!("http://{admin}/");
    let dom = browser.dump_dom(&url);
    let fail = |what: &str| -> ! { panic!("{what}; the rendered DOM:\n{dom}") };
    if !dom.contains(r#"data-view="token""#) {
        fail("the page did not switch to its token view");
    }
    if !dom.contains(r#"<label for="token-input">Admin token</label>"#)
        || !dom.contains(r#"id="token-input""#)
        || !dom.contains("Admin token required")
    {
        fail("no token form");
    }
    if dom.contains("secret-pool") {
        fail("the page shows data without the token");
    }
    browser.screenshot(&url, "token-wide.png", (1280, 900));
    portico.stop();
}

// ---------------------------------------------------------------------------------------------
// Portico

/// A running `portico run` on a temporary config.
struct Portico {
    child: Option<Child>,
    admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Portico {
    /// Starts Portico and waits for `portico ready`; learns the admin address from the log.
    fn start(config: &str) -> Portico {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("portico.toml");
        std::fs::write(&path, config).expect("write the config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_portico"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portico");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let thread_log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                thread_log.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut portico = Portico {
            child: Some(child),
            admin: SocketAddr::from(([0, 0, 0, 0], 0)),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + WAIT;
        let mut admin = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if line.contains("admin server listening") {
                        admin = field(&line, "addr").and_then(|a| a.parse().ok());
                    }
                    if line.contains("portico ready") {
                        break;
                    }
                }
                Err(_) => panic!(
                    "portico did not log `portico ready` within {WAIT:?}:\n{}",
                    portico.log()
                ),
            }
        }
        portico.admin = admin.unwrap_or_else(|| {
            panic!(
                "no `admin server listening addr=...` line:\n{}",
                portico.log()
            )
        });
        portico
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGTERM, then waits (bounded) for the exit.
    fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        terminate(&mut child);
    }
}

impl Drop for Portico {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }
}

/// SIGTERM; SIGKILL if it has not exited within `WAIT`.
fn terminate(child: &mut Child) {
    use nix::sys::signal::{Signal, kill};
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The value of `key=value` in a text log line.
fn field(line: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=");
    let rest = &line[line.find(&pat)? + pat.len()..];
    let end = rest.find(' ').unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"').to_owned())
}

// ---------------------------------------------------------------------------------------------
// Backends and the admin API

/// A TCP server on 127.0.0.1 that accepts connections and closes them (a tcp check passes).
struct Backend {
    addr: SocketAddr,
}

impl Backend {
    fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a backend");
        let addr = listener.local_addr().expect("local addr");
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if conn.is_err() {
                    break;
                }
            }
        });
        Backend { addr }
    }
}

/// An address where nothing listens: a port the OS gave us, closed again.
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr")
}

/// One HTTP/1.1 request to the admin server: (status code, body).
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).expect("connect to the admin server");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read the answer");
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (code, body)
}

/// Polls `/api/v1/status` until `ready` holds (bounded by `WAIT`).
fn wait_for_status(admin: SocketAddr, token: Option<&str>, ready: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        let (code, body) = http(admin, "GET", "/api/v1/status", token);
        if code == 200 {
            if let Ok(status) = serde_json::from_str::<Value>(&body) {
                if ready(&status) {
                    return;
                }
            }
        }
        last = body;
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the status did not reach the expected state within {WAIT:?}:\n{last}");
}

/// The status entry of backend `addr` in pool `pool` (Null when absent).
fn backend<'a>(status: &'a Value, pool: &str, addr: &str) -> &'a Value {
    status["pools"]
        .as_array()
        .and_then(|pools| pools.iter().find(|p| p["name"] == pool))
        .and_then(|p| p["backends"].as_array())
        .and_then(|bs| bs.iter().find(|b| b["address"] == addr))
        .unwrap_or(&Value::Null)
}

/// The `<tr>...</tr>` elements of the DOM that contain `needle`.
fn rows_with(dom: &str, needle: &str) -> Vec<String> {
    dom.split("<tr")
        .skip(1)
        .map(|r| r.split("</tr>").next().unwrap_or(r))
        .filter(|r| r.contains(&format!(">{needle}<")))
        .map(str::to_owned)
        .collect()
}

fn row_with(dom: &str, needle: &str) -> Option<String> {
    rows_with(dom, needle).into_iter().next()
}

// ---------------------------------------------------------------------------------------------
// Chromium

struct Chromium {
    path: PathBuf,
}

/// Finds Chromium, or fails the test saying how to install it.
fn chromium() -> Chromium {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Chromium { path: path.into() };
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|n| dir.join(n)))
            .find(|p| is_executable(p))
    });
    match found {
        Some(path) => Chromium { path },
        None => panic!(
            "Chromium is not installed: the status page tests render the page in a real browser.\n\
             Install it with `apt-get update && apt-get install -y chromium` (Debian; .ci/run does \
             this), or set CHROMIUM=/path/to/chrome."
        ),
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Chromium {
    /// The DOM after the page's script ran (`--dump-dom`), without the script's own text (so
    /// the assertions only see what the script rendered).
    fn dump_dom(&self, url: &str) -> String {
        let dom = self.run(&["--dump-dom".to_owned()], url);
        let mut out = String::with_capacity(dom.len());
        let mut rest = dom.as_str();
        while let Some(start) = rest.find("<script") {
            out.push_str(&rest[..start]);
            rest = rest[start..]
                .find("</script>")
                .map_or("", |end| &rest[start + end + "</script>".len()..]);
        }
        out.push_str(rest);
        out
    }

    /// Takes a screenshot at `size`, checks it is a real PNG of that size and not blank, and
    /// copies it to `target/tmp/status_page/NAME` for people to look at.
    fn screenshot(&self, url: &str, name: &str, size: (u32, u32)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let png = dir.path().join(name);
        self.run(
            &[
                format!("--screenshot={}", png.display()),
                format!("--window-size={},{}", size.0, size.1),
                "--hide-scrollbars".to_owned(),
            ],
            url,
        );
        let bytes = std::fs::read(&png)
            .unwrap_or_else(|e| panic!("chromium wrote no screenshot {}: {e}", png.display()));
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 24,
            "{name} is not a PNG"
        );
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((width, height), size, "{name} has the wrong size");
        assert!(
            bytes.len() as u64 >= MIN_SCREENSHOT_BYTES,
            "{name} is only {} bytes: a blank page?",
            bytes.len()
        );
        let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status_page");
        if std::fs::create_dir_all(&keep).is_ok() && std::fs::write(keep.join(name), &bytes).is_ok()
        {
            eprintln!("screenshot: {}", keep.join(name).display());
        }
    }

    /// Runs headless Chromium on `url` with a fresh profile; returns its stdout. Killed (with
    /// its whole process group) if it takes longer than `BROWSER_WAIT`.
    fn run(&self, extra: &[String], url: &str) -> String {
        let profile = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(&self.path)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--mute-audio",
                // Console messages (uncaught exceptions, CSP violations) go to stderr.
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--virtual-time-budget={VIRTUAL_TIME_MS}"))
            .args(extra)
            .arg(url)
            .env("HOME", profile.path())
            .env("XDG_CONFIG_HOME", profile.path())
            .env("XDG_CACHE_HOME", profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.path.display()));
        let out = drain(child.stdout.take().expect("stdout"));
        let err = drain(child.stderr.take().expect("stderr"));
        // Chromium and its helper processes share this process group (its id is Chromium's pid).
        let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        let kill_group = || {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        };
        let deadline = Instant::now() + BROWSER_WAIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                // Not reaped yet, so the group id is still ours.
                kill_group();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        // The pipes close when the last process holding them exits. A helper that outlives the
        // browser keeps the group (and so its id) alive: ending the group is then safe.
        let pipe_deadline = Instant::now() + WAIT;
        let collect = |rx: &mpsc::Receiver<String>| {
            rx.recv_timeout(pipe_deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    kill_group();
                    rx.recv_timeout(WAIT).unwrap_or_default()
                })
        };
        let stdout = collect(&out);
        let stderr = collect(&err);
        match status {
            None => panic!("chromium did not finish within {BROWSER_WAIT:?} on {url}:\n{stderr}"),
            Some(s) if !s.success() => panic!("chromium failed ({s}) on {url}:\n{stderr}"),
            Some(_) => {
                // The page itself never writes to the console: any console line is an error.
                let console: Vec<&str> =
                    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
                assert!(
                    console.is_empty(),
                    "the page wrote to the browser console on {url}:\n{}",
                    console.join("\n")
                );
                stdout
            }
        }
    }
}

/// Reads a pipe to its end on a thread (so a large DOM never blocks Chromium on a full pipe).
fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}
