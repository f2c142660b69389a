//! `vnfs serve`: runs the provisioning daemon in the foreground (systemd
//! runs it as `dist/vnfs-serve.service`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use vnfs_provisioner::serve;

use super::site;
use crate::context::Context;

/// Arguments of `vnfs serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address and port to listen on [default: vnfs.conf's daemon address and port]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// File holding a shared secret nodes must send at check-in
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Seconds between check-ins of running nodes
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub interval: u64,
    /// Worker threads [default: one per core]
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(ctx: &Context, a: ServeArgs) -> anyhow::Result<()> {
    let site = site(ctx)?;
    let conf = site.require_init()?.clone();
    let addr = match a.listen {
        Some(a) => a,
        None => format!("{}:{}", conf.daemon_address, conf.daemon_port)
            .parse()
            .with_context(|| {
                format!(
                    "vnfs.conf: daemon address {}:{} is not ADDR:PORT",
                    conf.daemon_address, conf.daemon_port
                )
            })?,
    };
    let secret = match &a.secret_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading the secret from {}", f.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let options = serve::Options {
        secret,
        interval_secs: a.interval.max(1),
        ..serve::Options::default()
    };
    serve::run(site, options, addr, a.workers)?;
    Ok(())
}
