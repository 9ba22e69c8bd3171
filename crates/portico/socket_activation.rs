//! systemd socket activation (`sd_listen_fds(3)`): takes the listening sockets systemd (or
//! `systemd-socket-activate`) passed to this process, so the listener registry can adopt them
//! by address instead of binding.
//!
//! This is the crate's one module allowed `unsafe` (STYLE.md rule 15), for two operations:
//!
//! - `OwnedFd::from_raw_fd` on descriptors 3 .. 3 + `LISTEN_FDS`. Sound because the protocol
//!   hands these descriptors to the process named by `LISTEN_PID` for it to own, we only take
//!   them when `LISTEN_PID` is our pid, nothing else in Portico uses raw descriptors, and a
//!   process-wide flag (`TAKEN`) makes sure each descriptor is taken at most once.
//! - `std::env::remove_var` of `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`, so nothing
//!   started later inherits them. Changing the environment is only sound while no other thread
//!   can read it: [`take`] is called first thing in `serve()`, before logging, metrics and the
//!   tokio runtime exist, and it also checks `/proc/self/task` and leaves the variables alone
//!   (harmless: Portico starts no child processes) unless this is the only thread.
#![allow(unsafe_code)]

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use socket2::{Protocol, Socket, Type};

/// `SD_LISTEN_FDS_START`: the first passed descriptor.
const LISTEN_FDS_START: RawFd = 3;

/// Set by the first call: descriptors are taken once per process.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The listening TCP sockets passed by systemd, with their local addresses; empty when the
/// process was not socket-activated (or on any call after the first). Sockets are
/// non-blocking and close-on-exec. A passed descriptor that is not a listening TCP socket is
/// an error (the `.socket` unit is wrong).
///
/// Call it before any other thread is started (see the module doc).
pub fn take() -> anyhow::Result<Vec<(SocketAddr, TcpListener)>> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    if pid.is_some() || fds.is_some() {
        unset_environment();
    }
    let Some(pid) = pid else {
        return Ok(Vec::new());
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .with_context(|| format!("LISTEN_PID={pid:?} is not a process id"))?;
    if pid != std::process::id() {
        return Ok(Vec::new()); // meant for another process
    }
    let fds = fds.unwrap_or_default();
    let count: RawFd = fds
        .trim()
        .parse()
        .with_context(|| format!("LISTEN_FDS={fds:?} is not a descriptor count"))?;
    let mut sockets = Vec::new();
    for raw in LISTEN_FDS_START..LISTEN_FDS_START.saturating_add(count) {
        // SAFETY: see the module doc: LISTEN_PID names this process, so descriptors 3..3+n
        // were passed to it to own, and TAKEN guarantees this loop runs once per process.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let socket = Socket::from(fd);
        let (addr, listener) =
            adopt(socket).with_context(|| format!("socket activation: descriptor {raw}"))?;
        sockets.push((addr, listener));
    }
    Ok(sockets)
}

/// Checks that `socket` is a listening TCP socket and prepares it like `bind_tcp` does (also
/// used for the sockets a binary upgrade hands over).
pub fn adopt(socket: Socket) -> anyhow::Result<(SocketAddr, TcpListener)> {
    if socket.r#type()? != Type::STREAM
        || socket.protocol()? != Some(Protocol::TCP)
        || !socket.is_listener()?
    {
        bail!("not a listening TCP socket (use ListenStream= in the .socket unit)");
    }
    let addr = socket
        .local_addr()?
        .as_socket()
        .context("not an IPv4 or IPv6 socket")?;
    socket.set_cloexec(true)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    Ok((addr, socket.into()))
}

/// Removes the activation variables, only if this is provably the process's only thread.
fn unset_environment() {
    let single_threaded = std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1);
    if !single_threaded {
        return;
    }
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: no other thread exists (checked just above, and `take` runs before any is
        // started), so nothing reads the environment concurrently.
        unsafe { std::env::remove_var(var) };
    }
}
