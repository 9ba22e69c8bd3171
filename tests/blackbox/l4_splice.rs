//! The L4 scenarios whose bytes take a different path with `splice = true` (bulk goes
//! socket -> pipe -> socket inside the kernel), run with splice on and off: the results must be
//! the same, byte for byte, and so must the byte counters.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use crate::harness::backend::{Behavior, TestBackend};
use crate::harness::http::http;
use crate::harness::{Portico, connect, read_line};
use crate::l4::one_listener;

/// Enough bytes per write that a direction counts as bulk and switches to splice(2).
const BULK: usize = 1024 * 1024;

/// A non-repeating pattern, so a lost, repeated or reordered chunk shows.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn splice_setting(splice: bool) -> String {
    format!("splice = {splice}")
}

/// `portico_bytes_total{listener="l",direction}` from /metrics (0 before the first byte).
fn bytes_total(portico: &Portico, direction: &str) -> u64 {
    let r = http(portico.admin_addr(), "GET", "/metrics", &[], None);
    assert_eq!(r.status, 200, "{r:?}");
    let series = format!("portico_bytes_total{{direction=\"{direction}\",listener=\"l\"}} ");
    let alt = format!("portico_bytes_total{{listener=\"l\",direction=\"{direction}\"}} ");
    r.body
        .lines()
        .find_map(|l| l.strip_prefix(&series).or_else(|| l.strip_prefix(&alt)))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// Waits until the byte counters read `(in, out)`; they are updated as chunks are written.
fn assert_counted(portico: &Portico, expected: (u64, u64)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = (bytes_total(portico, "in"), bytes_total(portico, "out"));
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "bytes (in, out) {got:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ten_mib_both_ways(splice: bool) {
    let b = TestBackend::start("b1", Behavior::Echo);
    let portico = Portico::start(&one_listener(&[&b], "round_robin", &splice_setting(splice)));
    let mut s = connect(portico.addr("l"));
    let data = pattern(10 * 1024 * 1024, 1);
    let mut writer = s.try_clone().unwrap();
    let to_send = data.clone();
    let t = std::thread::spawn(move || {
        writer.write_all(&to_send).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::with_capacity(data.len());
    s.read_to_end(&mut got).unwrap();
    t.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "10 MiB came back altered");
    let n = data.len() as u64;
    assert_counted(&portico, (n, n));
}

#[test]
fn ten_mib_both_ways_splice_on() {
    ten_mib_both_ways(true);
}

#[test]
fn ten_mib_both_ways_splice_off() {
    ten_mib_both_ways(false);
}

/// Bulk then a half-close: the end of stream follows the last spliced chunk to the backend,
/// whose reply still comes back on the half-open connection.
fn bulk_then_half_close(splice: bool) {
    let b = TestBackend::start("b1", Behavior::RecordThenReply);
    let portico = Portico::start(&one_listener(&[&b], "round_robin", &splice_setting(splice)));
    let mut s = connect(portico.addr("l"));
    let data = pattern(3 * BULK, 2);
    s.write_all(&data).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_line(&mut s), format!("b1 got {} bytes", data.len()));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert!(b.received()[0] == data, "the backend got altered bytes");
}

#[test]
fn bulk_then_half_close_splice_on() {
    bulk_then_half_close(true);
}

#[test]
fn bulk_then_half_close_splice_off() {
    bulk_then_half_close(false);
}

/// A connection that moved bulk (so splices, with splice on) and then goes quiet is closed
/// after `idle_timeout`, not before.
fn idle_after_bulk(splice: bool) {
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let extra = format!("idle_timeout = \"400ms\"\n{}", splice_setting(splice));
    let portico = Portico::start(&one_listener(&[&b], "round_robin", &extra));
    let mut s = connect(portico.addr("l"));
    assert_eq!(read_line(&mut s), "b");
    let data = pattern(BULK, 3);
    let mut writer = s.try_clone().unwrap();
    let to_send = data.clone();
    let t = std::thread::spawn(move || writer.write_all(&to_send).unwrap());
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got).unwrap();
    t.join().unwrap();
    assert!(got == data, "the echo came back altered");
    let quiet_from = Instant::now();
    let mut buf = [0u8; 8];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "expected the idle connection to be closed");
    let quiet = quiet_from.elapsed();
    assert!(
        quiet >= Duration::from_millis(350),
        "closed after {quiet:?}"
    );
}

#[test]
fn idle_after_bulk_splice_on() {
    idle_after_bulk(true);
}

#[test]
fn idle_after_bulk_splice_off() {
    idle_after_bulk(false);
}

/// A PROXY header from the client, then bulk: the backend gets Portico's own v1 header, then
/// exactly the client's bytes (those that came with the client's header included).
fn proxy_header_then_bulk(splice: bool) {
    let b = TestBackend::start("b", Behavior::RecordThenReply);
    let extra = format!(
        "accept_proxy_protocol = true\nproxy_protocol = \"v1\"\n{}",
        splice_setting(splice)
    );
    let portico = Portico::start(&one_listener(&[&b], "round_robin", &extra));
    let mut s = connect(portico.addr("l"));
    let data = pattern(2 * BULK, 4);
    let mut first = b"PROXY TCP4 192.0.2.10 198.51.100.1 4567 443\r\n".to_vec();
    first.extend_from_slice(&data[..1000]);
    s.write_all(&first).unwrap();
    s.write_all(&data[1000..]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let header = b"PROXY TCP4 192.0.2.10 198.51.100.1 4567 443\r\n";
    let total = header.len() + data.len();
    assert_eq!(read_line(&mut s), format!("b got {total} bytes"));
    let got = &b.received()[0];
    assert_eq!(&got[..header.len()], header);
    assert!(got[header.len()..] == data[..], "the payload was altered");
}

#[test]
fn proxy_header_then_bulk_splice_on() {
    proxy_header_then_bulk(true);
}

#[test]
fn proxy_header_then_bulk_splice_off() {
    proxy_header_then_bulk(false);
}
