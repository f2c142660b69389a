//! RPM sources end to end: packages are built here with the `rpm` crate
//! (a tiny base system made of the host's dash and C library, a tool with
//! owners, setuid, capabilities, links and scriptlets, and some packages
//! for the resolver), a repository is made with `createrepo_c`, and images
//! are built from local files and from the repository.
//!
//! Needs root (owners, capabilities, chroot for scriptlets),
//! `createrepo_c` (Debian package createrepo-c) and rpm (Debian package
//! rpm: it writes the rpm database of images without rpm, and reads it
//! back here), both installed by scripts/setup.sh; without them the tests
//! fail, they never skip.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use vnfs_builder::build::{BuildOptions, Built, build};
use vnfs_builder::progress::NoProgress;
use vnfs_builder::recipe::Recipe;

#[path = "rpm/gpgcheck.rs"]
mod gpgcheck;
#[path = "rpm/modular.rs"]
mod modular;

/// Timestamp of every test package (their build time and file mtimes).
const DATE: u32 = 1_700_000_000;

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the RPM build tests must run as root (owners, capabilities, chroot)"
    );
}

fn arch() -> &'static str {
    std::env::consts::ARCH
}

/// The host's dash and the shared objects it loads, as (image path, host
/// file) pairs: enough for `/bin/sh` scriptlets in a test image.
fn shell_files() -> Vec<(String, PathBuf)> {
    let out = Command::new("ldd")
        .arg("/bin/dash")
        .output()
        .expect("ldd must be installed (libc-bin)");
    assert!(out.status.success(), "ldd /bin/dash: {out:?}");
    let mut files = vec![("/usr/bin/dash".to_string(), PathBuf::from("/bin/dash"))];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line
            .split("=>")
            .last()
            .and_then(|r| r.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(p) = path {
            files.push((p.to_string(), std::fs::canonicalize(p).unwrap()));
        }
    }
    assert!(
        files.len() >= 3,
        "dash should need libc and the loader: {files:?}"
    );
    files
}

fn builder(
    name: &str,
    version: &str,
    arch: &str,
    compression: rpm::CompressionType,
) -> rpm::PackageBuilder {
    let mut b = rpm::PackageBuilder::new(name, version, "MIT", arch, "vnfs test package");
    b.release("1").using_config(
        rpm::BuildConfig::default()
            .compression(compression)
            .source_date(DATE),
    );
    b
}

fn write(pkg: rpm::Package, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let name = pkg.canonical_filename().unwrap();
    let p = dir.join(name);
    pkg.write_file(&p).unwrap();
    p
}

/// Writes every test package into `dir`.
fn make_packages(dir: &Path) {
    use rpm::{CompressionType as C, Dependency, FileOptions, Scriptlet};
    // base: a shell, its libraries, passwd and group.
    let mut b = builder("base", "1.0", arch(), C::Xz);
    for (image_path, host) in shell_files() {
        b.with_file(&host, FileOptions::new(image_path).permissions(0o755))
            .unwrap();
    }
    b.with_symlink(FileOptions::symlink("/bin/sh", "/usr/bin/dash"))
        .unwrap()
        .with_file_contents(
            "root:x:0:0:root:/root:/bin/sh\ndaemon:x:2:2::/:/sbin/nologin\n",
            FileOptions::new("/etc/passwd").permissions(0o644).config(),
        )
        .unwrap()
        .with_file_contents(
            "root:x:0:\ndaemon:x:2:\n",
            FileOptions::new("/etc/group").permissions(0o644).config(),
        )
        .unwrap()
        .post_trans_script("echo posttrans\n");
    write(b.build().unwrap(), dir);

    // libdep in two versions; 2.0 has a Lua %post.
    for (v, c) in [("1.0", C::Gzip), ("2.0", C::None)] {
        let mut b = builder("libdep", v, "noarch", c);
        b.with_file_contents(v, FileOptions::new("/usr/lib/libdep/VERSION"))
            .unwrap();
        if v == "2.0" {
            b.post_install_script(Scriptlet::new("print('hi')").prog(vec!["<lua>"]));
        }
        write(b.build().unwrap(), dir);
    }

    // tool: every kind of entry and metadata, and both scriptlets.
    let mut b = builder("tool", "3.0", arch(), C::Zstd);
    b.epoch(2)
        .requires(Dependency::greater_eq("libdep", "2.0"))
        .requires(Dependency::any("/bin/sh"))
        .with_file_contents(
            "#!/bin/sh\necho tool\n",
            FileOptions::new("/usr/bin/tool")
                .permissions(0o755)
                .user("daemon")
                .group("daemon"),
        )
        .unwrap()
        .with_file_contents(
            "suid",
            FileOptions::new("/usr/bin/tool-suid").permissions(0o4755),
        )
        .unwrap()
        .with_file_contents(
            "ping",
            FileOptions::new("/usr/bin/tool-ping")
                .permissions(0o755)
                .caps("cap_net_raw=ep")
                .unwrap(),
        )
        .unwrap()
        .with_symlink(FileOptions::symlink("/usr/bin/tool-link", "tool"))
        .unwrap()
        .with_file_contents("same", FileOptions::new("/usr/share/tool/a").hardlink("ab"))
        .unwrap()
        .with_file_contents("same", FileOptions::new("/usr/share/tool/b").hardlink("ab"))
        .unwrap()
        .with_dir_entry(
            FileOptions::dir("/var/lib/tool")
                .permissions(0o750)
                .user("tooluser")
                .group("tooluser"),
        )
        .unwrap()
        .with_file_contents(
            "x=1\n",
            FileOptions::new("/etc/tool.conf")
                .user("ghostuser")
                .config(),
        )
        .unwrap()
        .pre_install_script(
            "echo 'tooluser:x:990:991::/var/lib/tool:/sbin/nologin' >> /etc/passwd\n\
             echo 'tooluser:x:991:' >> /etc/group\n",
        )
        .post_install_script("echo \"post $1\" > /var/lib/tool/post-ran\n");
    write(b.build().unwrap(), dir);

    // For the resolver's failure messages.
    let mut b = builder("needs-missing", "1", "noarch", C::Gzip);
    b.requires(Dependency::any("nonexistent-lib"));
    write(b.build().unwrap(), dir);
    let mut b = builder("wants-old", "1", "noarch", C::Gzip);
    b.requires(Dependency::eq("libdep", "1.0"));
    write(b.build().unwrap(), dir);
}

/// `fakesh` provides `/bin/sh` without shipping it; `needs-sh` has a
/// `/bin/sh` %post, which cannot run in an image made of the two.
fn make_shell_less(dir: &Path) {
    use rpm::{CompressionType as C, Dependency};
    let mut b = builder("fakesh", "1", "noarch", C::Gzip);
    b.provides(Dependency::any("/bin/sh"));
    write(b.build().unwrap(), dir);
    let mut b = builder("needs-sh", "1", "noarch", C::Gzip);
    b.post_install_script("echo hi > /post-ran\n");
    write(b.build().unwrap(), dir);
}

/// A directory with the test packages and, under `repo/`, a repository
/// made by createrepo_c with xz-compressed metadata.
fn fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    make_packages(&tmp.path().join("rpms"));
    let repo = tmp.path().join("repo");
    let pkgs = repo.join("Packages");
    std::fs::create_dir_all(&pkgs).unwrap();
    for e in std::fs::read_dir(tmp.path().join("rpms")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), pkgs.join(e.file_name())).unwrap();
    }
    let out = Command::new("createrepo_c")
        .args([
            "--quiet",
            "--general-compress-type",
            "xz",
            "--revision",
            "1",
        ])
        .arg(&repo)
        .output()
        .expect("createrepo_c must be installed (Debian package createrepo-c; scripts/setup.sh)");
    assert!(out.status.success(), "createrepo_c failed: {out:?}");
    tmp
}

/// Adds packages to the fixture's repository and regenerates its metadata.
fn add_to_repo(fx: &Path, pkgs: Vec<rpm::Package>) {
    for p in pkgs {
        write(p, &fx.join("repo/Packages"));
    }
    let out = Command::new("createrepo_c")
        .args(["--quiet", "--revision", "2"])
        .arg(fx.join("repo"))
        .output()
        .expect("createrepo_c must be installed (Debian package createrepo-c; scripts/setup.sh)");
    assert!(out.status.success(), "createrepo_c: {out:?}");
}

fn recipe(dir: &Path, name: &str, source: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            "[image]\nos = \"test\"\nversion = \"1\"\nrelease = \"1\"\narch = \"{}\"\nname = \"{name}\"\n\n[source.rpm]\n{source}",
            arch()
        ),
    )
    .unwrap();
    p
}

fn run(recipe_path: &Path, home: &Path, out: Option<&Path>) -> Result<Built, String> {
    let r = Recipe::load(recipe_path).map_err(|e| e.to_string())?;
    let mut opts = BuildOptions::new(home);
    opts.output_dir = out.map(Path::to_path_buf);
    build(&r, &opts, &NoProgress, &AtomicBool::new(false)).map_err(|e| e.to_string())
}

fn package_names(b: &Built) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&b.metadata["vnfs.packages"]).expect("packages metadata is JSON");
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}-{}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect()
}

/// The packages in `root`'s rpm database as `name-version-release`,
/// sorted, read with the build machine's rpm.
fn rpm_qa(root: &Path) -> Vec<String> {
    let out = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args([
            "--dbpath",
            "/var/lib/rpm",
            "--define",
            "_db_backend sqlite",
            "-qa",
            "--qf",
            "%{NAME}-%{VERSION}-%{RELEASE} %{INSTALLTIME}\n",
        ])
        .output()
        .expect("rpm must be installed (Debian package rpm; scripts/setup.sh)");
    assert!(out.status.success(), "rpm -qa: {out:?}");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// Checks everything the tool package put into `root`.
fn check_tree(root: &Path) {
    let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
    let tool = meta("usr/bin/tool");
    assert_eq!(
        (tool.uid(), tool.gid()),
        (2, 2),
        "daemon owns /usr/bin/tool"
    );
    assert_eq!(tool.mode() & 0o7777, 0o755);
    assert!(tool.mtime() <= i64::from(DATE));
    assert_eq!(meta("usr/bin/tool-suid").mode() & 0o7777, 0o4755);
    let caps = xattr::get(root.join("usr/bin/tool-ping"), "security.capability")
        .unwrap()
        .expect("tool-ping has a security.capability xattr");
    assert_eq!(
        caps,
        [
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]
    );
    assert_eq!(
        std::fs::read_link(root.join("usr/bin/tool-link")).unwrap(),
        Path::new("tool")
    );
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("/usr/bin/dash")
    );
    let (a, b) = (meta("usr/share/tool/a"), meta("usr/share/tool/b"));
    assert_eq!(a.ino(), b.ino(), "a and b are one hard-linked file");
    assert_eq!(
        std::fs::read(root.join("usr/share/tool/b")).unwrap(),
        b"same"
    );
    // The user %pre created owns the directory; %post ran with $1 = 1.
    let d = meta("var/lib/tool");
    assert!(d.is_dir());
    assert_eq!((d.uid(), d.gid(), d.mode() & 0o7777), (990, 991, 0o750));
    assert_eq!(
        std::fs::read_to_string(root.join("var/lib/tool/post-ran")).unwrap(),
        "post 1\n"
    );
    // An owner the image does not know: root.
    assert_eq!(meta("etc/tool.conf").uid(), 0);
    assert_eq!(
        std::fs::read_to_string(root.join("usr/lib/libdep/VERSION")).unwrap(),
        "2.0"
    );
}

#[test]
fn builds_from_local_files() {
    require_root();
    let fx = fixture();
    let r = recipe(
        fx.path(),
        "local",
        "files = [\"rpms/base-*.rpm\", \"rpms/tool-*.rpm\", \"rpms/libdep-2.0-*.rpm\"]\n",
    );
    let out = fx.path().join("out");
    let b = run(&r, &fx.path().join("home"), Some(&out)).unwrap();
    check_tree(&out);
    assert_eq!(
        package_names(&b),
        ["base-1.0-1", "libdep-2.0-1", "tool-2:3.0-1"]
    );
    assert_eq!(b.source_date_epoch, i64::from(DATE));
    assert!(b.commit.is_some());
    let ran = &b.metadata["vnfs.rpm.scriptlets_ran"];
    assert_eq!(ran, "tool %pre\nlibdep %post\ntool %post\nbase %posttrans");
    assert!(!b.metadata.contains_key("vnfs.rpm.scriptlets_skipped"));
    let warn = &b.metadata["vnfs.rpm.warnings"];
    assert!(warn.contains("\"ghostuser\" (package tool)"), "{warn}");
    // The image has no rpm: this machine's rpm wrote its database, with
    // SOURCE_DATE_EPOCH as every install time.
    assert!(
        b.metadata["vnfs.rpm.database"].starts_with("the build machine's rpm (RPM version 4."),
        "{}",
        b.metadata["vnfs.rpm.database"]
    );
    // rpm ticks the clock from there, one second per package.
    assert_eq!(
        rpm_qa(&out),
        [
            "base-1.0-1 1700000001",
            "libdep-2.0-1 1700000000",
            "tool-3.0-1 1700000002"
        ]
    );
    // Settled: out of WAL mode, nothing beside the database but rpm's lock.
    let mut files: Vec<String> = std::fs::read_dir(out.join("var/lib/rpm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, [".rpm.lock", "rpmdb.sqlite"]);
    // rpm itself checks every file against the headers (size, mode,
    // digest, owner, group, mtime, capabilities): only the two
    // configuration files the tool's %pre changed (a new user) differ.
    let v = Command::new("rpm")
        .arg("--root")
        .arg(&out)
        .args(["--dbpath", "/var/lib/rpm", "-Va"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&v.stdout),
        "S.5......  c /etc/group\nS.5......  c /etc/passwd\n",
        "rpm -Va: {v:?}"
    );
    assert!(!out.join("var/tmp/vnfs-rpmdb").exists());
    let lock = std::fs::read_to_string(fx.path().join("local.toml.lock")).unwrap();
    assert!(lock.contains("source = \"rpm\""), "{lock}");
    assert!(lock.contains("location = \"rpms/tool-3.0-1."), "{lock}");
    assert!(
        !lock.contains("repo ="),
        "local packages have no repo: {lock}"
    );
}

#[test]
fn builds_from_a_repository_reproducibly() {
    require_root();
    let fx = fixture();
    let r = recipe(
        fx.path(),
        "repo",
        "packages = [\"tool\"]\n\n[[source.rpm.repo]]\nid = \"test\"\nbaseurl = \"repo\"\n",
    );
    let out = fx.path().join("out");
    let first = run(&r, &fx.path().join("home1"), Some(&out)).unwrap();
    check_tree(&out);
    // Without a gpgkey the repository is unverified, and the image says so.
    let warn = &first.metadata["vnfs.rpm.warnings"];
    assert!(warn.contains("repository test is not verified"), "{warn}");
    assert_eq!(
        rpm_qa(&out).len(),
        3,
        "base, libdep and tool in the rpm database"
    );
    // libdep >= 2.0 and /bin/sh pulled base and the newer libdep in.
    assert_eq!(
        package_names(&first),
        ["base-1.0-1", "libdep-2.0-1", "tool-2:3.0-1"]
    );
    let lock_path = fx.path().join("repo.toml.lock");
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    assert!(lock.contains("repo = \"test\""), "{lock}");
    assert!(lock.contains("location = \"Packages/tool-3.0-1."), "{lock}");
    // Again from an empty home, resolving again: the same commit.
    std::fs::remove_file(&lock_path).unwrap();
    let second = run(&r, &fx.path().join("home2"), None).unwrap();
    assert_eq!(first.commit, second.commit, "same inputs, same commit id");
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), lock);
    // And from the lock, over HTTP-less file:// URLs given explicitly.
    let url = format!("file://{}", fx.path().join("repo").display());
    let r2 = recipe(
        fx.path(),
        "repo",
        &format!(
            "packages = [\"tool\"]\n\n[[source.rpm.repo]]\nid = \"test\"\nbaseurl = \"{url}\"\n"
        ),
    );
    let third = run(&r2, &fx.path().join("home3"), None).unwrap();
    assert!(!third.lock_written, "the lock was used as it is");
    // The recipe text (stored in the commit) differs, the tree does not.
    let root_of = |home: &str, b: &Built| {
        let store = vnfs_store::Store::open(&fx.path().join(home).join("store")).unwrap();
        store.read_commit(b.commit.as_ref().unwrap()).unwrap().root
    };
    assert_eq!(root_of("home1", &first), root_of("home3", &third));
}

#[test]
fn scriptlet_without_its_interpreter_is_skipped() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    make_shell_less(&tmp.path().join("rpms"));
    let r = recipe(tmp.path(), "nosh", "files = [\"rpms/*.rpm\"]\n");
    let out = tmp.path().join("out");
    let b = run(&r, &tmp.path().join("home"), Some(&out)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        b.metadata["vnfs.rpm.scriptlets_skipped"],
        "needs-sh %post: interpreter /bin/sh is not in the image"
    );
    assert!(!b.metadata.contains_key("vnfs.rpm.scriptlets_ran"));
    assert!(!out.join("post-ran").exists());
}

#[test]
fn members_escaping_the_root_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = builder("evil", "1", "noarch", rpm::CompressionType::Gzip);
    b.with_file_contents(
        "x",
        rpm::FileOptions::new("/usr/../../../../tmp/vnfs-rpm-escape"),
    )
    .unwrap();
    write(b.build().unwrap(), &tmp.path().join("rpms"));
    let r = recipe(tmp.path(), "evil", "files = [\"rpms/*.rpm\"]\n");
    let e = run(&r, &tmp.path().join("home"), Some(&tmp.path().join("out"))).unwrap_err();
    assert!(
        e.contains("package evil: member") && e.contains("escapes the root"),
        "{e}"
    );
    assert!(!Path::new("/tmp/vnfs-rpm-escape").exists());
}

#[test]
fn resolution_failures_are_explained() {
    let fx = fixture();
    let repo = "\n[[source.rpm.repo]]\nid = \"test\"\nbaseurl = \"repo\"\n";
    let fail = |name: &str, packages: &str| {
        let r = recipe(fx.path(), name, &format!("packages = {packages}\n{repo}"));
        let e = run(&r, &fx.path().join("home"), None).unwrap_err();
        assert!(!fx.path().join(format!("{name}.toml.lock")).exists());
        e
    };
    let e = fail("missing", "[\"needs-missing\"]");
    assert!(
        e.contains("needs-missing-1-1.noarch's requirement nonexistent-lib: nothing provides nonexistent-lib"),
        "{e}"
    );
    let e = fail("conflict", "[\"libdep\", \"wants-old\"]");
    assert!(e.contains("requirement libdep = 1.0"), "{e}");
    assert!(
        e.contains("libdep-1.0-1.noarch would be needed but libdep-2.0-1.noarch is already selected (required by: recipe)"),
        "{e}"
    );
    let e = fail("typo", "[\"toool\"]");
    assert!(
        e.contains("no package provides \"toool\" (did you mean tool?)"),
        "{e}"
    );
    // Asked for alone, the old version is what the resolver picks.
    let r = recipe(
        fx.path(),
        "old",
        &format!("packages = [\"wants-old\"]\n{repo}"),
    );
    let b = run(&r, &fx.path().join("home"), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(package_names(&b), ["libdep-1.0-1", "wants-old-1-1"]);
}

#[test]
fn tampered_packages_and_metadata_are_refused() {
    let fx = fixture();
    let r = recipe(
        fx.path(),
        "t",
        "packages = [\"libdep\"]\n\n[[source.rpm.repo]]\nid = \"test\"\nbaseurl = \"repo\"\n",
    );
    // A package changed after the repository was made.
    let pkg = fx.path().join("repo/Packages/libdep-2.0-1.noarch.rpm");
    let mut bytes = std::fs::read(&pkg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&pkg, &bytes).unwrap();
    let home = fx.path().join("home");
    let e = run(&r, &home, None).unwrap_err();
    assert!(
        e.contains("libdep-2.0-1.noarch.rpm: sha256 mismatch"),
        "{e}"
    );
    assert!(!home.join("store").exists(), "nothing was committed");
    // A primary index changed after repomd.xml was written.
    let primary = std::fs::read_dir(fx.path().join("repo/repodata"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("primary.xml"))
        .unwrap();
    let mut bytes = std::fs::read(&primary).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&primary, &bytes).unwrap();
    std::fs::remove_file(fx.path().join("t.toml.lock")).ok();
    let e = run(&r, &home, None).unwrap_err();
    assert!(
        e.contains("repo test:") && e.contains("checksum mismatch"),
        "{e}"
    );
    // A local file changed after it was locked.
    let r = recipe(fx.path(), "l", "files = [\"rpms/libdep-1.0-*.rpm\"]\n");
    run(&r, &fx.path().join("home2"), None).unwrap_or_else(|e| panic!("{e}"));
    let local = fx.path().join("rpms/libdep-1.0-1.noarch.rpm");
    let mut bytes = std::fs::read(&local).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&local, &bytes).unwrap();
    let e = run(&r, &fx.path().join("home3"), None).unwrap_err();
    assert!(
        e.contains("does not match") && e.contains("package libdep"),
        "{e}"
    );
}

#[test]
fn an_edited_lock_cannot_swap_packages() {
    use sha2::{Digest, Sha256};
    require_root();
    let fx = fixture();
    let r = recipe(fx.path(), "l2", "files = [\"rpms/libdep-2.0-*.rpm\"]\n");
    run(&r, &fx.path().join("home"), None).unwrap_or_else(|e| panic!("{e}"));
    let lock_path = fx.path().join("l2.toml.lock");
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    let sha = |p: &str| hex::encode(Sha256::digest(std::fs::read(fx.path().join(p)).unwrap()));
    let (v2, v1) = (
        "rpms/libdep-2.0-1.noarch.rpm",
        "rpms/libdep-1.0-1.noarch.rpm",
    );
    assert!(lock.contains(v2) && lock.contains(&sha(v2)), "{lock}");
    // Another local file, hash and all: not one the recipe lists.
    std::fs::write(&lock_path, lock.replace(v2, v1).replace(&sha(v2), &sha(v1))).unwrap();
    let e = run(&r, &fx.path().join("home"), None).unwrap_err();
    assert!(
        e.contains("is the local file rpms/libdep-1.0-1.noarch.rpm") && e.contains("do not match"),
        "{e}"
    );
    // The listed file under another version: its header says otherwise.
    std::fs::write(
        &lock_path,
        lock.replace("version = \"2.0\"", "version = \"2.1\""),
    )
    .unwrap();
    let e = run(&r, &fx.path().join("home"), None).unwrap_err();
    assert!(
        e.contains("its header says libdep-2.0-1.noarch, but the lock names libdep-2.1-1.noarch"),
        "{e}"
    );
}

#[test]
fn a_repository_exclude_filters_only_that_repository() {
    require_root();
    let fx = fixture();
    let repo = "[[source.rpm.repo]]\nid = \"test\"\nbaseurl = \"repo\"\nexclude = [\"libd?p\"]\n";
    // tool needs libdep >= 2.0, which the repository now keeps back.
    let r = recipe(fx.path(), "rx", &format!("packages = [\"tool\"]\n\n{repo}"));
    let e = run(&r, &fx.path().join("home"), None).unwrap_err();
    assert!(e.contains("libdep"), "{e}");
    // A local file of that name is not the repository's: it counts.
    let r = recipe(
        fx.path(),
        "rx",
        &format!("files = [\"rpms/libdep-2.0-*.rpm\"]\npackages = [\"tool\"]\n\n{repo}"),
    );
    let b = run(&r, &fx.path().join("home"), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        package_names(&b),
        ["base-1.0-1", "libdep-2.0-1", "tool-2:3.0-1"]
    );
    let lock = std::fs::read_to_string(fx.path().join("rx.toml.lock")).unwrap();
    assert!(
        lock.contains("[inputs.repo_exclude]") && lock.contains("test = [\"libd?p\"]"),
        "{lock}"
    );
}

#[test]
fn the_example_recipe_parses() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes/rpm-local-repo.toml");
    let r = Recipe::load(&p).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(r.source, vnfs_builder::recipe::Source::Rpm(_)));
}

/// Signs `data` with a fresh key; returns (armored public key, armored
/// detached signature).
fn sign(data: &[u8]) -> (String, String) {
    use pgp::composed::{DetachedSignature, KeyType, SecretKeyParamsBuilder};
    use pgp::crypto::hash::HashAlgorithm;
    use pgp::types::Password;
    let mut rng = rand::thread_rng();
    let key = SecretKeyParamsBuilder::default()
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("repo <repo@example.invalid>".into())
        .build()
        .unwrap()
        .generate(&mut rng)
        .unwrap();
    let sig = DetachedSignature::sign_binary_data(
        &mut rng,
        &key.primary_key,
        &Password::empty(),
        HashAlgorithm::Sha256,
        data,
    )
    .unwrap();
    (
        key.to_public_key().to_armored_string(None.into()).unwrap(),
        sig.to_armored_string(None.into()).unwrap(),
    )
}

#[test]
fn repository_signature_is_checked() {
    let fx = fixture();
    let repomd = std::fs::read(fx.path().join("repo/repodata/repomd.xml")).unwrap();
    let (key, sig) = sign(&repomd);
    let (other_key, _) = sign(b"other");
    std::fs::write(fx.path().join("repo.asc"), key).unwrap();
    std::fs::write(fx.path().join("other.asc"), other_key).unwrap();
    let r = |name: &str, keyfile: &str| {
        recipe(
            fx.path(),
            name,
            &format!(
                "packages = [\"libdep\"]\n\n[[source.rpm.repo]]\nid = \"signed\"\nbaseurl = \"repo\"\ngpgkey = \"{keyfile}\"\nrepo_gpgcheck = true\ngpgcheck = false\n"
            ),
        )
    };
    // No signature file at all.
    let e = run(&r("nosig", "repo.asc"), &fx.path().join("h0"), None).unwrap_err();
    assert!(e.contains("repomd.xml.asc: HTTP status 404"), "{e}");
    std::fs::write(fx.path().join("repo/repodata/repomd.xml.asc"), sig).unwrap();
    let b =
        run(&r("good", "repo.asc"), &fx.path().join("h1"), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(package_names(&b), ["libdep-2.0-1"]);
    // A verified repository is not reported as unsigned.
    assert!(
        !b.metadata
            .get("vnfs.rpm.warnings")
            .is_some_and(|w| w.contains("not verified")),
        "{:?}",
        b.metadata.get("vnfs.rpm.warnings")
    );
    let e = run(&r("wrongkey", "other.asc"), &fx.path().join("h2"), None).unwrap_err();
    assert!(e.contains("no valid signature from a key in"), "{e}");
    // repomd.xml changed after signing.
    let mut changed = repomd.clone();
    changed.extend_from_slice(b"\n<!-- -->\n");
    std::fs::write(fx.path().join("repo/repodata/repomd.xml"), changed).unwrap();
    let e = run(&r("tampered", "repo.asc"), &fx.path().join("h3"), None).unwrap_err();
    assert!(e.contains("signature does not verify"), "{e}");
}

#[test]
fn the_images_own_rpm_writes_its_database() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let fx = fixture();
    // An image with an "rpm" of its own: it records what it was given.
    let script = "#!/bin/sh\n\
        case \"$1\" in --version) echo 'RPM version 9.9 (test)'; exit 0;;\n\
        --eval) echo /var/lib/rpm; exit 0;; esac\n\
        echo \"SDE=$SOURCE_DATE_EPOCH $*\" > /rpm-args\n\
        for a; do case $a in /var/tmp/vnfs-rpmdb/*) [ -s \"$a\" ] || exit 3; esac; done\n";
    let mut b = builder("fakerpm", "1.0", arch(), rpm::CompressionType::Gzip);
    b.with_file_contents(
        script,
        rpm::FileOptions::new("/usr/bin/rpm").permissions(0o755),
    )
    .unwrap()
    // The database directory its `--eval %{_dbpath}` names.
    .with_file_contents("", rpm::FileOptions::new("/var/lib/rpm/.keep"))
    .unwrap();
    let dir = tmp.path().join("rpms");
    write(b.build().unwrap(), &dir);
    for e in std::fs::read_dir(fx.path().join("rpms")).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with("base-") {
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    let r = recipe(tmp.path(), "ownrpm", "files = [\"rpms/*.rpm\"]\n");
    let out = tmp.path().join("out");
    let b = run(&r, &tmp.path().join("home"), Some(&out)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        b.metadata["vnfs.rpm.database"],
        "the image's rpm (RPM version 9.9 (test))"
    );
    let args = std::fs::read_to_string(out.join("rpm-args")).unwrap();
    assert!(
        args.starts_with("SDE=1700000000 -i --justdb --nodeps --noscripts"),
        "{args}"
    );
    // Both packages, staged in the image, in install order; gone again.
    assert!(
        args.contains("/var/tmp/vnfs-rpmdb/0000-base.rpm /var/tmp/vnfs-rpmdb/0001-fakerpm.rpm"),
        "{args}"
    );
    assert!(!out.join("var/tmp/vnfs-rpmdb").exists());
}

#[test]
fn triggers_and_posttrans_fire_as_in_one_transaction() {
    use rpm::{CompressionType as C, FileOptions};
    require_root();
    let fx = fixture();
    // A package watching the tool package, its files and /usr/bin. Only
    // shell built-ins: the test image has dash and nothing else.
    let log = "/var/lib/watcher/log";
    let mut b = builder("watcher", "1.0", arch(), C::Gzip);
    b.with_file_contents("", FileOptions::new("/var/lib/watcher/.keep"))
        .unwrap()
        .trigger_in(
            "tool",
            Some((rpm::DependencyFlags::GREATER | rpm::DependencyFlags::EQUAL, "2:3.0")),
            format!("echo \"triggerin $*\" >> {log}\n"),
        )
        // A range tool does not satisfy: never fires.
        .trigger_in(
            "tool",
            Some((rpm::DependencyFlags::LESS, "1.0")),
            format!("echo wrong-range >> {log}\n"),
        )
        .file_trigger_in(
            "/usr/share/tool/",
            None,
            format!(
                "echo \"filetriggerin $*\" >> {log}\nwhile read p; do echo \"  $p\" >> {log}; done\n"
            ),
        )
        .post_trans_script(format!("echo \"posttrans $*\" >> {log}\n"))
        .trans_file_trigger_in(
            "/usr/bin/tool",
            None,
            format!(
                "echo \"transfiletriggerin $*\" >> {log}\nwhile read p; do echo \"  $p\" >> {log}; done\n"
            ),
        )
        // No body: the program runs as given, without a script file or
        // arguments (as `-p /sbin/ldconfig` does), and need not read the
        // paths on its standard input.
        .trans_file_trigger_in(
            "/var/lib/watcher/run",
            None,
            rpm::Scriptlet::new("").prog(vec!["/var/lib/watcher/run"]),
        );
    b.with_file_contents(
        "#!/bin/sh\necho \"bodiless $#\" >> /var/lib/watcher/log\n",
        FileOptions::new("/var/lib/watcher/run").permissions(0o755),
    )
    .unwrap();
    let extra = fx.path().join("extra");
    write(b.build().unwrap(), &extra);
    let r = recipe(
        fx.path(),
        "watched",
        "files = [\"rpms/base-*.rpm\", \"rpms/tool-*.rpm\", \"rpms/libdep-2.0-*.rpm\", \"extra/*.rpm\"]\n",
    );
    let out = fx.path().join("out");
    let built = run(&r, &fx.path().join("home"), Some(&out)).unwrap_or_else(|e| panic!("{e}"));
    // Package trigger (both instance counts 1); the file trigger once, as
    // its package is installed (after tool), with the matching paths of
    // everything installed so far on standard input; %posttrans; then each
    // transaction file trigger once.
    assert_eq!(
        std::fs::read_to_string(out.join("var/lib/watcher/log")).unwrap(),
        "triggerin 1 1\n\
         filetriggerin 1\n  /usr/share/tool/a\n  /usr/share/tool/b\n\
         posttrans 1\n\
         transfiletriggerin 1\n  /usr/bin/tool\n  /usr/bin/tool-link\n  /usr/bin/tool-ping\n  /usr/bin/tool-suid\n\
         bodiless 0\n"
    );
    let ran = &built.metadata["vnfs.rpm.scriptlets_ran"];
    assert!(
        ran.ends_with(
            "watcher %triggerin -- tool\nwatcher %filetriggerin\nbase %posttrans\nwatcher %posttrans\nwatcher %transfiletriggerin\nwatcher %transfiletriggerin"
        ),
        "{ran}"
    );
}

#[test]
fn lua_scriptlets_run_with_rpms_interpreter() {
    use rpm::{CompressionType as C, FileOptions, Scriptlet};
    require_root();
    let fx = fixture();
    let lua = |body: &str| Scriptlet::new(body).prog(vec!["<lua>"]);
    let log = |line: &str| {
        format!(
            "local f = assert(io.open('/var/lib/luapkg/log', 'a'))\nf:write({line} .. '\\n')\nf:close()\n"
        )
    };
    let mut b = builder("luapkg", "1.0", "noarch", C::Gzip);
    b.with_file_contents("", FileOptions::new("/var/lib/luapkg/.keep"))
        .unwrap()
        // rpm's arg table: "<lua>", then the instance count as a number.
        .pre_trans_script(lua(&log("'pretrans ' .. arg[1] .. ' ' .. math.type(arg[2]) .. ' ' .. arg[2]")))
        // rpm's extensions: posix, macros (this machine's, lent to an
        // image without rpm) and child processes in the image.
        .post_install_script(lua(&format!(
            "posix.mkdir('/var/lib/luapkg/made')\n{}{}",
            log("'post ' .. arg[2] .. ' ' .. rpm.expand('%{_bindir} %{_libdir}') .. ' ' .. posix.stat('/var/lib/luapkg/made', 'type')"),
            "assert(rpm.execute('/bin/sh', '-c', 'echo from-sh >> /var/lib/luapkg/log'))\n"
        )))
        .file_trigger_in(
            "/usr/share/tool/",
            None,
            lua(&format!(
                "for p in rpm.next_file do\n{}end\n",
                log("'next_file ' .. p")
            )),
        )
        .post_trans_script(lua(&log("'posttrans ' .. #arg")));
    let extra = fx.path().join("extra");
    write(b.build().unwrap(), &extra);
    let r = recipe(
        fx.path(),
        "lua",
        "files = [\"rpms/base-*.rpm\", \"rpms/tool-*.rpm\", \"rpms/libdep-2.0-*.rpm\", \"extra/*.rpm\"]\n",
    );
    let out = fx.path().join("out");
    let built = run(&r, &fx.path().join("home"), Some(&out)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        std::fs::read_to_string(out.join("var/lib/luapkg/log")).unwrap(),
        "pretrans <lua> integer 1\n\
         post 1 /usr/bin /usr/lib64 directory\n\
         from-sh\n\
         next_file /usr/share/tool/a\n\
         next_file /usr/share/tool/b\n\
         posttrans 2\n"
    );
    let ran = &built.metadata["vnfs.rpm.scriptlets_ran"];
    for s in [
        "luapkg %pretrans",
        "luapkg %post",
        "luapkg %filetriggerin (tool)",
        "luapkg %posttrans",
    ] {
        assert!(ran.lines().any(|l| l == s), "{s} not in {ran}");
    }
    assert!(
        !built.metadata.contains_key("vnfs.rpm.scriptlets_skipped"),
        "{:?}",
        built.metadata.get("vnfs.rpm.scriptlets_skipped")
    );
    assert!(
        built.metadata["vnfs.rpm.lua"].starts_with("the build machine's rpmlua (RPM version 4."),
        "{}",
        built.metadata["vnfs.rpm.lua"]
    );
    // The interpreter and the lent configuration are gone again.
    assert!(!out.join(".vnfs-rpmlua").exists());
    assert!(!out.join("usr/lib/rpm").exists());

    // A Lua error fails the build, with the scriptlet's message.
    let mut b = builder("luafail", "1.0", "noarch", C::Gzip);
    b.post_install_script(lua("error('luafail says no')"));
    let bad = fx.path().join("bad");
    write(b.build().unwrap(), &bad);
    let r = recipe(
        fx.path(),
        "luafail",
        "files = [\"rpms/base-*.rpm\", \"bad/*.rpm\"]\n",
    );
    let e = run(&r, &fx.path().join("home"), Some(&fx.path().join("out2"))).unwrap_err();
    assert!(
        e.contains("%post scriptlet of luafail") && e.contains("luafail says no"),
        "{e}"
    );
}

#[test]
fn a_database_symlinked_out_of_the_image_is_refused() {
    require_root();
    let fx = fixture();
    let outside = fx.path().join("host.sqlite");
    let mut b = builder("evil-db", "1.0", arch(), rpm::CompressionType::Gzip);
    b.with_symlink(rpm::FileOptions::symlink(
        "/var/lib/rpm/rpmdb.sqlite",
        outside.to_str().unwrap(),
    ))
    .unwrap();
    write(b.build().unwrap(), &fx.path().join("extra"));
    let r = recipe(
        fx.path(),
        "evildb",
        "files = [\"rpms/base-*.rpm\", \"extra/*.rpm\"]\n",
    );
    let e = run(&r, &fx.path().join("home"), Some(&fx.path().join("out"))).unwrap_err();
    assert!(e.contains("rpmdb.sqlite is not a regular file"), "{e}");
    assert!(!outside.exists(), "nothing was written outside the image");
}

#[test]
fn an_obsoleted_package_is_replaced_as_dnf_does() {
    require_root();
    let fx = fixture();
    let mut old = builder("oldname", "1.0", "noarch", rpm::CompressionType::Gzip);
    old.with_file_contents("old\n", rpm::FileOptions::new("/usr/share/oldname/VERSION"))
        .unwrap();
    let mut new = builder("newname", "2.0", "noarch", rpm::CompressionType::Gzip);
    new.with_file_contents("new\n", rpm::FileOptions::new("/usr/share/newname/VERSION"))
        .unwrap()
        .provides(rpm::Dependency::eq("oldname", "2.0"))
        .obsoletes(rpm::Dependency::less("oldname", "2.0"));
    add_to_repo(fx.path(), vec![old.build().unwrap(), new.build().unwrap()]);
    let r = recipe(
        fx.path(),
        "renamed",
        "packages = [\"base\", \"oldname\"]\n\n[[source.rpm.repo]]\nid = \"test\"\nbaseurl = \"repo\"\n",
    );
    let out = fx.path().join("out");
    let b = run(&r, &fx.path().join("home"), Some(&out)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(package_names(&b), ["base-1.0-1", "newname-2.0-1"]);
    assert!(out.join("usr/share/newname/VERSION").exists());
    assert!(!out.join("usr/share/oldname").exists());
}

#[test]
fn weak_deps_installs_recommends_and_is_locked() {
    require_root();
    let fx = fixture();
    let mut app = builder("rec-app", "1.0", "noarch", rpm::CompressionType::Gzip);
    app.with_file_contents("app\n", rpm::FileOptions::new("/usr/share/rec-app/README"))
        .unwrap()
        .recommends(rpm::Dependency::any("rec-extra"));
    let mut extra = builder("rec-extra", "1.0", "noarch", rpm::CompressionType::Gzip);
    extra
        .with_file_contents(
            "extra\n",
            rpm::FileOptions::new("/usr/share/rec-extra/README"),
        )
        .unwrap();
    add_to_repo(
        fx.path(),
        vec![app.build().unwrap(), extra.build().unwrap()],
    );
    let source = |weak: bool| {
        format!(
            "packages = [\"base\", \"rec-app\"]\nweak_deps = {weak}\n\n[[source.rpm.repo]]\nid = \"test\"\nbaseurl = \"repo\"\n"
        )
    };
    let r = recipe(fx.path(), "weak", &source(false));
    let b = run(&r, &fx.path().join("h1"), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(package_names(&b), ["base-1.0-1", "rec-app-1.0-1"]);
    // Turning it on makes the lock outdated until --update...
    let r = recipe(fx.path(), "weak", &source(true));
    let e = run(&r, &fx.path().join("h2"), None).unwrap_err();
    assert!(e.contains("run with --update"), "{e}");
    std::fs::remove_file(fx.path().join("weak.toml.lock")).unwrap();
    // ...and then brings the recommended package in, recorded in the lock.
    let b = run(&r, &fx.path().join("h3"), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        package_names(&b),
        ["base-1.0-1", "rec-app-1.0-1", "rec-extra-1.0-1"]
    );
    let lock = std::fs::read_to_string(fx.path().join("weak.toml.lock")).unwrap();
    assert!(lock.contains("weak_deps = true"), "{lock}");
}
