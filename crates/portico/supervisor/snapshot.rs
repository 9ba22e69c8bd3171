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
    /// Looked up by name for every L4 connection and L7 request. A config has a handful of
    /// listeners: a tree finds one in a few string compares, where a `HashMap` first runs
    /// SipHash over the name (about 300 instructions, 1.3% of a proxied L7 request).
    pub tcp: BTreeMap<String, Arc<TcpListenerConfig>>,
    pub http: BTreeMap<String, Arc<HttpListenerConfig>>,
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
///
/// Cheap to clone (two `Arc`s): a reload builds the next snapshot from a clone, off the runtime
/// thread, and the supervisor keeps the registry that build returns once it is published.
#[derive(Clone, Default)]
pub struct BackendRegistry {
    backends: Arc<HashMap<BackendKey, Arc<Backend>>>,
    /// Pooled HTTP clients by pool and settings: their idle connections survive reloads.
    upstreams: Arc<HashMap<(String, UpstreamSettings), Arc<Upstream>>>,
}

/// A snapshot built for publication, with what goes with it.
pub struct Built {
    pub snapshot: Snapshot,
    /// For `HealthChecks::reconcile`, once the snapshot is published.
    pub subscriptions: Vec<Subscription>,
    /// The registry to keep once the snapshot is published.
    pub registry: BackendRegistry,
}

/// The health verdicts a build needs (one per distinct check of the config's pools), read
/// from the health checks on the supervisor's thread so that the build can run on another.
#[derive(Default)]
pub struct Verdicts(HashMap<CheckKey, Verdict>);

impl Verdicts {
    pub fn collect(config: &Config, verdict_of: impl Fn(&CheckKey) -> Option<Verdict>) -> Self {
        let mut verdicts = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for pool in config.pools.values() {
            for m in &pool.members {
                let Some(key) = check_key(&pool.health, m.addr) else {
                    break; // no check in this pool
                };
                if seen.contains(&key) {
                    continue;
                }
                if let Some(v) = verdict_of(&key) {
                    verdicts.insert(key.clone(), v);
                }
                seen.insert(key);
            }
        }
        Verdicts(verdicts)
    }
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
        let built = self.build_from(config, None, &verdict_of);
        *self = built.registry;
        (built.snapshot, built.subscriptions)
    }

    /// [`build`](Self::build) for a reload, leaving `self` as it is (the caller keeps
    /// `Built::registry` once the snapshot is published): pure work that may run on any thread.
    /// From `previous` (the running snapshot) it reuses every pool whose config and backends are
    /// unchanged (balancer tables and round-robin position included), every route target whose
    /// pool, client and policy are unchanged (its registered metrics included) and the TLS
    /// settings of listeners whose certificates are unchanged (TLS session resumption
    /// included), so a reload that changes one route of 10,000 rebuilds about that much.
    pub fn build_next(
        &self,
        config: Arc<Config>,
        previous: &Snapshot,
        verdicts: &Verdicts,
    ) -> Built {
        self.build_from(config, Some(previous), &|k| verdicts.0.get(k).cloned())
    }

    fn build_from(
        &self,
        config: Arc<Config>,
        previous: Option<&Snapshot>,
        verdict_of: &dyn Fn(&CheckKey) -> Option<Verdict>,
    ) -> Built {
        let mut live = HashMap::with_capacity(self.backends.len());
        let mut pools = BTreeMap::new();
        let mut subscriptions = Vec::new();
        for (name, pool) in &config.pools {
            let old = previous.and_then(|p| Some((p.config.pools.get(name)?, p.pools.get(name)?)));
            let pool_name: Arc<str> = match old {
                Some((_, old_pool)) => Arc::clone(old_pool.name()),
                None => Arc::from(name.as_str()),
            };
            let backends: Vec<Arc<Backend>> = pool
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
            // The same config over the same live backends: the running pool is this pool. Its
            // tables follow the backends' state (`refresh_stale_pools` after publication).
            let kept = old.filter(|(old_config, old_pool)| {
                *old_config == pool
                    && old_pool.backends().len() == backends.len()
                    && old_pool
                        .backends()
                        .iter()
                        .zip(&backends)
                        .all(|(a, b)| Arc::ptr_eq(a, b))
            });
            let pool = match kept {
                Some((_, old_pool)) => Arc::clone(old_pool),
                None => Arc::new(Pool::new(
                    pool_name,
                    pool.balance,
                    backends,
                    pool.when_all_down,
                    pool.passive,
                )),
            };
            pools.insert(name.clone(), pool);
        }

        let mut upstreams = HashMap::new();
        let mut http = BTreeMap::new();
        for (name, l) in &config.listeners {
            if let Some(spec) = &l.http {
                let old = previous.and_then(|p| {
                    let settings = p.http.get(name)?;
                    let spec = p.config.listeners.get(name)?.http.as_deref()?;
                    Some((settings.as_ref(), spec))
                });
                let settings =
                    self.http_listener(name, l, spec, &config, &pools, &mut upstreams, old);
                http.insert(name.clone(), Arc::new(settings));
            }
        }

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
        Built {
            snapshot: Snapshot {
                config,
                pools,
                tcp,
                http,
            },
            subscriptions,
            registry: BackendRegistry {
                backends: Arc::new(live),
                upstreams: Arc::new(upstreams),
            },
        }
    }

    /// An http listener's settings: its compiled route table with a target per route, each
    /// holding its pool and the pool's long-lived pooled client. `old`: the same listener in
    /// the running snapshot, whose unchanged targets and TLS settings are kept.
    #[allow(clippy::too_many_arguments)]
    fn http_listener<'c>(
        &self,
        name: &str,
        l: &'c ListenerConfig,
        spec: &'c HttpListenerSpec,
        config: &Config,
        pools: &BTreeMap<String, Arc<Pool>>,
        upstreams: &mut HashMap<(String, UpstreamSettings), Arc<Upstream>>,
        old: Option<(&HttpListenerConfig, &HttpListenerSpec)>,
    ) -> HttpListenerConfig {
        // Each pool this listener's routes use, with its client: 10,000 routes share 1,000 pools
        // and one hash lookup per route beats a tree walk plus a lookup.
        let mut by_pool: HashMap<&'c str, (&Arc<Pool>, Arc<Upstream>)> = HashMap::new();
        let mut reuse = TargetReuse::new(old.map_or(&[][..], |(o, _)| &o.targets[..]));
        let mut target = |index: usize,
                          route: &str,
                          pool_name: &'c str,
                          policy: RoutePolicy|
         -> Arc<RouteTarget> {
            let (pool, upstream) = by_pool.entry(pool_name).or_insert_with(|| {
                let pc = &config.pools[pool_name];
                let settings = UpstreamSettings {
                    connect_timeout: l.connect_timeout,
                    idle_timeout: pc.http.keepalive_timeout,
                    max_idle_per_backend: pc.http.max_idle,
                    http2: pc.http.http2,
                };
                let key = (pool_name.to_owned(), settings);
                let upstream = upstreams
                    .get(&key)
                    .or_else(|| self.upstreams.get(&key))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Upstream::new(key.1.clone())));
                upstreams.insert(key, Arc::clone(&upstream));
                (&pools[pool_name], upstream)
            });
            let (pool, upstream) = (*pool, Arc::clone(upstream));
            reuse
                .find(index, route, |t| {
                    *t.name == *route
                        && Arc::ptr_eq(&t.pool, pool)
                        && Arc::ptr_eq(&t.upstream, &upstream)
                        && t.timeout == policy.timeout
                        && t.max_body_bytes == policy.max_body_bytes
                        && t.retries == policy.retries
                        && t.host_rewrite == policy.host_rewrite
                })
                .unwrap_or_else(|| {
                    Arc::new(RouteTarget::new(
                        name,
                        route,
                        Arc::clone(pool),
                        upstream,
                        policy,
                    ))
                })
        };
        let mut targets: Vec<Arc<RouteTarget>> = spec
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let policy = RoutePolicy {
                    timeout: r.timeout,
                    max_body_bytes: r.max_body_bytes,
                    retries: r.retries,
                    host_rewrite: r.host_rewrite.clone(),
                };
                target(i, &r.name, &r.pool, policy)
            })
            .collect();
        if let Some(default) = &l.pool {
            let policy = RoutePolicy {
                timeout: crate::config::DEFAULT_ROUTE_TIMEOUT,
                max_body_bytes: None,
                retries: crate::config::DEFAULT_RETRIES,
                host_rewrite: None,
            };
            targets.push(target(spec.routes.len(), "default", default, policy));
        }
        let tls = match old {
            Some((old, old_spec)) if old_spec.certificates == spec.certificates => old.tls.clone(),
            _ => (!spec.certificates.is_empty()).then(|| {
                let certs = spec.certificates.iter().map(|c| c.loaded.clone()).collect();
                // Validation loaded every certificate; an empty list is refused there.
                let resolver = CertResolver::new(certs).expect("validated certificates");
                tls::server_config(Arc::new(resolver), Alpn::H2AndHttp11)
            }),
        };
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

/// Finds, among a listener's previous route targets, one a new route can keep. Routes are
/// usually where they were, or shifted by the routes inserted or removed before them, so the
/// old target at the same index (plus the last shift seen) is tried first; a route whose name
/// is not found there is looked up by name, in an index built the first time.
struct TargetReuse<'a> {
    old: &'a [Arc<RouteTarget>],
    shift: isize,
    /// The first old index of each name, and for each old index the next one with the same
    /// name (`usize::MAX`: none).
    by_name: Option<(HashMap<&'a str, usize>, Vec<usize>)>,
}

impl<'a> TargetReuse<'a> {
    fn new(old: &'a [Arc<RouteTarget>]) -> Self {
        Self {
            old,
            shift: 0,
            by_name: None,
        }
    }

    /// A previous target of route `index` named `name` that `fits`.
    fn find(
        &mut self,
        index: usize,
        name: &str,
        fits: impl Fn(&RouteTarget) -> bool,
    ) -> Option<Arc<RouteTarget>> {
        let expected = index
            .checked_add_signed(self.shift)
            .and_then(|i| self.old.get(i));
        if let Some(t) = expected {
            if fits(t) {
                return Some(Arc::clone(t));
            }
            if *t.name == *name {
                return None; // this route, changed
            }
        } else {
            return None; // past the old routes: a new route (a moved one starts afresh)
        }
        let old = self.old;
        let (first, next) = self.by_name.get_or_insert_with(|| {
            let mut first = HashMap::with_capacity(old.len());
            let mut next = vec![usize::MAX; old.len()];
            for (i, t) in old.iter().enumerate().rev() {
                next[i] = first.insert(&*t.name, i).unwrap_or(usize::MAX);
            }
            (first, next)
        });
        let mut i = *first.get(name)?;
        while i != usize::MAX {
            if fits(&old[i]) {
                self.shift = i as isize - index as isize;
                return Some(Arc::clone(&old[i]));
            }
            i = next[i];
        }
        None
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `pools` pools of two servers and one http route per pool (plus `extra` at the front when
    /// given), as the reload bench shapes them.
    fn config(pools: usize, first_route_pool: usize, extra: Option<&str>) -> Arc<Config> {
        let mut toml = String::from("[admin]\nlisten = \"127.0.0.1:0\"\n");
        for p in 0..pools {
            toml.push_str(&format!(
                "[pools.p{p}]\nservers = [\"127.0.0.1:{}\", \"127.0.0.2:{}\"]\n",
                20000 + p,
                20000 + p
            ));
        }
        toml.push_str("[listeners.web]\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n");
        if let Some(host) = extra {
            toml.push_str(&format!(
                "[[listeners.web.routes]]\nhost = \"{host}\"\npool = \"p0\"\n"
            ));
        }
        for r in 0..pools {
            let pool = if r == 0 { first_route_pool } else { r };
            toml.push_str(&format!(
                "[[listeners.web.routes]]\nhost = \"h{r}.test\"\npool = \"p{pool}\"\n"
            ));
        }
        Arc::new(crate::config::load_str(&toml, "test").expect("valid config"))
    }

    fn targets(s: &Snapshot) -> &[Arc<RouteTarget>] {
        &s.http["web"].targets
    }

    #[test]
    fn a_reload_keeps_unchanged_pools_and_targets_and_rebuilds_the_changed_ones() {
        let mut registry = BackendRegistry::default();
        let (first, _) = registry.build(config(4, 0, None), |_| None);

        // Route 0 moves from pool p0 to p3; nothing else changes.
        let built = registry.build_next(config(4, 3, None), &first, &Verdicts::default());
        let next = &built.snapshot;
        for p in ["p0", "p1", "p2", "p3"] {
            assert!(
                Arc::ptr_eq(&first.pools[p], &next.pools[p]),
                "pool {p} kept"
            );
        }
        assert!(!Arc::ptr_eq(&targets(&first)[0], &targets(next)[0]));
        assert!(Arc::ptr_eq(&targets(next)[0].pool, &next.pools["p3"]));
        for i in 1..4 {
            assert!(
                Arc::ptr_eq(&targets(&first)[i], &targets(next)[i]),
                "target {i} kept"
            );
        }
        // The build left the running registry alone; the returned one has the same backends.
        for (key, backend) in built.registry.backends.iter() {
            assert!(Arc::ptr_eq(backend, &registry.backends[key]));
        }
    }

    #[test]
    fn a_route_inserted_in_front_shifts_the_others_without_losing_them() {
        let mut registry = BackendRegistry::default();
        let (first, _) = registry.build(config(4, 0, None), |_| None);
        let built =
            registry.build_next(config(4, 0, Some("new.test")), &first, &Verdicts::default());
        let next = &built.snapshot;
        assert_eq!(targets(next).len(), 5);
        assert_eq!(&*targets(next)[0].name, "new.test");
        for i in 0..4 {
            assert!(
                Arc::ptr_eq(&targets(&first)[i], &targets(next)[i + 1]),
                "route {i} kept at {}",
                i + 1
            );
        }
    }

    #[test]
    fn a_pool_whose_servers_change_is_rebuilt_and_its_routes_follow() {
        let mut registry = BackendRegistry::default();
        let (first, _) = registry.build(config(2, 0, None), |_| None);
        let mut changed = (*config(2, 0, None)).clone();
        changed.pools.get_mut("p1").unwrap().members.pop();
        let built = registry.build_next(Arc::new(changed), &first, &Verdicts::default());
        let next = &built.snapshot;
        assert!(Arc::ptr_eq(&first.pools["p0"], &next.pools["p0"]));
        assert!(!Arc::ptr_eq(&first.pools["p1"], &next.pools["p1"]));
        assert_eq!(next.pools["p1"].backends().len(), 1);
        assert!(Arc::ptr_eq(&targets(&first)[0], &targets(next)[0]));
        assert!(Arc::ptr_eq(&targets(next)[1].pool, &next.pools["p1"]));
        // The backend that stays is the same live backend (its state is kept).
        assert!(Arc::ptr_eq(
            &first.pools["p1"].backends()[0],
            &next.pools["p1"].backends()[0]
        ));
        assert_eq!(built.registry.backends.len(), 3);
    }
}
