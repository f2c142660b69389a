//! `vnfs configure dhcp`: a dnsmasq configuration for the node network.
//! DHCP on the master network device with a dynamic range, a static host
//! per node with an address, TFTP of Debian's iPXE binaries to PXE firmware,
//! and, once iPXE runs, a chain to the daemon's per-node boot script.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::VnfsConf;
use crate::node::Node;

/// Where Debian's `ipxe` package puts its binaries.
pub const DEBIAN_IPXE_DIR: &str = "/usr/lib/ipxe";
/// The daemon path prefix of per-node boot scripts: `/boot/<mac>` with the
/// MAC in iPXE's `hexhyp` form (`52-54-00-12-34-56`).
pub const BOOT_PATH: &str = "/boot/";
/// iPXE binary for BIOS PXE firmware.
pub const BIOS_IPXE: &str = "undionly.kpxe";
/// iPXE binary for x86-64 UEFI firmware.
pub const EFI_IPXE: &str = "snponly.efi";

/// Options beyond vnfs.conf.
#[derive(Clone, Debug)]
pub struct DhcpOptions {
    /// TFTP root holding the iPXE binaries.
    pub tftp_root: PathBuf,
    /// Lease file (`None`: dnsmasq's default).
    pub leasefile: Option<PathBuf>,
}

impl Default for DhcpOptions {
    fn default() -> Self {
        DhcpOptions {
            tftp_root: PathBuf::from(DEBIAN_IPXE_DIR),
            leasefile: None,
        }
    }
}

/// The URL iPXE chains to; iPXE expands `${mac:hexhyp}` itself.
pub fn boot_url(conf: &VnfsConf) -> String {
    format!(
        "http://{}:{}{BOOT_PATH}${{mac:hexhyp}}",
        conf.master_address, conf.daemon_port
    )
}

/// Renders the dnsmasq configuration; warnings cover nodes left out and a
/// missing iPXE installation.
pub fn render(conf: &VnfsConf, nodes: &[Node], opts: &DhcpOptions) -> (String, Vec<String>) {
    let mut warnings = Vec::new();
    for f in [BIOS_IPXE, EFI_IPXE] {
        if !opts.tftp_root.join(f).is_file() {
            warnings.push(format!(
                "{} is missing: install Debian's ipxe package (apt-get install ipxe)",
                opts.tftp_root.join(f).display()
            ));
        }
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# dnsmasq configuration written by `vnfs configure dhcp`."
    );
    let _ = writeln!(
        s,
        "# Regenerate it after changing nodes; edits here are overwritten."
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "# Serve only the node network.");
    let _ = writeln!(s, "interface={}", conf.master_device);
    let _ = writeln!(s, "bind-interfaces");
    let _ = writeln!(s, "domain={}", conf.domain);
    let _ = writeln!(s, "local=/{}/", conf.domain);
    let _ = writeln!(s, "expand-hosts");
    let _ = writeln!(s, "dhcp-range={},{},12h", conf.dhcp_start, conf.dhcp_end);
    let _ = writeln!(s, "dhcp-option=option:domain-search,{}", conf.domain);
    if let Some(l) = &opts.leasefile {
        let _ = writeln!(s, "dhcp-leasefile={}", l.display());
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "# PXE firmware gets iPXE over TFTP; iPXE (option 175) gets the"
    );
    let _ = writeln!(s, "# daemon's boot script for its MAC address.");
    let _ = writeln!(s, "enable-tftp");
    let _ = writeln!(s, "tftp-root={}", opts.tftp_root.display());
    let _ = writeln!(s, "dhcp-match=set:ipxe,175");
    let _ = writeln!(s, "dhcp-match=set:efi64,option:client-arch,7");
    let _ = writeln!(s, "dhcp-match=set:efi64,option:client-arch,9");
    let _ = writeln!(s, "dhcp-boot=tag:!ipxe,tag:!efi64,{BIOS_IPXE}");
    let _ = writeln!(s, "dhcp-boot=tag:!ipxe,tag:efi64,{EFI_IPXE}");
    let _ = writeln!(s, "dhcp-boot=tag:ipxe,{}", boot_url(conf));
    let _ = writeln!(s);
    let _ = writeln!(s, "# Nodes with a static address (node set ipaddr ...).");
    let mut by_addr: HashMap<std::net::Ipv4Addr, &Node> = HashMap::new();
    for n in nodes {
        let Some(e) = n.ipaddr.first() else {
            continue;
        };
        if let Some(other) = by_addr.get(&e.addr) {
            warnings.push(format!(
                "{} ({}) has address {} already given to {} ({}); left out",
                n.hostname, n.nodeid, e.addr, other.hostname, other.nodeid
            ));
            continue;
        }
        by_addr.insert(e.addr, n);
        let _ = writeln!(s, "dhcp-host={},{},{}", n.nodeid, e.addr, n.hostname);
    }
    (s, warnings)
}

/// Writes the configuration atomically.
pub fn write(path: &Path, text: &str) -> crate::Result<()> {
    crate::fsutil::write_atomic(path, text.as_bytes())
}
