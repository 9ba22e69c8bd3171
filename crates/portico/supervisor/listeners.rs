//! The listener registry: listening sockets outlive snapshots. A reload keeps the socket of a
//! listener whose address is unchanged (no connection is refused during a reload), binds new
//! ones before anything changes (so a bind error fails the reload cleanly), and stops the
//! removed ones, whose open connections finish.
//!
//! Sockets passed by systemd socket activation, or handed over by the previous process in a
//! binary upgrade, are adopted: a listener (or the admin server) uses an inherited socket
//! instead of binding when the socket's local address equals its configured `bind`, or when
//! the socket was the same listener's with the same configured `bind` in the previous process
//! (which covers port 0). Once everything is bound, the ones nobody claimed are closed.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use l4_forwarder::ListenerShared;
use l7_router::HttpListenerShared;
use net_core::lifecycle::{CancellationToken, TaskTracker};
use socket2::{Domain, Socket, Type};

use super::snapshot::SnapshotSource;
use crate::config::{Config, ListenerConfig, Protocol};

/// Pending connections the kernel queues per listener before Portico accepts them.
const LISTEN_BACKLOG: i32 = 4096;

struct Entry {
    /// The configured address (its port may be 0).
    bind: SocketAddr,
    /// The address the socket is bound to.
    local: SocketAddr,
    protocol: Protocol,
    /// A duplicate of the accept loop's socket, so it can be handed to a listener that takes
    /// the address over under another name.
    socket: std::net::TcpListener,
    shared: Shared,
    stop: CancellationToken,
    accept_loop: tokio::task::JoinHandle<()>,
}

/// A listener's long-lived state, by data path.
#[derive(Clone)]
enum Shared {
    Tcp(Arc<ListenerShared>),
    Http(Arc<HttpListenerShared>),
}

impl Shared {
    fn new(name: &str, l: &ListenerConfig) -> Shared {
        match l.protocol {
            Protocol::Http | Protocol::Https => {
                Shared::Http(HttpListenerShared::new(name, l.max_connections))
            }
            _ => Shared::Tcp(ListenerShared::new(name, l.max_connections)),
        }
    }

    fn fits(&self, protocol: Protocol) -> bool {
        matches!(
            (self, protocol),
            (Shared::Http(_), Protocol::Http | Protocol::Https) | (Shared::Tcp(_), Protocol::Tcp)
        )
    }

    fn name(&self) -> &str {
        match self {
            Shared::Tcp(s) => s.name(),
            Shared::Http(s) => s.name(),
        }
    }

    fn active(&self) -> usize {
        match self {
            Shared::Tcp(s) => s.active_connections(),
            Shared::Http(s) => s.active_connections(),
        }
    }

    fn max(&self) -> usize {
        match self {
            Shared::Tcp(s) => s.max_connections(),
            Shared::Http(s) => s.max_connections(),
        }
    }

    fn set_max(&self, max: usize) {
        match self {
            Shared::Tcp(s) => s.set_max_connections(max),
            Shared::Http(s) => s.set_max_connections(max),
        }
    }
}

impl Entry {
    /// Stops accepting and waits until the socket is closed, so that a connection attempt
    /// made afterwards is refused rather than left in a backlog nobody reads.
    async fn close(self) {
        self.stop.cancel();
        drop(self.socket);
        let _ = self.accept_loop.await;
    }
}

/// Sockets bound for a reload that has not been applied yet. Dropping it closes them.
pub struct Prepared {
    fresh: BTreeMap<String, (std::net::TcpListener, Shared)>,
}

/// A listening socket this process did not bind: from systemd, or from the previous process.
pub struct Inherited {
    /// Who used it in the previous process (`listeners.NAME`, `admin.listen`); none from systemd.
    pub owner: Option<String>,
    /// Its configured address in the previous process.
    pub bind: Option<SocketAddr>,
    /// The address it is bound to.
    pub local: SocketAddr,
    pub socket: std::net::TcpListener,
    /// Where it came from, for the log.
    pub from: &'static str,
}

impl Inherited {
    /// Whether `owner`, configured with `bind`, takes this socket.
    fn fits(&self, bind: SocketAddr, owner: &str) -> bool {
        (bind.port() != 0 && self.local == bind)
            || (self.owner.as_deref() == Some(owner) && self.bind == Some(bind))
    }
}

pub struct ListenerRegistry {
    entries: BTreeMap<String, Entry>,
    /// Inherited sockets not claimed yet.
    inherited: Vec<Inherited>,
    source: Arc<SnapshotSource>,
    tracker: TaskTracker,
}

impl ListenerRegistry {
    pub fn new(source: Arc<SnapshotSource>, tracker: TaskTracker) -> Self {
        Self {
            entries: BTreeMap::new(),
            inherited: Vec::new(),
            source,
            tracker,
        }
    }

    /// Keeps inherited sockets, for `prepare` and `take_inherited` to claim.
    pub fn adopt(&mut self, inherited: Vec<Inherited>) {
        self.inherited.extend(inherited);
    }

    /// The inherited socket that `owner` (`listeners.NAME`, `admin.listen`), configured with
    /// `bind`, takes over (see the module doc), if any.
    pub fn take_inherited(
        &mut self,
        bind: SocketAddr,
        owner: &str,
    ) -> Option<std::net::TcpListener> {
        let i = self.inherited.iter().position(|s| s.fits(bind, owner))?;
        let s = self.inherited.swap_remove(i);
        tracing::info!(addr = %s.local, owner = %owner, "listener adopted from {}", s.from);
        Some(s.socket)
    }

    /// Closes the inherited sockets that nothing claimed, with a note each.
    pub fn close_unclaimed(&mut self) {
        for s in self.inherited.drain(..) {
            tracing::warn!(
                addr = %s.local,
                previous_owner = s.owner.as_deref().unwrap_or("-"),
                "closing a socket from {} that no listener binds",
                s.from
            );
        }
    }

    /// How many traffic listeners' sockets handed over by a previous process are unclaimed.
    pub fn unclaimed_listeners(&self) -> usize {
        self.inherited
            .iter()
            .filter(|s| {
                s.owner
                    .as_deref()
                    .is_some_and(|o| o.starts_with("listeners."))
            })
            .count()
    }

    /// Duplicates of every listening socket, described for the process taking over.
    pub fn handover(
        &self,
    ) -> anyhow::Result<Vec<(String, SocketAddr, SocketAddr, std::net::TcpListener)>> {
        self.entries
            .iter()
            .map(|(name, e)| {
                let socket = e
                    .socket
                    .try_clone()
                    .with_context(|| format!("listeners.{name}: duplicating its socket"))?;
                Ok((format!("listeners.{name}"), e.bind, e.local, socket))
            })
            .collect()
    }

    /// Step 1 of a reload: get a socket for every listener of `config` that needs a new one
    /// (new name, or new address), reusing an open socket on the same address when one exists,
    /// else an inherited one. Nothing running is touched; on error the new sockets are closed.
    pub fn prepare(&mut self, config: &Config) -> anyhow::Result<Prepared> {
        let mut fresh = BTreeMap::new();
        for (name, l) in &config.listeners {
            if self.keeps(name, l) {
                continue;
            }
            let socket = match self
                .entries
                .values()
                .find(|e| l.bind.port() != 0 && (e.bind == l.bind || e.local == l.bind))
            {
                Some(e) => e.socket.try_clone().with_context(|| {
                    format!("listeners.{name}: duplicating the socket of {}", l.bind)
                })?,
                None => match self.take_inherited(l.bind, &format!("listeners.{name}")) {
                    Some(socket) => socket,
                    None => bind_tcp(l.bind)
                        .with_context(|| format!("listeners.{name}: cannot bind {}", l.bind))?,
                },
            };
            let shared = match self.entries.get(name) {
                Some(e) if e.shared.fits(l.protocol) => e.shared.clone(),
                _ => Shared::new(name, l),
            };
            fresh.insert(name.clone(), (socket, shared));
        }
        Ok(Prepared { fresh })
    }

    fn keeps(&self, name: &str, l: &ListenerConfig) -> bool {
        self.entries
            .get(name)
            .is_some_and(|e| e.bind == l.bind && e.protocol == l.protocol)
    }

    /// Step 2, after the new snapshot is published: start the prepared listeners, stop those
    /// that were removed or replaced, apply new connection limits.
    pub async fn apply(&mut self, config: &Config, prepared: Prepared) -> anyhow::Result<()> {
        let mut stopped = Vec::new();
        let names: Vec<String> = self.entries.keys().cloned().collect();
        for name in names {
            match config.listeners.get(&name) {
                Some(l) if self.keeps(&name, l) => {}
                _ => stopped.extend(self.entries.remove(&name)),
            }
        }
        for (name, (socket, shared)) in prepared.fresh {
            let l = &config.listeners[&name];
            let accept_socket = socket
                .try_clone()
                .context("duplicating a listening socket")?;
            let listener = tokio::net::TcpListener::from_std(accept_socket)?;
            let addr = listener.local_addr()?;
            let stop = CancellationToken::new();
            let accept_loop = match &shared {
                Shared::Tcp(s) => tokio::spawn(l4_forwarder::serve(
                    listener,
                    Arc::clone(s),
                    Arc::clone(&self.source) as Arc<dyn l4_forwarder::ConfigSource>,
                    stop.clone(),
                    self.tracker.clone(),
                )),
                Shared::Http(s) => tokio::spawn(l7_router::serve(
                    listener,
                    Arc::clone(s),
                    Arc::clone(&self.source) as Arc<dyn l7_router::ConfigSource>,
                    stop.clone(),
                    self.tracker.clone(),
                )),
            };
            tracing::info!(listener = %name, %addr, protocol = %l.protocol, "listener bound");
            self.entries.insert(
                name,
                Entry {
                    bind: l.bind,
                    local: addr,
                    protocol: l.protocol,
                    socket,
                    shared,
                    stop,
                    accept_loop,
                },
            );
        }
        for (name, l) in &config.listeners {
            if let Some(e) = self.entries.get(name) {
                e.shared.set_max(l.max_connections);
            }
        }
        // The new accept loops run before the old ones stop: a socket handed over under a new
        // name is never without an acceptor.
        for e in stopped {
            tracing::info!(listener = e.shared.name(), bind = %e.bind, open = e.shared.active(), "listener stopped; open connections finish");
            e.close().await;
        }
        Ok(())
    }

    /// Stops every accept loop and closes the listening sockets (new connections are refused).
    pub async fn stop_all(&mut self) {
        for e in std::mem::take(&mut self.entries).into_values() {
            e.close().await;
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// One listener's state, for the status API.
pub struct ListenerStatus {
    pub name: String,
    pub bind: SocketAddr,
    pub local: SocketAddr,
    pub protocol: Protocol,
    pub active: usize,
    pub max: usize,
}

impl ListenerRegistry {
    pub fn status(&self) -> Vec<ListenerStatus> {
        self.entries
            .iter()
            .map(|(name, e)| ListenerStatus {
                name: name.clone(),
                bind: e.bind,
                local: e.local,
                protocol: e.protocol,
                active: e.shared.active(),
                max: e.shared.max(),
            })
            .collect()
    }
}

/// Binds the admin server's socket, or uses `inherited` (from `take_inherited`).
pub fn bind_admin(
    addr: SocketAddr,
    inherited: Option<std::net::TcpListener>,
) -> anyhow::Result<std::net::TcpListener> {
    match inherited {
        Some(socket) => Ok(socket),
        None => bind_tcp(addr).with_context(|| format!("admin.listen: cannot bind {addr}")),
    }
}

fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}
