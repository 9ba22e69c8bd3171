//! The Portico daemon: CLI, config loading, the supervisor (listeners, reload, shutdown),
//! signals and systemd. The data paths live in the library crates.
//!
//! `deny`, not `forbid`: `socket_activation` is the one module allowed `unsafe` (STYLE.md
//! rule 15); its `//!` says why it is sound.
#![deny(unsafe_code)]

mod admin;
mod api_state;
mod cli;
mod config;
mod ctl;
mod demo;
mod docs;
mod logging;
mod socket_activation;
mod supervisor;
mod systemd;
mod telemetry;
mod upgrade;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::supervisor::ConfigOrigin;

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == docs::SUBCOMMAND)
    {
        return docs::main(std::env::args_os().skip(1)); // hidden: man pages, completions
    }
    let mut cli = Cli::parse();
    match cli
        .command
        .take()
        .unwrap_or(Command::Run { upgrade: false })
    {
        Command::Check => check(&cli.config),
        Command::Run { upgrade } => serve(ConfigOrigin::File(cli.config), false, upgrade),
        Command::Demo => serve(ConfigOrigin::Embedded(demo::DEMO_CONFIG), true, false),
        Command::Ctl {
            admin,
            token_file,
            command,
        } => ctl(&cli.config, admin, token_file, &command),
    }
}

fn ctl(
    config: &std::path::Path,
    admin: Option<std::net::SocketAddr>,
    token_file: Option<std::path::PathBuf>,
    command: &cli::CtlCommand,
) -> ExitCode {
    let result = ctl::Target::resolve(config, admin, token_file).and_then(|target| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(ctl::run(&target, command))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("portico ctl: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load_file(path) {
        Ok(c) => {
            println!(
                "{}: OK ({} listeners, {} pools, {} clusters)",
                path.display(),
                c.listeners.len(),
                c.pools.len(),
                c.clusters.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

/// `upgrade`: take the listening sockets over from the process serving the upgrade socket; any
/// failure before this process serves leaves that process serving, untouched.
fn serve(origin: ConfigOrigin, demo: bool, upgrade: bool) -> ExitCode {
    // First, while this is the only thread (it edits the environment).
    let mut inherited: Vec<supervisor::Inherited> = match socket_activation::take() {
        Ok(sockets) => sockets
            .into_iter()
            .map(|(local, socket)| supervisor::Inherited {
                owner: None,
                bind: None,
                local,
                socket,
                from: "systemd",
            })
            .collect(),
        Err(err) => {
            eprintln!("portico: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let config = match origin.load() {
        Ok(c) => c,
        Err(errors) => {
            let hint = if upgrade {
                "\nportico: upgrade aborted; the running Portico was not touched"
            } else {
                ""
            };
            eprintln!("portico: {errors}{hint}");
            return ExitCode::FAILURE;
        }
    };
    let log = logging::init(&config.log);
    let takeover = if upgrade {
        match upgrade::take_over(
            config.runtime.upgrade_socket.as_deref(),
            origin.file_path().as_deref(),
        ) {
            Ok((takeover, sockets)) => {
                tracing::info!(
                    old_pid = takeover.old_pid,
                    old_version = %takeover.old_version,
                    sockets = sockets.len(),
                    "received the listening sockets of the running Portico"
                );
                inherited.extend(sockets);
                Some(takeover)
            }
            Err(err) => {
                tracing::error!("upgrade aborted, the running Portico was not touched: {err:#}");
                eprintln!("portico: upgrade aborted, the running Portico was not touched: {err:#}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    // Before anything registers a metric handle.
    let prometheus = match telemetry::install() {
        Ok(handle) => handle,
        Err(err) => {
            eprintln!("portico: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    // One worker thread: a current-thread runtime does the same work without the
    // work-stealing scheduler's cross-thread wake-ups.
    let mut builder = match config.runtime.worker_threads {
        Some(n) if n.get() == 1 => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.get());
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().thread_name("portico-worker");
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("portico: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let demo_nodes = if demo {
            Some(demo::start_nodes(&config).await?)
        } else {
            None
        };
        telemetry::spawn_upkeep(prometheus.clone());
        supervisor::run(
            origin,
            config,
            inherited,
            takeover,
            log,
            prometheus,
            demo_nodes.is_some(),
        )
        .await
    });
    // Connections past the grace period are cut here, with the runtime.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("portico: {err:#}");
            ExitCode::FAILURE
        }
    }
}
