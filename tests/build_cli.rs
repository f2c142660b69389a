//! `vnfs diff` end to end: package-level diffs between two commits
//! carrying package lists.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use vnfs_capsule::manifest::Package;

fn vnfs(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vnfs"));
    c.env("VNFS_HOME", home).env_remove("VNFS_CONFIG");
    c
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out: Output = vnfs(home).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "vnfs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn pkg(name: &str, version: &str, arch: &str) -> Package {
    Package {
        name: name.into(),
        version: version.into(),
        arch: arch.into(),
        sha256: Some(format!("{name}{version}")),
    }
}

/// Commits `dir` as `name` with `packages` in the metadata (as the
/// builder writes it), or with no package list at all.
fn commit_with(home: &Path, dir: &Path, name: &str, packages: Option<Vec<Package>>) -> String {
    let store = vnfs_store::Store::open_or_create(&home.join("store")).unwrap();
    let mut metadata = BTreeMap::new();
    if let Some(packages) = packages {
        let meta = vnfs_capsule::metadata::ImageMetadata {
            naming: vnfs_capsule::metadata::default_naming(name),
            config: Default::default(),
            packages,
            recipe: None,
            lock: None,
        };
        meta.to_commit(&mut metadata);
    }
    let out = store
        .commit_dir(
            dir,
            &vnfs_store::CommitOptions {
                name: name.into(),
                message: "test".into(),
                timestamp: Some(1_700_000_000),
                metadata,
                parent: None,
            },
            &vnfs_store::NoProgress,
        )
        .unwrap();
    out.id.to_string()
}

#[test]
fn diff_shows_package_changes_before_files() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("usr/bin")).unwrap();
    std::fs::write(src.join("usr/bin/tool"), "v1").unwrap();
    let old = vec![
        pkg("base-files", "12.4+deb12u5", "amd64"),
        pkg("libc6", "2.36-9+deb12u7", "amd64"),
        pkg("nano", "7.2-1", "amd64"),
        pkg("tzdata", "2024a-0+deb12u1", "all"),
    ];
    let new = vec![
        pkg("base-files", "12.4+deb12u5", "amd64"),
        pkg("htop", "3.2.2-2", "amd64"),
        pkg("libc6", "2.36-9+deb12u10", "amd64"),
        pkg("tzdata", "2023c-5+deb12u1", "all"),
    ];
    let a = commit_with(&home, &src, "img", Some(old));
    std::fs::write(src.join("usr/bin/tool"), "v2").unwrap();
    let b = commit_with(&home, &src, "img", Some(new));
    let a_spec = format!("img@{}", &a[..12]);

    let text = ok(&home, &["diff", &a_spec, "img"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "packages: 1 added, 1 removed, 2 changed",
            "+ htop 3.2.2-2 (amd64)",
            "- nano 7.2-1 (amd64)",
            "~ libc6 2.36-9+deb12u7 -> 2.36-9+deb12u10 (amd64; upgraded)",
            "~ tzdata 2024a-0+deb12u1 -> 2023c-5+deb12u1 (all; downgraded)",
        ],
        "{text}"
    );
    // The file changes follow.
    assert!(
        lines[5..].iter().any(|l| l.ends_with("/usr/bin/tool")),
        "{text}"
    );

    let v: serde_json::Value =
        serde_json::from_str(&ok(&home, &["--json", "diff", &a_spec, &b])).unwrap();
    let p = &v["packages"];
    assert_eq!(p["added"][0]["name"], "htop");
    assert_eq!(p["removed"][0]["name"], "nano");
    assert_eq!(p["changed"][0]["name"], "libc6");
    assert_eq!(p["changed"][0]["old_version"], "2.36-9+deb12u7");
    assert_eq!(p["changed"][0]["new_version"], "2.36-9+deb12u10");
    assert_eq!(p["changed"][0]["direction"], "upgraded");
    assert_eq!(p["changed"][1]["direction"], "downgraded");
    assert_eq!(v["entries"][0]["path"], "usr/bin/tool");

    // --packages: the package section only.
    let text = ok(&home, &["diff", "--packages", &a_spec, "img"]);
    assert_eq!(text.lines().count(), 5, "{text}");
    let v: serde_json::Value = serde_json::from_str(&ok(
        &home,
        &["--json", "diff", "--packages", &a_spec, "img"],
    ))
    .unwrap();
    assert!(v.get("entries").is_none(), "{v}");
    assert_eq!(v["packages"]["added"][0]["version"], "3.2.2-2");

    // A commit without a package list: no package section, and
    // --packages says why it cannot compare.
    commit_with(&home, &src, "plain", None);
    let text = ok(&home, &["diff", &a_spec, "plain"]);
    assert!(!text.contains("packages:"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&home, &["--json", "diff", &a_spec, "plain"])).unwrap();
    assert!(v["packages"].is_null(), "{v}");
    let out = vnfs(&home)
        .args(["diff", "--packages", &a_spec, "plain"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plain has no package list"), "{err}");
}
