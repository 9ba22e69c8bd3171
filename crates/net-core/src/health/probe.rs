//! One active health probe of one endpoint: a TCP connect, or an HTTP/1.1 `GET` whose answer may
//! also report the endpoint's weight.
//!
//! The weight is what kube-proxy reports on a Service's `healthCheckNodePort` under
//! `externalTrafficPolicy: Local` (kubernetes `pkg/proxy/healthcheck/service_health.go`): it
//! answers every path with 200 when the node has ready local endpoints and kube-proxy is healthy,
//! else 503, always with `Content-Type: application/json`,
//! `X-Load-Balancing-Endpoint-Weight: <count>` and the body
//! `{"service":{"namespace":..,"name":..},"localEndpoints":<count>,"serviceProxyHealthy":<bool>}`.
//! Releases before the header existed send only the body, so the header is read first and the
//! body's `localEndpoints` second.
//!
//! Every probe is bounded in time (`ProbeSpec::timeout`) and in bytes ([`MAX_PROBE_RESPONSE`]);
//! nothing an endpoint sends can make it panic or read without end.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use httparse::Status;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on the bytes read from one HTTP answer, head and body together.
const MAX_PROBE_RESPONSE: usize = 64 * 1024;
/// Bytes asked of the socket per read.
const PROBE_READ_CHUNK: usize = 4 * 1024;
/// Header lines parsed in an answer's head; more make it a bad response.
const MAX_PROBE_HEADERS: usize = 64;
/// The header kube-proxy (and GCE's `WEIGHTED_MAGLEV` health checks) report the weight in.
const WEIGHT_HEADER: &str = "X-Load-Balancing-Endpoint-Weight";
/// The field of kube-proxy's JSON body holding the node's local endpoint count.
const WEIGHT_FIELD: &str = "localEndpoints";

/// How an endpoint is probed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// Healthy iff a TCP connect succeeds; the connection is closed at once.
    Tcp,
    /// Healthy iff `GET path` answers 2xx or 3xx, or exactly `expect_status` when that is set.
    /// `path` is an origin-form request target (`/healthz`, `/ready?full=1`): it must start with
    /// `/` and hold only visible ASCII, or every probe fails with "invalid probe path".
    Http {
        path: String,
        expect_status: Option<u16>,
    },
}

/// One endpoint and how to probe it; equal specs can share one prober.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeSpec {
    pub addr: SocketAddr,
    pub kind: ProbeKind,
    /// Bounds the whole probe: connect, request and response.
    pub timeout: Duration,
}

/// What one probe found.
#[derive(Debug, Clone)]
pub struct ProbeOutcome {
    pub healthy: bool,
    /// The endpoint weight the answer reported (kube-proxy's local endpoint count), if any.
    pub weight: Option<u32>,
    /// Short human reason, for the transition log line: "connect refused", "timed out after 1s",
    /// "HTTP 503", "HTTP 200, localEndpoints=2", "bad HTTP response: ...".
    pub detail: String,
}

/// Probes `spec.addr` once, within `spec.timeout`. Never fails: every failure is an unhealthy
/// outcome whose `detail` says why.
pub async fn probe(spec: &ProbeSpec) -> ProbeOutcome {
    let attempt = async {
        match &spec.kind {
            ProbeKind::Tcp => probe_tcp(spec.addr).await,
            ProbeKind::Http {
                path,
                expect_status,
            } => probe_http(spec.addr, path, *expect_status).await,
        }
    };
    let failure = match tokio::time::timeout(spec.timeout, attempt).await {
        Ok(Ok(outcome)) => return outcome,
        Ok(Err(failure)) => failure,
        Err(_elapsed) => ProbeFailure::TimedOut(spec.timeout),
    };
    ProbeOutcome {
        healthy: false,
        weight: None,
        detail: failure.to_string(),
    }
}

/// Why a probe found no usable answer. Its `Display` is the outcome's `detail`.
#[derive(Debug, thiserror::Error)]
enum ProbeFailure {
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    #[error("connect {}", connect_reason(.0))]
    Connect(#[source] io::Error),
    #[error("send failed: {}", io_reason(.0))]
    Send(#[source] io::Error),
    #[error("read failed: {}", io_reason(.0))]
    Read(#[source] io::Error),
    #[error("closed without a response")]
    Closed,
    #[error("bad HTTP response: {0}")]
    BadResponse(#[from] BadResponse),
    #[error("invalid probe path")]
    InvalidPath,
}

/// Why bytes that arrived are not an HTTP/1.x response head.
#[derive(Debug, thiserror::Error)]
enum BadResponse {
    #[error("{0}")]
    Parse(#[from] httparse::Error),
    #[error("truncated head")]
    Truncated,
    #[error("head larger than {} KiB", MAX_PROBE_RESPONSE / 1024)]
    TooLarge,
}

fn connect_reason(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "refused".to_owned(),
        _ => format!("failed: {}", io_reason(err)),
    }
}

fn io_reason(err: &io::Error) -> String {
    let short = match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        io::ErrorKind::BrokenPipe => "broken pipe",
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        io::ErrorKind::AddrNotAvailable => "address not available",
        _ => return err.to_string(),
    };
    short.to_owned()
}

async fn probe_tcp(addr: SocketAddr) -> Result<ProbeOutcome, ProbeFailure> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(ProbeFailure::Connect)?;
    drop(stream);
    Ok(ProbeOutcome {
        healthy: true,
        weight: None,
        detail: "connected".to_owned(),
    })
}

async fn probe_http(
    addr: SocketAddr,
    path: &str,
    expect_status: Option<u16>,
) -> Result<ProbeOutcome, ProbeFailure> {
    if !is_origin_form(path) {
        return Err(ProbeFailure::InvalidPath);
    }
    let request = http_request(addr, path);
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(ProbeFailure::Connect)?;
    // A server may answer and close before reading the request, failing the write: the answer
    // it left is still the one to judge.
    let sent = stream.write_all(request.as_bytes()).await;
    let answer = match read_answer(&mut stream).await {
        Ok(answer) => answer,
        Err(failure) => return Err(sent.err().map_or(failure, ProbeFailure::Send)),
    };
    Ok(judge(&answer, expect_status))
}

/// True for an origin-form request target that cannot break the request line or inject headers.
fn is_origin_form(path: &str) -> bool {
    path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic())
}

fn http_request(addr: SocketAddr, path: &str) -> String {
    // Not `SocketAddr`'s Display: a Host header carries no IPv6 zone (`%scope`).
    let host = match addr {
        SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portico-health/{}\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

fn judge(answer: &Answer, expect_status: Option<u16>) -> ProbeOutcome {
    let healthy = match expect_status {
        Some(code) => answer.status == code,
        None => (200..400).contains(&answer.status),
    };
    let mut detail = format!("HTTP {}", answer.status);
    if let Some(weight) = answer.weight {
        let _ = write!(detail, ", {WEIGHT_FIELD}={weight}");
    }
    if let Some(code) = expect_status.filter(|&code| code != answer.status) {
        let _ = write!(detail, " (expected {code})");
    }
    ProbeOutcome {
        healthy,
        weight: answer.weight,
        detail,
    }
}

/// Reads until the answer is complete, the peer closes, or [`MAX_PROBE_RESPONSE`] bytes arrived.
async fn read_answer(stream: &mut TcpStream) -> Result<Answer, ProbeFailure> {
    let mut reader = ResponseReader::default();
    let mut chunk = [0u8; PROBE_READ_CHUNK];
    while reader.room() > 0 {
        let want = reader.room().min(PROBE_READ_CHUNK);
        let read = match stream.read(&mut chunk[..want]).await {
            Ok(0) => break,
            Ok(read) => read,
            // A reset after a complete head (the peer closing with our bytes unread) still
            // leaves a status to judge.
            Err(_) if reader.has_head() => break,
            Err(err) => return Err(ProbeFailure::Read(err)),
        };
        if reader.push(&chunk[..read])? {
            break;
        }
    }
    reader.answer()
}

/// The part of an HTTP answer a probe judges.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    weight: Option<u32>,
}

/// Sans-IO reader of one HTTP/1.x response, fed bytes as they arrive.
#[derive(Default)]
struct ResponseReader {
    buf: Vec<u8>,
    head: Option<Head>,
}

struct Head {
    status: u16,
    /// Bytes of the head in `buf`; the body follows.
    len: usize,
    /// A valid `X-Load-Balancing-Endpoint-Weight`; when present the body is not needed.
    weight: Option<u32>,
    body: Framing,
}

enum Framing {
    Empty,
    Length(usize),
    Chunked(Dechunker),
    UntilClose,
}

impl ResponseReader {
    /// Bytes that may still be pushed before the cap.
    fn room(&self) -> usize {
        MAX_PROBE_RESPONSE.saturating_sub(self.buf.len())
    }

    fn has_head(&self) -> bool {
        self.head.is_some()
    }

    /// Appends bytes that arrived (beyond [`Self::room`] they are dropped). `Ok(true)` once
    /// nothing more is needed; an error as soon as the bytes cannot be an HTTP response.
    fn push(&mut self, data: &[u8]) -> Result<bool, BadResponse> {
        let data = &data[..data.len().min(self.room())];
        let first = self.buf.is_empty();
        self.buf.extend_from_slice(data);
        // A head ends with a newline, so reparsing is needed only when one arrives; the first
        // bytes are parsed at once so that a non-HTTP peer fails fast.
        if self.head.is_none() && (first || data.contains(&b'\n')) {
            self.head = parse_head(&self.buf)?;
        }
        Ok(self.advance_body())
    }

    /// Decodes what arrived of the body; true once it is complete or not needed.
    fn advance_body(&mut self) -> bool {
        let Some(head) = &mut self.head else {
            return false;
        };
        if head.weight.is_some() {
            return true;
        }
        let raw = &self.buf[head.len..];
        match &mut head.body {
            Framing::Empty => true,
            Framing::Length(len) => raw.len() >= *len,
            Framing::Chunked(dechunker) => dechunker.advance(raw),
            Framing::UntilClose => false,
        }
    }

    /// The answer from what arrived: at completion, at end of stream, or at the cap.
    fn answer(mut self) -> Result<Answer, ProbeFailure> {
        if self.head.is_none() {
            self.head = parse_head(&self.buf)?;
        }
        self.advance_body();
        let Some(head) = &self.head else {
            return Err(if self.buf.is_empty() {
                ProbeFailure::Closed
            } else if self.room() == 0 {
                BadResponse::TooLarge.into()
            } else {
                BadResponse::Truncated.into()
            });
        };
        let raw = &self.buf[head.len..];
        let weight = head.weight.or_else(|| {
            body_weight(match &head.body {
                Framing::Empty => &[],
                Framing::Length(len) => &raw[..raw.len().min(*len)],
                Framing::Chunked(dechunker) => &dechunker.data,
                Framing::UntilClose => raw,
            })
        });
        Ok(Answer {
            status: head.status,
            weight,
        })
    }
}

/// `Ok(None)` while the head is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, BadResponse> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_PROBE_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf)? {
        Status::Complete(len) => len,
        Status::Partial => return Ok(None),
    };
    // httparse sets the code of every complete head.
    let status = response.code.unwrap_or_default();
    let mut weight = None;
    let mut length = None;
    let mut chunked = false;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case(WEIGHT_HEADER) {
            weight = weight.or_else(|| parse_decimal(header.value));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            length = length.or_else(|| parse_decimal(header.value));
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // The body is chunked iff chunked is the last coding applied.
            chunked = header
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
    }
    let body = if matches!(status, 100..=199 | 204 | 304) {
        Framing::Empty
    } else if chunked {
        Framing::Chunked(Dechunker::default())
    } else if let Some(length) = length {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        len,
        weight,
        body,
    }))
}

/// A non-negative decimal integer that fits `T`; anything else (sign, fraction, overflow) is None.
fn parse_decimal<T: std::str::FromStr>(value: &[u8]) -> Option<T> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// kube-proxy's `localEndpoints`, when the body is a JSON object holding a valid one.
fn body_weight(body: &[u8]) -> Option<u32> {
    let body = body.trim_ascii();
    if !body.starts_with(b"{") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let count = value.get(WEIGHT_FIELD)?.as_u64()?;
    u32::try_from(count).ok()
}

/// Incremental decoder of a chunked body. Broken framing ends decoding with what was decoded.
#[derive(Default)]
struct Dechunker {
    /// Bytes of the raw body consumed so far.
    pos: usize,
    state: ChunkState,
    data: Vec<u8>,
}

#[derive(Default, Clone, Copy)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl Dechunker {
    /// Decodes `raw` (the whole body received so far) from where it stopped; true when done.
    fn advance(&mut self, raw: &[u8]) -> bool {
        loop {
            let rest = &raw[self.pos..];
            match self.state {
                ChunkState::Size => match httparse::parse_chunk_size(rest) {
                    Ok(Status::Complete((used, size))) => {
                        self.pos += used;
                        self.state = if size == 0 {
                            ChunkState::Trailers
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                    Ok(Status::Partial) => return false,
                    Err(httparse::InvalidChunkSize) => self.state = ChunkState::Done,
                },
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return false;
                    }
                    let take =
                        usize::try_from(left).map_or(rest.len(), |left| left.min(rest.len()));
                    self.data.extend_from_slice(&rest[..take]);
                    self.pos += take;
                    self.state = match left - take as u64 {
                        0 => ChunkState::DataEnd,
                        left => ChunkState::Data(left),
                    };
                }
                ChunkState::DataEnd => match rest.get(..2) {
                    None => return false,
                    Some(b"\r\n") => {
                        self.pos += 2;
                        self.state = ChunkState::Size;
                    }
                    Some(_) => self.state = ChunkState::Done,
                },
                // Trailer field lines, then an empty line.
                ChunkState::Trailers => match rest.windows(2).position(|w| w == b"\r\n") {
                    None => return false,
                    Some(0) => {
                        self.pos += 2;
                        self.state = ChunkState::Done;
                    }
                    Some(line) => self.pos += line + 2,
                },
                ChunkState::Done => return true,
            }
        }
    }
}

#[cfg(test)]
mod tests;
