//! The new process's side (`portico run --upgrade`): asks the running process for its
//! sockets, and tells it to drain once this process serves.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{Frame, HELLO, STEP_TIMEOUT, UPGRADE_OWNER, recv_frame, send_frame};
use crate::supervisor::Inherited;

/// An upgrade in progress: the connection to the old process, until the old process drains.
/// Dropping it before [`Takeover::ready`] aborts the upgrade: the old process goes on serving.
pub struct Takeover {
    stream: UnixStream,
    /// The old process.
    pub old_pid: u32,
    pub old_version: String,
    /// The old process's config file (absolute), when it said.
    pub old_config: Option<PathBuf>,
    /// The old process's upgrade socket, with its path.
    pub upgrade_socket: Option<(PathBuf, UnixListener)>,
}

/// Connects to the process serving the upgrade socket (`configured`, else the default) and
/// receives its listening sockets. On the default path another instance may answer: then
/// only a process that runs this very `config_file` is taken over.
pub fn take_over(
    configured: Option<&Path>,
    config_file: Option<&Path>,
) -> anyhow::Result<(Takeover, Vec<Inherited>)> {
    let (path, explicit) =
        super::socket_path(configured, false).context("no upgrade socket path")?;
    let (takeover, sockets) = receive(&path)?;
    if !explicit && takeover.old_config.is_some() && takeover.old_config.as_deref() != config_file {
        bail!(
            "the Portico on the default upgrade socket {} (pid {}) runs {}, not this config file; set runtime.upgrade_socket to take over from it",
            path.display(),
            takeover.old_pid,
            takeover
                .old_config
                .as_deref()
                .unwrap_or(Path::new("?"))
                .display()
        );
    }
    Ok((takeover, sockets))
}

/// The exchange up to the offered sockets.
fn receive(path: &Path) -> anyhow::Result<(Takeover, Vec<Inherited>)> {
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!(
            "cannot reach the running Portico on {} (runtime.upgrade_socket; is it running, with this path?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(STEP_TIMEOUT))?;
    stream.set_write_timeout(Some(STEP_TIMEOUT))?;
    stream
        .write_all(HELLO)
        .context("writing to the upgrade socket")?;

    let mut inherited = Vec::new();
    let mut upgrade_socket = None;
    let (mut old_pid, mut old_version, mut old_config);
    loop {
        let (frame, fds) = recv_frame(&mut stream)?;
        let (pid, version, config, sockets, more) = match frame {
            Frame::Offer {
                pid,
                version,
                config,
                sockets,
                more,
            } => (pid, version, config, sockets, more),
            Frame::Error { message } => bail!("the running Portico refused: {message}"),
            other => bail!("unexpected message from the running Portico: {other:?}"),
        };
        (old_pid, old_version, old_config) = (pid, version, config);
        if fds.len() != sockets.len() {
            bail!(
                "received {} descriptors for {} sockets (is the descriptor limit too low?)",
                fds.len(),
                sockets.len()
            );
        }
        for (info, fd) in sockets.into_iter().zip(fds) {
            if info.owner == UPGRADE_OWNER {
                let path = info
                    .path
                    .context("the upgrade socket came without its path")?;
                upgrade_socket = Some((path, UnixListener::from(fd)));
                continue;
            }
            let socket = socket2::Socket::from(fd);
            let (local, listener) = crate::socket_activation::adopt(socket)
                .with_context(|| format!("the socket of {}", info.owner))?;
            inherited.push(Inherited {
                owner: Some(info.owner),
                bind: info.bind,
                local,
                socket: listener,
                from: "the previous process",
            });
        }
        if !more {
            break;
        }
    }
    Ok((
        Takeover {
            stream,
            old_pid,
            old_version,
            old_config,
            upgrade_socket,
        },
        inherited,
    ))
}

impl Takeover {
    /// This process serves: tells the old one to drain. An error means the old process never
    /// heard it, so it still serves as before.
    pub fn ready(&mut self, kept_upgrade_socket: bool) -> anyhow::Result<()> {
        send_frame(
            &mut self.stream,
            &Frame::Ready {
                pid: std::process::id(),
                kept_upgrade_socket,
            },
            &[],
        )
        .context("telling the previous process to drain")
    }

    /// Waits for the old process to confirm that it drains.
    pub fn confirmed(mut self) -> anyhow::Result<()> {
        match recv_frame(&mut self.stream) {
            Ok((Frame::Draining { .. }, _)) => Ok(()),
            Ok((other, _)) => bail!("unexpected answer from the previous process: {other:?}"),
            Err(err) => Err(err.context("the previous process did not confirm that it drains")),
        }
    }
}
