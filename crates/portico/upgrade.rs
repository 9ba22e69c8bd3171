//! Seamless binary upgrade (DESIGN.md "CLI": `portico run --upgrade`): the running process
//! hands every listening socket (traffic listeners, the admin server and the upgrade socket
//! itself) to the new process over the Unix socket `runtime.upgrade_socket`, with SCM_RIGHTS.
//! Both processes then hold the same kernel sockets, so no connection is refused at any
//! moment: what the old process stops accepting waits in the queue the new one accepts from.
//!
//! The exchange, on one connection; a frame is a 4-byte big-endian length and a JSON body:
//!
//! 1. new -> old: the line [`HELLO`].
//! 2. old -> new: `offer` frames, each carrying up to [`MAX_FDS_PER_FRAME`] descriptors
//!    (SCM_RIGHTS, on the frame's first byte) described in order by its `sockets`, the last
//!    with `more: false`; or one `error` frame.
//! 3. The new process binds whatever else its config needs, starts serving on everything, and
//!    sends `ready`. If it cannot, it exits and the connection closes: the old process logs
//!    it and goes on serving as if nothing happened.
//! 4. old -> new: `draining`; the old process stops accepting and drains its connections.
//!
//! Only the socket's owner (or root) may connect: the socket file is mode 0600 and the peer's
//! uid is checked (SO_PEERCRED), since whoever completes the exchange takes the service over.

mod server;
mod takeover;
#[cfg(test)]
mod tests;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

pub use server::{Endpoint, Request, serve};
pub use takeover::{Takeover, take_over};

/// `runtime.upgrade_socket` when the config does not set it.
pub const DEFAULT_SOCKET: &str = "/run/portico/upgrade.sock";
/// The first bytes a new process sends; the number is the protocol version.
const HELLO: &[u8] = b"PORTICO-UPGRADE 1\n";
/// Descriptors per frame (the kernel's SCM_MAX_FD is 253).
const MAX_FDS_PER_FRAME: usize = 200;
/// Largest frame either side accepts.
const MAX_FRAME: usize = 4 << 20;
/// How long each side waits for the other's next step, except the new process's start.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the old process waits for the new one to serve before it forgets the attempt.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// What a handed socket is for. `owner` names it like config keys do: `listeners.NAME`,
/// `admin.listen`, `runtime.upgrade_socket`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketInfo {
    pub owner: String,
    /// The configured address (may have port 0), for TCP sockets.
    pub bind: Option<SocketAddr>,
    /// The address the socket is bound to, for TCP sockets.
    pub local: Option<SocketAddr>,
    /// The path, for the upgrade socket.
    pub path: Option<PathBuf>,
}

/// The owner name of the upgrade socket in offers.
pub const UPGRADE_OWNER: &str = "runtime.upgrade_socket";

/// A socket on its way to the new process.
pub struct Handed {
    pub info: SocketInfo,
    pub fd: OwnedFd,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Frame {
    Offer {
        pid: u32,
        version: String,
        /// The old process's config file (absolute), if it runs one.
        #[serde(default)]
        config: Option<PathBuf>,
        sockets: Vec<SocketInfo>,
        more: bool,
    },
    Error {
        message: String,
    },
    Ready {
        pid: u32,
        kept_upgrade_socket: bool,
    },
    Draining {
        pid: u32,
    },
}

/// The upgrade socket's path for this config: the configured one, else the default. `None`
/// for the demo unless configured (it is not a service). `explicit` is false for the default,
/// which is best effort: another instance may hold it, or /run/portico may not be writable.
pub fn socket_path(configured: Option<&Path>, demo: bool) -> Option<(PathBuf, bool)> {
    match configured {
        Some(path) => Some((path.to_path_buf(), true)),
        None if demo => None,
        None => Some((PathBuf::from(DEFAULT_SOCKET), false)),
    }
}

fn encode(frame: &Frame) -> io::Result<Vec<u8>> {
    let body = serde_json::to_vec(frame).map_err(io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(io::Error::other)?;
    let mut bytes = Vec::with_capacity(4 + body.len());
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

fn decode(body: &[u8]) -> anyhow::Result<Frame> {
    serde_json::from_slice(body).context("a malformed upgrade message")
}

/// Writes `frame` on a blocking socket with `fds` attached to its first byte.
fn send_frame(
    stream: &mut std::os::unix::net::UnixStream,
    frame: &Frame,
    fds: &[OwnedFd],
) -> io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    let bytes = encode(frame)?;
    let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
    let mut space =
        vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_FRAME))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !borrowed.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
        return Err(io::Error::other("too many descriptors for one message"));
    }
    let sent = loop {
        match sendmsg(
            &*stream,
            &[io::IoSlice::new(&bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) => break n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => return Err(err.into()),
        }
    };
    // The descriptors went with the first byte; the rest is plain data.
    stream.write_all(&bytes[sent..])
}

/// Reads one frame from a blocking socket, with the descriptors attached to it.
fn recv_frame(
    stream: &mut std::os::unix::net::UnixStream,
) -> anyhow::Result<(Frame, Vec<OwnedFd>)> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut len = [0u8; 4];
    let mut space =
        vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_FRAME))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match recvmsg(
            &*stream,
            &mut [io::IoSliceMut::new(&mut len)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(msg) => break msg,
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => {
                return Err(io::Error::from(err)).context("reading from the upgrade socket");
            }
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.bytes == 0 {
        bail!("the other process closed the upgrade connection");
    }
    if msg.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        bail!("descriptors were lost in transit (truncated control message)");
    }
    stream
        .read_exact(&mut len[msg.bytes..])
        .context("reading from the upgrade socket")?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        bail!("an upgrade message of {len} bytes is too large");
    }
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .context("reading from the upgrade socket")?;
    Ok((decode(&body)?, fds))
}
