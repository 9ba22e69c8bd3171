//! Bodies stream through Portico, they are never held whole: curl uploads 50 MiB to a backend
//! that echoes each chunk as it arrives, downloading the echo while it uploads, over HTTP/1.1
//! and over h2c. The echo must come back byte for byte, and Portico's peak resident memory
//! (`VmHWM`) must grow by far less than the body's size.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::{backend_runtime, pool};
use crate::harness::{Portico, WAIT};

/// What curl uploads and gets back.
const BODY_BYTES: u64 = 50 * 1024 * 1024;
/// Portico's peak RSS may grow by less than this during the transfer: well below the body, so
/// neither direction was buffered whole (hyper's buffers and HTTP/2 windows are ~1 MiB).
const MAX_PEAK_GROWTH: u64 = 32 * 1024 * 1024;
/// curl's bound on the 50 MiB round trip (a debug build on 2 busy cores).
const TRANSFER_MAX_TIME: Duration = Duration::from_secs(120);
/// Chunks in which the files are written and compared.
const FILE_CHUNK: usize = 1024 * 1024;

/// A backend that answers a request with its body, each chunk written back as it arrives, in a
/// chunked response (hyper's HTTP/1.1 server on its own runtime, dropped with the backend).
struct StreamingEchoBackend {
    addr: std::net::SocketAddr,
    echoed: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl StreamingEchoBackend {
    fn start() -> StreamingEchoBackend {
        let (runtime, listener, addr) = backend_runtime();
        let echoed = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&echoed);
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let counter = Arc::clone(&counter);
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let body = EchoBody {
                        request: req.into_body(),
                        echoed: Arc::clone(&counter),
                    };
                    async move { Ok::<_, std::convert::Infallible>(Response::new(body)) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        StreamingEchoBackend {
            addr,
            echoed,
            _runtime: runtime,
        }
    }

    /// Body bytes echoed so far, over all requests.
    fn echoed(&self) -> u64 {
        self.echoed.load(Ordering::SeqCst)
    }
}

/// The request body handed back frame by frame. No size hint: hyper answers chunked and holds
/// one frame at a time.
struct EchoBody {
    request: Incoming,
    echoed: Arc<AtomicU64>,
}

impl Body for EchoBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.request).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.echoed.fetch_add(data.len() as u64, Ordering::SeqCst);
            }
        }
        polled
    }
}

/// A field of `/proc/PID/status` in bytes (`VmHWM`: the peak resident set; `VmRSS`).
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status:\n{status}"));
    let kib: u64 = line
        .trim()
        .strip_suffix(" kB")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("bad {field} line {line:?}"));
    kib * 1024
}

/// Writes `len` pseudo-random bytes (xorshift64*, fixed seed): any lost, repeated or shifted
/// chunk in the echo shows, unlike with a short repeating pattern.
fn write_pseudo_random(path: &Path, len: u64) {
    let mut out = BufWriter::with_capacity(FILE_CHUNK, File::create(path).unwrap());
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..len / 8 {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.write_all(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes())
            .unwrap();
    }
    out.flush().unwrap();
}

/// Panics at the first byte where the files differ (or at a length difference).
fn assert_same_file(sent: &Path, got: &Path) {
    let (sent_len, got_len) = (
        std::fs::metadata(sent).unwrap().len(),
        std::fs::metadata(got).unwrap().len(),
    );
    assert_eq!(
        got_len, sent_len,
        "the echo's length differs from the upload's"
    );
    let (mut a, mut b) = (File::open(sent).unwrap(), File::open(got).unwrap());
    let (mut buf_a, mut buf_b) = (vec![0u8; FILE_CHUNK], vec![0u8; FILE_CHUNK]);
    let mut offset = 0;
    loop {
        let n = a.read(&mut buf_a).unwrap();
        if n == 0 {
            return;
        }
        b.read_exact(&mut buf_b[..n]).unwrap();
        if let Some(i) = (0..n).find(|&i| buf_a[i] != buf_b[i]) {
            panic!("the echo differs from the upload at byte {}", offset + i);
        }
        offset += n;
    }
}

/// What a curl upload reported (`--write-out`).
#[derive(Debug)]
struct Upload {
    status: u16,
    http_version: String,
    uploaded: u64,
    downloaded: u64,
    took: Duration,
}

/// `curl PROTOCOL --data-binary @input --output output http://ADDR/echo`, bounded in time.
fn curl_upload(addr: std::net::SocketAddr, protocol: &str, input: &Path, output: &Path) -> Upload {
    let mut cmd = Command::new("curl");
    cmd.arg("--silent")
        .arg("--show-error")
        .arg(protocol)
        .arg("--max-time")
        .arg(TRANSFER_MAX_TIME.as_secs().to_string())
        .arg("-H")
        .arg("Content-Type: application/octet-stream")
        .arg("--data-binary")
        .arg(format!("@{}", input.display()))
        .arg("--output")
        .arg(output)
        .arg("--write-out")
        .arg("%{http_code} %{http_version} %{size_upload} %{size_download}")
        .arg(format!("http://{addr}/echo"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("{what}: curl cannot be run ({e}): install it (Debian/Ubuntu: apt-get install curl)")
    });
    // curl writes a line to stdout and at most an error to stderr: nothing fills a pipe.
    let deadline = started + TRANSFER_MAX_TIME + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {:?}",
                TRANSFER_MAX_TIME + WAIT
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let written = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}): {}; wrote {written:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let fields: Vec<&str> = written.split(' ').collect();
    let [status, http_version, uploaded, downloaded] = fields[..] else {
        panic!("unexpected --write-out {written:?}");
    };
    Upload {
        status: status.parse().unwrap(),
        http_version: http_version.to_owned(),
        uploaded: uploaded.parse().unwrap(),
        downloaded: downloaded.parse().unwrap(),
        took,
    }
}

/// Uploads 50 MiB through Portico with curl speaking `protocol` and checks the echo and
/// Portico's peak memory.
fn fifty_mib_echoed(protocol: &str, expected_version: &str) {
    let backend = StreamingEchoBackend::start();
    let portico = Portico::start(&format!(
        r#"{pool}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"
pool = "echo"
"#,
        pool = pool("echo", &[backend.addr], ""),
    ));
    let addr = portico.addr("web");
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("upload"), dir.path().join("echo"));

    // A small round trip first, so the baseline includes what Portico allocates once (runtime
    // threads, the backend connection pool, the first connection's buffers).
    std::fs::write(&input, b"warm-up body").unwrap();
    let warm_up = curl_upload(addr, protocol, &input, &output);
    assert_eq!(warm_up.status, 200, "{warm_up:?}");
    assert_eq!(std::fs::read(&output).unwrap(), b"warm-up body");

    write_pseudo_random(&input, BODY_BYTES);
    let pid = portico.pid();
    let (peak_before, rss_before) = (
        proc_status_bytes(pid, "VmHWM"),
        proc_status_bytes(pid, "VmRSS"),
    );
    let upload = curl_upload(addr, protocol, &input, &output);
    let peak_after = proc_status_bytes(pid, "VmHWM");
    let growth = peak_after.saturating_sub(peak_before);
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    eprintln!(
        "{protocol}: 50 MiB echoed in {:.2?} ({:.1} MiB/s each way); Portico VmRSS before {:.1} \
         MiB, VmHWM before {:.1} MiB, after {:.1} MiB: grew {:.1} MiB",
        upload.took,
        mib(BODY_BYTES) / upload.took.as_secs_f64(),
        mib(rss_before),
        mib(peak_before),
        mib(peak_after),
        mib(growth),
    );

    assert_eq!(upload.status, 200, "{upload:?}");
    assert_eq!(upload.http_version, expected_version, "{upload:?}");
    assert_eq!(upload.uploaded, BODY_BYTES, "{upload:?}");
    assert_eq!(upload.downloaded, BODY_BYTES, "{upload:?}");
    assert_eq!(backend.echoed(), BODY_BYTES + b"warm-up body".len() as u64);
    assert_same_file(&input, &output);
    assert!(
        growth < MAX_PEAK_GROWTH,
        "Portico's peak RSS grew by {:.1} MiB (from {:.1} to {:.1} MiB) while streaming 50 MiB \
         each way: bodies are being buffered",
        mib(growth),
        mib(peak_before),
        mib(peak_after),
    );
}

#[test]
fn fifty_mib_stream_both_ways_over_http11_in_bounded_memory() {
    fifty_mib_echoed("--http1.1", "1.1");
}

#[test]
fn fifty_mib_stream_both_ways_over_h2c_in_bounded_memory() {
    fifty_mib_echoed("--http2-prior-knowledge", "2");
}
