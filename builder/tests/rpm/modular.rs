//! Module streams: vnfs's modular filtering against dnf's own, on one
//! repository with module metadata (`modules.yaml` added by
//! `modifyrepo_c`), and a build that enables streams.
//!
//! dnf (Debian package dnf, installed by scripts/setup.sh) is the
//! reference: for each request, `dnf repoquery` in an empty installroot
//! lists the packages it leaves visible, and vnfs must leave the same.
//! Without dnf the test fails; it never skips.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use vnfs_builder::http::Fetcher;
use vnfs_builder::rpm::modular::{self, ModuleRequest};
use vnfs_builder::rpm::repomd;

use super::{DATE, package_names, recipe, require_root, run};

/// Packages: (name, version, release). Releases with `module` belong to
/// module streams below; the others are the distribution's own.
const PACKAGES: [(&str, &str, &str); 12] = [
    ("foo", "1.0", "1"),
    ("foo", "2.0", "1.module_el9"),
    ("foo", "2.1", "1.module_el9"),
    ("foo", "3.0", "1.module_el9"),
    ("bar", "1.0", "1"),
    ("bar", "5.0", "1.module_el9"),
    ("baz", "1.0", "1"),
    ("libx", "7.0", "1.module_el9"),
    ("usex", "1.0", "1.module_el9"),
    ("qux", "1.0", "1"),
    ("qux", "2.0", "1.module_el8"),
    ("pyx", "1.1", "1.module_el9"),
];

/// One modulemd document: `requires` as YAML flow-mapping entries.
fn stream(
    name: &str,
    stream: &str,
    version: u64,
    context: &str,
    requires: &str,
    rpm: &str,
) -> String {
    format!(
        "---\ndocument: modulemd\nversion: 2\ndata:\n  name: {name}\n  stream: \"{stream}\"\n  version: {version}\n  context: {context}\n  arch: noarch\n  summary: {name} {stream}\n  description: test stream\n  license:\n    module: [MIT]\n  dependencies:\n  - buildrequires: {{platform: [el9]}}\n    requires: {{{requires}}}\n  profiles:\n    common:\n      rpms: [{name}]\n  artifacts:\n    rpms:\n    - {rpm}\n...\n"
    )
}

fn defaults(module: &str, stream: &str) -> String {
    format!(
        "---\ndocument: modulemd-defaults\nversion: 1\ndata:\n  module: {module}\n  stream: \"{stream}\"\n  profiles:\n    \"{stream}\": [common]\n...\n"
    )
}

/// The module metadata: foo (default 2, two versions; and 3), barmod
/// without a default, libx and usex (default; needs libx:7), qux whose
/// default needs another platform, and pyx in two contexts for two libx
/// streams (one of which does not exist).
fn modules_yaml() -> String {
    [
        stream(
            "foo",
            "2",
            1,
            "c1",
            "platform: [el9]",
            "foo-0:2.0-1.module_el9.noarch",
        ),
        stream(
            "foo",
            "2",
            2,
            "c1",
            "platform: [el9]",
            "foo-0:2.1-1.module_el9.noarch",
        ),
        stream(
            "foo",
            "3",
            1,
            "c1",
            "platform: [el9]",
            "foo-0:3.0-1.module_el9.noarch",
        ),
        defaults("foo", "2"),
        stream(
            "barmod",
            "5",
            1,
            "c1",
            "platform: [el9]",
            "bar-0:5.0-1.module_el9.noarch",
        ),
        stream(
            "libx",
            "7",
            1,
            "c1",
            "platform: [el9]",
            "libx-0:7.0-1.module_el9.noarch",
        ),
        stream(
            "usex",
            "1",
            1,
            "c1",
            "platform: [el9], libx: [7]",
            "usex-0:1.0-1.module_el9.noarch",
        ),
        defaults("usex", "1"),
        stream(
            "qux",
            "2",
            1,
            "c8",
            "platform: [el8]",
            "qux-0:2.0-1.module_el8.noarch",
        ),
        defaults("qux", "2"),
        stream(
            "pyx",
            "1",
            1,
            "ca",
            "platform: [el9], libx: [7]",
            "pyx-0:1.1-1.module_el9.noarch",
        ),
        stream(
            "pyx",
            "1",
            1,
            "cb",
            "platform: [el9], libx: [8]",
            "pyx-0:1.1-1.module_el9.noarch",
        ),
    ]
    .concat()
}

/// A repository at `dir/repo` with the packages and the module metadata.
fn modular_repo(dir: &Path) {
    let repo = dir.join("repo");
    let pkgs = repo.join("Packages");
    std::fs::create_dir_all(&pkgs).unwrap();
    for (name, version, release) in PACKAGES {
        let mut b = rpm::PackageBuilder::new(name, version, "MIT", "noarch", "module test");
        b.release(release)
            .using_config(rpm::BuildConfig::default().source_date(DATE))
            .with_file_contents(
                format!("{name} {version}\n"),
                rpm::FileOptions::new(format!("/usr/share/{name}/VERSION")),
            )
            .unwrap();
        let p = b.build().unwrap();
        p.write_file(pkgs.join(p.canonical_filename().unwrap()))
            .unwrap();
    }
    let ok = |c: &mut Command, what: &str| {
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("{what} must be installed (scripts/setup.sh): {e}"));
        assert!(out.status.success(), "{what}: {out:?}");
    };
    ok(
        Command::new("createrepo_c").arg("--quiet").arg(&repo),
        "createrepo_c",
    );
    let yaml = dir.join("modules.yaml");
    std::fs::write(&yaml, modules_yaml()).unwrap();
    ok(
        Command::new("modifyrepo_c")
            .arg("--mdtype=modules")
            .arg(&yaml)
            .arg(repo.join("repodata")),
        "modifyrepo_c (createrepo-c)",
    );
}

/// What dnf leaves visible after `module enable`/`module disable`, as
/// `name-version`.
fn dnf_visible(dir: &Path, enable: &[&str], disable: &[&str]) -> BTreeSet<String> {
    let root = dir.join("dnfroot");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let dnf = |args: &[&str]| {
        let out = Command::new("dnf")
            .arg("-q")
            .arg(format!("--installroot={}", root.display()))
            .arg(format!(
                "--setopt=cachedir={}",
                dir.join("dnfcache").display()
            ))
            .args([
                "--releasever=9",
                "--setopt=reposdir=/nonexistent",
                "--setopt=module_platform_id=platform:el9",
                "--nogpgcheck",
            ])
            .arg(format!(
                "--repofrompath=t,file://{}",
                dir.join("repo").display()
            ))
            .args(args)
            .output()
            .expect("dnf must be installed (Debian package dnf; scripts/setup.sh)");
        assert!(out.status.success(), "dnf {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (verb, mods) in [("enable", enable), ("disable", disable)] {
        if !mods.is_empty() {
            let mut args = vec!["-y", "module", verb];
            args.extend(mods);
            dnf(&args);
        }
    }
    dnf(&["repoquery", "--qf", "%{name}-%{version}"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// What vnfs leaves visible for the same requests.
fn vnfs_visible(dir: &Path, enable: &[&str], disable: &[&str]) -> BTreeSet<String> {
    let url = format!("file://{}", dir.join("repo").display());
    let data = repomd::load(&Fetcher::default(), &url, 0, None).unwrap();
    let meta = data.modules.expect("the repository lists modules.yaml");
    let req = ModuleRequest {
        enable: enable.iter().map(|s| s.to_string()).collect(),
        disable: disable.iter().map(|s| s.to_string()).collect(),
        platform: Some("platform:el9".into()),
        arch: std::env::consts::ARCH.into(),
    };
    let sel = modular::select(&meta, &req).unwrap_or_else(|e| panic!("{enable:?}: {e}"));
    let (kept, _) = modular::filter(data.packages, &meta, &sel, |_| false);
    kept.iter()
        .map(|p| format!("{}-{}", p.name, p.evr.version))
        .collect()
}

#[test]
fn modular_filtering_matches_dnf() {
    let tmp = tempfile::tempdir().unwrap();
    modular_repo(tmp.path());
    let cases: [(&[&str], &[&str]); 6] = [
        (&[], &[]),
        (&["foo:3", "usex"], &[]),
        (&["barmod"], &[]),
        (&[], &["foo"]),
        (&["pyx:1"], &[]),
        (&["foo", "libx:7"], &["qux"]),
    ];
    for (enable, disable) in cases {
        let ours = vnfs_visible(tmp.path(), enable, disable);
        let dnf = dnf_visible(tmp.path(), enable, disable);
        assert_eq!(ours, dnf, "enable {enable:?}, disable {disable:?}");
    }
    // What dnf and vnfs agree on is not trivial: by default, foo 1.0
    // (shadowed), foo 3.0, bar 5.0, qux 2.0 (needs el8) and pyx (needs
    // libx 8, or libx 7 enabled) are left out, and usex's default stream
    // brings libx 7 in.
    let default = vnfs_visible(tmp.path(), &[], &[]);
    assert_eq!(
        default.into_iter().collect::<Vec<_>>(),
        [
            "bar-1.0", "baz-1.0", "foo-2.0", "foo-2.1", "libx-7.0", "qux-1.0", "usex-1.0"
        ]
    );
}

#[test]
fn a_build_enables_streams_and_records_them() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    modular_repo(tmp.path());
    // A recipe named `name` with `keys` in [source.rpm] and the repository.
    let with_repo = |name: &str, keys: &str| {
        recipe(
            tmp.path(),
            name,
            &format!("{keys}\n\n[[source.rpm.repo]]\nid = \"app\"\nbaseurl = \"repo\"\n"),
        )
    };
    let platform = "module_platform_id = \"platform:el9\"";
    let m2_keys = format!(
        "packages = [\"foo\", \"usex\", \"libx\"]\nmodules = [\"foo:3\", \"usex\"]\ndisable_modules = [\"qux\"]\n{platform}"
    );
    let home = tmp.path().join("home");
    // The default stream's newest version, not the distribution's foo nor
    // the newer stream.
    let r = with_repo("m1", "packages = [\"foo\"]");
    let b = run(&r, &home, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(package_names(&b), ["foo-2.1-1.module_el9"]);
    assert!(!b.metadata.contains_key("vnfs.rpm.modules"));
    // Enabling a stream brings its packages and its dependencies' in, and
    // the image records the states as dnf would.
    let r = with_repo("m2", &m2_keys);
    let out = tmp.path().join("out");
    let b = run(&r, &home, Some(&out)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        package_names(&b),
        [
            "foo-3.0-1.module_el9",
            "libx-7.0-1.module_el9",
            "usex-1.0-1.module_el9"
        ]
    );
    assert_eq!(
        b.metadata["vnfs.rpm.modules"],
        "foo:3 enabled\nlibx:7 enabled\nqux disabled\nusex:1 enabled"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("etc/dnf/modules.d/foo.module")).unwrap(),
        "[foo]\nname=foo\nstream=3\nprofiles=\nstate=enabled\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("etc/dnf/modules.d/qux.module")).unwrap(),
        "[qux]\nname=qux\nstream=\nprofiles=\nstate=disabled\n"
    );
    // Changing the streams outdates the lock.
    let r = with_repo(
        "m2",
        &format!("packages = [\"foo\"]\nmodules = [\"foo:2\"]\n{platform}"),
    );
    let e = run(&r, &home, None).unwrap_err();
    assert!(e.contains("modules") && e.contains("--update"), "{e}");
    // A stream that does not exist, a module no repository has, and a
    // stream whose requirements cannot be met are explained.
    for (modules, expect) in [
        ("[\"foo:9\"]", "no stream \"9\" (its streams: 2, 3)"),
        ("[\"fooo\"]", "did you mean foo"),
        ("[\"qux:2\"]", "needs platform:[el8]"),
    ] {
        let r = with_repo(
            "m3",
            &format!("packages = [\"baz\"]\nmodules = {modules}\n{platform}"),
        );
        let e = run(&r, &home, None).unwrap_err();
        assert!(e.contains(expect), "{modules}: {e}");
    }
    // The m2 recipe again, as locked above.
    let r = with_repo("m2", &m2_keys);
    // A locked build reads no metadata and writes the same states: in
    // another store (so the commit has no parent), the same commit.
    let lock = std::fs::read_to_string(tmp.path().join("m2.toml.lock")).unwrap();
    assert!(lock.contains("[[module]]"), "{lock}");
    std::fs::remove_dir_all(tmp.path().join("repo/repodata")).unwrap();
    let out2 = tmp.path().join("out2");
    let b2 = run(&r, &tmp.path().join("home2"), Some(&out2)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b2.commit, b.commit);
    assert!(out2.join("etc/dnf/modules.d/usex.module").exists());
}
