//! Image roots holding a few of the host's own programs, so that chroot
//! steps and `dpkg --configure` run without downloading anything; and
//! small process and mount checks. Used by the builder's tests and (by
//! path) the CLI's build tests; needs only std.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a host command and panics with its output on failure.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Shared libraries `ldd` lists for `bin` (absolute paths).
fn libs_of(bin: &Path) -> Vec<PathBuf> {
    let out = sh(Command::new("ldd").arg(bin));
    out.split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

/// Copies host programs (found in /usr/bin or /usr/sbin) and the shared
/// libraries they need into `root`, in the merged-/usr layout Debian uses
/// (`/bin`, `/sbin`, `/lib`, `/lib64` are symlinks into `/usr`).
pub fn host_tools(root: &Path, programs: &[&str]) {
    for d in ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        if std::fs::symlink_metadata(root.join(link)).is_err() {
            std::os::unix::fs::symlink(target, root.join(link)).unwrap();
        }
    }
    let mut libs = BTreeSet::new();
    for p in programs {
        let src = ["/usr/bin", "/usr/sbin"]
            .iter()
            .map(|d| Path::new(d).join(p))
            .find(|c| c.exists())
            .unwrap_or_else(|| panic!("host program {p} not found in /usr/bin or /usr/sbin"));
        let rel = src.strip_prefix("/").unwrap();
        std::fs::copy(&src, root.join(rel)).unwrap();
        libs.extend(libs_of(&src));
    }
    for lib in libs {
        let real = std::fs::canonicalize(&lib).unwrap();
        // /lib64/ld-linux… and /lib/x86_64-linux-gnu/… land under /usr.
        let rel = lib.strip_prefix("/").unwrap();
        let rel = if rel.starts_with("usr") {
            rel.to_path_buf()
        } else {
            Path::new("usr").join(rel)
        };
        let dest = root.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&real, &dest).unwrap();
    }
}

/// The host programs `dpkg --configure` insists on finding in PATH, plus
/// the shell and `dpkg-divert` for maintainer scripts.
pub const DPKG_TOOLS: &[&str] = &[
    "sh",
    "dash",
    "dpkg",
    "dpkg-deb",
    "dpkg-divert",
    "dpkg-query",
    "dpkg-trigger",
    "rm",
    "tar",
    "diff",
    "ldconfig",
    "start-stop-daemon",
    "cat",
];

/// Entries of /proc/self/mountinfo whose mount point is under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let d = dir.to_string_lossy().into_owned();
    info.lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&d)))
        .map(str::to_string)
        .collect()
}

/// Processes whose root directory (`/proc/PID/root`) is under `dir`:
/// commands still running in an image being built there.
pub fn processes_rooted_under(dir: &Path) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(root) = std::fs::read_link(e.path().join("root")) else {
            continue;
        };
        if root.starts_with(dir) {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            out.push((pid, cmd.trim().to_string()));
        }
    }
    out
}
