//! Real clients run as child processes: `curl` (HTTP/1.1, HTTP/2 over TLS by ALPN, h2c with
//! prior knowledge) and `openssl s_client` (which certificate a TLS handshake gets). Every run
//! is bounded in time. A missing tool fails the test with a message naming the package.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::WAIT;

/// curl's own bound on a whole transfer (`--max-time`), below [`WAIT`].
const CURL_MAX_TIME: Duration = Duration::from_secs(15);

/// Panics with a clear message when `tool` cannot be run.
fn require(tool: &'static str, version_arg: &str, package: &str) {
    static CHECKED: OnceLock<std::sync::Mutex<Vec<&'static str>>> = OnceLock::new();
    let checked = CHECKED.get_or_init(Default::default);
    if checked.lock().unwrap().contains(&tool) {
        return;
    }
    match Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => checked.lock().unwrap().push(tool),
        Err(e) => panic!(
            "the l7 black-box tests need `{tool}` on PATH and it cannot be run ({e}): \
             install it (Debian/Ubuntu: apt-get install {package})"
        ),
    }
}

/// Runs `cmd` to completion, killing it after `timeout`; stdin is closed.
fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    // Drain the pipes in threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out_thread.join().unwrap(),
        stderr: err_thread.join().unwrap(),
    }
}

/// One curl invocation, built fluently: `Curl::new(url).host("api.test").run()`.
pub struct Curl {
    url: String,
    args: Vec<String>,
}

/// What curl got.
#[derive(Debug, Clone)]
pub struct CurlResponse {
    pub status: u16,
    /// `%{http_version}`: "1.1" or "2".
    pub http_version: String,
    /// The final response's headers, names lowercase.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl CurlResponse {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Curl {
    pub fn new(url: impl Into<String>) -> Curl {
        Curl {
            url: url.into(),
            args: Vec::new(),
        }
    }

    /// `http://ADDR{path}`.
    pub fn http(addr: SocketAddr, path: &str) -> Curl {
        Curl::new(format!("http://{addr}{path}"))
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Curl {
        self.args.push(arg.into());
        self
    }

    /// `-H 'Name: value'`.
    pub fn header(self, line: &str) -> Curl {
        self.arg("-H").arg(line)
    }

    /// `-H 'Host: host'`.
    pub fn host(self, host: &str) -> Curl {
        self.header(&format!("Host: {host}"))
    }

    pub fn method(self, method: &str) -> Curl {
        self.arg("-X").arg(method)
    }

    /// `--data-binary @file`.
    pub fn data_file(self, file: &Path) -> Curl {
        self.arg("--data-binary")
            .arg(format!("@{}", file.display()))
    }

    /// `--resolve NAME:PORT:127.0.0.1` for `https://NAME:PORT/`, and the CA to trust.
    pub fn tls(self, name: &str, addr: SocketAddr, ca: &Path) -> Curl {
        self.arg("--resolve")
            .arg(format!("{name}:{}:{}", addr.port(), addr.ip()))
            .arg("--cacert")
            .arg(ca.display().to_string())
    }

    /// Runs curl; panics when curl fails (no HTTP answer at all).
    pub fn run(self) -> CurlResponse {
        let what = format!("curl {} {}", self.args.join(" "), self.url);
        self.try_run()
            .unwrap_or_else(|e| panic!("{what} failed: {e}"))
    }

    /// Runs curl; Err holds curl's exit code and message when it got no HTTP answer.
    pub fn try_run(self) -> Result<CurlResponse, String> {
        require("curl", "--version", "curl");
        let dir = tempfile::tempdir().expect("tempdir");
        let body: PathBuf = dir.path().join("body");
        let head: PathBuf = dir.path().join("head");
        let mut cmd = Command::new("curl");
        cmd.arg("--silent")
            .arg("--show-error")
            .arg("--max-time")
            .arg(CURL_MAX_TIME.as_secs().to_string())
            .arg("--output")
            .arg(&body)
            .arg("--dump-header")
            .arg(&head)
            .arg("--write-out")
            .arg("%{http_code} %{http_version}")
            .args(&self.args)
            .arg(&self.url);
        let out = run_bounded(cmd, WAIT);
        if !out.status.success() {
            return Err(format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ));
        }
        let written = String::from_utf8_lossy(&out.stdout).into_owned();
        let (code, version) = written
            .split_once(' ')
            .ok_or_else(|| format!("unexpected --write-out {written:?}"))?;
        let head_text = std::fs::read_to_string(&head).unwrap_or_default();
        Ok(CurlResponse {
            status: code.parse().map_err(|_| format!("bad code {code:?}"))?,
            http_version: version.to_owned(),
            headers: last_header_block(&head_text),
            body: String::from_utf8_lossy(&std::fs::read(&body).unwrap_or_default()).into_owned(),
        })
    }
}

/// The headers of the last response in a `--dump-header` file (after any 100 Continue).
fn last_header_block(text: &str) -> Vec<(String, String)> {
    let blocks: Vec<&str> = text
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .collect();
    let Some(last) = blocks.last() else {
        return Vec::new();
    };
    last.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

/// The subject of the certificate a TLS handshake with `addr` gets (`CN = a.test`), sending
/// `servername` as SNI, or no SNI at all for `None`: `openssl s_client`.
pub fn tls_subject(addr: SocketAddr, servername: Option<&str>) -> String {
    require("openssl", "version", "openssl");
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client").arg("-connect").arg(addr.to_string());
    match servername {
        Some(name) => cmd.arg("-servername").arg(name),
        None => cmd.arg("-noservername"),
    };
    let out = run_bounded(cmd, WAIT);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("subject="))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| {
            panic!(
                "openssl s_client -connect {addr} (SNI {servername:?}): no subject line; \
                 stdout:\n{text}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}
