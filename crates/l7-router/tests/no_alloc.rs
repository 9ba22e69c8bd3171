//! `RouteTable::lookup` allocates nothing. This test binary installs a counting global allocator
//! (the only `unsafe` here: a `GlobalAlloc` impl that forwards to `System` unchanged), which
//! counts only on a thread that asked for it, so the test harness's own allocations do not
//! interfere.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use l7_router::routes::{RouteSpec, RouteTable};

struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the allocator may run while this thread's locals are being torn down.
    let counting = COUNTING.try_with(Cell::get).unwrap_or(false);
    if counting {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded to `System` with the same arguments; the bookkeeping touches
// only const-initialised thread-locals, which neither allocate nor register destructors.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: `ptr` came from this allocator, hence from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, hence from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Allocations made by `f` on this thread.
fn allocations_during(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

fn spec(name: String, host: Option<String>, prefix: Option<String>) -> RouteSpec<usize> {
    RouteSpec {
        name,
        host,
        path_exact: None,
        path_prefix: prefix,
        methods: Vec::new(),
        headers: Vec::new(),
        target: 0,
    }
}

#[test]
fn lookup_does_not_allocate() {
    // The counter sees an allocation when there is one.
    assert_eq!(
        allocations_during(|| drop(black_box(Vec::<u8>::with_capacity(8)))),
        1
    );

    let mut routes = Vec::new();
    for h in 0..1_000 {
        for p in 0..10 {
            routes.push(spec(
                format!("h{h}-p{p}"),
                Some(format!("host{h}.example.com")),
                Some(format!("/svc{p}/")),
            ));
        }
    }
    routes.push(spec("wild".into(), Some("*.example.com".into()), None));
    let mut canary = spec("canary".into(), None, Some("/".into()));
    canary.methods = vec!["POST".into()];
    canary.headers = vec![("x-canary".into(), "1".into())];
    routes.push(canary);
    let mut exact = spec("exact".into(), None, None);
    exact.path_exact = Some("/healthz".into());
    routes.push(exact);
    let table = RouteTable::compile(routes, Some(usize::MAX)).expect("valid routes");

    // Every input is built before counting starts.
    let long_host = format!("{}.example.com", "a".repeat(300));
    let requests: Vec<(String, String)> = (0..1_000)
        .map(|i| {
            let host = match i % 8 {
                0 => format!("host{}.example.com", i % 1_000),
                1 => format!("HOST{}.Example.COM.:8443", i % 1_000),
                2 => format!("x.y.host{}.example.com", i % 1_000),
                3 => "[2001:db8::1]:443".to_owned(),
                4 => long_host.clone(),
                5 => String::new(),
                6 => "unknown.example.org".to_owned(),
                _ => format!("host{}.example.com", 2_000 + i),
            };
            let path = match i % 5 {
                0 => format!("/svc{}/items?page=2", i % 10),
                1 => "/healthz".to_owned(),
                2 => "/svc99/".to_owned(),
                3 => format!("/svc{}", i % 10),
                _ => String::new(),
            };
            (host, path)
        })
        .collect();
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("x-canary"),
        HeaderValue::from_static("1"),
    );
    headers.append(
        HeaderName::from_static("x-canary"),
        HeaderValue::from_static("0"),
    );
    let methods = [Method::GET, Method::POST];

    let mut hits = 0usize;
    let count = allocations_during(|| {
        for (i, (host, path)) in requests.iter().enumerate() {
            let method = &methods[i % 2];
            let matched = table.lookup(black_box(host), black_box(path), method, &headers);
            hits += usize::from(black_box(matched).is_some_and(|m| m.route != "default"));
        }
    });
    assert_eq!(count, 0, "allocations during 1,000 lookups");
    // The mix exercised real matches, not only misses.
    assert!(hits > 500, "{hits} route hits");
}
