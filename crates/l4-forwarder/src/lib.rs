//! Portico's L4 data path: accept TCP connections, pick a backend, connect, copy both ways.
//!
//! The crate never binds from config, reads files or handles signals: the daemon hands it an
//! already-bound listener, a [`ConfigSource`] that yields the current snapshot's settings for the
//! listener, a stop signal and the task tracker that shutdown waits on.
#![forbid(unsafe_code)]

mod connection;
mod copy;
mod error;
mod listener;

use std::sync::Arc;
use std::time::Duration;

use net_core::Pool;
use net_core::proxy_protocol::ProxyVersion;

pub use error::{ConnError, Side};
pub use listener::{ListenerShared, serve};

/// Connect attempts per client connection (the first try plus retries on other backends),
/// HAProxy's `retries 3` with `option redispatch`.
pub const MAX_CONNECT_ATTEMPTS: usize = 3;

/// How long a client may take to send its PROXY header when `accept_proxy_protocol` is on.
pub const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP listener's settings as one snapshot sees them. A connection takes the settings once,
/// when it is accepted, and keeps them to its end.
#[derive(Debug)]
pub struct TcpListenerConfig {
    pub pool: Arc<Pool>,
    /// PROXY protocol header sent to the backend before any client byte.
    pub proxy_protocol: Option<ProxyVersion>,
    /// Read a PROXY header from the client first (Portico behind another load balancer).
    pub accept_proxy_protocol: bool,
    pub connect_timeout: Duration,
    /// A connection with no byte in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// Move bytes with splice(2) through pooled pipes instead of user-space buffers (Linux;
    /// elsewhere, or when pipes run out, the buffer copy is used).
    pub splice: bool,
}

/// Where a listener finds its current settings: the daemon implements it over its snapshot.
pub trait ConfigSource: Send + Sync + 'static {
    /// The settings of listener `name` in the current snapshot, or None when it no longer
    /// exists (it is being removed by a reload).
    fn tcp_listener(&self, name: &str) -> Option<Arc<TcpListenerConfig>>;
}
