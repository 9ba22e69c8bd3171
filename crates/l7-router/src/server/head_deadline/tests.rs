//! The header deadline on an in-memory stream with tokio's clock paused: exact times, no sleeps.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

use super::{HeadClock, HeadDeadline};
use crate::proxy::ConnInfo;
use crate::server::HttpListenerShared;
use crate::{ConfigSource, HttpListenerConfig};

const TIMEOUT: Duration = Duration::from_secs(10);

struct NoConfig;

impl ConfigSource for NoConfig {
    fn http_listener(&self, _name: &str) -> Option<Arc<HttpListenerConfig>> {
        None
    }
}

/// A client stream and the server side of it behind a header deadline.
fn connection() -> (DuplexStream, HeadDeadline<DuplexStream>, Arc<ConnInfo>) {
    let (client, server) = tokio::io::duplex(1024);
    let conn = Arc::new(ConnInfo::new(
        "192.0.2.1:1000".parse().unwrap(),
        false,
        HttpListenerShared::new("test", 8),
        Arc::new(NoConfig),
    ));
    let server = HeadDeadline::new(server, Arc::clone(&conn), TIMEOUT);
    (client, server, conn)
}

/// Reads until the stream fails; returns when it failed.
async fn fails_at(server: &mut HeadDeadline<DuplexStream>) -> Instant {
    let mut buf = [0u8; 64];
    loop {
        match server.read(&mut buf).await {
            Ok(0) => panic!("the client closed"),
            Ok(_) => {}
            Err(err) => {
                assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
                return Instant::now();
            }
        }
    }
}

/// Whether a read is still waiting after `wait` (nothing failed).
async fn still_waiting(server: &mut HeadDeadline<DuplexStream>, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(wait, server.read(&mut buf))
        .await
        .is_err()
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_fails_after_the_timeout() {
    let (_client, mut server, _conn) = connection();
    let start = Instant::now();
    assert_eq!(fails_at(&mut server).await - start, TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_head_that_never_ends_fails_a_timeout_after_the_connection_began() {
    let (mut client, mut server, _conn) = connection();
    let start = Instant::now();
    tokio::time::sleep(TIMEOUT / 2).await;
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    assert_eq!(fails_at(&mut server).await - start, TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn no_deadline_while_a_request_is_served_and_a_new_one_after_it() {
    let (_client, mut server, conn) = connection();
    conn.clock.request_started();
    assert!(still_waiting(&mut server, TIMEOUT * 3).await);
    let finished = Instant::now();
    conn.clock.request_finished(finished);
    assert!(still_waiting(&mut server, TIMEOUT - Duration::from_secs(1)).await);
    assert_eq!(fails_at(&mut server).await - finished, TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn an_http2_connection_has_no_head_deadline() {
    let (mut client, mut server, conn) = connection();
    // The preface may come in pieces.
    client.write_all(b"PR").await.unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(server.read(&mut buf).await.unwrap(), 2);
    client
        .write_all(b"I * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    assert!(server.read(&mut buf).await.unwrap() > 0);
    assert!(still_waiting(&mut server, TIMEOUT * 3).await);
    // Its requests do not turn the clock back on.
    conn.clock.request_started();
    conn.clock.request_finished(Instant::now());
    assert!(still_waiting(&mut server, TIMEOUT * 3).await);
}

#[tokio::test(start_paused = true)]
async fn a_preface_cut_short_keeps_the_deadline() {
    let (mut client, mut server, conn) = connection();
    let start = Instant::now();
    client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(server.read(&mut buf).await.unwrap(), 16);
    assert!(
        conn.clock.is_fresh(),
        "not HTTP/2 until the whole preface is there"
    );
    assert_eq!(fails_at(&mut server).await - start, TIMEOUT);
}

#[test]
fn a_clock_is_fresh_only_until_its_first_request_or_until_it_is_turned_off() {
    let clock = HeadClock::new();
    assert!(clock.is_fresh());
    clock.request_started();
    assert!(!clock.is_fresh());
    // Finished at the very start (a paused clock): still not fresh.
    clock.request_finished(clock.base);
    assert!(!clock.is_fresh());
    let clock = HeadClock::new();
    clock.turn_off();
    assert!(!clock.is_fresh());
}

#[tokio::test(start_paused = true)]
async fn an_http1_connection_starting_like_the_preface_keeps_its_deadline() {
    let (mut client, mut server, _conn) = connection();
    let start = Instant::now();
    client.write_all(b"PRINT / HTTP/1.1\r\n").await.unwrap();
    assert_eq!(fails_at(&mut server).await - start, TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn an_upgraded_connection_has_no_head_deadline() {
    let (_client, mut server, conn) = connection();
    conn.clock.request_started();
    conn.clock.turn_off();
    conn.clock.request_finished(Instant::now());
    assert!(still_waiting(&mut server, TIMEOUT * 3).await);
}
