//! Copy both ways with an idle timeout, counting bytes live into pre-registered counters.
//!
//! Buffers are taken only while there are bytes to move: each direction waits for its source
//! to become readable holding no buffer, takes a 64 KiB buffer from a per-thread pool, reads
//! and writes one chunk, and gives the buffer back. An idle connection therefore costs its two
//! sockets and a small task, not 128 KiB of buffers (HAProxy's buffer pools work the same way).

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::Counter;
use socket2::SockRef;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Buffer per chunk: 64 KiB copies about 3x faster than tokio's 8 KiB default on loopback
/// (DEPENDENCIES.md §3).
pub const COPY_BUF: usize = 64 * 1024;
/// Free buffers kept per worker thread for the next chunk (8 x 64 KiB = 512 KiB at most).
const POOLED_BUFFERS_PER_THREAD: usize = 8;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A copy buffer from this thread's pool, returned to the pool of the thread that drops it.
struct PooledBuf(Option<Box<[u8]>>);

impl PooledBuf {
    fn take() -> Self {
        let buf = POOL
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_else(|| vec![0u8; COPY_BUF].into_boxed_slice());
        Self(Some(buf))
    }

    fn bytes(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().unwrap_or_default()
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(buf) = self.0.take() {
            POOL.with(|p| {
                let mut pool = p.borrow_mut();
                if pool.len() < POOLED_BUFFERS_PER_THREAD {
                    pool.push(buf);
                }
            });
        }
    }
}

/// Copies client <-> backend until both directions are closed, forwarding half-closes, or until
/// neither side has sent a byte for `idle`. Returns the bytes copied (client->backend,
/// backend->client) or why it stopped early.
pub async fn copy_with_idle_timeout(
    client: &TcpStream,
    backend: &TcpStream,
    idle: Duration,
    bytes_in: &Counter,
    bytes_out: &Counter,
) -> Result<(u64, u64), CopyError> {
    // Milliseconds since `start` of the last chunk in either direction (tokio's clock, so tests
    // can pause time).
    let start = Instant::now();
    let last_activity = AtomicU64::new(0);
    let both = async {
        tokio::try_join!(
            pump(client, backend, bytes_in, start, &last_activity),
            pump(backend, client, bytes_out, start, &last_activity),
        )
    };
    tokio::pin!(both);
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    let mut wait = idle;
    loop {
        tokio::select! {
            done = &mut both => return done.map_err(CopyError::Io),
            () = tokio::time::sleep(wait) => {
                let quiet = millis_since(start).saturating_sub(last_activity.load(Ordering::Relaxed));
                if quiet >= idle_ms {
                    return Err(CopyError::Idle);
                }
                wait = Duration::from_millis(idle_ms - quiet);
            }
        }
    }
}

/// One direction: chunks from `src` to `dst` until `src` ends, then the write half of `dst`
/// is shut down (the half-close travels on) and the other direction goes on alone.
async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    counter: &Counter,
    start: Instant,
    last_activity: &AtomicU64,
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        src.readable().await?;
        let mut buf = PooledBuf::take();
        let n = match src.try_read(buf.bytes()) {
            Ok(0) => {
                drop(buf);
                // The peer may already be gone; its own direction reports that.
                let _ = SockRef::from(dst).shutdown(Shutdown::Write);
                return Ok(total);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut written = 0;
        while written < n {
            dst.writable().await?;
            match dst.try_write(&buf.bytes()[written..n]) {
                Ok(m) => written += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        drop(buf);
        counter.increment(n as u64);
        last_activity.store(millis_since(start), Ordering::Relaxed);
        total += n as u64;
    }
}

fn millis_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
pub enum CopyError {
    Io(io::Error),
    Idle,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair of loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn copies_both_ways_and_forwards_half_close() {
        let (mut client_side, client) = pair().await;
        let (backend, mut backend_side) = pair().await;
        let copier = tokio::spawn(async move {
            let (bin, bout) = (Counter::noop(), Counter::noop());
            copy_with_idle_timeout(&client, &backend, Duration::from_secs(60), &bin, &bout)
                .await
                .map_err(|_| ())
        });
        client_side.write_all(b"ping").await.unwrap();
        client_side.shutdown().await.unwrap();
        let mut got = Vec::new();
        backend_side.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping");
        backend_side.write_all(b"pong").await.unwrap();
        backend_side.shutdown().await.unwrap();
        let mut got = Vec::new();
        client_side.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"pong");
        assert_eq!(copier.await.unwrap(), Ok((4, 4)));
    }

    #[tokio::test]
    async fn a_large_transfer_arrives_intact_with_a_slow_reader() {
        let (mut client_side, client) = pair().await;
        let (backend, mut backend_side) = pair().await;
        let copier = tokio::spawn(async move {
            let (bin, bout) = (Counter::noop(), Counter::noop());
            copy_with_idle_timeout(&client, &backend, Duration::from_secs(60), &bin, &bout)
                .await
                .map_err(|_| ())
        });
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            client_side.write_all(&sent).await.unwrap();
            client_side.shutdown().await.unwrap();
            client_side
        });
        let mut got = Vec::new();
        let mut chunk = [0u8; 1000];
        loop {
            // A reader slower than the writer: backpressure holds the copy's buffer.
            let n = backend_side.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got == data, "the transfer was altered");
        backend_side.shutdown().await.unwrap();
        drop(writer.await.unwrap());
        assert_eq!(copier.await.unwrap(), Ok((3_000_000, 0)));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connection_times_out() {
        let (_client_side, client) = pair().await;
        let (backend, _backend_side) = pair().await;
        let (bin, bout) = (Counter::noop(), Counter::noop());
        let r =
            copy_with_idle_timeout(&client, &backend, Duration::from_secs(10), &bin, &bout).await;
        assert!(matches!(r, Err(CopyError::Idle)));
    }

    #[test]
    fn buffers_return_to_a_bounded_pool() {
        let taken: Vec<PooledBuf> = (0..20).map(|_| PooledBuf::take()).collect();
        drop(taken);
        assert_eq!(POOL.with(|p| p.borrow().len()), POOLED_BUFFERS_PER_THREAD);
        let mut b = PooledBuf::take();
        assert_eq!(b.bytes().len(), COPY_BUF);
    }
}
