//! tracing set-up: text or JSON on stderr, level from the config unless `RUST_LOG` is set;
//! the level (not the format) follows reloads.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::{LogConfig, LogFormat};

/// Changes the log level on reload, unless `RUST_LOG` fixed it at start.
pub struct LogHandle {
    reload: Option<reload::Handle<EnvFilter, Registry>>,
}

pub fn init(config: &LogConfig) -> LogHandle {
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = match &from_env {
        Some(spec) => EnvFilter::try_new(spec).unwrap_or_else(|err| {
            eprintln!("portico: ignoring RUST_LOG ({err}); using log.level");
            level_filter(config.level)
        }),
        None => level_filter(config.level),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let (text, json) = match config.format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            ),
        ),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .try_init();
    LogHandle {
        reload: from_env.is_none().then_some(handle),
    }
}

fn level_filter(level: tracing::Level) -> EnvFilter {
    EnvFilter::new(level.as_str().to_ascii_lowercase())
}

impl LogHandle {
    pub fn apply(&self, config: &LogConfig) {
        if let Some(handle) = &self.reload {
            let _ = handle.reload(level_filter(config.level));
        }
    }
}
