//! Portico's L4 data path: accept TCP connections, pick a backend, connect, copy both ways.
#![forbid(unsafe_code)]
