//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off in every build of the
//! daemon): the parsers of untrusted bytes of the HTTP path, each driven with the input whole
//! and in the pieces the fuzzer picks, with the invariants the callers rely on checked as
//! assertions (a failed one is a crash the fuzzer reports).

use bytes::BytesMut;
use http::Method;

use crate::server::HYPER_MAX_HEADERS;
use crate::server::h1::head::{self, Parsed as RequestParsed};
use crate::upstream::codec::{self, Chunk, Parsed as ResponseParsed};

/// Heads of at most this many bytes (the least `max_header_bytes` allows).
const MAX_HEAD: usize = 8192;

/// The size of each piece `data` arrives in, from its first byte (1 to 16; whole if empty).
fn pieces(data: &[u8]) -> (Box<dyn Iterator<Item = usize>>, &[u8]) {
    match data.split_first() {
        Some((&first, rest)) if first & 0x80 != 0 => {
            let size = usize::from(first & 0x0f) + 1;
            (Box::new(std::iter::repeat(size)), rest)
        }
        Some((_, rest)) => (Box::new(std::iter::empty()), rest),
        None => (Box::new(std::iter::empty()), data),
    }
}

/// Portico's own HTTP/1.1 request head parser: no panic, and whatever it does not serve it
/// leaves byte for byte for hyper (the handover must not lose, add or reorder a byte); a
/// request it serves is cut off exactly (head, then a body that came with it), and gives the
/// same request whole and in pieces, unless its body came in a later piece (then it is
/// hyper's: nothing is waited for).
pub fn request_head(data: &[u8]) {
    let (mut sizes, bytes) = pieces(data);
    let whole = request_outcome(bytes, &mut std::iter::empty(), MAX_HEAD, HYPER_MAX_HEADERS);
    let pieced = request_outcome(bytes, &mut *sizes, MAX_HEAD, HYPER_MAX_HEADERS);
    if !body_came_later(&whole, &pieced) {
        assert_eq!(whole, pieced, "whole and in pieces differ");
    }
}

/// What `parse_request` (heads of at most `max_bytes` and `max_fields`) makes of `bytes` fed
/// in pieces of the sizes `sizes` gives (the rest at once when it runs out), as a string to
/// compare: `serve ...`, `hand over` or `partial`. It asserts what the handover rests on: a
/// request it serves is cut off exactly (the head at its empty line, then the bytes of its
/// body) with unambiguous framing, and anything else leaves every byte read where it was.
/// (Also the parser's own mutation test.)
pub(crate) fn request_outcome(
    bytes: &[u8],
    sizes: &mut dyn Iterator<Item = usize>,
    max_bytes: usize,
    max_fields: usize,
) -> String {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    loop {
        let end = (fed + sizes.next().unwrap_or(bytes.len())).min(bytes.len());
        buf.extend_from_slice(&bytes[fed..end]);
        fed = end;
        let before = buf.clone();
        match head::parse_request(&mut buf, max_bytes, max_fields) {
            RequestParsed::Serve(served) => {
                head::assert_framing_is_unambiguous(&served);
                let cut = before.len() - buf.len();
                assert_eq!(before[cut..], buf[..], "{bytes:?}: the rest is kept");
                let body = served.body.as_deref().unwrap_or_default();
                let head_end = cut - body.len();
                assert_eq!(
                    body,
                    &before[head_end..cut],
                    "{bytes:?}: the body is the bytes after the head"
                );
                // The head ends at its empty line: a parse of it finds exactly its bytes.
                let head = &before[..head_end];
                assert!(
                    head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"),
                    "{bytes:?}: the cut is not at an empty line"
                );
                let mut fields = [httparse::EMPTY_HEADER; HYPER_MAX_HEADERS];
                let mut again = httparse::Request::new(&mut fields);
                assert_eq!(
                    again.parse(head).ok(),
                    Some(httparse::Status::Complete(head_end)),
                    "{bytes:?}: the cut is not the end of the head"
                );
                let req = served.request;
                // Every field is either in the map or passed on; the map has every field
                // Portico reads.
                for (name, _) in served.passed.iter() {
                    assert!(
                        !crate::headers::is_read_by_portico(name),
                        "{bytes:?}: {} passed on unread",
                        String::from_utf8_lossy(name)
                    );
                }
                let passed: Vec<_> = served
                    .passed
                    .iter()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v)))
                    .collect();
                assert_eq!(
                    req.headers().len() + passed.len(),
                    again.headers.len(),
                    "{bytes:?}: a field was lost"
                );
                return format!(
                    "serve {} {} {:?} {passed:?} close={} trailers={} head={head_end} body={}",
                    req.method(),
                    req.uri(),
                    req.headers(),
                    served.close,
                    served.takes_trailers,
                    body.len(),
                );
            }
            RequestParsed::HandOver => {
                assert_eq!(buf, before, "{bytes:?}: handed over as read");
                // (How much was read by then depends on the pieces: hyper reads the rest.)
                return "hand over".to_owned();
            }
            RequestParsed::Partial => {
                assert_eq!(buf, before, "{bytes:?}: a partial head stays");
                if fed == bytes.len() {
                    return "partial".to_owned();
                }
            }
        }
    }
}

/// Whether outcomes `whole` and `pieced` of [`request_outcome`] may differ: a request served
/// whole with a body is hyper's when that body came in a later piece than its head.
pub(crate) fn body_came_later(whole: &str, pieced: &str) -> bool {
    pieced == "hand over" && whole.starts_with("serve ") && !whole.ends_with(" body=0")
}

/// The HTTP/1.1 client codec on a backend's answer: the response head (with the method of the
/// request it answers from the first byte), then a chunked body; no panic, and the same
/// outcome whole and in pieces.
pub fn response(data: &[u8]) {
    let (method, data) = match data.split_first() {
        Some((&b, rest)) if b & 1 == 1 => (Method::HEAD, rest),
        Some((_, rest)) => (Method::GET, rest),
        None => (Method::GET, data),
    };
    let (mut sizes, bytes) = pieces(data);
    let whole = response_outcome(bytes, &method, &mut std::iter::empty());
    let pieced = response_outcome(bytes, &method, &mut *sizes);
    assert_eq!(whole, pieced, "whole and in pieces differ");
}

fn response_outcome(
    bytes: &[u8],
    method: &Method,
    sizes: &mut dyn Iterator<Item = usize>,
) -> String {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut feed = |buf: &mut BytesMut| {
        let end = (fed + sizes.next().unwrap_or(bytes.len())).min(bytes.len());
        buf.extend_from_slice(&bytes[fed..end]);
        let more = end > fed;
        fed = end;
        more
    };
    let head = loop {
        let more = feed(&mut buf);
        match codec::parse_response_head(&mut buf, method) {
            Ok(ResponseParsed::Complete(head)) => break head,
            Ok(ResponseParsed::Partial) if more => {}
            Ok(ResponseParsed::Partial) => return "partial head".to_owned(),
            Err(err) => return format!("head error: {err}"),
        }
    };
    // The map hyper's path builds agrees with the fields the own path writes.
    let map = head.fields.header_map();
    assert_eq!(
        map.len(),
        head.fields.iter().count(),
        "fields lost in the map"
    );
    let mut out = format!(
        "{} {:?} {} {map:?}",
        head.status, head.framing, head.keep_alive
    );
    let mut decoder = codec::ChunkedDecoder::new();
    let mut body = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Chunk::Data(data)) => body.extend_from_slice(&data),
            Ok(Chunk::Trailers(trailers)) => out.push_str(&format!(" trailers {trailers:?}")),
            Ok(Chunk::End) => break out.push_str(&format!(" body {body:?} end")),
            Ok(Chunk::NeedMore) if feed(&mut buf) => {}
            Ok(Chunk::NeedMore) => break out.push_str(&format!(" body {body:?} cut")),
            Err(err) => break out.push_str(&format!(" body {body:?} error {err}")),
        }
    }
    out
}

/// The entry points on seeds that reach every branch, so they build and hold in every test run
/// (the fuzz crate itself needs nightly and is not in CI).
#[cfg(test)]
mod tests {
    use super::*;

    /// `seed` whole, then in pieces of every size the first byte can pick.
    fn every_split(seed: &[u8], entry: fn(&[u8])) {
        entry(&[&[0u8][..], seed].concat());
        for size in 0..16u8 {
            entry(&[&[0x80 | size][..], seed].concat());
        }
    }

    #[test]
    fn request_heads_agree_whole_and_in_pieces() {
        for seed in [
            &b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\nGET /next"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody",
            b"GET / HTTP/1.0\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            b"",
        ] {
            every_split(seed, request_head);
        }
    }

    #[test]
    fn request_heads_served_are_the_request() {
        let outcome = |bytes: &[u8]| {
            request_outcome(
                bytes,
                &mut std::iter::repeat(3),
                MAX_HEAD,
                HYPER_MAX_HEADERS,
            )
        };
        let served = outcome(b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(served.starts_with("serve GET /p "), "{served}");
        assert_eq!(outcome(b"GET /p HTTP/1.1\r\nHost: h\r\n"), "partial");
        assert_eq!(outcome(b"GET /p HTTP/1.0\r\n\r\n"), "hand over");
    }

    #[test]
    fn responses_agree_whole_and_in_pieces() {
        for seed in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n"[..],
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 2000 Nope\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n",
        ] {
            // The method byte goes before the pieces byte: even for a GET, odd for a HEAD.
            every_split(seed, |data| response(&[&[0u8][..], data].concat()));
            every_split(seed, |data| response(&[&[1u8][..], data].concat()));
        }
    }

    #[test]
    fn a_chunked_body_decodes_with_its_trailers() {
        let out = response_outcome(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n",
            &Method::GET,
            &mut std::iter::repeat(2),
        );
        assert!(out.starts_with("200 "), "{out}");
        assert!(out.contains("trailers"), "{out}");
        assert!(out.ends_with(&format!(" body {:?} end", b"abc")), "{out}");
    }
}
