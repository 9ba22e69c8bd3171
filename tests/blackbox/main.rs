//! Black-box tests: start the real `portico` binary with a generated config on OS-chosen
//! loopback ports, drive it with real sockets and real backends, and look only at what a user
//! can see (bytes, exit codes, logs).

mod harness;

mod admin;
mod check;
mod ctl;
mod health;
mod l4;
mod l4_splice;
mod l7;
mod lifecycle;
mod proxy_protocol;
mod reload;
mod systemd_notify;
mod upgrade;
