//! systemd notifications (`sd_notify(3)`): READY=1, RELOADING=1 (+ MONOTONIC_USEC),
//! STOPPING=1, STATUS= and WATCHDOG=1 pings. All of them are no-ops when `NOTIFY_SOCKET` is
//! not set (not started by systemd).
//!
//! `sd-notify` formats the states and reads the clock and `WATCHDOG_USEC`/`WATCHDOG_PID`;
//! the datagram is sent here because `sd_notify::notify` (0.5) treats every `NOTIFY_SOCKET`
//! as a file path, while sd_notify(3) also allows a Linux abstract socket (`@name`).
//! `NOTIFY_SOCKET` is read on every call and never unset: Portico notifies many times.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::time::MissedTickBehavior;

const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Shown by `systemctl status` while the open connections drain.
const STOPPING_STATUS: &str = "stopping: no longer accepting, draining open connections";

/// Startup or a reload (successful or not) is done; `status` says what is being served.
pub fn ready(status: &str) {
    let status = one_line(status);
    let _ = notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// A reload starts. MONOTONIC_USEC must come with RELOADING=1: systemd >= 253 fails a
/// `Type=notify-reload` unit that sends one without the other.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    let _ = notify(&states);
}

pub fn stopping() {
    let _ = notify(&[NotifyState::Stopping, NotifyState::Status(STOPPING_STATUS)]);
}

/// Pings the watchdog at half its interval from a task on the runtime (never from a thread of
/// its own), so a runtime too stuck to run its tasks stops pinging and systemd restarts the
/// service. A ping late because the runtime stalled is not followed by a burst of catch-up
/// pings. No pings when `WATCHDOG_USEC` is unset or 0, or when `WATCHDOG_PID` names another
/// process (`sd_notify::watchdog_enabled` checks both, as sd_watchdog_enabled(3) does).
pub fn spawn_watchdog() {
    if let Some(every) = ping_interval(sd_notify::watchdog_enabled()) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let _ = notify(&[NotifyState::Watchdog]);
            }
        });
    }
}

/// Half the watchdog timeout, as systemd.service(5) recommends; None when disabled.
fn ping_interval(watchdog: Option<Duration>) -> Option<Duration> {
    watchdog.filter(|d| !d.is_zero()).map(|d| d / 2)
}

/// A STATUS= value is one line: a newline would start another (bogus) assignment.
fn one_line(status: &str) -> String {
    let mut out = String::with_capacity(status.len());
    for line in status.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(line);
    }
    out
}

/// Sends `states` as one datagram to `$NOTIFY_SOCKET`, if set.
fn notify(states: &[NotifyState]) -> io::Result<()> {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return Ok(());
    };
    let message = message(states);
    let sent = UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &address(&socket)?)?;
    if sent == message.len() {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::WriteZero, "incomplete write"))
    }
}

fn message(states: &[NotifyState]) -> String {
    states.iter().map(|s| format!("{s}\n")).collect()
}

/// `@name` is an abstract socket, anything else a file path (sd_notify(3)).
fn address(socket: &OsStr) -> io::Result<SocketAddr> {
    match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(socket),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_interval_is_half_the_timeout_and_zero_disables() {
        assert_eq!(
            ping_interval(Some(Duration::from_secs(30))),
            Some(Duration::from_secs(15))
        );
        assert_eq!(ping_interval(Some(Duration::ZERO)), None);
        assert_eq!(ping_interval(None), None);
    }

    #[test]
    fn status_stays_on_one_line() {
        assert_eq!(
            one_line("reload failed:\n  pools.p: unknown\n\n  listeners.l: bad\n"),
            "reload failed: pools.p: unknown; listeners.l: bad"
        );
        assert_eq!(one_line("serving 2 listeners"), "serving 2 listeners");
    }

    #[test]
    fn each_state_is_one_line_of_the_datagram() {
        assert_eq!(
            message(&[
                NotifyState::Ready,
                NotifyState::Status("serving 1 listeners")
            ]),
            "READY=1\nSTATUS=serving 1 listeners\n"
        );
    }

    #[test]
    fn an_at_sign_means_an_abstract_socket() {
        let abstract_addr = address(OsStr::new("@portico/notify")).unwrap();
        assert_eq!(
            abstract_addr.as_abstract_name(),
            Some(&b"portico/notify"[..])
        );
        let path = address(OsStr::new("/run/systemd/notify")).unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
    }
}
