//! The node-management commands end to end through the `vnfs` binary:
//! init, node, group, module, nodescript and configure, with the Perceus
//! guide's command lines.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[path = "support/home.rs"]
mod home;
use home::Home;

impl Home {
    fn init(&self) {
        self.ok(&[
            "init",
            "--yes",
            "--device",
            "eth1",
            "--address",
            "10.0.0.1",
            "--dhcp-start",
            "10.0.128.0",
            "--dhcp-end",
            "10.0.255.254",
        ]);
    }

    fn add(&self, n: u32) {
        let f = self.path().join("macs.txt");
        let text: String = (0..n)
            .map(|i| format!("52:54:00:00:{:02x}:{:02x}\n", i / 256, i % 256))
            .collect();
        std::fs::write(&f, text).unwrap();
        self.ok(&["node", "add", "--file", f.to_str().unwrap()]);
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

#[test]
fn init_writes_both_files_and_refuses_to_clobber() {
    let h = Home::new();
    let out = h.ok(&[
        "init",
        "--yes",
        "--device",
        "eth1",
        "--address",
        "10.0.0.1",
        "--dhcp-start",
        "10.0.128.0",
        "--dhcp-end",
        "10.0.255.254",
        "--first-node",
        "1",
    ]);
    assert!(out.contains("vnfs.conf") && out.contains("defaults.conf"));
    let conf = std::fs::read_to_string(h.path().join("vnfs.conf")).unwrap();
    assert!(
        conf.contains("\nmaster network device = eth1\n")
            && conf.contains("\nmaster address = 10.0.0.1\n")
    );
    assert!(
        std::fs::read_to_string(h.path().join("defaults.conf"))
            .unwrap()
            .contains("\nFirst Node = 1\n")
    );
    let e = h.fails(&["init", "--yes"]);
    assert!(e.contains("already exists; pass --force"), "{e}");
    let e = h.fails(&["init", "--yes", "--force", "--port", "none"]);
    assert!(e.contains("--port") && e.contains("'none'"), "{e}");
}

#[test]
fn init_asks_the_questions_on_stdin() {
    let h = Home::new();
    let mut child = h
        .cmd(&["init"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // device, address, dhcp start, dhcp end (a bad answer first), domain,
    // then the defaults for everything else.
    let answers =
        "eth7\n10.5.0.1\n10.5.1.0\nnot-an-address\n10.5.1.255\nhpc\n\n\nnode###\n\n\n\n\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answers.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Which network device"), "{err}");
    assert!(err.contains("not an IPv4 address; try again"), "{err}");
    let conf = std::fs::read_to_string(h.path().join("vnfs.conf")).unwrap();
    for want in [
        "master network device = eth7",
        "master address = 10.5.0.1",
        "dhcp range end = 10.5.1.255",
        "domain = hpc",
    ] {
        assert!(conf.contains(want), "{want}\n{conf}");
    }
    assert!(
        std::fs::read_to_string(h.path().join("defaults.conf"))
            .unwrap()
            .contains("Node Name = node###")
    );
    // Closed stdin before the end is an error, not silent defaults.
    let h2 = Home::new();
    let out = h2.cmd(&["init"]).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --yes"));
}

#[test]
fn init_reads_an_existing_perceus_configuration() {
    let h = Home::new();
    let perceus = h.path().join("etc-perceus");
    std::fs::create_dir_all(&perceus).unwrap();
    std::fs::write(perceus.join("perceus.conf"), "master network device = eth1\nvnfs transfer master = 10.0.0.1\nvnfs transfer method = nfs\nvnfs transfer prefix =\nnode timeout = 300\n").unwrap();
    std::fs::write(perceus.join("defaults.conf"), "Node Name = n####\nGroup Name = cluster\nVnfs Name =\nEnabled = 1\nFirst Node = 1\nTotal Nodes = 10000\n").unwrap();
    let out = h.run(&[
        "init",
        "--yes",
        "--from-perceus",
        perceus.to_str().unwrap(),
        "--dhcp-start",
        "10.0.128.0",
        "--dhcp-end",
        "10.0.255.254",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("transfer method 'nfs' is not supported")
    );
    let conf = std::fs::read_to_string(h.path().join("vnfs.conf")).unwrap();
    assert!(conf.contains("node timeout = 300") && conf.contains("master address = 10.0.0.1"));
    // The magazine's numbering: n#### from 1 with 10000 nodes is n00001.
    h.add(2);
    assert_eq!(h.ok(&["node", "list"]), "n00001\nn00002\n");
}

#[test]
fn guide_node_commands() {
    let h = Home::new();
    h.init();
    h.add(1024);
    let f = h.path().join("io.ethers");
    std::fs::write(&f, "02:00:00:00:00:01 io1\n02:00:00:00:00:02 io2\n").unwrap();
    h.ok(&["node", "import", "ethers", f.to_str().unwrap()]);
    // 5.2.1, verbatim but for the image name: the store is empty here, so
    // the guide's command must fail clearly and change nothing.
    let before = h.ok(&["--json", "node", "show"]);
    let e = h.fails(&[
        "node",
        "set",
        "vnfs",
        "caos-nsa-node-1.0-1.stateless.x86_64",
        "n00[00-05,06,20-40]",
        "io*",
    ]);
    assert!(
        e.contains("no VNFS image named 'caos-nsa-node-1.0-1.stateless.x86_64' in the store"),
        "{e}"
    );
    assert_eq!(h.ok(&["--json", "node", "show"]), before);
    // The same selection with a field that needs no image.
    let out = h.ok(&[
        "node",
        "set",
        "desc",
        "selected",
        "n00[00-05,06,20-40]",
        "io*",
    ]);
    assert_eq!(out, "Set desc = 'selected' on 30 node(s)\n");
    // 4.2.2
    h.ok(&["node", "set", "desc", "hello world", "n0000", "n00[02-09]"]);
    h.ok(&["node", "set", "enabled", "0", "n0015"]);
    h.ok(&["node", "set", "hostname", "newname", "n0000"]);
    assert!(
        h.ok(&["node", "show", "newname"])
            .contains("\ndesc: hello world\n")
    );
    assert!(
        h.ok(&["node", "summary", "n0015"])
            .contains("n0015     cluster    0")
    );
    // 5.2.2
    let out = h.ok(&["node", "delete", "n000[0-2]"]);
    assert_eq!(
        out,
        "Deleted n0001 (52:54:00:00:00:01)\nDeleted n0002 (52:54:00:00:00:02)\n"
    );
    // 5.2.3, verbatim.
    let out = h.ok(&["node", "add", "00:11:22:33:44:55"]);
    assert_eq!(
        out, "Added n0000 (00:11:22:33:44:55)\n",
        "the lowest free name is reused"
    );
    h.ok(&["node", "set", "hostname", "n1024", "n0000"]);
    h.ok(&["node", "set", "desc", "New node is a hot spare", "n1024"]);
    h.ok(&[
        "node",
        "set",
        "desc",
        "This node just burnt up its CPU",
        "n0099",
    ]);
    h.ok(&["node", "replace", "n0099", "n1024"]);
    let show = h.ok(&["node", "show", "n0099"]);
    assert!(
        show.starts_with("nodeid: 00:11:22:33:44:55\nhostname: n0099\n"),
        "{show}"
    );
    assert!(h.ok(&["node", "list", "n1024"]).is_empty());
    // 3.1.3: list with ranges and globs.
    let out = h.ok(&["node", "list", "n00[00-97,99-199]", "n1*"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"n0003"));
    assert!(lines.contains(&"n0099") && !lines.contains(&"n0098") && lines.contains(&"n1023"));
    // 4.2.3: duplicate names warn; -i addresses by MAC, before or after the subcommand.
    let out = h.run(&["node", "set", "hostname", "duplicatename", "n00[10-12]"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("shared by 3 nodes"));
    let show = h.ok(&["-i", "node", "show", "52:54:00:00:00:0b"]);
    assert!(show.contains("hostname: duplicatename\n"));
    h.ok(&[
        "--nodeid",
        "node",
        "set",
        "hostname",
        "newname2",
        "52:54:00:00:00:0B",
    ]);
    assert_eq!(h.ok(&["node", "list", "newname2"]), "newname2\n");
    assert!(
        h.ok(&["node", "show", "-i", "52:54:00:00:00:0b"])
            .contains("hostname: newname2")
    );
}

#[test]
fn status_summary_show_and_json() {
    let h = Home::new();
    h.init();
    h.add(3);
    let out = h.ok(&["node", "status"]);
    assert_eq!(
        out.lines().next(),
        Some("HostName  Status   IpAddr  Last Contact")
    );
    assert!(out.contains("n0000     unknown          never"));
    let out = h.ok(&["node", "summary"]);
    assert_eq!(
        out,
        "HostName  GroupName  Enabled  Vnfs\nn0000     cluster    1\nn0001     cluster    1\nn0002     cluster    1\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&h.ok(&["--json", "node", "status", "n0001"])).unwrap();
    assert_eq!(json[0]["hostname"], "n0001");
    assert_eq!(json[0]["timed_out"], false);
    let json: serde_json::Value = serde_json::from_str(&h.ok(&["--json", "node", "list"])).unwrap();
    assert_eq!(json, serde_json::json!(["n0000", "n0001", "n0002"]));
    // No match in a listing is a warning; in a change it is an error.
    let out = h.run(&["node", "list", "zz*"]);
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("no node matches 'zz*'")
    );
    assert!(
        h.fails(&["node", "delete", "zz*"])
            .contains("no node matches 'zz*'")
    );
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let h = Home::new();
    h.init();
    h.add(5);
    let before = h.ok(&["--json", "node", "show"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["node", "add", "00:11:22:33:44"],
            "malformed MAC address '00:11:22:33:44'",
        ),
        (
            &["node", "add", "52:54:00:00:00:01"],
            "node 52:54:00:00:00:01 already exists (hostname n0001)",
        ),
        (
            &["node", "set", "desc", "x", "n[5-2]"],
            "descending range 5-2",
        ),
        (&["node", "set", "desc", "x", "n[1-3"], "unbalanced '['"),
        (&["node", "set", "desc", "x", "n1-3]"], "unbalanced ']'"),
        (&["node", "set", "desc", "x", "n[]"], "empty range"),
        (
            &["node", "set", "colour", "x", "n0001"],
            "unknown field 'colour'",
        ),
        (
            &["node", "set", "vnfs", "nosuch", "n0001"],
            "no VNFS image named 'nosuch'",
        ),
        (
            &["node", "set", "enabled", "maybe", "n0001"],
            "invalid value 'maybe' for field 'enabled'",
        ),
        (
            &["node", "replace", "n000*", "n0001"],
            "'n000*' must name exactly one node, it names 5",
        ),
        (
            &["-i", "node", "delete", "n0001"],
            "malformed MAC address 'n0001'",
        ),
        (
            &["group", "set", "desc", "x", "nogroup"],
            "no group matches 'nogroup'",
        ),
    ];
    for (args, want) in cases {
        let e = h.fails(args);
        assert!(e.contains(want), "vnfs {args:?}: {e}");
        assert_eq!(
            h.ok(&["--json", "node", "show"]),
            before,
            "vnfs {args:?} changed the database"
        );
    }
    let f = h.file(
        "dup.ethers",
        "52:54:00:00:00:09 fresh\n52:54:00:00:00:00 clash\n",
    );
    assert!(
        h.fails(&["node", "import", "ethers", f.to_str().unwrap()])
            .contains("already exists")
    );
    let f = h.file(
        "bad.ethers",
        "52:54:00:00:00:09 fresh\n52:54:00:00:00 broken\n",
    );
    let e = h.fails(&["node", "import", "ethers", f.to_str().unwrap()]);
    assert!(e.contains("bad.ethers:2: malformed MAC"), "{e}");
    assert_eq!(h.ok(&["--json", "node", "show"]), before);
}

#[test]
fn groups_and_importers() {
    let h = Home::new();
    h.init();
    h.add(20);
    // 4.2.4, verbatim (the vnfs lines need images, checked in the library tests).
    h.ok(&["node", "set", "group", "interactive", "n000[0-9]"]);
    h.ok(&["node", "set", "group", "compute", "n[0010-1023]"]);
    h.ok(&[
        "group",
        "set",
        "desc",
        "Interactive and login nodes",
        "interactive",
    ]);
    assert_eq!(
        h.ok(&["group", "list"]),
        "GroupName    Nodes  Enabled\ncompute      10     10\ninteractive  10     10\n"
    );
    h.ok(&["group", "set", "enabled", "0", "comp*"]);
    let show = h.ok(&["group", "show", "compute"]);
    assert!(
        show.contains("enabled: 0\n") && show.contains("members: n0010 n0011"),
        "{show}"
    );
    assert!(
        h.ok(&["node", "show", "n0003"])
            .contains("desc: Interactive and login nodes")
    );
    let dhcpd = h.file(
        "dhcpd.conf",
        "host n0000x {\n    hardware ethernet 00:00:00:00:01:00;\n    fixed-address 10.0.1.0;\n}\n",
    );
    assert_eq!(
        h.ok(&["node", "import", "dhcpd", dhcpd.to_str().unwrap()]),
        "Added n0000x (00:00:00:00:01:00)\n"
    );
    let ww = h.file("nodes.conf", "nodes:\n  ww1:\n    profiles: [default, gpu]\n    network devices:\n      default:\n        device: eth0\n        hwaddr: 00:00:00:00:02:00\n        ipaddr: 10.0.2.1\n        netmask: 255.255.0.0\n");
    h.ok(&["node", "import", "warewulf", ww.to_str().unwrap()]);
    let show = h.ok(&["node", "show", "ww1"]);
    assert!(
        show.contains("group: gpu\n") && show.contains("ipaddr: eth0:10.0.2.1/16\n"),
        "{show}"
    );
}

#[test]
fn modules_nodescript_and_dhcp() {
    let h = Home::new();
    h.init();
    h.add(3);
    h.ok(&["node", "set", "enabled", "1", "n*"]);
    let list = h.ok(&["module", "list"]);
    for m in [
        "groupfile",
        "hostname",
        "ipaddr",
        "masterauth",
        "modprobe",
        "passwdfile",
        "syncnodes",
    ] {
        assert!(
            list.contains(&format!("\n{m} ")),
            "{m} missing from\n{list}"
        );
    }
    // Guide 4.6.2.
    assert_eq!(
        h.ok(&["module", "activate", "hostname", "init/all"]),
        "Activated hostname for init/all\n"
    );
    h.ok(&[
        "module",
        "activate",
        "groupfile",
        "init/node/node0000",
        "init/group/anothergroup",
    ]);
    h.ok(&["module", "activate", "passwdfile", "ready/group/newgroup"]);
    assert!(
        h.fails(&["module", "activate", "virtualization"])
            .contains("no such module")
    );
    h.ok(&["module", "activate", "masterauth"]);
    assert!(
        h.ok(&["module", "list"])
            .contains("masterauth  builtin  init/all,ready/all")
    );
    // A .pmod made with `module pack`, imported, activated for a custom state.
    let src = h.path().join("mod-src");
    std::fs::create_dir_all(src.join("scripts")).unwrap();
    std::fs::write(
        src.join("module.toml"),
        "name = \"motd\"\ndescription = \"Message of the day\"\ndefault_states = [\"ready/all\"]\n",
    )
    .unwrap();
    std::fs::write(
        src.join("scripts/ready.sh"),
        "echo \"Welcome to $NODE_HOSTNAME\" > \"$DESTDIR/etc/motd\"\n",
    )
    .unwrap();
    let pmod = h.path().join("motd.pmod");
    h.ok(&[
        "module",
        "pack",
        src.to_str().unwrap(),
        pmod.to_str().unwrap(),
    ]);
    assert_eq!(
        h.ok(&["module", "import", pmod.to_str().unwrap()]),
        "Imported module motd (states: ready)\n"
    );
    h.ok(&["module", "activate", "motd"]);
    let script = h.ok(&["nodescript", "n0001", "ready"]);
    assert!(script.starts_with("#!/bin/sh\n# vnfs nodescript: node n0001 (52:54:00:00:00:01) at state ready\n# modules: masterauth motd\n"), "{script}");
    // It runs.
    let dest = h.path().join("scratch");
    std::fs::create_dir_all(dest.join("etc")).unwrap();
    let sh = h.file("ns.sh", &script);
    let out = Command::new("sh")
        .arg(&sh)
        .env("DESTDIR", &dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("etc/motd")).unwrap(),
        "Welcome to n0001\n"
    );
    assert_eq!(
        std::fs::read(dest.join("etc/passwd")).unwrap(),
        std::fs::read("/etc/passwd").unwrap()
    );
    // By MAC, and the same bytes as by name.
    assert_eq!(
        h.ok(&["-i", "nodescript", "52:54:00:00:00:01", "ready"]),
        script
    );
    assert!(
        h.fails(&["nodescript", "n*", "ready"])
            .contains("must name exactly one node")
    );
    assert!(
        h.fails(&["nodescript", "n0001", "Ready!"])
            .contains("provisionary state")
    );
    h.ok(&["module", "deactivate", "motd"]);
    assert!(!h.ok(&["nodescript", "n0001", "ready"]).contains("motd"));
    let corrupt = h.file("corrupt.pmod", "garbage");
    assert!(
        h.fails(&["module", "import", corrupt.to_str().unwrap()])
            .contains("not a readable .pmod")
    );
    // DHCP.
    h.ok(&["node", "set", "ipaddr", "10.0.1.1", "n0001"]);
    let conf = h.ok(&["configure", "dhcp", "-o", "-"]);
    assert!(conf.contains("dhcp-host=52:54:00:00:00:01,10.0.1.1,n0001\n"));
    let out = h.ok(&["configure", "dhcp"]);
    assert!(out.starts_with(&format!(
        "Wrote {}",
        h.path().join("dnsmasq.conf").display()
    )));
}

#[test]
fn commands_that_need_init_say_so() {
    let h = Home::new();
    h.add(1);
    assert!(
        h.fails(&["configure", "dhcp"])
            .contains("run `vnfs init` first")
    );
    assert!(
        h.fails(&["nodescript", "n0000", "init"])
            .contains("run `vnfs init` first")
    );
}
