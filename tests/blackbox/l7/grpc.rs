//! gRPC-style traffic: a pool with `http2 = true` speaks h2c to its backends. A hyper HTTP/2
//! client calls through Portico (h2c) to a hyper HTTP/2 backend that answers like a gRPC server:
//! `content-type: application/grpc`, the request's messages echoed, then `grpc-status` in the
//! trailers. What must cross Portico: HTTP/2 to the backend, `te: trailers` to the backend, the
//! trailers back to the client, messages in both directions while the call is open, and a
//! trailers-only answer (`grpc-status` in the headers of an empty response).

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::mpsc;

use super::{backend_runtime, h2_connect, pool};
use crate::harness::{Portico, WAIT, connect};

/// The method the backend does not implement: it answers trailers-only, `grpc-status: 12`.
const UNIMPLEMENTED_PATH: &str = "/portico.test.Echo/Missing";
/// gRPC's UNIMPLEMENTED.
const GRPC_UNIMPLEMENTED: &str = "12";

/// What the backend saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    version: Version,
    path: String,
    headers: HeaderMap,
}

/// An h2c backend answering like a gRPC server (hyper's HTTP/2 server on its own runtime,
/// dropped with the backend). Every method echoes the request's body, frame by frame as it
/// arrives, then ends with the trailers `grpc-status: 0` and `x-echoed-bytes: N` (announced in
/// a `Trailer` header); the method [`UNIMPLEMENTED_PATH`] answers trailers-only.
struct GrpcBackend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl GrpcBackend {
    fn start() -> GrpcBackend {
        let (runtime, listener, addr) = backend_runtime();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (seen_by_server, connections_by_server) = (Arc::clone(&seen), Arc::clone(&connections));
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                connections_by_server.fetch_add(1, Ordering::SeqCst);
                let seen = Arc::clone(&seen_by_server);
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let answer = answer(req, &seen);
                    async move { Ok::<_, Infallible>(answer) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        GrpcBackend {
            addr,
            seen,
            connections,
            _runtime: runtime,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn answer(req: Request<Incoming>, seen: &Mutex<Vec<Seen>>) -> Response<GrpcAnswer> {
    seen.lock().unwrap().push(Seen {
        version: req.version(),
        path: req.uri().path().to_owned(),
        headers: req.headers().clone(),
    });
    let mut response = if req.uri().path() == UNIMPLEMENTED_PATH {
        let mut response = Response::new(GrpcAnswer::TrailersOnly);
        let headers = response.headers_mut();
        headers.insert("grpc-status", HeaderValue::from_static(GRPC_UNIMPLEMENTED));
        headers.insert("grpc-message", HeaderValue::from_static("no such method"));
        response
    } else {
        let mut response = Response::new(GrpcAnswer::Echo {
            request: req.into_body(),
            echoed: 0,
            trailers_sent: false,
        });
        // HTTP/2 needs no announcement; an HTTP/1.1 hop does (hyper's HTTP/1.1 codec sends
        // only the trailer fields that `Trailer` names).
        response.headers_mut().insert(
            "trailer",
            HeaderValue::from_static("grpc-status, x-echoed-bytes"),
        );
        response
    };
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}

/// The backend's response body.
enum GrpcAnswer {
    /// The request's data frames, then the trailers.
    Echo {
        request: Incoming,
        echoed: u64,
        trailers_sent: bool,
    },
    /// No body: the status is in the headers (HEADERS with END_STREAM).
    TrailersOnly,
}

impl Body for GrpcAnswer {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let GrpcAnswer::Echo {
            request,
            echoed,
            trailers_sent,
        } = &mut *self
        else {
            return Poll::Ready(None);
        };
        loop {
            if *trailers_sent {
                return Poll::Ready(None);
            }
            match Pin::new(&mut *request).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        *echoed += data.len() as u64;
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    // The client's own trailers (none here): not echoed.
                }
                Poll::Ready(None) => {
                    *trailers_sent = true;
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static("0"));
                    trailers.insert("x-echoed-bytes", HeaderValue::from(*echoed));
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GrpcAnswer::Echo { trailers_sent, .. } => *trailers_sent,
            GrpcAnswer::TrailersOnly => true,
        }
    }
}

/// A request body fed message by message while the call is open, as a streaming gRPC client
/// sends; it ends when the sender is dropped.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|message| message.map(|m| Ok(Frame::data(m))))
    }
}

/// A gRPC length-prefixed message: not compressed, 4-byte big-endian length, payload.
fn grpc_message(payload: &[u8]) -> Bytes {
    let mut message = BytesMut::with_capacity(5 + payload.len());
    message.extend_from_slice(&[0]);
    message.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    message.extend_from_slice(payload);
    message.freeze()
}

/// A gRPC client's HTTP/2 connection to Portico (h2c, prior knowledge), on its own runtime.
struct GrpcClient {
    runtime: tokio::runtime::Runtime,
    sender: hyper::client::conn::http2::SendRequest<ChannelBody>,
}

/// A call in progress: the request body's sender and the response, once it came.
struct Call {
    messages: Option<mpsc::Sender<Bytes>>,
    response: Response<Incoming>,
    /// Response body bytes read and not yet taken as a message.
    pending: BytesMut,
}

impl GrpcClient {
    fn connect(addr: SocketAddr) -> GrpcClient {
        let (runtime, sender) = h2_connect(addr);
        GrpcClient { runtime, sender }
    }

    /// Starts a call to `path` with gRPC's request headers (`te: trailers` included) and waits
    /// for the response headers.
    fn start(&mut self, path: &str) -> Call {
        let (messages, receiver) = mpsc::channel(4);
        let request = Request::builder()
            .method("POST")
            .uri(format!("http://grpc.test{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", "10S")
            .body(ChannelBody(receiver))
            .unwrap();
        let sender = &mut self.sender;
        let response = self.runtime.block_on(async {
            tokio::time::timeout(WAIT, async {
                sender.ready().await.expect("connection still open");
                sender.send_request(request).await.expect("response")
            })
            .await
            .expect("no response headers in time")
        });
        Call {
            messages: Some(messages),
            response,
            pending: BytesMut::new(),
        }
    }

    /// Sends one message on the open call.
    fn send(&self, call: &Call, payload: &[u8]) {
        let messages = call.messages.as_ref().expect("the request is still open");
        self.runtime.block_on(async {
            tokio::time::timeout(WAIT, messages.send(grpc_message(payload)))
                .await
                .expect("sending timed out")
                .expect("the request body is still read");
        });
    }

    /// Ends the request (END_STREAM on the client's side).
    fn close_send(&self, call: &mut Call) {
        call.messages = None;
    }

    /// Reads the next complete message of the response; fails when the body ends first.
    fn receive(&self, call: &mut Call) -> Vec<u8> {
        self.runtime.block_on(async {
            tokio::time::timeout(WAIT, async {
                loop {
                    if call.pending.len() >= 5 {
                        let len = u32::from_be_bytes(call.pending[1..5].try_into().unwrap());
                        let len = usize::try_from(len).unwrap();
                        if call.pending.len() >= 5 + len {
                            call.pending.advance(5);
                            return call.pending.split_to(len).to_vec();
                        }
                    }
                    let frame = call
                        .response
                        .body_mut()
                        .frame()
                        .await
                        .expect("the response ended before a whole message")
                        .expect("response body");
                    match frame.into_data() {
                        Ok(data) => call.pending.extend_from_slice(&data),
                        Err(frame) => panic!("trailers before a whole message: {frame:?}"),
                    }
                }
            })
            .await
            .expect("no response message in time")
        })
    }

    /// Reads the rest of the response: it must hold no further data; returns its trailers.
    fn finish(&self, call: &mut Call) -> HeaderMap {
        assert!(call.pending.is_empty(), "unread bytes: {:?}", call.pending);
        self.runtime.block_on(async {
            tokio::time::timeout(WAIT, async {
                let rest = call
                    .response
                    .body_mut()
                    .collect()
                    .await
                    .expect("response body");
                let trailers = rest.trailers().cloned();
                assert!(rest.to_bytes().is_empty(), "data after the last message");
                trailers.expect("the response has trailers")
            })
            .await
            .expect("no end of the response in time")
        })
    }
}

/// Portico with an h2c listener `web` in front of `backend`'s pool (`http2 = true`).
fn grpc_portico(backend: &GrpcBackend) -> Portico {
    Portico::start(&format!(
        r#"{pool}
[listeners.web]
bind = "127.0.0.1:0"
protocol = "http"
pool = "grpc"
"#,
        pool = pool("grpc", &[backend.addr], "http2 = true"),
    ))
}

#[test]
fn unary_calls_reach_the_backend_over_http2_with_te_trailers_and_trailers_come_back() {
    let backend = GrpcBackend::start();
    let portico = grpc_portico(&backend);
    let mut client = GrpcClient::connect(portico.addr("web"));

    for i in 0..3 {
        let payload = format!("hello number {i}");
        let mut call = client.start("/portico.test.Echo/Unary");
        client.send(&call, payload.as_bytes());
        client.close_send(&mut call);
        assert_eq!(call.response.status(), 200);
        assert_eq!(call.response.version(), Version::HTTP_2);
        assert_eq!(
            call.response.headers()["content-type"],
            "application/grpc",
            "{:?}",
            call.response.headers()
        );
        assert_eq!(client.receive(&mut call), payload.as_bytes());
        let trailers = client.finish(&mut call);
        assert_eq!(
            trailers.get("grpc-status").map(HeaderValue::as_bytes),
            Some(&b"0"[..]),
            "{trailers:?}"
        );
        let echoed = (5 + payload.len()).to_string();
        assert_eq!(
            trailers.get("x-echoed-bytes").map(HeaderValue::as_bytes),
            Some(echoed.as_bytes()),
            "{trailers:?}"
        );
    }

    let seen = backend.seen();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    for request in &seen {
        assert_eq!(request.version, Version::HTTP_2, "{request:#?}");
        assert_eq!(request.path, "/portico.test.Echo/Unary");
        assert_eq!(
            request.headers.get("te").map(HeaderValue::as_bytes),
            Some(&b"trailers"[..]),
            "te: trailers did not reach the backend: {request:#?}"
        );
        assert_eq!(request.headers["content-type"], "application/grpc");
        assert_eq!(request.headers["grpc-timeout"], "10S");
        assert_eq!(request.headers["x-forwarded-for"], "127.0.0.1");
    }
    // The calls shared one backend connection, as HTTP/2 allows.
    assert_eq!(backend.connections(), 1);
}

#[test]
fn a_bidirectional_stream_exchanges_messages_while_the_call_is_open() {
    let backend = GrpcBackend::start();
    let portico = grpc_portico(&backend);
    let mut client = GrpcClient::connect(portico.addr("web"));

    // Each answer must arrive before the next message is sent: nothing waits for either
    // body's end.
    let mut call = client.start("/portico.test.Echo/Chat");
    let mut sent = 0;
    for i in 0..5 {
        let payload = format!("ping {i}").repeat(i * 1000 + 1);
        client.send(&call, payload.as_bytes());
        sent += 5 + payload.len();
        assert_eq!(client.receive(&mut call), payload.as_bytes(), "message {i}");
    }
    client.close_send(&mut call);
    let trailers = client.finish(&mut call);
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    assert_eq!(trailers["x-echoed-bytes"], sent.to_string().as_str());
    assert_eq!(backend.seen()[0].version, Version::HTTP_2);
}

#[test]
fn a_trailers_only_answer_reaches_the_client() {
    let backend = GrpcBackend::start();
    let portico = grpc_portico(&backend);
    let mut client = GrpcClient::connect(portico.addr("web"));

    let mut call = client.start(UNIMPLEMENTED_PATH);
    client.close_send(&mut call);
    assert_eq!(call.response.status(), 200);
    let headers = call.response.headers().clone();
    assert_eq!(headers["grpc-status"], GRPC_UNIMPLEMENTED, "{headers:?}");
    assert_eq!(headers["grpc-message"], "no such method", "{headers:?}");
    assert!(
        call.response.body().is_end_stream(),
        "a trailers-only answer must end with its headers"
    );
    let rest = client.runtime.block_on(async {
        tokio::time::timeout(WAIT, call.response.body_mut().collect())
            .await
            .expect("no end of the response in time")
            .expect("response body")
    });
    assert!(rest.trailers().is_none());
    assert!(rest.to_bytes().is_empty());
}

/// Trailers are end to end (RFC 9110 §6.5, §7.6.1 does not list `Trailer` as hop-by-hop): an
/// HTTP/1.1 client that says `TE: trailers` gets them in the chunked body's trailer section.
#[test]
fn trailers_reach_an_http11_client_that_accepts_them() {
    let backend = GrpcBackend::start();
    let portico = grpc_portico(&backend);
    let mut s = connect(portico.addr("web"));
    let message = grpc_message(b"hi");
    let head = format!(
        "POST /portico.test.Echo/Unary HTTP/1.1\r\nHost: grpc.test\r\nTE: trailers\r\n\
         Content-Type: application/grpc\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        message.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&message).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200 "), "{answer:?}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{answer:?}"
    );
    let (_, trailer_section) = body.rsplit_once("\r\n0\r\n").expect("a last chunk");
    let trailers: Vec<&str> = trailer_section.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        trailers.contains(&"grpc-status: 0"),
        "no grpc-status trailer for the HTTP/1.1 client: {answer:?}"
    );
}
