//! The client side of the own-path tests: connections served by either server, and
//! responses read as a strict HTTP/1.1 client reads them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::backend::{BACKEND_DATE, default_body};
use crate::harness::http::get_json;
use crate::harness::{Portico, WAIT, connect};

/// A request or response head (or a chunk-size or trailer line) longer than this is a bug.
pub(super) const MAX_HEAD: usize = 64 * 1024;

/// Which server code answers a connection's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Server {
    /// Portico's own HTTP/1.1 path: a fresh connection, requests without a body or with a small
    /// one sent with the head.
    Own,
    /// hyper: the connection's first request carried a chunked body (an empty one), which
    /// handed the connection over for good.
    Hyper,
}

pub(super) const BOTH: [Server; 2] = [Server::Own, Server::Hyper];

/// A connection to `addr` whose next requests `server` answers.
pub(super) fn open(addr: SocketAddr, server: Server) -> TcpStream {
    let mut s = connect(addr);
    if server == Server::Hyper {
        s.write_all(
            b"GET /handover HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n\
              0\r\n\r\n",
        )
        .unwrap();
        let r = read_answer(&mut s, "GET");
        assert_eq!(r.status, 200, "the handover request: {r:#?}");
        assert_eq!(r.text(), default_body("/handover"));
    }
    s
}

/// A response as a strict HTTP/1.1 client reads it.
pub(super) struct Answer {
    pub status_line: String,
    pub status: u16,
    /// (lowercase name, value), in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// How the body was delimited: "none", "length", "chunked" or "close".
    pub framing: &'static str,
    /// The trailer lines of a chunked body, as received.
    pub trailers: Vec<String>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("status_line", &self.status_line)
            .field("headers", &self.headers)
            .field("framing", &self.framing)
            .field("body", &self.text())
            .field("trailers", &self.trailers)
            .finish()
    }
}

impl Answer {
    pub(super) fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single value of `name`; fails the test when it came more than once.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} came {} times: {self:#?}", all.len());
        all.first().copied()
    }

    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether `connection` lists `token`.
    pub(super) fn connection_has(&self, token: &str) -> bool {
        self.all("connection")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Reads one CRLF-ended line off the stream, a byte at a time (nothing past it is consumed).
fn read_crlf_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        assert!(line.len() < MAX_HEAD, "line too long: {line:?}");
        match s.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            other => panic!(
                "line cut short ({other:?}) after {:?}",
                String::from_utf8_lossy(&line)
            ),
        }
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).expect("a UTF-8 line")
}

/// Reads one response to a `method` request, framed as RFC 9112 §6.3 says, and nothing past
/// it: the stream is left at the next response.
pub(super) fn read_answer(s: &mut TcpStream, method: &str) -> Answer {
    let status_line = read_crlf_line(s);
    let status: u16 = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut lines = Vec::new();
    loop {
        let line = read_crlf_line(s);
        if line.is_empty() {
            break;
        }
        assert!(lines.len() < 200, "too many header lines: {lines:?}");
        lines.push(line);
    }
    let mut answer = Answer {
        status_line,
        status,
        headers: parse_fields(lines.iter().map(String::as_str)),
        body: Vec::new(),
        framing: "none",
        trailers: Vec::new(),
    };
    let lengths = answer.all("content-length").len();
    let encodings = answer.all("transfer-encoding").len();
    assert!(lengths <= 1, "content-length more than once: {answer:#?}");
    assert!(
        lengths == 0 || encodings == 0,
        "content-length and transfer-encoding together: {answer:#?}"
    );
    if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
        return answer;
    }
    if encodings > 0 {
        let te = answer.all("transfer-encoding").join(",");
        assert!(
            te.trim().eq_ignore_ascii_case("chunked"),
            "unexpected transfer-encoding {te:?}"
        );
        answer.framing = "chunked";
        for _ in 0..MAX_HEAD {
            let line = read_crlf_line(s);
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}: {answer:#?}"));
            if size == 0 {
                // Trailers, up to the empty line.
                for _ in 0..200 {
                    let line = read_crlf_line(s);
                    if line.is_empty() {
                        return answer;
                    }
                    answer.trailers.push(line);
                }
                panic!("a trailer section that does not end: {answer:#?}");
            }
            let mut chunk = vec![0u8; size + 2];
            s.read_exact(&mut chunk).unwrap();
            assert!(
                chunk.ends_with(b"\r\n"),
                "chunk not ended by CRLF: {chunk:?}"
            );
            answer.body.extend_from_slice(&chunk[..size]);
        }
        panic!("a chunked body that does not end: {answer:#?}");
    }
    if let Some(len) = answer.header("content-length") {
        let len: usize = len
            .parse()
            .unwrap_or_else(|_| panic!("bad content-length: {answer:#?}"));
        answer.framing = "length";
        answer.body = vec![0u8; len];
        s.read_exact(&mut answer.body).unwrap();
        return answer;
    }
    answer.framing = "close";
    s.read_to_end(&mut answer.body).unwrap();
    answer
}

/// Sends `GET target` (Host: app.test) and reads its answer.
pub(super) fn get(s: &mut TcpStream, target: &str) -> Answer {
    request(s, "GET", target, "")
}

/// Sends a bodyless `method target` request with `extra` header lines (each ending in CRLF),
/// and reads its answer.
pub(super) fn request(s: &mut TcpStream, method: &str, target: &str, extra: &str) -> Answer {
    let head = format!("{method} {target} HTTP/1.1\r\nHost: app.test\r\n{extra}\r\n");
    s.write_all(head.as_bytes()).unwrap();
    read_answer(s, method)
}

/// Asserts a 200 from the backend with its default body for `target`.
pub(super) fn assert_default(r: &Answer, target: &str, what: &str) {
    assert_eq!(r.status, 200, "{what}: {r:#?}");
    assert_eq!(r.text(), default_body(target), "{what}: {r:#?}");
}

/// Asserts that the peer closed `s` (EOF, or a reset) and sent nothing more before that.
pub(super) fn assert_closed(s: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "{what}: {n} more bytes instead of a close: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: the connection was not closed within {WAIT:?}: {e}"),
    }
}

/// The `active_connections` the admin API reports for the backend at `addr` (in-flight
/// requests, for an HTTP pool).
pub(super) fn backend_active(portico: &Portico, addr: SocketAddr) -> u64 {
    let status = get_json(portico.admin_addr(), "/api/v1/status", None);
    let address = addr.to_string();
    let backend = status["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .flat_map(|p| p["backends"].as_array().cloned().unwrap_or_default())
        .find(|b| b["address"] == address.as_str())
        .unwrap_or_else(|| panic!("no backend {address} in {status:#}"));
    backend["active_connections"]
        .as_u64()
        .unwrap_or_else(|| panic!("no active_connections: {backend:#}"))
}

/// The masked head of an answer, to compare two: the status line and the fields (lowercase
/// names, sorted by name), a generated `date` value masked.
pub(super) fn masked_head(r: &Answer) -> (String, Vec<(String, String)>) {
    let mut fields: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(n, v)| {
            let v = if n == "date" && v != BACKEND_DATE {
                String::from("<now>")
            } else {
                v.clone()
            };
            (n.clone(), v)
        })
        .collect();
    // By name only: the values of one name keep their order (it means something).
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    (r.status_line.clone(), fields)
}

/// `Name: value` lines as (lowercase name, trimmed value).
pub(super) fn parse_fields<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}
