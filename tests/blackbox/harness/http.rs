//! A tiny blocking HTTP/1.1 client for the admin API: one request per connection
//! (`Connection: close`), every read and write bounded by a timeout, the body read by
//! `Content-Length`, chunked encoding or to EOF.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// Upper bound on connecting, and on each read or write, of one admin request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP response as the client saw it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names are lowercase.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics (showing the response) when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not a JSON body ({e}): {self:?}"))
    }

    /// Asserts the status and returns the JSON body.
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status: {self:?}");
        self.json()
    }
}

/// Sends one request and reads the whole response. A write error (the server may answer and
/// close before it read a large body) is tolerated as long as a response arrives.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    let mut s = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to the admin server {addr}: {e}"));
    s.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(HTTP_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();

    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body.unwrap_or_default());
    let write_error = s.write_all(&request).err();

    let mut raw = Vec::new();
    let read_error = s.read_to_end(&mut raw).err();
    parse_response(&raw).unwrap_or_else(|why| {
        panic!(
            "{method} {path}: no usable response ({why}); write error {write_error:?}, \
             read error {read_error:?}, got {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of the response head")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| format!("head not UTF-8: {e}"))?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty head")?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = find("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad content-length {len:?}"))?;
        rest.get(..len)
            .ok_or_else(|| format!("body cut short: {} of {len} bytes", rest.len()))?
            .to_vec()
    } else if find("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body: String::from_utf8(body).map_err(|e| format!("body not UTF-8: {e}"))?,
    })
}

/// Decodes a chunked body (chunk extensions and trailers are skipped).
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line cut short")?;
        let line = std::str::from_utf8(&rest[..line_end]).map_err(|e| e.to_string())?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("chunk cut short")?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("chunk end cut short")?;
    }
}

/// `Authorization: Bearer <token>`, or nothing.
fn auth(token: Option<&str>) -> Vec<(&'static str, String)> {
    token
        .map(|t| vec![("Authorization", format!("Bearer {t}"))])
        .unwrap_or_default()
}

fn with_auth<'a>(
    auth: &'a [(&'static str, String)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    auth.iter()
        .map(|(n, v)| (*n, v.as_str()))
        .chain(extra.iter().copied())
        .collect()
}

/// `GET path`, expecting 200 and a JSON body.
pub fn get_json(addr: SocketAddr, path: &str, token: Option<&str>) -> Value {
    let auth = auth(token);
    http(addr, "GET", path, &with_auth(&auth, &[]), None).expect(200)
}

/// `POST path` without a body (the admin API's actions); the response as it came.
pub fn post(addr: SocketAddr, path: &str, token: Option<&str>) -> Response {
    let auth = auth(token);
    http(addr, "POST", path, &with_auth(&auth, &[]), None)
}

/// `PUT path` with a JSON body; the response as it came.
pub fn put_json(addr: SocketAddr, path: &str, token: Option<&str>, body: &Value) -> Response {
    let auth = auth(token);
    let body = serde_json::to_vec(body).expect("encode JSON");
    let headers = with_auth(&auth, &[("Content-Type", "application/json")]);
    http(addr, "PUT", path, &headers, Some(&body))
}
