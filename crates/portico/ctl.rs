//! `portico ctl`: a client of the admin API for people at a terminal. The address and token
//! come from the config file (`admin.listen`, `admin.token_file`) unless given as flags.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::cli::CtlCommand;
use crate::config;

/// The whole exchange with the admin server, connect to last byte.
const CTL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Target {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Target {
    /// From flags, falling back to the config file. With `--admin`, the config file is
    /// optional (it may still provide the token).
    pub fn resolve(
        config: &Path,
        admin: Option<SocketAddr>,
        token_file: Option<PathBuf>,
    ) -> anyhow::Result<Target> {
        let file = match admin {
            None => Some(config::load_file(config).context(
                "cannot read the admin address and token from the config; pass --admin (and --token-file)",
            )?),
            Some(_) if token_file.is_none() && config.exists() => config::load_file(config).ok(),
            Some(_) => None,
        };
        let addr = match (admin, &file) {
            (Some(a), _) => a,
            (None, Some(c)) => reachable(c.admin.listen),
            (None, None) => unreachable_default(),
        };
        let token_path = token_file.or_else(|| file.and_then(|c| c.admin.token_file));
        let token = token_path
            .map(|path| {
                std::fs::read_to_string(&path)
                    .map(|t| t.trim().to_owned())
                    .with_context(|| format!("reading {}", path.display()))
            })
            .transpose()?;
        Ok(Target { addr, token })
    }
}

fn unreachable_default() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 9900))
}

/// A wildcard listen address is reached through loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    }
}

pub async fn run(target: &Target, command: &CtlCommand) -> anyhow::Result<()> {
    match command {
        CtlCommand::Status => {
            let status = call(target, Method::GET, "/api/v1/status").await?;
            print_status(&status);
            Ok(())
        }
        CtlCommand::Reload => {
            let done = call(target, Method::POST, "/api/v1/reload").await?;
            emit(&format!(
                "reload applied: {}",
                done["changes"].as_str().unwrap_or("?")
            ));
            Ok(())
        }
        CtlCommand::Drain { node, cluster } => drain(target, node, cluster.as_deref(), true).await,
        CtlCommand::Enable { node, cluster } => {
            drain(target, node, cluster.as_deref(), false).await
        }
    }
}

/// Drains (or enables) `node` in `cluster`, or in every cluster that lists it.
async fn drain(
    target: &Target,
    node: &str,
    cluster: Option<&str>,
    drain: bool,
) -> anyhow::Result<()> {
    let clusters: Vec<String> = match cluster {
        Some(c) => vec![c.to_owned()],
        None => {
            let status = call(target, Method::GET, "/api/v1/status").await?;
            let found: Vec<String> = array(&status["clusters"])
                .iter()
                .filter(|c| {
                    array(&c["nodes"])
                        .iter()
                        .any(|n| n["address"].as_str() == Some(node))
                })
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect();
            if found.is_empty() {
                bail!("no cluster lists node {node}");
            }
            found
        }
    };
    let action = if drain { "drain" } else { "enable" };
    for c in clusters {
        let path = format!(
            "/api/v1/clusters/{}/nodes/{}/{action}",
            encode(&c),
            encode(node)
        );
        let done = call(target, Method::POST, &path).await?;
        let pools: Vec<&str> = array(&done["pools"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if drain {
            emit(&format!(
                "drained node {node} in cluster {c}: no new connections in pools {}; {} open connections finish",
                pools.join(", "),
                done["active_connections"]
            ));
        } else {
            emit(&format!(
                "enabled node {node} in cluster {c} (pools {})",
                pools.join(", ")
            ));
        }
    }
    Ok(())
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One API request; a non-2xx answer becomes an error carrying the API's message and details.
async fn call(target: &Target, method: Method, path: &str) -> anyhow::Result<Value> {
    tokio::time::timeout(CTL_TIMEOUT, call_inner(target, method, path))
        .await
        .with_context(|| {
            format!(
                "no answer from the admin server at {} within {CTL_TIMEOUT:?}",
                target.addr
            )
        })?
}

async fn call_inner(target: &Target, method: Method, path: &str) -> anyhow::Result<Value> {
    let stream = tokio::net::TcpStream::connect(target.addr)
        .await
        .with_context(|| {
            format!(
                "cannot reach the admin server at {} (is Portico running?)",
                target.addr
            )
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", target.addr.to_string())
        .header(
            "user-agent",
            concat!("portico-ctl/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(token) = &target.token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let response = sender
        .send_request(req.body(Full::new(Bytes::new()))?)
        .await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let value: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    if status.is_success() {
        return Ok(value);
    }
    let mut message = format!(
        "{} {}: {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        value["error"].as_str().unwrap_or("")
    );
    for d in array(&value["details"]) {
        message.push_str(&format!("\n  {}", d.as_str().unwrap_or("")));
    }
    if status == StatusCode::UNAUTHORIZED {
        message.push_str("\n  (pass --token-file, or set admin.token_file in the config)");
    }
    bail!(message)
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        other => other.to_string(),
    }
}

fn print_status(s: &Value) {
    let ready = if s["ready"].as_bool() == Some(true) {
        "ready"
    } else {
        "not ready"
    };
    emit(&format!(
        "Portico {} ({ready}, {} health checks)\n",
        text(&s["version"]),
        s["health_checks"]
    ));
    let rows: Vec<Vec<String>> = array(&s["listeners"])
        .iter()
        .map(|l| {
            vec![
                text(&l["name"]),
                text(&l["address"]),
                text(&l["protocol"]),
                text(&l["pool"]),
                format!("{}/{}", l["active_connections"], l["max_connections"]),
            ]
        })
        .collect();
    table(
        &["LISTENER", "ADDRESS", "PROTOCOL", "POOL", "CONNECTIONS"],
        &rows,
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    for p in array(&s["pools"]) {
        let source = match (
            p["source"]["cluster"].as_str(),
            p["source"]["node_port"].as_u64(),
        ) {
            (Some(c), Some(port)) => format!("cluster {c}, NodePort {port}"),
            _ => "servers".into(),
        };
        emit(&format!(
            "\npool {} ({}, {source}, health {})",
            text(&p["name"]),
            text(&p["balance"]),
            text(&p["health"])
        ));
        let rows: Vec<Vec<String>> = array(&p["backends"])
            .iter()
            .map(|b| {
                let mut state = text(&b["health"]);
                if b["drained"].as_bool() == Some(true) {
                    state.push_str(", drained");
                }
                if b["ejected"].as_bool() == Some(true) {
                    state.push_str(", ejected");
                }
                let weight = if b["weight"] == b["configured_weight"] {
                    text(&b["weight"])
                } else {
                    format!("{} (config {})", b["weight"], b["configured_weight"])
                };
                let last = match b["last_check"].as_object() {
                    Some(l) => {
                        let age = (now - l["at"].as_f64().unwrap_or(now)).max(0.0);
                        format!("{} ({age:.0}s ago)", text(&l["detail"]))
                    }
                    None => "-".into(),
                };
                vec![
                    text(&b["address"]),
                    state,
                    weight,
                    text(&b["active_connections"]),
                    last,
                ]
            })
            .collect();
        table(
            &["  BACKEND", "STATE", "WEIGHT", "ACTIVE", "LAST CHECK"],
            &rows
                .into_iter()
                .map(|mut r| {
                    r[0] = format!("  {}", r[0]);
                    r
                })
                .collect::<Vec<_>>(),
        );
    }
    for c in array(&s["clusters"]) {
        let nodes: Vec<String> = array(&c["nodes"])
            .iter()
            .map(|n| {
                let mut t = text(&n["address"]);
                if n["drained"].as_bool() == Some(true) {
                    t.push_str(" (drained)");
                }
                t
            })
            .collect();
        emit(&format!(
            "\ncluster {} (nodes from {}): {}",
            text(&c["name"]),
            text(&c["node_list_from"]),
            nodes.join(", ")
        ));
    }
}

/// Writes one line to stdout. A reader that went away (`portico ctl status | head`) ends the
/// output quietly instead of panicking the way `println!` does on a broken pipe.
fn emit(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"));
}

/// Prints rows under headers, columns padded to their widest cell.
fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        emit(padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
