//! The snapshot: everything a connection needs from one config, published as one `Arc` in one
//! `ArcSwap`. Backends are long-lived and shared between snapshots (see `BackendRegistry`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use std::net::SocketAddr;

use arc_swap::ArcSwap;
use l4_forwarder::{ConfigSource, TcpListenerConfig};
use net_core::health::{CheckKey, ProbeKind, ProbeSpec, Subscription, Verdict};
use net_core::{Backend, BackendKey, Pool};

use l7_router::tls::{self, Alpn, CertResolver};
use l7_router::{HttpListenerConfig, RoutePolicy, RouteTarget, Upstream, UpstreamSettings};

use crate::config::{Config, HealthConfig, HealthKind, HttpListenerSpec, ListenerConfig, Protocol};

pub struct Snapshot {
    pub config: Arc<Config>,
    pub pools: BTreeMap<String, Arc<Pool>>,
    pub tcp: HashMap<String, Arc<TcpListenerConfig>>,
    pub http: HashMap<String, Arc<HttpListenerConfig>>,
}

impl Snapshot {
    /// Rebuilds the balancer tables of the named pools after their backends' health or
    /// weight changed.
    /// Rebuilds the tables of every pool whose backends changed since it was built.
    pub fn refresh_stale_pools(&self) {
        for pool in self.pools.values() {
            pool.refresh_if_stale();
        }
    }

    pub fn refresh_pools(&self, names: &[Arc<str>]) {
        for name in names {
            if let Some(pool) = self.pools.get(&**name) {
                pool.refresh();
            }
        }
    }
}

/// The live backends by (pool, address), so a reload that keeps a backend keeps its state
/// (health, passive failures, active connections).
#[derive(Default)]
pub struct BackendRegistry {
    backends: HashMap<BackendKey, Arc<Backend>>,
    /// Pooled HTTP clients by pool and settings: their idle connections survive reloads.
    upstreams: HashMap<(String, UpstreamSettings), Arc<Upstream>>,
}

impl BackendRegistry {
    /// Builds a snapshot for `config`, reusing the backends that stay and forgetting those that
    /// are gone, and the health-check subscriptions it needs. Config-owned state (weight, drain)
    /// is applied to the live backends; a new backend starts with its check's verdict when that
    /// check already runs for another pool, else in the pool's initial state. Nothing here
    /// starts or stops a prober: `HealthChecks::reconcile` does, once the snapshot is published.
    pub fn build(
        &mut self,
        config: Arc<Config>,
        verdict_of: impl Fn(&CheckKey) -> Option<Verdict>,
    ) -> (Snapshot, Vec<Subscription>) {
        let mut live = HashMap::new();
        let mut pools = BTreeMap::new();
        let mut subscriptions = Vec::new();
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
                    let existing = self.backends.get(&key).cloned();
                    let is_new = existing.is_none();
                    let backend = existing
                        .unwrap_or_else(|| Arc::new(Backend::new(key.clone(), m.node, m.weight)));
                    backend.set_configured_weight(m.weight);
                    backend.set_drained(m.drain);
                    match check_key(&pool.health, m.addr) {
                        None => {
                            // No active check (any more): nothing can hold it down.
                            backend.set_up(true);
                            backend.set_learned_weight(None);
                        }
                        Some(check) => {
                            let h = &pool.health;
                            if !h.use_endpoint_weight {
                                backend.set_learned_weight(None);
                            }
                            // What the check already knows applies now, to new and kept
                            // backends alike, so the pool's tables are built from it.
                            match verdict_of(&check).filter(|v| v.up.is_some()) {
                                Some(v) => {
                                    backend.set_up(v.up.unwrap_or(h.initial_up));
                                    if h.use_endpoint_weight {
                                        backend.set_learned_weight(v.weight);
                                    }
                                }
                                None if is_new => backend.set_up(h.initial_up),
                                None => {}
                            }
                            subscriptions.push(Subscription {
                                key: check,
                                backend: Arc::clone(&backend),
                                use_endpoint_weight: h.use_endpoint_weight,
                            });
                        }
                    }
                    live.insert(key, Arc::clone(&backend));
                    backend
                })
                .collect();
            let pool = Pool::new(
                pool_name,
                pool.balance,
                backends,
                pool.when_all_down,
                pool.passive,
            );
            pools.insert(name.clone(), Arc::new(pool));
        }
        self.backends = live;

        let mut upstreams = HashMap::new();
        let mut http = HashMap::new();
        for (name, l) in &config.listeners {
            if let Some(spec) = &l.http {
                let settings = self.http_listener(name, l, spec, &config, &pools, &mut upstreams);
                http.insert(name.clone(), Arc::new(settings));
            }
        }
        self.upstreams = upstreams;

        let tcp = config
            .listeners
            .iter()
            .filter(|(_, l)| l.protocol == Protocol::Tcp)
            .filter_map(|(name, l)| Some((name, l, l.pool.as_ref()?)))
            .map(|(name, l, pool)| {
                let settings = TcpListenerConfig {
                    pool: Arc::clone(&pools[pool]),
                    proxy_protocol: l.proxy_protocol,
                    accept_proxy_protocol: l.accept_proxy_protocol,
                    connect_timeout: l.connect_timeout,
                    idle_timeout: l.idle_timeout,
                    splice: l.splice,
                };
                (name.clone(), Arc::new(settings))
            })
            .collect();
        (
            Snapshot {
                config,
                pools,
                tcp,
                http,
            },
            subscriptions,
        )
    }

    /// An http listener's settings: its compiled route table with a target per route, each
    /// holding its pool and the pool's long-lived pooled client.
    fn http_listener(
        &self,
        name: &str,
        l: &ListenerConfig,
        spec: &HttpListenerSpec,
        config: &Config,
        pools: &BTreeMap<String, Arc<Pool>>,
        upstreams: &mut HashMap<(String, UpstreamSettings), Arc<Upstream>>,
    ) -> HttpListenerConfig {
        let mut target =
            |route: &str, pool_name: &str, timeout, max_body_bytes, retries, host_rewrite| {
                let pc = &config.pools[pool_name];
                let settings = UpstreamSettings {
                    connect_timeout: l.connect_timeout,
                    idle_timeout: pc.http.keepalive_timeout,
                    max_idle_per_backend: pc.http.max_idle,
                    http2: pc.http.http2,
                };
                let key = (pool_name.to_owned(), settings.clone());
                let upstream = upstreams
                    .entry(key.clone())
                    .or_insert_with(|| {
                        self.upstreams
                            .get(&key)
                            .cloned()
                            .unwrap_or_else(|| Arc::new(Upstream::new(settings)))
                    })
                    .clone();
                let policy = RoutePolicy {
                    timeout,
                    max_body_bytes,
                    retries,
                    host_rewrite,
                };
                Arc::new(RouteTarget::new(
                    name,
                    route,
                    Arc::clone(&pools[pool_name]),
                    upstream,
                    policy,
                ))
            };
        let mut targets: Vec<Arc<RouteTarget>> = spec
            .routes
            .iter()
            .map(|r| {
                target(
                    &r.name,
                    &r.pool,
                    r.timeout,
                    r.max_body_bytes,
                    r.retries,
                    r.host_rewrite.clone(),
                )
            })
            .collect();
        if let Some(default) = &l.pool {
            targets.push(target(
                "default",
                default,
                crate::config::DEFAULT_ROUTE_TIMEOUT,
                None,
                crate::config::DEFAULT_RETRIES,
                None,
            ));
        }
        let tls = (!spec.certificates.is_empty()).then(|| {
            let certs = spec.certificates.iter().map(|c| c.loaded.clone()).collect();
            // Validation loaded every certificate; an empty list is refused there.
            let resolver = CertResolver::new(certs).expect("validated certificates");
            tls::server_config(Arc::new(resolver), Alpn::H2AndHttp11)
        });
        HttpListenerConfig {
            routes: Arc::clone(&spec.table),
            targets: targets.into_boxed_slice(),
            tls,
            redirect_https: spec.redirect_https,
            max_header_bytes: spec.max_header_bytes,
            max_headers: spec.max_headers,
            header_timeout: spec.header_timeout,
            max_concurrent_streams: spec.max_concurrent_streams,
            forwarded: spec.forwarded,
            request_id: spec.request_id.clone(),
            access_log: config.log.access_log,
        }
    }
}

/// The check a pool's health config asks for on one backend: probed on the backend's address,
/// at `port` when set (Kubernetes' healthCheckNodePort).
pub(super) fn check_key(h: &HealthConfig, backend: SocketAddr) -> Option<CheckKey> {
    let kind = match h.kind {
        HealthKind::None => return None,
        HealthKind::Tcp => ProbeKind::Tcp,
        HealthKind::Http => ProbeKind::Http {
            path: h.path.clone(),
            expect_status: h.expect_status,
        },
    };
    let addr = SocketAddr::new(backend.ip(), h.port.unwrap_or(backend.port()));
    Some(CheckKey {
        spec: ProbeSpec {
            addr,
            kind,
            timeout: h.timeout,
        },
        interval: h.interval,
        rise: h.rise,
        fall: h.fall,
    })
}

/// The listeners' view of the current snapshot.
pub struct SnapshotSource(pub Arc<ArcSwap<Snapshot>>);

impl ConfigSource for SnapshotSource {
    fn tcp_listener(&self, name: &str) -> Option<Arc<TcpListenerConfig>> {
        self.0.load().tcp.get(name).cloned()
    }
}

impl l7_router::ConfigSource for SnapshotSource {
    fn http_listener(&self, name: &str) -> Option<Arc<HttpListenerConfig>> {
        self.0.load().http.get(name).cloned()
    }
}
