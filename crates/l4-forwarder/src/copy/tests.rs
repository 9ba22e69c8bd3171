use super::*;
use std::future::Future;
use std::pin::Pin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A connected pair of loopback sockets.
async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (b, _) = l.accept().await.unwrap();
    (a, b)
}

fn options(idle_secs: u64, splice: bool) -> CopyOptions {
    CopyOptions {
        idle_timeout: Duration::from_secs(idle_secs),
        splice,
    }
}

/// Starts a copy between a fresh client pair and backend pair; returns the client's and the
/// backend's own ends and the copy task (with the counters' totals).
async fn copying(
    options: CopyOptions,
) -> (
    TcpStream,
    TcpStream,
    tokio::task::JoinHandle<Result<(u64, u64), String>>,
) {
    let (client_side, mut client) = pair().await;
    let (mut backend, backend_side) = pair().await;
    let copier = tokio::spawn(async move {
        let (bin, bout) = (Counter::noop(), Counter::noop());
        copy_both_ways(&mut client, &mut backend, options, &bin, &bout)
            .await
            .map_err(|e| format!("{e:?}"))
    });
    (client_side, backend_side, copier)
}

/// `f`, which must finish within 5 s: a lost wake-up fails the test instead of hanging it.
async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing moved for 5 s"))
}

/// Bytes that differ from one position to the next, so a lost or repeated chunk shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Pipes this thread's pool got back: with splice on, proof that chunks went through pipes
/// (the copy task runs on the test's current-thread runtime, so it uses this thread's pool).
#[cfg(target_os = "linux")]
fn assert_pipes_used(splice: bool) {
    if splice {
        assert!(pipes::pooled_pipes() > 0, "no chunk went through a pipe");
    } else {
        assert_eq!(pipes::pooled_pipes(), 0, "the copy path used a pipe");
    }
}

#[cfg(not(target_os = "linux"))]
fn assert_pipes_used(_splice: bool) {}

/// Enough bytes that the direction counts as bulk and, with splice on, switches to pipes.
const BULK: usize = 300 * 1024;

async fn copies_both_ways_and_forwards_half_close(splice: bool) {
    let (mut client_side, mut backend_side, copier) = copying(options(60, splice)).await;
    let up = pattern(BULK, 1);
    let down = pattern(BULK, 2);
    let sent = up.clone();
    let writer = tokio::spawn(async move {
        client_side.write_all(&sent).await.unwrap();
        client_side.shutdown().await.unwrap();
        client_side
    });
    let mut got = Vec::new();
    backend_side.read_to_end(&mut got).await.unwrap();
    assert!(got == up, "client -> backend altered");
    let mut client_side = writer.await.unwrap();
    // The other direction still works after the half-close, and ends with its own.
    backend_side.write_all(&down).await.unwrap();
    backend_side.shutdown().await.unwrap();
    let mut got = Vec::new();
    client_side.read_to_end(&mut got).await.unwrap();
    assert!(got == down, "backend -> client altered");
    assert_eq!(copier.await.unwrap(), Ok((BULK as u64, BULK as u64)));
    assert_pipes_used(splice);
}

#[tokio::test]
async fn copy_path_copies_both_ways_and_forwards_half_close() {
    within(
        "the whole test",
        copies_both_ways_and_forwards_half_close(false),
    )
    .await;
}

#[tokio::test]
async fn splice_path_copies_both_ways_and_forwards_half_close() {
    within(
        "the whole test",
        copies_both_ways_and_forwards_half_close(true),
    )
    .await;
}

/// Many request/response exchanges on one connection, as keep-alive HTTP does: every reply
/// must come through without waiting for more bytes (a lost wake-up would hang here).
async fn ping_pong_exchanges(splice: bool) {
    let (mut client_side, mut backend_side, copier) = copying(options(60, splice)).await;
    // Bulk first, so that with splice on the first small replies go through a pipe too.
    let bulk = pattern(BULK, 3);
    let mut got = vec![0u8; BULK];
    let (wrote, read) = tokio::join!(
        backend_side.write_all(&bulk),
        client_side.read_exact(&mut got)
    );
    wrote.unwrap();
    read.unwrap();
    assert!(got == bulk, "bulk altered");
    let mut buf = [0u8; 64];
    let (mut sent_up, mut sent_down) = (0, BULK as u64);
    for i in 0..500u32 {
        let request = format!("request {i}");
        sent_up += request.len() as u64;
        client_side.write_all(request.as_bytes()).await.unwrap();
        within(
            "request",
            backend_side.read_exact(&mut buf[..request.len()]),
        )
        .await
        .unwrap();
        assert_eq!(&buf[..request.len()], request.as_bytes());
        let reply = format!("reply {i}");
        sent_down += reply.len() as u64;
        backend_side.write_all(reply.as_bytes()).await.unwrap();
        within("reply", client_side.read_exact(&mut buf[..reply.len()]))
            .await
            .unwrap();
        assert_eq!(&buf[..reply.len()], reply.as_bytes());
    }
    client_side.shutdown().await.unwrap();
    assert_eq!(within("FIN", backend_side.read(&mut buf)).await.unwrap(), 0);
    backend_side.shutdown().await.unwrap();
    assert_eq!(within("FIN", client_side.read(&mut buf)).await.unwrap(), 0);
    assert_eq!(copier.await.unwrap(), Ok((sent_up, sent_down)));
    assert_pipes_used(splice);
}

#[tokio::test]
async fn copy_path_serves_many_small_exchanges() {
    within("the whole test", ping_pong_exchanges(false)).await;
}

#[tokio::test]
async fn splice_path_serves_many_small_exchanges() {
    within("the whole test", ping_pong_exchanges(true)).await;
}

/// A chunk with the sender's FIN right behind it, on both directions, a hundred times: the
/// short read that clears the readiness must not lose the end of the stream (which epoll may
/// report with the bytes, or just after them). A lost FIN would leave `read_to_end` waiting;
/// each wait is bounded.
#[tokio::test]
async fn a_fin_right_behind_a_small_chunk_ends_the_direction() {
    /// Writes `text` and the FIN behind it on `from`; `to` reads it all, up to the end.
    async fn send_and_end(from: &mut TcpStream, to: &mut TcpStream, text: &str, what: &str) {
        from.write_all(text.as_bytes()).await.unwrap();
        from.shutdown().await.unwrap();
        let mut got = Vec::new();
        within(what, to.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, text.as_bytes());
    }
    for i in 0..100u32 {
        let (mut client_side, mut backend_side, copier) = copying(options(60, false)).await;
        let request = format!("request {i}");
        send_and_end(
            &mut client_side,
            &mut backend_side,
            &request,
            "the client's FIN",
        )
        .await;
        let reply = format!("reply {i}");
        send_and_end(
            &mut backend_side,
            &mut client_side,
            &reply,
            "the backend's FIN",
        )
        .await;
        let counts = (request.len() as u64, reply.len() as u64);
        assert_eq!(within("the copy's end", copier).await.unwrap(), Ok(counts));
    }
}

/// Polls `inner` with the task's coop budget used up on every other poll, so that half the
/// time its readiness polls return Pending for the budget, registering no waker.
struct Starved<F> {
    inner: Pin<Box<F>>,
    starve: bool,
}

impl<F: Future> Future for Starved<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.starve = !self.starve;
        if self.starve {
            // (Bounded: under an unconstrained budget poll_proceed is always Ready.)
            for _ in 0..1024 {
                match tokio::task::coop::poll_proceed(cx) {
                    Poll::Ready(restore) => restore.made_progress(),
                    Poll::Pending => break,
                }
            }
        }
        self.inner.as_mut().poll(cx)
    }
}

/// Exchanges through a copy whose task runs out of coop budget every other poll: a Pending
/// for the budget registers no waker for the sockets, so a copy that took it for a wait on
/// them (and skipped the next readiness poll) would never be woken by its next bytes. Each
/// wait is bounded; a lost wake-up fails by timeout.
#[tokio::test]
async fn a_copy_out_of_coop_budget_loses_no_wake_up() {
    let (mut client_side, mut client) = pair().await;
    let (mut backend, mut backend_side) = pair().await;
    let copier = tokio::spawn(Starved {
        inner: Box::pin(async move {
            let (bin, bout) = (Counter::noop(), Counter::noop());
            copy_both_ways(&mut client, &mut backend, options(60, false), &bin, &bout)
                .await
                .map_err(|e| format!("{e:?}"))
        }),
        starve: false,
    });
    let mut buf = [0u8; 64];
    for i in 0..300u32 {
        let request = format!("request {i}");
        client_side.write_all(request.as_bytes()).await.unwrap();
        let got = &mut buf[..request.len()];
        within("request", backend_side.read_exact(got))
            .await
            .unwrap();
        assert_eq!(got, request.as_bytes());
        let reply = format!("reply {i}");
        backend_side.write_all(reply.as_bytes()).await.unwrap();
        let got = &mut buf[..reply.len()];
        within("reply", client_side.read_exact(got)).await.unwrap();
        assert_eq!(got, reply.as_bytes());
    }
    drop((client_side, backend_side));
    within("the copy's end", copier).await.unwrap().unwrap();
}

async fn large_transfer_with_a_slow_reader(splice: bool) {
    let (mut client_side, mut backend_side, copier) = copying(options(60, splice)).await;
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
        // A reader slower than the writer: backpressure holds the chunk in flight.
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
    assert_pipes_used(splice);
}

#[tokio::test]
async fn copy_path_large_transfer_arrives_intact_with_a_slow_reader() {
    within("the whole test", large_transfer_with_a_slow_reader(false)).await;
}

#[tokio::test]
async fn splice_path_large_transfer_arrives_intact_with_a_slow_reader() {
    within("the whole test", large_transfer_with_a_slow_reader(true)).await;
}

async fn idle_connection_times_out(splice: bool) {
    let (_client_side, mut client) = pair().await;
    let (mut backend, _backend_side) = pair().await;
    let (bin, bout) = (Counter::noop(), Counter::noop());
    let started = Instant::now();
    let r = copy_both_ways(&mut client, &mut backend, options(10, splice), &bin, &bout).await;
    assert!(matches!(r, Err(CopyError::Idle)));
    assert_eq!(started.elapsed().as_secs(), 10);
}

#[tokio::test(start_paused = true)]
async fn copy_path_idle_connection_times_out() {
    idle_connection_times_out(false).await;
}

#[tokio::test(start_paused = true)]
async fn splice_path_idle_connection_times_out() {
    idle_connection_times_out(true).await;
}

/// Bytes moving keep the connection open; the timeout counts from the last chunk.
async fn activity_postpones_the_idle_timeout(splice: bool) {
    let (mut client_side, mut backend_side, copier) = copying(options(10, splice)).await;
    let started = Instant::now();
    let mut buf = [0u8; 4];
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        client_side.write_all(b"tick").await.unwrap();
        backend_side.read_exact(&mut buf).await.unwrap();
    }
    let r = copier.await.unwrap();
    assert_eq!(r, Err("Idle".to_owned()));
    // Last chunk at 18 s, so the timeout is at 28 s, not at 10 s or 20 s.
    assert_eq!(started.elapsed().as_secs(), 28);
}

#[tokio::test(start_paused = true)]
async fn copy_path_activity_postpones_the_idle_timeout() {
    activity_postpones_the_idle_timeout(false).await;
}

#[tokio::test(start_paused = true)]
async fn splice_path_activity_postpones_the_idle_timeout() {
    activity_postpones_the_idle_timeout(true).await;
}

#[test]
fn buffers_return_to_a_bounded_pool() {
    let taken: Vec<PooledBuf> = (0..20).map(|_| PooledBuf::take()).collect();
    drop(taken);
    assert_eq!(
        buffers::pooled_buffers(),
        buffers::POOLED_BUFFERS_PER_THREAD
    );
    let mut b = PooledBuf::take();
    assert_eq!(b.bytes().len(), buffers::COPY_BUF);
}

/// The copy holds no buffer and no pipe while the connection is idle: what it took for a
/// chunk is back in the pool once the chunk is through.
async fn an_idle_connection_holds_nothing(splice: bool) {
    // The copy task runs on this current-thread runtime, so it uses this thread's pools.
    let pooled = || {
        #[cfg(target_os = "linux")]
        if splice {
            return pipes::pooled_pipes();
        }
        buffers::pooled_buffers()
    };
    let before = pooled();
    let (mut client_side, mut backend_side, copier) = copying(options(60, splice)).await;
    // Bulk both ways first: with splice on, both directions now splice.
    let bulk = pattern(BULK, 4);
    let mut got = vec![0u8; BULK];
    for _ in 0..2 {
        let (wrote, read) = tokio::join!(
            client_side.write_all(&bulk),
            backend_side.read_exact(&mut got)
        );
        wrote.unwrap();
        read.unwrap();
        let (wrote, read) = tokio::join!(
            backend_side.write_all(&bulk),
            client_side.read_exact(&mut got)
        );
        wrote.unwrap();
        read.unwrap();
        tokio::task::yield_now().await;
        // Taken (from the pool, or new when it was empty) and given back: none is held.
        assert_eq!(pooled(), before.max(1));
    }
    let mut buf = [0u8; 5];
    for _ in 0..3 {
        client_side.write_all(b"hello").await.unwrap();
        backend_side.read_exact(&mut buf).await.unwrap();
        backend_side.write_all(b"world").await.unwrap();
        client_side.read_exact(&mut buf).await.unwrap();
        tokio::task::yield_now().await;
        // One was taken (from the pool, or new when it was empty) and given back.
        assert_eq!(pooled(), before.max(1));
    }
    drop(client_side);
    drop(backend_side);
    let _ = copier.await.unwrap();
}

#[tokio::test]
async fn copy_path_idle_connection_holds_no_buffer() {
    within("the whole test", an_idle_connection_holds_nothing(false)).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn splice_path_idle_connection_holds_no_pipe() {
    within("the whole test", an_idle_connection_holds_nothing(true)).await;
}

/// Without pipes (EMFILE), a splice listener copies through buffers instead.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn splice_falls_back_to_the_buffer_copy_without_pipes() {
    pipes::simulate_pipe_shortage();
    let (mut client_side, mut backend_side, copier) = copying(options(60, true)).await;
    let data = pattern(3 * BULK, 5);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        client_side.write_all(&sent).await.unwrap();
        client_side.shutdown().await.unwrap();
        client_side
    });
    let mut got = Vec::new();
    within("the transfer", backend_side.read_to_end(&mut got))
        .await
        .unwrap();
    assert!(got == data, "the transfer was altered");
    backend_side.shutdown().await.unwrap();
    drop(writer.await.unwrap());
    let copied = within("the copy's end", copier).await.unwrap();
    assert_eq!(copied, Ok((3 * BULK as u64, 0)));
    assert_eq!(pipes::pooled_pipes(), 0, "no pipe was created");
}

#[test]
fn bulk_starts_with_a_large_chunk_and_ends_after_small_ones() {
    let mut bulk = Bulk::default();
    bulk.record(SPLICE_MIN_CHUNK - 1);
    assert!(!bulk.splicing, "small chunks are copied");
    bulk.record(SPLICE_MIN_CHUNK);
    assert!(bulk.splicing);
    // A large response followed by its small tail, again and again, keeps splicing.
    for _ in 0..10 {
        bulk.record(100);
        bulk.record(SPLICE_MIN_CHUNK * 4);
        assert!(bulk.splicing);
    }
    for _ in 1..SMALL_CHUNKS_TO_STOP_SPLICING {
        bulk.record(100);
    }
    assert!(bulk.splicing);
    bulk.record(100);
    assert!(!bulk.splicing, "small chunks in a row go back to the copy");
}
