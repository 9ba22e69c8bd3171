//! Command line (a contract: DESIGN.md "CLI").

use std::net::SocketAddr;
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
    /// Talk to a running Portico through its admin API.
    Ctl {
        /// Admin server address (default: admin.listen from the config file).
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// File holding the admin token (default: admin.token_file from the config file).
        #[arg(long)]
        token_file: Option<PathBuf>,
        #[command(subcommand)]
        command: CtlCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Listeners, pools with every backend's state, clusters.
    Status,
    /// Reload the config file (like SIGHUP); prints the changes or every error.
    Reload,
    /// Take a node out of every pool: no new connections, open ones finish.
    Drain {
        /// The node's address as listed in its cluster.
        node: String,
        /// Only in this cluster (default: every cluster that lists the node).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Put a drained node back into its pools.
    Enable {
        node: String,
        #[arg(long)]
        cluster: Option<String>,
    },
}
