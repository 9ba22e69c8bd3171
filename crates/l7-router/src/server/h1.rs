//! Portico's own HTTP/1.1 server path, for the request an ingress sees most: HTTP/1.1, no body
//! (or a small one that came with its head), no upgrade, on a kept-alive connection. It reads
//! the head, routes and forwards it as hyper's path does (the same [`proxy::handle`]), and
//! writes the answer with the response head built straight from the backend's fields: no
//! dispatcher, no service future moved around, no per-request wake-ups but the sockets'.
//!
//! The first request it does not serve (see [`head::parse_request`]) ends it: the connection
//! and the bytes read so far go to hyper, which serves that request and the rest of the
//! connection, and gives every error answer (400, 431, ...) exactly as before. A graceful stop
//! closes an idle connection, and answers a request in progress with `connection: close`.

pub(crate) mod head;

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Poll, ready};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, Method, Response};
use http_body_util::Full;
use hyper::body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use head::{BodyLength, Framing, Parsed};

use crate::body::{ClientBody, ResponseBody};
use crate::proxy::{self, ClientPayload, ConnInfo};
use crate::upstream::{encode_chunk_header, encode_last_chunk};

/// The read buffer of a connection starts this large (hyper's too).
const READ_BUF: usize = super::MIN_HTTP1_BUFFER;
/// The write buffer starts this large (a response head), and is brought back to it after a
/// response that grew it past [`WRITE_BUF_KEPT`], so an idle connection holds no more.
const WRITE_BUF: usize = 1024;
const WRITE_BUF_KEPT: usize = 16 * 1024;
/// A body frame up to this size is copied behind the head (or its chunk header) and goes out
/// in the same write; a larger one is written from where it is.
const COPY_FRAME: usize = 16 * 1024;
/// Ready frames are gathered for one write up to about this much.
const MAX_PENDING: usize = 64 * 1024;

/// How the connection left this path.
pub(super) enum Ended<I> {
    /// It is over (closed by either side, timed out, failed or stopped).
    Closed,
    /// Hyper serves the rest of it, starting with the bytes read so far.
    HandOver {
        io: I,
        read: Bytes,
        /// This path served a request on it before (it is an HTTP/1.1 connection then, and
        /// stays one).
        served: bool,
    },
}

/// What a request asked of its answer.
#[derive(Debug, Clone, Copy)]
struct Asked {
    /// It is a HEAD request: the answer has no body.
    head: bool,
    /// The connection closes after the answer (`connection: close` is sent).
    close: bool,
    /// It takes trailer fields (TE: trailers).
    trailers: bool,
}

/// The limits of request heads, from the listener's config.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

/// Serves requests on `io` until the connection ends or a request comes that hyper must serve.
pub(super) async fn serve<I>(mut io: I, conn: Arc<ConnInfo>, limits: Limits) -> Ended<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let mut out = Vec::with_capacity(WRITE_BUF);
    let mut served_one = false;
    loop {
        let served = loop {
            // (Nothing to parse in an empty buffer: the usual case between two requests.)
            if !buf.is_empty() {
                match head::parse_request(&mut buf, limits.max_header_bytes, limits.max_headers) {
                    Parsed::Serve(served) => break served,
                    Parsed::HandOver => {
                        return Ended::HandOver {
                            io,
                            read: buf.freeze(),
                            served: served_one,
                        };
                    }
                    Parsed::Partial => {}
                }
            }
            if !read_head(&mut io, &mut buf, &conn).await {
                return Ended::Closed;
            }
        };
        served_one = true;
        let mut asked = Asked {
            head: served.request.method() == Method::HEAD,
            close: served.close,
            trailers: served.takes_trailers,
        };
        let payload = ClientPayload {
            body: served.body.map(|b| ClientBody::Read(Full::new(b))),
            passed: served.passed,
        };
        let handling = pin!(proxy::handle(
            served.request.map(|()| payload),
            Arc::clone(&conn)
        ));
        let Some(Ok(mut response)) = answer_or_client_gone(handling, &mut io, &mut buf).await
        else {
            return Ended::Closed;
        };
        asked.close |= conn.is_stopping();
        let kept = match write_response(&mut io, &mut response, asked, &mut out).await {
            Ok(kept) => kept,
            Err(err) => {
                tracing::debug!(listener = conn.shared.name(), peer = %conn.peer, error = %err, "client connection ended with an error");
                false
            }
        };
        if out.capacity() > WRITE_BUF_KEPT {
            out = Vec::with_capacity(WRITE_BUF);
        }
        if !kept || asked.close || conn.is_stopping() {
            let _ = io.shutdown().await;
            return Ended::Closed;
        }
    }
}

/// Reads more of a request head into `buf`: false when the connection is over (closed by the
/// client, a read error, `header_timeout` passed, or a stop while it waits for a new request).
async fn read_head<I>(io: &mut I, buf: &mut BytesMut, conn: &ConnInfo) -> bool
where
    I: AsyncRead + Unpin,
{
    poll_fn(|cx| {
        if buf.is_empty() && conn.is_stopping() {
            return Poll::Ready(false);
        }
        make_room(buf);
        match ready!(tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf)) {
            Ok(0) | Err(_) => Poll::Ready(false),
            Ok(_) => Poll::Ready(true),
        }
    })
    .await
}

/// Makes room to read into, when little is left. A head split off the buffer keeps its
/// bytes (the request's header values are slices of them), so the room shrinks request by
/// request, and a new buffer comes every few dozen requests, not every one.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_BUF / 4 {
        buf.reserve(READ_BUF);
    }
}

/// Waits for the answer to a request; `None` if the client closed the connection first, as
/// hyper drops a request whose client went away (the backend exchange is cancelled with it).
/// Pipelined bytes that come meanwhile stay in `buf` for the next request.
async fn answer_or_client_gone<F, I>(
    mut handling: Pin<&mut F>,
    io: &mut I,
    buf: &mut BytesMut,
) -> Option<F::Output>
where
    F: Future,
    I: AsyncRead + Unpin,
{
    poll_fn(|cx| {
        if let Poll::Ready(answer) = handling.as_mut().poll(cx) {
            return Poll::Ready(Some(answer));
        }
        // Only while nothing is buffered (hyper looks no further either): a pipelining client
        // is still there.
        if buf.is_empty() {
            make_room(buf);
            if let Poll::Ready(Ok(0) | Err(_)) =
                tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf)
            {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    })
    .await
}

/// Writes `response` to the client: true if the connection can carry another request.
async fn write_response<I>(
    io: &mut I,
    response: &mut Response<ResponseBody>,
    asked: Asked,
    out: &mut Vec<u8>,
) -> io::Result<bool>
where
    I: AsyncWrite + Unpin,
{
    let status = response.status();
    let body = response.body_mut();
    let length = if body.is_end_stream() {
        BodyLength::Ended
    } else {
        body.size_hint()
            .exact()
            .map_or(BodyLength::Unknown, BodyLength::Exact)
    };
    out.clear();
    let (head_request, close) = (asked.head, asked.close);
    let head = match body.take_head() {
        // An HTTP/1.1 backend's fields, as it sent them.
        Some(fields) => {
            head::encode_response_head(status, fields.iter(), head_request, length, close, out)
        }
        None => {
            let fields = response
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
            head::encode_response_head(status, fields, head_request, length, close, out)
        }
    };
    let body = response.body_mut();
    let mut writer = BodyWriter {
        framing: head.framing,
        trailers: if asked.trailers {
            head.trailers
        } else {
            Vec::new()
        },
        sent: 0,
    };
    if writer.framing == Framing::Length(0) {
        // No body goes out (HEAD, 204, 304, an empty one): it is not read either.
        write_out(io, out).await?;
        return Ok(true);
    }
    // Frames that are ready go out with the head (and with each other) in one write; what is
    // buffered is written before waiting for more, unless the rest of a length-framed body is
    // small enough to be copied behind it anyway: a backend that writes a small response's head
    // and body separately (nginx with sendfile does) then costs one write, not two, and the
    // client gets one segment (nginx's postpone_output does the same). A body that streams
    // (chunked: server-sent events, gRPC-Web) is never held back.
    loop {
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !writer.rest_fits_behind(out) {
                    write_out(io, out).await?;
                }
                poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
            }
        };
        let frame = match frame {
            None => None,
            Some(Ok(frame)) => Some(frame),
            Some(Err(err)) => {
                tracing::debug!(error = %err, "response body failed; closing the client connection");
                write_out(io, out).await?;
                return Ok(false);
            }
        };
        let whole = match frame.map(Frame::into_data) {
            Some(Ok(data)) => {
                writer.data(data, io, out).await?;
                if !body.is_end_stream() {
                    continue;
                }
                writer.end(None, out)
            }
            // Trailers end a body.
            Some(Err(frame)) => writer.end(frame.into_trailers().ok().as_ref(), out),
            None => writer.end(None, out),
        };
        write_out(io, out).await?;
        return Ok(whole);
    }
}

/// Writes and flushes what `out` holds, and clears it.
async fn write_out<I: AsyncWrite + Unpin>(io: &mut I, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    io.flush().await
}

/// Frames a response body for the wire.
struct BodyWriter {
    framing: Framing,
    /// The trailer fields the head announced: the only ones that go out after a chunked body.
    trailers: Vec<HeaderName>,
    sent: u64,
}

impl BodyWriter {
    /// Frames `data` behind what `out` holds (a large frame is written from where it is).
    async fn data<I>(&mut self, mut data: Bytes, io: &mut I, out: &mut Vec<u8>) -> io::Result<()>
    where
        I: AsyncWrite + Unpin,
    {
        if data.is_empty() {
            return Ok(());
        }
        match self.framing {
            Framing::Length(n) => {
                // Never more than the head announced: the rest would be read as a response.
                let room = usize::try_from(n - self.sent).unwrap_or(usize::MAX);
                data.truncate(room);
                self.sent += data.len() as u64;
                put(data, io, out).await
            }
            Framing::Chunked => {
                self.sent += data.len() as u64;
                encode_chunk_header(data.len(), out);
                put(data, io, out).await?;
                out.extend_from_slice(b"\r\n");
                Ok(())
            }
        }
    }

    /// Whether some of a length-framed body is still to come and its rest goes into `out`
    /// behind what it holds (each frame of it is copied, none written from where it is), so
    /// waiting for it before writing costs the client nothing but the wait for bytes it needs
    /// anyway. A body that is all there is never held: an HTTP/2 backend's stream may end
    /// long after its last byte.
    fn rest_fits_behind(&self, out: &[u8]) -> bool {
        match self.framing {
            Framing::Length(n) if n > self.sent => {
                usize::try_from(n - self.sent).is_ok_and(|rest| out.len() + rest <= COPY_FRAME)
            }
            _ => false,
        }
    }

    /// Ends the body in `out`: true if it was whole (a length body cut short leaves the
    /// connection unusable, its framing lost).
    fn end(&mut self, trailers: Option<&HeaderMap>, out: &mut Vec<u8>) -> bool {
        match self.framing {
            Framing::Chunked => {
                // Only the trailer fields the head announced (rare: the map is built then).
                let announced = trailers.map(|all| {
                    all.iter()
                        .filter(|(name, _)| self.trailers.contains(name))
                        .map(|(name, value)| (name.clone(), value.clone()))
                        .collect::<HeaderMap>()
                });
                encode_last_chunk(announced.as_ref(), out);
                true
            }
            Framing::Length(n) => self.sent == n,
        }
    }
}

/// Appends `data` to `out`, or, when large, writes `out` and then `data` from where it is.
async fn put<I: AsyncWrite + Unpin>(data: Bytes, io: &mut I, out: &mut Vec<u8>) -> io::Result<()> {
    if data.len() <= COPY_FRAME && out.len() < MAX_PENDING {
        out.extend_from_slice(&data);
        return Ok(());
    }
    io.write_all(out).await?;
    out.clear();
    io.write_all(&data).await
}

#[cfg(test)]
mod tests;
