//! PLACEHOLDER: interface only; a helper replaces this file with the real codec.

use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    V1,
    V2,
}

pub fn encode(version: ProxyVersion, src: SocketAddr, dst: SocketAddr, out: &mut Vec<u8>) {
    let _ = (version, src, dst, out);
}

#[derive(Debug, Clone)]
pub struct ProxyHeader {
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

#[derive(Debug, thiserror::Error)]
#[error("placeholder")]
pub struct ProxyReadError;

pub async fn read_header<S: tokio::io::AsyncRead + Unpin>(
    _stream: &mut S,
    _buf: &mut Vec<u8>,
) -> Result<ProxyHeader, ProxyReadError> {
    Err(ProxyReadError)
}
