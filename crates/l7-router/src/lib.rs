//! Portico's L7 data path: HTTP/1.1 and HTTP/2 listeners with TLS termination, host/path routing
//! to pools and a pooled upstream client. Not built yet (issue 4); the crate exists so the
//! workspace has its final shape and the dependency direction is fixed.
#![forbid(unsafe_code)]

pub mod routes;
