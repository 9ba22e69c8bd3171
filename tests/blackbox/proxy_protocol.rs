//! PROXY protocol through the real binary, decoded here by hand (not with Portico's codec) so
//! the bytes are checked against the spec, not against themselves.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::harness::backend::{Behavior, TestBackend};
use crate::harness::{Portico, assert_echo, connect, read_line};
use crate::l4::one_listener;

const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Waits for the backend's first recorded connection and returns its first bytes.
fn first_bytes(b: &TestBackend) -> Vec<u8> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(first) = b.received().into_iter().next() {
            return first;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backend recorded nothing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Decodes a v2 PROXY/TCP header by hand: (source, destination, header length).
fn decode_v2(b: &[u8]) -> (SocketAddr, SocketAddr, usize) {
    assert_eq!(&b[..12], &V2_SIGNATURE, "v2 signature");
    assert_eq!(b[12], 0x21, "version 2, command PROXY");
    let len = u16::from_be_bytes([b[14], b[15]]) as usize;
    let a = &b[16..16 + len];
    match b[13] {
        0x11 => {
            assert_eq!(len, 12, "TCP over IPv4 address block");
            let src = IpAddr::from([a[0], a[1], a[2], a[3]]);
            let dst = IpAddr::from([a[4], a[5], a[6], a[7]]);
            let sp = u16::from_be_bytes([a[8], a[9]]);
            let dp = u16::from_be_bytes([a[10], a[11]]);
            (SocketAddr::new(src, sp), SocketAddr::new(dst, dp), 16 + len)
        }
        0x21 => {
            assert_eq!(len, 36, "TCP over IPv6 address block");
            let src: [u8; 16] = a[..16].try_into().unwrap();
            let dst: [u8; 16] = a[16..32].try_into().unwrap();
            let sp = u16::from_be_bytes([a[32], a[33]]);
            let dp = u16::from_be_bytes([a[34], a[35]]);
            (
                SocketAddr::new(IpAddr::from(src), sp),
                SocketAddr::new(IpAddr::from(dst), dp),
                16 + len,
            )
        }
        other => panic!("unexpected family/transport byte {other:#x}"),
    }
}

fn v6_config(b: &TestBackend, version: &str) -> String {
    format!(
        "[pools.p]\nservers = [\"{}\"]\n[listeners.l]\nbind = \"[::1]:0\"\npool = \"p\"\nproxy_protocol = \"{version}\"\n",
        b.addr
    )
}

#[test]
fn v1_header_is_byte_exact_ipv4() {
    let b = TestBackend::start("b", Behavior::RecordFirstThenGreet);
    let portico = Portico::start(&one_listener(
        &[&b],
        "round_robin",
        "proxy_protocol = \"v1\"",
    ));
    let mut s = connect(portico.addr("l"));
    let client = s.local_addr().unwrap();
    s.write_all(b"payload").unwrap();
    assert_eq!(read_line(&mut s), "b");
    let expected = format!(
        "PROXY TCP4 {} {} {} {}\r\npayload",
        client.ip(),
        portico.addr("l").ip(),
        client.port(),
        portico.addr("l").port()
    );
    assert_eq!(String::from_utf8_lossy(&first_bytes(&b)), expected);
    assert_echo(&mut s, b"then plain bytes");
}

#[test]
fn v1_header_is_byte_exact_ipv6() {
    let b = TestBackend::start_on("::1".parse().unwrap(), "b", Behavior::RecordFirstThenGreet);
    let portico = Portico::start(&v6_config(&b, "v1"));
    let mut s = connect(portico.addr("l"));
    let client = s.local_addr().unwrap();
    assert_eq!(read_line(&mut s), "b");
    let expected = format!(
        "PROXY TCP6 ::1 ::1 {} {}\r\n",
        client.port(),
        portico.addr("l").port()
    );
    assert_eq!(String::from_utf8_lossy(&first_bytes(&b)), expected);
}

#[test]
fn v2_header_is_byte_exact_ipv4() {
    let b = TestBackend::start("b", Behavior::RecordFirstThenGreet);
    let portico = Portico::start(&one_listener(
        &[&b],
        "round_robin",
        "proxy_protocol = \"v2\"",
    ));
    let mut s = connect(portico.addr("l"));
    let client = s.local_addr().unwrap();
    s.write_all(b"xyz").unwrap();
    assert_eq!(read_line(&mut s), "b");
    let got = first_bytes(&b);
    let (src, dst, len) = decode_v2(&got);
    assert_eq!(src, client);
    assert_eq!(dst, portico.addr("l"));
    assert_eq!(len, 28);
    assert_eq!(&got[len..], b"xyz", "payload follows the header unchanged");
}

#[test]
fn v2_header_is_byte_exact_ipv6() {
    let b = TestBackend::start_on("::1".parse().unwrap(), "b", Behavior::RecordFirstThenGreet);
    let portico = Portico::start(&v6_config(&b, "v2"));
    let mut s = connect(portico.addr("l"));
    let client = s.local_addr().unwrap();
    assert_eq!(read_line(&mut s), "b");
    let got = first_bytes(&b);
    let (src, dst, len) = decode_v2(&got);
    assert_eq!((src, dst, len), (client, portico.addr("l"), 52));
    assert_eq!(got.len(), 52);
}

#[test]
fn accepted_proxy_header_carries_the_original_client_to_the_backend() {
    let b = TestBackend::start("b", Behavior::RecordFirstThenGreet);
    let portico = Portico::start(&one_listener(
        &[&b],
        "round_robin",
        "accept_proxy_protocol = true\nproxy_protocol = \"v2\"",
    ));
    let mut s = connect(portico.addr("l"));
    // As another load balancer in front of Portico would: the real client is 192.0.2.10:4567.
    s.write_all(b"PROXY TCP4 192.0.2.10 198.51.100.1 4567 443\r\nhello")
        .unwrap();
    assert_eq!(read_line(&mut s), "b");
    let got = first_bytes(&b);
    let (src, dst, len) = decode_v2(&got);
    assert_eq!(src, "192.0.2.10:4567".parse().unwrap());
    assert_eq!(dst, "198.51.100.1:443".parse().unwrap());
    assert_eq!(&got[len..], b"hello");
}

#[test]
fn a_bad_proxy_header_closes_that_connection_only() {
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let portico = Portico::start(&one_listener(
        &[&b],
        "round_robin",
        "accept_proxy_protocol = true",
    ));
    let mut bad = connect(portico.addr("l"));
    bad.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 16];
    assert!(
        matches!(std::io::Read::read(&mut bad, &mut buf), Ok(0) | Err(_)),
        "closed without reaching a backend"
    );
    assert_eq!(b.accepted(), 0);
    let mut good = connect(portico.addr("l"));
    good.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\n")
        .unwrap();
    assert_eq!(read_line(&mut good), "b");
}
