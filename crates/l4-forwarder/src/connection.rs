//! One forwarded TCP connection: (PROXY header in) -> pick -> connect -> (PROXY header out) ->
//! copy both ways.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use net_core::error_chain::ErrorChain;
use net_core::proxy_protocol;
use net_core::{ActiveConnection, hash};
use socket2::{SockRef, TcpKeepalive};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::copy::{self, CopyError, CopyOptions};
use crate::listener::ListenerShared;
use crate::{ConnError, MAX_CONNECT_ATTEMPTS, PROXY_HEADER_TIMEOUT, TcpListenerConfig};

/// TCP keepalive on both legs: first probe after 60 s idle, then every 10 s, 3 probes.
const KEEPALIVE_TIME: std::time::Duration = std::time::Duration::from_secs(60);
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

pub(crate) async fn handle(
    client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    config: Arc<TcpListenerConfig>,
    shared: &ListenerShared,
) {
    shared.metrics.connections_active.increment(1.0);
    let result = forward(client, peer, local, &config, shared).await;
    shared.metrics.connections_active.decrement(1.0);
    match result {
        Ok((sent, received)) => {
            tracing::debug!(listener = shared.name(), %peer, sent, received, "connection closed");
        }
        Err(err @ ConnError::Connect { .. }) | Err(err @ ConnError::NoBackend { .. }) => {
            tracing::warn!(listener = shared.name(), %peer, error = %ErrorChain(&err), "connection refused to client");
        }
        Err(err) => {
            tracing::debug!(listener = shared.name(), %peer, side = ?err.side(), error = %ErrorChain(&err), "connection ended");
        }
    }
}

async fn forward(
    mut client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    config: &TcpListenerConfig,
    shared: &ListenerShared,
) -> Result<(u64, u64), ConnError> {
    set_stream_options(&client);
    // Bytes the client sent after its PROXY header: the start of its payload.
    let mut early = Vec::new();
    let (src, dst) = if config.accept_proxy_protocol {
        let header = tokio::time::timeout(
            PROXY_HEADER_TIMEOUT,
            proxy_protocol::read_header(&mut client, &mut early),
        )
        .await
        .map_err(|_| ConnError::ProxyHeaderTimeout(PROXY_HEADER_TIMEOUT))?
        .map_err(ConnError::ProxyHeader)?;
        // LOCAL (the other LB's own health check) and UNKNOWN carry no addresses.
        header.addresses.unwrap_or((peer, local))
    } else {
        (peer, local)
    };

    let (mut upstream, active) = connect(config, hash::hash_ip(src.ip())).await?;
    let backend_addr = active.backend().addr();

    let mut first = Vec::new();
    if let Some(version) = config.proxy_protocol {
        proxy_protocol::encode(version, src, dst, &mut first);
    }
    first.extend_from_slice(&early);
    if !first.is_empty() {
        upstream
            .write_all(&first)
            .await
            .map_err(|source| ConnError::BackendWrite {
                backend: backend_addr,
                source,
            })?;
    }

    let options = CopyOptions {
        idle_timeout: config.idle_timeout,
        splice: config.splice,
    };
    let copied = copy::copy_both_ways(
        &mut client,
        &mut upstream,
        options,
        &shared.metrics.bytes_in,
        &shared.metrics.bytes_out,
    )
    .await;
    drop(active);
    match copied {
        Ok(counts) => Ok(counts),
        Err(CopyError::Idle) => Err(ConnError::IdleTimeout(config.idle_timeout)),
        Err(CopyError::Io(err)) => Err(ConnError::Copy(err)),
    }
}

/// Picks and connects, trying other backends when a connect fails, at most
/// `MAX_CONNECT_ATTEMPTS` times. The returned guard counts the connection on the backend.
async fn connect(
    config: &TcpListenerConfig,
    hash: u64,
) -> Result<(TcpStream, ActiveConnection), ConnError> {
    let pool = &config.pool;
    let mut tried: [usize; MAX_CONNECT_ATTEMPTS] = [usize::MAX; MAX_CONNECT_ATTEMPTS];
    let mut last_error = None;
    for attempt in 0..MAX_CONNECT_ATTEMPTS {
        let Some(index) = pool.pick(hash, &tried[..attempt]) else {
            break;
        };
        tried[attempt] = index;
        let backend = pool.backend(index);
        let active = backend.track();
        let started = tokio::time::Instant::now();
        match connect_one(backend.addr(), config.connect_timeout).await {
            Ok(stream) => {
                pool.report_connect_success(index, Some(started.elapsed()));
                return Ok((stream, active));
            }
            Err(err) => {
                pool.report_connect_failure(index);
                tracing::debug!(pool = %pool.name(), backend = %backend.addr(), error = %err, "connect failed");
                last_error = Some((backend.addr(), err));
            }
        }
    }
    match last_error {
        Some((last_backend, source)) => Err(ConnError::Connect {
            pool: pool.name().to_string(),
            attempts: tried.iter().filter(|&&i| i != usize::MAX).count(),
            last_backend,
            source,
        }),
        None => Err(ConnError::NoBackend {
            pool: pool.name().to_string(),
        }),
    }
}

async fn connect_one(addr: SocketAddr, timeout: std::time::Duration) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_nodelay(true)?;
    let stream = tokio::time::timeout(timeout, socket.connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    set_keepalive(&stream);
    Ok(stream)
}

fn set_stream_options(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    set_keepalive(stream);
}

fn set_keepalive(stream: &TcpStream) {
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    let _ = SockRef::from(stream).set_tcp_keepalive(&keepalive);
}
