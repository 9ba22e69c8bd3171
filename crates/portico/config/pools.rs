//! Validation of clusters and pools: node lists, servers, balancing, active and passive health,
//! and how pools talk to backends over HTTP.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use net_core::BalanceKind;
use net_core::pool::{PassiveHealth, WhenAllDown};

use super::raw::{RawCluster, RawHealth, RawMember, RawPassive, RawPool};
use super::validate::{
    DEFAULT_FALL, DEFAULT_HEALTH_INTERVAL, DEFAULT_HEALTH_TIMEOUT, DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_IDLE, DEFAULT_RISE, DEFAULT_WEIGHT, Errors, MAX_WEIGHT, parse_socket_addr, port,
    positive_duration, range,
};
use super::{
    ClusterConfig, ConfigError, HealthConfig, HealthKind, MemberConfig, NodeConfig, PoolConfig,
    PoolHttpConfig, PoolSource,
};

/// Validates a cluster's node list given outside the file (the admin API's
/// `PUT /api/v1/clusters/{cluster}/nodes`), with the same rules as the file's `nodes`.
pub fn validate_nodes(
    cluster: &str,
    nodes: Vec<RawMember>,
) -> Result<ClusterConfig, Vec<ConfigError>> {
    let mut e = Errors::default();
    if nodes.is_empty() {
        e.add(
            format!("clusters.{cluster}.nodes"),
            "the list is empty; every pool of the cluster would be empty",
        );
        return Err(e.0);
    }
    let raw = RawCluster { nodes };
    match validate_cluster(cluster, &raw, &mut e) {
        Some(c) if e.0.is_empty() => Ok(c),
        _ => Err(e.0),
    }
}

pub(super) fn validate_cluster(
    name: &str,
    raw: &RawCluster,
    e: &mut Errors,
) -> Option<ClusterConfig> {
    let mut nodes = Vec::new();
    let mut seen = HashSet::new();
    let mut ok = true;
    for (i, m) in raw.nodes.iter().enumerate() {
        let key = format!("clusters.{name}.nodes.{i}");
        let ip = match m.address.trim().parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                let hint = if parse_socket_addr(&m.address).is_ok() {
                    " (a node is an IP address without a port; pools give the node_port)"
                } else {
                    ""
                };
                e.add(
                    &key,
                    format!("\"{}\" is not an IP address{hint}", m.address),
                );
                ok = false;
                continue;
            }
        };
        if !seen.insert(ip) {
            e.add(&key, format!("node {ip} is listed twice"));
            ok = false;
        }
        let weight = member_weight(e, &key, m);
        ok &= weight.is_some();
        nodes.push(NodeConfig {
            ip,
            weight: weight.unwrap_or(DEFAULT_WEIGHT),
            drain: m.drain.unwrap_or(false),
        });
    }
    ok.then_some(ClusterConfig { nodes })
}

fn member_weight(e: &mut Errors, key: &str, m: &RawMember) -> Option<u32> {
    match m.weight {
        None => Some(DEFAULT_WEIGHT),
        Some(w) if (0..=MAX_WEIGHT).contains(&w) => Some(w as u32),
        Some(w) => {
            e.add(
                format!("{key}.weight"),
                format!("{w} is out of range (0 to {MAX_WEIGHT}; 0 sends nothing)"),
            );
            None
        }
    }
}

pub(super) fn validate_pool(
    name: &str,
    raw: &RawPool,
    raw_clusters: &BTreeMap<String, RawCluster>,
    clusters: &BTreeMap<String, ClusterConfig>,
    e: &mut Errors,
) -> Option<PoolConfig> {
    let key = format!("pools.{name}");
    let errors_before = e.0.len();
    let balance = match raw.balance.as_deref() {
        None => Some(BalanceKind::RoundRobin),
        Some(s) => BalanceKind::parse(s).or_else(|| {
            let all: Vec<_> = BalanceKind::ALL.iter().map(|k| k.as_str()).collect();
            e.add(
                format!("{key}.balance"),
                format!("\"{s}\" is not one of {}", all.join(", ")),
            );
            None
        }),
    };
    let when_all_down = match raw.when_all_down.as_deref() {
        None | Some("try_all") => Some(WhenAllDown::TryAll),
        Some("refuse") => Some(WhenAllDown::Refuse),
        Some(other) => {
            e.add(
                format!("{key}.when_all_down"),
                format!("\"{other}\" is not one of try_all, refuse"),
            );
            None
        }
    };
    let health = validate_health(&key, raw.health.as_ref(), e);
    let passive = validate_passive(&key, raw.passive.as_ref(), e);
    // Keys of optional fields are spelled out only when the field is there (1,000 pools).
    let keepalive_timeout = match &raw.keepalive_timeout {
        None => Some(DEFAULT_KEEPALIVE_TIMEOUT),
        Some(_) => positive_duration(
            e,
            &format!("{key}.keepalive_timeout"),
            &raw.keepalive_timeout,
            DEFAULT_KEEPALIVE_TIMEOUT,
        ),
    };
    let max_idle = match raw.max_idle {
        None => Some(DEFAULT_MAX_IDLE),
        Some(_) => range(
            e,
            &format!("{key}.max_idle"),
            raw.max_idle,
            DEFAULT_MAX_IDLE as i64,
            0,
            100_000,
        )
        .map(|n| n as usize),
    };

    let (source, members) = match (&raw.servers, &raw.cluster) {
        (Some(_), Some(_)) => {
            e.add(
                &key,
                "set either `servers` or `cluster` + `node_port`, not both",
            );
            return None;
        }
        (None, None) => {
            e.add(
                &key,
                "the pool has no backends: set `servers`, or `cluster` + `node_port`",
            );
            return None;
        }
        (Some(servers), None) => {
            if raw.node_port.is_some() {
                e.add(
                    format!("{key}.node_port"),
                    "node_port goes with `cluster`, not with `servers`",
                );
            }
            (PoolSource::Servers, validate_servers(&key, servers, e)?)
        }
        (None, Some(cluster)) => {
            let node_port = match raw.node_port {
                None => {
                    e.add(
                        format!("{key}.node_port"),
                        format!("a pool of cluster \"{cluster}\" needs the Service's node_port"),
                    );
                    None
                }
                Some(p) => port(e, &format!("{key}.node_port"), p),
            };
            let Some(c) = clusters.get(cluster) else {
                if !raw_clusters.contains_key(cluster) {
                    e.add(
                        format!("{key}.cluster"),
                        format!("no cluster named \"{cluster}\""),
                    );
                }
                return None;
            };
            let node_port = node_port?;
            if c.nodes.is_empty() {
                e.add(
                    format!("{key}.cluster"),
                    format!("cluster \"{cluster}\" has no nodes, so the pool would be empty"),
                );
                return None;
            }
            let members = cluster_members(c, node_port);
            (
                PoolSource::Cluster {
                    name: cluster.clone(),
                    node_port,
                },
                members,
            )
        }
    };
    if e.0.len() > errors_before {
        return None;
    }
    Some(PoolConfig {
        source,
        balance: balance?,
        when_all_down: when_all_down?,
        members,
        health: health?,
        passive: passive?,
        http: PoolHttpConfig {
            http2: raw.http2.unwrap_or(false),
            keepalive_timeout: keepalive_timeout?,
            max_idle: max_idle?,
        },
    })
}

/// Every node of a cluster at one NodePort.
pub fn cluster_members(cluster: &ClusterConfig, node_port: u16) -> Vec<MemberConfig> {
    cluster
        .nodes
        .iter()
        .map(|n| MemberConfig {
            addr: SocketAddr::new(n.ip, node_port),
            node: Some(n.ip),
            weight: n.weight,
            drain: n.drain,
        })
        .collect()
}

fn validate_servers(key: &str, servers: &[RawMember], e: &mut Errors) -> Option<Vec<MemberConfig>> {
    if servers.is_empty() {
        e.add(
            format!("{key}.servers"),
            "the list is empty; a pool needs at least one server",
        );
        return None;
    }
    let mut members = Vec::new();
    let mut seen = HashSet::new();
    let mut ok = true;
    for (i, m) in servers.iter().enumerate() {
        let mkey = || format!("{key}.servers.{i}");
        let Some(addr) = parse_socket_addr(&m.address)
            .map_err(|message| e.add(mkey(), message))
            .ok()
        else {
            ok = false;
            continue;
        };
        if addr.port() == 0 {
            e.add(mkey(), format!("{addr}: port 0 is not a server port"));
            ok = false;
        }
        if !seen.insert(addr) {
            e.add(mkey(), format!("server {addr} is listed twice"));
            ok = false;
        }
        let weight = match m.weight {
            None => Some(DEFAULT_WEIGHT),
            Some(_) => member_weight(e, &mkey(), m),
        };
        ok &= weight.is_some();
        members.push(MemberConfig {
            addr,
            node: None,
            weight: weight.unwrap_or(DEFAULT_WEIGHT),
            drain: m.drain.unwrap_or(false),
        });
    }
    ok.then_some(members)
}

fn validate_health(
    pool_key: &str,
    raw: Option<&RawHealth>,
    e: &mut Errors,
) -> Option<HealthConfig> {
    let Some(raw) = raw else {
        return Some(HealthConfig {
            kind: HealthKind::None,
            port: None,
            path: "/".into(),
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            expect_status: None,
            initial_up: true,
            use_endpoint_weight: true,
        });
    };
    let key = format!("{pool_key}.health");
    let kind = match raw.kind.as_deref().unwrap_or("tcp") {
        "none" => Some(HealthKind::None),
        "tcp" => Some(HealthKind::Tcp),
        "http" => Some(HealthKind::Http),
        other => {
            e.add(
                format!("{key}.kind"),
                format!("\"{other}\" is not one of tcp, http, none"),
            );
            None
        }
    };
    let port = match raw.port {
        None => Some(None),
        Some(p) => port(e, &format!("{key}.port"), p).map(Some),
    };
    let path = raw.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        e.add(
            format!("{key}.path"),
            format!("\"{path}\" must start with '/' and contain only visible ASCII (no spaces)"),
        );
    }
    let expect_status = match raw.expect_status {
        None => Some(None),
        Some(code) if (100..=599).contains(&code) => Some(Some(code as u16)),
        Some(code) => {
            e.add(
                format!("{key}.expect_status"),
                format!("{code} is not an HTTP status (100 to 599)"),
            );
            None
        }
    };
    let initial_up = match raw.initial.as_deref().unwrap_or("up") {
        "up" => Some(true),
        "down" => Some(false),
        other => {
            e.add(
                format!("{key}.initial"),
                format!("\"{other}\" is not one of up, down"),
            );
            None
        }
    };
    let interval = positive_duration(
        e,
        &format!("{key}.interval"),
        &raw.interval,
        DEFAULT_HEALTH_INTERVAL,
    );
    let timeout = positive_duration(
        e,
        &format!("{key}.timeout"),
        &raw.timeout,
        DEFAULT_HEALTH_TIMEOUT,
    );
    let rise = count(e, &format!("{key}.rise"), raw.rise, DEFAULT_RISE);
    let fall = count(e, &format!("{key}.fall"), raw.fall, DEFAULT_FALL);
    Some(HealthConfig {
        kind: kind?,
        port: port?,
        path,
        interval: interval?,
        timeout: timeout?,
        rise: rise?,
        fall: fall?,
        expect_status: expect_status?,
        initial_up: initial_up?,
        use_endpoint_weight: raw.endpoint_weight.unwrap_or(true),
    })
}

fn validate_passive(
    pool_key: &str,
    raw: Option<&RawPassive>,
    e: &mut Errors,
) -> Option<PassiveHealth> {
    let default = PassiveHealth::default();
    let Some(raw) = raw else {
        return Some(default);
    };
    let key = format!("{pool_key}.passive");
    let failures = match raw.failures {
        None => Some(default.failures),
        Some(n) if (0..=100).contains(&n) => Some(n as u32),
        Some(n) => {
            e.add(
                format!("{key}.failures"),
                format!("{n} is out of range (0 to 100; 0 turns passive health off)"),
            );
            None
        }
    };
    let ejection = positive_duration(
        e,
        &format!("{key}.ejection"),
        &raw.ejection,
        default.ejection,
    );
    let max_ejection = positive_duration(
        e,
        &format!("{key}.max_ejection"),
        &raw.max_ejection,
        default.max_ejection,
    );
    if let (Some(base), Some(max)) = (ejection, max_ejection) {
        if max < base {
            e.add(
                format!("{key}.max_ejection"),
                format!("{max:?} is shorter than ejection ({base:?})"),
            );
            return None;
        }
    }
    Some(PassiveHealth {
        failures: failures?,
        ejection: ejection?,
        max_ejection: max_ejection?,
    })
}

/// rise/fall: 1 to 100.
fn count(e: &mut Errors, key: &str, v: Option<i64>, default: u32) -> Option<u32> {
    range(e, key, v, i64::from(default), 1, 100).map(|n| n as u32)
}
