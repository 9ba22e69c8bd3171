//! PROXY protocol v1 and v2 (HAProxy's `proxy-protocol.txt`): the header Portico prepends when it
//! connects to a backend, and the strict decoder for the header an upstream load balancer sends
//! when a listener has `accept_proxy_protocol = true`.
//!
//! # Encoding
//! [`encode`] appends a v1 (`PROXY TCP4|TCP6 ...\r\n`) or v2 (binary, command PROXY, TCP over
//! IPv4/IPv6, no TLVs) header to a caller-owned `Vec`; it allocates nothing beyond growing that
//! `Vec`. [`encode_local_v2`] appends a v2 LOCAL header (health checks: "use the real endpoints").
//!
//! Both addresses of one header must be of the same family. A dual-stack listener sees IPv4
//! clients as IPv4-mapped IPv6 (`::ffff:a.b.c.d`), and an IPv4 client can reach an IPv6 listener
//! address or the reverse, so [`encode`] first turns IPv4-mapped IPv6 addresses back into IPv4
//! and then, if the families still differ, writes the IPv4 one as IPv4-mapped IPv6 so that both
//! are IPv6 (what HAProxy does). IPv6 flow info and scope ids are not representable and are
//! dropped.
//!
//! # Decoding
//! [`parse`] never panics on any input and is as strict as the specification:
//! - v1: at most [`V1_MAX_LEN`] bytes including the CRLF; the line must end with CRLF and a lone
//!   CR or LF anywhere is rejected; fields are separated by exactly one space; the protocol is
//!   `TCP4`, `TCP6` or `UNKNOWN` (whose rest of line is ignored, as the spec requires); addresses
//!   must be IP literals of the declared family (no zone ids, no brackets, IPv4 octets without
//!   leading zeros); ports are decimal `0..=65535` with no sign and **no leading zero** (a lone
//!   `0` is fine). The spec forbids leading zeros ("to avoid any possible confusion with octal
//!   numbers") and senders format ports as plain decimal integers, so rejecting them costs no
//!   compatibility in practice, even though some receivers tolerate them.
//! - v2: the 12-byte signature, version 2, command LOCAL or PROXY, and one of the seven family /
//!   transport bytes the spec defines (any other is rejected, even under LOCAL). The address
//!   block may be at most [`V2_MAX_BODY_LEN`] bytes (a Portico limit, far below the format's
//!   65535: real senders put 12-216 bytes of addresses and a few small TLVs there) and, for
//!   PROXY, at least what the family needs. TCP over IPv4/IPv6 yields addresses and the TLVs
//!   after them are skipped but their framing is checked. LOCAL, `AF_UNSPEC`, UDP and `AF_UNIX`
//!   yield no addresses, and their block is skipped unread, since the spec says such a block is
//!   to be ignored ("fall back to the UNSPEC mode").
//! - Decoded addresses are returned as sent: a `TCP6` header carrying `::ffff:a.b.c.d` yields an
//!   IPv6 address; normalising is the caller's choice.
//!
//! Every [`ProxyHeaderError`] is the peer's fault; [`ProxyHeaderError::is_not_proxy`] separates
//! "this connection does not speak PROXY at all" from "it does, badly".
//!
//! # Reading from a connection
//! [`read_header`] reads no further than the header can extend (v1: [`V1_MAX_LEN`] bytes; v2:
//! 16 bytes, then exactly `16 + length`), and keeps whatever it read past the header in the
//! caller's buffer: those bytes are the start of the client's payload.

use std::fmt;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use tokio::io::{AsyncRead, AsyncReadExt};

#[cfg(test)]
mod tests;

/// Longest v1 header, CRLF included (`PROXY UNKNOWN` with two full IPv6 addresses and ports).
pub const V1_MAX_LEN: usize = 107;
/// Shortest v1 header: `PROXY UNKNOWN\r\n`.
const V1_MIN_LEN: usize = 15;
/// What every v1 header starts with, space included.
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// What every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a v2 header: signature, version/command, family/transport, length.
pub const V2_HEADER_LEN: usize = 16;
/// Largest v2 address block (addresses + TLVs) Portico accepts, in bytes.
pub const V2_MAX_BODY_LEN: usize = 2048;

const V2_VERSION: u8 = 0x20;
const V2_CMD_LOCAL: u8 = 0x00;
const V2_CMD_PROXY: u8 = 0x01;

const V2_FAM_UNSPEC: u8 = 0x00;
const V2_FAM_TCP4: u8 = 0x11;
const V2_FAM_UDP4: u8 = 0x12;
const V2_FAM_TCP6: u8 = 0x21;
const V2_FAM_UDP6: u8 = 0x22;
const V2_FAM_UNIX_STREAM: u8 = 0x31;
const V2_FAM_UNIX_DGRAM: u8 = 0x32;

/// Address block sizes, in bytes: two addresses and two ports (no ports for `AF_UNIX`).
const V2_INET_BODY_LEN: u16 = 2 * 4 + 2 * 2;
const V2_INET6_BODY_LEN: u16 = 2 * 16 + 2 * 2;
const V2_UNIX_BODY_LEN: u16 = 2 * 108;

/// A TLV's type byte and big-endian length.
const V2_TLV_HEADER_LEN: usize = 3;

/// Which PROXY protocol version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    /// The text format: `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// The binary format.
    V2,
}

/// What the sender asks the receiver to do with the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyCommand {
    /// The connection is relayed on behalf of a client (every v1 header, v2 command PROXY).
    Proxy,
    /// The sender's own connection (health checks): use the real endpoints (v2 command LOCAL).
    Local,
}

/// A decoded PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    pub version: ProxyVersion,
    pub command: ProxyCommand,
    /// `(source, destination)`: the original client and the address it connected to. `None` for
    /// v1 `UNKNOWN` and for v2 LOCAL, `AF_UNSPEC`, UDP and `AF_UNIX`; the receiver then uses the
    /// connection's real endpoints.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// The outcome of [`parse`] on a buffer that is, so far, a valid PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The buffer is a proper prefix of a header. At least `needed` more bytes (always >= 1) are
    /// required; reading exactly `needed` more never reads past the end of the header.
    Incomplete { needed: usize },
    /// A whole header: it occupies the first `consumed` bytes of the buffer; what follows is
    /// payload.
    Complete {
        header: ProxyHeader,
        consumed: usize,
    },
}

/// Which address or port of a v1 line was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Source,
    Destination,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Endpoint::Source => "source",
            Endpoint::Destination => "destination",
        })
    }
}

/// Why bytes are not a valid PROXY header. Always the peer's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The bytes start with neither the v1 nor the v2 signature: the peer does not speak PROXY.
    #[error("not a PROXY protocol header (neither the v1 nor the v2 signature)")]
    NotProxy,
    #[error("PROXY v1 line has no CRLF within {V1_MAX_LEN} bytes")]
    V1TooLong,
    #[error("PROXY v1 line contains a lone CR or LF; it must end with CRLF")]
    V1BadTerminator,
    #[error("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN")]
    V1UnknownProtocol,
    #[error("PROXY v1 fields must be separated by exactly one space")]
    V1Separator,
    #[error("PROXY v1 line must have exactly four fields after the protocol")]
    V1FieldCount,
    #[error("PROXY v1 {0} address is not a valid IP literal")]
    V1Address(Endpoint),
    #[error("PROXY v1 {0} address is not of the family the protocol declares")]
    V1FamilyMismatch(Endpoint),
    #[error("PROXY v1 {0} port is not a decimal 0-65535 without sign or leading zero")]
    V1Port(Endpoint),
    #[error("PROXY v2 header declares version {0}, expected 2")]
    V2Version(u8),
    #[error("PROXY v2 command {0:#x} is neither LOCAL nor PROXY")]
    V2Command(u8),
    #[error("PROXY v2 family/transport byte {0:#04x} is not defined")]
    V2Family(u8),
    #[error("PROXY v2 address block of {len} bytes exceeds the limit of {V2_MAX_BODY_LEN}")]
    V2TooLong { len: u16 },
    #[error(
        "PROXY v2 address block of {len} bytes is too short for family {family:#04x} ({needed})"
    )]
    V2AddressBlockTooShort { family: u8, len: u16, needed: u16 },
    #[error("PROXY v2 TLV runs past the end of the address block")]
    V2Tlv,
}

impl ProxyHeaderError {
    /// True when the peer does not speak PROXY at all (as opposed to a malformed header).
    pub fn is_not_proxy(&self) -> bool {
        matches!(self, ProxyHeaderError::NotProxy)
    }
}

/// Why [`read_header`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyReadError {
    /// Reading from the connection failed.
    #[error("reading the PROXY header failed")]
    Io(#[source] io::Error),
    /// The peer sent bytes that are not a valid PROXY header.
    #[error("invalid PROXY header")]
    Header(#[source] ProxyHeaderError),
    /// The peer closed the connection before a complete header.
    #[error("connection closed after {received} bytes, before a complete PROXY header")]
    Eof { received: usize },
}

impl ProxyReadError {
    /// True when the peer does not speak PROXY at all.
    pub fn is_not_proxy(&self) -> bool {
        matches!(self, ProxyReadError::Header(e) if e.is_not_proxy())
    }
}

impl From<io::Error> for ProxyReadError {
    fn from(e: io::Error) -> Self {
        ProxyReadError::Io(e)
    }
}

impl From<ProxyHeaderError> for ProxyReadError {
    fn from(e: ProxyHeaderError) -> Self {
        ProxyReadError::Header(e)
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Appends a PROXY header for a connection from `src` (the client) to `dst` (the address the
/// client connected to: Portico's listener address) to `out`. Mixed families are made
/// consistent as described in the module docs.
pub fn encode(version: ProxyVersion, src: SocketAddr, dst: SocketAddr, out: &mut Vec<u8>) {
    let pair = AddrPair::new(src, dst);
    match version {
        ProxyVersion::V1 => encode_v1(pair, out),
        ProxyVersion::V2 => encode_v2(pair, out),
    }
}

/// Appends a v2 LOCAL header (no addresses) to `out`: the receiver uses the real endpoints.
pub fn encode_local_v2(out: &mut Vec<u8>) {
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(V2_VERSION | V2_CMD_LOCAL);
    out.push(V2_FAM_UNSPEC);
    out.extend_from_slice(&0u16.to_be_bytes());
}

/// Source and destination of one family.
#[derive(Debug, Clone, Copy)]
enum AddrPair {
    V4(SocketAddrV4, SocketAddrV4),
    V6(SocketAddrV6, SocketAddrV6),
}

impl AddrPair {
    fn new(src: SocketAddr, dst: SocketAddr) -> Self {
        match (unmap(src), unmap(dst)) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => AddrPair::V4(s, d),
            (SocketAddr::V6(s), SocketAddr::V6(d)) => AddrPair::V6(s, d),
            (SocketAddr::V4(s), SocketAddr::V6(d)) => AddrPair::V6(map(s), d),
            (SocketAddr::V6(s), SocketAddr::V4(d)) => AddrPair::V6(s, map(d)),
        }
    }
}

/// `::ffff:a.b.c.d` becomes `a.b.c.d`; anything else is left alone (in particular the
/// deprecated IPv4-compatible `::a.b.c.d` form, so `::1` stays the IPv6 loopback).
fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

fn map(v4: SocketAddrV4) -> SocketAddrV6 {
    SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0)
}

fn encode_v1(pair: AddrPair, out: &mut Vec<u8>) {
    // `io::Write` for `Vec<u8>` only appends and never fails, so the result carries nothing.
    let _ = match pair {
        AddrPair::V4(s, d) => write!(
            out,
            "PROXY TCP4 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
        AddrPair::V6(s, d) => write!(
            out,
            "PROXY TCP6 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
    };
}

fn encode_v2(pair: AddrPair, out: &mut Vec<u8>) {
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(V2_VERSION | V2_CMD_PROXY);
    match pair {
        AddrPair::V4(s, d) => {
            out.push(V2_FAM_TCP4);
            out.extend_from_slice(&V2_INET_BODY_LEN.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        AddrPair::V6(s, d) => {
            out.push(V2_FAM_TCP6);
            out.extend_from_slice(&V2_INET6_BODY_LEN.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decodes the PROXY header at the start of `buf` (untrusted bytes). See the module docs for
/// what is accepted. Errors are reported as early as the bytes allow: a non-PROXY first byte
/// fails at once, a bad v2 fixed header as soon as its 16 bytes are there.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if buf.is_empty() {
        return Ok(Parsed::Incomplete {
            needed: V1_MIN_LEN.min(V2_HEADER_LEN),
        });
    }
    if starts_like(buf, V1_PREFIX) {
        parse_v1(buf)
    } else if starts_like(buf, &V2_SIGNATURE) {
        parse_v2(buf)
    } else {
        Err(ProxyHeaderError::NotProxy)
    }
}

/// `buf` agrees with `signature` on the bytes they both have.
fn starts_like(buf: &[u8], signature: &[u8]) -> bool {
    let n = buf.len().min(signature.len());
    buf[..n] == signature[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if buf.len() < V1_PREFIX.len() {
        return Ok(Parsed::Incomplete {
            needed: V1_MIN_LEN - buf.len(),
        });
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(eol) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        // The CRLF still has to come, and must fit within the limit.
        let needed = V1_MIN_LEN.saturating_sub(buf.len()).max(2);
        return if buf.len() + 2 > V1_MAX_LEN {
            Err(ProxyHeaderError::V1TooLong)
        } else {
            Ok(Parsed::Incomplete { needed })
        };
    };
    if window[eol] == b'\n' {
        return Err(ProxyHeaderError::V1BadTerminator);
    }
    match window.get(eol + 1) {
        Some(b'\n') => {}
        Some(_) => return Err(ProxyHeaderError::V1BadTerminator),
        None if eol + 1 >= V1_MAX_LEN => return Err(ProxyHeaderError::V1TooLong),
        None => return Ok(Parsed::Incomplete { needed: 1 }),
    }
    let addresses = parse_v1_line(&buf[V1_PREFIX.len()..eol])?;
    Ok(Parsed::Complete {
        header: ProxyHeader {
            version: ProxyVersion::V1,
            command: ProxyCommand::Proxy,
            addresses,
        },
        consumed: eol + 2,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// `line` is what sits between `PROXY ` and the CRLF.
fn parse_v1_line(line: &[u8]) -> Result<Option<(SocketAddr, SocketAddr)>, ProxyHeaderError> {
    let mut fields = line.split(|&b| b == b' ');
    let family = match fields.next() {
        Some(b"UNKNOWN") => return Ok(None),
        Some(b"TCP4") => Family::V4,
        Some(b"TCP6") => Family::V6,
        Some(b"") => return Err(ProxyHeaderError::V1Separator),
        _ => return Err(ProxyHeaderError::V1UnknownProtocol),
    };
    let mut parts: [&[u8]; 4] = [&[]; 4];
    let mut count = 0;
    for field in fields {
        if field.is_empty() {
            return Err(ProxyHeaderError::V1Separator);
        }
        let slot = parts.get_mut(count).ok_or(ProxyHeaderError::V1FieldCount)?;
        *slot = field;
        count += 1;
    }
    if count != parts.len() {
        return Err(ProxyHeaderError::V1FieldCount);
    }
    let [src_ip, dst_ip, src_port, dst_port] = parts;
    let src_ip = parse_v1_ip(src_ip, family, Endpoint::Source)?;
    let dst_ip = parse_v1_ip(dst_ip, family, Endpoint::Destination)?;
    let src_port = parse_v1_port(src_port).ok_or(ProxyHeaderError::V1Port(Endpoint::Source))?;
    let dst_port =
        parse_v1_port(dst_port).ok_or(ProxyHeaderError::V1Port(Endpoint::Destination))?;
    Ok(Some((
        SocketAddr::new(src_ip, src_port),
        SocketAddr::new(dst_ip, dst_port),
    )))
}

fn parse_v1_ip(field: &[u8], family: Family, which: Endpoint) -> Result<IpAddr, ProxyHeaderError> {
    // The standard parsers reject what the spec rules out: leading zeros in dotted quads (octal
    // confusion), brackets, zone ids, anything that does not decode to exactly 32/128 bits.
    let text = std::str::from_utf8(field).map_err(|_| ProxyHeaderError::V1Address(which))?;
    let ip: IpAddr = text
        .parse()
        .map_err(|_| ProxyHeaderError::V1Address(which))?;
    let matches = match family {
        Family::V4 => ip.is_ipv4(),
        Family::V6 => ip.is_ipv6(),
    };
    if matches {
        Ok(ip)
    } else {
        Err(ProxyHeaderError::V1FamilyMismatch(which))
    }
}

/// Decimal `0..=65535`, digits only, no leading zero except `0` itself.
fn parse_v1_port(field: &[u8]) -> Option<u16> {
    const MAX_DIGITS: usize = 5;
    let leading_zero = field.len() > 1 && field.first() == Some(&b'0');
    if field.is_empty() || field.len() > MAX_DIGITS || leading_zero {
        return None;
    }
    let mut value: u32 = 0;
    for &b in field {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(b - b'0');
    }
    u16::try_from(value).ok()
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let Some((fixed, rest)) = buf.split_first_chunk::<V2_HEADER_LEN>() else {
        return Ok(Parsed::Incomplete {
            needed: V2_HEADER_LEN - buf.len(),
        });
    };
    let [.., ver_cmd, family, len_hi, len_lo] = *fixed;
    let len = u16::from_be_bytes([len_hi, len_lo]);

    if ver_cmd & 0xF0 != V2_VERSION {
        return Err(ProxyHeaderError::V2Version(ver_cmd >> 4));
    }
    let command = match ver_cmd & 0x0F {
        V2_CMD_LOCAL => ProxyCommand::Local,
        V2_CMD_PROXY => ProxyCommand::Proxy,
        other => return Err(ProxyHeaderError::V2Command(other)),
    };
    let needed_len = match family {
        V2_FAM_UNSPEC => 0,
        V2_FAM_TCP4 | V2_FAM_UDP4 => V2_INET_BODY_LEN,
        V2_FAM_TCP6 | V2_FAM_UDP6 => V2_INET6_BODY_LEN,
        V2_FAM_UNIX_STREAM | V2_FAM_UNIX_DGRAM => V2_UNIX_BODY_LEN,
        other => return Err(ProxyHeaderError::V2Family(other)),
    };
    if usize::from(len) > V2_MAX_BODY_LEN {
        return Err(ProxyHeaderError::V2TooLong { len });
    }
    let too_short = ProxyHeaderError::V2AddressBlockTooShort {
        family,
        len,
        needed: needed_len,
    };
    if command == ProxyCommand::Proxy && len < needed_len {
        return Err(too_short);
    }
    let Some(body) = rest.get(..usize::from(len)) else {
        return Ok(Parsed::Incomplete {
            needed: usize::from(len) - rest.len(),
        });
    };

    let addresses = match (command, family) {
        (ProxyCommand::Proxy, V2_FAM_TCP4) => {
            let (pair, tlvs) = split_inet(body).ok_or(too_short)?;
            check_tlvs(tlvs)?;
            Some(pair)
        }
        (ProxyCommand::Proxy, V2_FAM_TCP6) => {
            let (pair, tlvs) = split_inet6(body).ok_or(too_short)?;
            check_tlvs(tlvs)?;
            Some(pair)
        }
        // LOCAL, AF_UNSPEC, UDP and AF_UNIX: the block is ignored, as the spec requires.
        _ => None,
    };
    Ok(Parsed::Complete {
        header: ProxyHeader {
            version: ProxyVersion::V2,
            command,
            addresses,
        },
        consumed: V2_HEADER_LEN + usize::from(len),
    })
}

/// Splits `N` bytes off the front of `bytes`.
fn take<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    *bytes = rest;
    Some(*head)
}

/// A TCP-over-IPv4 address block: the address pair, and the TLVs that follow it.
fn split_inet(mut body: &[u8]) -> Option<((SocketAddr, SocketAddr), &[u8])> {
    let src = Ipv4Addr::from(take::<4>(&mut body)?);
    let dst = Ipv4Addr::from(take::<4>(&mut body)?);
    let src_port = u16::from_be_bytes(take::<2>(&mut body)?);
    let dst_port = u16::from_be_bytes(take::<2>(&mut body)?);
    let pair = (
        SocketAddr::new(src.into(), src_port),
        SocketAddr::new(dst.into(), dst_port),
    );
    Some((pair, body))
}

/// A TCP-over-IPv6 address block: the address pair, and the TLVs that follow it.
fn split_inet6(mut body: &[u8]) -> Option<((SocketAddr, SocketAddr), &[u8])> {
    let src = Ipv6Addr::from(take::<16>(&mut body)?);
    let dst = Ipv6Addr::from(take::<16>(&mut body)?);
    let src_port = u16::from_be_bytes(take::<2>(&mut body)?);
    let dst_port = u16::from_be_bytes(take::<2>(&mut body)?);
    let pair = (
        SocketAddr::new(src.into(), src_port),
        SocketAddr::new(dst.into(), dst_port),
    );
    Some((pair, body))
}

/// Walks the TLVs after the addresses: each must fit in what is left of the block.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyHeaderError> {
    while !tlvs.is_empty() {
        let [_kind, len_hi, len_lo] =
            take::<V2_TLV_HEADER_LEN>(&mut tlvs).ok_or(ProxyHeaderError::V2Tlv)?;
        let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        tlvs = tlvs.get(len..).ok_or(ProxyHeaderError::V2Tlv)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Reads a PROXY header from `stream`. Bytes already in `buf` are treated as the first bytes of
/// the stream. On success the header's bytes are removed from `buf`, and whatever was read past
/// the header stays in it: the start of the client's payload, which the caller must forward.
///
/// Reads no further than the header can extend: up to [`V1_MAX_LEN`] bytes in total for v1, the
/// 16-byte fixed part and then exactly the declared length for v2. EOF before a complete header
/// is [`ProxyReadError::Eof`]. Cancel-safe with respect to `buf` (the caller wraps this in a
/// timeout): a cancelled read appends nothing.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<ProxyHeader, ProxyReadError> {
    loop {
        let needed = match parse(buf)? {
            Parsed::Complete { header, consumed } => {
                buf.drain(..consumed);
                return Ok(header);
            }
            Parsed::Incomplete { needed } => needed,
        };
        let room = read_limit(buf).max(buf.len() + needed) - buf.len();
        buf.reserve(room);
        let room = u64::try_from(room).unwrap_or(u64::MAX);
        let n = (&mut *stream).take(room).read_buf(buf).await?;
        if n == 0 {
            return Err(ProxyReadError::Eof {
                received: buf.len(),
            });
        }
    }
}

/// How long the header that `buf` begins (and that [`parse`] found incomplete) can be at most.
fn read_limit(buf: &[u8]) -> usize {
    match buf.first() {
        Some(b'P') => V1_MAX_LEN,
        _ => match buf.get(V2_HEADER_LEN - 2..V2_HEADER_LEN) {
            Some(&[hi, lo]) => V2_HEADER_LEN + usize::from(u16::from_be_bytes([hi, lo])),
            _ => V2_HEADER_LEN,
        },
    }
}
