//! `vnfs-node`: the node agent. `provision` assembles a node's root from
//! the master; `daemon` keeps the node checked in and applies livesync.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vnfs_node::client::{Master, Retry};
use vnfs_node::{AgentError, daemon, provision};

/// The vnfs node agent.
#[derive(Parser, Debug)]
#[command(name = "vnfs-node", version, max_term_width = 100)]
struct Cli {
    /// More log output (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print the report as JSON
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug)]
struct Common {
    /// The master's daemon, e.g. http://10.0.0.1:9873
    #[arg(long, env = "VNFS_MASTER")]
    master: String,
    /// Object cache kept across boots (also holds the node state)
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// NodeID [default: the MAC address of the first non-loopback interface]
    #[arg(long)]
    mac: Option<String>,
    /// Shared secret, when the master requires one
    #[arg(long, env = "VNFS_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Parallel connections for chunk fetches
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Give up on an unreachable master after this many seconds
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    retry_for: u64,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check in as init, fetch the image, assemble the root, run the
    /// nodescript, check in as ready
    Provision {
        #[command(flatten)]
        common: Common,
        /// Directory to assemble the root in (absent or empty)
        #[arg(long)]
        root: PathBuf,
    },
    /// Keep checking in as ready; run ready nodescripts; apply livesync
    Daemon {
        #[command(flatten)]
        common: Common,
        /// Seconds between check-ins [default: what the master says]
        #[arg(long, value_name = "SECS")]
        interval: Option<f64>,
        /// Stop after this many check-ins
        #[arg(long, value_name = "N")]
        iterations: Option<u64>,
        /// Do not run the ready nodescripts
        #[arg(long)]
        no_scripts: bool,
    },
}

/// The MAC address of the first non-loopback interface, by name order.
fn default_mac() -> anyhow::Result<String> {
    let mut names: Vec<_> = std::fs::read_dir("/sys/class/net")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for n in names {
        let p = std::path::Path::new("/sys/class/net")
            .join(&n)
            .join("address");
        if let Ok(a) = std::fs::read_to_string(&p) {
            let a = a.trim();
            if !a.is_empty() && a != "00:00:00:00:00:00" {
                return Ok(a.to_string());
            }
        }
    }
    anyhow::bail!("no network interface with a MAC address; give --mac")
}

fn retry(c: &Common) -> Retry {
    Retry {
        give_up_after: Duration::from_secs(c.retry_for),
        ..Retry::default()
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Provision { common, root } => {
            let mac = match &common.mac {
                Some(m) => m.clone(),
                None => default_mac()?,
            };
            let o = provision::Options {
                master: common.master.clone(),
                root,
                cache: common.cache.clone(),
                mac,
                secret: common.secret.clone(),
                threads: common.threads,
                retry: retry(&common),
            };
            let r = provision::provision(&o)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{}: {} at {} ready in {:.2} s: {} chunks needed, {} cached, {} fetched ({} bytes on the wire, {} requests, {} retries); {} files; {} paths hybridized",
                    r.hostname,
                    r.image,
                    &r.commit[..12.min(r.commit.len())],
                    r.seconds,
                    r.fetch.chunks_needed,
                    r.fetch.chunks_cached,
                    r.fetch.chunks_fetched,
                    r.wire_bytes,
                    r.requests,
                    r.retries,
                    r.files,
                    r.hybridized
                );
            }
            Ok(())
        }
        Command::Daemon {
            common,
            interval,
            iterations,
            no_scripts,
        } => {
            let cache = common.cache.clone().ok_or_else(|| {
                anyhow::anyhow!("daemon needs --cache (the directory provision used)")
            })?;
            let master = Master::new(&common.master, retry(&common));
            let o = daemon::Options {
                cache,
                secret: common.secret.clone(),
                interval: interval.map(Duration::from_secs_f64),
                iterations,
                threads: common.threads,
                run_scripts: !no_scripts,
                stop: Default::default(),
            };
            daemon::run(&master, &o)?;
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("VNFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vnfs-node: error: {e}");
            for c in e.chain().skip(1) {
                eprintln!("  caused by: {c}");
            }
            // Distinct statuses let boot scripts tell a refusal (wait and
            // retry) from a corrupt object (stop and tell the admin).
            match e.downcast_ref::<AgentError>() {
                Some(AgentError::Refused { .. }) => ExitCode::from(75),
                Some(AgentError::Corrupt { .. }) => ExitCode::from(3),
                _ => ExitCode::from(1),
            }
        }
    }
}
