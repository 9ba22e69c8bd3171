//! Body wrappers: the response body keeps the backend counted while it streams and, when it
//! ends (or the client goes away), records the request's metrics and access-log line; the
//! request body enforces the route's size limit while it streams.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use metrics::Counter;
use net_core::ActiveConnection;
use tokio::time::Instant;

use crate::metrics::RouteMetrics;
use crate::proxy::ConnInfo;
use crate::upstream::{BodyError, H1Body, ResponseFields};

/// What is written when a request is over.
pub(crate) struct Finish {
    pub started: Instant,
    pub status: u16,
    pub metrics: MetricsRef,
    /// The client connection: its listener's byte counter, and its header clock (the wait for
    /// the next request head starts when this response ends).
    pub conn: Arc<ConnInfo>,
    /// Holds the backend's active count until the response body is done.
    pub active: Option<ActiveConnection>,
    /// Boxed: most listeners log no access line, and the box keeps the body small.
    pub access: Option<Box<AccessLine>>,
}

/// The metrics a request counts into: its route's, or the listener's for unrouted answers.
pub(crate) enum MetricsRef {
    Route(Arc<crate::RouteTarget>),
    Listener(Arc<crate::server::HttpListenerShared>),
}

impl MetricsRef {
    fn get(&self) -> &RouteMetrics {
        match self {
            MetricsRef::Route(r) => &r.metrics,
            MetricsRef::Listener(l) => &l.unrouted,
        }
    }
}

pub(crate) struct AccessLine {
    pub listener: Arc<str>,
    pub route: Arc<str>,
    pub client: SocketAddr,
    pub method: Method,
    pub host: String,
    pub path: String,
    pub backend: Option<SocketAddr>,
}

/// The body sent to the client.
pub struct ResponseBody {
    inner: Inner,
    sent: u64,
    finish: Option<Finish>,
    /// The fields of the response head, when they are not in the response's header map (an
    /// HTTP/1.1 backend's, for Portico's own HTTP/1.1 server, which writes them as they are).
    head: Option<ResponseFields>,
}

/// Where the bytes of a response come from (an enum rather than a boxed body: no allocation
/// per response).
pub(crate) enum Inner {
    /// From a pooled HTTP/1.1 backend connection, which the body drives.
    H1(H1Body),
    /// From a connection driven elsewhere (HTTP/2 backends, upgrades).
    Incoming(Incoming),
    /// A short local answer, until it is sent.
    Text(Option<Bytes>),
}

impl Inner {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self {
            Inner::H1(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Inner::Incoming(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Inner::Text(text) => Poll::Ready(text.take().map(|t| Ok(Frame::data(t)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inner::H1(body) => body.is_end_stream(),
            Inner::Incoming(body) => body.is_end_stream(),
            Inner::Text(text) => text.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inner::H1(body) => body.size_hint(),
            Inner::Incoming(body) => body.size_hint(),
            Inner::Text(text) => SizeHint::with_exact(text.as_ref().map_or(0, |t| t.len() as u64)),
        }
    }
}

impl ResponseBody {
    pub(crate) fn new(inner: Inner, finish: Finish) -> Self {
        Self {
            inner,
            sent: 0,
            finish: Some(finish),
            head: None,
        }
    }

    pub(crate) fn with_head(mut self, head: Option<ResponseFields>) -> Self {
        self.head = head;
        self
    }

    /// The fields of the response head, if they are not in the response's header map.
    pub(crate) fn take_head(&mut self) -> Option<ResponseFields> {
        self.head.take()
    }

    /// A short local answer (404, 502...).
    pub(crate) fn text(text: &'static str, finish: Finish) -> Self {
        Self::new(
            Inner::Text(Some(Bytes::from_static(text.as_bytes()))),
            finish,
        )
    }

    fn complete(&mut self, aborted: bool) {
        let Some(f) = self.finish.take() else {
            return;
        };
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(f.started);
        f.metrics.get().record(f.status, elapsed);
        f.conn.shared.bytes_out.increment(self.sent);
        f.conn.clock.request_finished(now);
        if let Some(a) = f.access {
            tracing::info!(
                target: "access",
                listener = %a.listener,
                client = %a.client,
                method = %a.method,
                host = %a.host,
                path = %a.path,
                status = f.status,
                bytes = self.sent,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                backend = a.backend.map(|b| b.to_string()).as_deref().unwrap_or("-"),
                route = %a.route,
                aborted,
                "request"
            );
        }
        drop(f.active);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = self.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
                // hyper stops polling a body that says it has ended.
                if self.inner.is_end_stream() {
                    self.complete(false);
                }
            }
            Poll::Ready(None) => self.complete(false),
            Poll::Ready(Some(Err(_))) => self.complete(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // Not read to the end (unless the body was empty or ended without a last poll): the
        // client went away or the connection closed.
        let aborted = !self.inner.is_end_stream();
        self.complete(aborted);
    }
}

/// The body of a request on its way to a backend.
pub(crate) type ProxyRequestBody = RequestBody<ClientBody>;

/// A client's request body: streamed from hyper's connection, or, on Portico's own HTTP/1.1
/// path, the bytes of a `Content-Length` body that had all arrived with its head (nothing is
/// waited for or buffered to make it so).
#[derive(Debug)]
pub(crate) enum ClientBody {
    Streamed(Incoming),
    Read(Full<Bytes>),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Streamed(incoming) => Pin::new(incoming)
                .poll_frame(cx)
                .map_err(|e| -> BodyError { Box::new(e) }),
            Self::Read(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Streamed(incoming) => incoming.is_end_stream(),
            Self::Read(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Streamed(incoming) => incoming.size_hint(),
            Self::Read(full) => full.size_hint(),
        }
    }
}

/// The request body on its way to the backend: counted, and cut off past `limit` bytes.
pub(crate) struct RequestBody<B> {
    /// None: no body (a request sent again after its body was used up, which only happens for
    /// requests without one).
    inner: Option<B>,
    limit: Option<u64>,
    seen: u64,
    bytes_in: Counter,
}

impl<B> RequestBody<B> {
    pub fn new(inner: B, limit: Option<u64>, bytes_in: Counter) -> Self {
        Self {
            inner: Some(inner),
            limit,
            seen: 0,
            bytes_in,
        }
    }

    /// An empty body.
    pub fn empty(bytes_in: Counter) -> Self {
        Self {
            inner: None,
            limit: None,
            seen: 0,
            bytes_in,
        }
    }
}

impl ProxyRequestBody {
    /// The whole body, when it is already in memory (it came with its head, on Portico's own
    /// HTTP/1.1 path), within the limit and not polled yet: it can go out in the same write as
    /// the head. The body itself is left as it is (a clone of `Bytes` is a reference count).
    pub(crate) fn in_memory(&self) -> Option<Bytes> {
        let Some(ClientBody::Read(full)) = &self.inner else {
            return None;
        };
        let data = full.clone().into_inner()?;
        let within = self.limit.is_none_or(|limit| data.len() as u64 <= limit);
        (self.seen == 0 && within).then_some(data)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    self.seen += n;
                    self.bytes_in.increment(n);
                    if let Some(limit) = self.limit {
                        if self.seen > limit {
                            return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit }))));
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn read_body(data: &'static [u8], limit: Option<u64>) -> ProxyRequestBody {
        let full = Full::new(Bytes::from_static(data));
        ProxyRequestBody::new(ClientBody::Read(full), limit, Counter::noop())
    }

    /// Looking at a body that is in memory uses none of it: it is still all there to be sent
    /// (a request that did not go out keeps its body for the next attempt). Once polled, or
    /// over its limit, it is not offered.
    #[tokio::test]
    async fn a_body_in_memory_is_offered_without_being_used_up() {
        let mut body = read_body(b"hello", None);
        assert_eq!(body.in_memory().as_deref(), Some(&b"hello"[..]));
        assert_eq!(body.in_memory().as_deref(), Some(&b"hello"[..]));
        let frame = body.frame().await.expect("a frame").expect("data");
        assert_eq!(frame.into_data().unwrap(), "hello");
        assert_eq!(body.in_memory(), None, "polled");
        assert!(body.frame().await.is_none());

        assert_eq!(
            read_body(b"hello", Some(4)).in_memory(),
            None,
            "over the limit"
        );
        assert_eq!(
            read_body(b"hello", Some(5)).in_memory().as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(read_body(b"", None).in_memory(), None, "empty");
        assert_eq!(ProxyRequestBody::empty(Counter::noop()).in_memory(), None);
    }
}
