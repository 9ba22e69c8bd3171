//! A sans-IO HTTP/1.1 client codec: encodes request heads and chunked bodies towards a backend,
//! and parses the backend's response heads and chunked bodies, as pure functions on byte
//! buffers. The upstream pool owns the sockets and the buffers; keeping IO out of here makes
//! every framing decision (the part that request smuggling attacks target) testable byte by byte.
//!
//! Response framing follows RFC 9112 section 6.3. Header values are zero-copy slices of the
//! response head's bytes, so parsing a head costs one parse and no per-value allocation.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

use crate::headers;
use crate::passed::PassedFields;

/// A response head (and a chunked body's trailer section) larger than this is refused: a
/// backend cannot make us buffer without bound.
pub(crate) const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// A response head (or trailer section) with more header fields than this is refused.
pub(crate) const MAX_RESPONSE_HEADERS: usize = 100;
/// A chunk size line (size plus extensions) longer than this is refused; extensions are
/// ignored, so there is no reason to buffer many of them.
const MAX_CHUNK_SIZE_LINE: usize = 4096;

/// How a request body goes out to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestFraming {
    /// No body.
    Empty,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// The body goes out in chunks; its length is not known in advance.
    Chunked,
}

/// How the request body goes out: with a length when one is known (from the request head or
/// from the body itself), chunked otherwise.
///
/// An invalid or conflicting content-length in the head is treated as absent (the server side
/// has already refused such requests; and [`encode_request_head`] never forwards the header).
pub(crate) fn request_framing(
    parts: &Parts,
    body_is_end: bool,
    exact_len: Option<u64>,
) -> RequestFraming {
    if body_is_end {
        return RequestFraming::Empty;
    }
    if let Ok(Some(n)) = content_length(&parts.headers) {
        return RequestFraming::Length(n);
    }
    match exact_len {
        Some(0) => RequestFraming::Empty,
        Some(n) => RequestFraming::Length(n),
        None => RequestFraming::Chunked,
    }
}

/// Writes the request head into `out` (cleared first). The framing headers of `parts` are
/// replaced by the ones `framing` calls for, so the head always agrees with the body that
/// follows: a mismatch there is what request smuggling feeds on.
pub(crate) fn encode_request_head(
    parts: &Parts,
    passed: &PassedFields,
    framing: RequestFraming,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    // A path_and_query can be empty (an authority-form URI); "/" keeps the request line valid.
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        push_field(name, value, out);
    }
    // No framing field among them: those are read by Portico, so they are in the map.
    passed.encode(out);
    match framing {
        RequestFraming::Length(n) => push_content_length(n, out),
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        RequestFraming::Empty => {
            // Methods that usually carry a body get an explicit zero length: some servers
            // wait for a body (or answer 411) otherwise.
            let expects_body = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
            if expects_body || parts.headers.contains_key(CONTENT_LENGTH) {
                push_content_length(0, out);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

fn push_field(name: &HeaderName, value: &HeaderValue, out: &mut Vec<u8>) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn push_content_length(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"content-length: ");
    push_digits(n, 10, out);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in base `radix` (10 or 16, lower-case), without the allocation of `to_string`
/// or `format!`: this runs for every request and every chunk.
fn push_digits(mut n: u64, radix: u64, out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut scratch = [0u8; 20]; // u64::MAX has 20 decimal digits
    let mut at = scratch.len();
    loop {
        at -= 1;
        scratch[at] = DIGITS[(n % radix) as usize];
        n /= radix;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&scratch[at..]);
}

/// Appends a chunk's size line, `{len:x}\r\n`; the caller appends the data and then CRLF.
pub(crate) fn encode_chunk_header(len: usize, out: &mut Vec<u8>) {
    push_digits(len as u64, 16, out);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk: `0\r\n`, the trailer fields if any, and the blank line that ends
/// the body.
pub(crate) fn encode_last_chunk(trailers: Option<&HeaderMap>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        push_field(name, value, out);
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed response head with the framing of the body that follows it.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    /// (Its version only decides framing and keep-alive here: it stays with the backend.)
    pub status: StatusCode,
    /// The header fields as received, except that hop-by-hop fields (and those the Connection
    /// field names) are left out, a content-length next to a transfer-encoding is removed and
    /// duplicate content-lengths are folded into one.
    pub fields: ResponseFields,
    pub framing: BodyFraming,
    /// The connection can carry another request once this response's body is read to its end.
    pub keep_alive: bool,
}

/// A response head's fields, kept as where they sit in the head's bytes. Portico's own
/// HTTP/1.1 server writes them to the client from there; a header map (a hash table with a
/// name and a value object per field, most of the cost of a response head) is built only
/// for hyper's server and HTTP/2 clients, by [`ResponseFields::header_map`].
#[derive(Debug, Clone, Default)]
pub(crate) struct ResponseFields {
    head: Bytes,
    fields: Vec<FieldAt>,
    /// The value of a content-length folded from several (see `frame_response`).
    folded_length: Bytes,
}

/// Where one field's name and value sit in the head's bytes, so that they can be cut out of
/// the frozen head once httparse's borrow of the buffer has ended.
#[derive(Debug, Clone, Copy)]
struct FieldAt {
    name: (usize, usize),
    /// `None`: the folded content-length.
    value: Option<(usize, usize)>,
}

impl ResponseFields {
    /// Name and value of each field, in the order received; names in the case received.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields.iter().map(|at| {
            let value = match at.value {
                Some((start, end)) => &self.head[start..end],
                None => &self.folded_length[..],
            };
            (&self.head[at.name.0..at.name.1], value)
        })
    }

    /// The fields as a header map; each value a zero-copy slice of the head.
    pub(crate) fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.fields.len());
        for at in &self.fields {
            // httparse lets through exactly the names and values `http` accepts (tokens;
            // visible bytes, spaces and tabs): nothing is dropped here.
            let Ok(name) = HeaderName::from_bytes(&self.head[at.name.0..at.name.1]) else {
                continue;
            };
            let value = match at.value {
                Some((start, end)) => self.head.slice(start..end),
                None => self.folded_length.clone(),
            };
            if let Ok(value) = HeaderValue::from_maybe_shared(value) {
                map.append(name, value);
            }
        }
        map
    }

    fn name(&self, at: &FieldAt) -> &[u8] {
        &self.head[at.name.0..at.name.1]
    }

    fn contains(&self, name: &[u8]) -> bool {
        self.fields
            .iter()
            .any(|at| self.name(at).eq_ignore_ascii_case(name))
    }

    fn remove(&mut self, name: &[u8]) {
        let head = &self.head;
        self.fields
            .retain(|at| !head[at.name.0..at.name.1].eq_ignore_ascii_case(name));
    }

    /// Replaces every content-length field with one of value `n`, where the first one was.
    fn fold_length(&mut self, n: u64) {
        let mut first = true;
        let head = &self.head;
        self.fields.retain_mut(|at| {
            if !head[at.name.0..at.name.1].eq_ignore_ascii_case(b"content-length") {
                return true;
            }
            at.value = None;
            std::mem::take(&mut first)
        });
        self.folded_length = Bytes::from(n.to_string());
    }
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// No body follows the head.
    Empty,
    /// Exactly this many bytes follow the head (never 0: that is `Empty`).
    Length(u64),
    /// Chunked: decode with a [`ChunkedDecoder`].
    Chunked,
    /// The body ends when the backend closes the connection.
    UntilClose,
}

/// The outcome of [`parse_response_head`].
#[derive(Debug)]
pub(crate) enum Parsed {
    Complete(ResponseHead),
    /// More bytes are needed.
    Partial,
}

/// What is wrong with a backend's response. Every variant is the backend's fault, and the
/// connection cannot be used again after any of them (its framing is lost).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResponseError {
    #[error("the backend's response head is not valid HTTP/1.x")]
    Malformed(#[source] httparse::Error),
    #[error(
        "the backend's response head is larger than {} bytes",
        MAX_RESPONSE_HEAD
    )]
    TooLarge,
    #[error(
        "the backend's response head has more than {} headers",
        MAX_RESPONSE_HEADERS
    )]
    TooManyHeaders,
    #[error("the backend's response has an invalid or conflicting content-length")]
    ContentLength,
    #[error("the backend's chunked body is malformed: {0}")]
    Chunk(&'static str),
    #[error("the backend's chunked body has a malformed trailer section")]
    Trailers(#[source] httparse::Error),
    /// Upgrade requests go through hyper's client; a 101 here answers a request that asked
    /// for none, and has no tunnel behind it (RFC 9110 §15.2.2).
    #[error("the backend switched protocols though the request asked for no upgrade")]
    UnaskedUpgrade,
}

/// Parses the response head at the start of `buf`. Interim 1xx responses are consumed and
/// skipped (the proxy does not forward them); a 101 is an error here (see
/// [`ResponseError::UnaskedUpgrade`]). On `Complete` the head's bytes are split off `buf`, and
/// whatever follows them (body bytes, even the next response) stays there.
pub(crate) fn parse_response_head(
    buf: &mut BytesMut,
    request_method: &Method,
) -> Result<Parsed, ResponseError> {
    loop {
        match parse_one_head(buf)? {
            None => return Ok(Parsed::Partial),
            Some(Head::Interim) => continue,
            Some(Head::Final(status, version, fields, framing)) => {
                return frame_response(status, version, fields, &framing, request_method)
                    .map(Parsed::Complete);
            }
        }
    }
}

enum Head {
    /// An interim 1xx response, already consumed.
    Interim,
    Final(StatusCode, Version, ResponseFields, FramingFields),
}

/// Parses one head off the front of `buf`; `None` when more bytes are needed.
fn parse_one_head(buf: &mut BytesMut) -> Result<Option<Head>, ResponseError> {
    let mut headers =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    // Only the first MAX_RESPONSE_HEAD bytes can hold an acceptable head, so a backend that
    // streams garbage never makes us rescan more than that.
    let window = &buf[..buf.len().min(MAX_RESPONSE_HEAD)];
    let mut parsed = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut parsed, window, &mut headers)
        .map_err(|e| match e {
            httparse::Error::TooManyHeaders => ResponseError::TooManyHeaders,
            e => ResponseError::Malformed(e),
        })?;
    let httparse::Status::Complete(head_len) = status else {
        return if buf.len() >= MAX_RESPONSE_HEAD {
            Err(ResponseError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let code = parsed
        .code
        .ok_or(ResponseError::Malformed(httparse::Error::Status))?;
    if code == 101 {
        return Err(ResponseError::UnaskedUpgrade);
    }
    if (100..200).contains(&code) {
        buf.advance(head_len);
        return Ok(Some(Head::Interim));
    }
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let status = StatusCode::from_u16(code)
        .map_err(|_| ResponseError::Malformed(httparse::Error::Status))?;
    let base = window.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        (start, start + s.len())
    };
    // Hop-by-hop fields are left out as they are read: a name compare per field, where
    // removing them afterwards would be a pass and a search for each.
    let mut framing = FramingFields::default();
    let mut fields = Vec::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let name = field.name.as_bytes();
        framing.note(name, field.value);
        if !headers::is_hop_by_hop_field(name, field.value) {
            fields.push(FieldAt {
                name: at(name),
                value: Some(at(field.value)),
            });
        }
    }
    let mut fields = ResponseFields {
        head: buf.split_to(head_len).freeze(),
        fields,
        folded_length: Bytes::new(),
    };
    for name in &framing.named {
        fields.remove(name.as_str().as_bytes());
    }
    Ok(Some(Head::Final(status, version, fields, framing)))
}

/// What the framing decision needs from a head's header fields, noted while the map is built,
/// so that deciding costs no lookups in it.
#[derive(Debug, Default)]
struct FramingFields {
    /// A `close` token in Connection.
    close: bool,
    /// A `keep-alive` token in Connection.
    keep_alive: bool,
    /// A transfer-encoding field is present.
    transfer_encoding: bool,
    /// The last transfer coding over every transfer-encoding field is `chunked`.
    chunked_last: bool,
    /// Content-length fields: none, one agreed valid value, or invalid/conflicting ones.
    content_length: ContentLength,
    /// Exactly one content-length field, of digits only (nothing to fold).
    content_length_plain: bool,
    /// Fields the Connection field names, besides the hop-by-hop ones that go anyway (empty,
    /// without an allocation, for the usual `keep-alive`).
    named: Vec<HeaderName>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ContentLength {
    #[default]
    Absent,
    Valid(u64),
    Invalid,
}

impl ContentLength {
    /// What the content-length fields say once `value`, one more of them, is read: every
    /// element of every field (repeated fields and comma-separated lists alike) must be the same
    /// valid decimal number.
    fn with(self, value: &[u8]) -> ContentLength {
        value.split(|&b| b == b',').fold(self, |length, element| {
            match (length, parse_decimal(headers::trim_ows(element))) {
                (ContentLength::Invalid, _) | (_, None) => ContentLength::Invalid,
                (ContentLength::Valid(l), Some(n)) if l != n => ContentLength::Invalid,
                (_, Some(n)) => ContentLength::Valid(n),
            }
        })
    }
}

impl FramingFields {
    fn note(&mut self, name: &[u8], value: &[u8]) {
        if name.eq_ignore_ascii_case(CONNECTION.as_str().as_bytes()) {
            for token in headers::list_elements(value) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                if let Some(name) = headers::connection_named(token) {
                    self.named.push(name);
                }
            }
        } else if name.eq_ignore_ascii_case(TRANSFER_ENCODING.as_str().as_bytes()) {
            self.transfer_encoding = true;
            if let Some(last) = headers::list_elements(value).last() {
                self.chunked_last = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(CONTENT_LENGTH.as_str().as_bytes()) {
            self.content_length_plain = self.content_length == ContentLength::Absent
                && !value.is_empty()
                && value.iter().all(u8::is_ascii_digit);
            self.content_length = self.content_length.with(value);
        }
    }
}

/// Decides the body framing and keep-alive of a final response (RFC 9112 section 6.3).
fn frame_response(
    status: StatusCode,
    version: Version,
    mut headers: ResponseFields,
    fields: &FramingFields,
    request_method: &Method,
) -> Result<ResponseHead, ResponseError> {
    let mut keep_alive = !fields.close && (version == Version::HTTP_11 || fields.keep_alive);
    let framing = if *request_method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        BodyFraming::Empty
    } else if fields.transfer_encoding {
        // Both framings at once is how request smuggling starts: transfer-encoding wins, the
        // content-length is not forwarded, and the connection is not trusted again. An
        // HTTP/1.0 message with transfer-encoding has faulty framing too (RFC 9112 6.1).
        if fields.content_length != ContentLength::Absent {
            headers.remove(CONTENT_LENGTH.as_str().as_bytes());
            keep_alive = false;
        }
        if version == Version::HTTP_10 {
            keep_alive = false;
        }
        if fields.chunked_last {
            BodyFraming::Chunked
        } else {
            BodyFraming::UntilClose
        }
    } else {
        match fields.content_length {
            ContentLength::Invalid => return Err(ResponseError::ContentLength),
            ContentLength::Absent => BodyFraming::UntilClose,
            ContentLength::Valid(n) => {
                // (Unless Connection named it: then it goes, as the other fields it names.)
                if !fields.content_length_plain
                    && headers.contains(CONTENT_LENGTH.as_str().as_bytes())
                {
                    // Repeated or list-valued: folded into one plain field, so that whoever
                    // reads the forwarded response sees a single, unambiguous length.
                    headers.fold_length(n);
                }
                if n == 0 {
                    BodyFraming::Empty
                } else {
                    BodyFraming::Length(n)
                }
            }
        }
    };
    if framing == BodyFraming::UntilClose {
        keep_alive = false;
    }
    Ok(ResponseHead {
        status,
        fields: headers,
        framing,
        keep_alive,
    })
}

/// The content-length of a message: `None` when there is none, an error unless every value
/// (repeated headers and comma-separated lists alike) is the same valid decimal number.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ResponseError> {
    let length = headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .fold(ContentLength::Absent, |length, value| {
            length.with(value.as_bytes())
        });
    match length {
        ContentLength::Absent => Ok(None),
        ContentLength::Valid(n) => Ok(Some(n)),
        ContentLength::Invalid => Err(ResponseError::ContentLength),
    }
}

/// Digits only: no sign, no whitespace, not empty, no overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = char::from(b).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Incremental decoder of a chunked body.
///
/// Line endings: the size line and the trailer section accept a bare LF as well as CRLF (as
/// hyper does; some old backends send bare LFs), but the CRLF after each chunk's data is
/// required exactly: that is where a length disagreement between two parsers would show, so
/// anything else there is an error rather than a guess.
#[derive(Debug, Default)]
pub(crate) struct ChunkedDecoder {
    state: DecoderState,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum DecoderState {
    /// Expecting a chunk size line.
    #[default]
    Size,
    /// Inside a chunk's data, with this many bytes still to come (never 0).
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: expecting the trailer section or the blank line.
    Trailers,
    /// The body has ended.
    Done,
}

/// One step of [`ChunkedDecoder::decode`].
#[derive(Debug)]
pub(crate) enum Chunk {
    /// Body bytes (never empty).
    Data(Bytes),
    /// The trailer section, when the body has one; `End` follows.
    Trailers(HeaderMap),
    /// The body has ended.
    End,
    /// Nothing decodable in the buffer yet.
    NeedMore,
}

/// What one state step did.
enum Step {
    /// Consumed some framing; try the next state.
    Continue,
    Yield(Chunk),
}

impl ChunkedDecoder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Decodes from the front of `buf`, consuming what it decodes. A call that can make
    /// progress never returns `NeedMore`: framing is consumed until data, trailers or the end
    /// come out, or the buffer runs dry.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Chunk, ResponseError> {
        loop {
            let step = match self.state {
                DecoderState::Size => self.size_line(buf)?,
                DecoderState::Data(remaining) => self.data(buf, remaining),
                DecoderState::DataEnd => self.data_end(buf)?,
                DecoderState::Trailers => self.trailers(buf)?,
                DecoderState::Done => Step::Yield(Chunk::End),
            };
            if let Step::Yield(chunk) = step {
                return Ok(chunk);
            }
        }
    }

    /// Bytes of the current chunk still to come (for size hints), 0 between chunks.
    pub(crate) fn in_chunk(&self) -> u64 {
        match self.state {
            DecoderState::Data(remaining) => remaining,
            _ => 0,
        }
    }

    fn size_line(&mut self, buf: &mut BytesMut) -> Result<Step, ResponseError> {
        let window = &buf[..buf.len().min(MAX_CHUNK_SIZE_LINE)];
        let Some(lf) = window.iter().position(|&b| b == b'\n') else {
            return if buf.len() >= MAX_CHUNK_SIZE_LINE {
                Err(ResponseError::Chunk(
                    "chunk size line is longer than 4096 bytes",
                ))
            } else {
                Ok(Step::Yield(Chunk::NeedMore))
            };
        };
        let line = window[..lf].strip_suffix(b"\r").unwrap_or(&window[..lf]);
        let size = parse_size_line(line)?;
        buf.advance(lf + 1);
        self.state = if size == 0 {
            DecoderState::Trailers
        } else {
            DecoderState::Data(size)
        };
        Ok(Step::Continue)
    }

    fn data(&mut self, buf: &mut BytesMut, remaining: u64) -> Step {
        if buf.is_empty() {
            return Step::Yield(Chunk::NeedMore);
        }
        let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let left = remaining - n as u64;
        self.state = if left == 0 {
            DecoderState::DataEnd
        } else {
            DecoderState::Data(left)
        };
        Step::Yield(Chunk::Data(buf.split_to(n).freeze()))
    }

    fn data_end(&mut self, buf: &mut BytesMut) -> Result<Step, ResponseError> {
        const MISSING: ResponseError = ResponseError::Chunk("missing CRLF after chunk data");
        match buf.get(..2) {
            Some(b"\r\n") => {
                buf.advance(2);
                self.state = DecoderState::Size;
                Ok(Step::Continue)
            }
            Some(_) => Err(MISSING),
            None if buf.first().is_none_or(|&b| b == b'\r') => Ok(Step::Yield(Chunk::NeedMore)),
            None => Err(MISSING),
        }
    }

    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Step, ResponseError> {
        let window = &buf[..buf.len().min(MAX_RESPONSE_HEAD)];
        let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let status = httparse::parse_headers(window, &mut fields).map_err(|e| match e {
            httparse::Error::TooManyHeaders => {
                ResponseError::Chunk("the trailer section has more than 100 fields")
            }
            e => ResponseError::Trailers(e),
        })?;
        let httparse::Status::Complete((len, fields)) = status else {
            return if buf.len() >= MAX_RESPONSE_HEAD {
                Err(ResponseError::Chunk(
                    "the trailer section is larger than 65536 bytes",
                ))
            } else {
                Ok(Step::Yield(Chunk::NeedMore))
            };
        };
        let trailers = trailer_map(fields)?;
        buf.advance(len);
        self.state = DecoderState::Done;
        Ok(Step::Yield(if trailers.is_empty() {
            Chunk::End
        } else {
            Chunk::Trailers(trailers)
        }))
    }
}

/// Trailers are rare and small: their values are copied rather than sliced.
fn trailer_map(fields: &[httparse::Header<'_>]) -> Result<HeaderMap, ResponseError> {
    let mut map = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| ResponseError::Trailers(httparse::Error::HeaderName))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| ResponseError::Trailers(httparse::Error::HeaderValue))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Parses `hex-size [BWS] [; extensions]` (the line ending already stripped); the extensions
/// are checked for control characters and otherwise ignored.
fn parse_size_line(line: &[u8]) -> Result<u64, ResponseError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ResponseError::Chunk("chunk size is not hexadecimal"));
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let digit = char::from(b).to_digit(16).unwrap_or_default();
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(digit)))
            .ok_or(ResponseError::Chunk("chunk size overflows u64"))?;
    }
    let rest = headers::trim_ows(&line[digits..]);
    match rest.split_first() {
        None => Ok(size),
        Some((b';', ext)) if ext.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)) => {
            Ok(size)
        }
        Some((b';', _)) => Err(ResponseError::Chunk("invalid chunk extension")),
        Some(_) => Err(ResponseError::Chunk("chunk size is not hexadecimal")),
    }
}

#[cfg(test)]
mod tests;
