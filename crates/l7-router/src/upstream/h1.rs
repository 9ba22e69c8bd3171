//! The HTTP/1.1 connection pool of one upstream: per backend, a list of idle keep-alive
//! connections, newest last (taken last in, first out, so the busiest connections stay warm and
//! the others age out).
//!
//! A connection is a hyper `SendRequest` with its `Connection` future, and nothing spawns that
//! future: the request that checked the connection out polls it inline, while it waits for the
//! response head ([`Conn::send`]) and while the response body streams ([`H1Body`]). A request
//! therefore costs no wake-up of, and no hop to, a per-connection task. When the body ends on a
//! connection that can take another request, the body puts it back in its backend's idle list;
//! a connection that failed, was told `Connection: close`, or whose body was not read to the end
//! is dropped, which closes it.
//!
//! Idle connections are checked lazily: one that has been idle longer than `idle_timeout` is
//! never handed out, and one the backend closed shows up as a failed send that hands the
//! request back unsent (the caller retries it on a fresh connection). A reaper task per pool,
//! started with the first idle connection, closes expired and backend-closed connections in
//! the background so they do not hold sockets open.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{TrySendError, http1};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::UpstreamError;
use crate::body::ProxyRequestBody;

type Driver = http1::Connection<TokioIo<TcpStream>, ProxyRequestBody>;

/// The reaper looks at idle connections this often at most ...
const REAP_EVERY_MAX: Duration = Duration::from_secs(5);
/// ... and at least this far apart.
const REAP_EVERY_MIN: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub(crate) struct PoolSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle: usize,
    pub tcp_keepalive: Duration,
}

/// One upstream's HTTP/1.1 connections, by backend address.
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    settings: PoolSettings,
    backends: Mutex<HashMap<SocketAddr, Arc<BackendConns>>>,
    reaper_started: AtomicBool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("h1::Pool")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub(crate) fn new(settings: PoolSettings) -> Self {
        Self {
            shared: Arc::new(Shared {
                settings,
                backends: Mutex::new(HashMap::new()),
                reaper_started: AtomicBool::new(false),
            }),
        }
    }

    /// The connections to `addr`: looked up when a snapshot is built, not per request.
    pub(crate) fn backend(&self, addr: SocketAddr) -> Arc<BackendConns> {
        let mut backends = lock(&self.shared.backends);
        Arc::clone(backends.entry(addr).or_insert_with(|| {
            Arc::new(BackendConns {
                addr,
                settings: self.shared.settings.clone(),
                builder: http1::Builder::new(),
                idle: Mutex::new(VecDeque::new()),
                reaper_armed: AtomicBool::new(false),
                pool: Arc::downgrade(&self.shared),
            })
        }))
    }
}

impl Shared {
    /// Starts the reaper once, on the runtime of the caller (a request task).
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.reaper_started.store(false, Ordering::Release);
            return;
        };
        let every = (self.settings.idle_timeout / 2).clamp(REAP_EVERY_MIN, REAP_EVERY_MAX);
        let shared = Arc::downgrade(self);
        runtime.spawn(reap_until_dropped(shared, every));
    }

    /// One reaper pass over every backend; forgets backends nothing refers to any more.
    fn reap(&self, now: Instant) {
        let backends: Vec<Arc<BackendConns>> = {
            let mut map = lock(&self.backends);
            map.retain(|_, b| Arc::strong_count(b) > 1 || !lock(&b.idle).is_empty());
            map.values().cloned().collect()
        };
        for backend in backends {
            backend.reap(now);
        }
    }
}

async fn reap_until_dropped(shared: Weak<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.reap(Instant::now());
    }
}

/// The idle connections to one backend.
pub(crate) struct BackendConns {
    addr: SocketAddr,
    settings: PoolSettings,
    builder: http1::Builder,
    /// Oldest first.
    idle: Mutex<VecDeque<Box<Conn>>>,
    /// The pool's reaper has been asked to start.
    reaper_armed: AtomicBool,
    pool: Weak<Shared>,
}

impl std::fmt::Debug for BackendConns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConns")
            .field("addr", &self.addr)
            .field("idle", &self.idle_count())
            .finish_non_exhaustive()
    }
}

impl BackendConns {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many idle connections wait for a request.
    pub(crate) fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }

    /// The most recently used idle connection that has not outlived `idle_timeout`.
    pub(crate) fn checkout(&self) -> Option<Box<Conn>> {
        self.checkout_at(Instant::now())
    }

    pub(super) fn checkout_at(&self, now: Instant) -> Option<Box<Conn>> {
        let mut idle = lock(&self.idle);
        let conn = idle.pop_back()?;
        let idle_for = now.saturating_duration_since(conn.idle_since);
        if idle_for < self.settings.idle_timeout && !conn.sender.is_closed() {
            drop(idle);
            let mut conn = conn;
            conn.idle_for = idle_for;
            return Some(conn);
        }
        // The newest is too old, so every older one is too: close them all (outside the lock).
        let expired: VecDeque<Box<Conn>> = std::mem::take(&mut *idle);
        drop(idle);
        drop(expired);
        drop(conn);
        None
    }

    /// A new connection (with `connect_timeout`), not yet in the pool.
    pub(crate) async fn connect(&self) -> Result<Box<Conn>, UpstreamError> {
        let timeout = self.settings.connect_timeout;
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(self.addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(UpstreamError::Connect {
                    addr: self.addr,
                    source,
                });
            }
            Err(_) => {
                return Err(UpstreamError::ConnectTimeout {
                    addr: self.addr,
                    timeout,
                });
            }
        };
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(self.settings.tcp_keepalive);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let (sender, driver) = self
            .builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Http1)?;
        Ok(Box::new(Conn {
            sender,
            driver: Some(driver),
            idle_since: Instant::now(),
            idle_for: Duration::ZERO,
            reused: false,
        }))
    }

    /// Puts a connection whose exchange is complete back in the idle list, or closes it when
    /// it cannot take another request. The oldest idle connection makes room past `max_idle`.
    pub(crate) fn release(&self, mut conn: Box<Conn>) {
        if conn.driver.is_none() || !conn.sender.is_ready() || self.settings.max_idle == 0 {
            return;
        }
        conn.idle_since = Instant::now();
        conn.reused = true;
        let mut idle = lock(&self.idle);
        let evicted = if idle.len() >= self.settings.max_idle {
            idle.pop_front()
        } else {
            None
        };
        idle.push_back(conn);
        drop(idle);
        drop(evicted);
        if !self.reaper_armed.load(Ordering::Relaxed) {
            self.reaper_armed.store(true, Ordering::Relaxed);
            if let Some(pool) = self.pool.upgrade() {
                pool.start_reaper();
            }
        }
    }

    /// Closes idle connections that expired or that the backend closed.
    pub(super) fn reap(&self, now: Instant) {
        let mut closed = Vec::new();
        let mut idle = lock(&self.idle);
        while idle.front().is_some_and(|c| {
            now.saturating_duration_since(c.idle_since) >= self.settings.idle_timeout
        }) {
            closed.extend(idle.pop_front());
        }
        // An idle connection's future finishes when the backend closes it (or sends something
        // it should not); a no-op waker keeps the last request's task from being woken for it.
        let mut cx = Context::from_waker(Waker::noop());
        let mut i = 0;
        while i < idle.len() {
            if idle[i].poll_driver(&mut cx).is_ready() || !idle[i].sender.is_ready() {
                closed.extend(idle.remove(i));
            } else {
                i += 1;
            }
        }
        drop(idle);
        if !closed.is_empty() {
            tracing::trace!(backend = %self.addr, closed = closed.len(), "closed idle connections");
        }
    }
}

/// One HTTP/1.1 connection to a backend.
pub(crate) struct Conn {
    sender: http1::SendRequest<ProxyRequestBody>,
    /// None once the connection is over.
    driver: Option<Driver>,
    idle_since: Instant,
    /// How long it sat idle before this checkout.
    idle_for: Duration,
    /// It served a request before this one.
    reused: bool,
}

impl Conn {
    pub(crate) fn is_reused(&self) -> bool {
        self.reused
    }

    /// How long the connection sat idle in the pool before it was checked out.
    pub(crate) fn idle_for(&self) -> Duration {
        self.idle_for
    }

    /// Drives the connection; true once it is over (and dropped, which hands back a request it
    /// had queued but not written).
    fn poll_driver(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(driver) = self.driver.as_mut() else {
            return Poll::Ready(());
        };
        match Pin::new(driver).poll(cx) {
            Poll::Ready(result) => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "backend connection ended with an error");
                }
                self.driver = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Hands `req` to the connection (it is written when the connection is next driven) and
    /// returns the response future, which only resolves while [`Conn::poll_driver`] drives
    /// the connection: see [`Conn::send`]. Split so the caller can keep the response future
    /// in its own state rather than in a nested future's.
    pub(crate) fn dispatch(
        &mut self,
        req: Request<ProxyRequestBody>,
    ) -> impl Future<Output = Result<Response<Incoming>, TrySendError<Request<ProxyRequestBody>>>> + use<>
    {
        self.sender.try_send_request(req)
    }

    /// Drives the connection until `response` (from [`Conn::dispatch`]) resolves.
    pub(crate) fn send<'a, F>(
        &'a mut self,
        mut response: Pin<&'a mut F>,
    ) -> impl Future<Output = F::Output> + 'a
    where
        F: Future,
    {
        std::future::poll_fn(move |cx| {
            let _ = self.poll_driver(cx);
            response.as_mut().poll(cx)
        })
    }

    /// Sends an upgrade request (WebSocket): the connection leaves the pool for good and runs
    /// on a task of its own, which hands the upgraded stream over after a 101.
    pub(crate) async fn send_upgrade(
        mut self: Box<Self>,
        req: Request<ProxyRequestBody>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        if let Some(driver) = self.driver.take() {
            tokio::spawn(async move {
                if let Err(err) = driver.with_upgrades().await {
                    tracing::debug!(error = %err, "upgraded backend connection ended with an error");
                }
            });
        }
        self.sender.send_request(req).await
    }
}

/// A response body from a pooled connection: polling it drives the connection, and its end
/// puts the connection back in the pool.
pub(crate) struct H1Body {
    body: Incoming,
    conn: Option<Box<Conn>>,
    home: Arc<BackendConns>,
}

impl H1Body {
    /// The body of `response`, read over `conn`; a body that is already over (HEAD, 204, 304)
    /// gives the connection back at once.
    pub(crate) fn new(body: Incoming, conn: Box<Conn>, home: Arc<BackendConns>) -> Self {
        let mut this = Self {
            body,
            conn: Some(conn),
            home,
        };
        if this.body.is_end_stream() {
            this.finish();
        }
        this
    }

    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.home.release(conn);
        }
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        // What the connection already read is taken first; the connection is driven (to read
        // more, or to finish writing the request) only when the body has nothing yet.
        let mut polled = Pin::new(&mut this.body).poll_frame(cx);
        if polled.is_pending() {
            if let Some(conn) = this.conn.as_mut() {
                let _ = conn.poll_driver(cx);
                polled = Pin::new(&mut this.body).poll_frame(cx);
            }
        }
        match &polled {
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.finish(),
            Poll::Ready(None) => this.finish(),
            // Not reusable: dropping it closes it.
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
