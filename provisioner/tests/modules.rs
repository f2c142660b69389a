//! Modules for real: every shipped module's nodescript is run with `sh`
//! against a scratch root, and the files it writes are checked. Also .pmod
//! packing, importing, hostile archives and activation rules.

use std::path::{Path, PathBuf};
use std::process::Command;

use vnfs_provisioner::config::{Defaults, VnfsConf};
use vnfs_provisioner::db::NodeDb;
use vnfs_provisioner::module::{self, ModuleStore};
use vnfs_provisioner::node::Field;
use vnfs_provisioner::nodescript::{self, ScriptContext};
use vnfs_provisioner::{Error, Images, Mac, Node, Selector, activation};

struct Site {
    _dir: tempfile::TempDir,
    root: PathBuf,
    db: NodeDb,
    store: ModuleStore,
    conf: VnfsConf,
    images: Images,
    master: PathBuf,
}

fn site(nodes: u8) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut db = NodeDb::open(&root.join("home/nodes.db")).unwrap();
    let macs: Vec<Mac> = (0..nodes).map(|i| Mac([2, 0, 0, 0, 0, i])).collect();
    let images = Images::from_refs([("debian-node", "c0ffee"), ("other", "")]);
    db.add(&macs, &Defaults::default(), &images).unwrap();
    db.set(&sel("n*"), &Field::Vnfs, "debian-node", &images)
        .unwrap();
    let store = ModuleStore::new(&root.join("home"), &root.join("etc"));
    let master = root.join("master");
    std::fs::create_dir_all(master.join("etc")).unwrap();
    Site {
        _dir: dir,
        root,
        db,
        store,
        conf: VnfsConf::default(),
        images,
        master,
    }
}

fn sel(p: &str) -> Selector {
    Selector::from_args(&[p], false).unwrap()
}

impl Site {
    fn node(&self, name: &str) -> Node {
        let mut v = self.db.select(&sel(name), true).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    fn script(&self, name: &str, state: &str) -> String {
        let acts = self.db.activations().unwrap();
        let ctx = ScriptContext {
            conf: &self.conf,
            images: &self.images,
            modules: &self.store,
            activations: &acts,
            master_root: &self.master,
        };
        nodescript::render(&ctx, &self.node(name), state).unwrap()
    }

    fn activate(&mut self, m: &str, states: &[&str]) {
        let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
        activation::activate(&mut self.db, &self.store, m, &states).unwrap();
    }

    /// Runs a nodescript with DESTDIR pointing at a fresh scratch root.
    fn run(&self, script: &str, dest: &Path, env: &[(&str, &str)]) -> std::process::Output {
        std::fs::create_dir_all(dest).unwrap();
        let f = self.root.join("nodescript.sh");
        std::fs::write(&f, script).unwrap();
        let mut c = Command::new("sh");
        c.arg(&f).env("DESTDIR", dest);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn config(&self, module: &str, rel: &str, text: &str) {
        let p = self.store.config_of(module).join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "nodescript failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

#[test]
fn hostname_writes_hostname_and_hosts() {
    let mut s = site(3);
    s.activate("hostname", &[]);
    let dest = s.root.join("scratch");
    std::fs::create_dir_all(dest.join("etc")).unwrap();
    std::fs::write(
        dest.join("etc/hosts"),
        "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1 ip6-localhost\n",
    )
    .unwrap();
    ok(&s.run(&s.script("n0001", "init"), &dest, &[]));
    assert_eq!(read(dest.join("etc/hostname")), "n0001\n");
    assert_eq!(
        read(dest.join("etc/hosts")),
        "127.0.0.1\tlocalhost\n::1 ip6-localhost\n127.0.1.1\tn0001.cluster n0001\n"
    );
}

#[test]
fn masterauth_copies_passwd_and_group_never_shadow() {
    let mut s = site(2);
    std::fs::write(
        s.master.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice O'Hara:/home/alice:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(s.master.join("etc/group"), "root:x:0:\nalice:x:1000:\n").unwrap();
    std::fs::write(
        s.master.join("etc/shadow"),
        "alice:$6$SECRETHASH:19000:0:99999:7:::\n",
    )
    .unwrap();
    s.activate("masterauth", &[]);
    for state in ["init", "ready"] {
        let script = s.script("n0000", state);
        assert!(
            !script.contains("SECRETHASH"),
            "shadow content leaked into the nodescript"
        );
        let dest = s.root.join(format!("scratch-{state}"));
        ok(&s.run(&script, &dest, &[]));
        assert_eq!(
            read(dest.join("etc/passwd")),
            read(s.master.join("etc/passwd"))
        );
        assert_eq!(
            read(dest.join("etc/group")),
            read(s.master.join("etc/group"))
        );
        assert!(!dest.join("etc/shadow").exists());
    }
}

#[test]
fn passwdfile_and_groupfile_assemble_fragments_in_order() {
    let mut s = site(3);
    let imgs = s.images.clone();
    s.db.set(&sel("n0001"), &Field::Group, "compute", &imgs)
        .unwrap();
    s.config("passwdfile", "all", "root:x:0:0:root:/root:/bin/sh\n");
    s.config(
        "passwdfile",
        "group/compute",
        "slurm:x:64030:64030::/var/lib/slurm:/bin/false\n",
    );
    s.config(
        "passwdfile",
        "vnfs/debian-node",
        "_apt:x:42:65534::/nonexistent:/usr/sbin/nologin",
    );
    s.config(
        "passwdfile",
        "node/n0001",
        "bob:x:1001:1001::/home/bob:/bin/bash\n",
    );
    s.config("groupfile", "all", "root:x:0:\n");
    s.config("groupfile", "group/compute", "slurm:x:64030:\n");
    s.activate("passwdfile", &["init/all"]);
    s.activate("groupfile", &["init/group/comp*"]);
    let dest = s.root.join("n1");
    ok(&s.run(&s.script("n0001", "init"), &dest, &[]));
    assert_eq!(
        read(dest.join("etc/passwd")),
        "root:x:0:0:root:/root:/bin/sh\nslurm:x:64030:64030::/var/lib/slurm:/bin/false\n_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\nbob:x:1001:1001::/home/bob:/bin/bash\n"
    );
    assert_eq!(read(dest.join("etc/group")), "root:x:0:\nslurm:x:64030:\n");
    // n0002 is in group cluster: no group fragment, no node fragment, and
    // groupfile is not active for its group at all.
    let dest = s.root.join("n2");
    std::fs::create_dir_all(dest.join("etc")).unwrap();
    std::fs::write(dest.join("etc/group"), "image:x:1:\n").unwrap();
    ok(&s.run(&s.script("n0002", "init"), &dest, &[]));
    assert_eq!(
        read(dest.join("etc/passwd")),
        "root:x:0:0:root:/root:/bin/sh\n_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n"
    );
    assert_eq!(read(dest.join("etc/group")), "image:x:1:\n");
}

#[test]
fn ipaddr_writes_ifupdown_or_networkd() {
    let mut s = site(2);
    let imgs = s.images.clone();
    s.db.set(
        &sel("n0000"),
        &Field::Ipaddr,
        "10.0.9.9 eth0:10.0.1.5/255.255.0.0/10.0.0.1 ib0:192.168.5.5/24",
        &imgs,
    )
    .unwrap();
    s.activate("ipaddr", &[]);
    let script = s.script("n0000", "init");
    let dest = s.root.join("ifupdown");
    std::fs::create_dir_all(dest.join("etc/network")).unwrap();
    ok(&s.run(&script, &dest, &[]));
    assert_eq!(
        read(dest.join("etc/network/interfaces.d/vnfs-eth0")),
        "auto eth0\niface eth0 inet static\n    address 10.0.1.5/16\n    gateway 10.0.0.1\n"
    );
    assert_eq!(
        read(dest.join("etc/network/interfaces.d/vnfs-ib0")),
        "auto ib0\niface ib0 inet static\n    address 192.168.5.5/24\n"
    );
    let listed: Vec<_> = std::fs::read_dir(dest.join("etc/network/interfaces.d"))
        .unwrap()
        .collect();
    assert_eq!(
        listed.len(),
        2,
        "the DHCP-only entry must not be configured"
    );
    let dest = s.root.join("networkd");
    ok(&s.run(&script, &dest, &[]));
    assert_eq!(
        read(dest.join("etc/systemd/network/10-vnfs-eth0.network")),
        "[Match]\nName=eth0\n\n[Network]\nAddress=10.0.1.5/16\nGateway=10.0.0.1\n"
    );
    assert_eq!(
        read(dest.join("etc/systemd/network/10-vnfs-ib0.network")),
        "[Match]\nName=ib0\n\n[Network]\nAddress=192.168.5.5/24\n"
    );
}

#[test]
fn modprobe_lists_and_loads_modules() {
    let mut s = site(2);
    s.config("modprobe", "all", "e1000e   # onboard NIC\n\n");
    s.config("modprobe", "node/n0001", "ib_ipoib mlx5_core\n");
    s.activate("modprobe", &[]);
    let dest = s.root.join("scratch");
    let log = s.root.join("modprobe.log");
    let fake = s.root.join("fake-modprobe");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    ok(&s.run(
        &s.script("n0001", "init"),
        &dest,
        &[("VNFS_MODPROBE", fake.to_str().unwrap())],
    ));
    assert_eq!(
        read(dest.join("etc/modules-load.d/vnfs-modprobe.conf")),
        "e1000e\nib_ipoib\nmlx5_core\n"
    );
    assert_eq!(read(&log), "e1000e\nib_ipoib\nmlx5_core\n");
}

#[test]
fn syncnodes_reboots_only_when_changed_and_idle() {
    let mut s = site(1);
    s.activate("syncnodes", &[]);
    let dest = s.root.join("scratch");
    ok(&s.run(&s.script("n0000", "init"), &dest, &[]));
    let proc_dir = s.root.join("proc");
    std::fs::create_dir_all(proc_dir.join("1")).unwrap();
    std::fs::write(proc_dir.join("1/status"), "Name:\tinit\nUid:\t0\t0\t0\t0\n").unwrap();
    let marker = s.root.join("rebooted");
    let reboot = format!("touch {}", marker.display());
    let env = [
        ("VNFS_PROC", proc_dir.to_str().unwrap()),
        ("VNFS_REBOOT", reboot.as_str()),
    ];
    // Unchanged configuration: nothing happens.
    ok(&s.run(&s.script("n0000", "ready"), &dest, &env));
    assert!(!marker.exists());
    // A description change does not touch provisioning; a group change does.
    let imgs = s.images.clone();
    s.db.set(&sel("n0000"), &Field::Desc, "note", &imgs)
        .unwrap();
    ok(&s.run(&s.script("n0000", "ready"), &dest, &env));
    assert!(!marker.exists());
    s.db.set(&sel("n0000"), &Field::Group, "compute", &imgs)
        .unwrap();
    // A user's process blocks the reboot.
    std::fs::create_dir_all(proc_dir.join("4242")).unwrap();
    std::fs::write(
        proc_dir.join("4242/status"),
        "Name:\tsim\nUid:\t1000\t1000\t1000\t1000\n",
    )
    .unwrap();
    let out = s.run(&s.script("n0000", "ready"), &dest, &env);
    ok(&out);
    assert!(!marker.exists());
    assert!(String::from_utf8_lossy(&out.stderr).contains("user processes run"));
    std::fs::remove_dir_all(proc_dir.join("4242")).unwrap();
    ok(&s.run(&s.script("n0000", "ready"), &dest, &env));
    assert!(marker.exists(), "changed and idle node was not rebooted");
}

#[test]
fn nodescript_order_variables_debug_and_gates() {
    let mut s = site(3);
    for m in ["syncnodes", "masterauth", "hostname", "modprobe"] {
        s.activate(m, &["init/all"]);
    }
    std::fs::write(s.master.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(s.master.join("etc/group"), "root:x:0:\n").unwrap();
    let imgs = s.images.clone();
    s.db.set(
        &sel("n0000"),
        &Field::Attr("rack-row".into()),
        "it's 3",
        &imgs,
    )
    .unwrap();
    let script = s.script("n0000", "init");
    assert!(
        script.contains("# modules: modprobe hostname masterauth syncnodes\n"),
        "{script}"
    );
    let pos: Vec<usize> = [
        "module modprobe",
        "module hostname",
        "module masterauth",
        "module syncnodes",
    ]
    .iter()
    .map(|m| script.find(m).unwrap())
    .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]));
    assert!(script.contains("NODE_VNFS_COMMIT='c0ffee'\n"));
    assert!(!script.contains("set -x"));
    // Variables survive the shell, quotes included.
    let probe = script.clone()
        + "\nprintf '%s|%s|%s' \"$NODE_ATTR_RACK_ROW\" \"$MASTER_IPADDR\" \"$NODE_HOSTNAME\" > \"$DESTDIR/vars\"\n";
    let dest = s.root.join("vars");
    ok(&s.run(&probe, &dest, &[]));
    assert_eq!(read(dest.join("vars")), "it's 3|10.0.0.1|n0000");
    // Debug above 2 traces.
    s.db.set(&sel("n0000"), &Field::Debug, "3", &imgs).unwrap();
    let script = s.script("n0000", "init");
    assert!(script.contains("\nset -x\n"));
    let out = s.run(&script, &s.root.join("traced"), &[]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("+ "));
    // Disabled, and no VNFS: the node is told to come back later.
    s.db.set(&sel("n0001"), &Field::Enabled, "0", &imgs)
        .unwrap();
    let out = s.run(&s.script("n0001", "init"), &s.root.join("x"), &[]);
    assert_eq!(out.status.code(), Some(nodescript::EXIT_RETRY));
    assert!(String::from_utf8_lossy(&out.stderr).contains("n0001 is not enabled"));
    s.db.set(&sel("n0002"), &Field::Vnfs, "", &imgs).unwrap();
    let out = s.run(&s.script("n0002", "init"), &s.root.join("y"), &[]);
    assert_eq!(out.status.code(), Some(nodescript::EXIT_RETRY));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no VNFS image defined for node n0002"));
}

#[test]
fn a_failing_module_stops_the_script() {
    let mut s = site(1);
    let dir = s.root.join("src/failing");
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::write(
        dir.join("module.toml"),
        "name = \"failing\"\ndefault_states = [\"init/all\"]\norder = 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("scripts/init.sh"),
        "false\necho not reached > \"$DESTDIR/reached\"\n",
    )
    .unwrap();
    s.store.import(&dir).unwrap();
    s.activate("failing", &[]);
    s.activate("hostname", &[]);
    let dest = s.root.join("scratch");
    let out = s.run(&s.script("n0000", "init"), &dest, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("module failing failed at state init"));
    assert!(!dest.join("reached").exists());
    assert!(!dest.join("etc/hostname").exists());
}

#[test]
fn pmod_pack_import_and_custom_states() {
    let mut s = site(6);
    let src = s.root.join("src/bios");
    std::fs::create_dir_all(src.join("scripts")).unwrap();
    std::fs::create_dir_all(src.join("config")).unwrap();
    std::fs::write(
        src.join("module.toml"),
        "name = \"bios\"\ndescription = \"Flash BIOS\"\ndefault_states = [\"maint/all\"]\n",
    )
    .unwrap();
    std::fs::write(
        src.join("scripts/maint.sh"),
        "echo flashing $NODE_HOSTNAME > \"$DESTDIR/flashed\"\n",
    )
    .unwrap();
    std::fs::write(src.join("config/version"), "2.1\n").unwrap();
    let m = module::Module::load_dir(&src).unwrap();
    let pmod = s.root.join("bios.pmod");
    module::pack(&m, &pmod).unwrap();
    let again = s.root.join("bios2.pmod");
    module::pack(&m, &again).unwrap();
    assert_eq!(
        std::fs::read(&pmod).unwrap(),
        std::fs::read(&again).unwrap(),
        "packing is not deterministic"
    );
    // An admin's configuration survives a re-import.
    s.config("bios", "version", "local\n");
    let imported = s.store.import(&pmod).unwrap();
    assert_eq!(imported.name(), "bios");
    assert_eq!(read(s.store.config_of("bios").join("version")), "local\n");
    let list = s.store.list().unwrap();
    assert!(matches!(list["bios"].origin, module::Origin::Imported(_)));
    assert!(matches!(list["hostname"].origin, module::Origin::Builtin));
    s.activate("bios", &["maint/node/n000[1-2]"]);
    assert!(
        s.script("n0001", "maint")
            .contains("module bios (maint/node/n000[1-2])")
    );
    assert!(!s.script("n0005", "maint").contains("module bios"));
    assert!(!s.script("n0001", "init").contains("module bios"));
    let dest = s.root.join("scratch");
    ok(&s.run(&s.script("n0002", "maint"), &dest, &[]));
    assert_eq!(read(dest.join("flashed")), "flashing n0002\n");
    // A shipped module packs and imports too, shadowing the built-in one.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("modules/hostname");
    let hp = s.root.join("hostname.pmod");
    module::pack(&module::Module::load_dir(&shipped).unwrap(), &hp).unwrap();
    s.store.import(&hp).unwrap();
    assert!(matches!(
        s.store.list().unwrap()["hostname"].origin,
        module::Origin::Imported(_)
    ));
}

fn raw_tar(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        // Written byte by byte: the tar crate refuses to set hostile names.
        let slot = &mut h.as_old_mut().name;
        slot[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if *kind == tar::EntryType::Symlink {
            h.set_link_name("/etc/passwd").unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn corrupt_and_hostile_pmods_are_refused() {
    let s = site(1);
    let good_toml = b"name = \"evil\"\ndefault_states = [\"init/all\"]\n" as &[u8];
    let script = b"true\n" as &[u8];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            b"this is not a gzip file at all".to_vec(),
            "not a readable .pmod",
        ),
        (
            "truncated",
            {
                let mut v = raw_tar(&[
                    ("module.toml", tar::EntryType::Regular, good_toml),
                    ("scripts/init.sh", tar::EntryType::Regular, script),
                ]);
                v.truncate(v.len() / 2);
                v
            },
            "not a readable .pmod",
        ),
        (
            "dotdot",
            raw_tar(&[
                ("module.toml", tar::EntryType::Regular, good_toml),
                ("scripts/init.sh", tar::EntryType::Regular, script),
                ("../../escape", tar::EntryType::Regular, b"x"),
            ]),
            "unsafe path",
        ),
        (
            "absolute",
            raw_tar(&[("/etc/cron.d/evil", tar::EntryType::Regular, b"x")]),
            "unsafe path",
        ),
        (
            "symlink",
            raw_tar(&[
                ("module.toml", tar::EntryType::Regular, good_toml),
                ("scripts/init.sh", tar::EntryType::Symlink, b""),
            ]),
            "only files and directories",
        ),
        (
            "no-toml",
            raw_tar(&[("scripts/init.sh", tar::EntryType::Regular, script)]),
            "no module.toml",
        ),
        (
            "bad-toml",
            raw_tar(&[
                ("module.toml", tar::EntryType::Regular, b"name = \n"),
                ("scripts/init.sh", tar::EntryType::Regular, script),
            ]),
            "module.toml",
        ),
        (
            "no-script-for-default",
            raw_tar(&[
                (
                    "module.toml",
                    tar::EntryType::Regular,
                    b"name = \"evil\"\ndefault_states = [\"ready/all\"]\n",
                ),
                ("scripts/init.sh", tar::EntryType::Regular, script),
            ]),
            "no scripts/ready.sh",
        ),
        (
            "stray-file",
            raw_tar(&[
                ("module.toml", tar::EntryType::Regular, good_toml),
                ("scripts/init.sh", tar::EntryType::Regular, script),
                ("README", tar::EntryType::Regular, b"x"),
            ]),
            "unexpected file",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = s.root.join(format!("{name}.pmod"));
        std::fs::write(&p, bytes).unwrap();
        let e = s.store.import(&p).unwrap_err();
        assert!(matches!(e, Error::Module { .. }), "{name}: {e}");
        assert!(e.to_string().contains(want), "{name}: {e}");
        assert!(
            e.to_string().contains(&format!("{name}.pmod")),
            "{name}: error does not name the file: {e}"
        );
    }
    assert!(!s.store.dir.join("evil").exists());
    assert!(!s.root.join("escape").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&s.store.dir)
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert!(
        leftovers.iter().all(|&n| n == 0),
        "import left files behind"
    );
}

#[test]
fn activation_rules() {
    let mut s = site(1);
    let before = s.db.activations().unwrap();
    let bad: Vec<(&str, Vec<String>, &str)> = vec![
        ("nosuch", vec![], "no such module"),
        (
            "hostname",
            vec!["ready/all".into()],
            "no script for state 'ready'",
        ),
        (
            "hostname",
            vec!["init".into()],
            "malformed provisionary state",
        ),
        (
            "hostname",
            vec!["init/all".into(), "init/rack/1".into()],
            "unknown sub-state",
        ),
        ("hostname", vec!["init/node/n[5-2]".into()], "descending"),
    ];
    for (m, states, want) in bad {
        let e = activation::activate(&mut s.db, &s.store, m, &states).unwrap_err();
        assert!(e.to_string().contains(want), "{m} {states:?}: {e}");
    }
    assert_eq!(s.db.activations().unwrap(), before);
    // The guide's activations.
    s.activate("hostname", &["init/all"]);
    s.activate(
        "groupfile",
        &["init/node/node0000", "init/group/anothergroup"],
    );
    s.activate("passwdfile", &["ready/group/newgroup"]);
    s.activate("masterauth", &[]);
    let acts: Vec<String> =
        s.db.activations()
            .unwrap()
            .iter()
            .map(|a| format!("{} {}", a.module, a.state))
            .collect();
    assert_eq!(
        acts,
        [
            "groupfile init/group/anothergroup",
            "groupfile init/node/node0000",
            "hostname init/all",
            "masterauth init/all",
            "masterauth ready/all",
            "passwdfile ready/group/newgroup",
        ]
    );
    let e = activation::deactivate(&mut s.db, "masterauth", &["ready/group/x".into()]).unwrap_err();
    assert!(e.to_string().contains("not active for ready/group/x"));
    assert_eq!(
        activation::deactivate(&mut s.db, "masterauth", &["ready/all".into()]).unwrap(),
        1
    );
    assert_eq!(
        activation::deactivate(&mut s.db, "groupfile", &[]).unwrap(),
        2
    );
    assert!(activation::deactivate(&mut s.db, "groupfile", &[]).is_err());
}

#[test]
fn a_deleted_image_makes_init_wait() {
    let mut s = site(2);
    s.activate("hostname", &["init/all"]);
    let imgs = s.images.clone();
    // n0001 uses an image known by name only: still an image.
    s.db.set(&sel("n0001"), &Field::Vnfs, "other", &imgs)
        .unwrap();
    // `vnfs delete debian-node`: the store no longer lists it.
    s.images = Images::from_refs([("other", "")]);
    let script = s.script("n0000", "init");
    assert!(!script.contains("module hostname"), "{script}");
    let dest = s.root.join("gone");
    let out = s.run(&script, &dest, &[]);
    assert_eq!(out.status.code(), Some(nodescript::EXIT_RETRY));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("VNFS image 'debian-node' of node n0000 is not in the master's store"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dest.join("etc/hostname").exists());
    let acts = s.db.activations().unwrap();
    let ctx = ScriptContext {
        conf: &s.conf,
        images: &s.images,
        modules: &s.store,
        activations: &acts,
        master_root: &s.master,
    };
    let w = nodescript::warnings(&ctx, &s.node("n0000"), "init").unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("set to VNFS 'debian-node', which is not in the store"));
    // The node with an existing image is provisioned as before.
    assert!(
        nodescript::warnings(&ctx, &s.node("n0001"), "init")
            .unwrap()
            .is_empty()
    );
    let script = s.script("n0001", "init");
    assert!(script.contains("module hostname"));
    ok(&s.run(&script, &s.root.join("kept"), &[]));
    // A running node of a deleted image is not told to stop at ready.
    assert!(s.script("n0000", "ready").contains("NODE_STATE='ready'"));
    assert!(!s.script("n0000", "ready").contains("exit 75"));
}

#[test]
fn custom_states_without_modules_are_warned_about() {
    let mut s = site(3);
    let src = s.root.join("src/bios");
    std::fs::create_dir_all(src.join("scripts")).unwrap();
    std::fs::write(
        src.join("module.toml"),
        "name = \"bios\"\ndefault_states = [\"maint/all\"]\n",
    )
    .unwrap();
    std::fs::write(src.join("scripts/maint.sh"), "true\n").unwrap();
    s.store.import(&src).unwrap();
    let warnings = |s: &Site, node: &str, state: &str| {
        let acts = s.db.activations().unwrap();
        let ctx = ScriptContext {
            conf: &s.conf,
            images: &s.images,
            modules: &s.store,
            activations: &acts,
            master_root: &s.master,
        };
        nodescript::warnings(&ctx, &s.node(node), state).unwrap()
    };
    // A custom state nothing is activated for: still a script, but a warning.
    let w = warnings(&s, "n0001", "bogus");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("no module runs for node n0001 at custom state 'bogus'")
            && w[0].contains("no module is activated for 'bogus' at all")
            && w[0].contains("vnfs module activate MODULE bogus/all"),
        "{w:?}"
    );
    assert!(s.script("n0001", "bogus").contains("# modules: (none)\n"));
    // The standard states are never warned about, modules or not.
    assert!(warnings(&s, "n0001", "init").is_empty());
    assert!(warnings(&s, "n0001", "ready").is_empty());
    // Active for another node: the warning says so.
    s.activate("bios", &["maint/node/n0001"]);
    assert!(warnings(&s, "n0001", "maint").is_empty());
    let w = warnings(&s, "n0002", "maint");
    assert!(
        w.len() == 1 && w[0].contains("modules active for 'maint' on other nodes: bios"),
        "{w:?}"
    );
    // A malformed state is render()'s error, not a warning.
    assert!(warnings(&s, "n0001", "Bad State").is_empty());
}

#[test]
fn activations_that_match_no_node_are_reported() {
    let mut s = site(2);
    let imgs = s.images.clone();
    s.db.set(&sel("n0001"), &Field::Group, "io", &imgs).unwrap();
    let states: Vec<String> = [
        "init/all",
        "init/node/zz[1-2]",
        "init/node/n000[1-5]",
        "init/node/02:00:00:00:00:01",
        "init/group/anothergroup",
        "init/group/i*",
        "ready/vnfs/debian-node",
        "ready/vnfs/gone",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let w = activation::unmatched(&s.db, &states).unwrap();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w[0].starts_with("init/node/zz[1-2]: no node's name or NodeID matches 'zz[1-2]' yet"));
    assert!(w[0].contains("the activation is kept"));
    assert!(w[1].starts_with("init/group/anothergroup: no node is in a group matching"));
    assert!(w[2].starts_with("ready/vnfs/gone: no node is set to a VNFS matching 'gone'"));
    // The activation itself still succeeds (Perceus activates for groups
    // before they have members).
    s.activate("hostname", &["init/node/zz[1-2]"]);
    assert!(
        s.db.activations()
            .unwrap()
            .iter()
            .any(|a| a.state == "init/node/zz[1-2]")
    );
}
