//! A test HTTP/1.1 backend on loopback (std::net, one thread per connection): it answers with
//! its name and echoes the request line and headers it received, so a test can see what
//! Portico sent (X-Forwarded-*, hop-by-hop removal, Host). Knobs, changeable while a test runs:
//! a delay before answering, the status to answer, keep-alive on or off. A request asking for
//! `Upgrade: websocket` gets `101 Switching Protocols` and the connection then echoes raw bytes.
//!
//! The answer's body, parsed back by [`Echoed::parse`]:
//! ```text
//! NAME
//! GET /path?query HTTP/1.1
//! host: app.test
//! x-forwarded-for: 127.0.0.1
//!
//! body-bytes: 0
//! ```
//! Header lines are as received (names lowercased). Every answer also carries `X-Backend: NAME`
//! and a hop-by-hop header (`Connection: ..., x-backend-hop` + `X-Backend-Hop: secret`) that a
//! proxy must not pass on.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::WAIT;

/// A request head larger than this is refused (431) and the connection closed.
const MAX_HEAD: usize = 256 * 1024;
/// Read buffer of one connection.
const READ_BUF: usize = 16 * 1024;
/// How often the accept loop looks at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(2);

/// What a backend does, shared with its threads.
struct State {
    name: String,
    delay_ms: AtomicU64,
    status: AtomicU16,
    keep_alive: AtomicBool,
    /// Complete requests read (upgrades included).
    requests: AtomicUsize,
    connections: AtomicUsize,
    stop: AtomicBool,
}

/// Builds an [`HttpBackend`]: `HttpBackend::builder("slow").delay(Duration::from_secs(2)).start()`.
pub struct HttpBackendBuilder {
    name: String,
    delay: Duration,
    status: u16,
    keep_alive: bool,
}

impl HttpBackendBuilder {
    /// Waits this long after reading a request before answering it.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Answers with this status (default 200).
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Keeps connections open between requests (default true); false answers
    /// `Connection: close` and closes after each answer.
    pub fn keep_alive(mut self, on: bool) -> Self {
        self.keep_alive = on;
        self
    }

    pub fn start(self) -> HttpBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind http backend");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(State {
            name: self.name.clone(),
            delay_ms: AtomicU64::new(u64::try_from(self.delay.as_millis()).unwrap()),
            status: AtomicU16::new(self.status),
            keep_alive: AtomicBool::new(self.keep_alive),
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let accept_state = Arc::clone(&state);
        std::thread::spawn(move || {
            while !accept_state.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accept_state.connections.fetch_add(1, Ordering::SeqCst);
                        let state = Arc::clone(&accept_state);
                        std::thread::spawn(move || {
                            let _ = serve_connection(stream, &state);
                        });
                    }
                    Err(_) => std::thread::sleep(ACCEPT_POLL),
                }
            }
        });
        HttpBackend {
            name: self.name,
            addr,
            state,
        }
    }
}

/// A running test HTTP backend. Dropping it stops accepting (the port is closed).
pub struct HttpBackend {
    pub name: String,
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl HttpBackend {
    /// A backend answering 200 at once, with keep-alive.
    pub fn start(name: &str) -> HttpBackend {
        Self::builder(name).start()
    }

    pub fn builder(name: &str) -> HttpBackendBuilder {
        HttpBackendBuilder {
            name: name.to_owned(),
            delay: Duration::ZERO,
            status: 200,
            keep_alive: true,
        }
    }

    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap();
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Complete requests received so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
    }
}

/// A loopback port where nothing listens and nothing will while it lives: the socket is bound
/// but never listens, so a connect is refused at once (and no other test can take the port).
pub struct DeadPort {
    socket: socket2::Socket,
    pub addr: SocketAddr,
}

impl DeadPort {
    pub fn new() -> DeadPort {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&any.into()).expect("bind");
        let addr = socket
            .local_addr()
            .unwrap()
            .as_socket()
            .expect("inet address");
        DeadPort { socket, addr }
    }

    /// Starts listening: connects now succeed (the kernel completes them; nothing accepts),
    /// which is all a tcp health check asks.
    pub fn start_listening(&self) {
        self.socket.listen(128).expect("listen");
    }
}

/// One request as the backend read it.
struct Request {
    request_line: String,
    /// (lowercase name, value) in the order received.
    headers: Vec<(String, String)>,
    body_len: usize,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn connection_has(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn is_websocket_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
            && self.connection_has("upgrade")
    }
}

fn serve_connection(mut s: TcpStream, state: &State) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(WAIT))?;
    s.set_write_timeout(Some(WAIT))?;
    s.set_nodelay(true)?;
    // Bytes read past the end of the previous request (pipelining, or a body read ahead).
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let Some(req) = read_request(&mut s, &mut pending)? else {
            return Ok(());
        };
        state.requests.fetch_add(1, Ordering::SeqCst);
        if req.is_websocket_upgrade() {
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 X-Backend: {}\r\n\r\n",
                state.name
            );
            s.write_all(head.as_bytes())?;
            s.write_all(&pending)?;
            return echo(&mut s);
        }
        let delay = state.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let status = state.status.load(Ordering::SeqCst);
        let keep_alive = state.keep_alive.load(Ordering::SeqCst) && !req.connection_has("close");
        let mut body = format!("{}\n{}\n", state.name, req.request_line);
        for (name, value) in &req.headers {
            body.push_str(&format!("{name}: {value}\n"));
        }
        body.push_str(&format!("\nbody-bytes: {}\n", req.body_len));
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             X-Backend: {}\r\nConnection: {}, x-backend-hop\r\nX-Backend-Hop: secret\r\n\r\n",
            reason(status),
            body.len(),
            state.name,
            if keep_alive { "keep-alive" } else { "close" },
        );
        let mut answer = head.into_bytes();
        if !req.request_line.starts_with("HEAD ") {
            answer.extend_from_slice(body.as_bytes());
        }
        s.write_all(&answer)?;
        if !keep_alive {
            return s.shutdown(Shutdown::Write);
        }
    }
}

/// Reads one request (head and body); None at a clean EOF before it.
fn read_request(s: &mut TcpStream, pending: &mut Vec<u8>) -> std::io::Result<Option<Request>> {
    let mut buf = vec![0u8; READ_BUF];
    let head_end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if pending.len() > MAX_HEAD {
            s.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")?;
            return Ok(None);
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
    pending.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut req = Request {
        request_line,
        headers,
        body_len: 0,
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        req.body_len = read_chunked(s, pending)?;
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len.parse().unwrap_or(0);
        while pending.len() < len {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            pending.extend_from_slice(&buf[..n]);
        }
        pending.drain(..len);
        req.body_len = len;
    }
    Ok(Some(req))
}

/// Reads a chunked body (extensions and trailers skipped); returns its decoded length.
fn read_chunked(s: &mut TcpStream, pending: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let line = read_crlf_line(s, pending)?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_crlf_line(s, pending)?.is_empty() {}
            return Ok(total);
        }
        fill(s, pending, size + 2)?;
        pending.drain(..size + 2);
        total += size;
    }
}

fn read_crlf_line(s: &mut TcpStream, pending: &mut Vec<u8>) -> std::io::Result<String> {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        if let Some(i) = pending.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&pending[..i]).into_owned();
            pending.drain(..i + 2);
            return Ok(line);
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

fn fill(s: &mut TcpStream, pending: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    let mut buf = vec![0u8; READ_BUF];
    while pending.len() < len {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        pending.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

fn echo(s: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return s.shutdown(Shutdown::Write);
        }
        s.write_all(&buf[..n])?;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        404 => "Not Found",
        418 => "I'm a teapot",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// What a backend echoed: the answer's body parsed back.
#[derive(Debug, Clone)]
pub struct Echoed {
    /// The name of the backend that answered.
    pub backend: String,
    /// `GET /path HTTP/1.1`, as the backend received it.
    pub request_line: String,
    /// (lowercase name, value), as received.
    pub headers: Vec<(String, String)>,
    pub body_bytes: usize,
}

impl Echoed {
    /// Parses an answer's body; panics (showing it) when it is not one of ours.
    pub fn parse(body: &str) -> Echoed {
        Self::try_parse(body).unwrap_or_else(|| panic!("not an echo from a test backend: {body:?}"))
    }

    fn try_parse(body: &str) -> Option<Echoed> {
        let (head, tail) = body.split_once("\n\n")?;
        let mut lines = head.lines();
        let backend = lines.next()?.to_owned();
        let request_line = lines.next()?.to_owned();
        let headers = lines
            .map(|l| {
                l.split_once(": ")
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
            })
            .collect::<Option<Vec<_>>>()?;
        let body_bytes = tail.trim().strip_prefix("body-bytes: ")?.parse().ok()?;
        Some(Echoed {
            backend,
            request_line,
            headers,
            body_bytes,
        })
    }

    /// The single value of header `name` (lowercase); panics when it comes more than once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} came {} times: {self:#?}", all.len());
        all.first().copied()
    }

    /// Every value of header `name` (lowercase), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}
