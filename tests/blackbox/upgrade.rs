//! Seamless binary upgrade: `portico run --upgrade` takes every listening socket over from the
//! running process through `runtime.upgrade_socket`, under load, with nothing refused; and
//! every way it can fail leaves the running process serving.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::backend::{Behavior, TestBackend};
use crate::harness::http::http;
use crate::harness::http_backend::HttpBackend;
use crate::harness::{Portico, WAIT, run_cli, who_answers};

/// Clients of the load, each with one request in flight.
const CLIENTS: usize = 32;
/// How long the load runs, in total.
const LOAD: Duration = Duration::from_secs(10);
/// Pause between one client's requests: keeps the connection rate (and TIME_WAIT sockets on
/// loopback) bounded.
const PACE: Duration = Duration::from_millis(25);
/// Per-request timeout of the load clients.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn config(sock: &Path, tcp: &[&TestBackend], web: &HttpBackend, extra: &str) -> String {
    let tcp: Vec<String> = tcp.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!(
        r#"
[runtime]
shutdown_grace = "10s"
upgrade_socket = "{sock}"

[pools.tcp]
servers = [{tcp}]

[pools.web]
servers = ["{web}"]

[listeners.tcp]
bind = "127.0.0.1:0"
pool = "tcp"

[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"
[[listeners.web.routes]]
path_prefix = "/"
pool = "web"
{extra}
"#,
        sock = sock.display(),
        tcp = tcp.join(", "),
        web = web.addr,
    )
}

/// One L4 exchange on a fresh connection: the backend's greeting, then an echo.
fn l4_request(addr: SocketAddr) -> Result<(), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    let mut greeting = [0u8; 3];
    s.read_exact(&mut greeting)
        .map_err(|e| format!("greeting: {e}"))?;
    if !greeting.starts_with(b"b") {
        return Err(format!("greeting {greeting:?}"));
    }
    s.write_all(b"ping").map_err(|e| format!("write: {e}"))?;
    let mut echo = Vec::new();
    while !echo.ends_with(b"ping") {
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("closed before the echo, got {echo:?}")),
            Ok(n) => echo.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("echo: {e}")),
        }
    }
    Ok(())
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
fn l7_request(addr: SocketAddr) -> Result<(), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    s.write_all(b"GET /load HTTP/1.1\r\nHost: upgrade.test\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    if response.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("response {:?}", String::from_utf8_lossy(&response)))
    }
}

/// Closed-loop clients alternating L4 and L7 requests until stopped (or `LOAD` is over).
struct Load {
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(tcp: SocketAddr, web: SocketAddr) -> Load {
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + LOAD;
        let threads = (0..CLIENTS)
            .map(|i| {
                let (ok, failures, stop) =
                    (Arc::clone(&ok), Arc::clone(&failures), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let result = if n % 2 == 0 {
                            l4_request(tcp)
                        } else {
                            l7_request(web)
                        };
                        match result {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(why) => failures.lock().unwrap().push(why),
                        }
                        n += 1;
                        std::thread::sleep(PACE);
                    }
                })
            })
            .collect();
        Load {
            ok,
            failures,
            stop,
            threads,
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `more` requests have succeeded since now.
    fn wait_for(&self, more: usize) {
        let target = self.ok() + more;
        let deadline = Instant::now() + WAIT;
        while self.ok() < target {
            assert!(
                Instant::now() < deadline,
                "the load stalled at {} requests",
                self.ok()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Lets the load run out its time; returns (succeeded, failures).
    fn finish(self) -> (usize, Vec<String>) {
        for t in self.threads {
            t.join().unwrap();
        }
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

fn upgrade(old: &mut Portico) -> Portico {
    let new = old
        .try_upgrade()
        .unwrap_or_else(|log| panic!("the upgrade failed:\n{log}"));
    assert!(
        new.wait_for_log(|l| l.contains("upgrade complete"), WAIT)
            .is_some(),
        "{}",
        new.log_text()
    );
    let status = old.wait_exit(WAIT);
    assert!(
        status.success(),
        "the old process exits 0: {status:?}\n{}",
        old.log_text()
    );
    new
}

#[test]
fn two_upgrades_in_a_row_under_load_refuse_nothing_and_fail_nothing() {
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("upgrade.sock");
    let b1 = TestBackend::start("b1", Behavior::GreetEcho);
    let b2 = TestBackend::start("b2", Behavior::GreetEcho);
    let web = HttpBackend::start("web");
    let mut first = Portico::start(&config(&sock, &[&b1, &b2], &web, ""));
    let (tcp, http_addr, admin) = (first.addr("tcp"), first.addr("web"), first.admin_addr());

    let load = Load::start(tcp, http_addr);
    load.wait_for(50);
    let mut second = upgrade(&mut first);
    // Port 0 in the config: the new process took the very same sockets (by listener name).
    assert_eq!(
        (second.addr("tcp"), second.addr("web"), second.admin_addr()),
        (tcp, http_addr, admin)
    );
    assert!(
        second
            .log_text()
            .contains("received the listening sockets of the running Portico"),
        "{}",
        second.log_text()
    );
    load.wait_for(50);
    let third = upgrade(&mut second);
    load.wait_for(50);
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(ok >= 150, "the load ran: {ok} requests");

    // The last process serves everything: traffic, the admin API, and the next upgrade.
    assert!(who_answers(tcp).starts_with('b'));
    assert_eq!(http(admin, "GET", "/readyz", &[], None).status, 200);
    assert!(
        sock.exists(),
        "the upgrade socket stays for the next upgrade"
    );
    drop(third);
}

/// One TCP backend, one HTTP backend and an upgrade socket in a temporary directory.
struct OneBackend {
    dir: tempfile::TempDir,
    tcp: TestBackend,
    web: HttpBackend,
}

impl OneBackend {
    fn start() -> OneBackend {
        OneBackend {
            dir: tempfile::tempdir().unwrap(),
            tcp: TestBackend::start("b1", Behavior::GreetEcho),
            web: HttpBackend::start("web"),
        }
    }

    fn config(&self, extra: &str) -> String {
        config(
            &self.dir.path().join("upgrade.sock"),
            &[&self.tcp],
            &self.web,
            extra,
        )
    }
}

#[test]
fn a_broken_config_aborts_the_upgrade_and_the_old_process_keeps_serving() {
    let one = OneBackend::start();
    let mut old = Portico::start(&one.config(""));
    let tcp = old.addr("tcp");

    let good = one.config("");
    old.write_config(&good.replace("pool = \"tcp\"", "pool = \"nope\""));
    let path = old.config_path();
    let (code, _, stderr) = run_cli(&["run", "--config", path.to_str().unwrap(), "--upgrade"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("nope"), "names the error: {stderr}");
    assert!(stderr.contains("upgrade aborted"), "{stderr}");
    assert!(old.is_running());
    assert_eq!(who_answers(tcp), "b1");

    // Fixed, the same process upgrades fine.
    old.write_config(&good);
    let new = upgrade(&mut old);
    assert_eq!(who_answers(new.addr("tcp")), "b1");
}

#[test]
fn a_new_process_that_cannot_start_leaves_the_old_one_serving() {
    let one = OneBackend::start();
    let mut old = Portico::start(&one.config(""));
    let tcp = old.addr("tcp");

    // The new config adds a listener on an address that is taken: the new process gets the
    // sockets, then fails to bind, and must give up without having served anything.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let extra = format!(
        "[listeners.extra]\nbind = \"{}\"\npool = \"tcp\"\n",
        taken.local_addr().unwrap()
    );
    old.write_config(&one.config(&extra));
    let mark = old.log_mark();
    let err = old.try_upgrade().err().expect("the upgrade must fail");
    assert!(err.contains("cannot bind"), "{err}");
    assert!(
        old.wait_for_log_after(
            mark,
            |l| l.contains("upgrade attempt failed, still serving"),
            WAIT
        )
        .is_some(),
        "{}",
        old.log_text()
    );
    assert!(old.is_running());
    assert_eq!(who_answers(tcp), "b1");
    assert_eq!(
        http(old.admin_addr(), "GET", "/readyz", &[], None).status,
        200
    );
}

#[test]
fn an_upgrade_with_nothing_to_take_over_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBackend::start("b1", Behavior::GreetEcho);
    let web = HttpBackend::start("web");
    let path = dir.path().join("portico.toml");
    let text =
        crate::harness::with_test_admin(&config(&dir.path().join("none.sock"), &[&b], &web, ""));
    std::fs::write(&path, text).unwrap();
    let (code, _, stderr) = run_cli(&["run", "--config", path.to_str().unwrap(), "--upgrade"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("cannot reach the running Portico"),
        "{stderr}"
    );
    assert!(stderr.contains("none.sock"), "{stderr}");
}
