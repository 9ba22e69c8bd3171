use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::*;

/// A route named `name` whose target is its name, matching everything until narrowed.
fn route(name: &str) -> RouteSpec<String> {
    RouteSpec {
        name: name.to_owned(),
        host: None,
        path_exact: None,
        path_prefix: None,
        methods: Vec::new(),
        headers: Vec::new(),
        target: name.to_owned(),
    }
}

impl RouteSpec<String> {
    fn on(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    fn exact(mut self, path: &str) -> Self {
        self.path_exact = Some(path.to_owned());
        self
    }

    fn prefix(mut self, path: &str) -> Self {
        self.path_prefix = Some(path.to_owned());
        self
    }

    fn methods(mut self, methods: &[&str]) -> Self {
        self.methods = methods.iter().map(|m| (*m).to_owned()).collect();
        self
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

fn compile(routes: Vec<RouteSpec<String>>) -> RouteTable<String> {
    RouteTable::compile(routes, None).expect("routes are valid")
}

fn compile_err(routes: Vec<RouteSpec<String>>) -> Vec<RouteError> {
    RouteTable::compile(routes, None).expect_err("routes are invalid")
}

/// The name of the route serving a GET without headers, checking that the target agrees.
fn get(table: &RouteTable<String>, host: &str, path: &str) -> Option<String> {
    request(table, host, path, &Method::GET, &HeaderMap::new())
}

fn request(
    table: &RouteTable<String>,
    host: &str,
    path: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Option<String> {
    let matched = table.lookup(host, path, method, headers)?;
    if matched.route != DEFAULT_ROUTE {
        assert_eq!(matched.target, matched.route, "target of {host}{path}");
    }
    Some(matched.route.to_owned())
}

/// Runs `(host, path, expected route)` cases as GETs.
fn check(table: &RouteTable<String>, cases: &[(&str, &str, Option<&str>)]) {
    for &(host, path, expected) in cases {
        assert_eq!(
            get(table, host, path).as_deref(),
            expected,
            "GET {path} with Host: {host}"
        );
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for &(name, value) in pairs {
        map.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    map
}

#[test]
fn exact_host_beats_wildcard_beats_any_host() {
    let table = compile(vec![
        route("any"),
        route("wild").on("*.example.com"),
        route("deep-wild").on("*.api.example.com"),
        route("exact").on("api.example.com"),
    ]);
    check(
        &table,
        &[
            ("api.example.com", "/", Some("exact")),
            ("www.example.com", "/", Some("wild")),
            ("v2.api.example.com", "/", Some("deep-wild")),
            ("x.v2.api.example.com", "/", Some("deep-wild")),
            ("example.org", "/", Some("any")),
            ("", "/", Some("any")),
        ],
    );
}

#[test]
fn wildcard_matches_any_depth_but_not_the_bare_domain() {
    let table = compile(vec![route("wild").on("*.example.com")]);
    check(
        &table,
        &[
            ("a.example.com", "/", Some("wild")),
            ("a.b.example.com", "/", Some("wild")),
            ("a.b.c.example.com:8443", "/", Some("wild")),
            ("example.com", "/", None),
            (".example.com", "/", None),
            ("badexample.com", "/", None),
            ("a.example.com.evil.org", "/", None),
            ("com", "/", None),
        ],
    );
}

#[test]
fn host_is_case_insensitive_and_ignores_port_and_trailing_dot() {
    let table = compile(vec![
        route("exact").on("API.Example.com."),
        route("wild").on("*.Example.COM"),
    ]);
    check(
        &table,
        &[
            ("api.example.com", "/", Some("exact")),
            ("API.EXAMPLE.COM", "/", Some("exact")),
            ("api.example.com:8443", "/", Some("exact")),
            ("api.example.com.", "/", Some("exact")),
            ("Api.Example.Com.:443", "/", Some("exact")),
            ("api.example.com:", "/", Some("exact")),
            ("WWW.example.com.", "/", Some("wild")),
            ("api.example.com..", "/", None),
            ("api.example.co", "/", None),
        ],
    );
}

#[test]
fn ipv6_literal_empty_and_overlong_hosts_match_only_hostless_routes() {
    let table = compile(vec![route("exact").on("api.example.com"), route("any")]);
    let long = format!("{}.example.com", "a".repeat(250));
    check(
        &table,
        &[
            ("[::1]:8443", "/", Some("any")),
            ("[::1]", "/", Some("any")),
            ("[2001:db8::1]:443", "/", Some("any")),
            ("", "/", Some("any")),
            (":8443", "/", Some("any")),
            (&long, "/", Some("any")),
        ],
    );
    let only_exact = compile(vec![route("exact").on("api.example.com")]);
    check(
        &only_exact,
        &[("[::1]:8443", "/", None), (&long, "/", None)],
    );
}

#[test]
fn ipv4_literal_hosts_are_exact_hosts() {
    let table = compile(vec![route("ip").on("192.0.2.10"), route("any")]);
    check(
        &table,
        &[
            ("192.0.2.10:8080", "/", Some("ip")),
            ("192.0.2.1", "/", Some("any")),
        ],
    );
}

#[test]
fn path_exact_beats_prefix_and_prefix_beats_any_path() {
    let table = compile(vec![
        route("any-path"),
        route("prefix").prefix("/login"),
        route("exact").exact("/login"),
    ]);
    check(
        &table,
        &[
            ("h", "/login", Some("exact")),
            ("h", "/login/", Some("prefix")),
            ("h", "/loginx", Some("prefix")),
            ("h", "/LOGIN", Some("any-path")),
            ("h", "/", Some("any-path")),
            ("h", "*", Some("any-path")),
        ],
    );
}

#[test]
fn longest_prefix_wins_regardless_of_config_order() {
    let routes = vec![
        route("root").prefix("/"),
        route("api").prefix("/api"),
        route("users").prefix("/api/users"),
        route("admin").prefix("/api/users/admin"),
    ];
    let cases = [
        ("h", "/", Some("root")),
        ("h", "/index.html", Some("root")),
        ("h", "/api", Some("api")),
        ("h", "/api/orders", Some("api")),
        ("h", "/api/users", Some("users")),
        ("h", "/api/users/42", Some("users")),
        ("h", "/api/users/admin/x", Some("admin")),
    ];
    let mut reversed = routes.clone();
    reversed.reverse();
    check(&compile(routes), &cases);
    check(&compile(reversed), &cases);
}

#[test]
fn prefix_is_a_plain_string_prefix() {
    let table = compile(vec![
        route("v1").prefix("/v1"),
        route("v2-dir").prefix("/v2/"),
    ]);
    check(
        &table,
        &[
            ("h", "/v1", Some("v1")),
            ("h", "/v1/", Some("v1")),
            ("h", "/v1/users", Some("v1")),
            ("h", "/v10", Some("v1")),
            ("h", "/v2/", Some("v2-dir")),
            ("h", "/v2", None),
            ("h", "/v20", None),
            ("h", "/V1", None),
        ],
    );
}

#[test]
fn query_string_is_ignored() {
    let table = compile(vec![
        route("exact").exact("/search"),
        route("prefix").prefix("/api/"),
    ]);
    check(
        &table,
        &[
            ("h", "/search?q=1", Some("exact")),
            ("h", "/search?", Some("exact")),
            ("h", "/api/?x=/search", Some("prefix")),
            ("h", "/sea?rch", None),
            ("h", "?/api/", None),
        ],
    );
}

#[test]
fn method_constraints_fall_through_to_less_specific_routes() {
    let table = compile(vec![
        route("root"),
        route("api-read").prefix("/api").methods(&["GET"]),
        route("upload")
            .exact("/api/upload")
            .methods(&["POST", "PUT"]),
        route("purge").exact("/api/upload").methods(&["PURGE"]),
    ]);
    let cases = [
        (Method::POST, "/api/upload", Some("upload")),
        (Method::PUT, "/api/upload", Some("upload")),
        (
            Method::from_bytes(b"PURGE").unwrap(),
            "/api/upload",
            Some("purge"),
        ),
        // No exact route for GET: the prefix takes it; GET admits HEAD.
        (Method::GET, "/api/upload", Some("api-read")),
        (Method::HEAD, "/api/upload", Some("api-read")),
        (Method::DELETE, "/api/upload", Some("root")),
        (Method::POST, "/api/other", Some("root")),
    ];
    for (method, path, expected) in cases {
        let got = request(&table, "h", path, &method, &HeaderMap::new());
        assert_eq!(got.as_deref(), expected, "{method} {path}");
    }
}

#[test]
fn get_admits_head_but_not_the_reverse() {
    let table = compile(vec![route("head-only").methods(&["HEAD"])]);
    let none = HeaderMap::new();
    assert_eq!(request(&table, "h", "/", &Method::GET, &none), None);
    assert_eq!(
        request(&table, "h", "/", &Method::HEAD, &none).as_deref(),
        Some("head-only")
    );
}

#[test]
fn header_constraints_must_all_match() {
    let table = compile(vec![
        route("stable"),
        route("canary")
            .header("X-Canary", "1")
            .header("x-tenant", "acme"),
        route("beta").header("x-canary", "1"),
    ]);
    let cases: [(&[(&str, &str)], &str); 7] = [
        (&[], "stable"),
        (&[("x-canary", "1")], "beta"),
        (&[("x-canary", "1"), ("x-tenant", "acme")], "canary"),
        (&[("x-tenant", "acme")], "stable"),
        // Values are compared exactly.
        (&[("x-canary", "1 "), ("x-tenant", "acme")], "stable"),
        (&[("x-canary", "1"), ("x-tenant", "ACME")], "beta"),
        // Any of a repeated header's values will do.
        (&[("x-canary", "0"), ("x-canary", "1")], "beta"),
    ];
    for (pairs, expected) in cases {
        let got = request(&table, "h", "/", &Method::GET, &headers(pairs));
        assert_eq!(got.as_deref(), Some(expected), "headers {pairs:?}");
    }
}

#[test]
fn constrained_routes_are_tried_before_the_unconstrained_one() {
    // The catch-all is written first, yet the POST-only route still gets POSTs.
    let table = compile(vec![
        route("all").prefix("/api"),
        route("writes").prefix("/api").methods(&["POST"]),
    ]);
    let none = HeaderMap::new();
    assert_eq!(
        request(&table, "h", "/api/x", &Method::POST, &none).as_deref(),
        Some("writes")
    );
    assert_eq!(
        request(&table, "h", "/api/x", &Method::GET, &none).as_deref(),
        Some("all")
    );
}

#[test]
fn overlapping_constrained_routes_go_by_config_order() {
    let table = compile(vec![
        route("reads").methods(&["GET"]),
        route("canary").header("x-canary", "1"),
    ]);
    let canary = headers(&[("x-canary", "1")]);
    assert_eq!(
        request(&table, "h", "/", &Method::GET, &canary).as_deref(),
        Some("reads")
    );
    assert_eq!(
        request(&table, "h", "/", &Method::POST, &canary).as_deref(),
        Some("canary")
    );
}

#[test]
fn listener_default_serves_unmatched_requests() {
    let routes = || vec![route("api").on("api.example.com").prefix("/v1")];
    let with_default = RouteTable::compile(routes(), Some("fallback".to_owned())).unwrap();
    let matched = with_default
        .lookup("other.org", "/", &Method::GET, &HeaderMap::new())
        .unwrap();
    assert_eq!(
        (matched.target.as_str(), matched.route),
        ("fallback", DEFAULT_ROUTE)
    );
    assert_eq!(
        get(&with_default, "api.example.com", "/v1").as_deref(),
        Some("api")
    );
    assert_eq!(
        with_default.default_target().map(String::as_str),
        Some("fallback")
    );

    let without = compile(routes());
    check(
        &without,
        &[("other.org", "/", None), ("api.example.com", "/v2", None)],
    );

    let empty = RouteTable::compile(Vec::new(), Some("fallback".to_owned())).unwrap();
    assert!(empty.is_empty());
    assert_eq!(get(&empty, "h", "/").as_deref(), Some(DEFAULT_ROUTE));
}

#[test]
fn host_groups_fall_through_to_less_specific_ones() {
    let table = RouteTable::compile(
        vec![
            route("exact-v1").on("api.example.com").prefix("/v1"),
            route("exact-post").on("api.example.com").methods(&["POST"]),
            route("deep-v2").on("*.api.example.com").prefix("/v2"),
            route("wild-v2").on("*.example.com").prefix("/v2"),
            route("wild-v3").on("*.example.com").prefix("/v3"),
            route("any-health").exact("/healthz"),
        ],
        Some("fallback".to_owned()),
    )
    .unwrap();
    check(
        &table,
        &[
            ("api.example.com", "/v1/x", Some("exact-v1")),
            // The exact group has no route for /v2 (for a GET): the wildcard takes it.
            ("api.example.com", "/v2/x", Some("wild-v2")),
            ("api.example.com", "/healthz", Some("any-health")),
            ("api.example.com", "/v4", Some(DEFAULT_ROUTE)),
            ("a.api.example.com", "/v2", Some("deep-v2")),
            // The longest wildcard has no /v3: the shorter one takes it.
            ("a.api.example.com", "/v3", Some("wild-v3")),
            ("a.api.example.com", "/healthz", Some("any-health")),
            ("other.org", "/v2", Some(DEFAULT_ROUTE)),
        ],
    );
    let none = HeaderMap::new();
    assert_eq!(
        request(&table, "api.example.com", "/v2/x", &Method::POST, &none).as_deref(),
        Some("exact-post")
    );
}

#[test]
fn a_catch_all_route_keeps_a_host_from_falling_through() {
    let table = compile(vec![
        route("admin").on("admin.example.com").prefix("/admin"),
        route("admin-rest").on("admin.example.com"),
        route("public"),
    ]);
    check(
        &table,
        &[
            ("admin.example.com", "/admin/x", Some("admin")),
            ("admin.example.com", "/other", Some("admin-rest")),
            ("www.example.com", "/other", Some("public")),
        ],
    );
}

#[test]
fn compile_reports_each_error_class() {
    let long_label = format!("{}.example.com", "a".repeat(64));
    let long_name = format!("{}com", "abcdefghi.".repeat(26));
    let host_cases: [(&str, HostError); 14] = [
        ("", HostError::Empty),
        ("*", HostError::AnyHost),
        ("*.", HostError::EmptyLabel),
        ("a.*.example.com", HostError::MisplacedWildcard),
        ("*a.example.com", HostError::MisplacedWildcard),
        ("*.*.example.com", HostError::MisplacedWildcard),
        ("api.example.*", HostError::MisplacedWildcard),
        ("a..example.com", HostError::EmptyLabel),
        (".example.com", HostError::EmptyLabel),
        ("example.com:443", HostError::InvalidCharacter(':')),
        // A character no name has is reported before an empty label.
        ("a..example.com:443", HostError::InvalidCharacter(':')),
        ("bücher.example", HostError::InvalidCharacter('ü')),
        (&long_label, HostError::LabelTooLong),
        (&long_name, HostError::TooLong),
    ];
    for (host, reason) in host_cases {
        assert_eq!(
            compile_err(vec![route("r").on(host)]),
            [RouteError::InvalidHost {
                route: 0,
                host: host.to_owned(),
                reason,
            }],
            "host {host:?}"
        );
    }
    // Punycode and digits are fine.
    compile(vec![
        route("r").on("xn--bcher-kva.example"),
        route("s").on("*.0.example"),
    ]);

    let path_cases = [
        ("", PathError::NotAbsolute),
        ("api", PathError::NotAbsolute),
        ("/a?b=1", PathError::QueryOrFragment),
        ("/a#top", PathError::QueryOrFragment),
        ("/a b", PathError::InvalidCharacter),
        ("/a\tb", PathError::InvalidCharacter),
    ];
    for (path, reason) in path_cases {
        for spec in [route("r").exact(path), route("r").prefix(path)] {
            assert_eq!(
                compile_err(vec![spec]),
                [RouteError::InvalidPath {
                    route: 0,
                    path: path.to_owned(),
                    reason,
                }],
                "path {path:?}"
            );
        }
    }

    let other_cases: [(RouteSpec<String>, RouteError); 9] = [
        (route(""), RouteError::EmptyName { route: 0 }),
        (route("default"), RouteError::ReservedName { route: 0 }),
        (
            route("r").exact("/a").prefix("/a"),
            RouteError::BothPaths { route: 0 },
        ),
        (
            route("r").methods(&["get"]),
            RouteError::InvalidMethod {
                route: 0,
                method: "get".to_owned(),
            },
        ),
        (
            route("r").methods(&["GE T"]),
            RouteError::InvalidMethod {
                route: 0,
                method: "GE T".to_owned(),
            },
        ),
        (
            route("r").methods(&[""]),
            RouteError::InvalidMethod {
                route: 0,
                method: String::new(),
            },
        ),
        (
            route("r").header("x canary", "1"),
            RouteError::InvalidHeaderName {
                route: 0,
                name: "x canary".to_owned(),
            },
        ),
        (
            route("r").header("x-canary", "1\n"),
            RouteError::InvalidHeaderValue {
                route: 0,
                name: "x-canary".to_owned(),
                value: "1\n".to_owned(),
            },
        ),
        (
            route("r").header("x-canary", " 1"),
            RouteError::InvalidHeaderValue {
                route: 0,
                name: "x-canary".to_owned(),
                value: " 1".to_owned(),
            },
        ),
    ];
    for (spec, error) in other_cases {
        let message = error.to_string();
        assert_eq!(compile_err(vec![spec]), [error], "{message}");
    }
    // Extension methods and any header name that is a token are fine.
    compile(vec![
        route("r").methods(&["PURGE", "MKCALENDAR"]),
        route("s").header("X-Custom_Header", "a b"),
    ]);
}

#[test]
fn compile_rejects_routes_that_can_never_match() {
    let cases: [(Vec<RouteSpec<String>>, RouteError); 8] = [
        (
            vec![route("a"), route("b")],
            RouteError::Duplicate {
                route: 1,
                earlier: 0,
            },
        ),
        (
            vec![
                route("a").on("API.example.com").prefix("/v1"),
                route("b").on("api.example.com.").prefix("/v1"),
            ],
            RouteError::Duplicate {
                route: 1,
                earlier: 0,
            },
        ),
        (
            // Order and repetition within a route do not matter; GET implies HEAD.
            vec![
                route("a")
                    .exact("/x")
                    .methods(&["POST", "GET"])
                    .header("x-a", "1"),
                route("b")
                    .exact("/x")
                    .methods(&["HEAD", "GET", "POST", "GET"])
                    .header("X-A", "1")
                    .header("x-a", "1"),
            ],
            RouteError::Duplicate {
                route: 1,
                earlier: 0,
            },
        ),
        (
            vec![
                route("a").on("*.example.com"),
                route("x").on("*.example.com").prefix("/x"),
                route("b").on("*.example.com"),
            ],
            RouteError::Duplicate {
                route: 2,
                earlier: 0,
            },
        ),
        (
            vec![
                route("a").methods(&["GET", "POST"]),
                route("b").methods(&["POST"]),
            ],
            RouteError::Shadowed {
                route: 1,
                earlier: 0,
            },
        ),
        (
            vec![route("a").methods(&["GET"]), route("b").methods(&["HEAD"])],
            RouteError::Shadowed {
                route: 1,
                earlier: 0,
            },
        ),
        (
            vec![
                route("a").header("x-a", "1"),
                route("b").header("x-a", "1").header("x-b", "2"),
            ],
            RouteError::Shadowed {
                route: 1,
                earlier: 0,
            },
        ),
        (
            vec![
                route("a").prefix("/p").header("x-a", "1"),
                route("b").prefix("/p").methods(&["GET"]).header("x-a", "1"),
            ],
            RouteError::Shadowed {
                route: 1,
                earlier: 0,
            },
        ),
    ];
    for (routes, error) in cases {
        let message = error.to_string();
        assert_eq!(compile_err(routes), [error], "{message}");
    }

    // Not duplicates: a different host, path kind, path, methods or headers; a narrower route
    // written after a broader one is fine, since it is tried first.
    compile(vec![
        route("a"),
        route("b").on("example.com"),
        route("c").on("*.example.com"),
        route("d").exact("/x"),
        route("e").prefix("/x"),
        route("f").prefix("/x").methods(&["POST"]),
        route("g").prefix("/x").methods(&["PUT"]),
        route("h").prefix("/x").header("x-a", "1"),
        route("i").prefix("/x").header("x-a", "2"),
    ]);
}

#[test]
fn compile_reports_every_error_in_route_order() {
    let errors = compile_err(vec![
        route("ok"),
        route("").on("a..b").exact("x"),
        route("ok2").prefix("/v1"),
        route("dup").prefix("/v1"),
        route("bad").methods(&["get"]).header("bad name", "v"),
    ]);
    assert_eq!(
        errors,
        [
            RouteError::EmptyName { route: 1 },
            RouteError::InvalidHost {
                route: 1,
                host: "a..b".to_owned(),
                reason: HostError::EmptyLabel,
            },
            RouteError::InvalidPath {
                route: 1,
                path: "x".to_owned(),
                reason: PathError::NotAbsolute,
            },
            RouteError::Duplicate {
                route: 3,
                earlier: 2
            },
            RouteError::InvalidMethod {
                route: 4,
                method: "get".to_owned(),
            },
            RouteError::InvalidHeaderName {
                route: 4,
                name: "bad name".to_owned(),
            },
        ]
    );
    assert_eq!(errors[3].to_string(), "route 3 duplicates route 2");
    assert!(
        errors
            .iter()
            .enumerate()
            .all(|(i, e)| i == 0 || errors[i - 1].route() <= e.route())
    );
}

#[test]
fn ten_thousand_routes_compile_and_look_up() {
    const HOSTS: usize = 1_000;
    const PREFIXES: usize = 10;
    let mut routes = Vec::with_capacity(HOSTS * PREFIXES + 1);
    for h in 0..HOSTS {
        for p in 0..PREFIXES {
            routes.push(
                route(&format!("h{h}-p{p}"))
                    .on(&format!("host{h}.example.com"))
                    .prefix(&format!("/svc{p}/")),
            );
        }
    }
    routes.push(route("wild").on("*.example.com"));
    let table = compile(routes);
    assert_eq!(table.len(), HOSTS * PREFIXES + 1);

    for h in (0..HOSTS).step_by(37) {
        for p in 0..PREFIXES {
            let host = format!("HOST{h}.example.com:443");
            let path = format!("/svc{p}/items?page=2");
            assert_eq!(
                get(&table, &host, &path),
                Some(format!("h{h}-p{p}")),
                "{host}{path}"
            );
        }
        // Misses within a known host fall through to the wildcard.
        assert_eq!(
            get(&table, &format!("host{h}.example.com"), "/svc10/").as_deref(),
            Some("wild")
        );
        assert_eq!(
            get(&table, &format!("host{h}.example.com"), "/svc1").as_deref(),
            Some("wild")
        );
    }
    check(
        &table,
        &[
            ("host1000.example.com", "/svc0/", Some("wild")),
            ("host1.example.org", "/svc0/", None),
            ("example.com", "/svc0/", None),
        ],
    );
}

#[test]
fn matched_is_copy_without_target_bounds() {
    struct Pool;
    let table = RouteTable::compile(Vec::<RouteSpec<Pool>>::new(), Some(Pool)).unwrap();
    let matched = table
        .lookup("h", "/", &Method::GET, &HeaderMap::new())
        .unwrap();
    let copy = matched;
    assert_eq!(matched.route, copy.route);
    assert!(std::ptr::eq(matched.target, copy.target));
}

#[test]
fn wildcard_suffixes_are_longest_first() {
    let suffixes: Vec<&[u8]> = host::wildcard_suffixes(b"a.b.example.com").collect();
    assert_eq!(suffixes, [&b"b.example.com"[..], b"example.com", b"com"]);
    assert_eq!(host::wildcard_suffixes(b".example.com").count(), 1);
    assert_eq!(host::wildcard_suffixes(b"example").count(), 0);
}
