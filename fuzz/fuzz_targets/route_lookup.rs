//! Host and path matching: a route table from fuzzed hosts and paths (invalid ones are refused
//! at compile, as config validation refuses them), then lookups of fuzzed request hosts and
//! paths: no panic, and a request for a route's own exact host and path finds a route.
#![no_main]

use http::{HeaderMap, Method};
use l7_router::routes::{RouteSpec, RouteTable};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\n');
    let mut specs = Vec::new();
    for (i, line) in parts.by_ref().take(8).enumerate() {
        let (host, path) = line.split_once(' ').unwrap_or((line, "/"));
        specs.push(RouteSpec {
            name: format!("r{i}"),
            host: (!host.is_empty()).then(|| host.to_owned()),
            path_exact: (i % 2 == 0).then(|| path.to_owned()),
            path_prefix: (i % 2 == 1).then(|| path.to_owned()),
            methods: Vec::new(),
            headers: Vec::new(),
            target: i,
        });
    }
    let Ok(table) = RouteTable::compile(specs.clone(), None) else {
        return;
    };
    let headers = HeaderMap::new();
    for line in parts {
        let (host, path) = line.split_once(' ').unwrap_or((line, "/"));
        let _ = table.lookup(host, path, &Method::GET, &headers);
    }
    for spec in &specs {
        if let (Some(host), Some(path)) = (&spec.host, &spec.path_exact)
            && !host.starts_with('*')
            && !path.contains('?')
        {
            assert!(
                table.lookup(host, path, &Method::GET, &headers).is_some(),
                "{spec:?}"
            );
        }
    }
});
