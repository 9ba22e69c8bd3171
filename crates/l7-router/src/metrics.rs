//! Per-route request metrics with handles registered once, when the snapshot is built: the
//! request path only indexes a small array (a status code outside it, rare, is registered then).

use std::time::Duration;

use metrics::{Counter, Histogram};
use net_core::metric_names;

/// Status codes whose counters are registered up front.
const COMMON_CODES: [u16; 20] = [
    200, 201, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 408, 413, 429, 500, 502,
    503,
];

#[derive(Debug)]
pub struct RouteMetrics {
    listener: String,
    route: String,
    by_code: Vec<(u16, Counter)>,
    timeout_504: Counter,
    duration: Histogram,
}

impl RouteMetrics {
    pub fn new(listener: &str, route: &str) -> Self {
        let counter = |code: u16| {
            metrics::counter!(
                metric_names::HTTP_REQUESTS_TOTAL,
                "listener" => listener.to_owned(),
                "route" => route.to_owned(),
                "code" => code.to_string()
            )
        };
        Self {
            listener: listener.to_owned(),
            route: route.to_owned(),
            by_code: COMMON_CODES.iter().map(|&c| (c, counter(c))).collect(),
            timeout_504: counter(504),
            duration: metrics::histogram!(
                metric_names::HTTP_REQUEST_DURATION_SECONDS,
                "listener" => listener.to_owned(),
                "route" => route.to_owned()
            ),
        }
    }

    pub fn record(&self, status: u16, elapsed: Duration) {
        self.duration.record(elapsed.as_secs_f64());
        if status == 504 {
            self.timeout_504.increment(1);
            return;
        }
        match self.by_code.iter().find(|(c, _)| *c == status) {
            Some((_, counter)) => counter.increment(1),
            None => metrics::counter!(
                metric_names::HTTP_REQUESTS_TOTAL,
                "listener" => self.listener.clone(),
                "route" => self.route.clone(),
                "code" => status.to_string()
            )
            .increment(1),
        }
    }
}
