//! The test harness: a running Portico (`Portico`), test backends (`backend`) and helpers.

pub mod backend;
pub mod http;
pub mod http_backend;
pub mod real_clients;
pub mod tls_certs;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long any wait in a test may take before the test fails (generous: CI is 2 cores).
pub const WAIT: Duration = Duration::from_secs(20);
/// Pause between two looks at something that changes asynchronously (always under a deadline).
const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` until it holds (true) or [`WAIT`] has passed (false).
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

pub fn portico_bin() -> &'static str {
    env!("CARGO_BIN_EXE_portico")
}

/// The log lines a process wrote to stderr, shared with a reader thread.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

/// A running `portico run` with its config file in a temporary directory.
pub struct Portico {
    child: Option<Child>,
    /// Shared with the process that takes over in a binary upgrade.
    dir: Arc<tempfile::TempDir>,
    log: Arc<Log>,
    /// Listener name -> the address it bound (learned from the "listener bound" log lines).
    pub addrs: HashMap<String, SocketAddr>,
    admin: Option<SocketAddr>,
}

impl Portico {
    /// Starts Portico on `config` and waits until it logs that it is ready.
    pub fn start(config: &str) -> Portico {
        Self::try_start(config).unwrap_or_else(|log| panic!("portico did not start:\n{log}"))
    }

    /// Starts Portico; Err carries its log when it exits before becoming ready.
    pub fn try_start(config: &str) -> Result<Portico, String> {
        let mut portico = Self::spawn(config, &[]);
        portico.wait_ready()?;
        Ok(portico)
    }

    /// Starts Portico with extra environment variables and returns at once, without waiting
    /// for it to be ready (see [`Self::wait_ready`]). The systemd variables (`NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC`, `WATCHDOG_PID`) are never inherited from the test's own environment:
    /// only `env` sets them.
    pub fn spawn(config: &str, env: &[(&str, &std::ffi::OsStr)]) -> Portico {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("portico.toml"), with_test_admin(config))
            .expect("write config");
        Self::launch(Arc::new(dir), &[], env)
    }

    /// Starts `portico run --upgrade` on this instance's config file (rewrite it first with
    /// [`Self::write_config`] to upgrade to another config) and waits until the new process
    /// is ready; Err carries its log when it exits first.
    pub fn try_upgrade(&self) -> Result<Portico, String> {
        let mut new = Self::launch(Arc::clone(&self.dir), &["--upgrade"], &[]);
        new.wait_ready()?;
        Ok(new)
    }

    /// Replaces the config file without signalling anything.
    pub fn write_config(&self, config: &str) {
        std::fs::write(self.config_path(), with_test_admin(config)).expect("write config");
    }

    fn launch(
        dir: Arc<tempfile::TempDir>,
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Portico {
        let path = dir.path().join("portico.toml");
        let mut command = Command::new(portico_bin());
        command
            .arg("run")
            .arg("--config")
            .arg(&path)
            .args(extra)
            .env("RUST_LOG", "info,l4_forwarder=debug")
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn portico");
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().expect("stderr");
        let reader_log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                reader_log.lines.lock().unwrap().push(line);
                reader_log.grew.notify_all();
            }
            // EOF: wake waiters so they can notice the exit.
            reader_log
                .lines
                .lock()
                .unwrap()
                .push(String::from("<stderr closed>"));
            reader_log.grew.notify_all();
        });
        Portico {
            child: Some(child),
            dir,
            log,
            addrs: HashMap::new(),
            admin: None,
        }
    }

    /// Waits until it logs that it is ready and learns its addresses; Err carries its log
    /// when it exits (or takes longer than [`WAIT`]) first.
    pub fn wait_ready(&mut self) -> Result<(), String> {
        if self
            .wait_for_log(|l| l.contains("portico ready"), WAIT)
            .is_none()
        {
            return Err(self.log_text());
        }
        self.learn_addrs();
        Ok(())
    }

    fn learn_addrs(&mut self) {
        for line in self.log.lines.lock().unwrap().iter() {
            if line.contains("admin server listening") {
                if let Some(addr) = field(line, "addr") {
                    self.admin = Some(addr.parse().expect("admin addr in log"));
                }
            }
            if line.contains("listener bound") {
                if let (Some(name), Some(addr)) = (field(line, "listener"), field(line, "addr")) {
                    self.addrs.insert(name, addr.parse().expect("addr in log"));
                }
            }
        }
    }

    /// The address listener `name` is bound to.
    pub fn addr(&self, name: &str) -> SocketAddr {
        *self
            .addrs
            .get(name)
            .unwrap_or_else(|| panic!("no listener {name} in {:?}", self.addrs))
    }

    /// The admin server's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("admin address in the log")
    }

    /// The temporary directory holding the config (usable as `runtime.state_dir` too).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("portico.toml")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Writes a new config and sends SIGHUP; waits for the reload's outcome and returns the
    /// log line ("reload applied ..." or "reload failed ...").
    pub fn reload(&mut self, config: &str) -> String {
        self.write_config(config);
        self.sighup()
    }

    /// Sends SIGHUP and waits for the reload's outcome line.
    pub fn sighup(&mut self) -> String {
        let before = self.count_lines(is_reload_outcome);
        self.signal("HUP");
        let deadline = Instant::now() + WAIT;
        loop {
            let lines = self.log.lines.lock().unwrap();
            let outcomes: Vec<&String> = lines.iter().filter(|l| is_reload_outcome(l)).collect();
            if outcomes.len() > before {
                let line = outcomes[before].clone();
                drop(lines);
                self.learn_addrs();
                return line;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no reload outcome in the log:\n{}",
                lines.join("\n")
            );
            let _ = self.log.grew.wait_timeout(lines, left).unwrap();
        }
    }

    /// Sends a signal by name: "HUP", "TERM", "INT".
    pub fn signal(&self, name: &str) {
        use nix::sys::signal::{Signal, kill};
        let signal = match name {
            "HUP" => Signal::SIGHUP,
            "TERM" => Signal::SIGTERM,
            "INT" => Signal::SIGINT,
            other => panic!("unknown signal {other}"),
        };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).expect("pid"));
        kill(pid, signal).expect("kill");
    }

    /// Waits for the process to exit (after a signal) and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "portico did not exit in {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// How many log lines satisfy `pred` so far.
    pub fn count_lines(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.log
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| pred(l))
            .count()
    }

    /// The number of log lines so far: a mark for [`Self::wait_for_log_after`].
    pub fn log_mark(&self) -> usize {
        self.log.lines.lock().unwrap().len()
    }

    /// Waits until a log line satisfies `pred`; returns it.
    pub fn wait_for_log(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        self.wait_for_log_after(0, pred, timeout)
    }

    /// Waits until a line written after `mark` (from [`Self::log_mark`]) satisfies `pred`.
    pub fn wait_for_log_after(
        &self,
        mark: usize,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().skip(mark).find(|l| pred(l)) {
                return Some(l.clone());
            }
            if lines.last().is_some_and(|l| l == "<stderr closed>") {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            lines = self.log.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Portico {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Tests run many instances at once: unless a config sets its own `[admin]`, the admin server
/// gets an OS-chosen port instead of the default 9900.
pub fn with_test_admin(config: &str) -> String {
    if config.contains("[admin]") {
        config.to_owned()
    } else {
        format!("[admin]\nlisten = \"127.0.0.1:0\"\n{config}")
    }
}

fn is_reload_outcome(line: &str) -> bool {
    line.contains("reload applied") || line.contains("reload failed")
}

/// The value of `key=value` in a text log line.
pub fn field(line: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    let end = rest.find(' ').unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"').to_owned())
}

/// Runs `portico ARGS...` to completion: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(portico_bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run portico");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `text` to a file in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// Connects with a timeout and sets read/write timeouts so no test can hang.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s =
        TcpStream::connect_timeout(&addr, WAIT).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Connects from a chosen local address (another 127.x address: a different "client").
pub fn connect_from(local: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(local, 0).into()).unwrap();
    socket
        .connect_timeout(&addr.into(), WAIT)
        .unwrap_or_else(|e| panic!("connect {addr} from {local}: {e}"));
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads one line (without the newline).
pub fn read_line(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => out.push(byte[0]),
            Err(e) => panic!("read_line: {e} (got {:?})", String::from_utf8_lossy(&out)),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Connects, reads the backend's greeting line (its name), closes.
pub fn who_answers(addr: SocketAddr) -> String {
    let mut s = connect(addr);
    read_line(&mut s)
}

/// Sends `data` and expects it echoed back.
pub fn assert_echo(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).unwrap();
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, data);
}

/// Whether a new connection to `addr` goes unserved: refused, reset, or closed before a
/// single byte arrives. (Under heavy load the kernel can still complete a handshake in the
/// instant a listening socket closes; the connection is then reset, never served.)
pub fn is_not_served(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(_) => true,
        Ok(mut s) => {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 1];
            matches!(s.read(&mut buf), Ok(0) | Err(_))
        }
    }
}

/// Whether a connection to `addr` is refused (nothing listens there any more).
pub fn is_refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => true,
        other => {
            eprintln!("connect to {addr} was not refused: {other:?}");

            false
        }
    }
}
