//! Per-route request metrics. A route registers a series the first time it counts one (a
//! `OnceLock` per common status code, then lock-free reads), so 10,000 configured routes do
//! not mean hundreds of thousands of registered series, and a reload does not re-register
//! them. A status code outside the common ones (rare) is looked up when it happens.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram};
use net_core::metric_names;

/// Status codes whose counters are cached per route.
const COMMON_CODES: [u16; 21] = [
    200, 201, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 408, 413, 429, 500, 502,
    503, 504,
];

#[derive(Debug)]
pub struct RouteMetrics {
    listener: String,
    route: String,
    by_code: [OnceLock<Counter>; COMMON_CODES.len()],
    duration: OnceLock<Histogram>,
}

impl RouteMetrics {
    pub fn new(listener: &str, route: &str) -> Self {
        Self {
            listener: listener.to_owned(),
            route: route.to_owned(),
            by_code: std::array::from_fn(|_| OnceLock::new()),
            duration: OnceLock::new(),
        }
    }

    fn counter(&self, code: u16) -> Counter {
        metrics::counter!(
            metric_names::HTTP_REQUESTS_TOTAL,
            "listener" => self.listener.clone(),
            "route" => self.route.clone(),
            "code" => code.to_string()
        )
    }

    pub fn record(&self, status: u16, elapsed: Duration) {
        self.duration
            .get_or_init(|| {
                metrics::histogram!(
                    metric_names::HTTP_REQUEST_DURATION_SECONDS,
                    "listener" => self.listener.clone(),
                    "route" => self.route.clone()
                )
            })
            .record(elapsed.as_secs_f64());
        match COMMON_CODES.iter().position(|&c| c == status) {
            Some(i) => self.by_code[i]
                .get_or_init(|| self.counter(status))
                .increment(1),
            None => self.counter(status).increment(1),
        }
    }
}
