//! systemd notifications: READY=1, RELOADING=1 (+ MONOTONIC_USEC), STOPPING=1, STATUS= and
//! WATCHDOG=1 pings. All of them are no-ops when not started by systemd.

use sd_notify::NotifyState;

pub fn ready(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    let _ = sd_notify::notify(&states);
}

pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// Pings the watchdog at half its interval from a runtime task, so a stuck runtime stops
/// pinging and systemd restarts the service.
pub fn spawn_watchdog() {
    if let Some(interval) = sd_notify::watchdog_enabled().filter(|d| !d.is_zero()) {
        let every = interval / 2;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
        });
    }
}
