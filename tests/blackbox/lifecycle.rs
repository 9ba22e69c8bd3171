//! Reload (SIGHUP) and shutdown (SIGTERM/SIGINT) of the real binary.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::harness::backend::{Behavior, TestBackend};
use crate::harness::{
    Portico, assert_echo, connect, is_not_served, is_refused, read_line, who_answers,
};
use crate::l4::one_listener;

#[test]
fn sighup_applies_a_valid_change_without_breaking_open_connections() {
    let old = TestBackend::start("old", Behavior::GreetEcho);
    let new = TestBackend::start("new", Behavior::GreetEcho);
    let mut portico = Portico::start(&one_listener(&[&old], "round_robin", ""));
    let addr = portico.addr("l");
    let mut open = connect(addr);
    assert_eq!(read_line(&mut open), "old");

    let outcome = portico.reload(&one_listener(&[&new], "round_robin", ""));
    assert!(outcome.contains("reload applied"), "{outcome}");
    assert!(
        outcome.contains("pools ~p"),
        "the one-line diff names the change: {outcome}"
    );

    // Same address, same socket: the listener was kept.
    assert_eq!(portico.addr("l"), addr);
    for _ in 0..3 {
        assert_eq!(who_answers(addr), "new");
    }
    // The connection opened before the reload still works end to end.
    assert_echo(&mut open, b"after reload");
}

#[test]
fn sighup_with_a_broken_file_keeps_serving() {
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let good = one_listener(&[&b], "round_robin", "");
    let mut portico = Portico::start(&good);
    let addr = portico.addr("l");
    let mut open = connect(addr);
    assert_eq!(read_line(&mut open), "b");

    for broken in [
        "this is [not toml".to_owned(),
        good.replace("pool = \"p\"", "pool = \"nope\""),
        good.replace("round_robin", "fastest"),
    ] {
        let outcome = portico.reload(&broken);
        assert!(outcome.contains("reload failed"), "{outcome}");
        assert!(portico.is_running());
        assert_eq!(who_answers(addr), "b");
        assert_echo(&mut open, b"still here");
    }
    let outcome = portico.reload(&good.replace("round_robin", "least_conn"));
    assert!(outcome.contains("reload applied"), "{outcome}");
}

#[test]
fn reload_adds_removes_and_renames_listeners() {
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let config = |listeners: &str| format!("[pools.p]\nservers = [\"{}\"]\n{listeners}", b.addr);
    let mut portico = Portico::start(&config(
        "[listeners.one]\nbind = \"127.0.0.1:0\"\npool = \"p\"\n[listeners.two]\nbind = \"127.0.0.1:0\"\npool = \"p\"\n",
    ));
    let one = portico.addr("one");
    let two = portico.addr("two");
    let mut open_on_two = connect(two);
    assert_eq!(read_line(&mut open_on_two), "b");

    // Remove "two", add "three", and rename "one" to "first" on the same address.
    let outcome = portico.reload(&config(&format!(
        "[listeners.first]\nbind = \"{one}\"\npool = \"p\"\n[listeners.three]\nbind = \"127.0.0.1:0\"\npool = \"p\"\n"
    )));
    assert!(outcome.contains("reload applied"), "{outcome}");
    assert_eq!(who_answers(portico.addr("three")), "b");
    assert_eq!(
        who_answers(one),
        "b",
        "the renamed listener keeps serving its address"
    );
    assert!(is_refused(two), "a removed listener stops accepting");
    // ...and its open connection finishes normally.
    assert_echo(&mut open_on_two, b"draining");
}

#[test]
fn reload_that_cannot_bind_changes_nothing() {
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let mut portico = Portico::start(&one_listener(&[&b], "round_robin", ""));
    let addr = portico.addr("l");
    let outcome = portico.reload(&format!(
        "{}\n[listeners.extra]\nbind = \"{taken_addr}\"\npool = \"p\"\n",
        one_listener(&[&b], "least_conn", "")
    ));
    assert!(outcome.contains("reload failed"), "{outcome}");
    assert!(outcome.contains("cannot bind"), "{outcome}");
    assert_eq!(who_answers(addr), "b");
}

#[test]
fn sigterm_drains_open_connections_then_exits_zero() {
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let mut portico = Portico::start(&one_listener(&[&b], "round_robin", ""));
    let addr = portico.addr("l");
    let mut open = connect(addr);
    assert_eq!(read_line(&mut open), "b");

    portico.signal("TERM");
    assert!(
        portico
            .wait_for_log(|l| l.contains("stopped accepting"), Duration::from_secs(10))
            .is_some()
    );
    assert!(is_not_served(addr), "no new connections during the drain");
    assert_eq!(b.accepted(), 1, "no new connection reached the backend");
    assert!(portico.is_running(), "it waits for the open connection");
    assert_echo(&mut open, b"finishing my work");
    drop(open);
    let status = portico.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(portico.log_text().contains("all connections finished"));
}

#[test]
fn sigterm_cuts_connections_after_the_grace_period() {
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let config = one_listener(&[&b], "round_robin", "")
        .replace("shutdown_grace = \"5s\"", "shutdown_grace = \"500ms\"");
    let mut portico = Portico::start(&config);
    let mut open = connect(portico.addr("l"));
    assert_eq!(read_line(&mut open), "b");
    let started = Instant::now();
    portico.signal("TERM");
    let status = portico.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "exited before the grace period"
    );
    assert!(portico.log_text().contains("shutdown grace expired"));
    let mut buf = [0u8; 4];
    assert!(
        matches!(open.read(&mut buf), Ok(0) | Err(_)),
        "the connection was closed"
    );
}

#[test]
fn sigint_also_exits_cleanly() {
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let mut portico = Portico::start(&one_listener(&[&b], "round_robin", ""));
    portico.signal("INT");
    assert_eq!(portico.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn a_second_instance_on_the_same_address_fails_to_start() {
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let first = Portico::start(&one_listener(&[&b], "round_robin", ""));
    let taken = first.addr("l");
    let config = one_listener(&[&b], "round_robin", "").replace("127.0.0.1:0", &taken.to_string());
    let err = Portico::try_start(&config)
        .err()
        .expect("second instance must fail");
    assert!(err.contains("cannot bind"), "{err}");
}

#[test]
fn shutdown_delay_keeps_accepting_while_readyz_says_503() {
    use crate::harness::http::http;
    let b = TestBackend::start("b", Behavior::GreetEcho);
    let config = crate::l4::one_listener(&[&b], "round_robin", "").replace(
        "shutdown_grace = \"5s\"",
        "shutdown_grace = \"5s\"\nshutdown_delay = \"30s\"",
    );
    let mut portico = Portico::start(&config);
    let (addr, admin) = (portico.addr("l"), portico.admin_addr());
    assert_eq!(http(admin, "GET", "/readyz", &[], None).status, 200);

    portico.signal("TERM");
    assert!(
        portico
            .wait_for_log(
                |l| l.contains("still accepting until the delay is over"),
                Duration::from_secs(20)
            )
            .is_some(),
        "{}",
        portico.log_text()
    );
    // Out of rotation for health checkers, still serving clients.
    assert_eq!(http(admin, "GET", "/readyz", &[], None).status, 503);
    assert_eq!(who_answers(addr), "b");
    assert_eq!(who_answers(addr), "b");

    // A second signal ends the delay: it stops accepting and exits 0.
    portico.signal("TERM");
    assert!(portico.wait_exit(Duration::from_secs(20)).success());
    assert!(is_refused(addr));
}
