//! Command line (a contract: DESIGN.md "CLI").

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub const DEFAULT_CONFIG: &str = "/etc/portico/portico.toml";

#[derive(Debug, Parser)]
#[command(
    name = "portico",
    version,
    about = "Portico: the L4/L7 load balancer for Kubernetes NodePorts on your own VMs",
    long_about = None
)]
pub struct Cli {
    /// Config file (TOML). `PORTICO_*` environment variables override its keys
    /// (`__` between levels, e.g. PORTICO_LOG__LEVEL=debug).
    #[arg(long, short = 'c', global = true, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default). SIGHUP reloads the config, SIGTERM drains and exits.
    Run {
        /// Take the listening sockets over from the Portico serving `runtime.upgrade_socket`.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate the config file: print every error and exit 1 if there is any.
    Check,
    /// Run the embedded demo: three loopback "nodes" and Portico balancing across them.
    Demo,
}
