//! The accept loop of one http/https listener: (TLS handshake, certificate by SNI, ALPN) ->
//! hyper serving HTTP/1.1 and HTTP/2 on the same port -> one proxied request per stream.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use metrics::{Counter, Gauge};
use net_core::lifecycle::{Acceptor, CancellationToken, ConnectionLimit, TaskTracker};
use net_core::metric_names;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

use crate::metrics::RouteMetrics;
use crate::proxy::{self, ConnInfo};
use crate::{ConfigSource, HttpListenerConfig};

/// What outlives snapshots for one http listener: name, connection limit, metric handles.
#[derive(Debug)]
pub struct HttpListenerShared {
    name: Arc<str>,
    limit: Arc<ConnectionLimit>,
    connections_total: Counter,
    connections_active: Gauge,
    rejected: Counter,
    pub(crate) bytes_in: Counter,
    pub(crate) bytes_out: Counter,
    /// Requests answered without a route (404, redirects, shutting down).
    pub(crate) unrouted: RouteMetrics,
    /// The access log's route for requests no route matched.
    no_route: Arc<str>,
}

impl HttpListenerShared {
    pub fn new(name: &str, max_connections: usize) -> Arc<Self> {
        let label = [("listener", name.to_owned())];
        let bytes = |direction: &'static str| metrics::counter!(metric_names::BYTES_TOTAL, "listener" => name.to_owned(), "direction" => direction);
        Arc::new(Self {
            name: Arc::from(name),
            limit: ConnectionLimit::new(max_connections),
            connections_total: metrics::counter!(metric_names::CONNECTIONS_TOTAL, &label),
            connections_active: metrics::gauge!(metric_names::CONNECTIONS_ACTIVE, &label),
            rejected: metrics::counter!(metric_names::CONNECTIONS_REJECTED_TOTAL, &label),
            bytes_in: bytes("in"),
            bytes_out: bytes("out"),
            unrouted: RouteMetrics::new(name, "none"),
            no_route: Arc::from("-"),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn no_route_name(&self) -> Arc<str> {
        Arc::clone(&self.no_route)
    }

    pub(crate) fn name_arc(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    pub fn active_connections(&self) -> usize {
        self.limit.active()
    }

    pub fn max_connections(&self) -> usize {
        self.limit.max()
    }

    pub fn set_max_connections(&self, max: usize) {
        self.limit.set_max(max);
    }
}

/// Accepts connections until `stop`; then kept-alive connections are closed gracefully (HTTP/2
/// GOAWAY, HTTP/1.1 close after the current response) while requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<HttpListenerShared>,
    source: Arc<dyn ConfigSource>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let mut acceptor = Acceptor::new(&listener, &stop, &shared.name);
    while let Some((stream, peer)) = acceptor.next().await {
        shared.connections_total.increment(1);
        let Some(permit) = shared.limit.try_acquire() else {
            shared.rejected.increment(1);
            continue;
        };
        let Some(config) = source.http_listener(&shared.name) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, source, stop) = (Arc::clone(&shared), Arc::clone(&source), stop.clone());
        tracker.spawn(async move {
            let _permit = permit;
            shared.connections_active.increment(1.0);
            connection(stream, peer, config, &shared, source, stop).await;
            shared.connections_active.decrement(1.0);
        });
    }
    tracing::debug!(listener = %shared.name, "stopped accepting");
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    config: Arc<HttpListenerConfig>,
    shared: &Arc<HttpListenerShared>,
    source: Arc<dyn ConfigSource>,
    stop: CancellationToken,
) {
    match &config.tls {
        None => serve_http(stream, peer, false, &config, shared, source, stop).await,
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(tls));
            match tokio::time::timeout(config.header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    serve_http(tls_stream, peer, true, &config, shared, source, stop).await;
                }
                Ok(Err(err)) => {
                    tracing::debug!(listener = %shared.name, %peer, error = %err, "TLS handshake failed")
                }
                Err(_) => {
                    tracing::debug!(listener = %shared.name, %peer, "TLS handshake timed out")
                }
            }
        }
    }
}

async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    tls: bool,
    config: &HttpListenerConfig,
    shared: &Arc<HttpListenerShared>,
    source: Arc<dyn ConfigSource>,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(ConnInfo::new(peer, tls, Arc::clone(shared), source));
    let service = service_fn(move |req| proxy::handle(req, Arc::clone(&info)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(config.max_header_bytes.max(MIN_HTTP1_BUFFER))
        .keep_alive(true);
    // hyper parses into a fixed array of its default size unless told a count, and then fills
    // a vector of that count for every request head: only set a count that differs.
    if config.max_headers != HYPER_MAX_HEADERS {
        builder.http1().max_headers(config.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.max_concurrent_streams)
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(H2_PING_EVERY))
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let io = FirstByteDeadline::new(io, config.header_timeout);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(listener = %shared.name, %peer, error = %err, "client connection ended with an error");
    }
}

/// Fails the first read of a client connection that sends nothing within `timeout`. hyper's
/// own header timer starts with the first bytes of a request, and telling HTTP/1 from HTTP/2
/// waits for those bytes without one, so without this a silent connection would hold its
/// `max_connections` slot forever.
struct FirstByteDeadline<I> {
    io: I,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> FirstByteDeadline<I> {
    fn new(io: I, timeout: Duration) -> Self {
        Self {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FirstByteDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request within header_timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FirstByteDeadline<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The header count hyper's HTTP/1 parser allows when none is set.
const HYPER_MAX_HEADERS: usize = 100;
/// hyper's HTTP/1 read buffer cannot be smaller than this.
const MIN_HTTP1_BUFFER: usize = 8192;
/// HTTP/2 keep-alive pings find dead client connections.
const H2_PING_EVERY: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
