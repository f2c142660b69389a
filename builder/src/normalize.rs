//! Reproducibility clean-up (DESIGN.md): remove run-specific state (logs,
//! apt/dpkg caches and `-old` files, machine-id, SSH host keys, random
//! seeds, /run and /tmp leftovers) and clamp every timestamp to
//! SOURCE_DATE_EPOCH.

use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Timespec, Timestamps};

/// Normalisation failure.
#[derive(Debug, thiserror::Error)]
#[error("normalising {path}: {source}")]
pub struct NormalizeError {
    /// The path.
    pub path: PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

/// Files removed when present (as mmdebstrap does, plus host keys etc.).
const REMOVE_FILES: &[&str] = &[
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/log/bootstrap.log",
    "var/log/apt/history.log",
    "var/log/apt/term.log",
    "var/log/apt/eipp.log.xz",
    "var/cache/ldconfig/aux-cache",
    "var/lib/dbus/machine-id",
    "var/lib/systemd/random-seed",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/available-old",
    "var/lib/dpkg/diversions-old",
    "var/lib/dpkg/statoverride-old",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/cache/debconf/passwords.dat-old",
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
];

/// Directories whose contents are removed (the directory itself stays).
const EMPTY_DIRS: &[&str] = &[
    "tmp",
    "var/tmp",
    "var/cache/apt/archives/partial",
    "var/lib/apt/lists/partial",
    "var/cache/man",
];

fn err(path: &Path) -> impl Fn(std::io::Error) -> NormalizeError + '_ {
    move |source| NormalizeError {
        path: path.to_path_buf(),
        source,
    }
}

fn remove_any(p: &Path) -> Result<(), NormalizeError> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).map_err(err(p)),
        Ok(_) => std::fs::remove_file(p).map_err(err(p)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(p)(e)),
    }
}

/// Removes run-specific state from an image root.
pub fn clean(root: &Path) -> Result<(), NormalizeError> {
    for f in REMOVE_FILES {
        remove_any(&root.join(f))?;
    }
    for d in EMPTY_DIRS {
        let dir = root.join(d);
        if dir.is_symlink() || !dir.is_dir() {
            continue;
        }
        for e in std::fs::read_dir(&dir).map_err(err(&dir))? {
            let e = e.map_err(err(&dir))?;
            remove_any(&e.path())?;
        }
    }
    // apt lists (downloaded indexes), keeping the lock and partial/.
    let lists = root.join("var/lib/apt/lists");
    if lists.is_dir() && !lists.is_symlink() {
        for e in std::fs::read_dir(&lists).map_err(err(&lists))? {
            let e = e.map_err(err(&lists))?;
            let n = e.file_name();
            if n != "partial" && n != "lock" {
                remove_any(&e.path())?;
            }
        }
    }
    // /run leftovers, keeping /run/lock (/var/lock points there).
    let run = root.join("run");
    if run.is_dir() && !run.is_symlink() {
        for e in std::fs::read_dir(&run).map_err(err(&run))? {
            let e = e.map_err(err(&run))?;
            if e.file_name() != "lock" {
                remove_any(&e.path())?;
            }
        }
    }
    // SSH host keys: made per site or per node, never baked into an image.
    let ssh = root.join("etc/ssh");
    if ssh.is_dir() && !ssh.is_symlink() {
        for e in std::fs::read_dir(&ssh).map_err(err(&ssh))? {
            let e = e.map_err(err(&ssh))?;
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                remove_any(&e.path())?;
            }
        }
    }
    // An empty machine-id: generated at first boot (machine-id(5)).
    let mid = root.join("etc/machine-id");
    if mid.exists() || mid.is_symlink() {
        remove_any(&mid)?;
        std::fs::write(&mid, b"").map_err(err(&mid))?;
    }
    Ok(())
}

/// Sets every timestamp newer than `epoch`, or made at or after
/// `build_started` (the clock may be behind the archive's date), to
/// `epoch`. Symlinks included, never followed.
pub fn clamp_mtimes(root: &Path, epoch: i64, build_started: i64) -> Result<(), NormalizeError> {
    use std::os::unix::fs::MetadataExt;
    let target = |m: &std::fs::Metadata| {
        if m.mtime() > epoch || m.mtime() >= build_started {
            epoch
        } else {
            m.mtime()
        }
    };
    let set = |p: &Path, t: i64| {
        let ts = Timespec {
            tv_sec: t,
            tv_nsec: 0,
        };
        let ts = Timestamps {
            last_access: ts,
            last_modification: ts,
        };
        rustix::fs::utimensat(rustix::fs::CWD, p, &ts, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| err(p)(e.into()))
    };
    let mut stack = vec![root.to_path_buf()];
    let mut dirs = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).map_err(err(&dir))? {
            let e = e.map_err(err(&dir))?;
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).map_err(err(&p))?;
            if m.is_dir() {
                stack.push(p.clone());
                dirs.push((p, target(&m)));
                continue;
            }
            let t = target(&m);
            if t != m.mtime() || m.mtime_nsec() != 0 || m.atime() != t || m.atime_nsec() != 0 {
                set(&p, t)?;
            }
        }
    }
    // Directories last: changing entries above touched their mtimes.
    let rm = std::fs::symlink_metadata(root).map_err(err(root))?;
    dirs.push((root.to_path_buf(), target(&rm)));
    for (p, t) in dirs {
        set(&p, t)?;
    }
    Ok(())
}
