//! L4 TCP forwarding through the real binary: bytes, half-close, balancing, retries, PROXY
//! protocol, limits and timeouts.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::time::Duration;

use crate::harness::backend::{Behavior, TestBackend};
use crate::harness::{Portico, assert_echo, connect, connect_from, read_line, who_answers};

/// `["127.0.0.1:1", ...]` for a pool's `servers`.
pub fn servers(backends: &[&TestBackend]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!("[{}]", list.join(", "))
}

/// A config with one pool `p` of `backends` and one tcp listener `l` in front of it.
pub fn one_listener(backends: &[&TestBackend], balance: &str, listener_extra: &str) -> String {
    format!(
        r#"
[runtime]
shutdown_grace = "5s"

[pools.p]
servers = {}
balance = "{balance}"

[listeners.l]
bind = "127.0.0.1:0"
pool = "p"
{listener_extra}
"#,
        servers(backends)
    )
}

#[test]
fn bytes_arrive_intact_both_ways_including_10_mib() {
    let b = TestBackend::start("b1", Behavior::Echo);
    let portico = Portico::start(&one_listener(&[&b], "round_robin", ""));
    let mut s = connect(portico.addr("l"));
    assert_echo(&mut s, b"hello through portico");

    // 10 MiB of a non-repeating pattern, written by one thread and read back by this one.
    let data: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
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
}

#[test]
fn half_close_is_forwarded_and_the_other_direction_stays_open() {
    let b = TestBackend::start("b1", Behavior::RecordThenReply);
    let portico = Portico::start(&one_listener(&[&b], "round_robin", ""));
    let mut s = connect(portico.addr("l"));
    s.write_all(b"request body").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    // The backend only answers after it saw EOF: the half-close crossed Portico, and the reply
    // still comes back on the half-open connection.
    assert_eq!(read_line(&mut s), "b1 got 12 bytes");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn round_robin_rotates_exactly() {
    let bs: Vec<TestBackend> = ["a", "b", "c"]
        .iter()
        .map(|n| TestBackend::start(n, Behavior::GreetEcho))
        .collect();
    let refs: Vec<&TestBackend> = bs.iter().collect();
    let portico = Portico::start(&one_listener(&refs, "round_robin", ""));
    let seq: Vec<String> = (0..9).map(|_| who_answers(portico.addr("l"))).collect();
    let first = &seq[..3];
    let mut sorted = first.to_vec();
    sorted.sort();
    assert_eq!(sorted, ["a", "b", "c"], "{seq:?}");
    for (i, name) in seq.iter().enumerate() {
        assert_eq!(name, &first[i % 3], "not an exact rotation: {seq:?}");
    }
}

#[test]
fn weighted_round_robin_keeps_proportions() {
    let heavy = TestBackend::start("heavy", Behavior::GreetEcho);
    let light = TestBackend::start("light", Behavior::GreetEcho);
    let config = format!(
        r#"
[pools.p]
servers = [{{ address = "{}", weight = 3 }}, "{}"]

[listeners.l]
bind = "127.0.0.1:0"
pool = "p"
"#,
        heavy.addr, light.addr
    );
    let portico = Portico::start(&config);
    let names: Vec<String> = (0..40).map(|_| who_answers(portico.addr("l"))).collect();
    let heavy_n = names.iter().filter(|n| *n == "heavy").count();
    assert_eq!(heavy_n, 30, "3:1 over 40 connections: {names:?}");
}

/// Opens `n` connections one after another and keeps them all open, asserting that each new
/// one went to a backend that had the fewest open connections at that moment (the property of
/// least_conn, and of p2c when the pool has two backends). Open connections make it exact.
fn assert_each_pick_is_least_loaded(balance: &str, n: usize) {
    let names = ["a", "b", "c"];
    let backends: Vec<TestBackend> = names
        .iter()
        .map(|n| TestBackend::start(n, Behavior::GreetEcho))
        .collect();
    let count = if balance == "p2c" { 2 } else { 3 };
    let refs: Vec<&TestBackend> = backends.iter().take(count).collect();
    let portico = Portico::start(&one_listener(&refs, balance, ""));
    let mut open = std::collections::HashMap::<String, usize>::new();
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = connect(portico.addr("l"));
        let name = read_line(&mut s);
        let mine = open.get(&name).copied().unwrap_or(0);
        let least = refs
            .iter()
            .map(|b| open.get(&b.name).copied().unwrap_or(0))
            .min()
            .unwrap();
        assert_eq!(
            mine, least,
            "{balance} picked {name} with {mine} open while another had {least}: {open:?}"
        );
        *open.entry(name).or_default() += 1;
        held.push(s);
    }
    for s in &mut held {
        assert_echo(s, b"all still open");
    }
}

#[test]
fn least_conn_prefers_the_idle_backend() {
    assert_each_pick_is_least_loaded("least_conn", 9);
}

#[test]
fn p2c_prefers_the_idle_backend_of_two() {
    assert_each_pick_is_least_loaded("p2c", 8);
}

#[test]
fn random_reaches_every_backend() {
    let bs: Vec<TestBackend> = ["a", "b", "c"]
        .iter()
        .map(|n| TestBackend::start(n, Behavior::GreetEcho))
        .collect();
    let refs: Vec<&TestBackend> = bs.iter().collect();
    let portico = Portico::start(&one_listener(&refs, "random", ""));
    for _ in 0..60 {
        who_answers(portico.addr("l"));
    }
    // 60 uniform picks over 3: the chance that one backend gets none is 3 * (2/3)^60 < 1e-10.
    for b in &bs {
        assert!(b.accepted() > 0, "{} got nothing", b.name);
    }
}

#[test]
fn maglev_sends_one_client_to_one_backend() {
    let bs: Vec<TestBackend> = (0..5)
        .map(|i| TestBackend::start(&format!("n{i}"), Behavior::GreetEcho))
        .collect();
    let refs: Vec<&TestBackend> = bs.iter().collect();
    let portico = Portico::start(&one_listener(&refs, "maglev", ""));
    let mut seen = std::collections::HashSet::new();
    for client in 1..=20u8 {
        let ip: IpAddr = format!("127.0.9.{client}").parse().unwrap();
        let first = read_line(&mut connect_from(ip, portico.addr("l")));
        for _ in 0..3 {
            assert_eq!(
                read_line(&mut connect_from(ip, portico.addr("l"))),
                first,
                "client {ip} moved"
            );
        }
        seen.insert(first);
    }
    assert!(
        seen.len() >= 3,
        "20 clients should spread over 5 backends: {seen:?}"
    );
}

/// Removing 1 of 10 backends moves only the clients that were on it, plus a few (Maglev's
/// promise); measured on the real binary with 1,000 distinct client addresses.
#[test]
fn maglev_removing_one_of_ten_backends_remaps_few_clients() {
    let bs: Vec<TestBackend> = (0..10)
        .map(|i| TestBackend::start(&format!("n{i}"), Behavior::GreetEcho))
        .collect();
    let refs: Vec<&TestBackend> = bs.iter().collect();
    let mut portico = Portico::start(&one_listener(&refs, "maglev", ""));
    let clients: Vec<IpAddr> = (0..1000u32)
        .map(|i| IpAddr::from([127, 10, (i / 250) as u8, (i % 250 + 1) as u8]))
        .collect();
    let before: Vec<String> = clients
        .iter()
        .map(|ip| read_line(&mut connect_from(*ip, portico.addr("l"))))
        .collect();

    let outcome = portico.reload(&one_listener(&refs[1..], "maglev", ""));
    assert!(outcome.contains("reload applied"), "{outcome}");
    let after: Vec<String> = clients
        .iter()
        .map(|ip| read_line(&mut connect_from(*ip, portico.addr("l"))))
        .collect();

    let on_removed = before.iter().filter(|n| *n == "n0").count();
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    assert!(after.iter().all(|n| n != "n0"));
    assert!(moved >= on_removed);
    assert!(
        moved <= 150,
        "{moved} of 1000 clients moved ({on_removed} were on the removed backend)"
    );
}

#[test]
fn a_dead_backend_is_skipped_by_connect_retry() {
    // Closed again at once: connections to it are refused. On an address of its own, so no
    // other test's socket takes the port before the backend comes back on it.
    let dead_addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.4.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let alive = TestBackend::start("alive", Behavior::GreetEcho);
    let config = format!(
        r#"
[pools.p]
servers = ["{dead_addr}", "{}"]
[pools.p.passive]
failures = 2
ejection = "100ms"
max_ejection = "300ms"

[listeners.l]
bind = "127.0.0.1:0"
pool = "p"
"#,
        alive.addr
    );
    let portico = Portico::start(&config);
    for _ in 0..10 {
        assert_eq!(who_answers(portico.addr("l")), "alive");
    }
    assert!(
        portico
            .log_text()
            .contains("backend ejected after connect failures"),
        "passive health ejects the dead backend"
    );
    // The dead backend comes back on its address: once its ejection (at most 300ms) is
    // over, it gets its turns again.
    let back = TestBackend::start_at(dead_addr, "back", Behavior::GreetEcho);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while who_answers(portico.addr("l")) != "back" {
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted backend never got traffic"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(back);
}

#[test]
fn max_connections_closes_the_excess_at_once() {
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let portico = Portico::start(&one_listener(&[&b], "round_robin", "max_connections = 2"));
    let mut c1 = connect(portico.addr("l"));
    let mut c2 = connect(portico.addr("l"));
    assert_eq!(read_line(&mut c1), "b");
    assert_eq!(read_line(&mut c2), "b");
    let mut c3 = connect(portico.addr("l"));
    let mut buf = [0u8; 16];
    // Closed by Portico without reaching a backend: EOF or reset, never a greeting.
    match c3.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!(
            "third connection got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
    assert!(
        portico
            .wait_for_log(
                |l| l.contains("connection limit reached"),
                Duration::from_secs(5)
            )
            .is_some(),
        "no rate-limited warning in the log"
    );
    assert_eq!(b.accepted(), 2);
    drop(c1);
    // A slot frees up once the first connection is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = connect(portico.addr("l"));
        if read_line(&mut c) == "b" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn idle_connections_are_closed() {
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let portico = Portico::start(&one_listener(
        &[&b],
        "round_robin",
        "idle_timeout = \"300ms\"",
    ));
    let mut s = connect(portico.addr("l"));
    assert_eq!(read_line(&mut s), "b");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 8];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "expected the idle connection to be closed");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn ipv6_listener_and_backend() {
    let b = TestBackend::start_on("::1".parse().unwrap(), "v6", Behavior::GreetEcho);
    let config = format!(
        r#"
[pools.p]
servers = ["{}"]

[listeners.l]
bind = "[::1]:0"
pool = "p"
"#,
        b.addr
    );
    let portico = Portico::start(&config);
    let addr = portico.addr("l");
    assert!(addr.is_ipv6());
    let mut s = connect(addr);
    assert_eq!(read_line(&mut s), "v6");
    assert_echo(&mut s, b"over ipv6");
}
