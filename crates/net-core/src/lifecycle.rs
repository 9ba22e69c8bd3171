//! Lifecycle primitives shared by every listener: the accept loop's acceptor (stop signal,
//! back-off on accept errors), a resizable connection limit with owned permits, the drain
//! signal (a cancellation token) and the task tracker that a drain waits on.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

pub use tokio_util::sync::CancellationToken;
pub use tokio_util::task::TaskTracker;

/// Back-off after an accept error that is not about one connection (EMFILE, ENOBUFS...),
/// doubling up to the cap.
const ACCEPT_BACKOFF_START: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Hands out a listener's connections until its stop signal. Accept errors never end the
/// loop: those about the connection being accepted (the peer gave up) are skipped at once,
/// the others (out of file descriptors or buffers) are logged and back off, so the loop
/// neither dies nor spins.
pub struct Acceptor<'a> {
    listener: &'a TcpListener,
    stop: &'a CancellationToken,
    name: &'a str,
    backoff: Duration,
}

impl<'a> Acceptor<'a> {
    /// `name` is the listener's, for the log.
    pub fn new(listener: &'a TcpListener, stop: &'a CancellationToken, name: &'a str) -> Self {
        Self {
            listener,
            stop,
            name,
            backoff: ACCEPT_BACKOFF_START,
        }
    }

    /// The next connection, or None once the stop signal is given.
    pub async fn next(&mut self) -> Option<(TcpStream, SocketAddr)> {
        loop {
            let accepted = tokio::select! {
                biased;
                () = self.stop.cancelled() => return None,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok(pair) => {
                    self.backoff = ACCEPT_BACKOFF_START;
                    return Some(pair);
                }
                Err(err) if is_per_connection_error(&err) => {}
                Err(err) => {
                    tracing::warn!(listener = self.name, error = %err, backoff = ?self.backoff, "accept failed; backing off");
                    tokio::select! {
                        () = self.stop.cancelled() => return None,
                        () = tokio::time::sleep(self.backoff) => {}
                    }
                    self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
    }
}

/// Errors that concern only the connection being accepted: the next accept can go on at once.
fn is_per_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// A connection limit whose size can change on reload without touching open connections.
#[derive(Debug)]
pub struct ConnectionLimit {
    active: AtomicUsize,
    max: AtomicUsize,
}

impl ConnectionLimit {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            active: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
        })
    }

    /// Takes a permit, or None when `max` connections are already open.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConnectionPermit> {
        let max = self.max.load(Ordering::Relaxed);
        let prev = self.active.fetch_add(1, Ordering::AcqRel);
        if prev >= max {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnectionPermit {
            limit: Arc::clone(self),
        })
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// A new limit applies to new connections; open ones above it are left to finish.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }
}

/// Holds one slot of a [`ConnectionLimit`] until dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    limit: Arc<ConnectionLimit>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limit.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Waits for every tracked task to finish, up to `grace`. Returns true when all finished.
/// The tracker must be closed (or closed here) so that `wait` can complete.
pub async fn drain(tracker: &TaskTracker, grace: Duration) -> bool {
    tracker.close();
    tokio::time::timeout(grace, tracker.wait()).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_refuses_above_max_and_frees_on_drop() {
        let limit = ConnectionLimit::new(2);
        let a = limit.try_acquire().unwrap();
        let _b = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
        drop(a);
        assert!(limit.try_acquire().is_some());
    }

    #[test]
    fn shrinking_limit_keeps_open_permits() {
        let limit = ConnectionLimit::new(3);
        let permits: Vec<_> = (0..3).map(|_| limit.try_acquire().unwrap()).collect();
        limit.set_max(1);
        assert_eq!(limit.active(), 3);
        assert!(limit.try_acquire().is_none());
        drop(permits);
        assert!(limit.try_acquire().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn drain_times_out_on_stuck_task() {
        let tracker = TaskTracker::new();
        tracker.spawn(std::future::pending::<()>());
        assert!(!drain(&tracker, Duration::from_secs(5)).await);
        let tracker = TaskTracker::new();
        tracker.spawn(async {});
        assert!(drain(&tracker, Duration::from_secs(5)).await);
    }
}
