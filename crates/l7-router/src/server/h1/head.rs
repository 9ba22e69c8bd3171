//! The sans-IO half of Portico's own HTTP/1.1 server path: which request heads it serves (and
//! parses them into a [`Request`]), and how a response head is written. Everything else, every
//! error answer included, is hyper's: a head this path does not serve is handed over as bytes.
//!
//! The response head follows hyper's server encoder field for field (same framing rules, same
//! `date` and `connection: close`), so a client cannot tell which of the two answered.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};

use crate::headers::{ReadField, list_elements, names_a_field, read_field};
use crate::passed::{FieldAt, PassedFields};
use crate::upstream::{parse_decimal, push_content_length};

/// At most this many fields are parsed on the stack (hyper's default limit); a listener that
/// allows more gets its larger heads served by hyper.
const MAX_FIELDS: usize = crate::server::HYPER_MAX_HEADERS;

/// A `Content-Length` body up to this size that arrived whole with its head is served here
/// (a small POST or PUT); a larger one streams through hyper.
const MAX_READ_BODY: usize = 64 * 1024;

/// The longest field name `http` takes (`HeaderName`); fields passed on unread are not made
/// into one, so the length is checked here.
const MAX_NAME_LEN: usize = (1 << 16) - 1;

/// At most this many fields are added to a request on its way to the backend (forwarding
/// fields, request id, host).
const FORWARDING_FIELDS: usize = 6;

/// What [`parse_request`] found at the front of the buffer. (Not boxed: it is returned once
/// per request and taken apart at once, where a box would be an allocation per request.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Parsed {
    /// A request this path serves; its head was split off the buffer.
    Serve(Served),
    /// More bytes are needed.
    Partial,
    /// Anything else (a chunked body or one still to come, an upgrade, HTTP/1.0, HTTP/2's
    /// preface, a malformed or too large head): hyper takes the connection over from here,
    /// with the bytes as they are.
    HandOver,
}

/// A request this path serves: its head, and its body when it had one.
#[derive(Debug)]
pub(crate) struct Served {
    /// Its head, with the fields Portico reads in the header map ...
    pub request: Request<()>,
    /// ... and the others as they came (see [`crate::passed`]).
    pub passed: PassedFields,
    /// A `Content-Length` body (not empty), whole: it had all arrived with the head, and was
    /// split off the buffer after it.
    pub body: Option<Bytes>,
    /// The client asked to close the connection after this response.
    pub close: bool,
    /// The client takes trailer fields (its TE lists `trailers`); as hyper, none are sent
    /// to a client that did not say so.
    pub takes_trailers: bool,
}

/// Parses the request head at the front of `buf`, of at most `max_bytes` bytes and
/// `max_fields` fields. Served: HTTP/1.1 requests in origin form, not CONNECT, without an
/// upgrade or an `Expect`, and either without a body or with a `Content-Length` body (at most
/// [`MAX_READ_BODY`]) that is all in `buf` already: on the keep-alive connections of a busy
/// ingress, nearly every request. The head, then the body, are split off `buf`.
pub(crate) fn parse_request(buf: &mut BytesMut, max_bytes: usize, max_fields: usize) -> Parsed {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let window = &buf[..buf.len().min(max_bytes)];
    let mut parsed = httparse::Request::new(&mut []);
    let status = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        window,
        &mut fields[..max_fields.min(MAX_FIELDS)],
    );
    let head_len = match status {
        Ok(httparse::Status::Complete(n)) => n,
        // A head that cannot complete within the limit is hyper's to refuse (431).
        Ok(httparse::Status::Partial) if buf.len() < max_bytes => return Parsed::Partial,
        _ => return Parsed::HandOver,
    };
    let (Some(method), Some(target), Some(1)) = (parsed.method, parsed.path, parsed.version) else {
        return Parsed::HandOver;
    };
    if !target.starts_with('/') || method == "CONNECT" {
        return Parsed::HandOver;
    }
    let base = window.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        (start, start + s.len())
    };
    let target_at = at(target.as_bytes());
    let mut close = false;
    let mut takes_trailers = false;
    let mut length: Option<u64> = None;
    // Field positions: those Portico reads, for the header map, and the others, passed on.
    // A name is wholly in one or the other, so each keeps its fields' order.
    let mut mapped = Vec::with_capacity(parsed.headers.len());
    let mut passed = Vec::new();
    // `Connection` names a field to drop at this hop: every field goes in the map, where the
    // hop-by-hop rules look for it.
    let mut names_fields = false;
    for (i, field) in parsed.headers.iter().enumerate() {
        let name = field.name.as_bytes();
        let place = FieldAt {
            name: at(name),
            value: at(field.value),
        };
        let Some(kind) = read_field(name) else {
            if name.len() > MAX_NAME_LEN {
                // A name `http` refuses (hyper answers it), though httparse took it.
                return Parsed::HandOver;
            }
            if passed.capacity() == 0 {
                // One allocation, for this field and any after it.
                passed.reserve_exact(parsed.headers.len() - i);
            }
            passed.push(place);
            continue;
        };
        match kind {
            // A chunked body, an upgrade or an interim answer to give is hyper's.
            ReadField::TransferEncoding | ReadField::Upgrade | ReadField::Expect => {
                return Parsed::HandOver;
            }
            // One plain decimal, or hyper decides (a list, a second field, a bad value).
            ReadField::ContentLength => match (length, parse_decimal(field.value)) {
                (None, Some(n)) => length = Some(n),
                _ => return Parsed::HandOver,
            },
            ReadField::Connection => {
                for token in list_elements(field.value) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    names_fields |= names_a_field(token);
                }
            }
            ReadField::Te => {
                takes_trailers |=
                    list_elements(field.value).any(|t| t.eq_ignore_ascii_case(b"trailers"));
            }
            ReadField::Host | ReadField::HopByHop | ReadField::Forwarding => {}
        }
        mapped.push(place);
    }
    if names_fields {
        mapped.append(&mut passed);
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::HandOver;
    };
    // A body is served only when all of it came with the head: nothing is waited for, so a
    // body that streams (or a client that waits before sending it) stays hyper's.
    let body_len = match length.map(usize::try_from) {
        None | Some(Ok(0)) => 0,
        Some(Ok(n)) if n <= MAX_READ_BODY && buf.len() - head_len >= n => n,
        Some(_) => return Parsed::HandOver,
    };
    let head = buf.split_to(head_len).freeze();
    match request(&head, method, target_at, &mapped) {
        Some(request) => Parsed::Serve(Served {
            request,
            passed: if passed.is_empty() {
                PassedFields::default()
            } else {
                PassedFields::new(head, passed)
            },
            body: (body_len > 0).then(|| buf.split_to(body_len).freeze()),
            close,
            takes_trailers,
        }),
        // httparse let through what `http` refuses: hyper (which refuses it too) answers.
        None => {
            let mut whole = BytesMut::from(&head[..]);
            whole.extend_from_slice(buf);
            *buf = whole;
            Parsed::HandOver
        }
    }
}

/// What a served request must be, whatever bytes it came from (checked by the parser's tests
/// and the fuzz target): no `Transfer-Encoding`, and no `Content-Length` or exactly one plain
/// decimal equal to its body's length (none: no body). Anything else is how two servers come
/// to read the same bytes as different requests.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn assert_framing_is_unambiguous(served: &Served) {
    use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};

    let headers = served.request.headers();
    assert!(
        !headers.contains_key(TRANSFER_ENCODING),
        "served with a transfer-encoding"
    );
    let lengths: Vec<_> = headers.get_all(CONTENT_LENGTH).iter().collect();
    let body = served.body.as_ref().map_or(0, Bytes::len) as u64;
    match lengths[..] {
        [] => assert_eq!(body, 0, "a body without a content-length"),
        [one] => assert_eq!(
            parse_decimal(one.as_bytes()),
            Some(body),
            "content-length {one:?} for a body of {body}"
        ),
        _ => panic!("served with {} content-lengths", lengths.len()),
    }
}

/// The request of a parsed head, with the fields at `places` in its map; header values are
/// zero-copy slices of `head`.
fn request(
    head: &Bytes,
    method: Method,
    target: (usize, usize),
    places: &[FieldAt],
) -> Option<Request<()>> {
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.1)).ok()?;
    // Room for the forwarding fields `headers::to_backend` adds: growing a map rehashes it.
    let mut headers = HeaderMap::with_capacity(places.len() + FORWARDING_FIELDS);
    for at in places {
        let name = HeaderName::from_bytes(&head[at.name.0..at.name.1]).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(at.value.0..at.value.1)).ok()?;
        headers.append(name, value);
    }
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(request)
}

/// How the body of a response goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Exactly this many bytes (0: no body at all, as for HEAD, 204 and 304).
    Length(u64),
    Chunked,
}

/// What the response body says of its length before it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLength {
    /// It has already ended: there is no body.
    Ended,
    Exact(u64),
    Unknown,
}

/// A written response head: the framing of the body that follows, and the trailer fields the
/// head announced (only those go out after a chunked body).
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub framing: Framing,
    pub trailers: Vec<HeaderName>,
}

/// Writes the head of `status` and its `fields` (names in any case) into `out`, as hyper's
/// server would: the framing
/// headers follow the body (a content-length the body agrees with is kept, an unknown length
/// is chunked), `connection: close` is added when `close`, and `date` when absent.
pub(crate) fn encode_response_head<'a>(
    status: StatusCode,
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    head_request: bool,
    body: BodyLength,
    close: bool,
    out: &mut Vec<u8>,
) -> ResponseHead {
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // RFC 9110 §8.6 and §6.4.1: no length for 1xx, 204 and 304; a response to HEAD carries
    // the length a GET would have had, and no body.
    let may_have_length = !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED);
    let may_have_body = may_have_length && !head_request;
    let mut framing = None;
    let mut wrote_date = false;
    let mut trailers = Vec::new();
    for (name, value) in fields {
        match field_kind(name) {
            FieldKind::ContentLength => {
                if !may_have_length || framing.is_some() {
                    continue;
                }
                match body {
                    BodyLength::Exact(n) => framing = Some(Framing::Length(n)),
                    BodyLength::Unknown => match parse_decimal(value) {
                        Some(n) => framing = Some(Framing::Length(n)),
                        None => continue,
                    },
                    // A HEAD response's length describes the body it does not have.
                    BodyLength::Ended if head_request => framing = Some(Framing::Length(0)),
                    BodyLength::Ended => continue,
                }
            }
            // Framing and connection management are this hop's, decided here.
            FieldKind::ThisHop => continue,
            FieldKind::Date => wrote_date = true,
            FieldKind::Trailer => {
                if !may_have_body {
                    continue;
                }
                let names = list_elements(value).filter_map(|t| HeaderName::from_bytes(t).ok());
                trailers.extend(names.filter(may_trail));
            }
            FieldKind::Other => {}
        }
        // Names go out in lower case, as from a header map.
        let start = out.len();
        out.extend_from_slice(name);
        out[start..].make_ascii_lowercase();
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    let framing = match framing {
        Some(framing) => framing,
        None => match body {
            BodyLength::Ended | BodyLength::Exact(0) => {
                if may_have_length && !head_request {
                    out.extend_from_slice(b"content-length: 0\r\n");
                }
                Framing::Length(0)
            }
            BodyLength::Exact(n) => {
                if may_have_length {
                    push_content_length(n, out);
                }
                Framing::Length(n)
            }
            BodyLength::Unknown if may_have_body => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
            BodyLength::Unknown => Framing::Length(0),
        },
    };
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !wrote_date {
        out.extend_from_slice(b"date: ");
        push_date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    ResponseHead {
        framing: if may_have_body {
            framing
        } else {
            Framing::Length(0)
        },
        trailers: if framing == Framing::Chunked {
            trailers
        } else {
            Vec::new()
        },
    }
}

/// Whether a field may come as a trailer: not one that frames, routes, authenticates or
/// describes the body, which a client must not learn only after the body (RFC 9110 §6.5.1;
/// hyper's list).
fn may_trail(name: &HeaderName) -> bool {
    !matches!(
        *name,
        header::AUTHORIZATION
            | header::CACHE_CONTROL
            | header::CONTENT_ENCODING
            | header::CONTENT_LENGTH
            | header::CONTENT_RANGE
            | header::CONTENT_TYPE
            | header::HOST
            | header::MAX_FORWARDS
            | header::SET_COOKIE
            | header::TRAILER
            | header::TRANSFER_ENCODING
            | header::TE
    )
}

/// The fields the response head's encoding looks at.
enum FieldKind {
    ContentLength,
    /// Transfer-encoding and connection: this hop's, never passed on as they are.
    ThisHop,
    Date,
    Trailer,
    Other,
}

/// Which of [`FieldKind`] a name (in any case) is: one length test and at most one compare.
fn field_kind(name: &[u8]) -> FieldKind {
    let (kind, lower): (FieldKind, &[u8]) = match name.len() {
        4 => (FieldKind::Date, b"date"),
        7 => (FieldKind::Trailer, b"trailer"),
        10 => (FieldKind::ThisHop, b"connection"),
        14 => (FieldKind::ContentLength, b"content-length"),
        17 => (FieldKind::ThisHop, b"transfer-encoding"),
        _ => return FieldKind::Other,
    };
    if name.eq_ignore_ascii_case(lower) {
        kind
    } else {
        FieldKind::Other
    }
}

/// The `date` value of the current second, formatted once a second per thread (as hyper does).
fn push_date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    CACHED.with_borrow_mut(|(at, text)| {
        if *at != second {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(text.as_bytes());
    });
}

#[cfg(test)]
mod tests;
