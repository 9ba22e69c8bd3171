//! One proxied request: route -> pick -> forward (retrying idempotent requests that reached
//! no backend) -> stream the answer back. Failures become short local answers: 404 no route,
//! 413 body too large, 502 backend failed, 503 no backend available, 504 backend too slow.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, UPGRADE};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Incoming};
use net_core::error_chain::ErrorChain;
use net_core::{ActiveConnection, hash};
use tokio::time::Instant;

use crate::body::{AccessLine, BodyTooLarge, Finish, MetricsRef, RequestBody, ResponseBody};
use crate::headers::{self, Forwarding};
use crate::server::HttpListenerShared;
use crate::upstream::UpstreamBody;
use crate::{ConfigSource, HttpListenerConfig, RouteTarget};

/// Attempts per request at most: the first plus up to 10 retries (config allows 0 to 10).
const MAX_ATTEMPTS: usize = 11;

/// What a request knows about its client connection.
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

pub(crate) async fn handle(
    req: Request<Incoming>,
    conn: &ConnInfo,
    shared: &Arc<HttpListenerShared>,
    source: &dyn ConfigSource,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let Some(config) = source.http_listener(shared.name()) else {
        return local(
            StatusCode::SERVICE_UNAVAILABLE,
            "listener is shutting down\n",
            started,
            MetricsRef::Listener(Arc::clone(shared)),
            shared,
            None,
        );
    };
    let host = request_host(&req).map(str::to_owned);
    let access = config.access_log.then(|| AccessLine {
        listener: shared.name_arc(),
        route: shared.no_route_name(),
        client: conn.peer,
        method: req.method().clone(),
        host: host.clone().unwrap_or_default(),
        path: req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        backend: None,
    });

    if req.headers().get_all(HOST).iter().nth(1).is_some() {
        // RFC 9112 §3.2: more than one Host is a bad request (and a smuggling attempt).
        let m = MetricsRef::Listener(Arc::clone(shared));
        return local(
            StatusCode::BAD_REQUEST,
            "more than one Host header\n",
            started,
            m,
            shared,
            access,
        );
    }
    if req.headers().len() > config.max_headers {
        // hyper enforces the count on HTTP/1.1 only; this holds for HTTP/2 too.
        let m = MetricsRef::Listener(Arc::clone(shared));
        return local(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many headers\n",
            started,
            m,
            shared,
            access,
        );
    }
    if config.redirect_https {
        return redirect(&req, host.as_deref(), started, shared, access);
    }

    let matched = config
        .routes
        .lookup(
            host.as_deref().unwrap_or(""),
            req.uri().path(),
            req.method(),
            req.headers(),
        )
        .and_then(|m| config.targets.get(*m.target))
        .map(Arc::clone);
    let Some(target) = matched else {
        return local(
            StatusCode::NOT_FOUND,
            "no route for this host and path\n",
            started,
            MetricsRef::Listener(Arc::clone(shared)),
            shared,
            access,
        );
    };
    let access = access.map(|mut a| {
        a.route = Arc::clone(&target.name);
        a
    });
    let metrics = || MetricsRef::Route(Arc::clone(&target));

    if let (Some(limit), Some(length)) = (target.max_body_bytes, content_length(&req)) {
        if length > limit {
            return local(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large\n",
                started,
                metrics(),
                shared,
                access,
            );
        }
    }

    match forward(
        req,
        conn,
        &config,
        &target,
        host.as_deref(),
        shared,
        started,
    )
    .await
    {
        Ok((response, active)) => {
            let (mut parts, body) = response.into_parts();
            let access = access.map(|mut a| {
                a.backend = Some(active.backend().addr());
                a
            });
            let finish = Finish {
                started,
                status: parts.status.as_u16(),
                metrics: metrics(),
                bytes_out: shared.bytes_out.clone(),
                active: Some(active),
                access,
            };
            let upgrade = parts.status == StatusCode::SWITCHING_PROTOCOLS;
            headers::to_client(&mut parts.headers, upgrade);
            Response::from_parts(parts, ResponseBody::new(body, finish))
        }
        Err(failure) => {
            let (status, text) = failure.answer();
            tracing::debug!(listener = shared.name(), route = %target.name, error = %ErrorChain(&failure), "request failed");
            local(status, text, started, metrics(), shared, access)
        }
    }
}

/// Why no backend answered. Connect failures are the backend's and safe to retry elsewhere;
/// a failure after the request was sent is the backend's and is not retried.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("no backend of the pool is available")]
    NoBackend,
    #[error("could not connect to the backend")]
    Connect(#[source] hyper_util::client::legacy::Error),
    #[error("the backend failed to answer")]
    Backend(#[source] hyper_util::client::legacy::Error),
    #[error("no response before the route's timeout")]
    Timeout,
    #[error("the request body grew past the route's max_body_bytes")]
    BodyTooLarge,
    #[error("cannot build the request for the backend")]
    BadRequest(#[source] http::Error),
}

impl Failure {
    fn answer(&self) -> (StatusCode, &'static str) {
        match self {
            Failure::NoBackend => (StatusCode::SERVICE_UNAVAILABLE, "no healthy backend\n"),
            Failure::Connect(_) | Failure::Backend(_) => (StatusCode::BAD_GATEWAY, "bad gateway\n"),
            Failure::Timeout => (StatusCode::GATEWAY_TIMEOUT, "gateway timeout\n"),
            Failure::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"),
            Failure::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad request\n"),
        }
    }
}

/// Sends the request to a backend of the route's pool. An idempotent request without a body
/// that could not connect is tried again on another backend, up to the route's retries.
async fn forward(
    req: Request<Incoming>,
    conn: &ConnInfo,
    config: &HttpListenerConfig,
    target: &RouteTarget,
    host: Option<&str>,
    shared: &HttpListenerShared,
    started: Instant,
) -> Result<(Response<UpstreamBody>, ActiveConnection), Failure> {
    let mut req = req;
    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    // Server-side extensions are for this hop only.
    parts.extensions.clear();
    headers::to_backend(
        &mut parts.headers,
        &Forwarding {
            client: conn.peer,
            tls: conn.tls,
            host,
            forwarded: config.forwarded,
            request_id: config.request_id.as_ref(),
            upgrade,
        },
    );
    if let Some(host) = &target.host_rewrite {
        parts.headers.insert(HOST, host.clone());
    }
    parts.version = if target.upstream.settings().http2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));

    let retryable = is_idempotent(&parts.method) && body.is_end_stream() && !upgrade;
    let mut body =
        Some(RequestBody::new(body, target.max_body_bytes, shared.bytes_in.clone()).boxed());
    let attempts = if retryable {
        (1 + target.retries as usize).min(MAX_ATTEMPTS)
    } else {
        1
    };
    let deadline = started + target.timeout;
    let pool = &target.pool;
    let key = hash::hash_ip(conn.peer.ip());
    // Backends already tried for this request (no allocation: attempts are bounded).
    let mut tried = [usize::MAX; MAX_ATTEMPTS];
    let mut last = Failure::NoBackend;
    let mut parts = Some(parts);
    for attempt in 0..attempts {
        let Some(index) = pool.pick(key, &tried[..attempt]) else {
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
        let head = if attempt + 1 < attempts {
            parts.clone()
        } else {
            parts.take()
        };
        let Some(head) = head else { break };
        let mut request = Request::from_parts(head, ());
        *request.uri_mut() = uri;
        let request_body = body
            .take()
            .unwrap_or_else(|| Empty::new().map_err(|never| match never {}).boxed());
        let request = request.map(|()| request_body);
        let sent = tokio::time::timeout_at(deadline, target.upstream.client.request(request)).await;
        match sent {
            Ok(Ok(mut response)) => {
                pool.report_connect_success(index, None);
                if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) =
                    (client_upgrade, response.status())
                {
                    let backend_upgrade = hyper::upgrade::on(&mut response);
                    tokio::spawn(tunnel(client_upgrade, backend_upgrade));
                }
                let response = response.map(|b| b.map_err(Into::into).boxed());
                return Ok((response, active));
            }
            Ok(Err(err)) if err.is_connect() => {
                pool.report_connect_failure(index);
                tracing::debug!(backend = %backend.addr(), error = ?err, "connect to backend failed");
                last = Failure::Connect(err);
            }
            Ok(Err(err)) if caused_by::<BodyTooLarge>(&err) => return Err(Failure::BodyTooLarge),
            Ok(Err(err)) => return Err(Failure::Backend(err)),
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

/// Copies bytes both ways between an upgraded client connection and the backend's.
async fn tunnel(client: hyper::upgrade::OnUpgrade, backend: hyper::upgrade::OnUpgrade) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(pair) => pair,
        Err(err) => {
            tracing::debug!(error = %err, "upgrade failed");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut backend = hyper_util::rt::TokioIo::new(backend);
    if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
        tracing::debug!(error = %err, "upgraded connection ended");
    }
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(UPGRADE)
        && req
            .headers()
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The host a request is for: the URI's authority (HTTP/2, absolute-form) or the Host header.
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()))
}

fn redirect(
    req: &Request<Incoming>,
    host: Option<&str>,
    started: Instant,
    shared: &Arc<HttpListenerShared>,
    access: Option<AccessLine>,
) -> Response<ResponseBody> {
    let Some(host) = host else {
        return local(
            StatusCode::BAD_REQUEST,
            "a Host header is required\n",
            started,
            MetricsRef::Listener(Arc::clone(shared)),
            shared,
            access,
        );
    };
    let host = strip_port(host);
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut response = local(
        StatusCode::PERMANENT_REDIRECT,
        "redirecting to https\n",
        started,
        MetricsRef::Listener(Arc::clone(shared)),
        shared,
        access,
    );
    if let Ok(location) = HeaderValue::try_from(format!("https://{host}{path}")) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

fn strip_port(host: &str) -> &str {
    if let Some(end) = host.strip_prefix('[').and_then(|h| h.find(']')) {
        return &host[..end + 2];
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// A short answer made by Portico itself.
fn local(
    status: StatusCode,
    text: &'static str,
    started: Instant,
    metrics: MetricsRef,
    shared: &HttpListenerShared,
    access: Option<AccessLine>,
) -> Response<ResponseBody> {
    let finish = Finish {
        started,
        status: status.as_u16(),
        metrics,
        bytes_out: shared.bytes_out.clone(),
        active: None,
        access,
    };
    let mut response = Response::new(ResponseBody::text(text, finish));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(text.len()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_for_redirects() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
