//! The config file as serde sees it: strings and options, no meaning yet. `validate` gives it
//! meaning. Unknown keys are errors everywhere (`deny_unknown_fields`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub runtime: RawRuntime,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub clusters: BTreeMap<String, RawCluster>,
    #[serde(default)]
    pub pools: BTreeMap<String, RawPool>,
    #[serde(default)]
    pub listeners: BTreeMap<String, RawListener>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Require the token for /metrics too (default: only when `listen` is not loopback).
    pub protect_metrics: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    pub shutdown_grace: Option<String>,
    pub shutdown_delay: Option<String>,
    pub worker_threads: Option<i64>,
    pub state_dir: Option<PathBuf>,
    pub upgrade_socket: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
    pub access_log: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub nodes: Vec<RawMember>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub cluster: Option<String>,
    pub node_port: Option<i64>,
    pub servers: Option<Vec<RawMember>>,
    pub balance: Option<String>,
    /// What to do when no backend is available: "try_all" (default) or "refuse".
    pub when_all_down: Option<String>,
    pub health: Option<RawHealth>,
    pub passive: Option<RawPassive>,
    /// HTTP listeners: speak HTTP/2 (h2c) to the backends (gRPC).
    pub http2: Option<bool>,
    /// HTTP listeners: close idle pooled backend connections after this long.
    pub keepalive_timeout: Option<String>,
    /// HTTP listeners: idle pooled connections kept per backend.
    pub max_idle: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPassive {
    pub failures: Option<i64>,
    pub ejection: Option<String>,
    pub max_ejection: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub kind: Option<String>,
    pub port: Option<i64>,
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
    pub expect_status: Option<i64>,
    /// "up" (default) or "down": a new backend's state until its first check answers.
    pub initial: Option<String>,
    /// Take kube-proxy's local endpoint count as the backend's weight (default true).
    pub endpoint_weight: Option<bool>,
}

/// A node of a cluster or a server of a pool: `"10.0.0.5:8080"` or
/// `{ address = "10.0.0.5:8080", weight = 2, drain = true }`.
#[derive(Debug, Default)]
pub struct RawMember {
    pub address: String,
    pub weight: Option<i64>,
    pub drain: Option<bool>,
}

/// The table form of [`RawMember`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberTable {
    address: String,
    weight: Option<i64>,
    drain: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub bind: Option<String>,
    pub protocol: Option<String>,
    pub pool: Option<String>,
    pub proxy_protocol: Option<String>,
    pub accept_proxy_protocol: Option<bool>,
    pub connect_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_connections: Option<i64>,
    pub splice: Option<bool>,
    // http and https listeners.
    pub routes: Option<Vec<RawRoute>>,
    pub certificates: Option<Vec<RawCertificate>>,
    pub max_header_bytes: Option<i64>,
    pub max_headers: Option<i64>,
    pub header_timeout: Option<String>,
    pub redirect_https: Option<bool>,
    pub max_concurrent_streams: Option<i64>,
    pub forwarded: Option<bool>,
    pub request_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// tls_passthrough routes (not supported yet): parsed for a precise error.
    pub sni: Option<String>,
    pub name: Option<String>,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub path_exact: Option<String>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub pool: Option<String>,
    pub timeout: Option<String>,
    pub max_body_bytes: Option<i64>,
    pub retries: Option<i64>,
    pub host_rewrite: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl<'de> Deserialize<'de> for RawMember {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MemberVisitor;
        impl<'de> Visitor<'de> for MemberVisitor {
            type Value = RawMember;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address string or a table { address, weight, drain }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawMember {
                    address: v.to_owned(),
                    ..RawMember::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let t = MemberTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawMember {
                    address: t.address,
                    weight: t.weight,
                    drain: t.drain,
                })
            }
        }
        deserializer.deserialize_any(MemberVisitor)
    }
}
