//! What a newcomer trying the node commands ran into, end to end through
//! the `vnfs` binary.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use vnfs_provisioner::config::VnfsConf;

/// A device name no machine running the tests has.
const NO_SUCH_DEVICE: &str = "vnfsnosuch0";

#[path = "support/home.rs"]
mod home;
use home::Home;

impl Home {
    /// `vnfs init` for a network given in full, plus `n` nodes.
    fn init_with_nodes(&self, n: u32) {
        self.ok(&[
            "init",
            "--yes",
            "--device",
            "lo",
            "--address",
            "127.0.0.1",
            "--dhcp-start",
            "127.0.1.0",
            "--dhcp-end",
            "127.0.1.254",
        ]);
        if n == 0 {
            return;
        }
        let macs: Vec<String> = (0..n).map(|i| format!("52:54:00:00:00:{i:02x}")).collect();
        let mut args = vec!["node", "add"];
        args.extend(macs.iter().map(String::as_str));
        self.ok(&args);
    }
}

#[test]
fn a_node_whose_image_was_deleted_is_told_to_wait() {
    let h = Home::new();
    h.init_with_nodes(3);
    let root = h.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "debian\n").unwrap();
    h.ok(&[
        "commit",
        "-n",
        "debian-bookworm-minimal",
        root.to_str().unwrap(),
    ]);
    h.ok(&[
        "node",
        "set",
        "vnfs",
        "debian-bookworm-minimal",
        "n000[0-2]",
    ]);
    h.ok(&["module", "activate", "hostname"]);
    let (script, warn) = h.ok_with_stderr(&["nodescript", "n0001", "init"]);
    assert!(
        script.contains("module hostname") && warn.is_empty(),
        "{warn}"
    );
    // Nodes use it: refused, naming them, unless forced.
    let e = h.fails(&["delete", "debian-bookworm-minimal"]);
    assert!(e.contains("n0000") && e.contains("--force"), "{e}");
    let (_, warn) = h.ok_with_stderr(&["delete", "--force", "debian-bookworm-minimal"]);
    assert!(warn.contains("n0001"), "{warn}");
    let (script, warn) = h.ok_with_stderr(&["nodescript", "n0001", "init"]);
    assert!(!script.contains("module hostname"), "{script}");
    assert!(
        warn.contains(
            "node n0001 is set to VNFS 'debian-bookworm-minimal', which is not in the store"
        ),
        "{warn}"
    );
    let f = h.path().join("init.sh");
    std::fs::write(&f, &script).unwrap();
    let dest = h.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let out = Command::new("sh")
        .arg(&f)
        .env("DESTDIR", &dest)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "VNFS image 'debian-bookworm-minimal' of node n0001 is not in the master's store"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dest.join("etc/hostname").exists());
}

#[test]
fn init_refuses_to_borrow_another_interfaces_address() {
    let h = Home::new();
    let e = h.fails(&["init", "--yes", "--device", NO_SUCH_DEVICE]);
    assert!(
        e.contains(&format!(
            "network device '{NO_SUCH_DEVICE}' does not exist on this machine"
        )) && e.contains("give --address, --dhcp-start, --dhcp-end"),
        "{e}"
    );
    assert!(!h.path().join("vnfs.conf").exists());
    // Given in full, a configuration for a device this machine lacks is
    // written (a master prepared elsewhere), with a warning.
    let (_, warn) = h.ok_with_stderr(&[
        "init",
        "--yes",
        "--device",
        NO_SUCH_DEVICE,
        "--address",
        "10.9.0.1",
        "--dhcp-start",
        "10.9.1.0",
        "--dhcp-end",
        "10.9.1.100",
    ]);
    assert!(warn.contains("does not exist on this machine"), "{warn}");
    let conf = std::fs::read_to_string(h.path().join("vnfs.conf")).unwrap();
    assert!(
        conf.contains(&format!("master network device = {NO_SUCH_DEVICE}\n"))
            && conf.contains("master address = 10.9.0.1\n"),
        "{conf}"
    );
}

#[test]
fn init_warns_about_a_dhcp_range_off_the_masters_network() {
    let h = Home::new();
    let (_, warn) = h.ok_with_stderr(&[
        "init",
        "--yes",
        "--device",
        NO_SUCH_DEVICE,
        "--address",
        "192.168.1.1",
        "--dhcp-start",
        "10.0.0.10",
        "--dhcp-end",
        "10.0.0.50",
    ]);
    assert!(
        warn.contains(
            "the DHCP range 10.0.0.10 - 10.0.0.50 is not in the network of the master address 192.168.1.1"
        ),
        "{warn}"
    );
}

#[test]
fn init_asks_again_when_a_missing_device_leaves_no_default() {
    let h = Home::new();
    let mut child = h
        .cmd(&["init"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // device, an empty address (no default to keep), then the address,
    // range and defaults for the rest.
    let answers = format!("{NO_SUCH_DEVICE}\n\n10.5.0.1\n10.5.1.0\n10.5.1.200\n\n\n\n\n\n\n\n\n");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answers.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("does not exist on this machine"), "{err}");
    assert!(
        err.contains("What address do the nodes use to reach this master?: "),
        "no default offered: {err}"
    );
    assert!(
        err.contains("address: there is no default to keep") && err.contains("try again"),
        "{err}"
    );
    let conf = std::fs::read_to_string(h.path().join("vnfs.conf")).unwrap();
    assert!(conf.contains("master address = 10.5.0.1\n"), "{conf}");
}

#[test]
fn a_custom_state_without_modules_warns() {
    let h = Home::new();
    h.init_with_nodes(2);
    let (script, warn) = h.ok_with_stderr(&["nodescript", "n0001", "bogus"]);
    assert!(script.contains("# modules: (none)\n"));
    assert!(
        warn.contains("warning: no module runs for node n0001 at custom state 'bogus'"),
        "{warn}"
    );
    let (_, warn) = h.ok_with_stderr(&["nodescript", "n0001", "ready"]);
    assert!(warn.is_empty(), "{warn}");
    let (_, warn) = h.ok_with_stderr(&["-q", "nodescript", "n0001", "bogus"]);
    assert!(warn.is_empty(), "--quiet: {warn}");
}

#[test]
fn an_activation_that_matches_no_node_warns() {
    let h = Home::new();
    h.init_with_nodes(2);
    let (out, warn) = h.ok_with_stderr(&["module", "activate", "ipaddr", "init/node/zz[1-2]"]);
    assert!(out.contains("Activated ipaddr for init/node/zz[1-2]"));
    assert!(
        warn.contains("init/node/zz[1-2]: no node's name or NodeID matches 'zz[1-2]' yet"),
        "{warn}"
    );
    let (list, _) = h.ok_with_stderr(&["module", "list"]);
    assert!(list.contains("init/node/zz[1-2]"), "{list}");
    let (_, warn) = h.ok_with_stderr(&["module", "activate", "ipaddr", "init/node/n000[0-1]"]);
    assert!(warn.is_empty(), "{warn}");
}

#[test]
fn a_bad_ipaddr_is_named_once() {
    let h = Home::new();
    h.init_with_nodes(1);
    let e = h.fails(&["node", "set", "ipaddr", "10.0.0.300", "n0000"]);
    assert_eq!(e.matches("10.0.0.300").count(), 1, "{e}");
    assert!(e.contains("not an IPv4 address"), "{e}");
}

#[test]
fn nodeid_is_offered_only_where_nodes_are_named() {
    let h = Home::new();
    let help = |args: &[&str]| {
        let mut a = args.to_vec();
        a.push("--help");
        h.ok(&a)
    };
    for c in [
        &["mount"][..],
        &["image"],
        &["export"],
        &["store", "gc"],
        &["build"],
        &["node", "add"],
        &["group", "set"],
        &["module", "activate"],
    ] {
        assert!(!help(c).contains("--nodeid"), "{c:?} shows --nodeid");
    }
    for c in [
        &["node", "show"][..],
        &["node", "set"],
        &["node", "delete"],
        &["node", "replace"],
        &["node", "list"],
        &["node", "summary"],
        &["node", "status"],
        &["nodescript"],
    ] {
        assert!(help(c).contains("-i, --nodeid"), "{c:?} lacks --nodeid");
    }
    // Every position it was accepted in still works.
    h.init_with_nodes(2);
    let mac = "52:54:00:00:00:01";
    for args in [
        &["-i", "node", "show", mac][..],
        &["node", "-i", "show", mac],
        &["node", "show", "-i", mac],
        &["node", "show", mac, "--nodeid"],
        &["--nodeid", "nodescript", mac, "ready"],
        &["nodescript", "-i", mac, "ready"],
    ] {
        let (out, _) = h.ok_with_stderr(args);
        assert!(out.contains("n0001"), "{args:?}: {out}");
    }
    // Accepted (hidden) where it means nothing, as before.
    h.ok(&["-i", "list"]);
}

#[test]
fn the_readme_names_the_daemon_port_init_writes() {
    let port = VnfsConf::default().daemon_port;
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut seen = 0;
    for (i, _) in readme.match_indices("--master http://") {
        let url = &readme[i + "--master ".len()..];
        let host_port = url["http://".len()..]
            .split(|c: char| c == '/' || c.is_whitespace())
            .next()
            .unwrap();
        let p = host_port.rsplit_once(':').map(|(_, p)| p);
        assert_eq!(
            p,
            Some(port.to_string().as_str()),
            "README: {host_port} is not the daemon port {port}"
        );
        seen += 1;
    }
    assert!(seen > 0, "README has no --master example");
    let h = Home::new();
    h.init_with_nodes(0);
    let conf = std::fs::read_to_string(h.path().join("vnfs.conf")).unwrap();
    assert!(
        conf.contains(&format!("\ndaemon port = {port}\n")),
        "{conf}"
    );
}
