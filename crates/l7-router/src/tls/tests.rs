//! Loading certificates and selecting them by name; real handshakes are in `tests/handshake.rs`.

mod handshake;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, PKCS_ED25519, SignatureAlgorithm, date_time_ymd,
};
use rustls::sign::CertifiedKey;

use super::*;

/// One private key generated at test time by the `openssl` CLI, in two encodings: `native`
/// (PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`, what Portico must load) and `pkcs8`
/// (`PRIVATE KEY`, the same key as rcgen needs it to sign the test certificate). No private
/// key is committed: ring (rcgen's backend here) can neither generate RSA keys nor write
/// PKCS#1 or SEC1, so openssl makes them, through pipes, never on disk.
struct OpensslKey {
    native: String,
    pkcs8: String,
}

impl OpensslKey {
    /// RSA 2048 as PKCS#1 (`openssl genrsa -traditional`: OpenSSL 3 writes PKCS#8 without
    /// `-traditional`), generated once per test run (RSA key generation is slow).
    fn rsa() -> &'static OpensslKey {
        static RSA: OnceLock<OpensslKey> = OnceLock::new();
        RSA.get_or_init(|| Self::generate(&["genrsa", "-traditional", "2048"], "RSA PRIVATE KEY"))
    }

    /// EC P-256 as SEC1 (`openssl ecparam -genkey -noout`).
    fn ec_p256() -> &'static OpensslKey {
        static EC: OnceLock<OpensslKey> = OnceLock::new();
        EC.get_or_init(|| {
            Self::generate(
                &["ecparam", "-genkey", "-name", "prime256v1", "-noout"],
                "EC PRIVATE KEY",
            )
        })
    }

    /// Runs `openssl GENERATE...`, checks that it wrote a `native_label` PEM block, and
    /// converts that key to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt`.
    fn generate(generate: &[&str], native_label: &str) -> OpensslKey {
        let native = openssl(generate, None);
        assert_pem_label(&native, native_label, generate);
        let to_pkcs8 = ["pkcs8", "-topk8", "-nocrypt"];
        let pkcs8 = openssl(&to_pkcs8, Some(&native));
        assert_pem_label(&pkcs8, "PRIVATE KEY", &to_pkcs8);
        OpensslKey { native, pkcs8 }
    }

    /// The PKCS#8 form as an rcgen key pair, to sign certificates with.
    fn key_pair(&self) -> KeyPair {
        KeyPair::from_pem(&self.pkcs8).unwrap()
    }
}

/// Runs `openssl ARGS`, with `stdin` on its standard input; returns its standard output.
/// Panics with a clear message when openssl is missing or fails.
fn openssl(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "the TLS tests generate their keys with the `openssl` command, which cannot be \
                 run ({e}): install it (Debian/Ubuntu: apt-get install openssl)"
            )
        });
    // Written and closed before reading: a key is far smaller than a pipe's buffer.
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "openssl {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Asserts that `pem` is exactly one PEM block labelled `label`: so each test really covers the
/// key format it names, whatever openssl's defaults are.
#[track_caller]
fn assert_pem_label(pem: &str, label: &str, command: &[&str]) {
    let begin = format!("-----BEGIN {label}-----\n");
    let end = format!("-----END {label}-----\n");
    assert!(
        pem.starts_with(&begin) && pem.ends_with(&end) && pem.matches("-----BEGIN ").count() == 1,
        "`openssl {}` did not write one `{label}` block:\n{pem}",
        command.join(" ")
    );
}

/// A test certificate: its PEM, its key's PEM (PKCS#8) and DER for comparisons.
pub(super) struct TestCert {
    pub(super) cert_pem: String,
    pub(super) key_pem: String,
    pub(super) der: rustls_pki_types::CertificateDer<'static>,
}

impl TestCert {
    /// Self-signed, P-256, subject CN `cn`, DNS subjectAltNames `names`.
    pub(super) fn new(cn: &str, names: &[&str]) -> Self {
        Self::with(cn, names, KeyPair::generate().unwrap(), |_| {})
    }

    fn with(
        cn: &str,
        names: &[&str],
        key: KeyPair,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> Self {
        let mut params = params(cn, names);
        edit(&mut params);
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    pub(super) fn load(&self) -> LoadedCert {
        load_certified_key(self.cert_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }
}

fn params(cn: &str, names: &[&str]) -> CertificateParams {
    let mut params = CertificateParams::new(
        names
            .iter()
            .map(|name| name.to_string())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    params.distinguished_name.remove(DnType::CommonName);
    params.distinguished_name.push(DnType::CommonName, cn);
    params
}

fn load_err(cert_pem: impl AsRef<[u8]>, key_pem: impl AsRef<[u8]>) -> TlsError {
    load_certified_key(cert_pem.as_ref(), key_pem.as_ref()).unwrap_err()
}

fn key_of(alg: &'static SignatureAlgorithm) -> KeyPair {
    KeyPair::generate_for(alg).unwrap()
}

#[test]
fn loads_a_chain_with_a_pkcs8_key_and_reads_its_names() {
    let ca_key = key_of(&PKCS_ECDSA_P384_SHA384);
    let mut ca_params = params("Test CA", &[]);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let leaf = params(
        "ignored.test",
        &["A.Test", "*.Wild.test", "a.test", "b.test."],
    )
    .signed_by(&leaf_key, &issuer)
    .unwrap();

    let chain = leaf.pem() + &ca.pem();
    let loaded = load_certified_key(chain.as_bytes(), leaf_key.serialize_pem().as_bytes()).unwrap();
    assert_eq!(loaded.key.cert.len(), 2);
    assert_eq!(loaded.key.cert[0], *leaf.der());
    assert_eq!(loaded.key.cert[1], *ca.der());
    assert_eq!(loaded.names, ["a.test", "*.wild.test", "b.test"]);
    assert!(!loaded.names_from_common_name);
    assert!(!loaded.expired_at(SystemTime::now()));
}

#[test]
fn loads_ecdsa_p256_p384_and_ed25519_pkcs8_keys() {
    for alg in [
        &PKCS_ECDSA_P256_SHA256,
        &PKCS_ECDSA_P384_SHA384,
        &PKCS_ED25519,
    ] {
        let cert = TestCert::with("k.test", &["k.test"], key_of(alg), |_| {});
        assert!(cert.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let loaded = cert.load();
        assert_eq!(loaded.names, ["k.test"], "{alg:?}");
    }
}

#[test]
fn loads_a_pkcs1_rsa_key_and_its_pkcs8_form() {
    let key = OpensslKey::rsa();
    let cert = TestCert::with("rsa.test", &["rsa.test"], key.key_pair(), |_| {});
    let loaded = load_certified_key(cert.cert_pem.as_bytes(), key.native.as_bytes()).unwrap();
    assert_eq!(loaded.names, ["rsa.test"]);
    let loaded = load_certified_key(cert.cert_pem.as_bytes(), key.pkcs8.as_bytes()).unwrap();
    assert_eq!(loaded.names, ["rsa.test"]);
}

#[test]
fn loads_a_sec1_ec_key_and_its_pkcs8_form() {
    let key = OpensslKey::ec_p256();
    let cert = TestCert::with("ec.test", &["ec.test"], key.key_pair(), |_| {});
    let loaded = load_certified_key(cert.cert_pem.as_bytes(), key.native.as_bytes()).unwrap();
    assert_eq!(loaded.names, ["ec.test"]);
    let loaded = load_certified_key(cert.cert_pem.as_bytes(), key.pkcs8.as_bytes()).unwrap();
    assert_eq!(loaded.names, ["ec.test"]);
}

#[test]
fn a_key_of_another_certificate_is_a_mismatch() {
    let a = TestCert::new("a.test", &["a.test"]);
    let b = TestCert::new("b.test", &["b.test"]);
    assert!(matches!(
        load_err(&a.cert_pem, &b.key_pem),
        TlsError::KeyMismatch
    ));
    // Also across key types: an RSA key for an ECDSA certificate.
    assert!(matches!(
        load_err(&a.cert_pem, &OpensslKey::rsa().native),
        TlsError::KeyMismatch
    ));
    // And in the other formats: a SEC1 key of another certificate.
    assert!(matches!(
        load_err(&a.cert_pem, &OpensslKey::ec_p256().native),
        TlsError::KeyMismatch
    ));
}

#[test]
fn a_chain_in_the_wrong_order_names_the_leafs_position() {
    let ca = TestCert::new("Test CA", &[]);
    let leaf = TestCert::new("leaf.test", &["leaf.test"]);
    let chain = ca.cert_pem.clone() + &leaf.cert_pem;
    let err = load_err(&chain, &leaf.key_pem);
    assert!(
        matches!(err, TlsError::LeafNotFirst { position: 2 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("block 2"), "{err}");
}

#[test]
fn unusable_certificate_files_say_what_is_wrong() {
    let good = TestCert::new("a.test", &["a.test"]);
    let key = &good.key_pem;
    for (cert_pem, what) in [
        (&b""[..], "empty"),
        (b"hello, world\n", "text"),
        (b"\x00\xff\x13\x37binary\x80", "binary"),
        (good.der.as_ref(), "DER instead of PEM"),
    ] {
        assert!(
            matches!(load_err(cert_pem, key), TlsError::NoCertificate),
            "{what}"
        );
    }

    let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        load_err(bad_base64, key),
        TlsError::CertificatePem(_)
    ));
    let no_end = good.cert_pem.lines().take(3).collect::<Vec<_>>().join("\n");
    assert!(matches!(load_err(no_end, key), TlsError::CertificatePem(_)));

    // Valid PEM around bytes that are no certificate.
    let not_a_cert = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    let err = load_err(not_a_cert, key);
    assert!(matches!(err, TlsError::InvalidCertificate(_)), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());

    let err = load_err(key, &good.cert_pem);
    assert!(matches!(err, TlsError::KeyInCertificateFile), "{err:?}");
    assert!(err.to_string().contains("swapped"));
}

#[test]
fn unusable_key_files_say_what_is_wrong() {
    let cert = &TestCert::new("a.test", &["a.test"]).cert_pem;
    for (key_pem, what) in [
        ("", "empty"),
        ("hello, world\n", "text"),
        (cert.as_str(), "a certificate"),
    ] {
        assert!(
            matches!(load_err(cert, key_pem), TlsError::NoPrivateKey),
            "{what}"
        );
    }
    let bad_base64 = "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n";
    assert!(matches!(load_err(cert, bad_base64), TlsError::KeyPem(_)));

    let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert!(matches!(load_err(cert, encrypted), TlsError::EncryptedKey));
    let legacy_encrypted = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
        DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\naGVsbG8gd29ybGQ=\n\
        -----END RSA PRIVATE KEY-----\n";
    assert!(matches!(
        load_err(cert, legacy_encrypted),
        TlsError::EncryptedKey
    ));

    // A PKCS#8 block whose contents are no key (`SEQUENCE { INTEGER 0 }`).
    let not_a_key = "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n";
    let err = load_err(cert, not_a_key);
    assert!(matches!(err, TlsError::UnsupportedKey(_)), "{err:?}");
}

#[test]
fn the_common_name_counts_only_without_dns_subject_alt_names() {
    let cn_only = TestCert::new("Legacy.Test", &[]).load();
    assert_eq!(cn_only.names, ["legacy.test"]);
    assert!(cn_only.names_from_common_name);

    let wildcard_cn = TestCert::new("*.legacy.test", &[]).load();
    assert_eq!(wildcard_cn.names, ["*.legacy.test"]);

    let both = TestCert::new("other.test", &["a.test"]).load();
    assert_eq!(both.names, ["a.test"]);
    assert!(!both.names_from_common_name);

    // Neither a DNS SAN nor a DNS-name CN: loads, with no names (it can only be the default).
    for (cn, sans) in [
        ("not a host name", &[][..]),
        ("10.0.0.1", &["10.0.0.1"][..]),
    ] {
        let nameless = TestCert::new(cn, sans).load();
        assert!(nameless.names.is_empty(), "{cn}: {:?}", nameless.names);
        assert!(!nameless.names_from_common_name);
    }
}

#[test]
fn expiry_is_reported_not_refused() {
    let expired = TestCert::with(
        "old.test",
        &["old.test"],
        KeyPair::generate().unwrap(),
        |p| {
            p.not_before = date_time_ymd(2000, 1, 1);
            p.not_after = date_time_ymd(2001, 1, 1);
        },
    )
    .load();
    let jan_2001 = SystemTime::UNIX_EPOCH + Duration::from_secs(978_307_200);
    assert_eq!(expired.not_after, Some(jan_2001));
    assert!(expired.expired_at(SystemTime::now()));
    assert!(!expired.expired_at(jan_2001));

    // After 2049, X.509 switches from UTCTime to GeneralizedTime.
    let long_lived = TestCert::with(
        "new.test",
        &["new.test"],
        KeyPair::generate().unwrap(),
        |p| {
            p.not_after = date_time_ymd(2060, 1, 1);
        },
    )
    .load();
    let jan_2060 = SystemTime::UNIX_EPOCH + Duration::from_secs(2_840_140_800);
    assert_eq!(long_lived.not_after, Some(jan_2060));
    assert!(!long_lived.expired_at(SystemTime::now()));
}

fn resolver(certs: &[&LoadedCert]) -> CertResolver {
    CertResolver::new(certs.iter().map(|cert| (*cert).clone()).collect()).unwrap()
}

#[track_caller]
fn assert_selects(resolver: &CertResolver, name: Option<&str>, expected: &LoadedCert) {
    let selected: &Arc<CertifiedKey> = resolver.select(name);
    assert!(
        Arc::ptr_eq(selected, &expected.key),
        "{name:?} selected {:?}, not {:?}",
        selected.cert[0],
        expected.names
    );
}

#[test]
fn select_prefers_exact_then_one_label_wildcard_then_the_default() {
    let default = TestCert::new("default.test", &["default.test"]).load();
    let a = TestCert::new("a.test", &["a.test", "x.wild.test"]).load();
    let wild = TestCert::new("wild", &["*.wild.test"]).load();
    let deep = TestCert::new("deep", &["*.y.wild.test"]).load();
    let resolver = resolver(&[&default, &a, &wild, &deep]);

    assert_selects(&resolver, Some("a.test"), &a);
    assert_selects(&resolver, Some("A.TEST"), &a);
    assert_selects(&resolver, Some("a.test."), &a);
    assert_selects(&resolver, Some("default.test"), &default);
    // The exact name beats the wildcard that also matches it.
    assert_selects(&resolver, Some("x.wild.test"), &a);
    assert_selects(&resolver, Some("z.wild.test"), &wild);
    assert_selects(&resolver, Some("Z.Wild.Test"), &wild);
    assert_selects(&resolver, Some("q.y.wild.test"), &deep);
    // One label only: neither deeper names nor the bare suffix.
    assert_selects(&resolver, Some("a.b.wild.test"), &default);
    assert_selects(&resolver, Some("wild.test"), &default);
    assert_selects(&resolver, Some("unknown.test"), &default);
    assert_selects(&resolver, None, &default);
}

#[test]
fn select_survives_odd_names() {
    let default = TestCert::new("default.test", &["default.test"]).load();
    let wild = TestCert::new("wild", &["*.wild.test"]).load();
    let resolver = resolver(&[&default, &wild]);
    // Longer than any DNS name (rustls refuses such an SNI anyway).
    let long_upper = "A".repeat(300) + ".wild.test";
    let long_lower = "a".repeat(300) + ".wild.test";
    for name in [
        "",
        ".",
        "..",
        ".wild.test",
        "wild.test.",
        &long_upper,
        &long_lower,
    ] {
        assert_selects(&resolver, Some(name), &default);
    }
}

#[test]
fn the_first_certificate_claiming_a_name_wins() {
    let first = TestCert::new("first", &["same.test", "*.wild.test"]).load();
    let second = TestCert::new("second", &["same.test", "*.wild.test", "other.test"]).load();
    let resolver = resolver(&[&first, &second]);
    assert_selects(&resolver, Some("same.test"), &first);
    assert_selects(&resolver, Some("x.wild.test"), &first);
    assert_selects(&resolver, Some("other.test"), &second);
}

#[test]
fn an_empty_certificate_list_is_an_error() {
    assert!(matches!(
        CertResolver::new(Vec::new()),
        Err(TlsError::NoCertificates)
    ));
}

#[test]
fn resolver_debug_lists_names_not_keys() {
    let a = TestCert::new("a.test", &["a.test", "*.wild.test"]).load();
    let debug = format!("{:?}", resolver(&[&a]));
    assert_eq!(
        debug,
        r#"CertResolver { exact: ["a.test"], wildcard: ["wild.test"], .. }"#
    );
}
