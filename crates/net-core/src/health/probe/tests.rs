use std::net::IpAddr;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;

/// The timeout of every probe that is expected to finish on its own.
const QUICK: Duration = Duration::from_secs(1);
/// The most a test server reads of the probe's request.
const MAX_TEST_REQUEST: usize = 8 * 1024;

/// A one-connection backend playing one scripted answer, so a test reads like its scenario.
struct Backend {
    reply: Vec<u8>,
    piece: usize,
    read_request: bool,
    hold_open: bool,
}

impl Backend {
    /// Reads the request, writes `reply` in one go and closes.
    fn replying(reply: impl AsRef<[u8]>) -> Self {
        Self {
            reply: reply.as_ref().to_vec(),
            piece: usize::MAX,
            read_request: true,
            hold_open: false,
        }
    }

    /// Reads the request and never answers.
    fn silent() -> Self {
        Self::replying("").holding_open()
    }

    /// Writes the reply `size` bytes at a time, yielding between writes.
    fn in_pieces(mut self, size: usize) -> Self {
        self.piece = size;
        self
    }

    /// After replying, keeps the connection open until the prober closes it.
    fn holding_open(mut self) -> Self {
        self.hold_open = true;
        self
    }

    /// Closes without reading the request.
    fn not_reading(mut self) -> Self {
        self.read_request = false;
        self
    }

    async fn start(self) -> Running {
        self.start_on(IpAddr::from([127, 0, 0, 1]))
            .await
            .expect("bind 127.0.0.1")
    }

    async fn start_on(self, ip: IpAddr) -> io::Result<Running> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            conn.set_nodelay(true).expect("nodelay");
            let request = if self.read_request {
                read_request(&mut conn).await
            } else {
                Vec::new()
            };
            for piece in self.reply.chunks(self.piece) {
                if conn.write_all(piece).await.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            if self.hold_open {
                let mut sink = [0u8; 1024];
                while matches!(conn.read(&mut sink).await, Ok(read) if read > 0) {}
            }
            request
        });
        Ok(Running { addr, task })
    }
}

struct Running {
    addr: SocketAddr,
    task: JoinHandle<Vec<u8>>,
}

impl Running {
    /// The request the backend received.
    async fn request(self) -> String {
        let bytes = self.task.await.expect("backend task");
        String::from_utf8(bytes).expect("ASCII request")
    }
}

async fn read_request(conn: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.ends_with(b"\r\n\r\n") && request.len() < MAX_TEST_REQUEST {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => request.extend_from_slice(&chunk[..read]),
        }
    }
    request
}

fn tcp(addr: SocketAddr) -> ProbeSpec {
    ProbeSpec {
        addr,
        kind: ProbeKind::Tcp,
        timeout: QUICK,
    }
}

fn http(addr: SocketAddr) -> ProbeSpec {
    ProbeSpec {
        addr,
        kind: ProbeKind::Http {
            path: "/healthz".to_owned(),
            expect_status: None,
        },
        timeout: QUICK,
    }
}

fn expecting(addr: SocketAddr, code: u16) -> ProbeSpec {
    ProbeSpec {
        addr,
        kind: ProbeKind::Http {
            path: "/healthz".to_owned(),
            expect_status: Some(code),
        },
        timeout: QUICK,
    }
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local addr")
}

/// The body kube-proxy's `hcHandler` writes, byte for byte: a tab-indented dedented template,
/// no trailing newline.
fn kube_body(local_endpoints: &str, healthy: bool) -> String {
    format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t}},\n\t\
         \"localEndpoints\": {local_endpoints},\n\t\"serviceProxyHealthy\": {healthy}\n}}"
    )
}

/// An answer as Go's net/http frames kube-proxy's: sorted handler headers, then Date,
/// Content-Length and, for a `Connection: close` request, Connection.
fn kube_answer(status: &str, weight_header: Option<&str>, body: &str) -> String {
    let weight = weight_header
        .map(|weight| format!("X-Load-Balancing-Endpoint-Weight: {weight}\r\n"))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n\
         {weight}Date: Wed, 26 Nov 2025 15:00:00 GMT\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn plain_answer(status: &str) -> String {
    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

fn chunked_answer(status: &str, chunks: &[&str], trailer: &str) -> String {
    let mut answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for chunk in chunks {
        let _ = write!(answer, "{:x}\r\n{chunk}\r\n", chunk.len());
    }
    let _ = write!(answer, "0\r\n{trailer}\r\n");
    answer
}

/// Feeds `pieces` to a reader the way `read_answer` does, without a socket.
fn answer_of(pieces: &[&[u8]]) -> Result<Answer, String> {
    let mut reader = ResponseReader::default();
    for piece in pieces {
        if reader.push(piece).map_err(|err| err.to_string())? {
            break;
        }
    }
    reader.answer().map_err(|err| err.to_string())
}

fn weighed(status: u16, weight: Option<u32>) -> Result<Answer, String> {
    Ok(Answer { status, weight })
}

// TCP

#[tokio::test]
async fn tcp_connect_is_healthy() {
    let backend = Backend::replying("").start().await;
    let outcome = probe(&tcp(backend.addr)).await;
    assert!(outcome.healthy, "{outcome:?}");
    assert_eq!(outcome.weight, None);
    assert_eq!(outcome.detail, "connected");
}

#[tokio::test]
async fn tcp_refused_is_unhealthy() {
    let outcome = probe(&tcp(closed_port().await)).await;
    assert!(!outcome.healthy);
    assert_eq!(outcome.detail, "connect refused");
}

// HTTP status rules

#[tokio::test]
async fn http_silent_backend_times_out() {
    let backend = Backend::silent().start().await;
    let spec = ProbeSpec {
        timeout: Duration::from_millis(200),
        ..http(backend.addr)
    };
    let started = Instant::now();
    let outcome = probe(&spec).await;
    assert!(started.elapsed() < Duration::from_millis(900));
    assert!(!outcome.healthy);
    assert_eq!(outcome.detail, "timed out after 200ms");
    // The prober closed the connection, which ends the backend.
    assert!(
        backend
            .request()
            .await
            .starts_with("GET /healthz HTTP/1.1\r\n")
    );
}

#[tokio::test]
async fn http_2xx_and_3xx_are_healthy() {
    for status in ["200 OK", "204 No Content", "301 Moved Permanently"] {
        let backend = Backend::replying(plain_answer(status)).start().await;
        let outcome = probe(&http(backend.addr)).await;
        assert!(outcome.healthy, "{status}: {outcome:?}");
        assert_eq!(outcome.weight, None);
        assert_eq!(outcome.detail, format!("HTTP {}", &status[..3]));
    }
}

#[tokio::test]
async fn http_4xx_and_5xx_are_unhealthy() {
    for status in [
        "404 Not Found",
        "500 Internal Server Error",
        "503 Service Unavailable",
    ] {
        let backend = Backend::replying(plain_answer(status)).start().await;
        let outcome = probe(&http(backend.addr)).await;
        assert!(!outcome.healthy, "{status}: {outcome:?}");
        assert_eq!(outcome.detail, format!("HTTP {}", &status[..3]));
    }
}

#[tokio::test]
async fn expect_status_match_is_healthy_even_outside_2xx_3xx() {
    for (status, code) in [("204 No Content", 204), ("503 Service Unavailable", 503)] {
        let backend = Backend::replying(plain_answer(status)).start().await;
        let outcome = probe(&expecting(backend.addr, code)).await;
        assert!(outcome.healthy, "{status}: {outcome:?}");
        assert_eq!(outcome.detail, format!("HTTP {code}"));
    }
}

#[tokio::test]
async fn expect_status_mismatch_is_unhealthy_even_for_2xx_3xx() {
    let backend = Backend::replying(plain_answer("301 Moved Permanently"))
        .start()
        .await;
    let outcome = probe(&expecting(backend.addr, 200)).await;
    assert!(!outcome.healthy);
    assert_eq!(outcome.detail, "HTTP 301 (expected 200)");
}

// kube-proxy's healthCheckNodePort answers

#[tokio::test]
async fn kube_proxy_ready_answer_reports_header_weight() {
    let answer = kube_answer("200 OK", Some("2"), &kube_body("2", true));
    let backend = Backend::replying(answer).start().await;
    let port = backend.addr.port();
    let outcome = probe(&http(backend.addr)).await;
    assert!(outcome.healthy);
    assert_eq!(outcome.weight, Some(2));
    assert_eq!(outcome.detail, "HTTP 200, localEndpoints=2");
    assert_eq!(
        backend.request().await,
        format!(
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: portico-health/{}\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[tokio::test]
async fn kube_proxy_body_only_answer_reports_local_endpoints() {
    let backend = Backend::replying(kube_answer("200 OK", None, &kube_body("3", true)))
        .start()
        .await;
    let outcome = probe(&http(backend.addr)).await;
    assert!(outcome.healthy);
    assert_eq!(outcome.weight, Some(3));
    assert_eq!(outcome.detail, "HTTP 200, localEndpoints=3");
}

#[tokio::test]
async fn kube_proxy_no_local_endpoints_is_unhealthy_with_weight_zero() {
    for header in [Some("0"), None] {
        let answer = kube_answer("503 Service Unavailable", header, &kube_body("0", true));
        let backend = Backend::replying(answer).start().await;
        let outcome = probe(&http(backend.addr)).await;
        assert!(!outcome.healthy);
        assert_eq!(outcome.weight, Some(0));
        assert_eq!(outcome.detail, "HTTP 503, localEndpoints=0");
    }
}

#[tokio::test]
async fn weight_zero_on_200_stays_healthy() {
    let backend = Backend::replying(kube_answer("200 OK", Some("0"), &kube_body("0", true)))
        .start()
        .await;
    let outcome = probe(&http(backend.addr)).await;
    assert!(outcome.healthy);
    assert_eq!(outcome.weight, Some(0));
}

#[tokio::test]
async fn header_wins_over_body_when_they_disagree() {
    let backend = Backend::replying(kube_answer("200 OK", Some("5"), &kube_body("1", true)))
        .start()
        .await;
    assert_eq!(probe(&http(backend.addr)).await.weight, Some(5));
}

#[tokio::test]
async fn invalid_header_falls_back_to_body() {
    let backend = Backend::replying(kube_answer("200 OK", Some("two"), &kube_body("3", true)))
        .start()
        .await;
    assert_eq!(probe(&http(backend.addr)).await.weight, Some(3));

    for header in [
        "-1",
        "+2",
        "2.5",
        "4294967296",
        "99999999999999999999",
        "0x10",
        "",
    ] {
        let answer = kube_answer("200 OK", Some(header), &kube_body("3", true));
        assert_eq!(
            answer_of(&[answer.as_bytes()]),
            weighed(200, Some(3)),
            "header {header:?}"
        );
    }
}

#[test]
fn invalid_body_counts_give_no_weight() {
    for count in ["-1", "\"2\"", "2.5", "4294967296", "1e3", "null", "[2]"] {
        let answer = kube_answer("200 OK", None, &kube_body(count, true));
        assert_eq!(
            answer_of(&[answer.as_bytes()]),
            weighed(200, None),
            "count {count}"
        );
    }
    for body in [
        "{}",
        "{\"localEndpoints\":",
        "ok",
        "[{\"localEndpoints\":2}]",
        "",
    ] {
        let answer = kube_answer("200 OK", None, body);
        assert_eq!(
            answer_of(&[answer.as_bytes()]),
            weighed(200, None),
            "body {body:?}"
        );
    }
}

#[test]
fn largest_weight_is_accepted() {
    let answer = kube_answer("200 OK", Some(" 4294967295 "), "");
    assert_eq!(
        answer_of(&[answer.as_bytes()]),
        weighed(200, Some(u32::MAX))
    );
    let answer = kube_answer("200 OK", None, &kube_body("4294967295", true));
    assert_eq!(
        answer_of(&[answer.as_bytes()]),
        weighed(200, Some(u32::MAX))
    );
}

#[tokio::test]
async fn chunked_body_is_decoded() {
    let body = kube_body("4", true);
    let (first, rest) = body.split_at(10);
    let (second, third) = rest.split_at(40);
    let backend = Backend::replying(chunked_answer("200 OK", &[first, second, third], ""))
        .start()
        .await;
    let outcome = probe(&http(backend.addr)).await;
    assert!(outcome.healthy);
    assert_eq!(outcome.weight, Some(4));
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let answer = "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                  5;name=value\r\n{\"loc\r\n10\r\nalEndpoints\": 0}\r\n0\r\nX-Trailer: 1\r\n\r\n";
    assert_eq!(answer_of(&[answer.as_bytes()]), weighed(503, Some(0)));
}

#[test]
fn broken_chunked_framing_gives_no_weight() {
    for body in ["zz\r\n{}\r\n0\r\n\r\n", "2\r\n{}XX0\r\n\r\n"] {
        let answer = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        assert_eq!(
            answer_of(&[answer.as_bytes()]),
            weighed(200, None),
            "{body:?}"
        );
    }
}

#[tokio::test]
async fn answer_until_close_without_length() {
    let answer = format!("HTTP/1.0 200 OK\r\n\r\n{}", kube_body("7", true));
    let backend = Backend::replying(answer).start().await;
    assert_eq!(probe(&http(backend.addr)).await.weight, Some(7));
}

#[tokio::test]
async fn empty_200_is_healthy_without_weight() {
    // What kube-proxy sends when asked about a Service whose health check is being closed.
    let backend = Backend::replying("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .holding_open()
        .start()
        .await;
    let outcome = probe(&http(backend.addr)).await;
    assert!(outcome.healthy);
    assert_eq!(outcome.weight, None);
    assert_eq!(outcome.detail, "HTTP 200");
}

// Partial reads

#[tokio::test]
async fn answer_in_tiny_writes() {
    for answer in [
        kube_answer("200 OK", Some("2"), &kube_body("2", true)),
        kube_answer("200 OK", None, &kube_body("2", true)),
        chunked_answer("200 OK", &[&kube_body("2", true)], ""),
    ] {
        let backend = Backend::replying(answer).in_pieces(3).start().await;
        let outcome = probe(&http(backend.addr)).await;
        assert!(outcome.healthy);
        assert_eq!(outcome.weight, Some(2), "{outcome:?}");
    }
}

#[test]
fn every_split_point_gives_the_same_answer() {
    let answers = [
        kube_answer("200 OK", Some("2"), &kube_body("9", true)),
        kube_answer("503 Service Unavailable", None, &kube_body("0", false)),
        chunked_answer(
            "200 OK",
            &["{\"localEndpoints\"", ": 1", "}"],
            "X-Trailer: 1\r\n",
        ),
        format!("HTTP/1.0 200 OK\n\n{}", kube_body("5", true)),
    ];
    for answer in &answers {
        let answer = answer.as_bytes();
        let whole = answer_of(&[answer]);
        assert!(
            whole.as_ref().is_ok_and(|a| a.weight.is_some()),
            "{whole:?}"
        );
        for split in 0..=answer.len() {
            let (head, tail) = answer.split_at(split);
            assert_eq!(answer_of(&[head, tail]), whole, "split at {split}");
        }
        let bytes: Vec<&[u8]> = answer.chunks(1).collect();
        assert_eq!(answer_of(&bytes), whole, "byte at a time");
    }
}

// Hostile backends

#[tokio::test]
async fn oversized_body_is_read_up_to_the_cap() {
    const BODY: usize = 1024 * 1024;
    let mut answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n").into_bytes();
    answer.resize(answer.len() + BODY, b' ');
    let backend = Backend::replying(answer).holding_open().start().await;
    let started = Instant::now();
    let outcome = probe(&http(backend.addr)).await;
    assert!(started.elapsed() < Duration::from_millis(900));
    assert!(outcome.healthy);
    assert_eq!(outcome.weight, None);
}

#[tokio::test]
async fn oversized_head_is_a_bad_response() {
    let mut answer = b"HTTP/1.1 200 OK\r\nX-Filler: ".to_vec();
    answer.resize(answer.len() + 100 * 1024, b'a');
    let backend = Backend::replying(answer).holding_open().start().await;
    let outcome = probe(&http(backend.addr)).await;
    assert!(!outcome.healthy);
    assert_eq!(outcome.detail, "bad HTTP response: head larger than 64 KiB");
}

#[tokio::test]
async fn garbage_is_a_bad_response_at_once() {
    // Held open: the probe must judge the first bytes, not wait for the end of stream.
    let backend = Backend::replying("SSH-2.0-OpenSSH_9.6\r\n")
        .holding_open()
        .start()
        .await;
    let outcome = probe(&http(backend.addr)).await;
    assert!(!outcome.healthy);
    assert_eq!(outcome.detail, "bad HTTP response: invalid HTTP version");
}

#[tokio::test]
async fn truncated_head_is_a_bad_response() {
    let backend = Backend::replying("HTTP/1.1 200 OK\r\nContent-")
        .start()
        .await;
    let outcome = probe(&http(backend.addr)).await;
    assert!(!outcome.healthy);
    assert_eq!(outcome.detail, "bad HTTP response: truncated head");
}

#[tokio::test]
async fn close_before_answering_is_unhealthy() {
    let backend = Backend::replying("").start().await;
    let outcome = probe(&http(backend.addr)).await;
    assert!(!outcome.healthy);
    assert_eq!(outcome.detail, "closed without a response");

    // Closing with the request unread may reset instead; either way it is a failure.
    let backend = Backend::replying("").not_reading().start().await;
    let outcome = probe(&http(backend.addr)).await;
    assert!(!outcome.healthy);
    assert!(
        ["closed without a response", "read failed: connection reset"].contains(&&*outcome.detail)
            || outcome.detail.starts_with("send failed"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn answer_before_request_is_read_is_still_judged() {
    let backend = Backend::replying(kube_answer("200 OK", Some("1"), &kube_body("1", true)))
        .not_reading()
        .start()
        .await;
    let outcome = probe(&http(backend.addr)).await;
    assert_eq!(outcome.weight, Some(1), "{outcome:?}");
}

#[tokio::test]
async fn invalid_path_is_refused_without_connecting() {
    let addr = closed_port().await;
    for path in ["healthz", "", "/a b", "/x\r\nEvil: 1", "/caf\u{e9}"] {
        let spec = ProbeSpec {
            kind: ProbeKind::Http {
                path: path.to_owned(),
                expect_status: None,
            },
            ..http(addr)
        };
        let outcome = probe(&spec).await;
        assert!(!outcome.healthy);
        assert_eq!(outcome.detail, "invalid probe path", "{path:?}");
    }
}

#[tokio::test]
async fn ipv6_host_header_is_bracketed() {
    let Ok(backend) = Backend::replying(plain_answer("200 OK"))
        .start_on(IpAddr::from(std::net::Ipv6Addr::LOCALHOST))
        .await
    else {
        eprintln!("skipped: no IPv6 loopback");
        return;
    };
    let port = backend.addr.port();
    assert!(probe(&http(backend.addr)).await.healthy);
    let request = backend.request().await;
    assert!(
        request.contains(&format!("\r\nHost: [::1]:{port}\r\n")),
        "{request:?}"
    );
}
