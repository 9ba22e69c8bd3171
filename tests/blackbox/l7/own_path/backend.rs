//! The scripted backend of the own-path tests: raw HTTP/1.1 answers by path, in the field
//! case servers use, and a record of every request it read.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::client::{MAX_HEAD, parse_fields};
use crate::harness::WAIT;

/// How often the backend's accept loop looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(2);
/// How long the backend holds a `/hold` request unanswered, waiting for Portico to close the
/// connection: well past [`WAIT`], so a request Portico never cancels outlives the test's wait.
const HOLD: Duration = Duration::from_secs(90);
/// The `Date` the backend sends on `/dated` (RFC 9110's example): not today, so a replaced one
/// shows.
pub(super) const BACKEND_DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
/// The chunks of `/chunked`, written in two goes.
pub(super) const CHUNKS: [&str; 4] = ["hello", ", ", "chunked ", "world"];
/// The body length of `/lag/large`: more than Portico copies behind a head.
pub(super) const LAG_LARGE: usize = 100_000;
/// The whole answer of `/http10` (the backend closes the connection after it).
const HTTP10_ANSWER: &str = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close\n";
/// What `/304` says its representation's length is (RFC 9110 §8.6 allows it on a 304).
const NOT_MODIFIED_LENGTH: &str = "17";

/// One request as the backend read it.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub method: String,
    pub target: String,
    /// (lowercase name, trimmed value) in the order they came.
    pub fields: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct BackendState {
    seen: Mutex<Vec<Seen>>,
    /// `/hold` requests read (never answered).
    holding: AtomicUsize,
    /// `/hold` connections that Portico closed while the request waited.
    released: AtomicUsize,
    /// `/gate` requests read (answered once the gate opens).
    gated: AtomicUsize,
    gate_open: AtomicBool,
    /// `/lag/...` answers whose first piece was written (the rest waits for the gate).
    lagging: AtomicUsize,
    stop: AtomicBool,
}

/// A test backend (std::net, one thread per connection, keep-alive) answering by path:
///
/// - `/echo`: 200, the request's body back (with its `Content-Length`);
/// - `/chunked`: 200, [`CHUNKS`] as a chunked body (no length), written in two goes;
/// - `/204`, `/304`: no body (the 304 with `Content-Length: 17`, as RFC 9110 §8.6 allows);
/// - `/dated`: 200 with its own `Date: BACKEND_DATE`;
/// - `/hold`: no answer; waits (up to [`HOLD`]) for Portico to close the connection;
/// - `/gate`: the default answer, once the test opens the gate ([`Self::open_gate`]);
/// - `/lag/small` (a 100-byte body), `/lag/large` ([`LAG_LARGE`] bytes), `/lag/chunked`
///   (as `/chunked`): the head (for chunked, with the first two chunks) at once, the rest
///   once the gate opens;
/// - `/trailers`: a chunked body with an announced trailer field (`X-Sum`) and another;
/// - `/http10`: an HTTP/1.0 answer delimited by the close of the connection;
/// - `/empty`, `/empty-chunked`, `/cookies`, `/two-lengths`, `/interim` (a 103 first),
///   `/reason` (299 with a reason of its own): odd but valid answers;
/// - anything else: 200, `answer to TARGET\n` with its `Content-Length`, no `Date`.
///
/// A HEAD gets the head a GET would get, and no body.
pub(super) struct ScriptedBackend {
    pub addr: SocketAddr,
    state: Arc<BackendState>,
}

impl ScriptedBackend {
    pub(super) fn start() -> ScriptedBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(BackendState::default());
        let accept_state = Arc::clone(&state);
        std::thread::spawn(move || {
            while !accept_state.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let state = Arc::clone(&accept_state);
                        std::thread::spawn(move || {
                            let _ = serve_backend_connection(stream, &state);
                        });
                    }
                    Err(_) => std::thread::sleep(ACCEPT_POLL),
                }
            }
        });
        ScriptedBackend { addr, state }
    }

    /// Every request read so far, in order.
    pub(super) fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The requests read so far for `target`.
    pub(super) fn seen_for(&self, target: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.target == target)
            .collect()
    }

    pub(super) fn holding(&self) -> usize {
        self.state.holding.load(Ordering::SeqCst)
    }

    pub(super) fn released(&self) -> usize {
        self.state.released.load(Ordering::SeqCst)
    }

    pub(super) fn gated(&self) -> usize {
        self.state.gated.load(Ordering::SeqCst)
    }

    /// Lets the `/gate` requests (waiting and future) be answered.
    pub(super) fn open_gate(&self) {
        self.state.gate_open.store(true, Ordering::SeqCst);
    }

    /// Holds the next `/gate` and `/lag/...` answers back again.
    pub(super) fn close_gate(&self) {
        self.state.gate_open.store(false, Ordering::SeqCst);
    }

    pub(super) fn lagging(&self) -> usize {
        self.state.lagging.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_backend_connection(mut s: TcpStream, state: &BackendState) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(WAIT))?;
    s.set_write_timeout(Some(WAIT))?;
    s.set_nodelay(true)?;
    // Bytes read past the end of the previous request.
    let mut pending = Vec::new();
    loop {
        let Some(req) = read_backend_request(&mut s, &mut pending)? else {
            return Ok(());
        };
        state.seen.lock().unwrap().push(req.clone());
        if req.target == "/hold" {
            state.holding.fetch_add(1, Ordering::SeqCst);
            s.set_read_timeout(Some(HOLD))?;
            let mut byte = [0u8; 1];
            let closed = match s.read(&mut byte) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            };
            if closed {
                state.released.fetch_add(1, Ordering::SeqCst);
            }
            return Ok(());
        }
        if req.target == "/gate" {
            state.gated.fetch_add(1, Ordering::SeqCst);
            wait_for_gate(state);
        }
        for (i, part) in scripted_answer(&req).iter().enumerate() {
            if i == 1 && req.target.starts_with("/lag/") {
                state.lagging.fetch_add(1, Ordering::SeqCst);
                wait_for_gate(state);
            }
            s.write_all(part)?;
        }
        if req.target == "/http10" {
            return Ok(());
        }
    }
}

/// Until the test opens the gate (at most [`WAIT`]).
fn wait_for_gate(state: &BackendState) {
    let deadline = std::time::Instant::now() + WAIT;
    while !state.gate_open.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
        std::thread::sleep(ACCEPT_POLL);
    }
}

/// The answer to `req`, in the pieces it is written in.
fn scripted_answer(req: &Seen) -> Vec<Vec<u8>> {
    let head_only = req.method == "HEAD";
    let with_length = |status: &str, extra: &str, body: &[u8]| {
        let mut answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}\
             Connection: keep-alive\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if !head_only {
            answer.extend_from_slice(body);
        }
        vec![answer]
    };
    match req.target.as_str() {
        "/echo" => with_length("200 OK", "", &req.body),
        "/dated" => with_length(
            "200 OK",
            &format!("Date: {BACKEND_DATE}\r\n"),
            b"dated answer\n",
        ),
        "/204" => vec![b"HTTP/1.1 204 No Content\r\nX-Answer: 204\r\n\r\n".to_vec()],
        "/304" => vec![
            format!(
                "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: \
                 {NOT_MODIFIED_LENGTH}\r\nX-Answer: 304\r\n\r\n"
            )
            .into_bytes(),
        ],
        "/lag/small" | "/lag/large" if !head_only => {
            let length = if req.target == "/lag/small" {
                100
            } else {
                LAG_LARGE
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {length}\r\n\r\n"
            );
            vec![head.into_bytes(), vec![b'b'; length]]
        }
        "/chunked" | "/lag/chunked" => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                        Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n";
            if head_only {
                return vec![head.as_bytes().to_vec()];
            }
            let chunk = |c: &str| format!("{:x}\r\n{c}\r\n", c.len());
            let first = format!("{head}{}{}", chunk(CHUNKS[0]), chunk(CHUNKS[1]));
            let rest = format!("{}{}0\r\n\r\n", chunk(CHUNKS[2]), chunk(CHUNKS[3]));
            vec![first.into_bytes(), rest.into_bytes()]
        }
        "/empty" => with_length("200 OK", "", b""),
        "/empty-chunked" => {
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec()]
        }
        "/cookies" => with_length(
            "200 OK",
            "Set-Cookie: a=1\r\nVary: Accept\r\nSet-Cookie: b=2\r\nVary: Origin\r\n",
            b"cookies\n",
        ),
        "/two-lengths" => {
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd".to_vec()]
        }
        "/interim" => vec![
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ninterim\n".to_vec(),
        ],
        "/trailers" => vec![
            b"HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n\
              4\r\nabcd\r\n0\r\nX-Sum: 42\r\nX-Other: no\r\n\r\n"
                .to_vec(),
        ],
        "/reason" => vec![b"HTTP/1.1 299 Fine Thanks\r\nContent-Length: 2\r\n\r\nok".to_vec()],
        "/http10" => vec![HTTP10_ANSWER.as_bytes().to_vec()],
        target => with_length("200 OK", "", default_body(target).as_bytes()),
    }
}

/// What the backend answers to a GET of `target` without a script of its own.
pub(super) fn default_body(target: &str) -> String {
    format!("answer to {target}\n")
}

/// Reads one request (head and body); None at a clean EOF before it.
fn read_backend_request(s: &mut TcpStream, pending: &mut Vec<u8>) -> std::io::Result<Option<Seen>> {
    let head_end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if pending.len() > MAX_HEAD || !fill(s, pending)? {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
    pending.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let target = request_line.next().unwrap_or_default().to_owned();
    let headers = parse_fields(lines);
    let field = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if field("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        loop {
            let line = take_line(s, pending)?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                while !take_line(s, pending)?.is_empty() {}
                break;
            }
            while pending.len() < size + 2 {
                if !fill(s, pending)? {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            body.extend_from_slice(&pending[..size]);
            pending.drain(..size + 2);
        }
    } else if let Some(len) = field("content-length") {
        let len: usize = len.parse().map_err(std::io::Error::other)?;
        while pending.len() < len {
            if !fill(s, pending)? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        body = pending.drain(..len).collect();
    }
    Ok(Some(Seen {
        method,
        target,
        fields: headers,
        body,
    }))
}

/// Reads what is there into `pending`: false at EOF.
fn fill(s: &mut TcpStream, pending: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut buf = [0u8; 16 * 1024];
    let n = s.read(&mut buf)?;
    pending.extend_from_slice(&buf[..n]);
    Ok(n > 0)
}

/// Takes one CRLF-ended line off `pending`, reading more as needed.
fn take_line(s: &mut TcpStream, pending: &mut Vec<u8>) -> std::io::Result<String> {
    loop {
        if let Some(i) = pending.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&pending[..i]).into_owned();
            pending.drain(..i + 2);
            return Ok(line);
        }
        if pending.len() > MAX_HEAD || !fill(s, pending)? {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}
