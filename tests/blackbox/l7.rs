//! The L7 data path through the real binary: http and https listeners driven by real clients
//! (curl over HTTP/1.1, HTTP/2 by ALPN and h2c, `openssl s_client`, raw sockets, a hyper
//! HTTP/2 client for a kept-alive connection across a reload), in front of test HTTP backends
//! that echo what they received (`harness::http_backend`).
//!
//! Needs `curl` (built with HTTP/2, as Debian's is) and `openssl` on PATH.

mod failures;
mod forwarding;
mod grpc;
mod hostile;
mod operations;
mod own_path;
mod routing;
mod streaming;
mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::harness::WAIT;
use crate::harness::http_backend::{Echoed, HttpBackend};
use crate::harness::real_clients::CurlResponse;

/// `[pools.NAME]` with `servers = [addrs...]` and any extra lines (`balance = ...`).
/// An HTTP/2 (prior knowledge) client connection to `addr`, on a runtime of its own that
/// drives the connection while the test blocks on requests.
fn h2_connect<B>(
    addr: SocketAddr,
) -> (
    tokio::runtime::Runtime,
    hyper::client::conn::http2::SendRequest<B>,
)
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sender = runtime.block_on(async {
        let tcp = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender
    });
    (runtime, sender)
}

/// A one-worker runtime for an in-test backend and its listener on 127.0.0.1:0; the backend
/// keeps the runtime, so dropping the backend stops it.
fn backend_runtime() -> (tokio::runtime::Runtime, tokio::net::TcpListener, SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    (runtime, listener, addr)
}

fn pool(name: &str, addrs: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!("[pools.{name}]\nservers = [{}]\n{extra}\n", list.join(", "))
}

/// One pool per backend, named like the backend.
fn pools_of(backends: &[&HttpBackend]) -> String {
    backends
        .iter()
        .map(|b| pool(&b.name, &[b.addr], ""))
        .collect()
}

/// Asserts a 200 from a test backend and returns what it echoed.
fn echoed(r: &CurlResponse) -> Echoed {
    assert_eq!(r.status, 200, "expected a backend's answer: {r:#?}");
    Echoed::parse(&r.body)
}

/// An HTTP/1.1 response read off a kept-alive connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    /// Names lowercase.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response head and, by its Content-Length, its body (none for 101). Leaves what
/// follows on the stream; the stream must have a read timeout (`harness::connect` sets one).
fn read_response(s: &mut TcpStream) -> RawResponse {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "response head cut short ({other:?}) after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut response = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if status != 101 {
        let len: usize = response
            .header("content-length")
            .unwrap_or_else(|| panic!("no content-length: {response:?}"))
            .parse()
            .unwrap();
        response.body = vec![0u8; len];
        s.read_exact(&mut response.body).unwrap();
    }
    response
}

/// Sends `GET path` with `Host: host` on a kept-alive connection and reads the answer.
fn keep_alive_get(s: &mut TcpStream, host: &str, path: &str) -> RawResponse {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    s.write_all(request.as_bytes()).unwrap();
    read_response(s)
}

/// One HTTP/2 connection (h2c, prior knowledge) with hyper's client, for what curl cannot do:
/// several requests on one connection with something in between, or a body that must not race
/// the answer (curl 7.88 reports a stream error when Portico answers 413 and resets the stream
/// with NO_ERROR while curl is still uploading, as RFC 9113 §8.1 allows).
struct H2Connection {
    runtime: tokio::runtime::Runtime,
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

impl H2Connection {
    fn open(addr: SocketAddr) -> H2Connection {
        let (runtime, sender) = h2_connect(addr);
        H2Connection { runtime, sender }
    }

    fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// GET `http://{authority}{path}`.
    fn get(&mut self, authority: &str, path: &str) -> RawResponse {
        self.request("GET", authority, path, Bytes::new())
    }

    /// `method http://{authority}{path}` with `body` (and its content-length).
    fn request(&mut self, method: &str, authority: &str, path: &str, body: Bytes) -> RawResponse {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{authority}{path}"))
            .header("content-length", body.len())
            .body(Full::new(body))
            .unwrap();
        let sender = &mut self.sender;
        self.runtime.block_on(async {
            tokio::time::timeout(WAIT, async {
                sender.ready().await.expect("connection still open");
                let response = sender.send_request(request).await.expect("response");
                let status = response.status().as_u16();
                let headers = response
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect();
                let body = response.into_body().collect().await.expect("body");
                RawResponse {
                    status,
                    headers,
                    body: body.to_bytes().to_vec(),
                }
            })
            .await
            .expect("HTTP/2 request timed out")
        })
    }
}
