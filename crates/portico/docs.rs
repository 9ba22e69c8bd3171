//! `portico __generate-docs --out DIR`: writes the man pages and the bash, zsh and fish
//! completions, generated from the clap definitions in `cli.rs`, so what the .deb ships always
//! matches the binary (`packaging/build-deb.sh` runs it with the binary it packages).
//!
//! `main()` dispatches here before the public CLI is parsed, so the command appears nowhere:
//! not in `--help`, not in the man pages, not in the completions (clap_complete lists hidden
//! subcommands, so `#[command(hide = true)]` in `cli.rs` would leak it into tab completion).
//!
//! Layout of DIR: `man1/portico.1` (plus `portico-run.1`, `portico-ctl-drain.1`, ... for each
//! subcommand) and `completions/portico.bash`, `completions/_portico`,
//! `completions/portico.fish`.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use clap_complete::Shell;
use clap_mangen::Man;

use crate::cli::Cli;

/// The hidden command's name: `portico __generate-docs --out DIR`.
pub const SUBCOMMAND: &str = "__generate-docs";

/// Sections of portico(1) that clap cannot know about, in roff.
const MAN_EXTRA: &str = r#".SH FILES
.TP
\fI/etc/portico/portico.toml\fR
The config file, the default of \fB\-\-config\fR. Check it with \fBportico check\fR before a
reload.
.TP
\fI/var/lib/portico\fR
Where changes made through the admin API are kept when \fBruntime.state_dir\fR points there.
.TP
\fI/run/portico/upgrade.sock\fR
The socket named by \fBruntime.upgrade_socket\fR, through which \fBportico run \-\-upgrade\fR
takes the listening sockets over.
.SH ENVIRONMENT
.TP
\fBPORTICO_\fR\fIKEY\fR
Overrides a config key: the key's path in upper case with \fB__\fR between levels, e.g.
\fBPORTICO_LOG__LEVEL=debug\fR.
.TP
\fBRUST_LOG\fR
Overrides \fBlog.level\fR.
.TP
\fBNOTIFY_SOCKET\fR, \fBWATCHDOG_USEC\fR
Set by systemd: Portico then sends READY=1 once every listener is bound, RELOADING=1 and READY=1
around a reload, STOPPING=1, STATUS= lines, and WATCHDOG=1 every WATCHDOG_USEC/2.
.SH SIGNALS
.TP
\fBSIGHUP\fR
Reload the config file. Listeners whose bind is unchanged keep their sockets; a config that does
not validate is logged and the running one keeps serving.
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop accepting, let open connections finish for up to \fBruntime.shutdown_grace\fR, exit 0.
.SH EXIT STATUS
0 on success (for \fBrun\fR: after a clean drain); 1 on any error, such as a config that does not
validate, a listener that cannot bind, or \fBportico check\fR finding an error.
.SH SEE ALSO
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBsystemd.service\fR(5), \fBkeepalived\fR(8)
"#;

/// `portico __generate-docs --out DIR`
#[derive(Debug, Parser)]
#[command(
    name = "portico __generate-docs",
    bin_name = "portico __generate-docs",
    about = "Write man pages and shell completions"
)]
struct Args {
    /// Directory to write `man1/` and `completions/` into (created if missing).
    #[arg(long)]
    out: PathBuf,
}

/// Entry point; `args` starts with the subcommand's own name (as argv[0] would).
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = Args::parse_from(args);
    match generate(&args.out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("portico {SUBCOMMAND}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &Path) -> anyhow::Result<()> {
    let man_dir = out.join("man1");
    let completion_dir = out.join("completions");
    for dir in [&man_dir, &completion_dir] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_man_pages(&man_dir).with_context(|| format!("writing {}", man_dir.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "portico", &completion_dir)
            .with_context(|| format!("writing the {shell} completion"))?;
    }
    Ok(())
}

/// One page per (sub)command, as git does; portico(1) gets the extra sections.
fn write_man_pages(dir: &Path) -> anyhow::Result<()> {
    let cmd = Cli::command().disable_help_subcommand(true);
    clap_mangen::generate_to(cmd.clone(), dir)?;

    let man = Man::new(cmd).manual("Portico Manual");
    let mut rendered = Vec::new();
    man.render(&mut rendered)?;
    let rendered = String::from_utf8(rendered)?;
    // The extra sections go before VERSION, the last one clap_mangen writes.
    let at = rendered
        .find("\n.SH VERSION")
        .map_or(rendered.len(), |i| i + 1);
    let page = format!("{}{MAN_EXTRA}{}", &rendered[..at], &rendered[at..]);
    fs::write(dir.join(man.get_filename()), page)?;
    Ok(())
}
