use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};

use super::*;

fn parts(method: Method, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("valid test request").into_parts().0
}

fn head_string(parts: &Parts, framing: RequestFraming) -> String {
    let mut out = b"stale".to_vec();
    encode_request_head(parts, &PassedFields::default(), framing, &mut out);
    String::from_utf8(out).expect("ascii head")
}

// ---- request framing and encoding ----

#[test]
fn framing_rules() {
    let get = parts(Method::GET, "/", &[]);
    assert_eq!(request_framing(&get, true, None), RequestFraming::Empty);
    assert_eq!(request_framing(&get, false, Some(0)), RequestFraming::Empty);
    assert_eq!(
        request_framing(&get, false, Some(7)),
        RequestFraming::Length(7)
    );
    assert_eq!(request_framing(&get, false, None), RequestFraming::Chunked);
    let with_cl = parts(Method::POST, "/", &[("content-length", "5")]);
    assert_eq!(
        request_framing(&with_cl, false, None),
        RequestFraming::Length(5)
    );
    assert_eq!(
        request_framing(&with_cl, false, Some(9)),
        RequestFraming::Length(5)
    );
    assert_eq!(request_framing(&with_cl, true, None), RequestFraming::Empty);
    for n in [0, 9, 10, 1234567890, u64::MAX] {
        let mut out = Vec::new();
        encode_request_head(
            &get,
            &PassedFields::default(),
            RequestFraming::Length(n),
            &mut out,
        );
        assert_eq!(
            out,
            format!("GET / HTTP/1.1\r\ncontent-length: {n}\r\n\r\n").as_bytes()
        );
    }
    let bad_cl = parts(
        Method::POST,
        "/",
        &[("content-length", "5"), ("content-length", "6")],
    );
    assert_eq!(
        request_framing(&bad_cl, false, None),
        RequestFraming::Chunked
    );
}

#[test]
fn get_without_body() {
    let p = parts(
        Method::GET,
        "http://a.example/x",
        &[("host", "a.example"), ("accept", "*/*")],
    );
    assert_eq!(
        head_string(&p, RequestFraming::Empty),
        "GET /x HTTP/1.1\r\nhost: a.example\r\naccept: */*\r\n\r\n"
    );
}

#[test]
fn post_with_content_length() {
    let p = parts(
        Method::POST,
        "/upload",
        &[
            ("host", "a"),
            ("content-length", "5"),
            ("transfer-encoding", "chunked"),
        ],
    );
    assert_eq!(
        head_string(&p, RequestFraming::Length(5)),
        "POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\n"
    );
}

#[test]
fn chunked_request() {
    let p = parts(Method::PUT, "/x", &[("host", "a"), ("content-length", "5")]);
    assert_eq!(
        head_string(&p, RequestFraming::Chunked),
        "PUT /x HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

#[test]
fn empty_bodies() {
    let post = parts(Method::POST, "/", &[]);
    assert_eq!(
        head_string(&post, RequestFraming::Empty),
        "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
    );
    let patch = parts(Method::PATCH, "/", &[]);
    assert_eq!(
        head_string(&patch, RequestFraming::Empty),
        "PATCH / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
    );
    let delete_with_cl = parts(Method::DELETE, "/", &[("content-length", "0")]);
    assert_eq!(
        head_string(&delete_with_cl, RequestFraming::Empty),
        "DELETE / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
    );
    let delete = parts(Method::DELETE, "/", &[]);
    assert_eq!(
        head_string(&delete, RequestFraming::Empty),
        "DELETE / HTTP/1.1\r\n\r\n"
    );
}

#[test]
fn targets() {
    let q = parts(Method::GET, "/search?q=a%20b&x=1", &[]);
    assert_eq!(
        head_string(&q, RequestFraming::Empty),
        "GET /search?q=a%20b&x=1 HTTP/1.1\r\n\r\n"
    );
    let no_path = parts(Method::GET, "http://a.example", &[]);
    assert_eq!(
        head_string(&no_path, RequestFraming::Empty),
        "GET / HTTP/1.1\r\n\r\n"
    );
    let mut authority_only = parts(Method::GET, "/", &[]);
    authority_only.uri = http::Uri::from_static("a.example:443");
    assert_eq!(
        head_string(&authority_only, RequestFraming::Empty),
        "GET / HTTP/1.1\r\n\r\n"
    );
}

#[test]
fn repeated_headers_keep_order() {
    let p = parts(
        Method::GET,
        "/",
        &[("x-a", "1"), ("x-a", "2"), ("x-b", "3")],
    );
    assert_eq!(
        head_string(&p, RequestFraming::Empty),
        "GET / HTTP/1.1\r\nx-a: 1\r\nx-a: 2\r\nx-b: 3\r\n\r\n"
    );
}

#[test]
fn chunk_encoding() {
    let mut out = Vec::new();
    encode_chunk_header(0x1a2b, &mut out);
    encode_chunk_header(1, &mut out);
    encode_chunk_header(0, &mut out);
    assert_eq!(out, b"1a2b\r\n1\r\n0\r\n");
    let mut out = b"x".to_vec();
    encode_last_chunk(None, &mut out);
    assert_eq!(out, b"x0\r\n\r\n");
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.append("x-t", HeaderValue::from_static("a"));
    let mut out = Vec::new();
    encode_last_chunk(Some(&trailers), &mut out);
    assert_eq!(out, b"0\r\ngrpc-status: 0\r\nx-t: a\r\n\r\n");
    let mut out = Vec::new();
    encode_last_chunk(Some(&HeaderMap::new()), &mut out);
    assert_eq!(out, b"0\r\n\r\n");
}

// ---- response heads ----

fn parse(bytes: &[u8], method: &Method) -> (Result<Parsed, ResponseError>, BytesMut) {
    let mut buf = BytesMut::from(bytes);
    let result = parse_response_head(&mut buf, method);
    (result, buf)
}

fn complete(bytes: &[u8]) -> (ResponseHead, BytesMut) {
    complete_for(bytes, &Method::GET)
}

fn complete_for(bytes: &[u8], method: &Method) -> (ResponseHead, BytesMut) {
    match parse(bytes, method) {
        (Ok(Parsed::Complete(head)), rest) => (head, rest),
        (other, _) => panic!("expected a complete head, got {other:?}"),
    }
}

fn error(bytes: &[u8]) -> ResponseError {
    match parse(bytes, &Method::GET).0 {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn ok_with_content_length() {
    let (head, rest) = complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.framing, BodyFraming::Length(5));
    assert!(head.keep_alive);
    assert_eq!(head.fields.header_map()["x-a"], "b");
    assert_eq!(head.fields.header_map()[CONTENT_LENGTH], "5");
    assert_eq!(&rest[..], b"hello");
}

#[test]
fn header_values_are_slices_of_the_buffer() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nX-Long: abcdefghijklmnop\r\n\r\n"[..]);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let Ok(Parsed::Complete(head)) = parse_response_head(&mut buf, &Method::GET) else {
        panic!("complete head expected");
    };
    let value = head.fields.header_map()["x-long"].as_bytes().as_ptr() as usize;
    assert!((start..end).contains(&value), "the value was copied");
}

#[test]
fn chunked_response() {
    let (head, rest) =
        complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n5\r\n");
    assert_eq!(head.framing, BodyFraming::Chunked);
    assert!(head.keep_alive);
    assert_eq!(&rest[..], b"5\r\n");
    let (head, _) = complete(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
    );
    assert_eq!(head.framing, BodyFraming::UntilClose);
    assert!(!head.keep_alive);
}

#[test]
fn transfer_encoding_with_content_length() {
    let (head, _) =
        complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(head.framing, BodyFraming::Chunked);
    assert!(!head.keep_alive);
    assert!(!head.fields.header_map().contains_key(CONTENT_LENGTH));
    // Transfer-encoding is hop-by-hop: the proxy frames the body to the client itself.
    assert!(!head.fields.header_map().contains_key(TRANSFER_ENCODING));
}

#[test]
fn hop_by_hop_fields_are_left_out() {
    let (head, _) = complete(
        b"HTTP/1.1 200 OK\r\nX-Before: 1\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive, X-Before, X-After\r\n\
          Proxy-Connection: x\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nTE: gzip\r\nX-After: 2\r\n\
          X-Kept: 3\r\nContent-Length: 0\r\n\r\n",
    );
    let map = head.fields.header_map();
    let mut names: Vec<&str> = map.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["content-length", "x-kept"]);
    assert!(head.keep_alive);
    // `close` names a field `close` too; `te: trailers` is end to end.
    let (head, _) = complete(
        b"HTTP/1.1 200 OK\r\nClose: x\r\nTE: trailers\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    let map = head.fields.header_map();
    let mut names: Vec<&str> = map.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["content-length", "te"]);
    assert!(!head.keep_alive);
}

#[test]
fn content_length_lists() {
    let (head, _) = complete(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n");
    assert_eq!(head.framing, BodyFraming::Length(7));
    let map = head.fields.header_map();
    let values: Vec<_> = map.get_all(CONTENT_LENGTH).iter().collect();
    assert_eq!(values, ["7"]);
    let (head, _) = complete(b"HTTP/1.1 200 OK\r\nContent-Length: 1,1\r\n\r\n");
    assert_eq!(head.framing, BodyFraming::Length(1));
    assert_eq!(head.fields.header_map()[CONTENT_LENGTH], "1");
    let (head, _) = complete(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(head.framing, BodyFraming::Empty);
    assert!(head.keep_alive);
}

#[test]
fn invalid_content_lengths() {
    for value in [
        "5, 6",
        "+5",
        "5 5",
        "",
        "-1",
        "0x5",
        "99999999999999999999",
        "5,",
    ] {
        let bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\n");
        assert!(
            matches!(error(bytes.as_bytes()), ResponseError::ContentLength),
            "{value:?} accepted"
        );
    }
    let differing = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
    assert!(matches!(error(differing), ResponseError::ContentLength));
}

#[test]
fn bodiless_responses() {
    let (head, rest) = complete_for(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        &Method::HEAD,
    );
    assert_eq!(head.framing, BodyFraming::Empty);
    assert!(head.keep_alive);
    assert!(rest.is_empty());
    for status in ["204 No Content", "304 Not Modified"] {
        let bytes = format!("HTTP/1.1 {status}\r\nContent-Length: 5\r\n\r\n");
        let (head, _) = complete(bytes.as_bytes());
        assert_eq!(head.framing, BodyFraming::Empty, "{status}");
        assert!(head.keep_alive);
    }
    // Invalid framing headers are ignored where no body can follow.
    let (head, _) = complete(b"HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n");
    assert_eq!(head.framing, BodyFraming::Empty);
}

#[test]
fn interim_responses_are_skipped() {
    let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
                  HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    let (head, rest) = complete(bytes);
    assert_eq!(head.status, StatusCode::OK);
    assert!(!head.fields.header_map().contains_key("link"));
    assert_eq!(&rest[..], b"hi");

    // Split across calls: the 100 is consumed by the first call.
    let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2"[..]);
    assert!(matches!(
        parse_response_head(&mut buf, &Method::POST),
        Ok(Parsed::Partial)
    ));
    assert_eq!(&buf[..], b"HTTP/1.1 2");
    buf.extend_from_slice(b"00 OK\r\nContent-Length: 0\r\n\r\n");
    let Ok(Parsed::Complete(head)) = parse_response_head(&mut buf, &Method::POST) else {
        panic!("complete head expected");
    };
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.framing, BodyFraming::Empty);
    assert!(buf.is_empty());
}

#[test]
fn a_switch_of_protocols_nobody_asked_for_is_refused() {
    // Upgrade requests go through hyper's client: a 101 here would have no tunnel behind it.
    assert!(matches!(
        error(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
        ResponseError::UnaskedUpgrade
    ));
}

/// The fields of `head` as the proxy forwarded them before the codec left hop-by-hop ones
/// out: every field in a map, then `headers::to_client`.
fn forwarded_by_to_client(head: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut fields);
    assert!(parsed.parse(head).unwrap().is_complete());
    let mut map = HeaderMap::new();
    for field in parsed.headers.iter() {
        map.append(
            http::HeaderName::from_bytes(field.name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(field.value).unwrap(),
        );
    }
    crate::headers::to_client(&mut map, false);
    sorted(&map)
}

fn sorted(map: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    let mut fields: Vec<_> = map
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    fields.sort();
    fields
}

#[test]
fn hop_by_hop_fields_go_as_to_client_takes_them_out() {
    let heads: [&[u8]; 9] = [
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Secret: s\r\nConnection: X-Secret , close\r\nClose: c\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTE: trailers\r\nTE: gzip\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTE: gzip\r\nTE: trailers\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: te, upgrade, keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nProxy-Connection: x\r\nProxy-Authenticate: Basic\r\nProxy-Authorization: y\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: x-a,,x-b\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: x-secret, caf\xc3\xa9\r\nX-Secret: s\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
    ];
    for head in heads {
        let (parsed, _) = complete(head);
        assert_eq!(
            sorted(&parsed.fields.header_map()),
            forwarded_by_to_client(head),
            "in {}",
            String::from_utf8_lossy(head)
        );
        assert_eq!(
            sorted_fields(&parsed.fields),
            forwarded_by_to_client(head),
            "in {}",
            String::from_utf8_lossy(head)
        );
    }
}

/// The fields as Portico's own server writes them: names lower-cased, values as they are.
fn sorted_fields(fields: &ResponseFields) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<_> = fields
        .iter()
        .map(|(n, v)| (String::from_utf8_lossy(n).to_ascii_lowercase(), v.to_vec()))
        .collect();
    all.sort();
    all
}

#[test]
fn fields_come_in_the_order_and_case_received_and_the_map_agrees() {
    let (head, _) = complete(
        b"HTTP/1.1 200 OK\r\nX-B: 2\r\nContent-Length: 3, 3\r\nx-a: 1\r\nX-B: 3\r\ncontent-length: 3\r\nDate: d\r\n\r\n",
    );
    let fields: Vec<(&[u8], &[u8])> = head.fields.iter().collect();
    let want: [(&[u8], &[u8]); 5] = [
        (b"X-B", b"2"),
        // Folded into one where the first one was.
        (b"Content-Length", b"3"),
        (b"x-a", b"1"),
        (b"X-B", b"3"),
        (b"Date", b"d"),
    ];
    assert_eq!(fields, want);
    assert_eq!(
        sorted_fields(&head.fields),
        sorted(&head.fields.header_map())
    );
}

#[test]
fn a_content_length_connection_names_is_not_folded_back() {
    let (head, _) =
        complete(b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5, 5\r\n\r\n");
    assert_eq!(head.framing, BodyFraming::Length(5));
    assert!(!head.fields.header_map().contains_key(CONTENT_LENGTH));
}

#[test]
fn keep_alive_rules() {
    let (head, _) = complete(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
    assert!(!head.keep_alive);
    let (head, _) =
        complete(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive\r\n\r\n");
    assert!(head.keep_alive);
    let (head, _) =
        complete(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: x, CLOSE\r\n\r\n");
    assert!(!head.keep_alive);
    let (head, _) = complete(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: closed\r\n\r\n");
    assert!(head.keep_alive);
    let (head, _) = complete(
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(head.framing, BodyFraming::Chunked);
    assert!(!head.keep_alive);
}

#[test]
fn until_close() {
    let (head, rest) = complete(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nbody until close");
    assert_eq!(head.framing, BodyFraming::UntilClose);
    assert!(!head.keep_alive);
    assert_eq!(&rest[..], b"body until close");
}

#[test]
fn pipelined_response_stays_in_buffer() {
    let first = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let second = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    let mut buf = BytesMut::from(&[&first[..], &second[..]].concat()[..]);
    let Ok(Parsed::Complete(head)) = parse_response_head(&mut buf, &Method::GET) else {
        panic!("first head expected");
    };
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(&buf[..], &second[..]);
    let Ok(Parsed::Complete(head)) = parse_response_head(&mut buf, &Method::GET) else {
        panic!("second head expected");
    };
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    assert!(buf.is_empty());
}

#[test]
fn size_limits() {
    let filler = "a".repeat(MAX_RESPONSE_HEAD);
    let big = format!("HTTP/1.1 200 OK\r\nX-Big: {filler}\r\n\r\n");
    assert!(matches!(error(big.as_bytes()), ResponseError::TooLarge));
    let partial = format!("HTTP/1.1 200 OK\r\nX-Big: {filler}");
    assert!(matches!(error(partial.as_bytes()), ResponseError::TooLarge));
    // Just under the limit is still Partial.
    let (result, _) = parse(&partial.as_bytes()[..MAX_RESPONSE_HEAD - 1], &Method::GET);
    assert!(matches!(result, Ok(Parsed::Partial)));

    let headers = |n: usize| {
        let fields: String = (0..n).map(|i| format!("X-{i}: v\r\n")).collect();
        format!("HTTP/1.1 200 OK\r\n{fields}Content-Length: 0\r\n\r\n")
    };
    let (head, _) = complete(headers(MAX_RESPONSE_HEADERS - 1).as_bytes());
    assert_eq!(head.fields.header_map().len(), MAX_RESPONSE_HEADERS);
    assert!(matches!(
        error(headers(MAX_RESPONSE_HEADERS).as_bytes()),
        ResponseError::TooManyHeaders
    ));
}

#[test]
fn garbage_is_an_error() {
    for bytes in [
        &b"SSH-2.0-OpenSSH_9.6\r\n\r\n"[..],
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
        b"\x16\x03\x01\x00",
    ] {
        assert!(
            matches!(error(bytes), ResponseError::Malformed(_)),
            "{bytes:?} accepted"
        );
    }
    let message = ResponseError::TooLarge.to_string();
    assert_eq!(
        message,
        "the backend's response head is larger than 65536 bytes"
    );
}

#[test]
fn byte_at_a_time_matches_whole() {
    let cases: [&[u8]; 3] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\nX-A: 2\r\n\r\nabc",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 201 Created\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
    ];
    for bytes in cases {
        let (whole, whole_rest) = complete(bytes);
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let head = loop {
            assert!(fed < bytes.len(), "never completed");
            buf.extend_from_slice(&bytes[fed..=fed]);
            fed += 1;
            match parse_response_head(&mut buf, &Method::GET) {
                Ok(Parsed::Complete(head)) => break head,
                Ok(Parsed::Partial) => {}
                Err(e) => panic!("error after {fed} bytes: {e}"),
            }
        };
        buf.extend_from_slice(&bytes[fed..]);
        assert_eq!(head.status, whole.status);
        assert_eq!(head.fields.header_map(), whole.fields.header_map());
        assert_eq!(head.framing, whole.framing);
        assert_eq!(head.keep_alive, whole.keep_alive);
        assert_eq!(buf, whole_rest);
    }
}

// ---- chunked bodies ----

/// Decodes everything in `buf`, concatenating the data.
fn decode_all(decoder: &mut ChunkedDecoder, buf: &mut BytesMut) -> (Vec<u8>, Vec<Chunk>) {
    let mut data = Vec::new();
    let mut others = Vec::new();
    loop {
        match decoder.decode(buf).expect("valid chunked body") {
            Chunk::Data(bytes) => {
                assert!(!bytes.is_empty(), "empty data piece");
                data.extend_from_slice(&bytes);
            }
            Chunk::NeedMore => return (data, others),
            Chunk::End => {
                others.push(Chunk::End);
                return (data, others);
            }
            trailers @ Chunk::Trailers(_) => others.push(trailers),
        }
    }
}

fn decode_error(bytes: &[u8]) -> &'static str {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::from(bytes);
    loop {
        match decoder.decode(&mut buf) {
            Err(ResponseError::Chunk(reason)) => return reason,
            Err(e) => panic!("unexpected error {e:?}"),
            Ok(Chunk::NeedMore | Chunk::End) => panic!("{bytes:?} accepted"),
            Ok(_) => {}
        }
    }
}

#[test]
fn simple_chunked_body() {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::from(&b"5\r\nhello\r\n0\r\n\r\nHTTP/1.1"[..]);
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::Data(d)) if d == "hello"));
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::End)));
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::End)));
    assert_eq!(&buf[..], b"HTTP/1.1");
}

#[test]
fn extensions_and_bare_lf_size_lines() {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::from(&b"3;name=value;x\r\nabc\r\n2 ; q=\"a b\"\nde\r\n0;last\n\n"[..]);
    let (data, others) = decode_all(&mut decoder, &mut buf);
    assert_eq!(data, b"abcde");
    assert!(matches!(others[..], [Chunk::End]));
    assert!(buf.is_empty());
}

#[test]
fn trailers() {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::from(&b"2\r\nok\r\n0\r\ngrpc-status: 0\r\nX-T: a\r\n\r\nnext"[..]);
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::Data(d)) if d == "ok"));
    let Ok(Chunk::Trailers(trailers)) = decoder.decode(&mut buf) else {
        panic!("trailers expected");
    };
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-t"], "a");
    assert_eq!(trailers.len(), 2);
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::End)));
    assert_eq!(&buf[..], b"next");
}

#[test]
fn multiple_chunks_in_one_buffer() {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::from(&b"1\r\na\r\nA\r\n0123456789\r\n000\r\n\r\n"[..]);
    let mut pieces = Vec::new();
    loop {
        match decoder.decode(&mut buf).expect("valid") {
            Chunk::Data(d) => pieces.push(d),
            Chunk::End => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        pieces,
        [Bytes::from_static(b"a"), Bytes::from_static(b"0123456789")]
    );
}

#[test]
fn big_chunk_in_pieces() {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::from(&b"10000\r\n"[..]);
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::NeedMore)));
    assert_eq!(decoder.in_chunk(), 0x10000);
    buf.extend_from_slice(&[b'x'; 1000]);
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::Data(d)) if d.len() == 1000));
    assert_eq!(decoder.in_chunk(), 0x10000 - 1000);
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::NeedMore)));
    buf.extend_from_slice(&[b'y'; 0x10000 - 1000]);
    buf.extend_from_slice(b"\r\n0\r\n\r\n");
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::Data(d)) if d.len() == 0x10000 - 1000));
    assert_eq!(decoder.in_chunk(), 0);
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::End)));
}

const BODY: &[u8] =
    b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\n";
const BODY_DATA: &[u8] = b"Wikipedia in\r\n\r\nchunks.";

/// Feeds `BODY` in pieces of the given sizes and checks the data, trailers and end.
fn check_split(sizes: impl Iterator<Item = usize>) {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut others = Vec::new();
    let mut fed = 0;
    for size in sizes {
        let end = (fed + size).min(BODY.len());
        buf.extend_from_slice(&BODY[fed..end]);
        fed = end;
        let (d, o) = decode_all(&mut decoder, &mut buf);
        data.extend(d);
        others.extend(o);
        if fed == BODY.len() {
            break;
        }
    }
    assert_eq!(fed, BODY.len());
    assert_eq!(data, BODY_DATA);
    assert!(buf.is_empty());
    match &others[..] {
        [Chunk::Trailers(t), Chunk::End] => assert_eq!(t["expires"], "never"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn fed_byte_by_byte() {
    check_split(std::iter::repeat(1));
}

#[test]
fn random_splits() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for _ in 0..200 {
        let max = rng.usize(1..=BODY.len());
        let sizes: Vec<usize> = (0..BODY.len()).map(|_| rng.usize(1..=max)).collect();
        check_split(sizes.into_iter());
    }
}

#[test]
fn need_more_only_when_stuck() {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::from(&b"3\r"[..]);
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::NeedMore)));
    buf.extend_from_slice(b"\nab");
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::Data(d)) if d == "ab"));
    buf.extend_from_slice(b"c\r");
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::Data(d)) if d == "c"));
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::NeedMore)));
    buf.extend_from_slice(b"\n0\r\n\r");
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::NeedMore)));
    buf.extend_from_slice(b"\n");
    assert!(matches!(decoder.decode(&mut buf), Ok(Chunk::End)));
}

#[test]
fn malformed_chunks() {
    assert_eq!(decode_error(b"xyz\r\n"), "chunk size is not hexadecimal");
    assert_eq!(decode_error(b"\r\n"), "chunk size is not hexadecimal");
    assert_eq!(decode_error(b"-1\r\n"), "chunk size is not hexadecimal");
    assert_eq!(decode_error(b"5 5\r\n"), "chunk size is not hexadecimal");
    assert_eq!(
        decode_error(b"10000000000000000\r\n"),
        "chunk size overflows u64"
    );
    assert_eq!(decode_error(b"3;a\x00b\r\n"), "invalid chunk extension");
    assert_eq!(decode_error(b"3;a\rb\r\n"), "invalid chunk extension");
    assert_eq!(
        decode_error(b"3\r\nabcd\r\n"),
        "missing CRLF after chunk data"
    );
    assert_eq!(
        decode_error(b"3\r\nabc\n0\r\n\r\n"),
        "missing CRLF after chunk data"
    );
    assert_eq!(
        decode_error(b"3\r\nabc\rx"),
        "missing CRLF after chunk data"
    );
    let long = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_SIZE_LINE));
    assert_eq!(
        decode_error(long.as_bytes()),
        "chunk size line is longer than 4096 bytes"
    );
    // Leading zeros are fine, however many.
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::from(&b"0000000000000000000001\r\nz\r\n0\r\n\r\n"[..]);
    let (data, _) = decode_all(&mut decoder, &mut buf);
    assert_eq!(data, b"z");
}

#[test]
fn malformed_trailers() {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::from(&b"0\r\nbad header: x\r\n\r\n"[..]);
    assert!(matches!(
        decoder.decode(&mut buf),
        Err(ResponseError::Trailers(_))
    ));
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::from(&b"0\r\nX-Big: "[..]);
    buf.extend_from_slice(&vec![b'a'; MAX_RESPONSE_HEAD]);
    assert!(matches!(
        decoder.decode(&mut buf),
        Err(ResponseError::Chunk(_))
    ));
}

// ---- hostile bytes ----

/// A summary of what parsing `bytes` gives, fed whole or in the pieces `sizes` cuts: the same
/// bytes must give the same outcome however they arrive, and nothing may panic.
fn head_outcome(bytes: &[u8], sizes: &mut dyn Iterator<Item = usize>) -> String {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    loop {
        let end = (fed + sizes.next().unwrap_or(bytes.len())).min(bytes.len());
        buf.extend_from_slice(&bytes[fed..end]);
        fed = end;
        match parse_response_head(&mut buf, &Method::GET) {
            Ok(Parsed::Complete(head)) => {
                return format!(
                    "{} {:?} {} {:?} rest={}",
                    head.status,
                    head.framing,
                    head.keep_alive,
                    head.fields.header_map(),
                    bytes.len() - fed + buf.len()
                );
            }
            Ok(Parsed::Partial) if fed == bytes.len() => return "partial".to_owned(),
            Ok(Parsed::Partial) => {}
            // Which error a split input meets first may differ (a garbage byte is seen before
            // the size limit, or after): that it fails is what must agree.
            Err(_) => return "error".to_owned(),
        }
    }
}

/// The chunk decoder's data, trailers and end over `bytes` fed in `sizes` pieces, or "error".
fn body_outcome(bytes: &[u8], sizes: &mut dyn Iterator<Item = usize>) -> String {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::new();
    let (mut data, mut events) = (Vec::new(), Vec::new());
    let mut fed = 0;
    loop {
        let end = (fed + sizes.next().unwrap_or(bytes.len())).min(bytes.len());
        buf.extend_from_slice(&bytes[fed..end]);
        fed = end;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Chunk::Data(d)) => {
                    assert!(!d.is_empty(), "empty data piece");
                    data.extend_from_slice(&d);
                }
                Ok(Chunk::Trailers(t)) => events.push(format!("{t:?}")),
                Ok(Chunk::End) => {
                    events.push("end".to_owned());
                    return format!("{data:?} {events:?}");
                }
                Ok(Chunk::NeedMore) => break,
                Err(_) => return "error".to_owned(),
            }
        }
        if fed == bytes.len() {
            return format!("{data:?} {events:?} incomplete");
        }
    }
}

/// Flips, inserts and deletes random bytes of valid messages (a small mutation fuzzer, bounded
/// and seeded so a failure replays): the parsers never panic, and an input gives the same
/// outcome whole and in random pieces.
#[test]
fn mutated_messages_never_panic_and_parse_the_same_in_pieces() {
    let heads: [&[u8]; 4] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 10, 10\r\n\r\n",
    ];
    let bodies: [&[u8]; 2] = [
        b"5;ext=1\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n",
        b"a\r\n0123456789\r\n1\n!\r\n0\n\r\n",
    ];
    let mut rng = fastrand::Rng::with_seed(0xf022);
    let mutate = |rng: &mut fastrand::Rng, input: &[u8]| {
        let mut bytes = input.to_vec();
        for _ in 0..rng.usize(1..=4) {
            let at = rng.usize(..bytes.len());
            let byte = *rng.choice(b"\r\n :;,0aF\x00\xff\tHT/1.").unwrap_or(&0);
            match rng.u8(..3) {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if bytes.len() > 1 => drop(bytes.remove(at)),
                _ => {}
            }
        }
        bytes
    };
    for _ in 0..1_000 {
        let input = heads[rng.usize(..heads.len())];
        let bytes = mutate(&mut rng, input);
        let whole = head_outcome(&bytes, &mut std::iter::empty());
        let max = rng.usize(1..=8);
        let mut split = fastrand::Rng::with_seed(rng.u64(..));
        let mut pieces = std::iter::repeat_with(|| split.usize(1..=max));
        assert_eq!(head_outcome(&bytes, &mut pieces), whole, "{bytes:?}");

        let input = bodies[rng.usize(..bodies.len())];
        let bytes = mutate(&mut rng, input);
        let whole = body_outcome(&bytes, &mut std::iter::empty());
        let mut pieces = std::iter::repeat_with(|| split.usize(1..=max));
        assert_eq!(body_outcome(&bytes, &mut pieces), whole, "{bytes:?}");
    }
}
