//! Sending a routed request to a backend of its pool: pick, get a connection (pooled or new),
//! send, and on a connect failure try another backend (idempotent requests without a body, up
//! to the route's retries). A request is moved, never copied, on the common path: the
//! connection is obtained before the request is handed over, so a connect failure keeps it.

use std::future::Future;
use std::sync::Arc;

use http::header::HOST;
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use metrics::Counter;
use net_core::error_chain::ErrorChain;
use net_core::{ActiveConnection, hash};
use tokio::time::Instant;

use super::{Answer, ConnInfo, Hosts, is_idempotent, is_upgrade};
use crate::body::{AccessLine, BodyTooLarge, Inner, ProxyRequestBody};
use crate::headers::{self, Forwarding};
use crate::passed::PassedFields;
use crate::upstream::{H1Body, ResponseFields, UpstreamError};
use crate::{HttpListenerConfig, RouteTarget};

/// Attempts per request at most: the first plus up to 10 retries (config allows 0 to 10).
const MAX_ATTEMPTS: usize = 11;

/// Why no backend answered. Connect failures are the backend's and safe to retry elsewhere;
/// a failure after the request was sent is the backend's and is not retried.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    #[error("no backend of the pool is available")]
    NoBackend,
    #[error("could not connect to the backend")]
    Connect(#[source] UpstreamError),
    #[error("the backend failed to answer")]
    Backend(#[source] UpstreamError),
    #[error("no response before the route's timeout")]
    Timeout,
    #[error("the request body grew past the route's max_body_bytes")]
    BodyTooLarge,
    #[error("cannot build the request for the backend")]
    BadRequest(#[source] http::Error),
}

impl Failure {
    pub(super) fn answer(&self) -> (StatusCode, &'static str) {
        match self {
            Failure::NoBackend => (StatusCode::SERVICE_UNAVAILABLE, "no healthy backend\n"),
            Failure::Connect(_) | Failure::Backend(_) => (StatusCode::BAD_GATEWAY, "bad gateway\n"),
            Failure::Timeout => (StatusCode::GATEWAY_TIMEOUT, "gateway timeout\n"),
            Failure::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"),
            Failure::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad request\n"),
        }
    }

    fn from_backend(err: UpstreamError) -> Self {
        if caused_by::<BodyTooLarge>(&err) {
            Failure::BodyTooLarge
        } else {
            Failure::Backend(err)
        }
    }
}

/// A backend's answer: the response (its header map empty when the head's fields are in
/// `head`), and the backend kept counted as active until the body is over.
pub(super) struct Answered {
    pub response: Response<Inner>,
    /// The fields of a head read by the HTTP/1.1 codec (hop-by-hop ones already left out).
    pub head: Option<ResponseFields>,
    pub active: ActiveConnection,
}

/// A routed request on its way to a backend.
pub(super) struct Forward {
    pub call: Call,
    pub answering: Answering,
}

/// What the answer to the client needs once the backend answered.
pub(super) struct Answering {
    pub target: Arc<RouteTarget>,
    pub access: Option<Box<AccessLine>>,
    /// The client side of an upgrade (WebSocket), joined to the backend's after a 101.
    pub client_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

/// A request ready for a backend, and how to try it.
pub(super) struct Call {
    /// HTTP/1.1 in origin form, or HTTP/2 (the target URI is set per backend).
    req: Request<ProxyRequestBody>,
    /// Fields not in the map, written after its fields (none for HTTP/2 and upgrades).
    passed: PassedFields,
    /// The client's balancing key.
    key: u64,
    /// Attempts at most (1 + retries for retryable requests).
    count: usize,
    /// Idempotent, without a body, not an upgrade: it may be sent again.
    retryable: bool,
    upgrade: bool,
    /// The request carries a Host header (else the backend's address is sent as Host).
    has_host: bool,
    deadline: Instant,
}

/// Rewrites the request for the backend (headers, version, target) and wraps its body.
pub(super) fn prepare(
    req: super::ClientRequest,
    conn: &ConnInfo,
    config: &HttpListenerConfig,
    target: Arc<RouteTarget>,
    access: Option<Box<AccessLine>>,
    hosts: Hosts,
    started: Instant,
) -> Forward {
    let Hosts {
        routed: host,
        has_host_header: has_host,
    } = hosts;
    let mut req = req;
    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, super::ClientPayload { body, passed }) = req.into_parts();
    // Server-side extensions are for this hop only.
    parts.extensions.clear();
    headers::to_backend(
        &mut parts.headers,
        &Forwarding {
            client: conn.peer,
            client_ip: &conn.client_ip,
            tls: conn.tls,
            host: host.as_ref(),
            forwarded: config.forwarded,
            request_id: config.request_id.as_ref(),
            upgrade,
        },
    );
    drop(host);
    if let Some(host) = &target.host_rewrite {
        parts.headers.insert(HOST, host.clone());
    }
    if target.upstream.http2_client().is_some() {
        parts.version = Version::HTTP_2;
    } else {
        parts.version = Version::HTTP_11;
        to_origin_form(&mut parts.uri);
    }
    let retryable =
        is_idempotent(&parts.method) && body.as_ref().is_none_or(Body::is_end_stream) && !upgrade;
    let bytes_in = conn.shared.bytes_in.clone();
    let body = match body {
        Some(body) => ProxyRequestBody::new(body, target.max_body_bytes, bytes_in),
        None => ProxyRequestBody::empty(bytes_in),
    };
    let call = Call {
        req: Request::from_parts(parts, body),
        passed,
        key: hash::hash_ip(conn.peer.ip()),
        count: if retryable {
            (1 + target.retries as usize).min(MAX_ATTEMPTS)
        } else {
            1
        },
        retryable,
        upgrade,
        has_host: has_host || target.host_rewrite.is_some(),
        deadline: started + target.timeout,
    };
    Forward {
        call,
        answering: Answering {
            target,
            access,
            client_upgrade,
        },
    }
}

/// An HTTP/1.1 request carries only path and query (origin form), as the pooled client of
/// hyper-util sent it; the host is in the Host header.
fn to_origin_form(uri: &mut Uri) {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return;
    }
    *uri = match uri.path_and_query() {
        Some(pq) if pq.as_str() != "/" => Uri::from(pq.clone()),
        _ => Uri::default(),
    };
}

/// Sends the request to an HTTP/1.1 backend of the route's pool: on a pooled connection if one
/// is idle, else on a new one. A request that never reached the backend (a pooled connection
/// that failed as it was written), or a retryable one the backend closed the connection on
/// without a byte of answer (a keep-alive timeout racing the request), goes out again on a
/// fresh connection. An idempotent request without a body that could not connect is tried on
/// another backend, up to the route's retries. (One async fn with no async fn nested in it:
/// nesting would copy the inner future into this one's state.)
pub(super) fn h1(
    forward: Forward,
    client: Arc<ConnInfo>,
    started: Instant,
) -> impl Future<Output = Answer> {
    let Forward { call, answering } = forward;
    let Call {
        req,
        passed,
        key,
        count,
        retryable,
        upgrade,
        has_host,
        deadline,
    } = call;
    // The head is written from here on each attempt; the body is consumed by the first
    // attempt that sends one (retried requests have none).
    let (mut parts, mut body) = req.into_parts();
    async move {
        let target = &*answering.target;
        let pool = &target.pool;
        // A request without Host (HTTP/1.0) gets the backend's address, as hyper-util's client
        // set it.
        let set_host = !has_host;
        let mut tried = [usize::MAX; MAX_ATTEMPTS];
        let mut last = Failure::NoBackend;
        let result = 'sent: {
            'attempts: for attempt in 0..count {
                let Some(index) = pool.pick(key, &tried[..attempt]) else {
                    break;
                };
                tried[attempt] = index;
                let backend = pool.backend(index);
                let active = backend.track();
                let conns = target.conns(index);
                if set_host {
                    parts.headers.insert(HOST, target.host_value(index));
                }
                let mut pooled_allowed = !upgrade;
                loop {
                    let pooled = if pooled_allowed {
                        conns.checkout()
                    } else {
                        None
                    };
                    let (mut conn, connect_time) = match pooled {
                        Some(conn) => (conn, None),
                        None => {
                            let begun = Instant::now();
                            match tokio::time::timeout_at(deadline, conns.connect()).await {
                                Ok(Ok(conn)) => (conn, Some(begun.elapsed())),
                                Ok(Err(err)) => {
                                    pool.report_connect_failure(index);
                                    tracing::debug!(backend = %backend.addr(), error = %ErrorChain(&err), "connect to backend failed");
                                    last = Failure::Connect(err);
                                    continue 'attempts;
                                }
                                Err(_) => break 'sent Err(Failure::Timeout),
                            }
                        }
                    };
                    if upgrade {
                        let empty = ProxyRequestBody::empty(client.shared.bytes_in.clone());
                        let request =
                            Request::from_parts(parts, std::mem::replace(&mut body, empty));
                        // Boxed: upgrades are rare, and their future would make every
                        // request's future larger.
                        let sending = Box::pin(conn.send_upgrade(request));
                        let sent = tokio::time::timeout_at(deadline, sending).await;
                        let response = match sent {
                            Ok(Ok(response)) => response,
                            Ok(Err(err)) => {
                                let err = UpstreamError::Http1(err);
                                break 'sent Err(Failure::from_backend(err));
                            }
                            Err(_) => break 'sent Err(Failure::Timeout),
                        };
                        pool.report_connect_success(index, connect_time);
                        break 'sent Ok(Answered {
                            response: response.map(Inner::Incoming),
                            head: None,
                            active,
                        });
                    }
                    let reused = conn.is_reused();
                    let sent = tokio::time::timeout_at(
                        deadline,
                        conn.exchange(&parts, &passed, &mut body),
                    )
                    .await;
                    let failed = match sent {
                        Ok(Ok(head)) => {
                            pool.report_connect_success(index, connect_time);
                            let body =
                                H1Body::new(conn, head.framing, head.keep_alive, Arc::clone(conns));
                            let mut response = Response::new(Inner::H1(body));
                            // The backend's version stays with the backend (RFC 9110 §6.2):
                            // the client's connection speaks its own.
                            *response.status_mut() = head.status;
                            break 'sent Ok(Answered {
                                response,
                                head: Some(head.fields),
                                active,
                            });
                        }
                        Ok(Err(failed)) => failed,
                        Err(_) => break 'sent Err(Failure::Timeout),
                    };
                    if reused && (failed.unsent || (retryable && failed.no_response)) {
                        tracing::debug!(backend = %conns.addr(), error = %ErrorChain(&failed.error), "pooled connection was closed; sending on a fresh one");
                        pooled_allowed = false;
                        continue;
                    }
                    break 'sent Err(Failure::from_backend(failed.error));
                }
            }
            Err(last)
        };
        Ok(super::respond(result, answering, &client, started))
    }
}

/// HTTP/2 backends (gRPC) through hyper-util's pooled client, which wants absolute URIs.
pub(super) async fn h2(forward: Forward, client: Arc<ConnInfo>, started: Instant) -> Answer {
    let Forward { call, answering } = forward;
    let result = match answering.target.upstream.http2_client() {
        Some(upstream) => h2_send(upstream, call, &answering.target, &client.shared.bytes_in).await,
        None => Err(Failure::NoBackend),
    };
    Ok(super::respond(result, answering, &client, started))
}

async fn h2_send(
    client: &Client<HttpConnector, ProxyRequestBody>,
    call: Call,
    target: &RouteTarget,
    bytes_in: &Counter,
) -> Result<Answered, Failure> {
    let pool = &target.pool;
    let (parts, body) = call.req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut body = Some(body);
    let mut tried = [usize::MAX; MAX_ATTEMPTS];
    let mut last = Failure::NoBackend;
    let mut parts = Some(parts);
    for attempt in 0..call.count {
        let Some(index) = pool.pick(call.key, &tried[..attempt]) else {
            break;
        };
        tried[attempt] = index;
        let backend = pool.backend(index);
        let active = backend.track();
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(target.authority(index));
        uri.path_and_query = Some(path_and_query.clone());
        let uri = Uri::from_parts(uri).map_err(|e| Failure::BadRequest(e.into()))?;
        // The head is copied only when another attempt may follow.
        let head = if attempt + 1 < call.count {
            parts.clone()
        } else {
            parts.take()
        };
        let Some(head) = head else { break };
        let mut request = Request::from_parts(head, ());
        *request.uri_mut() = uri;
        let request_body = body
            .take()
            .unwrap_or_else(|| ProxyRequestBody::empty(bytes_in.clone()));
        let request = request.map(|()| request_body);
        let sent = tokio::time::timeout_at(call.deadline, client.request(request)).await;
        match sent {
            Ok(Ok(response)) => {
                pool.report_connect_success(index, None);
                return Ok(Answered {
                    response: response.map(Inner::Incoming),
                    head: None,
                    active,
                });
            }
            Ok(Err(err)) if err.is_connect() => {
                pool.report_connect_failure(index);
                tracing::debug!(backend = %backend.addr(), error = ?err, "connect to backend failed");
                last = Failure::Connect(UpstreamError::Http2(err));
            }
            Ok(Err(err)) => return Err(Failure::from_backend(UpstreamError::Http2(err))),
            Err(_) => return Err(Failure::Timeout),
        }
    }
    Err(last)
}

/// Whether `E` is somewhere in `err`'s source chain.
fn caused_by<E: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<E>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_go_out_in_origin_form() {
        let mut uri: Uri = "http://app.test/a/b?c=d".parse().unwrap();
        to_origin_form(&mut uri);
        assert_eq!(uri, "/a/b?c=d");
        let mut uri: Uri = "http://app.test".parse().unwrap();
        to_origin_form(&mut uri);
        assert_eq!(uri, "/");
        let mut uri: Uri = "/x?y".parse().unwrap();
        to_origin_form(&mut uri);
        assert_eq!(uri, "/x?y");
    }
}
