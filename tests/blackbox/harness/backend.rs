//! Test backends on loopback: each greets with its name, then echoes (or records) what it gets.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::WAIT;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Write "<name>\n", then echo everything until EOF, then close.
    GreetEcho,
    /// Echo everything until EOF (no greeting), then close.
    Echo,
    /// Read until EOF, keep the bytes, then write "<name> got <n> bytes\n" and close: shows
    /// that a client's half-close reached the backend while the other direction stayed open.
    RecordThenReply,
    /// Read what arrives within a short time, keep it, write "<name>\n", then echo until EOF.
    RecordFirstThenGreet,
}

/// A running test backend. Dropping it stops accepting (the port is closed).
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl TestBackend {
    pub fn start(name: &str, behavior: Behavior) -> TestBackend {
        Self::start_on("127.0.0.1".parse().unwrap(), name, behavior)
    }

    pub fn start_on(ip: IpAddr, name: &str, behavior: Behavior) -> TestBackend {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind backend");
        Self::serve(listener, name, behavior)
    }

    /// One backend per cluster "node", all on one port (a NodePort): `nodes` are names and
    /// loopback addresses (`127.0.0.2`, `127.0.0.3`, ...; every 127.x address is loopback).
    pub fn start_nodes(nodes: &[(&str, IpAddr)], behavior: Behavior) -> Vec<TestBackend> {
        let ips: Vec<IpAddr> = nodes.iter().map(|&(_, ip)| ip).collect();
        bind_same_port(&ips)
            .into_iter()
            .zip(nodes)
            .map(|(listener, &(name, _))| Self::serve(listener, name, behavior))
            .collect()
    }

    /// Restarts a backend on a fixed address (after it was stopped).
    pub fn start_at(addr: SocketAddr, name: &str, behavior: Behavior) -> TestBackend {
        let listener = TcpListener::bind(addr).expect("rebind backend");
        Self::serve(listener, name, behavior)
    }

    fn serve(listener: TcpListener, name: &str, behavior: Behavior) -> TestBackend {
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (acc, rec, stp, nm) = (
            accepted.clone(),
            received.clone(),
            stop.clone(),
            name.to_owned(),
        );
        std::thread::spawn(move || {
            while !stp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        acc.fetch_add(1, Ordering::SeqCst);
                        let (rec, nm) = (rec.clone(), nm.clone());
                        std::thread::spawn(move || {
                            let _ = handle(stream, &nm, behavior, &rec);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        TestBackend {
            name: name.to_owned(),
            addr,
            accepted,
            received,
            stop,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The bytes each recorded connection received, in the order they finished recording.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The accept thread drops the listener within a few ms; wait so the port is closed.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Attempts at finding a port free on every address of [`bind_same_port`].
const SAME_PORT_ATTEMPTS: usize = 50;

/// Binds a listener on each of `ips`, all on one port the OS picks for the first: the same
/// NodePort (or healthCheckNodePort) on every "node". When a later address already has that
/// port taken by another socket, it starts over with a new port.
pub fn bind_same_port(ips: &[IpAddr]) -> Vec<TcpListener> {
    let (&first_ip, rest) = ips.split_first().expect("at least one address");
    for _ in 0..SAME_PORT_ATTEMPTS {
        let first = TcpListener::bind(SocketAddr::new(first_ip, 0)).expect("bind");
        let port = first.local_addr().unwrap().port();
        let mut all = vec![first];
        for &ip in rest {
            match TcpListener::bind(SocketAddr::new(ip, port)) {
                Ok(listener) => all.push(listener),
                Err(_) => break,
            }
        }
        if all.len() == ips.len() {
            return all;
        }
    }
    panic!("no port free on all of {ips:?} in {SAME_PORT_ATTEMPTS} attempts");
}

fn handle(
    mut s: TcpStream,
    name: &str,
    behavior: Behavior,
    received: &Mutex<Vec<Vec<u8>>>,
) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(WAIT))?;
    s.set_nodelay(true)?;
    match behavior {
        Behavior::GreetEcho => {
            s.write_all(format!("{name}\n").as_bytes())?;
            echo(&mut s)
        }
        Behavior::Echo => echo(&mut s),
        Behavior::RecordThenReply => {
            let mut all = Vec::new();
            s.read_to_end(&mut all)?;
            let n = all.len();
            received.lock().unwrap().push(all);
            s.write_all(format!("{name} got {n} bytes\n").as_bytes())?;
            s.shutdown(Shutdown::Write)
        }
        Behavior::RecordFirstThenGreet => {
            // Everything that arrives until the line goes quiet for a moment: a PROXY header
            // and the client's first bytes may come in one segment or in several.
            let mut first = Vec::new();
            let mut chunk = [0u8; 4096];
            s.set_read_timeout(Some(Duration::from_millis(300)))?;
            while first.len() < 64 * 1024 {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => first.extend_from_slice(&chunk[..n]),
                }
                s.set_read_timeout(Some(Duration::from_millis(150)))?;
            }
            received.lock().unwrap().push(first);
            s.set_read_timeout(Some(WAIT))?;
            s.write_all(format!("{name}\n").as_bytes())?;
            echo(&mut s)
        }
    }
}

fn echo(s: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return s.shutdown(Shutdown::Write);
        }
        s.write_all(&buf[..n])?;
    }
}
