//! `vnfs configure`: configuration files of the services vnfs relies on.

use std::path::PathBuf;

use clap::Subcommand;
use vnfs_provisioner::dhcp;

use super::{site, warn_all};
use crate::context::Context;

/// Services to configure.
#[derive(Subcommand, Debug)]
pub enum ConfigureCmd {
    /// Write the dnsmasq configuration (DHCP range, static hosts from the
    /// node database, TFTP of iPXE, chain to the daemon's boot script)
    Dhcp {
        /// Output file [default: CONFDIR/dnsmasq.conf]; '-' for stdout
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        /// Directory with the iPXE binaries (Debian's ipxe package)
        #[arg(long, value_name = "DIR", default_value = dhcp::DEBIAN_IPXE_DIR)]
        tftp_root: PathBuf,
        /// dnsmasq lease file [default: dnsmasq's own]
        #[arg(long, value_name = "FILE")]
        leasefile: Option<PathBuf>,
    },
}

/// Runs a configure command.
pub fn run(ctx: &Context, cmd: ConfigureCmd) -> anyhow::Result<()> {
    let site = site(ctx)?;
    let conf = site.require_init()?.clone();
    match cmd {
        ConfigureCmd::Dhcp {
            output,
            tftp_root,
            leasefile,
        } => {
            let db = site.open_db()?;
            let nodes = db.nodes()?;
            let (text, warnings) = dhcp::render(
                &conf,
                &nodes,
                &dhcp::DhcpOptions {
                    tftp_root,
                    leasefile,
                },
            );
            warn_all(ctx, &warnings);
            let path = output.unwrap_or_else(|| site.confdir.join("dnsmasq.conf"));
            if path.as_os_str() == "-" {
                print!("{text}");
            } else {
                dhcp::write(&path, &text)?;
                if !ctx.quiet {
                    println!(
                        "Wrote {} (run dnsmasq with --conf-file={})",
                        path.display(),
                        path.display()
                    );
                }
            }
        }
    }
    Ok(())
}
