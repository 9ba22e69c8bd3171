use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A hang guard for the async tests, not a synchronisation: every read here completes or fails
/// at once, so only a bug makes it expire.
const HANG_GUARD: Duration = Duration::from_secs(10);

/// The addresses of most tests: `CLIENT4`/`CLIENT6` connect to `LISTENER4`/`LISTENER6`.
const CLIENT4: &str = "192.0.2.10:56324";
const LISTENER4: &str = "198.51.100.1:443";
const CLIENT6: &str = "[2001:db8::1]:40000";
const LISTENER6: &str = "[2001:db8:0:1::ff]:8443";

fn sa(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn encoded(version: ProxyVersion, src: &str, dst: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode(version, sa(src), sa(dst), &mut out);
    out
}

/// A v2 header with the given version/command and family bytes and address block.
fn v2(ver_cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(family);
    let len = u16::try_from(body.len()).expect("test body fits a u16");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn complete(buf: &[u8]) -> (ProxyHeader, usize) {
    match parse(buf) {
        Ok(Parsed::Complete { header, consumed }) => (header, consumed),
        other => panic!("expected a complete header for {buf:?}, got {other:?}"),
    }
}

fn addresses(buf: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    complete(buf).0.addresses
}

/// 192.0.2.10:56324 -> 198.51.100.1:443, the address block of a v2 TCP4 header.
const INET_BODY: [u8; 12] = [
    192, 0, 2, 10, // source
    198, 51, 100, 1, // destination
    0xDC, 0x04, // 56324
    0x01, 0xBB, // 443
];

/// Valid headers of every shape, for the prefix and fuzz-ish tests.
fn valid_headers() -> Vec<Vec<u8>> {
    let mut tlvs = INET_BODY.to_vec();
    tlvs.extend_from_slice(&[0xEA, 0x00, 0x04, b'v', b'p', b'c', b'e', 0x04, 0x00, 0x00]);
    let mut local = Vec::new();
    encode_local_v2(&mut local);
    vec![
        encoded(ProxyVersion::V1, CLIENT4, LISTENER4),
        encoded(
            ProxyVersion::V1,
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535",
        ),
        b"PROXY UNKNOWN\r\n".to_vec(),
        v1_unknown_of_len(V1_MAX_LEN),
        encoded(ProxyVersion::V2, CLIENT4, LISTENER4),
        encoded(ProxyVersion::V2, CLIENT6, LISTENER6),
        local,
        v2(0x21, 0x11, &tlvs),
        v2(0x21, 0x31, &[0x2F; 216]),
    ]
}

/// `PROXY UNKNOWN ` padded with `a` to exactly `len` bytes including the CRLF.
fn v1_unknown_of_len(len: usize) -> Vec<u8> {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(len - 2, b'a');
    line.extend_from_slice(b"\r\n");
    line
}

// ---------------------------------------------------------------------------------------------
// Encoding

#[test]
fn encode_v1_tcp4_bytes() {
    let out = encoded(ProxyVersion::V1, CLIENT4, LISTENER4);
    assert_eq!(out, b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n");
}

#[test]
fn encode_v1_tcp6_bytes() {
    let out = encoded(ProxyVersion::V1, CLIENT6, LISTENER6);
    assert_eq!(
        out,
        b"PROXY TCP6 2001:db8::1 2001:db8:0:1::ff 40000 8443\r\n"
    );
}

#[test]
fn encode_v2_tcp4_bytes() {
    let out = encoded(ProxyVersion::V2, CLIENT4, LISTENER4);
    let expected: [u8; 28] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
        0x21, // version 2, PROXY
        0x11, // TCP over IPv4
        0x00, 0x0C, // 12 bytes follow
        192, 0, 2, 10, // source address
        198, 51, 100, 1, // destination address
        0xDC, 0x04, // source port 56324
        0x01, 0xBB, // destination port 443
    ];
    assert_eq!(out, expected);
}

#[test]
fn encode_v2_tcp6_bytes() {
    let out = encoded(ProxyVersion::V2, CLIENT6, LISTENER6);
    let expected: [u8; 52] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
        0x21, // version 2, PROXY
        0x21, // TCP over IPv6
        0x00, 0x24, // 36 bytes follow
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00, // source 2001:db8::1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x01, // destination 2001:db8:0:1::ff
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, //
        0x9C, 0x40, // source port 40000
        0x20, 0xFB, // destination port 8443
    ];
    assert_eq!(out, expected);
}

#[test]
fn encode_local_v2_bytes() {
    let mut out = Vec::new();
    encode_local_v2(&mut out);
    let expected: [u8; 16] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
        0x20, // version 2, LOCAL
        0x00, // AF_UNSPEC
        0x00, 0x00, // nothing follows
    ];
    assert_eq!(out, expected);
}

#[test]
fn encode_appends_after_existing_bytes() {
    let mut out = b"already here".to_vec();
    encode(ProxyVersion::V1, sa(CLIENT4), sa(LISTENER4), &mut out);
    assert_eq!(
        out,
        b"already herePROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n"
    );
}

#[test]
fn encode_mixed_ipv4_client_ipv6_listener_maps_the_client() {
    let v1 = encoded(ProxyVersion::V1, "192.0.2.10:56324", "[2001:db8::5]:443");
    assert_eq!(
        v1,
        b"PROXY TCP6 ::ffff:192.0.2.10 2001:db8::5 56324 443\r\n"
    );

    let v2 = encoded(ProxyVersion::V2, "192.0.2.10:56324", "[2001:db8::5]:443");
    let expected: [u8; 52] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
        0x21, 0x21, 0x00, 0x24, // PROXY, TCP over IPv6, 36 bytes
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // source ::ffff:192.0.2.10
        0x00, 0x00, 0xFF, 0xFF, 192, 0, 2, 10, //
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00, // destination 2001:db8::5
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, //
        0xDC, 0x04, 0x01, 0xBB, // ports 56324, 443
    ];
    assert_eq!(v2, expected);
}

#[test]
fn encode_mixed_ipv6_client_ipv4_listener_maps_the_listener() {
    let v1 = encoded(ProxyVersion::V1, "[2001:db8::1]:40000", "10.0.0.1:80");
    assert_eq!(v1, b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 40000 80\r\n");
}

#[test]
fn encode_unmaps_ipv4_mapped_addresses() {
    // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d.
    let both = encoded(
        ProxyVersion::V1,
        "[::ffff:192.0.2.10]:5000",
        "[::ffff:10.0.0.1]:80",
    );
    assert_eq!(both, b"PROXY TCP4 192.0.2.10 10.0.0.1 5000 80\r\n");
    let client_only = encoded(ProxyVersion::V1, "[::ffff:192.0.2.10]:5000", "10.0.0.1:80");
    assert_eq!(client_only, b"PROXY TCP4 192.0.2.10 10.0.0.1 5000 80\r\n");
    let v2 = encoded(
        ProxyVersion::V2,
        "[::ffff:192.0.2.10]:56324",
        "[::ffff:198.51.100.1]:443",
    );
    assert_eq!(v2, encoded(ProxyVersion::V2, CLIENT4, LISTENER4));
    // A mapped client towards a real IPv6 listener stays IPv6.
    let v6 = encoded(
        ProxyVersion::V1,
        "[::ffff:192.0.2.10]:5000",
        "[2001:db8::5]:80",
    );
    assert_eq!(v6, b"PROXY TCP6 ::ffff:192.0.2.10 2001:db8::5 5000 80\r\n");
}

#[test]
fn encode_leaves_ipv6_loopback_alone() {
    // `::1` is also the IPv4-compatible form of 0.0.0.1; it must not be "unmapped".
    let out = encoded(ProxyVersion::V1, "[::1]:5000", "[::1]:80");
    assert_eq!(out, b"PROXY TCP6 ::1 ::1 5000 80\r\n");
}

#[test]
fn encode_then_parse_round_trips() {
    let cases = [
        (CLIENT4, LISTENER4),
        ("0.0.0.0:0", "255.255.255.255:65535"),
        (CLIENT6, LISTENER6),
        ("[::]:0", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
        ("[fe80::1]:1", "[::1]:2"),
    ];
    for version in [ProxyVersion::V1, ProxyVersion::V2] {
        for (src, dst) in cases {
            let mut buf = encoded(version, src, dst);
            let len = buf.len();
            buf.extend_from_slice(b"payload");
            let (header, consumed) = complete(&buf);
            assert_eq!(consumed, len, "{version:?} {src} {dst}");
            assert_eq!(
                header,
                ProxyHeader {
                    version,
                    command: ProxyCommand::Proxy,
                    addresses: Some((sa(src), sa(dst))),
                },
            );
        }
    }
}

#[test]
fn mixed_families_round_trip_as_ipv6() {
    for version in [ProxyVersion::V1, ProxyVersion::V2] {
        let buf = encoded(version, "192.0.2.10:56324", "[2001:db8::5]:443");
        let expected = (sa("[::ffff:192.0.2.10]:56324"), sa("[2001:db8::5]:443"));
        assert_eq!(addresses(&buf), Some(expected), "{version:?}");
    }
}

#[test]
fn local_v2_round_trips() {
    let mut buf = Vec::new();
    encode_local_v2(&mut buf);
    let expected = ProxyHeader {
        version: ProxyVersion::V2,
        command: ProxyCommand::Local,
        addresses: None,
    };
    assert_eq!(complete(&buf), (expected, V2_HEADER_LEN));
}

// ---------------------------------------------------------------------------------------------
// Decoding: valid inputs

#[test]
fn parse_v1_unknown_ignores_the_rest_of_the_line() {
    let short = b"PROXY UNKNOWN\r\n";
    let (header, consumed) = complete(short);
    assert_eq!((header.addresses, consumed), (None, short.len()));
    assert_eq!(header.command, ProxyCommand::Proxy);

    let long = b"PROXY UNKNOWN whatever the sender put here 1 2 3\r\nGET";
    assert_eq!(complete(long).0.addresses, None);
}

#[test]
fn parse_v1_accepts_the_spec_worst_case_of_107_bytes() {
    let ffff = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let line = format!("PROXY UNKNOWN {ffff} {ffff} 65535 65535\r\n");
    assert_eq!(line.len(), V1_MAX_LEN);
    assert_eq!(complete(line.as_bytes()).1, V1_MAX_LEN);
    assert_eq!(complete(&v1_unknown_of_len(V1_MAX_LEN)).1, V1_MAX_LEN);
}

#[test]
fn parse_v1_accepts_port_zero_and_uppercase_ipv6() {
    let buf = b"PROXY TCP6 2001:DB8::A ::1 0 65535\r\n";
    let expected = (sa("[2001:db8::a]:0"), sa("[::1]:65535"));
    assert_eq!(addresses(buf), Some(expected));
}

#[test]
fn parse_v1_keeps_ipv4_mapped_addresses_as_sent() {
    let buf = b"PROXY TCP6 ::ffff:192.0.2.10 ::1 1 2\r\n";
    assert_eq!(
        addresses(buf),
        Some((sa("[::ffff:192.0.2.10]:1"), sa("[::1]:2")))
    );
}

#[test]
fn parse_v2_skips_tlvs_after_the_addresses() {
    let mut body = INET_BODY.to_vec();
    body.extend_from_slice(&[0xEA, 0x00, 0x03, 1, 2, 3]); // an AWS-style TLV
    body.extend_from_slice(&[0x04, 0x00, 0x00]); // an empty NOOP
    let mut buf = v2(0x21, 0x11, &body);
    let len = buf.len();
    buf.extend_from_slice(b"payload");
    let (header, consumed) = complete(&buf);
    assert_eq!(consumed, len);
    assert_eq!(
        header.addresses,
        Some((sa("192.0.2.10:56324"), sa("198.51.100.1:443")))
    );
}

#[test]
fn parse_v2_accepts_the_largest_allowed_block() {
    let mut body = INET_BODY.to_vec();
    let tlv_len = V2_MAX_BODY_LEN - INET_BODY.len() - V2_TLV_HEADER_LEN;
    body.push(0xE0);
    body.extend_from_slice(&u16::try_from(tlv_len).unwrap().to_be_bytes());
    body.resize(V2_MAX_BODY_LEN, 0);
    let buf = v2(0x21, 0x11, &body);
    assert_eq!(complete(&buf).1, V2_HEADER_LEN + V2_MAX_BODY_LEN);
}

#[test]
fn parse_v2_families_without_usable_addresses() {
    let cases: [(u8, u8, Vec<u8>); 6] = [
        (0x21, 0x00, Vec::new()),         // PROXY, AF_UNSPEC
        (0x21, 0x00, vec![1, 2, 3]),      // AF_UNSPEC with a block to skip
        (0x21, 0x12, INET_BODY.to_vec()), // UDP over IPv4
        (0x21, 0x22, vec![0; 36]),        // UDP over IPv6
        (0x21, 0x31, vec![0; 216]),       // UNIX stream
        (0x21, 0x32, vec![0; 230]),       // UNIX datagram, with extra bytes
    ];
    for (ver_cmd, family, body) in cases {
        let buf = v2(ver_cmd, family, &body);
        let (header, consumed) = complete(&buf);
        assert_eq!(header.command, ProxyCommand::Proxy, "family {family:#04x}");
        assert_eq!(header.addresses, None, "family {family:#04x}");
        assert_eq!(consumed, buf.len());
    }
}

#[test]
fn parse_v2_local_ignores_the_block() {
    // LOCAL: the block (even one too short for its family, even with broken TLVs) is skipped.
    for (family, body) in [
        (0x00, vec![]),
        (0x11, vec![1, 2, 3]),
        (0x11, [&INET_BODY[..], &[0xEA, 0xFF]].concat()),
    ] {
        let buf = v2(0x20, family, &body);
        let (header, consumed) = complete(&buf);
        assert_eq!(header.command, ProxyCommand::Local);
        assert_eq!(header.addresses, None);
        assert_eq!(consumed, buf.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding: malformed inputs

#[test]
fn parse_rejects_what_is_not_proxy() {
    let cases: [&[u8]; 7] = [
        b"GET / HTTP/1.1\r\n",
        &[0x16, 0x03, 0x01, 0x00, 0xA5], // a TLS ClientHello
        b"PROXX TCP4",
        b"PROXYTCP4 1.2.3.4",
        b"proxy TCP4",
        b"\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0C",
        b"\r\n\r\n\r\n",
    ];
    for buf in cases {
        let err = parse(buf).unwrap_err();
        assert_eq!(err, ProxyHeaderError::NotProxy, "{buf:?}");
        assert!(err.is_not_proxy());
    }
}

#[test]
fn parse_v1_malformed_lines() {
    use Endpoint::{Destination as Dst, Source as Src};
    use ProxyHeaderError as E;
    // What sits between `PROXY ` and the CRLF.
    let cases: &[(&str, ProxyHeaderError)] = &[
        // Ports.
        ("TCP4 192.0.2.1 192.0.2.2 65536 80", E::V1Port(Src)),
        ("TCP4 192.0.2.1 192.0.2.2 80 65536", E::V1Port(Dst)),
        ("TCP4 192.0.2.1 192.0.2.2 99999 80", E::V1Port(Src)),
        ("TCP4 192.0.2.1 192.0.2.2 123456 80", E::V1Port(Src)),
        ("TCP4 192.0.2.1 192.0.2.2 -1 80", E::V1Port(Src)),
        ("TCP4 192.0.2.1 192.0.2.2 +1 80", E::V1Port(Src)),
        ("TCP4 192.0.2.1 192.0.2.2 01 80", E::V1Port(Src)),
        ("TCP4 192.0.2.1 192.0.2.2 80 00", E::V1Port(Dst)),
        ("TCP4 192.0.2.1 192.0.2.2 80 0x50", E::V1Port(Dst)),
        ("TCP4 192.0.2.1 192.0.2.2 8o 80", E::V1Port(Src)),
        // Addresses.
        ("TCP4 192.0.2 192.0.2.2 1 2", E::V1Address(Src)),
        ("TCP4 192.0.2.1 192.0.2.256 1 2", E::V1Address(Dst)),
        ("TCP4 010.0.2.1 192.0.2.2 1 2", E::V1Address(Src)),
        ("TCP4 example.com 192.0.2.2 1 2", E::V1Address(Src)),
        ("TCP6 [::1] ::2 1 2", E::V1Address(Src)),
        ("TCP6 fe80::1%eth0 ::2 1 2", E::V1Address(Src)),
        ("TCP6 ::1 ::g 1 2", E::V1Address(Dst)),
        ("TCP6 ::1 1:2:3:4:5:6:7:8:9 1 2", E::V1Address(Dst)),
        // Family mismatch.
        ("TCP4 2001:db8::1 192.0.2.2 1 2", E::V1FamilyMismatch(Src)),
        (
            "TCP4 192.0.2.1 ::ffff:192.0.2.2 1 2",
            E::V1FamilyMismatch(Dst),
        ),
        ("TCP6 2001:db8::1 192.0.2.2 1 2", E::V1FamilyMismatch(Dst)),
        // Protocol.
        ("TCP5 192.0.2.1 192.0.2.2 1 2", E::V1UnknownProtocol),
        ("tcp4 192.0.2.1 192.0.2.2 1 2", E::V1UnknownProtocol),
        ("UDP4 192.0.2.1 192.0.2.2 1 2", E::V1UnknownProtocol),
        ("UNKNOWNX", E::V1UnknownProtocol),
        ("TCP4\t192.0.2.1 192.0.2.2 1 2", E::V1UnknownProtocol),
        // Separators and field count.
        (" TCP4 192.0.2.1 192.0.2.2 1 2", E::V1Separator),
        ("TCP4 192.0.2.1  192.0.2.2 1 2", E::V1Separator),
        ("TCP4 192.0.2.1 192.0.2.2 1 2 ", E::V1Separator),
        ("", E::V1Separator),
        ("TCP4", E::V1FieldCount),
        ("TCP4 192.0.2.1 192.0.2.2 1", E::V1FieldCount),
        ("TCP4 192.0.2.1 192.0.2.2 1 2 3", E::V1FieldCount),
    ];
    for (line, expected) in cases {
        let buf = format!("PROXY {line}\r\n");
        assert_eq!(parse(buf.as_bytes()), Err(*expected), "{buf:?}");
        assert!(!expected.is_not_proxy());
    }
}

#[test]
fn parse_v1_requires_a_crlf_and_no_lone_cr_or_lf() {
    let cases: [&[u8]; 5] = [
        b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n",
        b"PROXY TCP4 192.0.2.1\r192.0.2.2 1 2\r\n",
        b"PROXY UNKNOWN\rX\n",
        b"PROXY UNKNOWN\n\r\n",
        b"PROXY UNKNOWN junk\nmore\r\n",
    ];
    for buf in cases {
        assert_eq!(
            parse(buf),
            Err(ProxyHeaderError::V1BadTerminator),
            "{buf:?}"
        );
    }
}

#[test]
fn parse_v1_rejects_lines_past_107_bytes() {
    // No CRLF at all: rejected once the CRLF can no longer fit.
    let mut endless = b"PROXY UNKNOWN ".to_vec();
    endless.resize(300, b'a');
    assert_eq!(parse(&endless), Err(ProxyHeaderError::V1TooLong));
    assert_eq!(
        parse(&endless[..V1_MAX_LEN - 1]),
        Err(ProxyHeaderError::V1TooLong)
    );
    assert!(matches!(
        parse(&endless[..V1_MAX_LEN - 2]),
        Ok(Parsed::Incomplete { .. })
    ));
    // A CRLF one byte too late.
    let late = v1_unknown_of_len(V1_MAX_LEN + 1);
    assert_eq!(parse(&late), Err(ProxyHeaderError::V1TooLong));
    // The CR fits as the 107th byte, its LF would be the 108th.
    assert_eq!(parse(&late[..V1_MAX_LEN]), Err(ProxyHeaderError::V1TooLong));
    // A valid-looking TCP6 line longer than the limit.
    let long6 = b"PROXY TCP6 0000:0000:0000:0000:0000:ffff:255.255.255.255 \
                  0000:0000:0000:0000:0000:ffff:255.255.255.255 65535 65535\r\n";
    assert_eq!(parse(long6), Err(ProxyHeaderError::V1TooLong));
}

#[test]
fn parse_v2_malformed_headers() {
    use ProxyHeaderError as E;
    let too_short = |family, len, needed| E::V2AddressBlockTooShort {
        family,
        len,
        needed,
    };
    let with_tlvs = |tlvs: &[u8]| [&INET_BODY[..], tlvs].concat();
    let cases: Vec<(Vec<u8>, ProxyHeaderError)> = vec![
        (v2(0x11, 0x11, &INET_BODY), E::V2Version(1)),
        (v2(0x31, 0x11, &INET_BODY), E::V2Version(3)),
        (v2(0x01, 0x11, &INET_BODY), E::V2Version(0)),
        (v2(0x22, 0x11, &INET_BODY), E::V2Command(2)),
        (v2(0x2F, 0x11, &INET_BODY), E::V2Command(0xF)),
        (v2(0x21, 0x13, &INET_BODY), E::V2Family(0x13)),
        (v2(0x21, 0x41, &INET_BODY), E::V2Family(0x41)),
        (v2(0x21, 0x01, &INET_BODY), E::V2Family(0x01)),
        (v2(0x21, 0x10, &INET_BODY), E::V2Family(0x10)),
        (v2(0x20, 0xFF, &[]), E::V2Family(0xFF)),
        (v2(0x21, 0x11, &INET_BODY[..11]), too_short(0x11, 11, 12)),
        (v2(0x21, 0x21, &[0; 12]), too_short(0x21, 12, 36)),
        (v2(0x21, 0x12, &[]), too_short(0x12, 0, 12)),
        (v2(0x21, 0x31, &[0; 215]), too_short(0x31, 215, 216)),
        (v2(0x21, 0x11, &[0; 2049]), E::V2TooLong { len: 2049 }),
        (v2(0x21, 0x11, &[0; 65535]), E::V2TooLong { len: 65535 }),
        // A TLV header cut short, then TLV values running past the block.
        (v2(0x21, 0x11, &with_tlvs(&[0xEA, 0x00])), E::V2Tlv),
        (
            v2(0x21, 0x11, &with_tlvs(&[0xEA, 0x00, 0x0A, 1, 2])),
            E::V2Tlv,
        ),
        (
            v2(0x21, 0x11, &with_tlvs(&[0x04, 0x00, 0x00, 0x01])),
            E::V2Tlv,
        ),
    ];
    for (buf, expected) in cases {
        assert_eq!(parse(&buf), Err(expected), "{buf:02x?}");
        assert!(!expected.is_not_proxy());
    }
}

#[test]
fn parse_v2_rejects_a_bad_fixed_header_before_its_block_arrives() {
    // 16 bytes are enough to reject: a reader never waits for (or reads) the block.
    let oversized = v2(0x21, 0x11, &[0; 4000]);
    assert_eq!(
        parse(&oversized[..V2_HEADER_LEN]),
        Err(ProxyHeaderError::V2TooLong { len: 4000 })
    );
    let short = v2(0x21, 0x21, &[0; 20]);
    assert!(matches!(
        parse(&short[..V2_HEADER_LEN]),
        Err(ProxyHeaderError::V2AddressBlockTooShort { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Decoding: prefixes and arbitrary bytes

#[test]
fn every_proper_prefix_is_incomplete() {
    for header in valid_headers() {
        for cut in 0..header.len() {
            match parse(&header[..cut]) {
                Ok(Parsed::Incomplete { needed }) => {
                    assert!(needed >= 1, "{header:?} cut at {cut}");
                    assert!(
                        cut + needed <= header.len(),
                        "needed {needed} overshoots {header:?} cut at {cut}"
                    );
                }
                other => panic!("{header:?} cut at {cut}: {other:?}"),
            }
        }
        assert_eq!(complete(&header).1, header.len());
    }
}

#[test]
fn v2_incomplete_reports_exactly_what_is_missing() {
    let header = encoded(ProxyVersion::V2, CLIENT4, LISTENER4);
    for cut in 1..header.len() {
        // The fixed part first, then (its length known) exactly the rest.
        let end = if cut < V2_HEADER_LEN {
            V2_HEADER_LEN
        } else {
            header.len()
        };
        assert_eq!(
            parse(&header[..cut]),
            Ok(Parsed::Incomplete { needed: end - cut }),
            "cut at {cut}"
        );
    }
}

/// What must hold for any input: no panic, and a self-consistent answer. True if complete.
fn check_parse_invariants(buf: &[u8]) -> bool {
    match parse(buf) {
        Ok(Parsed::Incomplete { needed }) => assert!(needed >= 1, "{buf:?}"),
        Ok(Parsed::Complete { header, consumed }) => {
            assert!(consumed <= buf.len(), "{buf:?}");
            let max = match header.version {
                ProxyVersion::V1 => V1_MAX_LEN,
                ProxyVersion::V2 => V2_HEADER_LEN + V2_MAX_BODY_LEN,
            };
            assert!(consumed <= max, "{buf:?}");
            // The header is self-delimiting: its own bytes decode to the same thing.
            assert_eq!(
                parse(&buf[..consumed]),
                Ok(Parsed::Complete { header, consumed })
            );
            return true;
        }
        Err(_) => {}
    }
    false
}

#[test]
fn parse_never_panics_on_random_bytes() {
    let mut rng = fastrand::Rng::with_seed(0x5EED);
    let mut buf = Vec::new();
    for i in 0..10_000 {
        buf.clear();
        // A third fully random, a third behind each signature so the deeper code is reached.
        match i % 3 {
            0 => {}
            1 => buf.extend_from_slice(V1_PREFIX),
            _ => {
                buf.extend_from_slice(&V2_SIGNATURE);
                buf.push(if rng.bool() { 0x21 } else { rng.u8(..) });
                let families = [0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32, rng.u8(..)];
                buf.push(families[rng.usize(..families.len())]);
                buf.extend_from_slice(&rng.u16(..300).to_be_bytes());
            }
        }
        let extra = rng.usize(0..=300);
        if i % 3 == 1 {
            // Mostly the characters of a v1 line, so fields get parsed.
            const ALPHABET: &[u8] = b"TCP46UNKOW 0123456789abcdef.:\r\n-+";
            buf.extend((0..extra).map(|_| ALPHABET[rng.usize(..ALPHABET.len())]));
        } else {
            buf.extend((0..extra).map(|_| rng.u8(..)));
        }
        let _ = check_parse_invariants(&buf);
    }
}

#[test]
fn parse_never_panics_on_mutated_valid_headers() {
    let mut rng = fastrand::Rng::with_seed(0xBAD_C0DE);
    let headers = valid_headers();
    let mut completes = 0;
    for _ in 0..10_000 {
        let mut buf = headers[rng.usize(..headers.len())].clone();
        for _ in 0..rng.usize(1..=3) {
            let at = rng.usize(..buf.len());
            buf[at] = rng.u8(..);
        }
        if rng.bool() {
            buf.truncate(rng.usize(0..=buf.len()));
        } else {
            buf.extend((0..rng.usize(0..32)).map(|_| rng.u8(..)));
        }
        completes += usize::from(check_parse_invariants(&buf));
    }
    // The mutations leave enough headers valid for the success path to be exercised too.
    assert!(completes > 500, "only {completes} complete headers");
}

// ---------------------------------------------------------------------------------------------
// read_header

/// Reads the header from a duplex stream fed with `bytes` (at once or one byte at a time), then
/// checks that `buf` plus what is left in the stream is exactly `payload`. Returns the header
/// and what `buf` held right after it.
async fn read_through_duplex(
    bytes: Vec<u8>,
    byte_by_byte: bool,
    payload: &[u8],
) -> (ProxyHeader, Vec<u8>) {
    let (mut client, mut server) = tokio::io::duplex(if byte_by_byte { 1 } else { 64 * 1024 });
    let writer = tokio::spawn(async move {
        if byte_by_byte {
            for b in bytes {
                client.write_all(&[b]).await.unwrap();
                tokio::task::yield_now().await;
            }
        } else {
            client.write_all(&bytes).await.unwrap();
        }
        // Dropping `client` closes the stream.
    });
    let mut buf = Vec::new();
    let header = tokio::time::timeout(HANG_GUARD, read_header(&mut server, &mut buf))
        .await
        .expect("read_header hung")
        .expect("valid header");
    let after_header = buf.clone();
    server.read_to_end(&mut buf).await.unwrap();
    writer.await.unwrap();
    assert_eq!(buf, payload);
    (header, after_header)
}

#[tokio::test]
async fn read_header_keeps_payload_from_a_single_write() {
    let payload = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";
    for version in [ProxyVersion::V1, ProxyVersion::V2] {
        let header = encoded(version, CLIENT4, LISTENER4);
        let (got, _) = read_through_duplex([&header[..], payload].concat(), false, payload).await;
        assert_eq!(complete(&header).0, got, "{version:?}");
    }
}

#[tokio::test]
async fn read_header_keeps_payload_arriving_byte_by_byte() {
    let payload = b"\x16\x03\x01 a TLS ClientHello, say";
    for version in [ProxyVersion::V1, ProxyVersion::V2] {
        let header = encoded(version, "[2001:db8::1]:40000", "[2001:db8::5]:443");
        let (got, _) = read_through_duplex([&header[..], payload].concat(), true, payload).await;
        assert_eq!(complete(&header).0, got, "{version:?}");
    }
}

#[tokio::test]
async fn read_header_v1_reads_at_most_107_bytes() {
    let header = encoded(ProxyVersion::V1, CLIENT4, LISTENER4);
    let payload = vec![b'x'; 4096];
    let (_, after_header) =
        read_through_duplex([&header[..], &payload].concat(), false, &payload).await;
    // The one read that fetched the header may have taken some payload, never past 107 bytes.
    assert!(header.len() + after_header.len() <= V1_MAX_LEN);
}

#[tokio::test]
async fn read_header_v2_reads_exactly_the_header() {
    let header = encoded(ProxyVersion::V2, CLIENT4, LISTENER4);
    let payload = vec![b'x'; 4096];
    let (_, after_header) =
        read_through_duplex([&header[..], &payload].concat(), false, &payload).await;
    assert!(after_header.is_empty());
}

#[tokio::test]
async fn read_header_starts_from_bytes_already_in_buf() {
    let header = encoded(ProxyVersion::V1, CLIENT4, LISTENER4);
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(&header[5..]).await.unwrap();
    client.write_all(b"rest").await.unwrap();
    drop(client);
    let mut buf = header[..5].to_vec();
    let got = read_header(&mut server, &mut buf).await.unwrap();
    assert_eq!(got, complete(&header).0);
    server.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf, b"rest");
}

#[tokio::test]
async fn read_header_eof_before_the_end_is_an_error() {
    for partial in [&b""[..], b"PROXY TCP4 192.0.2.1", &V2_SIGNATURE[..]] {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(partial).await.unwrap();
        drop(client);
        let mut buf = Vec::new();
        let err = read_header(&mut server, &mut buf).await.unwrap_err();
        assert!(
            matches!(err, ProxyReadError::Eof { received } if received == partial.len()),
            "{err:?}"
        );
        assert!(!err.is_not_proxy());
    }
}

#[tokio::test]
async fn read_header_reports_a_peer_that_does_not_speak_proxy() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let err = read_header(&mut server, &mut buf).await.unwrap_err();
    assert!(err.is_not_proxy(), "{err:?}");
    let source = std::error::Error::source(&err).expect("the header error is the source");
    assert_eq!(source.to_string(), ProxyHeaderError::NotProxy.to_string());
}

#[tokio::test]
async fn read_header_rejects_an_oversized_v2_without_reading_its_block() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    let oversized = v2(0x21, 0x11, &[0; 4000]);
    // Only the fixed part is sent and the stream stays open: the error must not wait for more.
    client.write_all(&oversized[..V2_HEADER_LEN]).await.unwrap();
    let mut buf = Vec::new();
    let err = tokio::time::timeout(HANG_GUARD, read_header(&mut server, &mut buf))
        .await
        .expect("read_header waited for the block")
        .unwrap_err();
    assert!(matches!(
        err,
        ProxyReadError::Header(ProxyHeaderError::V2TooLong { len: 4000 })
    ));
    drop(client);
}
