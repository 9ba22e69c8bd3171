//! Reloads of a large config (1,000 pools, 10,000 routes) while requests flow, on one runtime
//! thread: every request is answered, before, during and after each reload.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::http_backend::HttpBackend;
use crate::harness::{Portico, WAIT};

const HOSTS: usize = 1_000;
const PREFIXES: usize = 10;
const POOLS: usize = 1_000;
/// Client threads sending requests while Portico reloads.
const CLIENTS: usize = 4;
/// Requests every client must get answered after a reload before the next one starts.
const REQUESTS_BETWEEN_RELOADS: usize = 20;
const RELOADS: usize = 3;
/// Bound on one request's connect, write and read.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The reload bench's shape (benches/reload/gen-config.py): host `svc<i>.example.com` and prefix
/// `/api/v<j>/` go to pool `(i * 10 + j) % 1000`; every pool has both backends. `variant` 1 moves
/// one route to another pool and adds host `canary.example.com`, so each reload changes something.
fn config(backends: &[&HttpBackend], variant: usize) -> String {
    let servers: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    let servers = servers.join(", ");
    let mut c = String::from("[runtime]\nworker_threads = 1\n[log]\naccess_log = false\n");
    for p in 0..POOLS {
        c.push_str(&format!("[pools.pool-{p}]\nservers = [{servers}]\n"));
    }
    c.push_str("[listeners.web]\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n");
    for i in 0..HOSTS {
        for j in 0..PREFIXES {
            let mut pool = (i * PREFIXES + j) % POOLS;
            if variant == 1 && (i, j) == (HOSTS - 1, PREFIXES - 1) {
                pool = (pool + 1) % POOLS;
            }
            c.push_str(&format!(
                "[[listeners.web.routes]]\nhost = \"svc{i}.example.com\"\npath_prefix = \"/api/v{j}/\"\npool = \"pool-{pool}\"\n"
            ));
        }
    }
    if variant == 1 {
        c.push_str("[[listeners.web.routes]]\nhost = \"canary.example.com\"\npool = \"pool-0\"\n");
    }
    c
}

/// One keep-alive HTTP/1.1 GET on `s`; the status, or why there was none.
fn get(s: &mut BufReader<TcpStream>, host: &str, path: &str) -> Result<u16, String> {
    write!(s.get_mut(), "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    s.read_line(&mut line).map_err(|e| e.to_string())?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line: {line:?}"))?;
    let mut length = 0;
    loop {
        line.clear();
        s.read_line(&mut line).map_err(|e| e.to_string())?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().map_err(|_| format!("{line:?}"))?;
            }
        }
    }
    let mut body = vec![0; length];
    s.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(status)
}

fn connect(addr: SocketAddr) -> Result<BufReader<TcpStream>, String> {
    let s = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    Ok(BufReader::new(s))
}

/// Requests sent by the client threads: answered with 200, and anything else.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    first_failure: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        self.first_failure.lock().unwrap().get_or_insert(why);
    }

    /// Waits until `n` more requests than `from` were answered (or WAIT passes).
    fn wait_for(&self, from: usize, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.ok.load(Ordering::SeqCst) < from + n {
            assert!(Instant::now() < deadline, "requests stopped being answered");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn reloads_of_a_10000_route_config_answer_every_request_meanwhile() {
    let a = HttpBackend::start("a");
    let b = HttpBackend::start("b");
    let configs = [config(&[&a, &b], 0), config(&[&a, &b], 1)];
    let mut portico = Portico::start(&configs[0]);
    let web = portico.addr("web");

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, tally) = (Arc::clone(&stop), Arc::clone(&tally));
            std::thread::spawn(move || {
                // Half the clients keep their connection; the others open one per request, so
                // accepting is exercised during reloads too.
                let keep_alive = c % 2 == 0;
                let host = format!("svc{}.example.com", c * 250);
                let mut conn = None;
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let path = format!("/api/v{}/item/{i}", i % PREFIXES);
                    i += 1;
                    if conn.is_none() {
                        match connect(web) {
                            Ok(s) => conn = Some(s),
                            Err(e) => {
                                tally.fail(format!("connect: {e}"));
                                continue;
                            }
                        }
                    }
                    match get(conn.as_mut().unwrap(), &host, &path) {
                        Ok(200) => {
                            tally.ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(status) => tally.fail(format!("{host}{path}: status {status}")),
                        Err(e) => {
                            tally.fail(format!("{host}{path}: {e}"));
                            conn = None;
                        }
                    }
                    if !keep_alive {
                        conn = None;
                    }
                }
            })
        })
        .collect();

    tally.wait_for(0, CLIENTS * REQUESTS_BETWEEN_RELOADS);
    for r in 1..=RELOADS {
        let before = tally.ok.load(Ordering::SeqCst);
        let outcome = portico.reload(&configs[r % 2]);
        assert!(outcome.contains("reload applied"), "{outcome}");
        assert!(outcome.contains("took_ms="), "{outcome}");
        tally.wait_for(before, CLIENTS * REQUESTS_BETWEEN_RELOADS);
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client thread");
    }

    assert_eq!(
        tally.failed.load(Ordering::SeqCst),
        0,
        "first failure: {:?}",
        tally.first_failure.lock().unwrap()
    );
    // The last reload applied variant 1: its new route answers.
    let mut s = connect(web).expect("connect");
    assert_eq!(get(&mut s, "canary.example.com", "/"), Ok(200));
    assert!(a.requests() > 0 && b.requests() > 0);
}
