//! systemd socket activation through the real `systemd-socket-activate` tool: Portico adopts the
//! passed sockets whose address matches a listener's `bind` (or `admin.listen`), serves on them,
//! and closes the ones nobody binds.
//!
//! `systemd-socket-activate` binds the `-l` addresses, waits for the first connection, then
//! execs Portico (same pid) with `LISTEN_PID`/`LISTEN_FDS` set. The ports are picked by binding
//! 127.0.0.1:0 and closing the socket: another process could take the port in between, which
//! is an acceptable (small) race in a test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(20);
const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";
const BACKEND_ANSWER: &str = "hello from the backend";

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// A backend that answers every connection with one line, then closes it.
fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("backend bind");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = writeln!(conn, "{BACKEND_ANSWER}");
        }
    });
    addr
}

/// Portico's stderr lines, filled by a reader thread.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

impl Log {
    /// Waits (bounded) for a line containing every one of `parts`.
    fn wait_for(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        let mut lines = self.lines.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no log line with {parts:?} within {WAIT:?}; log:\n{}",
                lines.join("\n")
            );
            lines = self.grew.wait_timeout(lines, left).unwrap().0;
        }
    }
}

/// `portico run` under `systemd-socket-activate -l ADDR...`; SIGTERM and reaped on drop.
struct Activated {
    child: Child,
    log: Arc<Log>,
    _dir: tempfile::TempDir,
}

impl Activated {
    fn start(config: &str, listen: &[SocketAddr]) -> Activated {
        assert!(
            Path::new(ACTIVATE).is_file(),
            "{ACTIVATE} is missing; on Debian: apt-get install systemd"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("portico.toml");
        std::fs::write(&path, config).expect("write config");
        let mut cmd = Command::new(ACTIVATE);
        for addr in listen {
            cmd.arg("-l").arg(addr.to_string());
        }
        // systemd-socket-activate passes only the variables named with -E (and PATH etc.).
        let mut child = cmd
            .args(["-E", "RUST_LOG=info", "-E", "NO_COLOR=1", "--"])
            .arg(env!("CARGO_BIN_EXE_portico"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn systemd-socket-activate");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Log::default());
        let reader = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // A failed wait poisons the lock; keep collecting anyway.
                let mut lines = reader.lines.lock().unwrap_or_else(|e| e.into_inner());
                lines.push(line);
                drop(lines);
                reader.grew.notify_all();
            }
        });
        let activated = Activated {
            child,
            log,
            _dir: dir,
        };
        for addr in listen {
            activated
                .log
                .wait_for(&[&format!("Listening on {addr} as")]);
        }
        activated
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, WAIT).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

fn read_all(mut s: TcpStream) -> String {
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

fn config(listen: SocketAddr, admin: SocketAddr, backend: SocketAddr) -> String {
    format!(
        r#"
[admin]
listen = "{admin}"

[runtime]
shutdown_grace = "2s"

[pools.p]
servers = ["{backend}"]

[listeners.l]
bind = "{listen}"
pool = "p"
"#
    )
}

#[test]
fn serves_on_the_sockets_systemd_passed_by_address() {
    let backend = backend();
    let (listen, admin) = (free_port(), free_port());
    // Admin first on the command line: adoption goes by address, not by order.
    let portico = Activated::start(&config(listen, admin, backend), &[admin, listen]);

    // systemd-socket-activate starts Portico on the first connection: this one waits in the
    // inherited socket's backlog and is served once Portico accepts.
    let first = connect(listen);
    portico.log.wait_for(&["portico ready"]);
    assert_eq!(read_all(first).trim(), BACKEND_ANSWER);
    assert_eq!(read_all(connect(listen)).trim(), BACKEND_ANSWER);

    portico.log.wait_for(&[
        "listener adopted from systemd",
        &format!("addr={listen}"),
        "owner=listeners.l",
    ]);
    portico.log.wait_for(&[
        "listener adopted from systemd",
        &format!("addr={admin}"),
        "owner=admin.listen",
    ]);
    portico
        .log
        .wait_for(&["listener bound", "listener=l", &format!("addr={listen}")]);
    portico
        .log
        .wait_for(&["admin server listening", &format!("addr={admin}")]);

    // The admin server answers on its adopted socket too.
    let mut s = connect(admin);
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = read_all(s);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_socket_no_listener_binds_is_closed_with_a_warning() {
    let backend = backend();
    let (listen, stray) = (free_port(), free_port());
    let admin: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let portico = Activated::start(&config(listen, admin, backend), &[stray, listen]);

    let first = connect(listen);
    portico.log.wait_for(&["portico ready"]);
    assert_eq!(read_all(first).trim(), BACKEND_ANSWER);
    portico.log.wait_for(&[
        "WARN",
        "closing a socket from systemd that no listener binds",
        &format!("addr={stray}"),
    ]);
    let err = TcpStream::connect_timeout(&stray, WAIT).expect_err("the stray socket is closed");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}
