//! End-to-end round-trip latency on loopback, in process (STYLE.md rule 13): the same client and
//! the same backend, once directly and once through Portico, so that
//! `l4/portico - l4/direct` and `l7/portico - l7/direct` are Portico's added latency.
//!
//! - `l4/*`: 64 bytes written on a kept-alive TCP connection, echoed back by the backend; through
//!   `l4_forwarder::serve` for `l4/portico`.
//! - `l7/*`: an HTTP/1.1 `GET /` on a kept-alive connection, 100-byte answer; through
//!   `l7_router::serve` (one route, one pool of one backend) for `l7/portico`.
//!
//! Each benchmark uses one persistent client connection (request/response latency, not connect
//! time). The servers run on a multi-thread tokio runtime; the client runs on the bench thread.
//!
//! `cargo bench --bench e2e_latency` (about 30 s); `cargo bench --bench e2e_latency -- --test`
//! runs each benchmark once (CI).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use l4_forwarder::{ListenerShared, TcpListenerConfig};
use l7_router::routes::{RouteSpec, RouteTable};
use l7_router::{
    HttpListenerConfig, HttpListenerShared, RoutePolicy, RouteTarget, Upstream, UpstreamSettings,
};
use net_core::lifecycle::{CancellationToken, TaskTracker};
use net_core::pool::{PassiveHealth, WhenAllDown};
use net_core::{Backend, BackendKey, BalanceKind, Pool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// Bytes the L4 client sends and waits for, per round trip.
const ECHO_BYTES: usize = 64;
/// The echo backend's read buffer.
const ECHO_BUF: usize = 16 * 1024;
/// Size of the HTTP backend's answer body (the same as ../benches/peers and shared/bench).
const HTTP_BODY: [u8; 100] = [b'x'; 100];
/// Server-side worker threads: the machine has 2 cores.
const SERVER_THREADS: usize = 2;
/// Far above anything a benchmark opens.
const MAX_CONNECTIONS: usize = 1_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SERVER_THREADS)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// A TCP echo backend: every byte read is written back.
async fn echo_backend() -> SocketAddr {
    let (listener, addr) = bind().await;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; ECHO_BUF];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// An HTTP/1.1 backend answering every request with `HTTP_BODY` (keep-alive).
async fn http_backend() -> SocketAddr {
    let (listener, addr) = bind().await;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(&HTTP_BODY))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn one_backend_pool(addr: SocketAddr) -> Arc<Pool> {
    let key = BackendKey {
        pool: Arc::from("bench"),
        addr,
    };
    Arc::new(Pool::new(
        Arc::from("bench"),
        BalanceKind::RoundRobin,
        vec![Arc::new(Backend::new(key, None, 1))],
        WhenAllDown::TryAll,
        PassiveHealth::default(),
    ))
}

/// The L4 listener's snapshot: always the same settings.
struct FixedTcp(Arc<TcpListenerConfig>);

impl l4_forwarder::ConfigSource for FixedTcp {
    fn tcp_listener(&self, _name: &str) -> Option<Arc<TcpListenerConfig>> {
        Some(Arc::clone(&self.0))
    }
}

/// The L7 listener's snapshot: always the same settings.
struct FixedHttp(Arc<HttpListenerConfig>);

impl l7_router::ConfigSource for FixedHttp {
    fn http_listener(&self, _name: &str) -> Option<Arc<HttpListenerConfig>> {
        Some(Arc::clone(&self.0))
    }
}

/// Portico's L4 forwarder in front of `backend`; returns its address.
async fn l4_portico(backend: SocketAddr, stop: &CancellationToken) -> SocketAddr {
    let config = TcpListenerConfig {
        pool: one_backend_pool(backend),
        proxy_protocol: None,
        accept_proxy_protocol: false,
        connect_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(3600),
        splice: false,
    };
    let (listener, addr) = bind().await;
    tokio::spawn(l4_forwarder::serve(
        listener,
        ListenerShared::new("bench-l4", MAX_CONNECTIONS),
        Arc::new(FixedTcp(Arc::new(config))),
        stop.clone(),
        TaskTracker::new(),
    ));
    addr
}

/// Portico's L7 router (one catch-all route to a pool of `backend`); returns its address.
async fn l7_portico(backend: SocketAddr, stop: &CancellationToken) -> SocketAddr {
    let route = RouteSpec {
        name: "all".to_owned(),
        host: None,
        path_exact: None,
        path_prefix: Some("/".to_owned()),
        methods: Vec::new(),
        headers: Vec::new(),
        target: 0,
    };
    let routes = RouteTable::compile(vec![route], None).expect("route compiles");
    let upstream = Upstream::new(UpstreamSettings {
        connect_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(30),
        max_idle_per_backend: 64,
        http2: false,
    });
    let policy = RoutePolicy {
        timeout: Duration::from_secs(60),
        max_body_bytes: None,
        retries: 2,
        host_rewrite: None,
    };
    let target = RouteTarget::new(
        "bench-l7",
        "all",
        one_backend_pool(backend),
        Arc::new(upstream),
        policy,
    );
    let config = HttpListenerConfig {
        routes: Arc::new(routes),
        targets: vec![Arc::new(target)].into_boxed_slice(),
        tls: None,
        redirect_https: false,
        max_header_bytes: 32 * 1024,
        max_headers: 100,
        header_timeout: Duration::from_secs(10),
        max_concurrent_streams: 256,
        forwarded: false,
        request_id: None,
        access_log: false,
    };
    let (listener, addr) = bind().await;
    tokio::spawn(l7_router::serve(
        listener,
        HttpListenerShared::new("bench-l7", MAX_CONNECTIONS),
        Arc::new(FixedHttp(Arc::new(config))),
        stop.clone(),
        TaskTracker::new(),
    ));
    addr
}

/// One L4 round trip: send `ECHO_BYTES`, wait for all of them back.
async fn echo_round_trip(stream: &mut TcpStream, out: &[u8; ECHO_BYTES], back: &mut [u8]) {
    stream.write_all(out).await.expect("write");
    stream.read_exact(back).await.expect("read echo");
}

fn bench_l4(c: &mut Criterion, rt: &Runtime, stop: &CancellationToken) {
    let backend = rt.block_on(echo_backend());
    let portico = rt.block_on(l4_portico(backend, stop));
    let out = [b'p'; ECHO_BYTES];
    let mut back = [0u8; ECHO_BYTES];

    let mut g = c.benchmark_group("l4");
    for (name, addr) in [("direct", backend), ("portico", portico)] {
        let mut stream = rt.block_on(connect(addr));
        // One round trip before timing: the forwarder connects to the backend on accept.
        rt.block_on(echo_round_trip(&mut stream, &out, &mut back));
        assert_eq!(back, out);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        echo_round_trip(&mut stream, &out, &mut back).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

/// A kept-alive HTTP/1.1 client connection to `addr`.
async fn http_client(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = connect(addr).await;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http handshake");
    tokio::spawn(conn);
    sender
}

/// One L7 round trip: `GET /`, the whole body read.
async fn get(sender: &mut SendRequest<Empty<Bytes>>) -> usize {
    sender.ready().await.expect("connection ready");
    let req = Request::get("/")
        .header(http::header::HOST, "bench.example.com")
        .body(Empty::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    assert!(resp.status().is_success(), "status {}", resp.status());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    body.len()
}

fn bench_l7(c: &mut Criterion, rt: &Runtime, stop: &CancellationToken) {
    let backend = rt.block_on(http_backend());
    let portico = rt.block_on(l7_portico(backend, stop));

    let mut g = c.benchmark_group("l7");
    for (name, addr) in [("direct", backend), ("portico", portico)] {
        let mut sender = rt.block_on(http_client(addr));
        // One request before timing: it opens Portico's pooled connection to the backend.
        assert_eq!(rt.block_on(get(&mut sender)), HTTP_BODY.len());
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        get(&mut sender).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

fn e2e(c: &mut Criterion) {
    let rt = runtime();
    let stop = CancellationToken::new();
    bench_l4(c, &rt, &stop);
    bench_l7(c, &rt, &stop);
    stop.cancel();
}

fn short() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = short();
    targets = e2e
}
criterion_main!(benches);
