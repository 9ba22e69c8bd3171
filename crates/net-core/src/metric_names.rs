//! Prometheus metric names (a contract: see DESIGN.md "Metrics"). Labels are noted per name.

/// Counter, labels `listener`.
pub const CONNECTIONS_TOTAL: &str = "portico_connections_total";
/// Gauge, labels `listener`.
pub const CONNECTIONS_ACTIVE: &str = "portico_connections_active";
/// Counter, labels `listener`, `direction` (`in` = client to backend, `out` = backend to client).
pub const BYTES_TOTAL: &str = "portico_bytes_total";
/// Counter, labels `listener`: connections closed at once because `max_connections` was reached.
pub const CONNECTIONS_REJECTED_TOTAL: &str = "portico_connections_rejected_total";
/// Gauge (0/1), labels `pool`, `backend`.
pub const BACKEND_UP: &str = "portico_backend_up";
/// Gauge, labels `pool`, `backend`.
pub const BACKEND_CONNECTIONS_ACTIVE: &str = "portico_backend_connections_active";
/// Histogram, labels `pool`, `backend`: time to establish a connection to the backend.
pub const BACKEND_CONNECT_DURATION_SECONDS: &str = "portico_backend_connect_duration_seconds";
/// Counter, labels `pool`, `backend`.
pub const BACKEND_CONNECT_ERRORS_TOTAL: &str = "portico_backend_connect_errors_total";
/// Counter, labels `listener`, `route`, `code`.
pub const HTTP_REQUESTS_TOTAL: &str = "portico_http_requests_total";
/// Histogram, labels `listener`, `route`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "portico_http_request_duration_seconds";
/// Counter, labels `result` (`ok` | `error`).
pub const CONFIG_RELOADS_TOTAL: &str = "portico_config_reloads_total";
