//! systemd notifications seen from systemd's side: the test binds the `NOTIFY_SOCKET` datagram
//! socket itself, starts the real binary pointing at it, and reads what arrives: READY=1 (with
//! STATUS=) once the listeners accept, WATCHDOG=1 pings, RELOADING=1 + MONOTONIC_USEC then
//! READY=1 around each SIGHUP (a broken file included), STOPPING=1 on SIGTERM, in that order.

use std::ffi::{OsStr, OsString};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::harness::backend::{Behavior, TestBackend};
use crate::harness::{Portico, WAIT, read_line};

/// WATCHDOG_USEC given to Portico: it pings every half of it.
const WATCHDOG_USEC: u64 = 200_000;
const PING_EVERY: Duration = Duration::from_micros(WATCHDOG_USEC / 2);
/// Pings expected in a row, within [`PINGS_WITHIN`] (15 intervals: CI has 2 busy cores).
const PINGS: usize = 3;
const PINGS_WITHIN: Duration = Duration::from_millis(1500);

/// One datagram: `KEY=value` lines.
struct Message {
    text: String,
}

impl Message {
    fn get(&self, key: &str) -> Option<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }

    fn is_ping(&self) -> bool {
        self.text == "WATCHDOG=1\n"
    }
}

/// The fake systemd end: a datagram socket in a temp dir (or an abstract one).
struct NotifySocket {
    socket: UnixDatagram,
    /// What `NOTIFY_SOCKET` says.
    address: OsString,
    _dir: Option<tempfile::TempDir>,
    /// Every message but pings, in arrival order.
    events: Vec<String>,
    pings: usize,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        Self::new(socket, path.into_os_string(), Some(dir))
    }

    /// `@name`: a Linux abstract socket, which sd_notify(3) allows too.
    fn bind_abstract() -> NotifySocket {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("portico-test-notify-{}-{nanos}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).expect("bind abstract notify socket");
        Self::new(socket, format!("@{name}").into(), None)
    }

    fn new(socket: UnixDatagram, address: OsString, dir: Option<tempfile::TempDir>) -> Self {
        NotifySocket {
            socket,
            address,
            _dir: dir,
            events: Vec::new(),
            pings: 0,
        }
    }

    /// The next datagram, or None when nothing arrives within `timeout`.
    fn recv(&mut self, timeout: Duration) -> Option<Message> {
        let timeout = timeout.max(Duration::from_millis(1));
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => {
                let message = Message {
                    text: String::from_utf8(buf[..n].to_vec()).expect("UTF-8 datagram"),
                };
                if message.is_ping() {
                    self.pings += 1;
                } else {
                    self.events.push(message.text.clone());
                }
                Some(message)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("recv on the notify socket: {e}"),
        }
    }

    /// The next message that is not a watchdog ping; `what` names it for the failure.
    fn next_event(&mut self, what: &str) -> Message {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Some(m) if m.is_ping() => continue,
                Some(m) => return m,
                None => panic!(
                    "no {what} within {WAIT:?}; messages so far: {:?}",
                    self.events
                ),
            }
        }
    }

    /// Waits for `n` pings in a row within `within`; any other message fails the test.
    fn expect_pings(&mut self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        for i in 0..n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Some(m) if m.is_ping() => {}
                Some(m) => panic!("expected WATCHDOG=1, got {:?}", m.text),
                None => panic!("only {i} of {n} WATCHDOG=1 pings within {within:?}"),
            }
        }
    }

    /// Everything still queued (the sender has exited): no new event may be among it.
    fn drain(&mut self) -> Vec<String> {
        self.socket.set_nonblocking(true).unwrap();
        let mut rest = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if text == "WATCHDOG=1\n" {
                        self.pings += 1;
                    } else {
                        rest.push(text);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return rest,
                Err(e) => panic!("recv on the notify socket: {e}"),
            }
        }
    }
}

/// Two addresses nothing else uses, known before Portico starts (so the test can connect the
/// moment READY=1 arrives, before any log line says where Portico listens): ports the kernel
/// picks on a loopback address of this test process's own, released just before the start.
fn reserved_addrs() -> (SocketAddr, SocketAddr) {
    let pid = std::process::id();
    let ip = Ipv4Addr::new(127, 77, (pid >> 8) as u8, pid as u8);
    let a = TcpListener::bind((ip, 0)).expect("reserve a");
    let b = TcpListener::bind((ip, 0)).expect("reserve b");
    (a.local_addr().unwrap(), b.local_addr().unwrap())
}

fn config(a: SocketAddr, b: SocketAddr, backends: &[&TestBackend], drain_last: bool) -> String {
    let mut servers: Vec<String> = backends.iter().map(|t| format!("\"{}\"", t.addr)).collect();
    if drain_last {
        let last = servers.pop().expect("a backend");
        servers.push(format!("{{ address = {last}, drain = true }}"));
    }
    format!(
        r#"
[runtime]
shutdown_grace = "5s"

[pools.p]
servers = [{}]

[listeners.a]
bind = "{a}"
pool = "p"

[listeners.b]
bind = "{b}"
pool = "p"
"#,
        servers.join(", ")
    )
}

/// CLOCK_BOOTTIME in seconds; CLOCK_MONOTONIC is the same minus the time spent suspended.
fn uptime_secs() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").expect("/proc/uptime");
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("seconds in /proc/uptime")
}

/// A RELOADING=1 datagram carries MONOTONIC_USEC, a CLOCK_MONOTONIC reading in microseconds
/// taken after `uptime_before` (read before SIGHUP) and before now. Returns it.
fn check_reloading(m: &Message, uptime_before: f64) -> u64 {
    assert_eq!(m.get("RELOADING"), Some("1"), "{:?}", m.text);
    let usec: u64 = m
        .get("MONOTONIC_USEC")
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {:?}", m.text))
        .parse()
        .expect("MONOTONIC_USEC is an integer");
    let secs = usec as f64 / 1e6;
    let uptime_after = uptime_secs();
    // Never ahead of the boot clock; and in microseconds, not milliseconds (1000 times
    // smaller), even on a machine that spent most of its uptime suspended.
    assert!(
        secs <= uptime_after + 0.5 && secs >= uptime_before / 100.0,
        "MONOTONIC_USEC={usec} is not a CLOCK_MONOTONIC microsecond count (uptime {uptime_before}..{uptime_after} s)"
    );
    usec
}

fn connect_and_greet(addr: SocketAddr, listener: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap_or_else(|e| {
        panic!("READY=1 was sent but listener {listener} ({addr}) does not accept: {e}")
    });
    s.set_read_timeout(Some(WAIT)).unwrap();
    read_line(&mut s)
}

#[test]
fn notifications_follow_the_lifecycle_in_order() {
    let b1 = TestBackend::start("b1", Behavior::GreetEcho);
    let b2 = TestBackend::start("b2", Behavior::GreetEcho);
    let b3 = TestBackend::start("b3", Behavior::GreetEcho);
    let (a, b) = reserved_addrs();
    let mut notify = NotifySocket::bind();
    let usec = WATCHDOG_USEC.to_string();
    let started = Instant::now();
    let mut portico = Portico::spawn(
        &config(a, b, &[&b1, &b2, &b3], true),
        &[
            ("NOTIFY_SOCKET", notify.address.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new(&usec)),
        ],
    );

    // Startup: READY=1 is the very first datagram, and the listeners accept at that moment.
    let ready = notify
        .recv(WAIT)
        .unwrap_or_else(|| panic!("no READY=1:\n{}", portico.log_text()));
    assert_eq!(
        ready.get("READY"),
        Some("1"),
        "first datagram: {:?}",
        ready.text
    );
    for (addr, name) in [(a, "a"), (b, "b")] {
        let greeting = connect_and_greet(addr, name);
        assert!(
            ["b1", "b2"].contains(&greeting.as_str()),
            "served by a drained backend or not at all: {greeting:?}"
        );
    }
    assert_eq!(
        ready.get("STATUS"),
        Some("serving 2 listeners, 2/3 backends up"),
        "{:?}",
        ready.text
    );
    portico.wait_ready().expect("portico logs that it is ready");
    notify.expect_pings(PINGS, PINGS_WITHIN);

    // A valid reload: RELOADING=1 with the time, then READY=1 with the new state.
    let (uptime, t0) = (uptime_secs(), Instant::now());
    let outcome = portico.reload(&config(a, b, &[&b1, &b2, &b3], false));
    assert!(outcome.contains("reload applied"), "{outcome}");
    let reloading = notify.next_event("RELOADING=1");
    let t1 = Instant::now();
    let first_usec = check_reloading(&reloading, uptime);
    let ready = notify.next_event("READY=1 after the reload");
    assert_eq!(ready.get("READY"), Some("1"), "{:?}", ready.text);
    assert_eq!(
        ready.get("STATUS"),
        Some("serving 2 listeners, 3/3 backends up"),
        "{:?}",
        ready.text
    );
    notify.expect_pings(PINGS, PINGS_WITHIN);

    // A broken file: still RELOADING=1 then READY=1, and the running config keeps serving.
    let (uptime, t2) = (uptime_secs(), Instant::now());
    let outcome = portico.reload("this is [not toml");
    assert!(outcome.contains("reload failed"), "{outcome}");
    let reloading = notify.next_event("RELOADING=1");
    let t3 = Instant::now();
    let second_usec = check_reloading(&reloading, uptime);
    let ready = notify.next_event("READY=1 after the failed reload");
    assert_eq!(ready.get("READY"), Some("1"), "{:?}", ready.text);
    let status = ready.get("STATUS").unwrap_or_default();
    assert!(
        status.starts_with("reload failed, still serving the previous config: ")
            && status.ends_with("; serving 2 listeners, 3/3 backends up"),
        "says the reload failed, and the previous config's state: {:?}",
        ready.text
    );
    assert!(["b1", "b2", "b3"].contains(&connect_and_greet(a, "a").as_str()));
    notify.expect_pings(PINGS, PINGS_WITHIN);

    // Both readings come from the clock the test's Instant reads (CLOCK_MONOTONIC): the time
    // between them lies between what the test saw (1 ms for the microsecond truncation).
    let between = Duration::from_micros(second_usec - first_usec);
    let (least, most) = (t2 - t1, t3 - t0);
    assert!(
        between + Duration::from_millis(1) >= least && between <= most + Duration::from_millis(1),
        "MONOTONIC_USEC moved {between:?} between the reloads; the test saw {least:?}..{most:?}"
    );

    // Shutdown: STOPPING=1 next, then nothing but pings until the exit.
    portico.signal("TERM");
    let stopping = notify.next_event("STOPPING=1");
    let stopped_seen = started.elapsed();
    let pings_before_stop = notify.pings;
    assert_eq!(stopping.get("STOPPING"), Some("1"), "{:?}", stopping.text);
    assert!(
        stopping
            .get("STATUS")
            .is_some_and(|s| s.contains("draining")),
        "{:?}",
        stopping.text
    );
    assert_eq!(portico.wait_exit(WAIT).code(), Some(0));
    let late = notify.drain();
    assert!(late.is_empty(), "messages after STOPPING=1: {late:?}");

    let events: Vec<&str> = notify
        .events
        .iter()
        .map(|e| e.lines().next().unwrap_or(""))
        .collect();
    assert_eq!(
        events,
        [
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "STOPPING=1"
        ]
    );
    // Pings come every WATCHDOG_USEC/2, not faster: every ping queued before STOPPING=1 was
    // sent within `stopped_seen` of the start, so there can be no more than this many.
    let most_pings = (stopped_seen.as_micros() / PING_EVERY.as_micros()) as usize + 2;
    assert!(
        pings_before_stop <= most_pings,
        "{pings_before_stop} pings in {stopped_seen:?}, at most {most_pings} expected"
    );
}

#[test]
fn abstract_socket_and_watchdog_of_another_process() {
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let mut notify = NotifySocket::bind_abstract();
    let config = format!(
        "[runtime]\nshutdown_grace = \"5s\"\n[pools.p]\nservers = [\"{}\"]\n[listeners.l]\nbind = \"127.0.0.1:0\"\npool = \"p\"\n",
        b.addr
    );
    // systemd sets WATCHDOG_PID to the main process: when it names another process (pid 1
    // here), the watchdog is that process's business and Portico must not ping.
    let mut portico = Portico::spawn(
        &config,
        &[
            ("NOTIFY_SOCKET", notify.address.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("100000")),
            ("WATCHDOG_PID", OsStr::new("1")),
        ],
    );
    let ready = notify.next_event("READY=1");
    assert_eq!(ready.get("READY"), Some("1"), "{:?}", ready.text);
    assert_eq!(
        ready.get("STATUS"),
        Some("serving 1 listeners, 1/1 backends up")
    );
    portico.wait_ready().expect("portico logs that it is ready");
    assert_eq!(connect_and_greet(portico.addr("l"), "l"), "b");
    // Ten ping intervals of silence.
    if let Some(m) = notify.recv(Duration::from_millis(500)) {
        panic!("unexpected datagram: {:?}", m.text);
    }
    portico.signal("TERM");
    let stopping = notify.next_event("STOPPING=1");
    assert_eq!(stopping.get("STOPPING"), Some("1"), "{:?}", stopping.text);
    assert_eq!(portico.wait_exit(WAIT).code(), Some(0));
    assert!(notify.drain().is_empty());
    assert_eq!(notify.pings, 0, "pinged for another process's watchdog");
}
