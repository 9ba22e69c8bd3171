//! `portico demo`: three loopback "nodes" that answer HTTP with their own name, behind Portico
//! running the embedded config/demo.toml, so a newcomer sees it balance at once.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use anyhow::Context;
use net_core::proxy_protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::{Config, PoolSource};

pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// The most a demo node reads of a request before answering.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// The demo nodes, running until the process exits.
pub struct DemoNodes;

/// Starts one node per distinct backend address of the demo config's cluster pools.
pub async fn start_nodes(config: &Config) -> anyhow::Result<DemoNodes> {
    let mut addrs = BTreeSet::new();
    for pool in config.pools.values() {
        if let PoolSource::Cluster { .. } = pool.source {
            addrs.extend(pool.members.iter().map(|m| m.addr));
        }
    }
    for (i, addr) in addrs.into_iter().enumerate() {
        let name = format!("node-{}", i + 1);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("demo {name} cannot bind {addr}"))?;
        tokio::spawn(serve_node(listener, name, addr));
    }
    Ok(DemoNodes)
}

async fn serve_node(listener: TcpListener, name: String, addr: SocketAddr) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        tokio::spawn(async move {
            let _ = answer(stream, &name, addr).await;
        });
    }
}

/// Reads the PROXY header Portico sends, then one request head, and answers with the node's
/// name and the client address it learned from the header.
async fn answer(mut stream: TcpStream, name: &str, addr: SocketAddr) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let client = match proxy_protocol::read_header(&mut stream, &mut buf).await {
        Ok(header) => header
            .addresses
            .map_or_else(|| "unknown".to_owned(), |(src, _)| src.to_string()),
        Err(_) => "unknown (no PROXY header)".to_owned(),
    };
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST_HEAD {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = format!("Hello from {name} ({addr}); your address, via PROXY protocol: {client}\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

pub fn print_instructions(config: &Config) {
    let bind = |name: &str| config.listeners.get(name).map(|l| l.bind);
    println!("\nPortico demo is running: three nodes on NodePort 30080 of 127.0.0.1-3.\n");
    if let Some(web) = bind("web") {
        println!("  Round robin, one node after the other:");
        println!("    for i in 1 2 3 4 5 6; do curl -s http://{web}/; done\n");
    }
    if let Some(sticky) = bind("sticky") {
        println!("  Maglev: the same client always reaches the same node:");
        println!("    for i in 1 2 3; do curl -s http://{sticky}/; done\n");
    }
    let admin = config.admin.listen;
    println!("  Status page: http://{admin}/   (or: portico ctl --admin {admin} status)");
    println!("  Take node 2 out of every pool, then put it back:");
    println!("    portico ctl --admin {admin} drain 127.0.0.2");
    println!("    portico ctl --admin {admin} enable 127.0.0.2\n");
    println!("Ctrl-C drains and stops.\n");
}
