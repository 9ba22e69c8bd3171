//! splice(2) plumbing (Linux): a chunk moves socket -> pipe -> socket inside the kernel, never
//! copied through user space. Pipes are pooled per worker thread like the copy buffers and held
//! by a connection only while bytes sit in them, so an idle connection holds no pipe (and no
//! descriptor beyond its two sockets). rustix's `splice` is a safe function: no `unsafe` here.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use net_core::clock;
use rustix::pipe::{PipeFlags, SpliceFlags};

/// Most bytes one splice moves into a pipe: a Linux pipe's default capacity (16 page slots,
/// 64 KiB), the size of a copy buffer, so a stalled connection holds no more in a pipe than it
/// would in a buffer. (A 256 KiB pipe, set with F_SETPIPE_SZ, made 35% fewer splices per 64 KiB
/// response but saved no measurable CPU.)
const PIPE_CAPACITY: usize = 64 * 1024;
/// Free pipes kept per worker thread (two descriptors each).
pub(super) const POOLED_PIPES_PER_THREAD: usize = 16;
/// After pipe creation fails (EMFILE, ENFILE, ENOMEM), this thread copies through buffers and
/// does not try again for this long, so a descriptor shortage costs no failing syscall per chunk.
const RETRY_AFTER_FAILURE_MS: u64 = 1_000;

const FLAGS: SpliceFlags = SpliceFlags::NONBLOCK.union(SpliceFlags::MOVE);

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
    /// `clock::now_millis()` before which this thread does not try to create pipes.
    static NO_PIPES_UNTIL: Cell<u64> = const { Cell::new(0) };
}

/// A pipe from this thread's pool and the bytes in it. Dropped empty, it goes back to the pool
/// of the thread that drops it; dropped with bytes in it (the connection ended mid-chunk), it is
/// closed, so a pooled pipe is always empty.
pub(super) struct PipeChunk {
    /// Always Some until dropped.
    pipe: Option<Pipe>,
    len: usize,
}

impl PipeChunk {
    /// An empty pipe, or None when none can be had right now (the caller copies through a
    /// buffer instead).
    pub(super) fn take() -> Option<Self> {
        let pipe = match POOL.with(|p| p.borrow_mut().pop()) {
            Some(pipe) => pipe,
            None => new_pipe()?,
        };
        Some(Self {
            pipe: Some(pipe),
            len: 0,
        })
    }

    /// Bytes in the pipe, not yet written out.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn pipe(&self) -> io::Result<&Pipe> {
        self.pipe
            .as_ref()
            .ok_or_else(|| io::Error::other("pipe already returned"))
    }

    /// Moves what `src` has (up to the pipe's capacity) into the pipe; Ok(0) is end of stream.
    /// Only called on an empty pipe, so WouldBlock means `src` has nothing to read.
    pub(super) fn fill_from(&mut self, src: impl AsFd) -> io::Result<usize> {
        debug_assert_eq!(self.len, 0);
        let n = rustix::pipe::splice(src, None, &self.pipe()?.write, None, PIPE_CAPACITY, FLAGS)?;
        self.len = n;
        Ok(n)
    }

    /// Moves bytes from the pipe to `dst`; returns how many (WouldBlock: `dst` is full).
    pub(super) fn drain_to(&mut self, dst: impl AsFd) -> io::Result<usize> {
        let n = rustix::pipe::splice(&self.pipe()?.read, None, dst, None, self.len, FLAGS)?;
        self.len -= n;
        Ok(n)
    }
}

impl Drop for PipeChunk {
    fn drop(&mut self) {
        if self.len > 0 {
            return; // closing the pipe discards the bytes of a connection that ended
        }
        if let Some(pipe) = self.pipe.take() {
            POOL.with(|p| {
                let mut pool = p.borrow_mut();
                if pool.len() < POOLED_PIPES_PER_THREAD {
                    pool.push(pipe);
                }
            });
        }
    }
}

/// A new non-blocking pipe, or None (and no new attempt on this thread for
/// `RETRY_AFTER_FAILURE_MS`) when there is none to have.
fn new_pipe() -> Option<Pipe> {
    let now = clock::now_millis();
    if now < NO_PIPES_UNTIL.with(Cell::get) {
        return None;
    }
    match rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK) {
        Ok((read, write)) => Some(Pipe { read, write }),
        Err(err) => {
            NO_PIPES_UNTIL.with(|until| until.set(now + RETRY_AFTER_FAILURE_MS));
            tracing::debug!(error = %err, "no pipe for splice(2); copying through buffers");
            None
        }
    }
}

#[cfg(test)]
pub(super) fn pooled_pipes() -> usize {
    POOL.with(|p| p.borrow().len())
}

/// Makes this thread behave as if pipes could not be created (EMFILE) from now on, for tests
/// of the fallback: empties the pool and blocks creation.
#[cfg(test)]
pub(super) fn simulate_pipe_shortage() {
    POOL.with(|p| p.borrow_mut().clear());
    NO_PIPES_UNTIL.with(|until| until.set(u64::MAX));
}
