//! The dnsmasq configuration is accepted by dnsmasq itself (`--test`).
//! dnsmasq must be installed (`apt-get install dnsmasq`): without it this
//! test fails, it does not skip.

use std::path::PathBuf;
use std::process::Command;

use vnfs_provisioner::config::{Defaults, VnfsConf};
use vnfs_provisioner::db::NodeDb;
use vnfs_provisioner::dhcp::{self, DhcpOptions};
use vnfs_provisioner::node::Field;
use vnfs_provisioner::{Images, Mac, Selector};

fn dnsmasq() -> PathBuf {
    let dirs = std::env::var("PATH").unwrap_or_default();
    for d in dirs.split(':').chain(["/usr/sbin", "/sbin"]) {
        let p = PathBuf::from(d).join("dnsmasq");
        if p.is_file() {
            return p;
        }
    }
    panic!("dnsmasq is not installed: `apt-get install dnsmasq` (this test must not be skipped)");
}

#[test]
fn dnsmasq_accepts_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = NodeDb::open(&dir.path().join("nodes.db")).unwrap();
    let macs: Vec<Mac> = (0..5).map(|i| Mac([0x52, 0x54, 0, 0, 0, i])).collect();
    db.add(&macs, &Defaults::default(), &Images::default())
        .unwrap();
    let sel = |p: &str| Selector::from_args(&[p], false).unwrap();
    db.set(
        &sel("n0001"),
        &Field::Ipaddr,
        "10.0.1.1",
        &Images::default(),
    )
    .unwrap();
    db.set(
        &sel("n0002"),
        &Field::Ipaddr,
        "eth0:10.0.1.2/16/10.0.0.1",
        &Images::default(),
    )
    .unwrap();
    // A clash: reported and left out, so dnsmasq never sees two owners.
    db.set(
        &sel("n0003"),
        &Field::Ipaddr,
        "10.0.1.2",
        &Images::default(),
    )
    .unwrap();
    let conf = VnfsConf::default();
    let tftp = dir.path().join("tftp");
    std::fs::create_dir_all(&tftp).unwrap();
    for f in [dhcp::BIOS_IPXE, dhcp::EFI_IPXE] {
        std::fs::write(tftp.join(f), b"ipxe").unwrap();
    }
    let opts = DhcpOptions {
        tftp_root: tftp,
        leasefile: Some(dir.path().join("leases")),
    };
    let (text, warnings) = dhcp::render(&conf, &db.nodes().unwrap(), &opts);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .starts_with("n0003 (52:54:00:00:00:03) has address 10.0.1.2 already given to n0002")
    );
    assert!(text.contains("dhcp-host=52:54:00:00:00:01,10.0.1.1,n0001\n"));
    assert!(text.contains("dhcp-host=52:54:00:00:00:02,10.0.1.2,n0002\n"));
    assert!(!text.contains(",n0003\n"));
    assert!(text.contains("dhcp-range=10.0.128.0,10.0.255.254,12h\n"));
    assert!(text.contains("dhcp-boot=tag:ipxe,http://10.0.0.1:9873/boot/${mac:hexhyp}\n"));
    assert!(text.contains("interface=eth1\n"));
    let path = dir.path().join("dnsmasq.conf");
    dhcp::write(&path, &text).unwrap();
    let out = Command::new(dnsmasq())
        .arg("--test")
        .arg(format!("--conf-file={}", path.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dnsmasq --test rejected the configuration:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        text
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("syntax check OK"));

    // And it notices a broken one, so the check above means something.
    let bad = dir.path().join("bad.conf");
    std::fs::write(
        &bad,
        text.replace("dhcp-range=10.0.128.0", "dhcp-range=10.0.128.x"),
    )
    .unwrap();
    let out = Command::new(dnsmasq())
        .arg("--test")
        .arg(format!("--conf-file={}", bad.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn debian_ipxe_binaries_are_where_the_configuration_says() {
    // Debian's ipxe package must be installed for `vnfs configure dhcp` to
    // produce a working setup; the warning names the missing file otherwise.
    let (_, warnings) = dhcp::render(&VnfsConf::default(), &[], &DhcpOptions::default());
    assert!(
        warnings.is_empty(),
        "install Debian's ipxe package: {warnings:?}"
    );
    let (_, warnings) = dhcp::render(
        &VnfsConf::default(),
        &[],
        &DhcpOptions {
            tftp_root: PathBuf::from("/nonexistent"),
            leasefile: None,
        },
    );
    assert_eq!(warnings.len(), 2);
    assert!(warnings[0].contains("/nonexistent/undionly.kpxe is missing"));
}
