//! The admin server (DESIGN.md "Admin API"): the status page, /healthz, /readyz, /metrics and
//! the JSON API under /api/v1. It runs beside the traffic listeners and never touches them:
//! everything that changes state is a [`Command`] to the supervisor, which applies API calls,
//! SIGHUP reloads and health changes one at a time.

mod routes;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use net_core::lifecycle::{CancellationToken, TaskTracker};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::config::RawMember;
use crate::supervisor::Snapshot;

/// Largest request body the API accepts (a node list of a few thousand nodes fits).
pub const MAX_BODY: usize = 256 * 1024;
/// Slow or idle admin clients are cut after this long per request head.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// When the admin server stops, how long a request in progress has to finish.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// What an API call asks of the supervisor.
#[derive(Debug)]
pub enum Command {
    Status(oneshot::Sender<Value>),
    Reload(oneshot::Sender<ApiResult>),
    SetNodes {
        cluster: String,
        nodes: Vec<RawMember>,
        reply: oneshot::Sender<ApiResult>,
    },
    DrainNode {
        cluster: String,
        node: String,
        drain: bool,
        reply: oneshot::Sender<ApiResult>,
    },
    DrainBackend {
        pool: String,
        backend: String,
        drain: bool,
        reply: oneshot::Sender<ApiResult>,
    },
}

pub type ApiResult = Result<Value, ApiError>;

/// An API failure: the status code and a JSON body `{"error": ..., "details": [...]}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub details: Vec<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

/// What every admin request can see.
pub struct AdminContext {
    pub commands: mpsc::Sender<Command>,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub prometheus: PrometheusHandle,
    /// False until every listener is bound, and again from the start of a shutdown.
    pub ready: Arc<AtomicBool>,
}

impl AdminContext {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Serves the admin API on `listener` until `stop`; then requests in progress get up to
/// `CLOSE_GRACE` to finish (shutdown does not wait for them).
pub async fn serve(listener: TcpListener, ctx: Arc<AdminContext>, stop: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::debug!(error = %err, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ctx = Arc::clone(&ctx);
        let stop = stop.clone();
        tracker.spawn(async move {
            let service = service_fn(move |req| {
                let ctx = Arc::clone(&ctx);
                async move { Ok::<_, Infallible>(handle(req, &ctx, peer).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => {
                    // A request in progress gets its answer (with `Connection: close`); an idle
                    // keep-alive connection closes at once.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
                }
            }
        });
    }
    tracker.close();
}

async fn handle(
    req: Request<Incoming>,
    ctx: &AdminContext,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = routes::route(req, ctx).await;
    tracing::debug!(%peer, %method, %path, status = response.status().as_u16(), "admin request");
    response
}

pub fn json_response(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

pub fn error_response(err: &ApiError) -> Response<Full<Bytes>> {
    let mut value = serde_json::json!({ "error": err.message });
    if !err.details.is_empty() {
        value["details"] = Value::from(err.details.clone());
    }
    json_response(err.status, &value)
}

pub fn text_response(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
