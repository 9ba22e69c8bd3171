//! Admin API commands, run by the supervisor one at a time, and the status document.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use hyper::StatusCode;
use serde_json::{Value, json};

use super::{ApplyError, Supervisor};
use crate::admin::{ApiError, ApiResult, Command};
use crate::config::{self, PoolSource};

impl Supervisor {
    pub(super) async fn handle(&mut self, command: Command) {
        match command {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Reload(reply) => {
                let result = match self.reload().await {
                    Ok(diff) => Ok(json!({ "result": "applied", "changes": diff.to_string() })),
                    Err(ApplyError::Invalid(errors)) => Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "the config file has errors; the running config is unchanged",
                    )
                    .with_details(errors.errors.iter().map(ToString::to_string).collect())),
                    Err(ApplyError::Failed(err)) => Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "the config could not be applied; the running config is unchanged",
                    )
                    .with_details(vec![format!("{err:#}")])),
                };
                let _ = reply.send(result);
            }
            Command::SetNodes {
                cluster,
                nodes,
                reply,
            } => {
                let _ = reply.send(self.set_nodes(&cluster, nodes).await);
            }
            Command::DrainNode {
                cluster,
                node,
                drain,
                reply,
            } => {
                let _ = reply.send(self.drain_node(&cluster, &node, drain).await);
            }
            Command::DrainBackend {
                pool,
                backend,
                drain,
                reply,
            } => {
                let _ = reply.send(self.drain_backend(&pool, &backend, drain).await);
            }
        }
    }

    async fn set_nodes(&mut self, cluster: &str, nodes: Vec<config::RawMember>) -> ApiResult {
        if !self.file.clusters.contains_key(cluster) {
            return Err(ApiError::not_found(format!("no cluster named {cluster:?}")));
        }
        let validated = config::validate_nodes(cluster, nodes).map_err(|errors| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid node list")
                .with_details(errors.iter().map(ToString::to_string).collect())
        })?;
        let mut api = self.api.clone();
        api.set_nodes(&self.file, cluster, &validated);
        let (persisted, changes) = self.commit(api).await?;
        let addresses: Vec<String> = validated.nodes.iter().map(|n| n.ip.to_string()).collect();
        tracing::info!(cluster, nodes = ?addresses, "node list replaced through the API");
        Ok(
            json!({ "cluster": cluster, "nodes": addresses, "persisted": persisted, "changes": changes }),
        )
    }

    async fn drain_node(&mut self, cluster: &str, node: &str, drain: bool) -> ApiResult {
        let snapshot = self.snapshot.load_full();
        let Some(c) = snapshot.config.clusters.get(cluster) else {
            return Err(ApiError::not_found(format!("no cluster named {cluster:?}")));
        };
        let ip: IpAddr = node.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{node:?} is not an IP address"),
            )
        })?;
        if !c.nodes.iter().any(|n| n.ip == ip) {
            return Err(ApiError::not_found(format!(
                "cluster {cluster:?} has no node {ip}"
            )));
        }
        let mut api = self.api.clone();
        api.node_drains
            .entry(cluster.to_owned())
            .or_default()
            .insert(ip, drain);
        let (persisted, _) = self.commit(api).await?;
        let snapshot = self.snapshot.load();
        let mut pools = Vec::new();
        let mut open = 0;
        for (name, pool) in &snapshot.pools {
            for b in pool.backends().iter().filter(|b| b.node() == Some(ip)) {
                pools.push(name.clone());
                open += b.active();
            }
        }
        let verb = if drain { "drained" } else { "enabled" };
        tracing::info!(cluster, node = %ip, pools = ?pools, open_connections = open, "node {verb} through the API");
        Ok(json!({
            "cluster": cluster, "node": ip.to_string(), "drained": drain,
            "pools": pools, "active_connections": open, "persisted": persisted,
        }))
    }

    async fn drain_backend(&mut self, pool: &str, backend: &str, drain: bool) -> ApiResult {
        let snapshot = self.snapshot.load_full();
        let Some(p) = snapshot.pools.get(pool) else {
            return Err(ApiError::not_found(format!("no pool named {pool:?}")));
        };
        let addr: SocketAddr = backend.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{backend:?} is not an ip:port address"),
            )
        })?;
        let Some(b) = p.backends().iter().find(|b| b.addr() == addr) else {
            return Err(ApiError::not_found(format!(
                "pool {pool:?} has no backend {addr}"
            )));
        };
        let open = b.active();
        let mut api = self.api.clone();
        api.backend_drains
            .entry(pool.to_owned())
            .or_default()
            .insert(addr, drain);
        let (persisted, _) = self.commit(api).await?;
        let verb = if drain { "drained" } else { "enabled" };
        tracing::info!(pool, backend = %addr, open_connections = open, "backend {verb} through the API");
        Ok(json!({
            "pool": pool, "backend": addr.to_string(), "drained": drain,
            "active_connections": open, "persisted": persisted,
        }))
    }

    /// Persists `api` (before anything else, so an answered change is never lost), then
    /// applies it over the current file config.
    async fn commit(
        &mut self,
        api: crate::api_state::ApiState,
    ) -> Result<(bool, String), ApiError> {
        let file = Arc::clone(&self.file);
        let persisted = self.persist(&api, &file).map_err(|err| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not persist the change: {err:#}"),
            )
        })?;
        let diff = self.apply(file, api).await.map_err(|err| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not apply the change: {err:#}"),
            )
        })?;
        Ok((persisted, diff.to_string()))
    }

    /// Listeners, pools with every backend's live state, clusters, health checks.
    pub(super) fn status(&self) -> Value {
        let snapshot = self.snapshot.load();
        let config = &snapshot.config;
        let listeners: Vec<Value> = self
            .listeners
            .status()
            .into_iter()
            .map(|l| {
                let pool = config.listeners.get(&l.name).map(|c| c.pool.clone());
                json!({
                    "name": l.name, "bind": l.bind.to_string(), "address": l.local.to_string(),
                    "protocol": l.protocol.as_str(), "pool": pool,
                    "active_connections": l.active, "max_connections": l.max,
                })
            })
            .collect();
        let pools: Vec<Value> = snapshot
            .pools
            .iter()
            .map(|(name, pool)| {
                let pc = &config.pools[name];
                let source = match &pc.source {
                    PoolSource::Servers => json!({ "servers": true }),
                    PoolSource::Cluster { name, node_port } => json!({ "cluster": name, "node_port": node_port }),
                };
                let backends: Vec<Value> = pool
                    .backends()
                    .iter()
                    .map(|b| {
                        let check = super::snapshot::check_key(&pc.health, b.addr());
                        let verdict = check.as_ref().and_then(|k| self.health.verdict(k));
                        let health = match (&check, verdict.as_ref().and_then(|v| v.up)) {
                            (None, _) => "not checked",
                            (Some(_), None) => "unknown",
                            (Some(_), Some(true)) => "up",
                            (Some(_), Some(false)) => "down",
                        };
                        let last = verdict.and_then(|v| v.last).map(|l| {
                            json!({
                                "at": l.at.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
                                "healthy": l.healthy, "detail": l.detail,
                            })
                        });
                        json!({
                            "address": b.addr().to_string(),
                            "node": b.node().map(|n| n.to_string()),
                            "available": b.is_available(), "up": b.is_up(), "health": health,
                            "weight": b.weight(), "configured_weight": b.configured_weight(),
                            "drained": b.is_drained(), "ejected": b.is_ejected(),
                            "consecutive_failures": b.consecutive_failures(),
                            "active_connections": b.active(),
                            "probe": check.map(|k| k.spec.addr.to_string()),
                            "last_check": last,
                        })
                    })
                    .collect();
                json!({
                    "name": name, "balance": pool.balance_kind().as_str(), "source": source,
                    "health": format!("{:?}", pc.health.kind).to_lowercase(),
                    "backends": backends,
                })
            })
            .collect();
        let clusters: Vec<Value> = config
            .clusters
            .iter()
            .map(|(name, c)| {
                let nodes: Vec<Value> = c
                    .nodes
                    .iter()
                    .map(|n| json!({ "address": n.ip.to_string(), "weight": n.weight, "drained": n.drain }))
                    .collect();
                let from = if self.api.clusters.contains_key(name) { "api" } else { "file" };
                json!({ "name": name, "nodes": nodes, "node_list_from": from })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "ready": self.ready.load(std::sync::atomic::Ordering::Relaxed),
            "listeners": listeners,
            "pools": pools,
            "clusters": clusters,
            "health_checks": self.health.len(),
        })
    }
}

/// Answers a command that arrives during shutdown.
pub(super) fn refuse(command: Command) {
    let err = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "portico is shutting down");
    match command {
        Command::Status(reply) => {
            let _ = reply.send(json!({ "ready": false, "shutting_down": true }));
        }
        Command::Reload(reply)
        | Command::SetNodes { reply, .. }
        | Command::DrainNode { reply, .. }
        | Command::DrainBackend { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
    }
}
