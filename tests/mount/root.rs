//! The mount as a root file system: `dpkg -i` and `apt-get install` of
//! local packages in a chroot, `useradd --root`, `make DESTDIR=... install`,
//! each committed by the unmount and checked in a checkout. The image is
//! a small root made of the host's own binaries (dpkg, apt), so it builds
//! in a second without a network.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::common::{Env, build_deb, minimal_root, run};

const DPKG: &[&str] = &[
    "dpkg",
    "dpkg-deb",
    "dpkg-query",
    "dpkg-split",
    "dpkg-divert",
    "dpkg-trigger",
    "sh",
    "dash",
    "rm",
    "tar",
    "diff",
    "ldconfig",
    "start-stop-daemon",
];

fn chroot(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("chroot");
    c.arg(dir)
        .args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("DEBIAN_FRONTEND", "noninteractive");
    c
}

#[test]
fn dpkg_install_in_a_chroot_of_the_mount_commits_the_package() {
    let env = Env::new();
    let root = env.path("root");
    minimal_root(&root, DPKG, &[]);
    env.commit("deb", &root);

    let pkg = env.path("pkg");
    fs::create_dir_all(pkg.join("DEBIAN")).expect("mkdir");
    fs::create_dir_all(pkg.join("usr/share/hello-vnfs")).expect("mkdir");
    fs::create_dir_all(pkg.join("usr/bin")).expect("mkdir");
    fs::write(
        pkg.join("DEBIAN/control"),
        "Package: hello-vnfs\nVersion: 1.0\nArchitecture: all\nMaintainer: vnfs <t@example.org>\nDescription: test package\n",
    )
    .expect("control");
    fs::write(pkg.join("usr/share/hello-vnfs/README"), "hello\n").expect("file");
    fs::write(pkg.join("usr/bin/hello-vnfs"), "#!/bin/sh\necho hello\n").expect("file");
    fs::set_permissions(
        pkg.join("usr/bin/hello-vnfs"),
        fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let deb = env.path("hello.deb");
    run(Command::new("dpkg-deb")
        .args(["-Zgzip", "--build"])
        .arg(&pkg)
        .arg(&deb));

    let mnt = env.path("mnt");
    env.ok(&["mount", "deb"], Some(&mnt));
    let listed = env.ok(&["mounts"], None);
    assert!(
        listed.contains("deb") && listed.contains("mounted"),
        "{listed}"
    );
    fs::copy(&deb, mnt.join("tmp/hello.deb")).expect("copy deb");
    run(&mut chroot(&mnt, &["dpkg", "-i", "/tmp/hello.deb"]));
    fs::remove_file(mnt.join("tmp/hello.deb")).expect("rm deb");
    env.ok(&["umount", "deb", "-m", "install hello-vnfs"], None);

    let co = env.path("co");
    env.ok(&["checkout", "deb"], Some(&co));
    let q = run(Command::new("dpkg-query")
        .arg(format!("--admindir={}", co.join("var/lib/dpkg").display()))
        .args(["-W", "-f", "${Status} ${Version}", "hello-vnfs"]));
    assert_eq!(q, "install ok installed 1.0");
    assert_eq!(
        fs::read_to_string(co.join("usr/share/hello-vnfs/README")).expect("file"),
        "hello\n"
    );

    let log = env.ok(&["--json", "log", "deb"], None);
    let ids: Vec<&str> = log
        .split('"')
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    assert!(ids.len() >= 2, "{log}");
    let diff = env.ok(
        &[
            "diff",
            &format!("deb@{}", ids[1]),
            &format!("deb@{}", ids[0]),
        ],
        None,
    );
    let paths: Vec<&str> = diff
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|p| p.starts_with('/'))
        .collect();
    for want in [
        "/usr/share/hello-vnfs/README",
        "/usr/bin/hello-vnfs",
        "/var/lib/dpkg/status",
    ] {
        assert!(
            paths.contains(&want),
            "{want} missing from the diff:\n{diff}"
        );
    }
    // The package list follows the image's dpkg database.
    let show = env.ok(&["show", "--packages", "deb"], None);
    assert!(
        show.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["hello-vnfs", "1.0", "all"]),
        "{show}"
    );
    env.ok(&["mount", "deb"], Some(&mnt));
    run(&mut chroot(&mnt, &["dpkg", "-r", "hello-vnfs"]));
    env.ok(&["umount", "deb", "-m", "remove hello-vnfs"], None);
    let removed = env.ok(&["diff", &format!("deb@{}", ids[0]), "deb"], None);
    assert!(
        removed.contains("packages: 0 added, 1 removed")
            && removed.contains("- hello-vnfs 1.0 (all)"),
        "package-level diff:\n{removed}"
    );
    // Directories entries were only brought up through keep their times:
    // the root, /var and /var/lib did not change.
    for p in &paths {
        let ok = p.starts_with("/var/lib/dpkg")
            || ["/usr", "/usr/bin", "/usr/share"].contains(p)
            || p.starts_with("/usr/share/hello-vnfs")
            || *p == "/usr/bin/hello-vnfs"
            || *p == "/tmp";
        assert!(ok, "unexpected change {p}:\n{diff}");
    }
}

#[test]
fn apt_get_installs_local_debs_with_a_dependency() {
    let env = Env::new();
    let root = env.path("root");
    let mut bins = DPKG.to_vec();
    // apt fetches even local .debs through its file/copy methods, and
    // reads the CPU table to know the architecture.
    bins.extend([
        "apt-get",
        "apt-config",
        "/usr/lib/apt/methods/file",
        "/usr/lib/apt/methods/copy",
    ]);
    minimal_root(
        &root,
        &bins,
        &["/usr/share/dpkg/cputable", "/usr/share/dpkg/tupletable"],
    );
    env.commit("apt", &root);
    let liba = build_deb(&env.path("."), "vnfs-liba", None);
    let appb = build_deb(&env.path("."), "vnfs-appb", Some("vnfs-liba (>= 1.0)"));

    let mnt = env.path("mnt");
    env.ok(&["mount", "apt"], Some(&mnt));
    for d in [&liba, &appb] {
        let name = d.file_name().expect("name");
        fs::copy(d, mnt.join("tmp").join(name)).expect("copy deb");
    }
    // The dependency comes second on the command line: apt orders them.
    let out = run(&mut chroot(
        &mnt,
        &[
            "apt-get",
            "install",
            "-y",
            "-o",
            "APT::Sandbox::User=root",
            "/tmp/vnfs-appb_1.0_all.deb",
            "/tmp/vnfs-liba_1.0_all.deb",
        ],
    ));
    assert!(out.contains("Setting up vnfs-appb"), "{out}");
    for d in ["vnfs-liba_1.0_all.deb", "vnfs-appb_1.0_all.deb"] {
        fs::remove_file(mnt.join("tmp").join(d)).expect("rm deb");
    }
    let status = fs::read_to_string(mnt.join("var/lib/dpkg/status")).expect("status");
    assert!(status.contains("Package: vnfs-appb"), "{status}");
    env.ok(&["umount", "apt", "-m", "apt-get install"], None);

    let co = env.path("co");
    env.ok(&["checkout", "apt"], Some(&co));
    for p in ["vnfs-liba", "vnfs-appb"] {
        let q = run(Command::new("dpkg-query")
            .arg(format!("--admindir={}", co.join("var/lib/dpkg").display()))
            .args(["-W", "-f", "${Status}", p]));
        assert_eq!(q, "install ok installed", "{p}");
        assert_eq!(
            fs::read_to_string(co.join(format!("usr/share/{p}/README"))).expect("file"),
            format!("{p}\n")
        );
    }
    run(&mut env.vnfs(&["store", "fsck"]));
}

#[test]
fn useradd_with_root_on_the_mount_survives_the_commit() {
    let env = Env::new();
    let root = env.path("root");
    minimal_root(&root, &["sh"], &[]);
    let etc = root.join("etc");
    fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    fs::write(etc.join("group"), "root:x:0:\nusers:x:100:\n").expect("group");
    fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\n").expect("shadow");
    fs::write(etc.join("gshadow"), "root:*::\nusers:*::\n").expect("gshadow");
    for f in ["shadow", "gshadow"] {
        fs::set_permissions(etc.join(f), fs::Permissions::from_mode(0o640)).expect("chmod");
    }
    fs::write(etc.join("skel/.profile"), "# profile\n").expect("skel");
    env.commit("users", &root);

    let mnt = env.path("mnt");
    env.ok(&["mount", "users"], Some(&mnt));
    // useradd locks the files with link(2) and checks the link count,
    // writes NAME+ and renames it over, keeps NAME- backups.
    run(Command::new("useradd")
        .arg("--root")
        .arg(&mnt)
        .args(["-m", "-u", "1234", "-U", "-s", "/bin/sh", "someuser"]));
    let check = |r: &Path| {
        let passwd = fs::read_to_string(r.join("etc/passwd")).expect("passwd");
        assert!(
            passwd.contains("someuser:x:1234:1234::/home/someuser:/bin/sh"),
            "{passwd}"
        );
        assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
        let shadow = fs::read_to_string(r.join("etc/shadow")).expect("shadow");
        assert!(shadow.contains("someuser:!:"), "{shadow}");
        assert_eq!(
            fs::metadata(r.join("etc/shadow")).expect("shadow").mode() & 0o777,
            0o640
        );
        let group = fs::read_to_string(r.join("etc/group")).expect("group");
        assert!(group.contains("someuser:x:1234:"), "{group}");
        let home = fs::metadata(r.join("home/someuser")).expect("home");
        assert!(home.is_dir());
        assert_eq!((home.uid(), home.gid()), (1234, 1234));
        let profile = fs::metadata(r.join("home/someuser/.profile")).expect("skel copy");
        assert_eq!(profile.uid(), 1234);
        assert!(!r.join("etc/passwd.lock").exists(), "lock left behind");
    };
    check(&mnt);
    env.ok(&["umount", "users", "-m", "useradd"], None);
    let co = env.path("co");
    env.ok(&["checkout", "users"], Some(&co));
    check(&co);
}

#[test]
fn make_destdir_install_keeps_modes() {
    let env = Env::new();
    let root = env.path("root");
    minimal_root(&root, &["sh"], &[]);
    fs::create_dir_all(root.join("usr/local/bin")).expect("mkdir");
    env.commit("make", &root);

    let src = env.path("src");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("tool"), "#!/bin/sh\necho tool\n").expect("tool");
    fs::write(src.join("tool.conf"), "level = 3\n").expect("conf");
    fs::write(
        src.join("Makefile"),
        "install:\n\
         \tinstall -D -m 0755 tool $(DESTDIR)/usr/local/bin/tool\n\
         \tinstall -D -m 4750 tool $(DESTDIR)/usr/local/sbin/tool-suid\n\
         \tinstall -D -m 0640 tool.conf $(DESTDIR)/etc/tool/tool.conf\n\
         \tinstall -d -m 0750 $(DESTDIR)/var/lib/tool\n\
         \tln -sf tool $(DESTDIR)/usr/local/bin/tool-link\n",
    )
    .expect("Makefile");

    let mnt = env.path("mnt");
    env.ok(&["mount", "make"], Some(&mnt));
    run(Command::new("make")
        .arg("-C")
        .arg(&src)
        .arg(format!("DESTDIR={}", mnt.display()))
        .arg("install"));
    let check = |r: &Path| {
        let mode = |p: &str| fs::symlink_metadata(r.join(p)).expect(p).mode() & 0o7777;
        assert_eq!(mode("usr/local/bin/tool"), 0o755);
        assert_eq!(mode("usr/local/sbin/tool-suid"), 0o4750);
        assert_eq!(mode("etc/tool/tool.conf"), 0o640);
        assert_eq!(mode("var/lib/tool"), 0o750);
        assert_eq!(mode("etc/tool"), 0o755, "install -D makes parents 0755");
        assert_eq!(
            fs::read_link(r.join("usr/local/bin/tool-link"))
                .expect("link")
                .to_str(),
            Some("tool")
        );
        assert_eq!(
            fs::read_to_string(r.join("usr/local/bin/tool")).expect("tool"),
            "#!/bin/sh\necho tool\n"
        );
    };
    check(&mnt);
    env.ok(&["umount", "make", "-m", "make install"], None);
    let co = env.path("co");
    env.ok(&["checkout", "make"], Some(&co));
    check(&co);
}
