//! `vnfs init`: first-run configuration, asking Perceus's questions.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use vnfs_provisioner::init::{Init, QUESTIONS};

use super::warn_all;
use crate::context::Context;

/// Arguments of `vnfs init`.
///
/// Writes vnfs.conf and defaults.conf into the configuration directory:
/// --config when given, else the --home directory when given (so a whole
/// installation lives in one place), else /etc/vnfs as root and
/// $XDG_CONFIG_HOME/vnfs otherwise. Each question has a flag; the defaults
/// come from this machine's interfaces (the first private IPv4 address), or
/// from an existing Perceus configuration with --from-perceus.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Accept the defaults for every question not given as a flag
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Overwrite existing vnfs.conf and defaults.conf
    #[arg(long)]
    pub force: bool,
    /// Directory of an existing Perceus installation (reads perceus.conf and defaults.conf)
    #[arg(long, value_name = "DIR")]
    pub from_perceus: Option<PathBuf>,
    /// A Perceus perceus.conf to take values from
    #[arg(long, value_name = "FILE")]
    pub perceus_conf: Option<PathBuf>,
    /// A Perceus defaults.conf to take values from
    #[arg(long, value_name = "FILE")]
    pub perceus_defaults: Option<PathBuf>,
    /// Network device facing the nodes
    #[arg(long)]
    pub device: Option<String>,
    /// Address the nodes use to reach this master
    #[arg(long)]
    pub address: Option<String>,
    /// First address of the DHCP range
    #[arg(long)]
    pub dhcp_start: Option<String>,
    /// Last address of the DHCP range
    #[arg(long)]
    pub dhcp_end: Option<String>,
    /// DNS domain of the nodes
    #[arg(long)]
    pub domain: Option<String>,
    /// Node timeout in seconds
    #[arg(long)]
    pub timeout: Option<String>,
    /// Daemon port
    #[arg(long)]
    pub port: Option<String>,
    /// Name template of new nodes (e.g. n####)
    #[arg(long)]
    pub node_name: Option<String>,
    /// Group of new nodes
    #[arg(long)]
    pub group: Option<String>,
    /// Whether new nodes are enabled (1/0)
    #[arg(long)]
    pub enabled: Option<String>,
    /// Number of the first node
    #[arg(long)]
    pub first_node: Option<String>,
    /// Node numbers to count through
    #[arg(long)]
    pub total_nodes: Option<String>,
}

impl InitArgs {
    fn flag(&self, key: &str) -> Option<&String> {
        match key {
            "device" => self.device.as_ref(),
            "address" => self.address.as_ref(),
            "dhcp-start" => self.dhcp_start.as_ref(),
            "dhcp-end" => self.dhcp_end.as_ref(),
            "domain" => self.domain.as_ref(),
            "timeout" => self.timeout.as_ref(),
            "port" => self.port.as_ref(),
            "node-name" => self.node_name.as_ref(),
            "group" => self.group.as_ref(),
            "enabled" => self.enabled.as_ref(),
            "first-node" => self.first_node.as_ref(),
            "total-nodes" => self.total_nodes.as_ref(),
            _ => None,
        }
    }
}

/// Runs `vnfs init`.
pub fn run(ctx: &Context, args: InitArgs) -> anyhow::Result<()> {
    let mut init = Init::from_machine();
    let (pconf, pdef) = match &args.from_perceus {
        Some(d) => (Some(d.join("perceus.conf")), Some(d.join("defaults.conf"))),
        None => (None, None),
    };
    if let Some(p) = args.perceus_conf.clone().or(pconf) {
        init.read_perceus_conf(&p)?;
    }
    if let Some(p) = args.perceus_defaults.clone().or(pdef) {
        init.read_perceus_defaults(&p)?;
    }
    // Warnings are printed as they arise (and cleared), so an interactive
    // user reads about a device that is not here before the next question.
    warn_all(ctx, &std::mem::take(&mut init.warnings));
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    if !args.yes {
        let names: Vec<String> = init
            .interfaces()
            .iter()
            .map(|i| format!("{} ({}/{})", i.name, i.addr, i.prefix))
            .collect();
        eprintln!(
            "Interfaces on this machine: {}",
            if names.is_empty() {
                "none with IPv4".into()
            } else {
                names.join(", ")
            }
        );
    }
    for q in QUESTIONS {
        if let Some(v) = args.flag(q.key) {
            init.answer(q.key, v)
                .with_context(|| format!("--{}", q.key))?;
            warn_all(ctx, &std::mem::take(&mut init.warnings));
            continue;
        }
        if args.yes {
            continue;
        }
        loop {
            match init.current(q.key) {
                // No default to offer (the device has no address here).
                d if d.is_empty() => eprint!("{}: ", q.prompt),
                d => eprint!("{} [{d}]: ", q.prompt),
            }
            std::io::stderr().flush()?;
            let mut line = String::new();
            if input.read_line(&mut line)? == 0 {
                anyhow::bail!(
                    "standard input closed before every question was answered; pass --yes to accept the defaults"
                );
            }
            match init.answer(q.key, &line) {
                Ok(()) => {
                    warn_all(ctx, &std::mem::take(&mut init.warnings));
                    break;
                }
                Err(e) => eprintln!("  {e}; try again"),
            }
        }
    }
    warn_all(ctx, &init.check()?);
    let written = init.write(&ctx.confdir, args.force)?;
    if !ctx.quiet {
        for p in written {
            println!("Wrote {}", p.display());
        }
    }
    Ok(())
}
