//! Micro-benchmarks of Portico's hot functions (STYLE.md rule 13): route lookup, balancer picks,
//! Maglev table builds, PROXY header encoding, snapshot swaps, config validation of a large
//! file through the `portico check` binary, and a SIGHUP reload of that file by `portico run`.
//!
//! `cargo bench --bench hot_paths` (about 2 minutes); `cargo bench --bench hot_paths -- --test`
//! runs each benchmark once (CI).

use std::hint::black_box;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method};
use l7_router::routes::{RouteSpec, RouteTable};
use net_core::pool::{PassiveHealth, WhenAllDown};
use net_core::proxy_protocol::{self, ProxyVersion};
use net_core::{Backend, BackendKey, BalanceKind, Pool};

/// Route table shape: exact hosts + wildcard hosts = `HOSTS`, each with `PREFIXES_PER_HOST`
/// path prefixes, so `HOSTS * PREFIXES_PER_HOST` = 10,000 routes.
const HOSTS: usize = 1_000;
const WILDCARD_HOSTS: usize = 100;
const PREFIXES_PER_HOST: usize = 10;

/// Backends per pool for the balancer and Maglev benches; every `DOWN_EVERY`-th is down (10%).
const BACKENDS: usize = 1_000;
const DOWN_EVERY: usize = 10;

/// Pools in the generated config for the `portico check` bench (each with `SERVERS_PER_POOL`).
const CONFIG_POOLS: usize = 1_000;
const SERVERS_PER_POOL: usize = 2;

fn exact_host(i: usize) -> String {
    format!("svc{i}.example.com")
}

fn wildcard_suffix(i: usize) -> String {
    format!("tenant{i}.example.net")
}

/// Host pattern `i` of the table: the first `HOSTS - WILDCARD_HOSTS` are exact names, the rest
/// wildcards.
fn host_pattern(i: usize) -> String {
    if i < HOSTS - WILDCARD_HOSTS {
        exact_host(i)
    } else {
        format!("*.{}", wildcard_suffix(i))
    }
}

/// Prefixes of different lengths, so the longest-first scan has work to do.
fn prefix(j: usize) -> String {
    format!("/api/v{j}/{}", "x".repeat(j))
}

fn route_specs() -> Vec<RouteSpec<usize>> {
    let mut specs = Vec::with_capacity(HOSTS * PREFIXES_PER_HOST);
    for i in 0..HOSTS {
        for j in 0..PREFIXES_PER_HOST {
            specs.push(RouteSpec {
                name: format!("r{i}-{j}"),
                host: Some(host_pattern(i)),
                path_exact: None,
                path_prefix: Some(prefix(j)),
                methods: Vec::new(),
                headers: Vec::new(),
                target: i,
            });
        }
    }
    specs
}

fn routes(c: &mut Criterion) {
    let table = RouteTable::compile(route_specs(), None).expect("routes compile");
    assert_eq!(table.len(), HOSTS * PREFIXES_PER_HOST);
    let headers = HeaderMap::new();
    let get = Method::GET;
    // The shortest prefix is tried last: the worst case for a hit.
    let path = format!("{}users/42?page=2", prefix(0));
    let exact = format!("{}:443", exact_host(500));
    let wildcard = format!("a.b.{}", wildcard_suffix(HOSTS - 1));

    let lookup = |host: &str| {
        table
            .lookup(black_box(host), black_box(&path), &get, &headers)
            .map(|m| *m.target)
    };
    assert_eq!(lookup(&exact), Some(500));
    assert_eq!(lookup(&wildcard), Some(HOSTS - 1));
    assert_eq!(lookup("nothing.example.org"), None);

    let mut g = c.benchmark_group("routes_10k");
    g.bench_function("hit_exact_host", |b| b.iter(|| lookup(&exact)));
    g.bench_function("hit_wildcard", |b| b.iter(|| lookup(&wildcard)));
    g.bench_function("miss", |b| b.iter(|| lookup("nothing.example.org")));
    g.sample_size(10);
    g.bench_function("compile", |b| {
        b.iter_batched(
            route_specs,
            |specs| RouteTable::compile(specs, None).expect("routes compile"),
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn backends(n: usize) -> Vec<Arc<Backend>> {
    (0..n)
        .map(|i| {
            let key = BackendKey {
                pool: Arc::from("bench"),
                addr: SocketAddr::from(([10, (i >> 8) as u8, i as u8, 1], 30080)),
            };
            let backend = Arc::new(Backend::new(key, None, 1));
            if i % DOWN_EVERY == DOWN_EVERY - 1 {
                backend.set_up(false);
            }
            backend
        })
        .collect()
}

fn pool(kind: BalanceKind, backends: Vec<Arc<Backend>>) -> Pool {
    Pool::new(
        Arc::from("bench"),
        kind,
        backends,
        WhenAllDown::TryAll,
        PassiveHealth::default(),
    )
}

fn balancers(c: &mut Criterion) {
    let mut g = c.benchmark_group("pick_1000_backends_10pct_down");
    for kind in BalanceKind::ALL {
        let pool = pool(kind, backends(BACKENDS));
        let mut client = 0u64;
        g.bench_function(BenchmarkId::from_parameter(kind.as_str()), |b| {
            b.iter(|| {
                // A different client each time, so Maglev does not hit one slot only.
                client = client.wrapping_add(1);
                let hash = net_core::hash::mix64(client);
                pool.pick(black_box(hash), &[]).expect("a backend is up")
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("maglev_1000_backends");
    g.sample_size(10);
    let backends = backends(BACKENDS);
    let maglev = pool(BalanceKind::Maglev, backends.clone());
    g.bench_function("refresh", |b| b.iter(|| maglev.refresh()));
    g.bench_function("pool_new", |b| {
        b.iter(|| pool(BalanceKind::Maglev, backends.clone()))
    });
    g.finish();
}

fn proxy_headers(c: &mut Criterion) {
    let v4: (SocketAddr, SocketAddr) = (
        "203.0.113.77:51234".parse().unwrap(),
        "192.0.2.10:443".parse().unwrap(),
    );
    let v6: (SocketAddr, SocketAddr) = (
        "[2001:db8:1234:5678:9abc:def0:1234:5678]:51234"
            .parse()
            .unwrap(),
        "[2001:db8::10]:443".parse().unwrap(),
    );
    let mut g = c.benchmark_group("proxy_encode");
    for (version, vname) in [(ProxyVersion::V1, "v1"), (ProxyVersion::V2, "v2")] {
        for ((src, dst), family) in [(v4, "ipv4"), (v6, "ipv6")] {
            // The caller's buffer is reused, as on a connection (it only grows once).
            let mut out = Vec::with_capacity(proxy_protocol::V1_MAX_LEN);
            g.bench_function(format!("{vname}_{family}"), |b| {
                b.iter(|| {
                    out.clear();
                    proxy_protocol::encode(version, black_box(src), black_box(dst), &mut out);
                    out.len()
                })
            });
        }
    }
    g.finish();
}

/// A stand-in for the daemon's snapshot: what a reload publishes in one `ArcSwap::store`.
/// The cost of a swap does not depend on the contents (only pointers move); dropping the old
/// snapshot does, and is left out here because the benchmark alternates two live snapshots.
struct Snapshot {
    generation: u64,
    pools: Vec<Arc<str>>,
}

fn snapshot(generation: u64) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        generation,
        pools: (0..CONFIG_POOLS)
            .map(|i| Arc::from(format!("pool-{i}")))
            .collect(),
    })
}

fn snapshot_swap(c: &mut Criterion) {
    let (a, b_snap) = (snapshot(1), snapshot(2));
    let live = Arc::new(ArcSwap::new(Arc::clone(&a)));
    let mut g = c.benchmark_group("snapshot");

    // Per connection / request: a reader loads the current snapshot and reads from it.
    g.bench_function("load", |b| {
        b.iter(|| {
            let s = live.load();
            black_box(s.generation) + s.pools.len() as u64
        })
    });
    g.bench_function("load_full", |b| b.iter(|| live.load_full().generation));

    // Per reload: publish a new snapshot (alternating two prebuilt ones).
    let mut flip = false;
    let mut next = || {
        flip = !flip;
        Arc::clone(if flip { &b_snap } else { &a })
    };
    g.bench_function("store_no_readers", |b| {
        b.iter_batched(
            &mut next,
            |s| live.store(s),
            criterion::BatchSize::SmallInput,
        )
    });

    // The same while another thread keeps loading (the daemon's workers): the writer then has
    // to settle the readers' borrowed pointers.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (live, stop) = (Arc::clone(&live), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut sum = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..1_000 {
                    sum = sum.wrapping_add(live.load().generation);
                }
            }
            sum
        })
    };
    g.bench_function("store_with_reader_thread", |b| {
        b.iter_batched(
            &mut next,
            |s| live.store(s),
            criterion::BatchSize::SmallInput,
        )
    });
    stop.store(true, Ordering::Relaxed);
    black_box(reader.join().expect("reader thread"));
    g.finish();
}

/// Writes a config with `pools` pools and `routes_per_pool` routes each on one http listener
/// (1,000 hosts x 10 prefixes at full size, the same shape as the route table above).
fn write_config(path: &Path, pools: usize, routes_per_pool: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create config"));
    writeln!(
        f,
        "[admin]\nlisten = \"127.0.0.1:9900\"\n\n[log]\nlevel = \"warn\"\n"
    )
    .unwrap();
    for i in 0..pools {
        let servers: Vec<String> = (1..=SERVERS_PER_POOL)
            .map(|s| format!("\"10.{}.{}.{s}:8080\"", i / 250, i % 250))
            .collect();
        writeln!(f, "[pools.pool-{i}]\nservers = [{}]\n", servers.join(", ")).unwrap();
    }
    writeln!(
        f,
        "[listeners.web]\nbind = \"127.0.0.1:8000\"\nprotocol = \"http\"\n"
    )
    .unwrap();
    for i in 0..pools {
        for j in 0..routes_per_pool {
            writeln!(
                f,
                "[[listeners.web.routes]]\nhost = \"{}\"\npath_prefix = \"{}\"\npool = \"pool-{i}\"\n",
                host_pattern(i),
                prefix(j)
            )
            .unwrap();
        }
    }
    f.flush().expect("write config");
}

/// Time `portico check --config <path>` (process start included), failing loudly if the
/// config is rejected.
fn time_check(binary: &Path, config: &Path) -> Duration {
    let start = Instant::now();
    let out = Command::new(binary)
        .arg("check")
        .arg("--config")
        .arg(config)
        .output()
        .expect("run portico check");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "portico check {} failed: {}{}",
        config.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

/// Config validation lives in the daemon binary, so it is measured end to end: `portico check`
/// on a 1,000-pool / 10,000-route file, next to the same command on a 1-pool / 1-route file
/// (process start, runtime and parsing floor). Validation cost ~ big - tiny.
fn config_check(c: &mut Criterion) {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_portico"));
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.toml");
    let tiny = dir.path().join("tiny.toml");
    write_config(&big, CONFIG_POOLS, PREFIXES_PER_HOST);
    write_config(&tiny, 1, 1);

    let mut g = c.benchmark_group("portico_check");
    g.sample_size(10);
    for (name, path) in [("1_pool_1_route", &tiny), ("1000_pools_10000_routes", &big)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| time_check(&binary, path)).sum())
        });
    }
    g.finish();
}

/// Writes the reload bench's config: the same 1,000 pools and 10,000 routes as
/// [`write_config`], on ports the OS picks, with one runtime thread. `variant` 1 moves one route
/// to another pool and adds one, so alternating the variants makes every reload a change.
fn write_reload_config(path: &Path, variant: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create config"));
    writeln!(
        f,
        "[admin]\nlisten = \"127.0.0.1:0\"\n[runtime]\nworker_threads = 1\n\
         [log]\nlevel = \"info\"\naccess_log = false\n"
    )
    .unwrap();
    for i in 0..CONFIG_POOLS {
        let servers: Vec<String> = (1..=SERVERS_PER_POOL)
            .map(|s| format!("\"10.{}.{}.{s}:8080\"", i / 250, i % 250))
            .collect();
        writeln!(f, "[pools.pool-{i}]\nservers = [{}]\n", servers.join(", ")).unwrap();
    }
    writeln!(
        f,
        "[listeners.web]\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n"
    )
    .unwrap();
    for i in 0..CONFIG_POOLS {
        for j in 0..PREFIXES_PER_HOST {
            let pool = if variant == 1 && i == 0 && j == 0 {
                1
            } else {
                i
            };
            writeln!(
                f,
                "[[listeners.web.routes]]\nhost = \"{}\"\npath_prefix = \"{}\"\npool = \"pool-{pool}\"\n",
                host_pattern(i),
                prefix(j)
            )
            .unwrap();
        }
    }
    if variant == 1 {
        writeln!(
            f,
            "[[listeners.web.routes]]\nhost = \"canary.example.com\"\npool = \"pool-0\"\n"
        )
        .unwrap();
    }
    f.flush().expect("write config");
}

/// A `portico run` whose stderr a thread reads, collecting the reload outcome lines.
struct Daemon {
    child: std::process::Child,
    outcomes: Arc<(std::sync::Mutex<Vec<String>>, std::sync::Condvar)>,
}

impl Daemon {
    fn start(binary: &Path, config: &Path) -> Daemon {
        use std::io::BufRead as _;
        let mut child = Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn portico");
        let stderr = child.stderr.take().expect("stderr");
        let outcomes = Arc::new((std::sync::Mutex::new(Vec::new()), std::sync::Condvar::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let seen = Arc::clone(&outcomes);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("portico ready") {
                    let _ = ready_tx.send(());
                }
                if line.contains("reload applied") || line.contains("reload failed") {
                    seen.0.lock().unwrap().push(line);
                    seen.1.notify_all();
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("portico ready");
        Daemon { child, outcomes }
    }

    /// Sends SIGHUP and waits for its "reload applied" line; the time between the two.
    fn reload(&self) -> Duration {
        let (lines, grew) = &*self.outcomes;
        let before = lines.lock().unwrap().len();
        let start = Instant::now();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
        let mut seen = lines.lock().unwrap();
        while seen.len() == before {
            let (guard, timeout) = grew.wait_timeout(seen, Duration::from_secs(60)).unwrap();
            assert!(!timeout.timed_out(), "no reload outcome within 60 s");
            seen = guard;
        }
        let elapsed = start.elapsed();
        assert!(seen[before].contains("reload applied"), "{}", seen[before]);
        elapsed
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SIGHUP of the 1,000-pool / 10,000-route file, to its "reload applied" log line, on a
/// running `portico run` with one runtime thread and no traffic. Each reload alternates between
/// two variants of the file, so each applies a change (one route moved, one added or removed).
fn reload(c: &mut Criterion) {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_portico"));
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("portico.toml");
    let variants = [dir.path().join("v0.toml"), dir.path().join("v1.toml")];
    for (i, v) in variants.iter().enumerate() {
        write_reload_config(v, i);
    }
    std::fs::copy(&variants[0], &live).expect("copy config");
    let daemon = Daemon::start(&binary, &live);
    let mut next = 1;
    let mut g = c.benchmark_group("reload_1000_pools_10000_routes");
    g.sample_size(10);
    g.bench_function("sighup_to_applied", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    std::fs::copy(&variants[next], &live).expect("copy config");
                    next = 1 - next;
                    daemon.reload()
                })
                .sum()
        })
    });
    g.finish();
}

fn short() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = short();
    targets = routes, balancers, proxy_headers, snapshot_swap, config_check, reload
}
criterion_main!(benches);
