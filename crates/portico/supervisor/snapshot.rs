//! The snapshot: everything a connection needs from one config, published as one `Arc` in one
//! `ArcSwap`. Backends are long-lived and shared between snapshots (see `BackendRegistry`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use l4_forwarder::{ConfigSource, TcpListenerConfig};
use net_core::{Backend, BackendKey, Pool};

use crate::config::{Config, Protocol};

pub struct Snapshot {
    pub config: Arc<Config>,
    pub pools: BTreeMap<String, Arc<Pool>>,
    pub tcp: HashMap<String, Arc<TcpListenerConfig>>,
}

/// The live backends by (pool, address), so a reload that keeps a backend keeps its state
/// (health, passive failures, active connections).
#[derive(Default)]
pub struct BackendRegistry {
    backends: HashMap<BackendKey, Arc<Backend>>,
}

impl BackendRegistry {
    /// Builds a snapshot for `config`, reusing the backends that stay and forgetting those that
    /// are gone. Config-owned state (weight, drain) is applied to the live backends.
    pub fn build(&mut self, config: Arc<Config>) -> Snapshot {
        let mut live = HashMap::new();
        let mut pools = BTreeMap::new();
        for (name, pool) in &config.pools {
            let pool_name: Arc<str> = Arc::from(name.as_str());
            let backends = pool
                .members
                .iter()
                .map(|m| {
                    let key = BackendKey {
                        pool: Arc::clone(&pool_name),
                        addr: m.addr,
                    };
                    let backend = match self.backends.get(&key) {
                        Some(b) => Arc::clone(b),
                        None => Arc::new(Backend::new(key.clone(), m.node, m.weight)),
                    };
                    backend.set_configured_weight(m.weight);
                    backend.set_drained(m.drain);
                    live.insert(key, Arc::clone(&backend));
                    backend
                })
                .collect();
            let pool = Pool::new(pool_name, pool.balance, backends, pool.when_all_down);
            pools.insert(name.clone(), Arc::new(pool));
        }
        self.backends = live;

        let tcp = config
            .listeners
            .iter()
            .filter(|(_, l)| l.protocol == Protocol::Tcp)
            .map(|(name, l)| {
                let settings = TcpListenerConfig {
                    pool: Arc::clone(&pools[&l.pool]),
                    proxy_protocol: l.proxy_protocol,
                    accept_proxy_protocol: l.accept_proxy_protocol,
                    connect_timeout: l.connect_timeout,
                    idle_timeout: l.idle_timeout,
                };
                (name.clone(), Arc::new(settings))
            })
            .collect();
        Snapshot { config, pools, tcp }
    }
}

/// The listeners' view of the current snapshot.
pub struct SnapshotSource(pub Arc<ArcSwap<Snapshot>>);

impl ConfigSource for SnapshotSource {
    fn tcp_listener(&self, name: &str) -> Option<Arc<TcpListenerConfig>> {
        self.0.load().tcp.get(name).cloned()
    }
}
