//! The unpacker against dpkg itself: small packages built with
//! `dpkg-deb` are installed by `vnfs_builder::debian::install` into one
//! root and by the host's `dpkg --root` (same order) into another; file
//! contents, file lists and the installed package set must agree.
//! Covers `Replaces` (either way, versioned, mutual), a package
//! completely replaced ("disappears"), diversions added by a `preinst`
//! with `dpkg-divert --rename` and diversions already in
//! `/var/lib/dpkg/diversions`, and the conflicts dpkg refuses.
//!
//! Needs root (chroot, mounts) and dpkg-deb; the image's tools come from
//! the host (see `common::host_tools`), so nothing is downloaded.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{DPKG_TOOLS, DebSpec, sh, sha256_file};
use vnfs_builder::debian::install::{self, DebFile, InstallError};
use vnfs_builder::progress::NoProgress;

/// A package holding the host programs dpkg and maintainer scripts need.
fn hostbase(dir: &Path) -> PathBuf {
    let mut spec = DebSpec::new("hostbase", "1");
    spec.host_tools = DPKG_TOOLS.to_vec();
    spec.build(dir)
}

fn deb_files(debs: &[PathBuf]) -> Vec<DebFile> {
    debs.iter()
        .map(|p| DebFile {
            name: p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .split('_')
                .next()
                .unwrap()
                .to_string(),
            sha256: sha256_file(p),
            path: p.clone(),
        })
        .collect()
}

/// Installs with the builder.
fn vnfs_install(root: &Path, debs: &[PathBuf]) -> Result<(), InstallError> {
    install::install(root, &deb_files(debs), "amd64", 1_700_000_000, &NoProgress)
}

/// Installs with dpkg: hostbase first (so that chrooted maintainer
/// scripts find a shell), then the others in name order, which is the
/// builder's install order for packages without dependencies.
fn dpkg_install(root: &Path, base: &Path, debs: &[PathBuf]) {
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let mut sorted: Vec<&PathBuf> = debs.iter().filter(|d| *d != base).collect();
    sorted.sort();
    sh(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-unsafe-io", "-i"])
        .arg(base));
    sh(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-unsafe-io", "-i"])
        .args(sorted));
}

/// Installed packages and their status, as dpkg-query reads the database.
fn installed(root: &Path) -> BTreeMap<String, String> {
    let out = sh(Command::new("dpkg-query")
        .arg(format!("--admindir={}/var/lib/dpkg", root.display()))
        .args(["-W", "-f", "${Package}\t${Status}\n"]));
    out.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn list(root: &Path, pkg: &str) -> Option<String> {
    std::fs::read_to_string(root.join(format!("var/lib/dpkg/info/{pkg}.list"))).ok()
}

/// Content of a file (or `->target` for a symlink, `None` when absent).
fn content(root: &Path, path: &str) -> Option<String> {
    let p = root.join(path.trim_start_matches('/'));
    let m = std::fs::symlink_metadata(&p).ok()?;
    if m.file_type().is_symlink() {
        return Some(format!("->{}", std::fs::read_link(&p).unwrap().display()));
    }
    Some(std::fs::read_to_string(&p).unwrap())
}

/// Both roots agree on these paths, on every test package's file list
/// and on the installed set (`hostbase` aside).
fn assert_same(ours: &Path, theirs: &Path, paths: &[&str], pkgs: &[&str]) {
    for p in paths {
        assert_eq!(
            content(ours, p),
            content(theirs, p),
            "{p}: vnfs (left) and dpkg (right) differ"
        );
    }
    for p in pkgs {
        assert_eq!(
            list(ours, p),
            list(theirs, p),
            "{p}.list: vnfs (left) and dpkg (right) differ"
        );
        // The packages ship no md5sums; dpkg computes them while unpacking.
        let sums = |r: &Path| {
            std::fs::read_to_string(r.join(format!("var/lib/dpkg/info/{p}.md5sums"))).ok()
        };
        assert_eq!(sums(ours), sums(theirs), "{p}.md5sums");
    }
    let mut a = installed(ours);
    let mut b = installed(theirs);
    a.remove("hostbase");
    b.remove("hostbase");
    assert_eq!(a, b, "installed packages: vnfs (left) and dpkg (right)");
    let audit = sh(Command::new("chroot").arg(ours).args(["dpkg", "--audit"]));
    assert_eq!(audit, "", "dpkg --audit in the builder's root");
}

#[test]
fn replaces_matches_dpkg() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let base = hostbase(dir);
    let debs = vec![
        base.clone(),
        // b takes /usr/share/t/f over from a (b after a).
        DebSpec::new("a", "1.0")
            .file("usr/share/t/f", "a\n")
            .file("usr/share/t/only-a", "a\n")
            .build(dir),
        DebSpec::new("b", "1.0")
            .field("Replaces: a (>= 1.0)")
            .file("usr/share/t/f", "b\n")
            .build(dir),
        // k keeps /usr/share/t/g: k Replaces the later-unpacked l
        // ("Replaced by files in installed package").
        DebSpec::new("k", "1.0")
            .field("Replaces: l")
            .file("usr/share/t/g", "k\n")
            .build(dir),
        DebSpec::new("l", "2.0")
            .file("usr/share/t/g", "l\n")
            .file("usr/share/t/only-l", "l\n")
            .build(dir),
        // m is completely replaced by n and disappears.
        DebSpec::new("m", "1.0")
            .file("usr/share/t/m", "m\n")
            .build(dir),
        DebSpec::new("n", "1.0")
            .field("Replaces: m")
            .file("usr/share/t/m", "n\n")
            .file("usr/share/t/n", "n\n")
            .build(dir),
        // Mutual Replaces: the later one (y) wins; x disappears.
        DebSpec::new("x", "1.0")
            .field("Replaces: y")
            .file("usr/share/t/xy", "x\n")
            .build(dir),
        DebSpec::new("y", "1.0")
            .field("Replaces: x")
            .file("usr/share/t/xy", "y\n")
            .build(dir),
    ];
    let ours = dir.join("ours");
    let theirs = dir.join("theirs");
    vnfs_install(&ours, &debs).unwrap();
    dpkg_install(&theirs, &base, &debs);
    assert_eq!(content(&ours, "/usr/share/t/f").as_deref(), Some("b\n"));
    assert_eq!(content(&ours, "/usr/share/t/g").as_deref(), Some("k\n"));
    assert_eq!(content(&ours, "/usr/share/t/xy").as_deref(), Some("y\n"));
    assert!(!list(&ours, "a").unwrap().contains("/usr/share/t/f\n"));
    assert!(list(&ours, "m").is_none(), "m disappeared");
    assert_same(
        &ours,
        &theirs,
        &[
            "/usr/share/t/f",
            "/usr/share/t/only-a",
            "/usr/share/t/g",
            "/usr/share/t/only-l",
            "/usr/share/t/m",
            "/usr/share/t/n",
            "/usr/share/t/xy",
        ],
        &["a", "b", "k", "l", "m", "n", "x", "y"],
    );
}

#[test]
fn diversions_match_dpkg() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let base = hostbase(dir);
    let divert = "#!/bin/sh\nset -e\nif [ \"$1\" = install ]; then\n  dpkg-divert --package d-div --add --rename --divert /usr/share/t/f.distrib /usr/share/t/f\n  dpkg-divert --package d-div --add --rename --divert /usr/share/t/tool.orig /usr/share/t/tool\nfi\n";
    let debs = vec![
        base.clone(),
        // (With no file of its own left, dpkg would note d-base as
        // disappeared once a later package is unpacked: an order-dependent
        // quirk the builder does not copy; see debian/ownership.rs.)
        DebSpec::new("d-base", "1.0")
            .file("usr/share/t/f", "base\n")
            .file("usr/share/t/base-only", "base\n")
            .build(dir),
        // Ships the diverted path itself and diverts a file it does not ship.
        DebSpec::new("d-div", "1.0")
            .file("usr/share/t/f", "div\n")
            .script("preinst", divert)
            .build(dir),
        DebSpec::new("e-victim", "1.0")
            .file("usr/share/t/tool", "victim\n")
            .build(dir),
    ];
    let ours = dir.join("ours");
    let theirs = dir.join("theirs");
    vnfs_install(&ours, &debs).unwrap();
    dpkg_install(&theirs, &base, &debs);
    assert_eq!(content(&ours, "/usr/share/t/f").as_deref(), Some("div\n"));
    assert_eq!(
        content(&ours, "/usr/share/t/f.distrib").as_deref(),
        Some("base\n")
    );
    assert_eq!(
        content(&ours, "/usr/share/t/tool.orig").as_deref(),
        Some("victim\n")
    );
    assert_eq!(content(&ours, "/usr/share/t/tool"), None);
    assert_eq!(
        std::fs::read_to_string(ours.join("var/lib/dpkg/diversions")).unwrap(),
        std::fs::read_to_string(theirs.join("var/lib/dpkg/diversions")).unwrap()
    );
    assert_same(
        &ours,
        &theirs,
        &[
            "/usr/share/t/f",
            "/usr/share/t/f.distrib",
            "/usr/share/t/tool",
            "/usr/share/t/tool.orig",
            "/usr/share/t/base-only",
        ],
        &["d-base", "d-div", "e-victim"],
    );
}

#[test]
fn existing_diversions_redirect_unpacked_files() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let base = hostbase(dir);
    let debs = vec![
        base.clone(),
        DebSpec::new("a", "1.0")
            .file("usr/share/t/f", "a\n")
            .build(dir),
        DebSpec::new("c", "1.0")
            .file("usr/share/t/f", "c\n")
            .file("usr/share/t/local", "c\n")
            .build(dir),
    ];
    let ours = dir.join("ours");
    let theirs = dir.join("theirs");
    let diversions =
        "/usr/share/t/f\n/usr/share/t/f.a\nc\n/usr/share/t/local\n/usr/share/t/local.site\n:\n";
    for r in [&ours, &theirs] {
        std::fs::create_dir_all(r.join("var/lib/dpkg")).unwrap();
        std::fs::write(r.join("var/lib/dpkg/diversions"), diversions).unwrap();
    }
    vnfs_install(&ours, &debs).unwrap();
    dpkg_install(&theirs, &base, &debs);
    assert_eq!(content(&ours, "/usr/share/t/f").as_deref(), Some("c\n"));
    assert_eq!(content(&ours, "/usr/share/t/f.a").as_deref(), Some("a\n"));
    assert_eq!(
        content(&ours, "/usr/share/t/local.site").as_deref(),
        Some("c\n")
    );
    assert_same(
        &ours,
        &theirs,
        &[
            "/usr/share/t/f",
            "/usr/share/t/f.a",
            "/usr/share/t/local",
            "/usr/share/t/local.site",
        ],
        &["a", "c"],
    );
}

#[test]
fn conflicts_dpkg_refuses_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let base = hostbase(dir);
    let a = DebSpec::new("a", "1.0")
        .file("usr/share/t/f", "a\n")
        .build(dir);
    // No Replaces at all, and a Replaces whose version does not match.
    for other in [
        DebSpec::new("c", "1.0")
            .file("usr/share/t/f", "c\n")
            .build(dir),
        DebSpec::new("v", "1.0")
            .field("Replaces: a (<< 1.0)")
            .file("usr/share/t/f", "v\n")
            .build(dir),
    ] {
        let name = other
            .file_name()
            .unwrap()
            .to_string_lossy()
            .split('_')
            .next()
            .unwrap()
            .to_string();
        let root = dir.join(format!("root-{name}"));
        let e = vnfs_install(&root, &[base.clone(), a.clone(), other.clone()]).unwrap_err();
        assert!(matches!(e, InstallError::Ownership(_)), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "package {name}: trying to overwrite /usr/share/t/f, which is also in package a 1.0 (neither Replaces the other and no diversion applies)"
            )
        );
        // dpkg refuses the same.
        let theirs = dir.join(format!("theirs-{name}"));
        std::fs::create_dir_all(theirs.join("var/lib/dpkg/info")).unwrap();
        std::fs::create_dir_all(theirs.join("var/lib/dpkg/updates")).unwrap();
        std::fs::write(theirs.join("var/lib/dpkg/status"), "").unwrap();
        let out = Command::new("dpkg")
            .arg(format!("--root={}", theirs.display()))
            .args(["--force-script-chrootless", "--unpack"])
            .arg(&a)
            .arg(&other)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("trying to overwrite '/usr/share/t/f', which is also in package a"),
            "{out:?}"
        );
    }
}
