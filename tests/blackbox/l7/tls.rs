//! https: certificates chosen by SNI, HTTP/1.1 and HTTP/2 by ALPN, certificate reloads; and
//! h2c (HTTP/2 with prior knowledge) on an http listener.

use std::path::Path;

use super::{echoed, pools_of};
use crate::harness::http_backend::HttpBackend;
use crate::harness::real_clients::{Curl, tls_subject};
use crate::harness::tls_certs::TestCa;
use crate::harness::{Portico, WAIT};

/// An https listener `tls` with `certificates` (cert, key paths in order), routing `a.test`
/// to pool `backend-a` and `*.b.test` to pool `backend-b`.
fn https_config(a: &HttpBackend, b: &HttpBackend, certificates: &[(&Path, &Path)]) -> String {
    let certs: Vec<String> = certificates
        .iter()
        .map(|(c, k)| format!("{{ cert = '{}', key = '{}' }}", c.display(), k.display()))
        .collect();
    format!(
        r#"{pools}
[listeners.tls]
bind = "127.0.0.1:0"
protocol = "https"
certificates = [{certs}]

[[listeners.tls.routes]]
host = "a.test"
pool = "backend-a"

[[listeners.tls.routes]]
host = "*.b.test"
pool = "backend-b"
"#,
        pools = pools_of(&[a, b]),
        certs = certs.join(", "),
    )
}

#[test]
fn https_picks_the_certificate_by_sni_and_speaks_http1_and_h2() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(dir.path());
    let (a_crt, a_key) = ca
        .issue("first-cert-a-test", &["a.test"])
        .write(dir.path(), "a");
    let (b_crt, b_key) = ca
        .issue("second-cert-wildcard-b-test", &["*.b.test"])
        .write(dir.path(), "b");
    let a = HttpBackend::start("backend-a");
    let b = HttpBackend::start("backend-b");
    let portico = Portico::start(&https_config(&a, &b, &[(&a_crt, &a_key), (&b_crt, &b_key)]));
    let addr = portico.addr("tls");
    let port = addr.port();

    // curl verifies the certificate against the name it asked for: a wrong pick fails here.
    let r = Curl::new(format!("https://a.test:{port}/hello?x=1"))
        .tls("a.test", addr, &ca_file)
        .arg("--http1.1")
        .run();
    assert_eq!(r.http_version, "1.1");
    let e = echoed(&r);
    assert_eq!(e.backend, "backend-a");
    assert_eq!(e.request_line, "GET /hello?x=1 HTTP/1.1");
    assert_eq!(e.header("x-forwarded-proto"), Some("https"));
    assert_eq!(e.header("host"), Some(format!("a.test:{port}").as_str()));

    let r = Curl::new(format!("https://x.b.test:{port}/h2"))
        .tls("x.b.test", addr, &ca_file)
        .arg("--http2")
        .run();
    assert_eq!(r.http_version, "2", "ALPN h2: {r:#?}");
    let e = echoed(&r);
    assert_eq!(e.backend, "backend-b");
    // The backend speaks HTTP/1.1 (pool http2 = false) and gets a Host from :authority.
    assert_eq!(e.request_line, "GET /h2 HTTP/1.1");
    assert_eq!(e.header("host"), Some(format!("x.b.test:{port}").as_str()));
    assert_eq!(e.header("x-forwarded-proto"), Some("https"));

    let r = Curl::new(format!("https://a.test:{port}/"))
        .tls("a.test", addr, &ca_file)
        .arg("--http2")
        .run();
    assert_eq!(r.http_version, "2");
    assert_eq!(echoed(&r).backend, "backend-a");

    // What a handshake gets, by SNI.
    let wildcard = "second-cert-wildcard-b-test";
    let first = "first-cert-a-test";
    for (sni, expected) in [
        (Some("x.b.test"), wildcard),
        (Some("X.B.Test"), wildcard),
        (Some("a.test"), first),
        // One label only: *.b.test does not cover y.z.b.test, nor b.test.
        (Some("y.z.b.test"), first),
        (Some("b.test"), first),
        (Some("unknown.test"), first),
        (None, first),
    ] {
        let subject = tls_subject(addr, sni);
        assert!(
            subject.contains(expected),
            "SNI {sni:?}: got the certificate {subject:?}, expected {expected}"
        );
    }
    // And curl refuses the default certificate for a name it does not cover.
    let refused = Curl::new(format!("https://y.z.b.test:{port}/"))
        .tls("y.z.b.test", addr, &ca_file)
        .try_run();
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(a.requests() + b.requests(), 3);
}

#[test]
fn h2c_with_prior_knowledge_on_an_http_listener() {
    let web = HttpBackend::start("web");
    let api = HttpBackend::start("api");
    let portico = Portico::start(&format!(
        r#"{pools}
[listeners.plain]
bind = "127.0.0.1:0"
protocol = "http"
pool = "web"

[[listeners.plain.routes]]
host = "api.test"
pool = "api"
"#,
        pools = pools_of(&[&web, &api]),
    ));
    let addr = portico.addr("plain");

    let r = Curl::http(addr, "/h2c?q=1")
        .arg("--http2-prior-knowledge")
        .run();
    assert_eq!(r.http_version, "2", "{r:#?}");
    let e = echoed(&r);
    assert_eq!(e.backend, "web");
    assert_eq!(e.request_line, "GET /h2c?q=1 HTTP/1.1");
    assert_eq!(e.header("host"), Some(addr.to_string().as_str()));
    assert_eq!(e.header("x-forwarded-proto"), Some("http"));

    // HTTP/2 routes by :authority (curl sends a Host header as :authority).
    let r = Curl::http(addr, "/")
        .arg("--http2-prior-knowledge")
        .host("api.test")
        .run();
    assert_eq!(r.http_version, "2");
    let e = echoed(&r);
    assert_eq!(e.backend, "api");
    assert_eq!(e.header("host"), Some("api.test"));

    // The same port still speaks HTTP/1.1.
    let r = Curl::http(addr, "/").arg("--http1.1").run();
    assert_eq!(r.http_version, "1.1");
    assert_eq!(echoed(&r).backend, "web");
}

#[test]
fn certificates_reload_on_sighup_and_a_broken_file_keeps_the_old_one() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(dir.path());
    let (crt, key) = ca
        .issue("cert-before-reload", &["a.test"])
        .write(dir.path(), "site");
    let a = HttpBackend::start("backend-a");
    let b = HttpBackend::start("backend-b");
    let config = https_config(&a, &b, &[(&crt, &key)]);
    let mut portico = Portico::start(&config);
    let addr = portico.addr("tls");
    let get = || {
        Curl::new(format!("https://a.test:{}/", addr.port()))
            .tls("a.test", addr, &ca_file)
            .run()
    };
    assert!(tls_subject(addr, Some("a.test")).contains("cert-before-reload"));
    assert_eq!(echoed(&get()).backend, "backend-a");

    // Renewed files, same paths, same config text: SIGHUP picks them up.
    ca.issue("cert-after-reload", &["a.test"])
        .write(dir.path(), "site");
    let outcome = portico.sighup();
    assert!(outcome.contains("reload applied"), "{outcome}");
    let subject = tls_subject(addr, Some("a.test"));
    assert!(subject.contains("cert-after-reload"), "{subject}");
    assert_eq!(echoed(&get()).backend, "backend-a");

    // A broken certificate file fails the reload; the running certificate keeps serving.
    std::fs::write(&crt, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n").unwrap();
    let mark = portico.log_mark();
    let outcome = portico.sighup();
    assert!(outcome.contains("reload failed"), "{outcome}");
    let named =
        portico.wait_for_log_after(mark, |l| l.contains("listeners.tls.certificates.0"), WAIT);
    assert!(
        named.is_some(),
        "the error names its key:\n{}",
        portico.log_text()
    );
    let subject = tls_subject(addr, Some("a.test"));
    assert!(subject.contains("cert-after-reload"), "{subject}");
    assert_eq!(echoed(&get()).backend, "backend-a");

    // A key that belongs to another certificate fails too.
    let other = ca.issue("cert-mismatch", &["a.test"]);
    ca.issue("cert-never-served", &["a.test"])
        .write(dir.path(), "site");
    std::fs::write(&key, other.key_pem).unwrap();
    let outcome = portico.sighup();
    assert!(outcome.contains("reload failed"), "{outcome}");
    let subject = tls_subject(addr, Some("a.test"));
    assert!(subject.contains("cert-after-reload"), "{subject}");
}
