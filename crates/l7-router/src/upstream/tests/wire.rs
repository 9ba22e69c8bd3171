//! The HTTP/1.1 client on the wire, through a whole listener: scripted raw TCP backends write
//! exact bytes (split mid-line, interim answers, conflicting or broken framing, early answers,
//! closes at the worst moment), and raw TCP clients see exactly what the proxy answers. Each
//! backend logs every request with the connection that carried it, so reuse is asserted per
//! request, not guessed from counters.

mod harness;

use tokio::io::AsyncWriteExt;

use super::WAIT;
use harness::{BackendConn, Client, Scripted, Seen, find, read_response};

/// A plain keep-alive answer.
const OK_HELLO: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

/// Every request answered `OK_HELLO`, keep-alive.
async fn answer_hello(mut conn: BackendConn) {
    while conn.request().await.is_some() {
        conn.send(&[OK_HELLO]).await;
    }
}

/// Answers every request with "hello, chunked world!" in chunks, split across writes in the
/// middle of a chunk-size line (with an extension), of the data and of the CRLFs; with a
/// trailer section if `trailer`.
async fn answer_chunked_in_pieces(mut conn: BackendConn, trailer: bool) {
    let end: &[u8] = if trailer {
        b"x-sum: abc\r\n\r\n"
    } else {
        b"\r\n"
    };
    while conn.request().await.is_some() {
        conn.send(&[
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n",
            b"5;name=\"va",
            b"lue\"\r",
            b"\nhel",
            b"lo\r",
            b"\n1",
            b"0\r\n, chunked",
            b" world!",
            b"\r",
            b"\n0\r\n",
            end,
        ])
        .await;
    }
}

#[tokio::test]
async fn a_chunked_response_split_mid_line_arrives_whole() {
    let backend = Scripted::start(|conn| answer_chunked_in_pieces(conn, true)).await;
    let addr = backend.behind_listener().await;
    let mut client = Client::connect(addr).await;
    for _ in 0..2 {
        let response = client.get("/").await;
        assert_eq!(response.status, 200, "{}", response.head);
        assert_eq!(response.body, b"hello, chunked world!");
    }
    assert!(client.buf.is_empty(), "{:?}", client.buf);
}

#[tokio::test]
async fn a_chunked_response_read_to_its_end_gives_its_connection_back() {
    let backend = Scripted::start(|conn| answer_chunked_in_pieces(conn, false)).await;
    let addr = backend.behind_listener().await;
    let mut client = Client::connect(addr).await;
    for _ in 0..2 {
        let response = client.get("/").await;
        assert_eq!(response.body, b"hello, chunked world!");
    }
    assert_eq!(backend.conns_used(), [1, 1]);
}

#[tokio::test]
async fn a_chunked_response_with_trailers_gives_its_connection_back() {
    let backend = Scripted::start(|conn| answer_chunked_in_pieces(conn, true)).await;
    let addr = backend.behind_listener().await;
    let mut client = Client::connect(addr).await;
    for _ in 0..2 {
        let response = client.get("/").await;
        assert_eq!(response.body, b"hello, chunked world!");
    }
    // hyper's server drops a body right after its trailers frame without polling it again:
    // the connection must go home when the trailers are handed out (it was [1, 2] before).
    assert_eq!(backend.conns_used(), [1, 1]);
}

#[tokio::test]
async fn a_close_delimited_response_arrives_whole_and_its_connection_is_not_reused() {
    let backend = Scripted::start(|mut conn| async move {
        if conn.request().await.is_some() {
            conn.send(&[
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n",
                b"until ",
                b"the backend ",
                b"closes",
            ])
            .await;
        }
    })
    .await;
    let addr = backend.behind_listener().await;
    let mut client = Client::connect(addr).await;
    for _ in 0..2 {
        let response = client.get("/").await;
        assert_eq!(response.status, 200, "{}", response.head);
        assert_eq!(response.body, b"until the backend closes");
    }
    assert_eq!(backend.conns_used(), [1, 2]);
}

#[tokio::test]
async fn a_head_response_with_a_content_length_has_no_body_and_keeps_the_connection() {
    let backend = Scripted::start(|mut conn| async move {
        while let Some(request) = conn.request().await {
            if request.request_line().starts_with("HEAD ") {
                conn.send(&[b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"])
                    .await;
            } else {
                conn.send(&[OK_HELLO]).await;
            }
        }
    })
    .await;
    let addr = backend.behind_listener().await;
    let mut client = Client::connect(addr).await;
    client
        .send(b"HEAD / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await;
    let response = client.response(true).await.expect("a HEAD response");
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(response.header("content-length").as_deref(), Some("1000"));
    // The GET on the same client connection reads "hello" right after the HEAD's head: had
    // the proxy sent (or waited for) a body, it would show here.
    let response = client.get("/").await;
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(response.body, b"hello");
    assert!(client.buf.is_empty(), "{:?}", client.buf);
    assert_eq!(backend.conns_used(), [1, 1]);
    assert_eq!(backend.connections(), 1);
}

#[tokio::test]
async fn no_content_and_not_modified_have_no_body_and_keep_the_connection() {
    let backend = Scripted::start(|mut conn| async move {
        while let Some(request) = conn.request().await {
            let answer: &[u8] = match request.request_line() {
                l if l.starts_with("GET /204 ") => b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n",
                l if l.starts_with("GET /304 ") => {
                    b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n"
                }
                _ => OK_HELLO,
            };
            conn.send(&[answer]).await;
        }
    })
    .await;
    let addr = backend.behind_listener().await;
    let mut client = Client::connect(addr).await;
    let response = client.get("/204").await;
    assert_eq!(response.status, 204, "{}", response.head);
    let response = client.get("/304").await;
    assert_eq!(response.status, 304, "{}", response.head);
    assert_eq!(response.header("etag").as_deref(), Some("\"v1\""));
    let response = client.get("/").await;
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(response.body, b"hello");
    assert!(client.buf.is_empty(), "{:?}", client.buf);
    assert_eq!(backend.conns_used(), [1, 1, 1]);
}

#[tokio::test]
async fn interim_responses_before_the_final_one_are_skipped() {
    let backend = Scripted::start(|mut conn| async move {
        while conn.request().await.is_some() {
            conn.send(&[
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 2",
                b"00 OK\r\ncontent-length: 5\r\n\r\nhello",
            ])
            .await;
        }
    })
    .await;
    let addr = backend.behind_listener().await;
    let mut client = Client::connect(addr).await;
    for _ in 0..2 {
        let response = client.get("/").await;
        assert_eq!(response.status, 200, "{}", response.head);
        assert_eq!(response.body, b"hello");
    }
    assert!(client.buf.is_empty(), "{:?}", client.buf);
    assert_eq!(backend.conns_used(), [1, 1]);
}

#[tokio::test]
async fn chunked_with_a_content_length_is_read_chunked_and_the_connection_dropped() {
    let backend = Scripted::start(|mut conn| async move {
        while conn.request().await.is_some() {
            conn.send(&[
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ])
            .await;
        }
    })
    .await;
    let addr = backend.behind_listener().await;
    let mut client = Client::connect(addr).await;
    for _ in 0..2 {
        let response = client.get("/").await;
        assert_eq!(response.status, 200, "{}", response.head);
        assert_eq!(response.body, b"hello");
        assert_ne!(response.header("content-length").as_deref(), Some("3"));
    }
    // The backend's framing was ambiguous: its connection is not trusted again.
    assert_eq!(backend.conns_used(), [1, 2]);
}

#[tokio::test]
async fn invalid_responses_get_a_502_and_the_listener_keeps_serving() {
    let backend = Scripted::start(|mut conn| async move {
        let Some(request) = conn.request().await else {
            return;
        };
        let path = request.request_line().split(' ').nth(1).unwrap_or_default();
        match path {
            "/garbage" => {
                conn.send(&[b"HTTP/1.1 OK 200\r\ncontent-length: 2\r\n\r\nhi"])
                    .await
            }
            "/two-lengths" => {
                conn.send(&[
                    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
                ])
                .await;
            }
            "/unasked-upgrade" => {
                conn.send(&[
                    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
                ])
                .await;
            }
            "/huge-head" => {
                let filler = format!("x-filler: {}\r\n", "a".repeat(9000));
                let head = format!("HTTP/1.1 200 OK\r\n{}\r\n", filler.repeat(8));
                conn.send(&[head.as_bytes(), OK_HELLO]).await;
            }
            "/cut" => {
                conn.send(&[
                    b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
                    b"0123456789",
                ])
                .await;
                // Dropped here: the connection closes 90 bytes short.
                return;
            }
            _ => {
                conn.send(&[OK_HELLO]).await;
            }
        }
        // Kept open: the 502 comes from the bytes, not from a close.
        conn.until_closed().await;
    })
    .await;
    let addr = backend.behind_listener().await;
    for path in ["/garbage", "/two-lengths", "/unasked-upgrade", "/huge-head"] {
        let mut client = Client::connect(addr).await;
        let response = client.get(path).await;
        assert_eq!(response.status, 502, "{path}: {}", response.head);
    }
    let mut client = Client::connect(addr).await;
    client
        .send(b"GET /cut HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await;
    match client.response(false).await {
        Ok(response) => panic!(
            "a response cut by the backend arrived whole: {} {:?}",
            response.head, response.body
        ),
        Err(cut) => {
            let text = String::from_utf8_lossy(&cut.received).into_owned();
            assert_eq!(cut.how, "closed", "{text}");
            // At most the 10 bytes the backend sent, never the 100 announced.
            let body =
                find(&cut.received, b"\r\n\r\n").map_or(0, |end| cut.received.len() - end - 4);
            assert!(body < 100, "{text}");
        }
    }
    let mut client = Client::connect(addr).await;
    let response = client.get("/ok").await;
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(response.body, b"hello");
    // Nothing was sent twice.
    assert_eq!(backend.seen().len(), 6);
}

#[tokio::test]
async fn an_early_answer_to_a_large_upload_reaches_the_client() {
    const ANNOUNCED: usize = 8 * 1024 * 1024;
    const PIECE: usize = 64 * 1024;
    let backend = Scripted::start(|mut conn| async move {
        if conn.request_head().await.is_some() {
            conn.send(&[
                b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntoo large",
            ])
            .await;
        }
        // Dropped with the upload unread.
    })
    .await;
    let addr = backend.behind_listener().await;
    let client = Client::connect(addr).await;
    let Client {
        mut stream,
        mut buf,
    } = client;
    let (mut reader, mut writer) = stream.split();
    let uploading = async {
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: app.test\r\ncontent-length: {ANNOUNCED}\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).await.unwrap();
        let piece = vec![b'x'; PIECE];
        for _ in 0..ANNOUNCED / PIECE {
            if writer.write_all(&piece).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let response = tokio::select! {
        response = read_response(&mut reader, &mut buf, false) => response,
        () = uploading => unreachable!(),
    };
    let response = response.expect("the backend's answer");
    assert_eq!(response.status, 413, "{}", response.head);
    assert_eq!(response.body, b"too large");
    assert_eq!(backend.seen().len(), 1);
}

#[tokio::test]
async fn a_get_the_backend_drops_on_a_reused_connection_is_retried_on_a_fresh_one() {
    // First request of a connection answered; the second read, then the connection closed
    // without an answer (a keep-alive timeout firing as the request arrives).
    let backend = Scripted::start(|mut conn| async move {
        if conn.request().await.is_some() {
            conn.send(&[OK_HELLO]).await;
        }
        let _ = conn.request().await;
    })
    .await;
    let addr = backend.behind_listener().await;
    let mut client = Client::connect(addr).await;
    for _ in 0..2 {
        let response = client.get("/").await;
        assert_eq!(response.status, 200, "{}", response.head);
        assert_eq!(response.body, b"hello");
    }
    assert_eq!(backend.conns_used(), [1, 1, 2]);
    assert_eq!(backend.connections(), 2);
}

#[tokio::test]
async fn a_post_the_backend_drops_on_a_reused_connection_is_not_sent_again() {
    let backend = Scripted::start(|mut conn| async move {
        if conn.request().await.is_some() {
            conn.send(&[OK_HELLO]).await;
        }
        let _ = conn.request().await;
    })
    .await;
    let addr = backend.behind_listener().await;
    let mut client = Client::connect(addr).await;
    assert_eq!(client.get("/").await.body, b"hello");
    client
        .send(b"POST /form HTTP/1.1\r\nHost: app.test\r\ncontent-length: 5\r\n\r\nhello")
        .await;
    let response = client.response(false).await.expect("a response");
    assert_eq!(response.status, 502, "{}", response.head);
    // A later request goes out on a new connection; the POST never went out again.
    let mut client = Client::connect(addr).await;
    assert_eq!(client.get("/").await.body, b"hello");
    let seen = backend.seen();
    let lines: Vec<(usize, &str)> = seen.iter().map(|s| (s.conn, s.request_line())).collect();
    assert_eq!(
        lines,
        [
            (1, "GET / HTTP/1.1"),
            (1, "POST /form HTTP/1.1"),
            (2, "GET / HTTP/1.1")
        ]
    );
    assert_eq!(seen[1].body, b"hello");
}

#[tokio::test]
async fn request_bodies_reach_the_backend_with_their_framing() {
    let backend = Scripted::start(answer_hello).await;
    let addr = backend.behind_listener().await;
    let mut client = Client::connect(addr).await;
    let requests: [&[u8]; 4] = [
        b"POST /sized HTTP/1.1\r\nHost: app.test\r\ncontent-length: 11\r\n\r\nhello world",
        b"POST /chunked HTTP/1.1\r\nHost: app.test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n8;x=y\r\n chunked\r\n0\r\n\r\n",
        b"GET /plain HTTP/1.1\r\nHost: app.test\r\n\r\n",
        b"POST /empty HTTP/1.1\r\nHost: app.test\r\ncontent-length: 0\r\n\r\n",
    ];
    for request in requests {
        client.send(request).await;
        let response = client.response(false).await.expect("a response");
        assert_eq!(response.status, 200, "{}", response.head);
        assert_eq!(response.body, b"hello");
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 4);
    let framing = |s: &Seen| (s.header("content-length"), s.header("transfer-encoding"));

    assert_eq!(seen[0].request_line(), "POST /sized HTTP/1.1");
    assert_eq!(
        framing(&seen[0]),
        (Some("11".to_owned()), None),
        "{}",
        seen[0].head
    );
    assert_eq!(seen[0].body, b"hello world");

    assert_eq!(seen[1].request_line(), "POST /chunked HTTP/1.1");
    assert_eq!(
        framing(&seen[1]),
        (None, Some("chunked".to_owned())),
        "{}",
        seen[1].head
    );
    assert_eq!(seen[1].body, b"hello chunked");

    assert_eq!(seen[2].request_line(), "GET /plain HTTP/1.1");
    assert_eq!(framing(&seen[2]), (None, None), "{}", seen[2].head);

    assert_eq!(seen[3].request_line(), "POST /empty HTTP/1.1");
    assert_eq!(
        framing(&seen[3]),
        (Some("0".to_owned()), None),
        "{}",
        seen[3].head
    );
    assert!(seen[3].body.is_empty());

    assert_eq!(backend.conns_used(), [1, 1, 1, 1]);
}

#[tokio::test]
async fn bytes_past_a_response_are_not_taken_for_the_next_one() {
    let backend = Scripted::start(|mut conn| async move {
        while conn.request().await.is_some() {
            // A second, unasked-for response in the same write.
            conn.send(&[b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil"])
                .await;
        }
    })
    .await;
    let addr = backend.behind_listener().await;
    let mut client = Client::connect(addr).await;
    for _ in 0..2 {
        let response = client.get("/").await;
        assert_eq!(response.status, 200, "{}", response.head);
        assert_eq!(response.body, b"hello");
    }
    assert!(client.buf.is_empty(), "{:?}", client.buf);
    assert_eq!(backend.conns_used(), [1, 2]);
}

#[tokio::test]
async fn bytes_on_an_idle_connection_keep_it_out_of_use() {
    let (stray_tx, mut stray_rx) = tokio::sync::mpsc::unbounded_channel();
    let backend = Scripted::start(move |mut conn| {
        let stray_tx = stray_tx.clone();
        async move {
            if conn.request().await.is_some() {
                conn.send(&[OK_HELLO]).await;
                // After the answer, unasked for, while the connection sits in the pool.
                conn.send(&[b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil"])
                    .await;
                let _ = stray_tx.send(conn.conn);
            }
            conn.until_closed().await;
        }
    })
    .await;
    let addr = backend.behind_listener().await;
    let mut client = Client::connect(addr).await;
    assert_eq!(client.get("/").await.body, b"hello");
    let stray = tokio::time::timeout(WAIT, stray_rx.recv()).await;
    assert_eq!(stray.expect("stray bytes sent in time"), Some(1));
    let response = client.get("/").await;
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(response.body, b"hello");
    assert_eq!(backend.conns_used(), [1, 2]);
}
