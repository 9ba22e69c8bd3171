//! Metrics: the Prometheus recorder (rendered by the admin server at /metrics), metric
//! descriptions, and the exporter's periodic upkeep. Installed before any data-path object
//! registers its metric handles.

use std::time::Duration;

use anyhow::Context;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use net_core::metric_names as m;

/// Request durations: 1 ms to 60 s.
const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Connect times: 100 µs to 5 s.
const CONNECT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// How often histograms and idle series are maintained.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(m::HTTP_REQUEST_DURATION_SECONDS.to_owned()),
            REQUEST_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(m::BACKEND_CONNECT_DURATION_SECONDS.to_owned()),
                CONNECT_BUCKETS,
            )
        })
        .context("configuring histogram buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_counter!(m::CONNECTIONS_TOTAL, "Connections accepted, by listener");
    describe_gauge!(m::CONNECTIONS_ACTIVE, "Connections open now, by listener");
    describe_counter!(
        m::BYTES_TOTAL,
        Unit::Bytes,
        "Bytes forwarded, by listener and direction (in = client to backend)"
    );
    describe_counter!(
        m::CONNECTIONS_REJECTED_TOTAL,
        "Connections closed at once because max_connections was reached"
    );
    describe_gauge!(
        m::BACKEND_UP,
        "1 when the backend's health checks pass, else 0"
    );
    describe_gauge!(
        m::BACKEND_CONNECTIONS_ACTIVE,
        "Connections open now to the backend"
    );
    describe_histogram!(
        m::BACKEND_CONNECT_DURATION_SECONDS,
        Unit::Seconds,
        "Time to connect to the backend"
    );
    describe_counter!(
        m::BACKEND_CONNECT_ERRORS_TOTAL,
        "Failed connection attempts to the backend"
    );
    describe_counter!(
        m::HTTP_REQUESTS_TOTAL,
        "HTTP requests, by listener, route and status code"
    );
    describe_histogram!(
        m::HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "HTTP request duration, by listener and route"
    );
    describe_counter!(
        m::CONFIG_RELOADS_TOTAL,
        "Config reloads, by result (ok, error)"
    );
}

pub fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}
