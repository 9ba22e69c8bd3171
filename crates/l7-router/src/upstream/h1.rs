//! The HTTP/1.1 connection pool of one upstream: per backend, a list of idle keep-alive
//! connections, newest last (taken last in, first out, so the busiest connections stay warm and
//! the others age out).
//!
//! A connection speaks HTTP/1.1 through our own small client codec ([`super::codec`]), driven
//! by the task of the request that uses it: the request head is written straight from the
//! request's parts, the response head is parsed from the connection's read buffer, and the
//! response body ([`H1Body`]) is cut from that same buffer without a copy. No task, channel or
//! per-request timer sits between a request and its backend (hyper's client had all three, and
//! about 40% of a proxied request's user-space instructions). When the body ends on a
//! connection that can take another request, the body puts it back in its backend's idle list;
//! a connection that failed, was told `Connection: close`, or whose body was not read to the
//! end is dropped, which closes it. Upgrades (WebSocket) keep hyper's client, on a connection
//! of their own.
//!
//! Idle connections are checked lazily: one that has been idle longer than `idle_timeout` is
//! never handed out, nor one the backend closed while it sat idle (its socket turned readable).
//! A reaper task per pool, started with the first idle connection, closes expired and
//! backend-closed connections in the background so they do not hold sockets open.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use metrics::Counter;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::Instant;

use net_core::error_chain::ErrorChain;

use super::UpstreamError;
use super::codec::{
    self, BodyFraming, Chunk, ChunkedDecoder, Parsed, RequestFraming, ResponseHead,
};
use crate::body::ProxyRequestBody;
use crate::passed::PassedFields;

/// A connection's read buffer: room for a typical response head and body in one read.
const READ_BUF: usize = 8 * 1024;
/// The most one read asks for (a large response body).
const READ_BUF_MAX: usize = 64 * 1024;
/// A pooled connection's buffers are dropped when they grew past this (they are made again,
/// at their usual size, by the next request).
const IDLE_BUF_MAX: usize = 16 * 1024;
/// A request body already in memory up to this size is copied behind its head, to go out in
/// the same write (a larger one is written from its own buffer: the copy would cost more
/// than the write it saves).
pub(super) const WRITE_AHEAD_MAX: usize = 16 * 1024;

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
        loop {
            let mut idle = lock(&self.idle);
            let conn = idle.pop_back()?;
            let idle_for = now.saturating_duration_since(conn.idle_since);
            if idle_for >= self.settings.idle_timeout {
                // The newest is too old, so every older one is too: close them all (outside
                // the lock).
                let expired: VecDeque<Box<Conn>> = std::mem::take(&mut *idle);
                drop(idle);
                drop(expired);
                return None;
            }
            drop(idle);
            if conn.is_idle_and_open() {
                return Some(conn);
            }
            // Closed by the backend while idle (dropped, which closes our side): the next one
            // may still be good.
        }
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
        Ok(Box::new(Conn::new(stream)))
    }

    /// Puts a connection whose exchange is complete back in the idle list, or closes it when
    /// it cannot take another request. The oldest idle connection makes room past `max_idle`.
    pub(crate) fn release(&self, mut conn: Box<Conn>) {
        if self.settings.max_idle == 0 {
            return;
        }
        conn.idle_since = Instant::now();
        conn.reused = true;
        // A large upload frame or response head grew a buffer: an idle connection keeps no
        // more than a typical request needs.
        if conn.write_buf.capacity() > IDLE_BUF_MAX {
            conn.write_buf = Vec::new();
        }
        if conn.read_buf.capacity() > IDLE_BUF_MAX {
            conn.read_buf = BytesMut::new();
        }
        conn.read_size = READ_BUF;
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
        let mut i = 0;
        while i < idle.len() {
            if !idle[i].is_idle_and_open() {
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
    io: TcpStream,
    /// What the backend sent that is not consumed yet.
    read_buf: BytesMut,
    /// How much room the next read gets.
    read_size: usize,
    /// What goes out next: the request head, then each body frame with its framing. Kept
    /// from request to request.
    write_buf: Vec<u8>,
    /// How much of `write_buf` is out.
    written: usize,
    /// The whole request head is out (for this exchange).
    head_sent: bool,
    /// Where the head ends in `write_buf` (a body already in memory may follow it).
    head_len: usize,
    /// The request body still to send; None once it is all out (or there was none).
    upload: Option<Upload>,
    idle_since: Instant,
    /// It served a request before this one.
    reused: bool,
    /// Writes that put bytes on the socket (for tests of how a request goes out).
    #[cfg(test)]
    pub(super) writes: usize,
}

/// A request body on its way out.
struct Upload {
    body: ProxyRequestBody,
    framing: RequestFraming,
    /// Bytes the content-length still promises.
    left: Option<u64>,
    /// The body went into `write_buf` behind the head ([`Upload::write_ahead`]).
    written_ahead: bool,
}

/// Why an exchange failed, and whether the request may go out again on another connection.
#[derive(Debug)]
pub(crate) struct SendError {
    pub error: UpstreamError,
    /// Not a byte of the request reached the backend: it may be sent again whatever it is.
    pub unsent: bool,
    /// The request went out and the connection ended before a byte of response: the backend
    /// closed it as the request arrived (a keep-alive timeout). An idempotent request may be
    /// sent again.
    pub no_response: bool,
}

impl SendError {
    fn new(error: UpstreamError) -> Self {
        Self {
            error,
            unsent: false,
            no_response: false,
        }
    }
}

impl Conn {
    fn new(io: TcpStream) -> Self {
        Self {
            io,
            read_buf: BytesMut::with_capacity(READ_BUF),
            read_size: READ_BUF,
            write_buf: Vec::with_capacity(1024),
            written: 0,
            head_sent: false,
            head_len: 0,
            upload: None,
            idle_since: Instant::now(),
            reused: false,
            #[cfg(test)]
            writes: 0,
        }
    }

    pub(crate) fn is_reused(&self) -> bool {
        self.reused
    }

    /// Whether an idle connection can still take a request: the backend sent nothing (no
    /// close, no stray bytes) since its last response. Costs no syscall unless the socket
    /// reported readable; then a non-blocking read tells a stale readiness from a close.
    fn is_idle_and_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        if self.io.poll_read_ready(&mut cx).is_pending() {
            return true;
        }
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends a request (head from `parts`, then `body`) and reads the response head. The
    /// backend may answer before the body is all out (a 413, or an echo that streams both
    /// ways): the answer is returned then, and the rest of the body goes out while the
    /// response body is read ([`H1Body`]); such a connection is not reused. When the request
    /// did not go out at all, `body` is left as it was, for another attempt.
    pub(crate) fn exchange<'a>(
        &'a mut self,
        parts: &'a Parts,
        passed: &PassedFields,
        body: &'a mut ProxyRequestBody,
    ) -> impl Future<Output = Result<ResponseHead, SendError>> + 'a {
        let framing = codec::request_framing(parts, body.is_end_stream(), body.size_hint().exact());
        codec::encode_request_head(parts, passed, framing, &mut self.write_buf);
        self.written = 0;
        self.head_sent = false;
        self.head_len = self.write_buf.len();
        self.upload = (framing != RequestFraming::Empty).then(|| Upload {
            body: std::mem::replace(body, ProxyRequestBody::empty(Counter::noop())),
            framing,
            left: match framing {
                RequestFraming::Length(n) => Some(n),
                _ => None,
            },
            written_ahead: false,
        });
        if let Some(upload) = &mut self.upload {
            upload.write_ahead(&mut self.write_buf);
        }
        // A write that failed once the head was out: the backend may still have answered
        // (it closed after a 413, say), so the response is read before this is reported.
        let mut write_error: Option<UpstreamError> = None;
        std::future::poll_fn(move |cx| {
            if write_error.is_none() {
                if let Poll::Ready(Err(err)) = self.poll_send(cx) {
                    if !self.head_sent {
                        if let Some(upload) = self.upload.take() {
                            *body = upload.body;
                        }
                        return Poll::Ready(Err(SendError {
                            error: err,
                            unsent: true,
                            no_response: false,
                        }));
                    }
                    self.upload = None;
                    if !matches!(err, UpstreamError::Write(_)) {
                        return Poll::Ready(Err(SendError::new(err)));
                    }
                    write_error = Some(err);
                }
            }
            if !self.head_sent {
                return Poll::Pending;
            }
            match ready!(self.poll_response(cx, parts)) {
                Ok(mut head) => {
                    head.keep_alive &= self.upload.is_none() && write_error.is_none();
                    Poll::Ready(Ok(head))
                }
                Err(failed) => Poll::Ready(Err(write_error.take().map_or(failed, SendError::new))),
            }
        })
    }

    /// Writes what `write_buf` holds, then the request body frame by frame, until all is out
    /// (Ready(Ok)), the socket or the body has nothing for now (Pending), or it fails.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        loop {
            while self.written < self.write_buf.len() {
                let out = &self.write_buf[self.written..];
                match ready!(Pin::new(&mut self.io).poll_write(cx, out)) {
                    Ok(0) => {
                        return Poll::Ready(Err(UpstreamError::Write(
                            io::ErrorKind::WriteZero.into(),
                        )));
                    }
                    Ok(n) => {
                        #[cfg(test)]
                        {
                            self.writes += 1;
                        }
                        self.written += n;
                        // From here on the backend may have a whole request: not "unsent".
                        self.head_sent |= self.written >= self.head_len;
                    }
                    Err(err) => return Poll::Ready(Err(UpstreamError::Write(err))),
                }
            }
            self.head_sent = true;
            let Some(upload) = self.upload.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            self.write_buf.clear();
            self.written = 0;
            let frame = ready!(Pin::new(&mut upload.body).poll_frame(cx));
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    // Already out with the head: polled only to be counted.
                    Ok(_) if upload.written_ahead => {}
                    Ok(data) => upload.frame(&data, &mut self.write_buf)?,
                    Err(frame) => {
                        // Trailers end a chunked body (and are dropped from a sized one).
                        if upload.framing == RequestFraming::Chunked {
                            let trailers = frame.into_trailers().ok();
                            codec::encode_last_chunk(trailers.as_ref(), &mut self.write_buf);
                            self.upload = None;
                        }
                    }
                },
                Some(Err(err)) => return Poll::Ready(Err(UpstreamError::RequestBody(err))),
                None => {
                    upload.end(&mut self.write_buf)?;
                    self.upload = None;
                }
            }
        }
    }

    /// Reads until the response head is complete.
    fn poll_response(
        &mut self,
        cx: &mut Context<'_>,
        parts: &Parts,
    ) -> Poll<Result<ResponseHead, SendError>> {
        loop {
            if !self.read_buf.is_empty() {
                match codec::parse_response_head(&mut self.read_buf, &parts.method) {
                    Ok(Parsed::Complete(head)) => return Poll::Ready(Ok(head)),
                    Ok(Parsed::Partial) => {}
                    Err(e) => {
                        return Poll::Ready(Err(SendError::new(UpstreamError::Response(e))));
                    }
                }
            }
            let had = self.read_buf.len();
            match ready!(self.poll_read(cx)) {
                Ok(0) => {
                    return Poll::Ready(Err(SendError {
                        error: UpstreamError::Closed,
                        unsent: false,
                        no_response: had == 0,
                    }));
                }
                Ok(_) => {}
                Err(err) => {
                    let reset = matches!(
                        err.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    );
                    return Poll::Ready(Err(SendError {
                        error: UpstreamError::Read(err),
                        unsent: false,
                        no_response: reset && had == 0,
                    }));
                }
            }
        }
    }

    /// Reads what the backend sent into `read_buf`; Ok(0) when it closed the connection.
    /// Reads grow from `READ_BUF` up to `READ_BUF_MAX` while they keep filling the room they
    /// were given (a large body), so a big response takes fewer, larger reads.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read_buf.capacity() - self.read_buf.len() < self.read_size / 4 {
            self.read_buf.reserve(self.read_size);
        }
        let room = self.read_buf.capacity() - self.read_buf.len();
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.read_buf
        ))?;
        if n == room {
            self.read_size = (self.read_size * 2).min(READ_BUF_MAX);
        }
        Poll::Ready(Ok(n))
    }

    /// Sends an upgrade request (WebSocket) with hyper's client: the connection leaves the
    /// pool for good and runs on a task of its own, which hands the upgraded stream over
    /// after a 101.
    pub(crate) async fn send_upgrade(
        self: Box<Self>,
        req: Request<ProxyRequestBody>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        let (mut sender, driver) = http1::Builder::new()
            .handshake(TokioIo::new(self.io))
            .await?;
        tokio::spawn(async move {
            if let Err(err) = driver.with_upgrades().await {
                tracing::debug!(error = %err, "upgraded backend connection ended with an error");
            }
        });
        sender.send_request(req).await
    }
}

impl Upload {
    /// Puts a small body that is already in memory (a POST that came with its head) into
    /// `out` behind the head, so that both go out in one write rather than two. The body is
    /// left unpolled until they are out: a request that fails to go out keeps it for another
    /// attempt.
    fn write_ahead(&mut self, out: &mut Vec<u8>) {
        let RequestFraming::Length(length) = self.framing else {
            return;
        };
        let Some(data) = self.body.in_memory() else {
            return;
        };
        if data.len() as u64 == length && data.len() <= WRITE_AHEAD_MAX {
            out.extend_from_slice(&data);
            self.left = Some(0);
            self.written_ahead = true;
        }
    }

    /// A data frame into `out`, framed; checked against the content-length.
    fn frame(&mut self, data: &Bytes, out: &mut Vec<u8>) -> Result<(), UpstreamError> {
        if data.is_empty() {
            return Ok(());
        }
        if let Some(left) = &mut self.left {
            *left = left
                .checked_sub(data.len() as u64)
                .ok_or(UpstreamError::BodyLength)?;
        }
        if self.framing == RequestFraming::Chunked {
            codec::encode_chunk_header(data.len(), out);
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(data);
        }
        Ok(())
    }

    /// What ends the body on the wire: the last chunk, or nothing once the length is met.
    fn end(&self, out: &mut Vec<u8>) -> Result<(), UpstreamError> {
        match self.framing {
            RequestFraming::Chunked => codec::encode_last_chunk(None, out),
            RequestFraming::Length(_) if self.left != Some(0) => {
                return Err(UpstreamError::BodyLength);
            }
            _ => {}
        }
        Ok(())
    }
}

/// A response body from a pooled connection: it is read from the connection's buffer and
/// socket as the client takes it, and its end puts the connection back in the pool.
pub(crate) struct H1Body {
    /// None once the body is over (the connection went home or was closed).
    conn: Option<Box<Conn>>,
    state: BodyState,
    keep_alive: bool,
    home: Arc<BackendConns>,
}

enum BodyState {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

impl H1Body {
    /// The body of a response read over `conn`; a body that is already over (HEAD, 204, 304)
    /// gives the connection back at once.
    pub(crate) fn new(
        conn: Box<Conn>,
        framing: BodyFraming,
        keep_alive: bool,
        home: Arc<BackendConns>,
    ) -> Self {
        let state = match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => BodyState::Done,
            BodyFraming::Length(n) => BodyState::Length(n),
            BodyFraming::Chunked => BodyState::Chunked(ChunkedDecoder::new()),
            BodyFraming::UntilClose => BodyState::UntilClose,
        };
        let mut this = Self {
            conn: Some(conn),
            state,
            keep_alive,
            home,
        };
        if matches!(this.state, BodyState::Done) {
            this.finish();
        }
        this
    }

    /// The body is over: the connection goes home if it can take another request.
    fn finish(&mut self) {
        self.state = BodyState::Done;
        if let Some(conn) = self.conn.take() {
            // Not reused: the response said close, the request body is not all out, or bytes
            // came past the response (the backend is not speaking HTTP/1.1 as it should).
            if self.keep_alive && conn.read_buf.is_empty() && conn.upload.is_none() {
                self.home.release(conn);
            }
        }
    }

    fn fail(&mut self, err: UpstreamError) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        self.state = BodyState::Done;
        self.conn = None;
        Poll::Ready(Some(Err(err)))
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = self.get_mut();
        if let Some(conn) = this.conn.as_mut().filter(|c| c.upload.is_some()) {
            // The backend answered before the request body was all out: the rest goes out
            // as the response comes in (an echo streams both ways).
            if let Poll::Ready(Err(err)) = conn.poll_send(cx) {
                tracing::debug!(error = %ErrorChain(&err), "request body cut short after the backend answered");
                conn.upload = None;
                this.keep_alive = false;
            }
        }
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.state {
                BodyState::Done => return Poll::Ready(None),
                BodyState::Length(left) => {
                    if !conn.read_buf.is_empty() {
                        let take = conn
                            .read_buf
                            .len()
                            .min(usize::try_from(*left).unwrap_or(usize::MAX));
                        let data = conn.read_buf.split_to(take).freeze();
                        *left -= take as u64;
                        if *left == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                BodyState::Chunked(decoder) => match decoder.decode(&mut conn.read_buf) {
                    Ok(Chunk::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Chunk::Trailers(trailers)) => {
                        // The trailer section ends the body (with its blank line): hyper's
                        // server does not poll again after trailers, so the connection goes
                        // home now.
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Chunk::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Chunk::NeedMore) => {}
                    Err(e) => return this.fail(UpstreamError::Response(e)),
                },
                BodyState::UntilClose => {
                    if !conn.read_buf.is_empty() {
                        let data = conn.read_buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match ready!(conn.poll_read(cx)) {
                Ok(0) if matches!(this.state, BodyState::UntilClose) => {
                    this.state = BodyState::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(UpstreamError::Closed),
                Ok(_) => {}
                Err(err) => return this.fail(UpstreamError::Read(err)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, BodyState::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            BodyState::Done => SizeHint::with_exact(0),
            BodyState::Length(n) => SizeHint::with_exact(*n),
            BodyState::Chunked(decoder) => {
                let mut hint = SizeHint::new();
                hint.set_lower(decoder.in_chunk());
                hint
            }
            BodyState::UntilClose => SizeHint::new(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
