//! Helpers: running commands, the `vnfs` binary with a private home, a
//! small root built from the host's binaries, test packages.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs a command; panics with its output unless it succeeds.
pub fn run(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail; returns its output.
pub fn fails(c: &mut Command) -> Output {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        !out.status.success(),
        "{c:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// A scratch vnfs home, with root and /dev/fuse checked first.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: mount tests cannot run"
        );
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "mount tests must run as root"
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        Env { tmp, home }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// `vnfs --home HOME ARGS...`
    pub fn vnfs(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vnfs"));
        c.arg("--home")
            .arg(&self.home)
            .args(args)
            .env_remove("VNFS_CONFIG");
        c
    }

    /// `vnfs ARGS... PATH`, which must succeed.
    pub fn ok(&self, args: &[&str], path: Option<&Path>) -> String {
        let mut c = self.vnfs(args);
        if let Some(p) = path {
            c.arg(p);
        }
        run(&mut c)
    }

    /// Commits `dir` as image `name`.
    pub fn commit(&self, name: &str, dir: &Path) {
        self.ok(&["commit", "-n", name, "-m", "base"], Some(dir));
    }

    /// The server pid `vnfs mounts --json` records for `name`.
    pub fn server_pid(&self, name: &str) -> u32 {
        let out = self.ok(&["--json", "mounts"], None);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).expect("mounts json");
        rows.iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["pid"].as_u64())
            .unwrap_or_else(|| panic!("no mount of {name}: {out}")) as u32
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // A failed test may leave mounts behind: detach whatever is still
        // mounted under the scratch directory.
        let tmp = self.tmp.path().to_path_buf();
        if let Ok(info) = fs::read_to_string("/proc/self/mountinfo") {
            for mp in info.lines().filter_map(|l| l.split(' ').nth(4)) {
                if Path::new(mp).starts_with(&tmp) {
                    let _ = Command::new("umount").arg("-l").arg(mp).status();
                }
            }
        }
    }
}

/// Copies host binaries, the libraries they load and `extra` host paths
/// (files or directories) into `root`, laid out as a merged-/usr Debian
/// root, with the directories dpkg and apt expect.
pub fn minimal_root(root: &Path, binaries: &[&str], extra: &[&str]) {
    fs::create_dir_all(root.join("usr/lib")).expect("mkdir");
    for d in ["bin", "sbin", "lib", "lib64"] {
        fs::create_dir_all(root.join("usr").join(d)).expect("mkdir");
        symlink(format!("usr/{d}"), root.join(d)).expect("symlink");
    }
    let mut files: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    for b in binaries {
        let p = run(Command::new("sh").arg("-c").arg(format!("command -v {b}")));
        let p = p.trim().to_string();
        assert!(p.starts_with('/'), "{b} is not installed on the host");
        files.push(p.clone());
        let ldd = Command::new("ldd").arg(&p).output().expect("ldd");
        for w in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
            if w.starts_with('/') {
                files.push(w.to_string());
            }
        }
    }
    for f in files {
        copy_in(Path::new(&f), &root.join(f.trim_start_matches('/')));
    }
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/log/apt",
        "etc/apt/apt.conf.d",
        "etc/apt/preferences.d",
        "etc/apt/sources.list.d",
        "tmp",
        "root",
        "home",
        "etc/skel",
    ] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    fs::write(root.join("var/lib/dpkg/status"), "").expect("status");
}

fn copy_in(src: &Path, dst: &Path) {
    let md = fs::metadata(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    if md.is_dir() {
        for e in fs::read_dir(src).expect("read_dir") {
            let e = e.expect("entry");
            copy_in(&e.path(), &dst.join(e.file_name()));
        }
        return;
    }
    // ldd names libraries by their /lib path; the symlinks made above put
    // them under usr/, as in the host.
    fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
    if !dst.exists() {
        fs::copy(src, dst).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    }
}

/// Builds `NAME_1.0_all.deb` in `out` with one file, /usr/share/NAME/README,
/// depending on `depends` when given.
pub fn build_deb(out: &Path, name: &str, depends: Option<&str>) -> PathBuf {
    let pkg = out.join(format!("pkg-{name}"));
    fs::create_dir_all(pkg.join("DEBIAN")).expect("mkdir");
    fs::create_dir_all(pkg.join(format!("usr/share/{name}"))).expect("mkdir");
    let dep = depends.map_or(String::new(), |d| format!("Depends: {d}\n"));
    fs::write(
        pkg.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: vnfs <t@example.org>\n{dep}Description: test package\n"
        ),
    )
    .expect("control");
    fs::write(
        pkg.join(format!("usr/share/{name}/README")),
        format!("{name}\n"),
    )
    .expect("file");
    let deb = out.join(format!("{name}_1.0_all.deb"));
    run(Command::new("dpkg-deb")
        .args(["-Zgzip", "--root-owner-group", "--build"])
        .arg(&pkg)
        .arg(&deb));
    deb
}
