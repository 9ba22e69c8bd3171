//! `header_timeout` for client connections: a client gets `header_timeout` to send each
//! request head, counted from the start of the connection for the first one and from the end
//! of the previous response for the next ones (so it also bounds how long a kept-alive
//! HTTP/1.1 connection may sit idle). A connection that misses it is closed.
//!
//! hyper's own header timer costs a boxed timer, armed and cancelled, per request. Here one
//! timer per connection does it: requests only mark, with plain stores, when they start and end
//! ([`HeadClock`]), and the timer moves only when it fires, which on a busy connection is once
//! per `header_timeout`, not once per request. HTTP/2 connections (seen by their preface) and
//! upgraded ones (WebSocket) have no heads to wait for: the clock is turned off.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::proxy::ConnInfo;

/// The state of a [`HeadClock`]: a request is being served (no head is awaited).
const IN_REQUEST: u64 = u64::MAX;
/// The state of a [`HeadClock`]: no heads on this connection (HTTP/2, upgraded).
const OFF: u64 = u64::MAX - 1;
/// The state of a [`HeadClock`]: the connection's first head is awaited (since `base`).
const FRESH: u64 = u64::MAX - 2;
/// How an HTTP/2 connection starts (RFC 9113 §3.4); no HTTP/1 request starts this way. The
/// clock is turned off only once all of it arrived: until then hyper may still be telling the
/// versions apart, and a graceful stop must not take a half-read preface for an HTTP/2
/// connection it can send a GOAWAY on.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// When the connection began waiting for its next request head, if it is waiting.
#[derive(Debug)]
pub(crate) struct HeadClock {
    base: Instant,
    /// Microseconds after `base` since when a head is awaited, or [`FRESH`], [`IN_REQUEST`] or
    /// [`OFF`].
    state: AtomicU64,
}

impl HeadClock {
    /// A clock for a new connection, which waits for its first head from now.
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            state: AtomicU64::new(FRESH),
        }
    }

    /// A request head arrived.
    pub(crate) fn request_started(&self) {
        self.set_unless_off(IN_REQUEST);
    }

    /// A response ended at `now`: the next head is awaited from then.
    pub(crate) fn request_finished(&self, now: Instant) {
        let micros = now.saturating_duration_since(self.base).as_micros();
        self.set_unless_off(u64::try_from(micros).unwrap_or(FRESH - 1).min(FRESH - 1));
    }

    /// No more heads on this connection.
    pub(crate) fn turn_off(&self) {
        self.state.store(OFF, Ordering::Relaxed);
    }

    fn set_unless_off(&self, state: u64) {
        let _ = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (s != OFF).then_some(state)
            });
    }

    /// Whether the connection is still waiting for its first request head: a client that
    /// connected has a request on its way, which a graceful stop should serve, not cut.
    pub(crate) fn is_fresh(&self) -> bool {
        self.state.load(Ordering::Relaxed) == FRESH
    }

    fn is_off(&self) -> bool {
        self.state.load(Ordering::Relaxed) == OFF
    }

    fn waiting_since(&self) -> Option<Instant> {
        match self.state.load(Ordering::Relaxed) {
            IN_REQUEST | OFF => None,
            FRESH => Some(self.base),
            micros => Some(self.base + Duration::from_micros(micros)),
        }
    }
}

/// A client connection's byte stream, failing a read that waits for a head past its deadline.
pub(crate) struct HeadDeadline<I> {
    io: I,
    conn: Arc<ConnInfo>,
    timeout: Duration,
    /// Set no later than the current deadline; moved when it fires.
    timer: Pin<Box<Sleep>>,
    /// How many bytes of [`H2_PREFACE`] the connection began with, until it is known
    /// whether it is HTTP/2; then `None`.
    preface_seen: Option<usize>,
}

impl<I> HeadDeadline<I> {
    pub(crate) fn new(io: I, conn: Arc<ConnInfo>, timeout: Duration) -> Self {
        let first = conn
            .clock
            .waiting_since()
            .unwrap_or_else(Instant::now)
            .checked_add(timeout)
            .unwrap_or_else(far_future);
        Self {
            io,
            conn,
            timeout,
            timer: Box::pin(tokio::time::sleep_until(first)),
            preface_seen: Some(0),
        }
    }

    /// Looks at a connection's first bytes for the HTTP/2 preface.
    fn sniff(&mut self, data: &[u8]) {
        let Some(seen) = self.preface_seen else {
            return;
        };
        let want = &H2_PREFACE[seen..];
        let n = want.len().min(data.len());
        if data[..n] != want[..n] {
            self.preface_seen = None;
        } else if seen + n == H2_PREFACE.len() {
            self.preface_seen = None;
            self.conn.clock.turn_off();
        } else {
            self.preface_seen = Some(seen + n);
        }
    }

    /// Ready with an error once a head is overdue; registers for a wake-up otherwise.
    fn poll_overdue(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let clock = &self.conn.clock;
        if clock.is_off() {
            return Poll::Pending;
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let next = match clock.waiting_since() {
                Some(since) => {
                    let deadline = since.checked_add(self.timeout).unwrap_or_else(far_future);
                    if now >= deadline {
                        return Poll::Ready(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no request head within header_timeout",
                        ));
                    }
                    deadline
                }
                // Serving a request: look again a timeout from now, which is no later than any
                // deadline the next head can get.
                None if clock.is_off() => return Poll::Pending,
                None => now.checked_add(self.timeout).unwrap_or_else(far_future),
            };
            self.timer.as_mut().reset(next);
        }
        Poll::Pending
    }
}

/// A deadline that never comes (a `header_timeout` too large to add).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

impl<I: AsyncRead + Unpin> AsyncRead for HeadDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.preface_seen.is_some() && buf.filled().len() > before {
            this.sniff(&buf.filled()[before..]);
        }
        if polled.is_pending() {
            if let Poll::Ready(err) = this.poll_overdue(cx) {
                return Poll::Ready(Err(err));
            }
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<I> {
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

#[cfg(test)]
mod tests;
