//! The scripted raw-TCP backends and raw-TCP clients of the wire tests: a backend runs a
//! script per accepted connection and logs each request with the connection that carried it;
//! a client writes exact bytes and reads responses framed by content-length, chunked or close.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::super::{WAIT, listener_in_front_of, settings};
use crate::upstream::Upstream;

/// Pause between the pieces of a scripted answer, so that each leaves in a segment of its own.
const PIECE_GAP: Duration = Duration::from_millis(5);
/// Read size of the scripted backends and clients.
const READ_CHUNK: usize = 16 * 1024;

/// One request as a scripted backend received it.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    /// The connection that carried it: 1 for the first the backend accepted.
    pub(super) conn: usize,
    /// Request line and fields, up to (not including) the blank line.
    pub(super) head: String,
    /// The body, de-chunked if it came chunked.
    pub(super) body: Vec<u8>,
}

impl Seen {
    pub(super) fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    pub(super) fn header(&self, name: &str) -> Option<String> {
        header(&self.head, name)
    }
}

/// The value of the first `name` field of `head` (the first line is skipped).
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A loopback backend that runs `script` on every connection it accepts.
pub(super) struct Scripted {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    pub(super) async fn start<F, Fut>(script: F) -> Self
    where
        F: Fn(BackendConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (count, log) = (Arc::clone(&accepted), Arc::clone(&seen));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = count.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = stream.set_nodelay(true);
                tokio::spawn(script(BackendConn {
                    stream,
                    buf: Vec::new(),
                    conn,
                    seen: Arc::clone(&log),
                }));
            }
        });
        Self {
            addr,
            accepted,
            seen,
        }
    }

    pub(super) fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub(super) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// For each request received so far, the connection that carried it.
    pub(super) fn conns_used(&self) -> Vec<usize> {
        self.seen().iter().map(|s| s.conn).collect()
    }

    /// A listener (route retries = 1) in front of this backend, with a pool of 8 idle
    /// connections.
    pub(super) async fn behind_listener(&self) -> SocketAddr {
        let upstream = Upstream::new(settings(8, Duration::from_secs(30)));
        listener_in_front_of(self.addr, Arc::new(upstream)).await
    }
}

/// The backend's side of one connection, for a script.
pub(super) struct BackendConn {
    stream: TcpStream,
    /// Received and not consumed yet.
    buf: Vec<u8>,
    pub(super) conn: usize,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl BackendConn {
    /// Reads more into `buf`; false on close, error or timeout.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; READ_CHUNK];
        match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// The next CRLF-terminated line, without its CRLF.
    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..at + 2).collect();
                return Some(line[..at].to_vec());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    async fn read_head(&mut self) -> Option<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return Some(String::from_utf8_lossy(&head[..end]).into_owned());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The body that follows `head`, per its framing (de-chunked).
    async fn read_body(&mut self, head: &str) -> Option<Vec<u8>> {
        let chunked = header(head, "transfer-encoding").is_some_and(|te| te == "chunked");
        if !chunked {
            let length = match header(head, "content-length") {
                Some(v) => v.parse().ok()?,
                None => 0,
            };
            return self.take(length).await;
        }
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let line = String::from_utf8(line).ok()?;
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                break;
            }
            body.extend(self.take(size).await?);
            if self.take(2).await? != b"\r\n" {
                return None;
            }
        }
        // Trailer fields, up to the blank line.
        while !self.line().await?.is_empty() {}
        Some(body)
    }

    fn record(&self, head: String, body: Vec<u8>) -> Seen {
        let seen = Seen {
            conn: self.conn,
            head,
            body,
        };
        self.seen.lock().unwrap().push(seen.clone());
        seen
    }

    /// Reads and logs the next request, head and body; None when the connection ends first.
    pub(super) async fn request(&mut self) -> Option<Seen> {
        let head = self.read_head().await?;
        let body = self.read_body(&head).await?;
        Some(self.record(head, body))
    }

    /// Reads and logs the next request head, leaving its body unread.
    pub(super) async fn request_head(&mut self) -> Option<Seen> {
        let head = self.read_head().await?;
        Some(self.record(head, Vec::new()))
    }

    /// Writes `pieces` one after another, a short pause between them; stops at an error.
    pub(super) async fn send(&mut self, pieces: &[&[u8]]) {
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(PIECE_GAP).await;
            }
            if self.stream.write_all(piece).await.is_err() {
                return;
            }
        }
    }

    /// Reads and discards until the peer closes (or `WAIT` passes without a byte).
    pub(super) async fn until_closed(&mut self) {
        while self.fill().await {
            self.buf.clear();
        }
    }
}

/// A response as the client received it.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    /// Status line and fields, up to (not including) the blank line.
    pub(super) head: String,
    /// De-chunked if it came chunked.
    pub(super) body: Vec<u8>,
}

impl Response {
    pub(super) fn header(&self, name: &str) -> Option<String> {
        header(&self.head, name)
    }
}

/// A response that did not arrive whole.
#[derive(Debug)]
pub(super) struct Cut {
    /// "closed", "reset" or "timed out".
    pub(super) how: String,
    /// What arrived of it.
    pub(super) received: Vec<u8>,
}

/// A raw HTTP/1.1 client connection to the listener.
pub(super) struct Client {
    pub(super) stream: TcpStream,
    /// Received past the last response read.
    pub(super) buf: Vec<u8>,
}

impl Client {
    pub(super) async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub(super) async fn send(&mut self, request: &[u8]) {
        self.stream.write_all(request).await.unwrap();
    }

    /// Reads the next response; `to_head`: it answers a HEAD (no body whatever it says).
    pub(super) async fn response(&mut self, to_head: bool) -> Result<Response, Cut> {
        read_response(&mut self.stream, &mut self.buf, to_head).await
    }

    /// `GET path` and its whole response.
    pub(super) async fn get(&mut self, path: &str) -> Response {
        let request = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n");
        self.send(request.as_bytes()).await;
        self.response(false).await.expect("a whole response")
    }
}

/// Reads one response from `reader` (content-length, chunked or close-delimited), `buf`
/// holding what was received before; leaves in `buf` whatever follows the response.
pub(super) async fn read_response<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    to_head: bool,
) -> Result<Response, Cut> {
    let mut closed = false;
    loop {
        if let Some((response, used)) = parse_response(buf, to_head, closed) {
            buf.drain(..used);
            return Ok(response);
        }
        let how = if closed {
            "closed"
        } else {
            let mut chunk = [0u8; READ_CHUNK];
            match tokio::time::timeout(WAIT, reader.read(&mut chunk)).await {
                Ok(Ok(0)) => {
                    closed = true;
                    continue;
                }
                Ok(Ok(n)) => {
                    buf.extend_from_slice(&chunk[..n]);
                    continue;
                }
                Ok(Err(_)) => "reset",
                Err(_) => "timed out",
            }
        };
        return Err(Cut {
            how: how.to_owned(),
            received: std::mem::take(buf),
        });
    }
}

/// A whole response at the start of `buf` and its length in bytes; None if more is needed.
/// `closed`: nothing more will come (the end of a close-delimited body).
fn parse_response(buf: &[u8], to_head: bool, closed: bool) -> Option<(Response, usize)> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let rest = &buf[end + 4..];
    let no_body = to_head || (100..200).contains(&status) || status == 204 || status == 304;
    let (body, used) = if no_body {
        (Vec::new(), 0)
    } else if header(&head, "transfer-encoding").is_some_and(|te| te == "chunked") {
        decode_chunked(rest)?
    } else if let Some(length) = header(&head, "content-length") {
        let length: usize = length.parse().ok()?;
        (rest.get(..length)?.to_vec(), length)
    } else if closed {
        (rest.to_vec(), rest.len())
    } else {
        return None;
    };
    Some((Response { status, head, body }, end + 4 + used))
}

/// A whole chunked body at the start of `rest`, de-chunked, and its length on the wire.
fn decode_chunked(mut rest: &[u8]) -> Option<(Vec<u8>, usize)> {
    let total = rest.len();
    let mut body = Vec::new();
    loop {
        let at = find(rest, b"\r\n")?;
        let line = std::str::from_utf8(&rest[..at]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[at + 2..];
        if size == 0 {
            // Trailer fields, up to the blank line.
            loop {
                let at = find(rest, b"\r\n")?;
                rest = &rest[at + 2..];
                if at == 0 {
                    return Some((body, total - rest.len()));
                }
            }
        }
        let data = rest.get(..size + 2)?;
        assert_eq!(&data[size..], b"\r\n", "chunk data ends with CRLF");
        body.extend_from_slice(&data[..size]);
        rest = &rest[size + 2..];
    }
}
