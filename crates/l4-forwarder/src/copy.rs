//! Copy both ways with an idle timeout, counting bytes live into pre-registered counters.
//!
//! One future drives both directions of a connection, each a small state machine ([`Half`]):
//! wait until the source is readable holding nothing, take a 64 KiB buffer (or, with
//! `splice`, a pipe) from a per-thread pool, move one chunk, give it back once the chunk is
//! written. An idle connection therefore costs its two sockets and a small task, not 128 KiB of
//! buffers (HAProxy's buffer pools work the same way).
//!
//! Per chunk this makes the fewest syscalls a readiness-based proxy can: one read and one
//! write. A read that returns less than the buffer proves the socket drained (epoll is
//! edge-triggered), so the direction goes back to waiting without a read that would only get
//! EAGAIN; the idle timer is one timer entry per connection, re-armed only when it fires.
//! Readiness is polled once per chunk (before the read): the read and the write test it with
//! one atomic load each (`try_io`), where `poll_read` and `poll_write` would poll it again
//! (about 11% of the user-space instructions of a 100-byte L4 request). A chunk therefore takes
//! one unit of tokio's coop budget, not three: a busy connection yields to the others after
//! 128 chunks.

mod buffers;
#[cfg(target_os = "linux")]
mod pipes;
#[cfg(test)]
mod tests;

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use metrics::Counter;
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use buffers::PooledBuf;

/// A direction with `splice` on moves a chunk through a pipe only once it carries bulk: a
/// pipe round trip costs three syscalls (into the pipe, out of it, and the attempt that finds
/// the socket empty: a short splice does not prove the socket drained, as a short read does)
/// where a buffered chunk costs two, and what it saves, two copies through user space, is
/// worth it only for large chunks. A chunk this large switches the direction to splice...
const SPLICE_MIN_CHUNK: usize = 16 * 1024;
/// ... and this many smaller chunks in a row switch it back to the buffer copy.
const SMALL_CHUNKS_TO_STOP_SPLICING: u8 = 4;
/// Whether a read shorter than the buffer proves the socket drained, and a partial write the
/// send buffer full: true with edge-triggered selectors (epoll, kqueue), the same condition
/// under which tokio's own `poll_read` and `poll_write` make this inference. Elsewhere the
/// readiness is cleared only by WouldBlock. (The copy reads and writes sockets directly inside
/// `try_io`, which is right for edge-triggered selectors only: mio's level-triggered poll(2)
/// selector, `mio_unsupported_force_poll_poll`, re-arms a socket only in mio's own I/O calls.
/// The splice path has always done so too.)
const SHORT_IO_CLEARS_READINESS: bool = cfg!(all(
    not(mio_unsupported_force_poll_poll),
    any(
        target_os = "android",
        target_os = "illumos",
        target_os = "linux",
        target_os = "redox",
        target_os = "dragonfly",
        target_os = "freebsd",
        target_vendor = "apple",
        target_os = "netbsd",
        target_os = "openbsd",
    )
));
/// The idle timer is armed at most this far ahead (then re-armed), so that no idle_timeout,
/// however long, overflows the clock.
const LONGEST_TIMER: Duration = Duration::from_secs(365 * 24 * 3600);

/// How a connection's bytes are moved.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// Close the connection when no byte moved either way for this long.
    pub idle_timeout: Duration,
    /// Move bulk with splice(2) through a pooled pipe instead of a user-space buffer (Linux;
    /// elsewhere, or when no pipe can be had, the buffer copy is used). Small chunks are
    /// copied either way (see `SPLICE_MIN_CHUNK`).
    pub splice: bool,
}

/// Copies client <-> backend until both directions are closed, forwarding half-closes, or until
/// neither side has sent a byte for `options.idle_timeout`. Returns the bytes copied
/// (client->backend, backend->client) or why it stopped early.
pub async fn copy_both_ways(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    options: CopyOptions,
    bytes_in: &Counter,
    bytes_out: &Counter,
) -> Result<(u64, u64), CopyError> {
    // The clock is tokio's, so tests can pause time.
    let mut activity = Activity {
        last: Instant::now(),
    };
    let mut up = Half::new(options.splice, bytes_in);
    let mut down = Half::new(options.splice, bytes_out);
    let idle = tokio::time::sleep(options.idle_timeout);
    tokio::pin!(idle);
    let mut timer_polled = false;
    poll_fn(|cx| {
        let moved_before = up.delivered.total + down.delivered.total;
        if !up.done {
            if let Poll::Ready(Err(err)) = up.poll(cx, client, backend, &mut activity) {
                return Poll::Ready(Err(CopyError::Io(err)));
            }
        }
        if !down.done {
            if let Poll::Ready(Err(err)) = down.poll(cx, backend, client, &mut activity) {
                return Poll::Ready(Err(CopyError::Io(err)));
            }
        }
        if up.done && down.done {
            return Poll::Ready(Ok((up.delivered.total, down.delivered.total)));
        }
        // The timer fires at most once per `idle_timeout`; when bytes moved in between, it is
        // re-armed for the rest of the period since the last chunk. Once polled, it keeps this
        // task's waker: a wake-up that moved bytes need not poll it again unless it fired.
        let moved = up.delivered.total + down.delivered.total != moved_before;
        if timer_polled && moved && !idle.is_elapsed() {
            return Poll::Pending;
        }
        timer_polled = true;
        while idle.as_mut().poll(cx).is_ready() {
            let quiet = activity.last.elapsed();
            if quiet >= options.idle_timeout {
                return Poll::Ready(Err(CopyError::Idle));
            }
            let rest = (options.idle_timeout - quiet).min(LONGEST_TIMER);
            idle.as_mut().reset(Instant::now() + rest);
        }
        Poll::Pending
    })
    .await
}

#[derive(Debug)]
pub enum CopyError {
    Io(io::Error),
    Idle,
}

/// When the last chunk moved. Read from the clock once per chunk, turned into a duration only
/// when the idle timer fires.
struct Activity {
    last: Instant,
}

impl Activity {
    fn touch(&mut self) {
        self.last = Instant::now();
    }
}

/// One direction: chunks from `src` to `dst` until `src` ends, then the write half of `dst` is
/// shut down (the half-close travels on) and the other direction goes on alone.
struct Half<'c> {
    /// The chunk read and not yet written, if any.
    in_flight: InFlight,
    /// Some when splice is on: whether the traffic is bulk right now.
    bulk: Option<Bulk>,
    delivered: Delivered<'c>,
    done: bool,
}

/// Whether a direction carries bulk, from the size of its last chunks.
#[derive(Debug, Default)]
struct Bulk {
    splicing: bool,
    small_in_a_row: u8,
}

impl Bulk {
    fn record(&mut self, chunk: usize) {
        if chunk >= SPLICE_MIN_CHUNK {
            self.splicing = true;
            self.small_in_a_row = 0;
        } else if self.splicing {
            self.small_in_a_row += 1;
            if self.small_in_a_row >= SMALL_CHUNKS_TO_STOP_SPLICING {
                *self = Bulk::default();
            }
        }
    }
}

/// Bytes written to the destination so far, also counted live into the listener's counter.
struct Delivered<'c> {
    counter: &'c Counter,
    total: u64,
}

impl Delivered<'_> {
    fn add(&mut self, n: usize, activity: &mut Activity) {
        self.counter.increment(n as u64);
        self.total += n as u64;
        activity.touch();
    }
}

enum InFlight {
    Nothing,
    Buffer {
        buf: PooledBuf,
        written: usize,
        len: usize,
    },
    #[cfg(target_os = "linux")]
    Pipe(pipes::PipeChunk),
}

impl<'c> Half<'c> {
    fn new(splice: bool, counter: &'c Counter) -> Self {
        Self {
            in_flight: InFlight::Nothing,
            bulk: (splice && cfg!(target_os = "linux")).then(Bulk::default),
            delivered: Delivered { counter, total: 0 },
            done: false,
        }
    }

    /// Moves chunks until `src` has nothing more for now (Pending) or has ended (Ready(Ok)).
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut TcpStream,
        dst: &mut TcpStream,
        activity: &mut Activity,
    ) -> Poll<io::Result<()>> {
        loop {
            match &mut self.in_flight {
                InFlight::Buffer { buf, written, len } => {
                    while *written < *len {
                        let chunk = &buf.bytes()[*written..*len];
                        let n = ready!(write_chunk(cx, dst, chunk))?;
                        *written += n;
                        self.delivered.add(n, activity);
                    }
                    self.in_flight = InFlight::Nothing;
                }
                #[cfg(target_os = "linux")]
                InFlight::Pipe(pipe) => {
                    while pipe.len() > 0 {
                        ready!(dst.poll_write_ready(cx))?;
                        match dst.try_io(Interest::WRITABLE, || pipe.drain_to(&*dst)) {
                            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                            Ok(n) => self.delivered.add(n, activity),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Poll::Ready(Err(e)),
                        }
                    }
                    self.in_flight = InFlight::Nothing;
                }
                InFlight::Nothing => {
                    // Nothing is held while waiting for the next chunk.
                    ready!(src.poll_read_ready(cx))?;
                    let n = match self.read_chunk(src) {
                        // The readiness was stale and is now cleared: wait again.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        read => read?,
                    };
                    if n == 0 {
                        // The peer may already be gone; its own direction reports that.
                        let _ = SockRef::from(&*dst).shutdown(Shutdown::Write);
                        self.done = true;
                        return Poll::Ready(Ok(()));
                    }
                    if let Some(bulk) = &mut self.bulk {
                        bulk.record(n);
                    }
                }
            }
        }
    }

    /// Reads one chunk from a readable `src` into a pooled pipe or buffer, left in
    /// `self.in_flight`. Ok(0) is end of stream; WouldBlock means the readiness was stale (and
    /// is now cleared).
    fn read_chunk(&mut self, src: &TcpStream) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        if self.bulk.as_ref().is_some_and(|b| b.splicing) {
            if let Some(mut pipe) = pipes::PipeChunk::take() {
                // On WouldBlock, try_io clears the readiness and the empty pipe goes back to the
                // pool. (A short splice proves nothing: the pipe may have run out of page slots.)
                let n = src.try_io(Interest::READABLE, || pipe.fill_from(src));
                if matches!(n, Ok(n) if n > 0) {
                    self.in_flight = InFlight::Pipe(pipe);
                }
                return n;
            }
            // No pipe to be had: this chunk is copied.
        }
        let mut buf = PooledBuf::take();
        let len = read_drained(src, buf.bytes())?;
        if len > 0 {
            self.in_flight = InFlight::Buffer {
                buf,
                written: 0,
                len,
            };
        }
        Ok(len)
    }
}

/// One read from a socket `poll_read_ready` has just found readable, without the second
/// readiness poll (coop budget, readiness load, waker check) that `poll_read` would make.
/// WouldBlock means the readiness was stale (and is now cleared).
fn read_drained(src: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let sock = SockRef::from(src);
    let len = buf.len();
    io_clearing_when_short(src, Interest::READABLE, len, || (&*sock).read(buf))
}

/// Writes what it can of `chunk` to `dst`: straight away when tokio last saw `dst` writable
/// (one readiness load, where `poll_write` polls it with the coop budget and the waker),
/// else once `poll_write_ready` says so. Never returns Ready(Ok(0)).
fn write_chunk(cx: &mut Context<'_>, dst: &TcpStream, chunk: &[u8]) -> Poll<io::Result<usize>> {
    let sock = SockRef::from(dst);
    loop {
        match io_clearing_when_short(dst, Interest::WRITABLE, chunk.len(), || {
            (&*sock).write(chunk)
        }) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => return Poll::Ready(Ok(n)),
            // Not writable (or no longer: the readiness is now cleared): wait, then try again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(dst.poll_write_ready(cx))?,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// `io`, one read or write of at most `len` bytes on `stream`, inside `try_io` (which runs it
/// only if tokio last saw the readiness of `interest` set, and clears that readiness when it
/// returns WouldBlock). A read shorter than `len` proves the socket drained, a write shorter
/// than `len` the send buffer full (epoll is edge-triggered): the readiness is cleared then
/// too, as tokio's own `poll_read` and `poll_write` do, so the next wait costs no syscall that
/// could only return EAGAIN. `try_io` clears only on WouldBlock, so a short count is reported
/// to it that way and handed out beside it. A peer's FIN is a readiness of its own that
/// clearing keeps, so the read that returns 0 still comes.
fn io_clearing_when_short(
    stream: &TcpStream,
    interest: Interest,
    len: usize,
    io: impl FnOnce() -> io::Result<usize>,
) -> io::Result<usize> {
    let mut short = 0;
    let done = stream.try_io(interest, || {
        let n = io()?;
        if SHORT_IO_CLEARS_READINESS && n > 0 && n < len {
            short = n;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match done {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => Ok(short),
        done => done,
    }
}
