//! Global options shared by every command, and how errors reach the user.

use std::path::PathBuf;
use std::process::ExitCode;

/// Options accepted before or after any subcommand.
#[derive(clap::Args, Debug)]
pub struct GlobalArgs {
    /// Directory holding the store and the node database
    /// [default: /var/lib/vnfs as root, $XDG_DATA_HOME/vnfs otherwise]
    #[arg(long, global = true, env = "VNFS_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// More log output (repeat for more detail)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Machine-readable JSON output where the output is data. When a
    /// command's data itself goes to standard output (`export IMAGE -`,
    /// `image -o -`), its JSON report goes to standard error instead
    #[arg(long, global = true)]
    pub json: bool,
    /// Configuration directory (vnfs.conf, defaults.conf, module settings)
    /// [default: --home when given, else /etc/vnfs as root,
    /// $XDG_CONFIG_HOME/vnfs otherwise]
    #[arg(long, global = true, env = "VNFS_CONFIG", value_name = "DIR")]
    pub config: Option<PathBuf>,
    /// Name nodes by NodeID (MAC address) instead of hostname.
    ///
    /// Accepted anywhere, as `vnfs -i node show MAC` has always worked, but
    /// hidden: the commands that name nodes show it through [`NodeIdArg`],
    /// so it no longer clutters the help of mount, image, export and the
    /// rest, where it means nothing.
    #[arg(short = 'i', long = "nodeid", global = true, hide = true)]
    pub nodeid: bool,
}

/// `-i/--nodeid` as shown by the commands whose arguments name nodes.
///
/// It shares its id (`nodeid`) with the hidden global flag: clap does not
/// copy a global argument into a subcommand that defines one of the same
/// id, and it carries the value of a global id across every level of the
/// parse, so `vnfs -i node show M`, `vnfs node -i show M` and
/// `vnfs node show -i M` all set [`Context::nodeid`].
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct NodeIdArg {
    /// Name nodes by NodeID (MAC address) instead of hostname, as
    /// `perceus -i node ...` did
    #[arg(short = 'i', long = "nodeid")]
    pub nodeid: bool,
}

/// What every command needs to know about the invocation.
#[derive(Debug)]
pub struct Context {
    /// The vnfs home directory (store, database).
    pub home: PathBuf,
    /// Print JSON instead of tables.
    pub json: bool,
    /// Suppress everything but errors.
    pub quiet: bool,
    /// The configuration directory.
    pub confdir: PathBuf,
    /// Node arguments are NodeIDs (MAC addresses), not hostnames.
    pub nodeid: bool,
}

impl Context {
    /// The store directory inside the home.
    pub fn store_dir(&self) -> PathBuf {
        self.home.join("store")
    }

    /// Opens the existing store.
    pub fn store(&self) -> anyhow::Result<vnfs_store::Store> {
        Ok(vnfs_store::Store::open(&self.store_dir())?)
    }

    /// Opens the store, creating it on first use.
    pub fn store_or_create(&self) -> anyhow::Result<vnfs_store::Store> {
        Ok(vnfs_store::Store::open_or_create(&self.store_dir())?)
    }

    /// A progress bar honouring `--quiet` and terminal detection.
    pub fn progress(&self) -> crate::progress::Bar {
        crate::progress::Bar::new(self.quiet)
    }

    /// Prints a value as pretty JSON.
    pub fn print_json<T: serde::Serialize>(&self, value: &T) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(value)?);
        Ok(())
    }

    /// Prints a command's JSON report: on standard output, or on standard
    /// error when `data_on_stdout` (the command wrote its data there, and a
    /// report appended to it would corrupt it, e.g. a capsule piped into
    /// `vnfs import -`).
    pub fn print_report<T: serde::Serialize>(
        &self,
        value: &T,
        data_on_stdout: bool,
    ) -> anyhow::Result<()> {
        if data_on_stdout {
            eprintln!("{}", serde_json::to_string_pretty(value)?);
            Ok(())
        } else {
            self.print_json(value)
        }
    }

    /// Resolves the home directory and sets up logging.
    pub fn new(args: &GlobalArgs) -> Context {
        let level = match (args.quiet, args.verbose) {
            (true, _) => "error",
            (false, 0) => "warn",
            (false, 1) => "info",
            (false, 2) => "debug",
            _ => "trace",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_env("VNFS_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            // Colour codes only for a terminal: logs and CI captures read
            // "WARN", not escape sequences.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .without_time()
            .init();
        Context {
            home: args.home.clone().unwrap_or_else(default_home),
            json: args.json,
            quiet: args.quiet,
            confdir: config_dir(args),
            nodeid: args.nodeid,
        }
    }
}

/// `/var/lib/vnfs` for root, the XDG data directory for everyone else.
fn default_home() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/vnfs");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("vnfs");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/share/vnfs")
}

/// The configuration directory: `--config`, else the `--home` directory
/// when one was given (a self-contained installation), else `/etc/vnfs` for
/// root and the XDG configuration directory for everyone else.
fn config_dir(args: &GlobalArgs) -> PathBuf {
    if let Some(c) = &args.config {
        return c.clone();
    }
    if let Some(h) = &args.home {
        return h.clone();
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/etc/vnfs");
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("vnfs");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".config/vnfs")
}

/// An error that carries its own exit status (e.g. fsck finding damage = 1).
#[derive(Debug)]
pub struct ExitStatus(pub u8);

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}
impl std::error::Error for ExitStatus {}

/// Prints an error chain the way users read it and picks the exit code.
pub fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(ExitStatus(code)) = e.downcast_ref::<ExitStatus>() {
                return ExitCode::from(*code);
            }
            eprintln!("error: {e}");
            // Many errors print their cause in their own message too: a
            // cause already said by the line before is not repeated.
            let mut said = e.to_string();
            for cause in e.chain().skip(1) {
                let text = cause.to_string();
                if !said.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                said = text;
            }
            match crate::interrupt::signal() {
                Some(n) => {
                    crate::interrupt::die_by(n);
                    // Only if the signal did not end the process.
                    ExitCode::from(u8::try_from(128 + n).unwrap_or(2))
                }
                None => ExitCode::from(2),
            }
        }
    }
}
