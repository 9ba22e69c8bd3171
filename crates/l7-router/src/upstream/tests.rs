//! The HTTP/1.1 pool against real loopback backends: reuse, `Connection: close`, `max_idle`,
//! idle expiry (checkout, reaper pass, reaper task), a backend-closed connection handing the
//! request back, and, through a whole listener, a stale pooled connection retried on a fresh
//! one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{BackendConns, H1Body, Upstream, UpstreamSettings};
use crate::body::ProxyRequestBody;
use crate::passed::PassedFields;

mod wire;

/// Every wait in these tests ends by this deadline.
const WAIT: Duration = Duration::from_secs(5);

/// How a test backend treats a connection after answering a request.
#[derive(Clone, Copy)]
enum Mode {
    /// Keep-alive.
    KeepAlive,
    /// Answer `Connection: close`, then close.
    Close,
    /// Answer as if keeping the connection, then close it anyway when told to (a backend
    /// whose keep-alive timeout ran out, or that restarted).
    SilentClose,
    /// Answer the first request of a connection; on the second, close it without an answer
    /// (a keep-alive timeout that fires as a request arrives).
    DropSecond,
}

/// A loopback HTTP/1.1 backend answering `GET` with its name; it counts connections, requests,
/// and connections the client closed.
struct TestBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// Connections it saw the peer close.
    closed_by_peer: watch::Receiver<usize>,
    /// Connections it closed itself.
    closed_by_backend: watch::Receiver<usize>,
    /// Set: `SilentClose` connections close.
    close_idle: Arc<watch::Sender<bool>>,
    /// The head of the last request, as received.
    last_head: Arc<std::sync::Mutex<String>>,
}

impl TestBackend {
    async fn start(name: &'static str, mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (peer_tx, closed_by_peer) = watch::channel(0);
        let (self_tx, closed_by_backend) = watch::channel(0);
        let (peer_tx, self_tx) = (Arc::new(peer_tx), Arc::new(self_tx));
        let close_idle = Arc::new(watch::channel(false).0);
        let last_head = Arc::new(std::sync::Mutex::new(String::new()));
        let (a, r, close, head) = (
            Arc::clone(&accepted),
            Arc::clone(&requests),
            Arc::clone(&close_idle),
            Arc::clone(&last_head),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let (r, peer_tx, self_tx) =
                    (Arc::clone(&r), Arc::clone(&peer_tx), Arc::clone(&self_tx));
                let (close, head) = (close.subscribe(), Arc::clone(&head));
                tokio::spawn(async move {
                    let peer_closed = serve_connection(stream, name, mode, &r, close, &head).await;
                    let count = if peer_closed { &peer_tx } else { &self_tx };
                    count.send_modify(|n| *n += 1);
                });
            }
        });
        Self {
            addr,
            accepted,
            requests,
            closed_by_peer,
            closed_by_backend,
            close_idle,
            last_head,
        }
    }

    fn last_head(&self) -> String {
        self.last_head.lock().unwrap().clone()
    }

    /// Closes the idle `SilentClose` connections (and the next ones after their answer).
    fn close_idle_connections(&self) {
        self.close_idle.send_replace(true);
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Waits until the client has closed `n` connections.
    async fn peer_closed(&mut self, n: usize) {
        let waited = tokio::time::timeout(WAIT, self.closed_by_peer.wait_for(|c| *c >= n)).await;
        assert!(waited.is_ok(), "the pool did not close {n} connection(s)");
    }

    /// Waits until the backend has closed `n` connections itself.
    async fn backend_closed(&mut self, n: usize) {
        let waited = tokio::time::timeout(WAIT, self.closed_by_backend.wait_for(|c| *c >= n)).await;
        assert!(
            waited.is_ok(),
            "the backend did not close {n} connection(s)"
        );
    }
}

/// Serves requests without bodies until either side closes; true if the peer closed.
async fn serve_connection(
    mut stream: TcpStream,
    name: &str,
    mode: Mode,
    requests: &AtomicUsize,
    mut close: watch::Receiver<bool>,
    last_head: &std::sync::Mutex<String>,
) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut answered = 0;
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head: Vec<u8> = buf.drain(..end + 4).collect();
        *last_head.lock().unwrap() = String::from_utf8_lossy(&head).into_owned();
        requests.fetch_add(1, Ordering::SeqCst);
        answered += 1;
        if matches!(mode, Mode::DropSecond) && answered == 2 {
            return false;
        }
        let connection = match mode {
            Mode::Close => "connection: close\r\n",
            Mode::KeepAlive | Mode::SilentClose | Mode::DropSecond => "",
        };
        let answer = format!(
            "HTTP/1.1 200 OK\r\n{connection}content-length: {}\r\n\r\n{name}",
            name.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return true;
        }
        match mode {
            Mode::KeepAlive | Mode::DropSecond => {}
            Mode::Close => {
                let _ = stream.shutdown().await;
                return false;
            }
            Mode::SilentClose => {
                let _ = close.wait_for(|now| *now).await;
                let _ = stream.shutdown().await;
                return false;
            }
        }
    }
}

fn settings(max_idle: usize, idle_timeout: Duration) -> UpstreamSettings {
    UpstreamSettings {
        connect_timeout: WAIT,
        idle_timeout,
        max_idle_per_backend: max_idle,
        http2: false,
    }
}

fn conns_to(upstream: &Upstream, backend: &TestBackend) -> Arc<BackendConns> {
    upstream
        .backend_conns(backend.addr)
        .expect("an HTTP/1.1 upstream")
}

fn get() -> Request<ProxyRequestBody> {
    Request::builder()
        .uri("/")
        .header(HOST, "backend.test")
        .body(ProxyRequestBody::empty(metrics::Counter::noop()))
        .unwrap()
}

/// One GET the way the proxy sends it: a pooled connection or a new one, the response body
/// read to its end (which gives the connection back).
async fn fetch(conns: &Arc<BackendConns>) -> Bytes {
    let mut conn = match conns.checkout() {
        Some(conn) => conn,
        None => conns.connect().await.expect("connect"),
    };
    let (parts, mut body) = get().into_parts();
    let head = conn
        .exchange(&parts, &PassedFields::default(), &mut body)
        .await
        .map_err(|e| e.error)
        .expect("response");
    assert_eq!(head.status, StatusCode::OK);
    let body = H1Body::new(conn, head.framing, head.keep_alive, Arc::clone(conns));
    body.collect().await.expect("body").to_bytes()
}

#[tokio::test]
async fn a_connection_is_reused_across_requests() {
    let backend = TestBackend::start("reused", Mode::KeepAlive).await;
    let upstream = Upstream::new(settings(8, Duration::from_secs(30)));
    let conns = conns_to(&upstream, &backend);
    for _ in 0..5 {
        assert_eq!(fetch(&conns).await, "reused");
        assert_eq!(conns.idle_count(), 1);
    }
    assert_eq!(backend.requests(), 5);
    assert_eq!(backend.connections(), 1);
}

#[tokio::test]
async fn a_backend_answering_connection_close_gets_a_new_connection_each_time() {
    let mut backend = TestBackend::start("closing", Mode::Close).await;
    let upstream = Upstream::new(settings(8, Duration::from_secs(30)));
    let conns = conns_to(&upstream, &backend);
    for i in 1..=3 {
        assert_eq!(fetch(&conns).await, "closing");
        assert_eq!(conns.idle_count(), 0, "request {i}");
        backend.backend_closed(i).await;
    }
    assert_eq!(backend.connections(), 3);
}

#[tokio::test]
async fn max_idle_keeps_the_newest_connections_and_closes_the_rest() {
    let mut backend = TestBackend::start("bounded", Mode::KeepAlive).await;
    let upstream = Upstream::new(settings(2, Duration::from_secs(30)));
    let conns = conns_to(&upstream, &backend);
    // Four requests at once need four connections (each task checks out before any response
    // comes back); two may stay idle afterwards.
    let mut fetches = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let conns = Arc::clone(&conns);
        fetches.spawn(async move { fetch(&conns).await });
    }
    while let Some(body) = fetches.join_next().await {
        assert_eq!(body.unwrap(), "bounded");
    }
    assert_eq!(backend.connections(), 4);
    assert_eq!(conns.idle_count(), 2);
    backend.peer_closed(2).await;
    // The two kept are used next: no new connection.
    assert_eq!(fetch(&conns).await, "bounded");
    assert_eq!(fetch(&conns).await, "bounded");
    assert_eq!(backend.connections(), 4);
}

#[tokio::test]
async fn max_idle_zero_pools_nothing() {
    let mut backend = TestBackend::start("unpooled", Mode::KeepAlive).await;
    let upstream = Upstream::new(settings(0, Duration::from_secs(30)));
    let conns = conns_to(&upstream, &backend);
    assert_eq!(fetch(&conns).await, "unpooled");
    assert_eq!(fetch(&conns).await, "unpooled");
    assert_eq!(conns.idle_count(), 0);
    assert_eq!(backend.connections(), 2);
    backend.peer_closed(2).await;
}

#[tokio::test]
async fn an_expired_connection_is_never_handed_out_and_is_closed() {
    let mut backend = TestBackend::start("expiring", Mode::KeepAlive).await;
    let idle_timeout = Duration::from_secs(30);
    let upstream = Upstream::new(settings(8, idle_timeout));
    let conns = conns_to(&upstream, &backend);
    assert_eq!(fetch(&conns).await, "expiring");
    assert_eq!(conns.idle_count(), 1);
    // Just before its idle timeout the connection is still good ...
    let almost = Instant::now() + idle_timeout - Duration::from_secs(1);
    let conn = conns.checkout_at(almost).expect("still fresh");
    drop(conn);
    backend.peer_closed(1).await;
    // ... past it, checkout closes it instead.
    assert_eq!(fetch(&conns).await, "expiring");
    assert!(
        conns
            .checkout_at(Instant::now() + idle_timeout + Duration::from_millis(1))
            .is_none()
    );
    assert_eq!(conns.idle_count(), 0);
    backend.peer_closed(2).await;
    assert_eq!(backend.connections(), 2);
}

#[tokio::test]
async fn a_reaper_pass_closes_expired_and_backend_closed_connections() {
    let mut backend = TestBackend::start("reaped", Mode::KeepAlive).await;
    let mut silent = TestBackend::start("silent", Mode::SilentClose).await;
    let idle_timeout = Duration::from_secs(30);
    let upstream = Upstream::new(settings(8, idle_timeout));
    let (conns, silent_conns) = (conns_to(&upstream, &backend), conns_to(&upstream, &silent));
    assert_eq!(fetch(&conns).await, "reaped");
    assert_eq!(fetch(&silent_conns).await, "silent");
    assert_eq!(silent_conns.idle_count(), 1);
    silent.close_idle_connections();
    silent.backend_closed(1).await;
    // Not expired: kept, unless the backend closed it.
    conns.reap(Instant::now());
    assert_eq!(conns.idle_count(), 1);
    silent_conns.reap(Instant::now());
    assert_eq!(silent_conns.idle_count(), 0);
    // Expired: closed.
    conns.reap(Instant::now() + idle_timeout);
    assert_eq!(conns.idle_count(), 0);
    backend.peer_closed(1).await;
}

#[tokio::test]
async fn the_reaper_task_closes_idle_connections_after_idle_timeout() {
    let mut backend = TestBackend::start("reaper", Mode::KeepAlive).await;
    let upstream = Upstream::new(settings(8, Duration::from_millis(100)));
    let conns = conns_to(&upstream, &backend);
    assert_eq!(fetch(&conns).await, "reaper");
    // Nobody asks for the connection again: the pool's reaper closes it on its own.
    backend.peer_closed(1).await;
    assert_eq!(conns.idle_count(), 0);
}

#[tokio::test]
async fn a_pooled_connection_the_backend_closed_is_not_handed_out() {
    let mut backend = TestBackend::start("stale", Mode::SilentClose).await;
    let upstream = Upstream::new(settings(8, Duration::from_secs(30)));
    let conns = conns_to(&upstream, &backend);
    assert_eq!(fetch(&conns).await, "stale");
    assert_eq!(conns.idle_count(), 1);
    backend.close_idle_connections();
    backend.backend_closed(1).await;
    // Once the runtime has seen the socket turn readable (a sleep turns its IO driver), the
    // pool knows without a syscall, and closes it rather than hand it out.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(conns.checkout().is_none());
    assert_eq!(conns.idle_count(), 0);
    assert_eq!(backend.requests(), 1);
}

#[tokio::test]
async fn a_request_the_backend_closes_on_without_an_answer_is_told_apart() {
    let backend = TestBackend::start("dropper", Mode::DropSecond).await;
    let upstream = Upstream::new(settings(8, Duration::from_secs(30)));
    let conns = conns_to(&upstream, &backend);
    assert_eq!(fetch(&conns).await, "dropper");
    let mut conn = conns.checkout().expect("pooled");
    assert!(conn.is_reused());
    let (parts, mut body) = get().into_parts();
    let failed = match conn
        .exchange(&parts, &PassedFields::default(), &mut body)
        .await
    {
        Ok(_) => panic!("the backend closed without an answer"),
        Err(failed) => failed,
    };
    // Written, so not "unsent"; but not a byte came back, so an idempotent request may go
    // out again.
    assert!(!failed.unsent);
    assert!(failed.no_response, "{:?}", failed.error);
    assert_eq!(backend.requests(), 2);
}

/// A whole http listener in front of `backend` (one catch-all route, `retries` retries).
async fn listener_in_front_of(backend: SocketAddr, upstream: Arc<Upstream>) -> SocketAddr {
    use net_core::backend::{Backend, BackendKey};
    use net_core::balance::BalanceKind;
    use net_core::lifecycle::{CancellationToken, TaskTracker};
    use net_core::pool::{PassiveHealth, Pool, WhenAllDown};

    use crate::routes::{RouteSpec, RouteTable};
    use crate::{HttpListenerConfig, HttpListenerShared, RoutePolicy, RouteTarget};

    struct Fixed(Arc<HttpListenerConfig>);
    impl crate::ConfigSource for Fixed {
        fn http_listener(&self, _name: &str) -> Option<Arc<HttpListenerConfig>> {
            Some(Arc::clone(&self.0))
        }
    }

    let key = BackendKey {
        pool: Arc::from("test"),
        addr: backend,
    };
    let pool = Arc::new(Pool::new(
        Arc::from("test"),
        BalanceKind::RoundRobin,
        vec![Arc::new(Backend::new(key, None, 1))],
        WhenAllDown::TryAll,
        PassiveHealth::default(),
    ));
    let route = RouteSpec {
        name: "all".to_owned(),
        host: None,
        path_exact: None,
        path_prefix: Some("/".to_owned()),
        methods: Vec::new(),
        headers: Vec::new(),
        target: 0,
    };
    let policy = RoutePolicy {
        timeout: WAIT,
        max_body_bytes: None,
        retries: 1,
        host_rewrite: None,
    };
    let target = RouteTarget::new("test", "all", pool, upstream, policy);
    let config = HttpListenerConfig {
        routes: Arc::new(RouteTable::compile(vec![route], None).expect("route compiles")),
        targets: vec![Arc::new(target)].into_boxed_slice(),
        tls: None,
        redirect_https: false,
        max_header_bytes: 32 * 1024,
        max_headers: 100,
        header_timeout: WAIT,
        max_concurrent_streams: 16,
        forwarded: false,
        request_id: None,
        access_log: false,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(crate::serve(
        listener,
        HttpListenerShared::new("test", 64),
        Arc::new(Fixed(Arc::new(config))),
        CancellationToken::new(),
        TaskTracker::new(),
    ));
    addr
}

/// Sends `GET /` on `client` and reads the response; returns (status line, body).
async fn get_over(client: &mut TcpStream) -> (String, String) {
    request_over(client, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await
}

/// Sends `request` on `client` and reads the response; returns (status line, body).
async fn request_over(client: &mut TcpStream, request: &[u8]) -> (String, String) {
    client.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("a content-length");
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).to_string();
                let status = head.lines().next().unwrap_or_default().to_owned();
                return (status, body);
            }
        }
        let n = tokio::time::timeout(WAIT, client.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "the listener closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn a_stale_pooled_connection_is_retried_on_a_fresh_one() {
    let mut backend = TestBackend::start("fresh", Mode::SilentClose).await;
    let upstream = Arc::new(Upstream::new(settings(8, Duration::from_secs(30))));
    let addr = listener_in_front_of(backend.addr, Arc::clone(&upstream)).await;
    let conns = conns_to(&upstream, &backend);
    let mut client = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        get_over(&mut client).await,
        ("HTTP/1.1 200 OK".to_owned(), "fresh".to_owned())
    );
    assert_eq!(conns.idle_count(), 1);
    // The backend drops its idle connection; the next request finds it closed when it is
    // written, and goes out on a new connection: the client sees no error.
    backend.close_idle_connections();
    backend.backend_closed(1).await;
    assert_eq!(
        get_over(&mut client).await,
        ("HTTP/1.1 200 OK".to_owned(), "fresh".to_owned())
    );
    assert_eq!(backend.connections(), 2);
    assert_eq!(backend.requests(), 2);
}

#[tokio::test]
async fn a_request_without_host_gets_the_backend_address_as_host() {
    let backend = TestBackend::start("hostless", Mode::KeepAlive).await;
    let upstream = Arc::new(Upstream::new(settings(8, Duration::from_secs(30))));
    let addr = listener_in_front_of(backend.addr, upstream).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let (status, body) = request_over(&mut client, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert!(status.ends_with(" 200 OK"), "{status}");
    assert_eq!(body, "hostless");
    let head = backend.last_head().to_ascii_lowercase();
    assert!(head.starts_with("get /old http/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nhost: {}\r\n", backend.addr)),
        "{head}"
    );
    // With a Host, that one is sent.
    let mut client = TcpStream::connect(addr).await.unwrap();
    let (status, _) = get_over(&mut client).await;
    assert!(status.ends_with(" 200 OK"), "{status}");
    let head = backend.last_head().to_ascii_lowercase();
    assert!(head.contains("\r\nhost: app.test\r\n"), "{head}");
    assert_eq!(head.matches("\r\nhost:").count(), 1, "{head}");
}

/// A `Connection` token naming `Host` does not take the Host away: Portico routed on it and
/// the backend needs it (removing it would send an HTTP/1.1 request without a host). Other
/// named fields still go, on both servers (HTTP/1.0, the second request, is hyper's).
#[tokio::test]
async fn a_connection_token_naming_host_keeps_the_host() {
    let backend = TestBackend::start("kept", Mode::KeepAlive).await;
    let upstream = Arc::new(Upstream::new(settings(8, Duration::from_secs(30))));
    let addr = listener_in_front_of(backend.addr, upstream).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let requests: [&[u8]; 2] = [
        b"GET /a HTTP/1.1\r\nHost: app.test\r\nX-Hop: 1\r\nConnection: Host, X-Hop\r\n\r\n",
        b"GET /b HTTP/1.0\r\nHost: app.test\r\nX-Hop: 1\r\nConnection: host, x-hop\r\n\r\n",
    ];
    for request in requests {
        let (status, body) = request_over(&mut client, request).await;
        assert!(status.ends_with(" 200 OK"), "{status}");
        assert_eq!(body, "kept");
        let head = backend.last_head().to_ascii_lowercase();
        assert_eq!(head.matches("\r\nhost: app.test\r\n").count(), 1, "{head}");
        assert!(!head.contains("x-hop"), "{head}");
    }
}

/// A loopback backend that reads `Content-Length` requests, keeps each body, and answers
/// `ok` on the same connection.
async fn body_keeping_backend() -> (SocketAddr, Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = Arc::clone(&bodies);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if buf.len() >= end + 4 + length {
                            let body: Vec<u8> =
                                buf.drain(..end + 4 + length).skip(end + 4).collect();
                            kept.lock().unwrap().push(body);
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(ok).await.is_err() {
                                return;
                            }
                            continue;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, bodies)
}

/// A POST whose body came with its head (Portico's own HTTP/1.1 path reads it whole) goes
/// out in one write with its head, up to `WRITE_AHEAD_MAX`; a larger one is written from its
/// own buffer after the head. The backend gets every body whole either way, and the
/// connection is kept.
#[tokio::test]
async fn a_small_body_in_memory_goes_out_in_the_same_write_as_its_head() {
    use super::h1::WRITE_AHEAD_MAX;
    use crate::body::ClientBody;

    let (addr, bodies) = body_keeping_backend().await;
    let upstream = Upstream::new(settings(8, Duration::from_secs(30)));
    let conns = upstream.backend_conns(addr).expect("an HTTP/1.1 upstream");
    let sizes = [200, WRITE_AHEAD_MAX, WRITE_AHEAD_MAX + 1];
    for (i, size) in sizes.into_iter().enumerate() {
        let data = Bytes::from(vec![b'a' + i as u8; size]);
        let body = ClientBody::Read(http_body_util::Full::new(data.clone()));
        let request = Request::post("/upload")
            .header(HOST, "backend.test")
            .header(http::header::CONTENT_LENGTH, size)
            .body(ProxyRequestBody::new(body, None, metrics::Counter::noop()))
            .unwrap();
        let (parts, mut body) = request.into_parts();
        let mut conn = match conns.checkout() {
            Some(conn) => conn,
            None => conns.connect().await.expect("connect"),
        };
        let before = conn.writes;
        let head = tokio::time::timeout(
            WAIT,
            conn.exchange(&parts, &PassedFields::default(), &mut body),
        )
        .await
        .expect("an answer in time")
        .map_err(|e| e.error)
        .expect("response");
        let writes = conn.writes - before;
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.keep_alive, "a body sent whole keeps the connection");
        if size <= WRITE_AHEAD_MAX {
            assert_eq!(writes, 1, "{size} bytes: head and body in one write");
        } else {
            assert!(writes >= 2, "{size} bytes: the body in writes of its own");
        }
        let answer = H1Body::new(conn, head.framing, head.keep_alive, Arc::clone(&conns));
        assert_eq!(answer.collect().await.expect("body").to_bytes(), "ok");
        assert_eq!(
            bodies.lock().unwrap().last(),
            Some(&data.to_vec()),
            "{size} bytes"
        );
    }
    assert_eq!(conns.idle_count(), 1, "one connection served all three");
}
