//! The accept loop of one http/https listener: (TLS handshake, certificate by SNI, ALPN) ->
//! Portico's own HTTP/1.1 server for requests without a body or with a small one ([`h1`]),
//! then hyper (HTTP/1.1 and HTTP/2 on the same port) from the first request it does not serve
//! -> one proxied request per stream.

pub(crate) mod h1;
mod head_deadline;
mod rewind;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use metrics::{Counter, Gauge};
use net_core::lifecycle::{Acceptor, CancellationToken, ConnectionLimit, TaskTracker};
use net_core::metric_names;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

pub(crate) use head_deadline::HeadClock;
use head_deadline::HeadDeadline;
use rewind::Rewind;

use crate::body::ClientBody;
use crate::metrics::RouteMetrics;
use crate::passed::PassedFields;
use crate::proxy::{self, ClientPayload, ConnInfo};
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
        None => {
            let client = Client {
                peer,
                tls: false,
                h2: false,
            };
            serve_http(stream, client, &config, shared, source, stop).await;
        }
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(tls));
            match tokio::time::timeout(config.header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let client = Client {
                        peer,
                        tls: true,
                        h2,
                    };
                    serve_http(tls_stream, client, &config, shared, source, stop).await;
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

/// Who is at the other end of a client connection.
#[derive(Debug, Clone, Copy)]
struct Client {
    peer: SocketAddr,
    tls: bool,
    /// TLS negotiated HTTP/2 (ALPN `h2`).
    h2: bool,
}

async fn serve_http<I>(
    io: I,
    client: Client,
    config: &HttpListenerConfig,
    shared: &Arc<HttpListenerShared>,
    source: Arc<dyn ConfigSource>,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Client { peer, tls, h2 } = client;
    let info = Arc::new(ConnInfo::new(peer, tls, Arc::clone(shared), source));
    let io = HeadDeadline::new(io, Arc::clone(&info), config.header_timeout);
    let limits = h1::Limits {
        max_header_bytes: config.max_header_bytes.max(MIN_HTTP1_BUFFER),
        max_headers: config.max_headers,
    };
    // Portico's own path serves HTTP/1.1 requests without a streamed body; the first other
    // request (or HTTP/2's preface) hands the connection to hyper, with what was read of it.
    // The stop is seen by the own path through `ConnInfo::stop`, on the same terms as hyper's
    // shutdown below: not before the connection's first request started.
    let (io, read, http1_only) = if h2 {
        (io, Bytes::new(), false)
    } else {
        let own = h1::serve(io, Arc::clone(&info), limits);
        tokio::pin!(own);
        match until_stopped(own, &stop, || !info.clock.is_fresh(), |_| info.stop()).await {
            h1::Ended::Closed => return,
            h1::Ended::HandOver { io, read, served } => (io, read, served),
        }
    };
    info.hand_to_hyper();
    let io = TokioIo::new(Rewind::new(io, read));
    let clock_info = Arc::clone(&info);
    let service = service_fn(move |req: Request<Incoming>| {
        proxy::handle(
            req.map(|b| ClientPayload {
                body: Some(ClientBody::Streamed(b)),
                passed: PassedFields::default(),
            }),
            Arc::clone(&info),
        )
    });
    // A connection still waiting for its first request when the stop comes has a client that
    // just connected, and a request on its way: hyper would close it unread (it counts as
    // idle), so the shutdown waits for that request, which is then answered with
    // `Connection: close` (nginx does the same; HTTP/2's preface turns the clock off, so an
    // HTTP/2 connection gets its GOAWAY as soon as it is seen). `header_timeout` and
    // `shutdown_grace` bound the wait.
    let may_shut_down = || !clock_info.clock.is_fresh();
    // No hyper header timer (and no timer, so none by default either): `HeadDeadline` keeps
    // `header_timeout` with one timer per connection instead of one per request. hyper parses
    // into a fixed array of its default size unless told a count, and then fills a vector of
    // that count for every request head: only a count that differs is set.
    let max_headers = (config.max_headers != HYPER_MAX_HEADERS).then_some(config.max_headers);
    let result = if http1_only {
        // A connection that has carried HTTP/1.1 requests stays HTTP/1.1: an HTTP/2 preface
        // now is a malformed request, as it always was.
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .header_read_timeout(None)
            .max_buf_size(limits.max_header_bytes)
            .keep_alive(true);
        if let Some(max) = max_headers {
            builder.max_headers(max);
        }
        let conn = builder.serve_connection(io, service).with_upgrades();
        tokio::pin!(conn);
        until_stopped(conn, &stop, may_shut_down, |c| c.graceful_shutdown())
            .await
            .map_err(Into::into)
    } else {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .header_read_timeout(None)
            .max_buf_size(limits.max_header_bytes)
            .keep_alive(true);
        if let Some(max) = max_headers {
            builder.http1().max_headers(max);
        }
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(config.max_concurrent_streams)
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(H2_PING_EVERY))
            .keep_alive_timeout(H2_PING_TIMEOUT);
        let conn = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(conn);
        until_stopped(conn, &stop, may_shut_down, |c| c.graceful_shutdown()).await
    };
    if let Err(err) = result {
        tracing::debug!(listener = %shared.name, %peer, error = %err, "client connection ended with an error");
    }
}

/// Drives `conn` to its end, calling `shut_down` on it once `stop` fires and `may_shut_down`
/// says so (asked again each time the connection is woken after that), then driving it on.
///
/// The connection's task is woken for every read and write, and polling a cancellation future
/// takes two locks: it is polled only when it is what woke the task (its waker is
/// [`StopWake`]), which a select would not know.
async fn until_stopped<C: Future>(
    mut conn: Pin<&mut C>,
    stop: &CancellationToken,
    may_shut_down: impl Fn() -> bool,
    shut_down: impl FnOnce(Pin<&mut C>),
) -> C::Output {
    let wake = Arc::new(StopWake {
        woken: AtomicBool::new(true),
        task: Mutex::new(None),
    });
    let stop_waker = Waker::from(Arc::clone(&wake));
    let stopping = stop.cancelled();
    tokio::pin!(stopping);
    let mut stopped = false;
    let mut shut_down = Some(shut_down);
    std::future::poll_fn(|cx| {
        loop {
            if let Poll::Ready(output) = conn.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            if shut_down.is_none() {
                return Poll::Pending;
            }
            if !stopped {
                if !wake.woken.swap(false, Ordering::AcqRel) {
                    return Poll::Pending;
                }
                wake.set_task(cx.waker());
                let mut stop_cx = Context::from_waker(&stop_waker);
                if stopping.as_mut().poll(&mut stop_cx).is_pending() {
                    return Poll::Pending;
                }
                stopped = true;
            }
            if !may_shut_down() {
                return Poll::Pending;
            }
            if let Some(shut_down) = shut_down.take() {
                shut_down(conn.as_mut());
            }
        }
    })
    .await
}

/// The waker the stop signal wakes: notes that it fired, then wakes the connection's task.
struct StopWake {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl StopWake {
    fn set_task(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if !task.as_ref().is_some_and(|t| t.will_wake(waker)) {
            *task = Some(waker.clone());
        }
    }
}

impl Wake for StopWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

/// The header count hyper's HTTP/1 parser allows when none is set.
pub(crate) const HYPER_MAX_HEADERS: usize = 100;
/// hyper's HTTP/1 read buffer cannot be smaller than this.
pub(crate) const MIN_HTTP1_BUFFER: usize = 8192;
/// HTTP/2 keep-alive pings find dead client connections.
const H2_PING_EVERY: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection that ends only after its shutdown was asked for; the test wakes its task
    /// through `waker` as reads and writes wake a real one.
    struct FakeConnection {
        shut_down: bool,
        polls: Arc<std::sync::atomic::AtomicUsize>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for FakeConnection {
        type Output = &'static str;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'static str> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.shut_down {
                return Poll::Ready("shut down");
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_connection_is_shut_down_once_stop_fires_and_driven_to_its_end() {
        let stop = CancellationToken::new();
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let waker = Arc::new(Mutex::new(None::<Waker>));
        let task = tokio::spawn({
            let (stop, polls, waker) = (stop.clone(), Arc::clone(&polls), Arc::clone(&waker));
            async move {
                let mut shut_downs = 0;
                let conn = FakeConnection {
                    shut_down: false,
                    polls,
                    waker,
                };
                tokio::pin!(conn);
                let output = until_stopped(
                    conn,
                    &stop,
                    || true,
                    |mut c| {
                        shut_downs += 1;
                        c.shut_down = true;
                    },
                )
                .await;
                (output, shut_downs)
            }
        });
        // Wake-ups that are not the stop signal leave the connection running.
        for woken in 1..=3 {
            while polls.load(Ordering::SeqCst) < woken {
                tokio::task::yield_now().await;
            }
            waker.lock().unwrap().as_ref().unwrap().wake_by_ref();
        }
        while polls.load(Ordering::SeqCst) < 4 {
            tokio::task::yield_now().await;
        }
        assert!(!task.is_finished());
        stop.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert_eq!(ended.expect("stop ends it").unwrap(), ("shut down", 1));
    }

    #[tokio::test]
    async fn the_shutdown_waits_until_the_connection_may_be_shut_down() {
        let stop = CancellationToken::new();
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let waker = Arc::new(Mutex::new(None::<Waker>));
        let may = Arc::new(AtomicBool::new(false));
        let shut_downs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn({
            let (stop, polls, waker) = (stop.clone(), Arc::clone(&polls), Arc::clone(&waker));
            let (may, shut_downs) = (Arc::clone(&may), Arc::clone(&shut_downs));
            async move {
                let conn = FakeConnection {
                    shut_down: false,
                    polls,
                    waker,
                };
                tokio::pin!(conn);
                let may_shut_down = move || may.load(Ordering::SeqCst);
                until_stopped(conn, &stop, may_shut_down, |mut c| {
                    shut_downs.fetch_add(1, Ordering::SeqCst);
                    c.shut_down = true;
                })
                .await
            }
        });
        while polls.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        stop.cancel();
        // Stopped, but not yet allowed: woken by its own IO, the connection goes on.
        for woken in 2..=4 {
            while polls.load(Ordering::SeqCst) < woken {
                tokio::task::yield_now().await;
            }
            assert_eq!(shut_downs.load(Ordering::SeqCst), 0);
            if woken < 4 {
                waker.lock().unwrap().as_ref().unwrap().wake_by_ref();
            }
        }
        assert!(!task.is_finished());
        // Allowed (its first request started): the next wake-up shuts it down.
        may.store(true, Ordering::SeqCst);
        waker.lock().unwrap().as_ref().unwrap().wake_by_ref();
        let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert_eq!(ended.expect("it ends").unwrap(), "shut down");
        assert_eq!(shut_downs.load(Ordering::SeqCst), 1);
    }

    /// A first request that starts and ends within one poll of the connection, after the stop
    /// was seen: the check follows that poll, so no other wake-up is needed.
    #[tokio::test]
    async fn a_connection_allowed_within_its_own_poll_is_shut_down_without_another_wake() {
        let stop = CancellationToken::new();
        let may = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(Mutex::new(None::<Waker>));
        let task = tokio::spawn({
            let (stop, may, waker) = (stop.clone(), Arc::clone(&may), Arc::clone(&waker));
            async move {
                let conn = AllowsOnItsSecondPoll {
                    polls: 0,
                    may: Arc::clone(&may),
                    waker,
                    shut_down: false,
                };
                tokio::pin!(conn);
                let may_shut_down = move || may.load(Ordering::SeqCst);
                until_stopped(conn, &stop, may_shut_down, |mut c| c.shut_down = true).await
            }
        });
        stop.cancel();
        // The stop is seen while the connection is fresh; then its IO wakes it once.
        let first = loop {
            if let Some(w) = waker.lock().unwrap().clone() {
                break w;
            }
            tokio::task::yield_now().await;
        };
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!task.is_finished(), "not shut down while fresh");
        first.wake();
        let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert_eq!(
            ended.expect("no other wake-up needed").unwrap(),
            "shut down"
        );
    }

    /// Pending and fresh on its first poll; on its second, its first request comes and goes
    /// within the poll (it may be shut down from then on); never wakes its task itself.
    struct AllowsOnItsSecondPoll {
        polls: u32,
        may: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
        shut_down: bool,
    }

    impl Future for AllowsOnItsSecondPoll {
        type Output = &'static str;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'static str> {
            if self.shut_down {
                return Poll::Ready("shut down");
            }
            self.polls += 1;
            if self.polls == 1 {
                *self.waker.lock().unwrap() = Some(cx.waker().clone());
            } else {
                self.may.store(true, Ordering::SeqCst);
            }
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_connection_that_ends_by_itself_is_not_shut_down() {
        let stop = CancellationToken::new();
        let conn = std::future::ready("done");
        tokio::pin!(conn);
        let output =
            until_stopped(conn, &stop, || true, |_| panic!("no shutdown without stop")).await;
        assert_eq!(output, "done");
    }
}
