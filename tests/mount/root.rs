//! `vnfs mount` end to end: a minimal root with dpkg is committed, mounted,
//! a real .deb (built here with dpkg-deb) is installed in a chroot, and the
//! unmount's commit holds exactly the package and dpkg's database changes.
//! Needs root and /dev/fuse; fails (never skips) without them.

use std::fs;
use std::path::Path;
use std::process::Command;

fn run(c: &mut Command) -> String {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copies host binaries and the libraries they load into `root`.
fn minimal_root(root: &Path) {
    let mut files = Vec::new();
    for b in [
        "dpkg",
        "dpkg-deb",
        "dpkg-query",
        "dpkg-split",
        "sh",
        "dash",
        "rm",
        "tar",
        "diff",
        "ldconfig",
        "start-stop-daemon",
    ] {
        let p = run(Command::new("sh").arg("-c").arg(format!("command -v {b}")));
        let p = p.trim().to_string();
        files.push(p.clone());
        let ldd = Command::new("ldd").arg(&p).output().expect("ldd");
        for w in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
            if w.starts_with('/') {
                files.push(w.to_string());
            }
        }
    }
    for f in files {
        let dst = root.join(f.trim_start_matches('/'));
        fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        fs::copy(&f, &dst).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "tmp",
        "etc",
    ] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    fs::write(root.join("var/lib/dpkg/status"), "").expect("status");
}

#[test]
fn dpkg_install_in_a_chroot_of_the_mount_commits_the_package() {
    assert!(Path::new("/dev/fuse").exists(), "/dev/fuse is missing");
    // SAFETY: no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    let vnfs = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vnfs"));
        c.arg("--home").arg(&home).args(args);
        c
    };
    let root = tmp.path().join("root");
    minimal_root(&root);
    run(vnfs(&["commit", "-n", "deb", "-m", "base"]).arg(&root));

    let pkg = tmp.path().join("pkg");
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
    run(Command::new("chmod")
        .arg("755")
        .arg(pkg.join("usr/bin/hello-vnfs")));
    let deb = tmp.path().join("hello.deb");
    run(Command::new("dpkg-deb")
        .args(["-Zgzip", "--build"])
        .arg(&pkg)
        .arg(&deb));

    let mnt = tmp.path().join("mnt");
    run(vnfs(&["mount", "deb"]).arg(&mnt));
    let listed = run(&mut vnfs(&["mounts"]));
    assert!(
        listed.contains("deb") && listed.contains("mounted"),
        "{listed}"
    );
    // Mounting again is refused with a clear error.
    let again = vnfs(&["mount", "deb"])
        .arg(tmp.path().join("mnt2"))
        .output()
        .expect("spawn");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already mounted"));
    fs::copy(&deb, mnt.join("tmp/hello.deb")).expect("copy deb");
    run(Command::new("chroot")
        .arg(&mnt)
        .args(["dpkg", "-i", "/tmp/hello.deb"])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"));
    fs::remove_file(mnt.join("tmp/hello.deb")).expect("rm deb");
    run(&mut vnfs(&["umount", "deb", "-m", "install hello-vnfs"]));

    let co = tmp.path().join("co");
    run(vnfs(&["checkout", "deb"]).arg(&co));
    let q = run(Command::new("dpkg-query")
        .arg(format!("--admindir={}", co.join("var/lib/dpkg").display()))
        .args(["-W", "-f", "${Status} ${Version}", "hello-vnfs"]));
    assert_eq!(q, "install ok installed 1.0");
    assert_eq!(
        fs::read_to_string(co.join("usr/share/hello-vnfs/README")).expect("file"),
        "hello\n"
    );

    let log = run(&mut vnfs(&["--json", "log", "deb"]));
    let ids: Vec<&str> = log
        .split('"')
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    assert!(ids.len() >= 2, "{log}");
    let diff = run(&mut vnfs(&[
        "diff",
        &format!("deb@{}", ids[1]),
        &format!("deb@{}", ids[0]),
    ]));
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
    for p in &paths {
        let ok = *p == "/"
            || p.starts_with("/var/lib/dpkg")
            || ["/usr", "/usr/bin", "/usr/share", "/var", "/var/lib"].contains(p)
            || p.starts_with("/usr/share/hello-vnfs")
            || *p == "/usr/bin/hello-vnfs"
            || *p == "/tmp";
        assert!(ok, "unexpected change {p}:\n{diff}");
    }
}
