//! The running process's side: listens on `runtime.upgrade_socket` and hands its sockets to a
//! new process that asks.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use net_core::lifecycle::CancellationToken;
use tokio::sync::{mpsc, oneshot};

use super::{
    Frame, HELLO, Handed, MAX_FDS_PER_FRAME, START_TIMEOUT, STEP_TIMEOUT, SocketInfo,
    UPGRADE_OWNER, recv_frame, send_frame,
};

/// What the upgrade server asks of the supervisor.
pub enum Request {
    /// Duplicates of every listening socket (traffic listeners and admin).
    Sockets(oneshot::Sender<anyhow::Result<Vec<Handed>>>),
    /// A new process serves on the sockets: stop accepting and drain. `kept_upgrade_socket`:
    /// it serves the upgrade socket too, so this process must not remove the file.
    Drain { kept_upgrade_socket: bool },
}

/// The upgrade socket this process listens on.
pub struct Endpoint {
    path: PathBuf,
    /// Identity of the socket file when this process got it, so that it never removes a file
    /// that another process put there since.
    inode: (u64, u64),
    listener: UnixListener,
    /// This process's config file, told to the new process.
    config: Option<PathBuf>,
}

impl Endpoint {
    /// Binds `path` (mode 0600). A stale file left by a process that is gone is replaced; a
    /// socket another process still answers on is not touched: an error when `explicit`,
    /// else (the default path) a warning and no upgrade socket for this instance.
    pub fn bind(path: &Path, explicit: bool) -> anyhow::Result<Option<Endpoint>> {
        match Self::try_bind(path) {
            Ok(endpoint) => Ok(Some(endpoint)),
            Err(err) if explicit => Err(err),
            Err(err) => {
                tracing::info!(
                    path = %path.display(),
                    "no upgrade socket for this instance (`portico run --upgrade` cannot take it over): {err:#}"
                );
                Ok(None)
            }
        }
    }

    fn try_bind(path: &Path) -> anyhow::Result<Endpoint> {
        let context = || format!("runtime.upgrade_socket {}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir).with_context(context)?;
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750));
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    bail!(
                        "{}: another Portico is serving it (take over from it with `portico run --upgrade`, or set another path)",
                        context()
                    );
                }
                // Nobody answers: left over by a process that is gone.
                std::fs::remove_file(path).with_context(context)?;
            }
            Ok(_) => bail!("{}: exists and is not a socket", context()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(context),
        }
        let listener = UnixListener::bind(path).with_context(context)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(context)?;
        Self::adopt(path, listener)
    }

    /// Serves `listener`, bound at `path`: a new one, or the one handed over by the previous
    /// process.
    pub fn adopt(path: &Path, listener: UnixListener) -> anyhow::Result<Endpoint> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("runtime.upgrade_socket {}", path.display()))?;
        listener.set_nonblocking(true)?;
        Ok(Endpoint {
            path: path.to_path_buf(),
            inode: (meta.dev(), meta.ino()),
            listener,
            config: None,
        })
    }

    /// Names this process's config file (absolute) in offers.
    pub fn set_config(&mut self, config: Option<PathBuf>) {
        self.config = config;
    }

    /// Removes the socket file, unless it is no longer the one this process bound.
    pub fn remove_file(&self) {
        let ours = std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.inode);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Accepts upgrade connections until `stop`, one exchange at a time (a second concurrent
/// attempt gets an error). Exchanges that fail change nothing.
pub async fn serve(
    endpoint: Arc<Endpoint>,
    requests: mpsc::Sender<Request>,
    stop: CancellationToken,
) {
    let listener = match endpoint
        .listener
        .try_clone()
        .and_then(tokio::net::UnixListener::from_std)
    {
        Ok(l) => l,
        Err(err) => {
            tracing::error!(error = %err, "cannot serve the upgrade socket");
            return;
        }
    };
    tracing::info!(path = %endpoint.path.display(), "upgrade socket listening");
    let busy = Arc::new(AtomicBool::new(false));
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::debug!(error = %err, "upgrade socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (endpoint, requests, busy) =
            (Arc::clone(&endpoint), requests.clone(), Arc::clone(&busy));
        tokio::spawn(async move {
            if let Err(err) = exchange(stream, &endpoint, &requests, &busy).await {
                tracing::warn!("upgrade attempt failed, still serving: {err:#}");
            }
        });
    }
}

async fn exchange(
    stream: tokio::net::UnixStream,
    endpoint: &Endpoint,
    requests: &mpsc::Sender<Request>,
    busy: &AtomicBool,
) -> anyhow::Result<()> {
    let peer = stream
        .peer_cred()
        .context("reading the peer's credentials")?;
    let me = rustix::process::geteuid().as_raw();
    if peer.uid() != me && peer.uid() != 0 {
        bail!(
            "refused a connection from uid {} (only uid {me} or root may take over)",
            peer.uid()
        );
    }
    let pid = peer.pid().map_or_else(|| "?".to_owned(), |p| p.to_string());
    let mut stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(STEP_TIMEOUT))?;
    stream.set_write_timeout(Some(STEP_TIMEOUT))?;

    if busy.swap(true, Ordering::SeqCst) {
        let message = "another upgrade is in progress".to_owned();
        let _ = tokio::task::spawn_blocking(move || {
            send_frame(&mut stream, &Frame::Error { message }, &[])
        })
        .await;
        bail!("pid {pid} asked while another upgrade was in progress");
    }
    let result = async {
        let mut stream = tokio::task::spawn_blocking(move || -> anyhow::Result<UnixStream> {
            let mut hello = [0u8; HELLO.len()];
            stream
                .read_exact(&mut hello)
                .context("waiting for the new process's greeting")?;
            if hello != HELLO {
                bail!("not a Portico upgrade request");
            }
            Ok(stream)
        })
        .await??;
        tracing::info!(pid = %pid, "a new Portico asks for the listening sockets");

        let (tx, rx) = oneshot::channel();
        requests
            .send(Request::Sockets(tx))
            .await
            .context("the supervisor is shutting down")?;
        let mut sockets = rx.await.context("the supervisor is shutting down")??;
        sockets.push(Handed {
            info: SocketInfo {
                owner: UPGRADE_OWNER.to_owned(),
                bind: None,
                local: None,
                path: Some(endpoint.path.clone()),
            },
            fd: endpoint.listener.as_fd().try_clone_to_owned()?,
        });
        let count = sockets.len();
        let config = endpoint.config.clone();
        let kept = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
            offer(&mut stream, sockets, config)?;
            stream.set_read_timeout(Some(START_TIMEOUT))?;
            let ready = match recv_frame(&mut stream) {
                Ok((Frame::Ready { kept_upgrade_socket, .. }, _)) => kept_upgrade_socket,
                Ok((other, _)) => bail!("unexpected message from the new process: {other:?}"),
                Err(err) => {
                    return Err(err.context("the new process did not start serving"));
                }
            };
            send_frame(
                &mut stream,
                &Frame::Draining {
                    pid: std::process::id(),
                },
                &[],
            )?;
            Ok(ready)
        })
        .await??;
        tracing::info!(pid = %pid, sockets = count, "the new Portico serves on the handed sockets; draining this one");
        requests
            .send(Request::Drain {
                kept_upgrade_socket: kept,
            })
            .await
            .context("the supervisor is shutting down")?;
        anyhow::Ok(())
    }
    .await;
    busy.store(false, Ordering::SeqCst);
    result
}

/// Sends the sockets in frames of at most `MAX_FDS_PER_FRAME` descriptors.
pub(super) fn offer(
    stream: &mut UnixStream,
    sockets: Vec<Handed>,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut rest = sockets.into_iter().peekable();
    loop {
        let batch: Vec<Handed> = rest.by_ref().take(MAX_FDS_PER_FRAME).collect();
        let more = rest.peek().is_some();
        let (infos, fds): (Vec<_>, Vec<_>) = batch.into_iter().map(|h| (h.info, h.fd)).unzip();
        let frame = Frame::Offer {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            config: config.clone(),
            sockets: infos,
            more,
        };
        send_frame(stream, &frame, &fds).context("sending the sockets")?;
        if !more {
            return Ok(());
        }
    }
}
