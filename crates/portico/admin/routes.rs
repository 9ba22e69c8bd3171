//! Routing of admin requests: open endpoints, /metrics, and the authenticated /api/v1.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::{
    AdminContext, ApiError, Command, MAX_BODY, error_response, json_response, text_response,
};
use crate::config::RawMember;

const STATUS_PAGE: &str = include_str!("status.html");

pub async fn route(req: Request<Incoming>, ctx: &AdminContext) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/" | "/index.html" => only_get(&req).unwrap_or_else(|| {
            text_response(StatusCode::OK, "text/html; charset=utf-8", STATUS_PAGE)
        }),
        "/healthz" => {
            only_get(&req).unwrap_or_else(|| text_response(StatusCode::OK, "text/plain", "ok\n"))
        }
        "/readyz" => only_get(&req).unwrap_or_else(|| {
            if ctx.is_ready() {
                text_response(StatusCode::OK, "text/plain", "ready\n")
            } else {
                text_response(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n")
            }
        }),
        "/metrics" => {
            if let Some(r) = only_get(&req) {
                return r;
            }
            let protect = ctx.snapshot.load().config.admin.protect_metrics;
            if protect && !authorized(&req, ctx) {
                return unauthorized();
            }
            text_response(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                ctx.prometheus.render(),
            )
        }
        p if p == "/api/v1" || p.starts_with("/api/v1/") => {
            if !authorized(&req, ctx) {
                return unauthorized();
            }
            match api(req, ctx, &p["/api/v1".len()..]).await {
                Ok(r) => r,
                Err(e) => error_response(&e),
            }
        }
        _ => error_response(&ApiError::not_found(format!("no such page: {path}"))),
    }
}

fn only_get(req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    (req.method() != Method::GET && req.method() != Method::HEAD).then(|| method_not_allowed("GET"))
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut r = error_response(&ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}"),
    ));
    r.headers_mut()
        .insert(ALLOW, hyper::header::HeaderValue::from_static(allow));
    r
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut r = error_response(&ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token (Authorization: Bearer <admin.token_file contents>)",
    ));
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer realm=\"portico\""),
    );
    r
}

fn authorized(req: &Request<Incoming>, ctx: &AdminContext) -> bool {
    let snapshot = ctx.snapshot.load();
    let Some(token) = &snapshot.config.admin.token else {
        return true;
    };
    // The scheme name is case-insensitive (RFC 7235 §2.1).
    req.headers()
        .get(AUTHORIZATION)
        .map(|v| v.as_bytes())
        .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
        .is_some_and(|v| token.matches(&v[7..]))
}

/// `/api/v1` routes; `rest` is the path after `/api/v1`.
async fn api(
    req: Request<Incoming>,
    ctx: &AdminContext,
    rest: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect::<Result<_, _>>()?;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match (segments.as_slice(), &method) {
        (["status"], &Method::GET) => {
            let (tx, rx) = oneshot::channel();
            let status = ask(ctx, Command::Status(tx), rx).await?;
            Ok(json_response(StatusCode::OK, &status))
        }
        (["status"], _) => Ok(method_not_allowed("GET")),
        (["reload"], &Method::POST) => {
            let (tx, rx) = oneshot::channel();
            let done = ask(ctx, Command::Reload(tx), rx).await??;
            Ok(json_response(StatusCode::OK, &done))
        }
        (["reload"], _) => Ok(method_not_allowed("POST")),
        (["clusters", cluster, "nodes"], &Method::PUT) => {
            let body: NodesBody = json_body(req).await?;
            let (tx, rx) = oneshot::channel();
            let command = Command::SetNodes {
                cluster: (*cluster).to_owned(),
                nodes: body.nodes,
                reply: tx,
            };
            let done = ask(ctx, command, rx).await??;
            Ok(json_response(StatusCode::OK, &done))
        }
        (["clusters", _, "nodes"], _) => Ok(method_not_allowed("PUT")),
        (
            [
                "clusters",
                cluster,
                "nodes",
                node,
                action @ ("drain" | "enable"),
            ],
            &Method::POST,
        ) => {
            let (tx, rx) = oneshot::channel();
            let command = Command::DrainNode {
                cluster: (*cluster).to_owned(),
                node: (*node).to_owned(),
                drain: *action == "drain",
                reply: tx,
            };
            let done = ask(ctx, command, rx).await??;
            Ok(json_response(StatusCode::OK, &done))
        }
        (
            [
                "pools",
                pool,
                "backends",
                backend,
                action @ ("drain" | "enable"),
            ],
            &Method::POST,
        ) => {
            let (tx, rx) = oneshot::channel();
            let command = Command::DrainBackend {
                pool: (*pool).to_owned(),
                backend: (*backend).to_owned(),
                drain: *action == "drain",
                reply: tx,
            };
            let done = ask(ctx, command, rx).await??;
            Ok(json_response(StatusCode::OK, &done))
        }
        (
            ["clusters", _, "nodes", _, "drain" | "enable"]
            | ["pools", _, "backends", _, "drain" | "enable"],
            _,
        ) => Ok(method_not_allowed("POST")),
        _ => Err(ApiError::not_found(format!(
            "no such API route: /api/v1{rest}"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodesBody {
    nodes: Vec<RawMember>,
}

/// Sends a command to the supervisor and waits for its answer.
async fn ask<T>(
    ctx: &AdminContext,
    command: Command,
    rx: oneshot::Receiver<T>,
) -> Result<T, ApiError> {
    let unavailable = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "portico is shutting down");
    ctx.commands
        .send(command)
        .await
        .map_err(|_| unavailable())?;
    rx.await.map_err(|_| unavailable())
}

/// Reads a JSON body: `Content-Type: application/json`, at most `MAX_BODY` bytes.
async fn json_body<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be application/json, not {content_type:?}"),
        ));
    }
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|err| {
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {MAX_BODY} bytes"),
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, format!("reading the body: {err}"))
            }
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|err| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("malformed JSON body: {err}"),
        )
    })
}

/// Decodes `%XX` escapes in a path segment (IPv6 backends arrive as `%5B%3A%3A1%5D%3A80`).
fn percent_decode(segment: &str) -> Result<String, ApiError> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("bad %-escape in {segment:?}"),
                    )
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("{segment:?} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("%5B%3A%3A1%5D%3A80").unwrap(), "[::1]:80");
        assert_eq!(percent_decode("10.0.0.1:30080").unwrap(), "10.0.0.1:30080");
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%ff").is_err());
    }
}
