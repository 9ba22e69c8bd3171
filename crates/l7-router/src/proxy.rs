//! One proxied request: route -> pick -> forward (retrying idempotent requests that reached
//! no backend) -> stream the answer back. Failures become short local answers: 404 no route,
//! 413 body too large, 502 backend failed, 503 no backend available, 504 backend too slow.

mod forward;

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, UPGRADE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use net_core::error_chain::ErrorChain;
use tokio::time::Instant;
use tokio_util::either::Either;

use crate::ConfigSource;
use crate::body::{AccessLine, ClientBody, Finish, MetricsRef, ResponseBody};
use crate::headers;
use crate::passed::PassedFields;
use crate::server::{HeadClock, HttpListenerShared};

/// What a request knows about its client connection (one per connection, shared by its
/// requests: a request costs one reference count, not one per field).
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The client's address as an X-Forwarded-For value, made once per connection.
    pub client_ip: HeaderValue,
    pub shared: Arc<HttpListenerShared>,
    pub source: Arc<dyn ConfigSource>,
    /// When the connection began waiting for a request head (`header_timeout`).
    pub clock: HeadClock,
    /// A graceful stop reached the connection (Portico's own HTTP/1.1 path closes it once idle).
    stopping: AtomicBool,
    /// hyper serves the connection (not Portico's own HTTP/1.1 path): responses need their
    /// fields in a header map.
    served_by_hyper: AtomicBool,
}

impl ConnInfo {
    pub(crate) fn new(
        peer: SocketAddr,
        tls: bool,
        shared: Arc<HttpListenerShared>,
        source: Arc<dyn ConfigSource>,
    ) -> Self {
        let client_ip = HeaderValue::try_from(headers::client_ip(peer).to_string())
            .expect("an IP address is a valid header value");
        Self {
            peer,
            tls,
            client_ip,
            shared,
            source,
            clock: HeadClock::new(),
            stopping: AtomicBool::new(false),
            served_by_hyper: AtomicBool::new(false),
        }
    }

    /// The connection is to close once its request in progress, if any, is answered.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// hyper serves the connection from now on.
    pub(crate) fn hand_to_hyper(&self) {
        self.served_by_hyper.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_served_by_hyper(&self) -> bool {
        self.served_by_hyper.load(Ordering::Relaxed)
    }
}

/// What a request says about its host.
pub(crate) struct Hosts {
    /// The host it was routed on, if it had a valid one.
    pub routed: Option<RequestHost>,
    /// It carries a Host header (valid or not), or one is set from `routed`.
    pub has_host_header: bool,
}

/// The host a request is for, as routed and as passed on.
pub(crate) struct RequestHost {
    pub value: HeaderValue,
    /// It came from the request target (HTTP/2 `:authority`, an absolute-form target), not
    /// from the Host header, so the Host sent to the backend must be set to it.
    pub from_target: bool,
}

enum Routed {
    /// Answered by Portico itself.
    Answer(Response<ResponseBody>),
    Forward(forward::Forward),
}

/// What the service answers.
pub(crate) type Answer = Result<Response<ResponseBody>, Infallible>;

/// A request as a client connection hands it over: hyper's come with their streamed body and
/// every field in the map, those of Portico's own HTTP/1.1 path with none or a body already
/// read, and the fields Portico does not read passed on as they came.
pub(crate) type ClientRequest = Request<ClientPayload>;

/// What comes with a client's request besides its head's header map.
pub(crate) struct ClientPayload {
    pub body: Option<ClientBody>,
    /// Fields for the backend that are not in the map (see [`crate::passed`]).
    pub passed: PassedFields,
}

/// One request, start to end. Everything that needs no waiting (checks, routing, header
/// rewriting) is done here, before any future exists; what waits for the backend is one
/// future per upstream protocol, not nested in another (hyper moves the service future
/// around, and each level of nesting would add to its size and copy it once more).
pub(crate) fn handle(
    req: ClientRequest,
    conn: Arc<ConnInfo>,
) -> Either<Ready<Answer>, Either<impl Future<Output = Answer>, impl Future<Output = Answer>>> {
    let started = Instant::now();
    conn.clock.request_started();
    let forward = match route(req, &conn, started) {
        Routed::Answer(response) => return Either::Left(std::future::ready(Ok(response))),
        Routed::Forward(forward) => forward,
    };
    if forward.answering.target.upstream.http2_client().is_none() {
        Either::Right(Either::Left(forward::h1(forward, conn, started)))
    } else {
        // Boxed: the HTTP/2 client's future is twice the size of the HTTP/1.1 path's, and the
        // service future is as large as its largest variant.
        Either::Right(Either::Right(Box::pin(forward::h2(forward, conn, started))))
    }
}

/// The answer to the client once the backend answered (or failed to).
fn respond(
    result: Result<forward::Answered, forward::Failure>,
    forward: forward::Answering,
    conn: &Arc<ConnInfo>,
    started: Instant,
) -> Response<ResponseBody> {
    let shared = &conn.shared;
    let forward::Answering {
        target,
        access,
        client_upgrade,
    } = forward;
    match result {
        Ok(forward::Answered {
            mut response,
            head,
            active,
        }) => {
            if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) =
                (client_upgrade, response.status())
            {
                let backend_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(tunnel(client_upgrade, backend_upgrade));
                // The connection carries another protocol from now on: no more heads to wait for.
                conn.clock.turn_off();
            }
            let (mut parts, body) = response.into_parts();
            let access = access.map(|mut a| {
                a.backend = Some(active.backend().addr());
                a
            });
            let finish = Finish {
                started,
                status: parts.status.as_u16(),
                metrics: MetricsRef::Route(target),
                conn: Arc::clone(conn),
                active: Some(active),
                access,
            };
            let upgrade = parts.status == StatusCode::SWITCHING_PROTOCOLS;
            // The HTTP/1.1 client codec leaves hop-by-hop fields out of the heads it parses (and
            // never passes on a 101: upgrades go through hyper's client, as `Inner::Incoming`).
            // Its fields go to the client as they are on Portico's own server path; hyper's
            // needs them in the map.
            let head = match head {
                Some(fields) if !conn.is_served_by_hyper() => Some(fields),
                Some(fields) => {
                    parts.headers = fields.header_map();
                    None
                }
                None => {
                    headers::to_client(&mut parts.headers, upgrade);
                    None
                }
            };
            Response::from_parts(parts, ResponseBody::new(body, finish).with_head(head))
        }
        Err(failure) => {
            let (status, text) = failure.answer();
            tracing::debug!(listener = shared.name(), route = %target.name, error = %ErrorChain(&failure), "request failed");
            local(
                status,
                text,
                started,
                MetricsRef::Route(target),
                conn,
                access,
            )
        }
    }
}

/// Checks, routes and rewrites a request: a local answer, or a request ready for a backend.
fn route(mut req: ClientRequest, conn: &Arc<ConnInfo>, started: Instant) -> Routed {
    let shared = &conn.shared;
    let Some(config) = conn.source.http_listener(shared.name()) else {
        return Routed::Answer(local(
            StatusCode::SERVICE_UNAVAILABLE,
            "listener is shutting down\n",
            started,
            MetricsRef::Listener(Arc::clone(shared)),
            conn,
            None,
        ));
    };
    // The fields the config reads by name (a route's header match, the request id) are
    // looked for in the map.
    let mut passed = std::mem::take(&mut req.body_mut().passed);
    let moved = if passed.is_empty() {
        Ok(())
    } else {
        config
            .read_fields()
            .try_for_each(|name| passed.move_named(name, req.headers_mut()))
    };
    let mut host_headers = req.headers().get_all(HOST).iter();
    let host_header = host_headers.next();
    let more_than_one_host = host_headers.next().is_some();
    let host = request_host(&req, host_header);
    let host_str = host.as_ref().and_then(|h| h.value.to_str().ok());
    let has_host = host_header.is_some() || host.is_some();
    let access = config.access_log.then(|| {
        Box::new(AccessLine {
            listener: shared.name_arc(),
            route: shared.no_route_name(),
            client: conn.peer,
            method: req.method().clone(),
            host: host_str.unwrap_or_default().to_owned(),
            path: req
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            backend: None,
        })
    });
    let answer = |status, text, metrics, access| {
        Routed::Answer(local(status, text, started, metrics, conn, access))
    };

    if moved.is_err() {
        // Cannot happen for a head httparse read (it takes the fields `http` takes); a
        // request whose fields cannot be read is a bad one, whatever the reason.
        return answer(
            StatusCode::BAD_REQUEST,
            "bad request\n",
            MetricsRef::Listener(Arc::clone(shared)),
            access,
        );
    }
    if more_than_one_host {
        // RFC 9112 §3.2: more than one Host is a bad request (and a smuggling attempt).
        return answer(
            StatusCode::BAD_REQUEST,
            "more than one Host header\n",
            MetricsRef::Listener(Arc::clone(shared)),
            access,
        );
    }
    if let Some(problem) = host_problem(&req, host_header) {
        // RFC 9112 §3.2: a request without a host to route on, or with one that is not a host,
        // is a bad request.
        return answer(
            StatusCode::BAD_REQUEST,
            problem,
            MetricsRef::Listener(Arc::clone(shared)),
            access,
        );
    }
    if req.headers().len() + passed.len() > config.max_headers {
        // hyper enforces the count on HTTP/1.1 only; this holds for HTTP/2 too.
        return answer(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many headers\n",
            MetricsRef::Listener(Arc::clone(shared)),
            access,
        );
    }
    if config.redirect_https {
        return Routed::Answer(redirect(&req, host_str, started, conn, access));
    }

    let matched = config
        .routes
        .lookup(
            host_str.unwrap_or(""),
            req.uri().path(),
            req.method(),
            req.headers(),
        )
        .and_then(|m| config.targets.get(*m.target))
        .map(Arc::clone);
    let Some(target) = matched else {
        return answer(
            StatusCode::NOT_FOUND,
            "no route for this host and path\n",
            MetricsRef::Listener(Arc::clone(shared)),
            access,
        );
    };
    let access = access.map(|mut a| {
        a.route = Arc::clone(&target.name);
        a
    });

    if let (Some(limit), Some(length)) = (target.max_body_bytes, content_length(&req)) {
        if length > limit {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large\n",
                MetricsRef::Route(target),
                access,
            );
        }
    }

    // hyper's clients (HTTP/2 backends, upgrades) take every field from the map.
    if !passed.is_empty()
        && (target.upstream.http2_client().is_some() || is_upgrade(&req))
        && passed.move_all(req.headers_mut()).is_err()
    {
        return answer(
            StatusCode::BAD_REQUEST,
            "bad request\n",
            MetricsRef::Route(target),
            access,
        );
    }
    req.body_mut().passed = passed;
    let hosts = Hosts {
        routed: host,
        has_host_header: has_host,
    };
    Routed::Forward(forward::prepare(
        req, conn, &config, target, access, hosts, started,
    ))
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
fn request_host<B>(req: &Request<B>, host_header: Option<&HeaderValue>) -> Option<RequestHost> {
    if let Some(authority) = req.uri().authority() {
        let value = HeaderValue::from_str(authority.as_str()).ok()?;
        return Some(RequestHost {
            value,
            from_target: true,
        });
    }
    let value = host_header?;
    value.to_str().ok()?;
    Some(RequestHost {
        value: value.clone(),
        from_target: false,
    })
}

/// Why a request's host makes it a bad request, if it does. The host Portico routes on is the
/// request target's authority (absolute form, HTTP/2's `:authority`) or else the Host header,
/// and the backend is told the same one, so each must be `host [":" port]` and nothing a
/// backend could read as another host (`headers::is_host_value`); an empty Host too (RFC 9110
/// §4.2.1). A request with neither is bad unless it is HTTP/1.0 (RFC 9112 §3.2, RFC 9113 §8.3.1).
fn host_problem<B>(req: &Request<B>, host_header: Option<&HeaderValue>) -> Option<&'static str> {
    let authority = req.uri().authority();
    if authority.is_some_and(|a| !headers::is_host_value(a.as_str().as_bytes())) {
        return Some("invalid Host in the request target\n");
    }
    match host_header {
        Some(value) if !headers::is_host_value(value.as_bytes()) => Some("invalid Host header\n"),
        None if authority.is_none()
            && !matches!(req.version(), Version::HTTP_09 | Version::HTTP_10) =>
        {
            Some("a Host header is required\n")
        }
        _ => None,
    }
}

fn redirect<B>(
    req: &Request<B>,
    host: Option<&str>,
    started: Instant,
    conn: &Arc<ConnInfo>,
    access: Option<Box<AccessLine>>,
) -> Response<ResponseBody> {
    let Some(host) = host else {
        return local(
            StatusCode::BAD_REQUEST,
            "a Host header is required\n",
            started,
            MetricsRef::Listener(Arc::clone(&conn.shared)),
            conn,
            access,
        );
    };
    let host = strip_port(host);
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut response = local(
        StatusCode::PERMANENT_REDIRECT,
        "redirecting to https\n",
        started,
        MetricsRef::Listener(Arc::clone(&conn.shared)),
        conn,
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
    conn: &Arc<ConnInfo>,
    access: Option<Box<AccessLine>>,
) -> Response<ResponseBody> {
    let finish = Finish {
        started,
        status: status.as_u16(),
        metrics,
        conn: Arc::clone(conn),
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
