//! Registering the installed RPMs in the image's rpm database, so that
//! `rpm -qa`, `rpm -V` and dnf inside the image know what is installed.
//!
//! The database is always written by rpm itself, never by hand: its format
//! (sqlite, ndb or Berkeley DB) is whatever the rpm that reads it expects.
//! The image's own rpm runs in the chroot when the image has one; otherwise
//! the build machine's rpm writes into the image with `--root`, as
//! `dnf --installroot` bootstraps an image, in the sqlite format of current
//! RPM distributions. Either way `--justdb` records the headers without
//! touching the files (already in place) and `--noscripts` (they already
//! ran). rpm 4.18 and later take the install time and transaction id from
//! `SOURCE_DATE_EPOCH`, which keeps the database reproducible; what rpm
//! leaves beside it is not (the sqlite WAL index holds random salts, a
//! Berkeley DB environment holds addresses), so the database is then
//! settled: a sqlite database is switched out of WAL mode (`PRAGMA
//! journal_mode=DELETE`, as rpm's maintainers suggest for images: rpm,
//! and unprivileged users, still read it, and rpm's next write switches
//! WAL back on) and the environment files are removed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::chroot::{Chroot, ChrootError};
use crate::unpack::{Root, create_excl};

use super::install::RpmFile;

/// Where the build machine's rpm puts the database (rpm's historical
/// default; the image's own rpm uses its own, e.g. /usr/lib/sysimage/rpm).
const DBPATH: &str = "/var/lib/rpm";
/// Install the headers only (the files are in place), without
/// dependency checks, scripts or triggers (already done), signatures
/// (the files were checked against their sha256) or disk space checks.
const JUSTDB: [&str; 7] = [
    "-i",
    "--justdb",
    "--nodeps",
    "--noscripts",
    "--notriggers",
    "--nosignature",
    "--ignoresize",
];
/// Directory in the image the package files are placed in for the
/// image's rpm to read.
const STAGING: &str = "var/tmp/vnfs-rpmdb";

/// Which rpm wrote the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// The image's rpm, in the chroot (its `rpm --version`).
    Image(String),
    /// The build machine's rpm, with `--root` (its `rpm --version`).
    Host(String),
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Writer::Image(v) => write!(f, "the image's rpm ({v})"),
            Writer::Host(v) => write!(f, "the build machine's rpm ({v}), sqlite format"),
        }
    }
}

/// Registering failed.
#[derive(Debug, thiserror::Error)]
pub enum RpmDbError {
    /// Neither the image nor the build machine has rpm.
    #[error(
        "cannot write the image's rpm database (/var/lib/rpm): the image has no rpm and neither has this machine; install rpm here (Debian package rpm) or add rpm to the image's packages"
    )]
    NoRpm,
    /// Placing the package files into the image failed.
    #[error("staging {file} in the image for rpm: {message}")]
    Staging {
        /// The package file.
        file: PathBuf,
        /// What failed.
        message: String,
    },
    /// The image's rpm failed.
    #[error("registering the packages with the image's rpm: {0}")]
    Image(#[source] ChrootError),
    /// The build machine's rpm failed.
    #[error("registering the packages with this machine's rpm (rpm --root {root}): {message}")]
    Host {
        /// The image root.
        root: PathBuf,
        /// The status and rpm's output.
        message: String,
    },
    /// Settling the database for a reproducible image failed.
    #[error("settling the rpm database {dbpath} in the image: {message}")]
    Settle {
        /// The database directory in the image.
        dbpath: String,
        /// What failed.
        message: String,
    },
}

/// Records `files` (already unpacked, scriptlets run) in the image's rpm
/// database. `files` are given in install order.
pub fn register(
    root: &Root,
    chroot: &Chroot,
    files: &[RpmFile],
    source_date_epoch: i64,
    scratch: &Path,
) -> Result<Writer, RpmDbError> {
    let sde = source_date_epoch.to_string();
    match chroot.run(
        "rpm --version",
        &["rpm", "--version"],
        &[("SOURCE_DATE_EPOCH", &sde)],
        None,
        false,
    ) {
        Ok(version) => {
            let version = version.trim().to_string();
            register_in_image(root, chroot, files, &sde)?;
            let said = chroot
                .run(
                    "rpm --eval %{_dbpath}",
                    &["rpm", "--eval", "%{_dbpath}"],
                    &[],
                    None,
                    false,
                )
                .map_err(RpmDbError::Image)?;
            // Warnings share the output: the answer is its last line.
            let dbpath = said
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .filter(|l| l.starts_with('/'))
                .ok_or_else(|| RpmDbError::Settle {
                    dbpath: "%{_dbpath}".into(),
                    message: format!("the image's rpm --eval gave no path: {said}"),
                })?;
            settle(root, dbpath)?;
            return Ok(Writer::Image(version));
        }
        Err(ChrootError::Spawn { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
        }
        // An rpm that cannot even print its version (missing libraries
        // halfway through an install): the host's can still do the job.
        Err(e) => tracing::warn!("the image's rpm does not run ({e}); using this machine's"),
    }
    register_from_host(root.path(), files, &sde, scratch)
}

/// Copies the package files into the image (checked against their hashes), runs the image's
/// rpm on them, and removes them again whatever happened.
fn register_in_image(
    root: &Root,
    chroot: &Chroot,
    files: &[RpmFile],
    sde: &str,
) -> Result<(), RpmDbError> {
    let staging_err = |file: &Path, message: String| RpmDbError::Staging {
        file: file.to_path_buf(),
        message,
    };
    let dir = root
        .mkdir_all(STAGING)
        .map_err(|e| staging_err(Path::new(STAGING), e.to_string()))?;
    let mut names = Vec::with_capacity(files.len());
    let result = (|| {
        for (i, f) in files.iter().enumerate() {
            // Numbered: two files may share a base name (local globs).
            let name = format!("{i:04}-{}.rpm", f.name);
            // Named first, so that a half-copied file is removed too.
            names.push(name.clone());
            stage(&dir, &f.path, &name, &f.sha256, false).map_err(|m| staging_err(&f.path, m))?;
        }
        let paths: Vec<String> = names.iter().map(|n| format!("/{STAGING}/{n}")).collect();
        let mut argv = vec!["rpm"];
        argv.extend(JUSTDB);
        argv.extend(paths.iter().map(String::as_str));
        chroot
            .run(
                "rpm --justdb (the image's rpm database)",
                &argv,
                &[("SOURCE_DATE_EPOCH", sde)],
                None,
                false,
            )
            .map(|_| ())
            .map_err(RpmDbError::Image)
    })();
    for n in &names {
        let _ = rustix::fs::unlinkat(&dir, n.as_str(), rustix::fs::AtFlags::empty());
    }
    drop(dir);
    if let Ok(parent) = root.open_dir("var/tmp") {
        let _ = rustix::fs::unlinkat(&parent, "vnfs-rpmdb", rustix::fs::AtFlags::REMOVEDIR);
    }
    result
}

/// Puts `src` into `dir` as `name` and checks that it is still the file
/// the build verified (its sha256, over which its signature was checked
/// before unpacking): rpm reads this one, so a package file replaced since
/// cannot put another header into the database. A hard link only with
/// `link_ok`: rpm in the image runs image code as root and must not reach
/// the package cache.
fn stage(
    dir: &rustix::fd::OwnedFd,
    src: &Path,
    name: &str,
    sha256: &str,
    link_ok: bool,
) -> Result<(), String> {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Write};
    let linked = link_ok
        && rustix::fs::linkat(
            rustix::fs::CWD,
            src,
            dir,
            name,
            rustix::fs::AtFlags::empty(),
        )
        .is_ok();
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut from, mut to) = if linked {
        let fd = rustix::fs::openat(
            dir,
            name,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| e.to_string())?;
        (std::fs::File::from(fd), None)
    } else {
        let from = std::fs::File::open(src).map_err(|e| e.to_string())?;
        let fd = create_excl(dir, name).map_err(|e| e.to_string())?;
        (from, Some(std::fs::File::from(fd)))
    };
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        hash.update(&buf[..n]);
        if let Some(to) = &mut to {
            to.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        }
    }
    let actual = hex::encode(hash.finalize());
    if actual != sha256 {
        return Err(format!(
            "changed since it was verified and unpacked (sha256 {actual}, expected {sha256})"
        ));
    }
    Ok(())
}

/// Runs the build machine's rpm with `--root`.
fn register_from_host(
    root: &Path,
    files: &[RpmFile],
    sde: &str,
    scratch: &Path,
) -> Result<Writer, RpmDbError> {
    let version = match Command::new("rpm").arg("--version").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(_) | Err(_) => return Err(RpmDbError::NoRpm),
    };
    let host_err = |message: String| RpmDbError::Host {
        root: root.to_path_buf(),
        message,
    };
    // rpm --root resolves the database path on this machine: every
    // component must be a real directory of the image, or the write could
    // land outside it.
    let mut at = root.to_path_buf();
    for comp in DBPATH.trim_start_matches('/').split('/') {
        at.push(comp);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(host_err(format!(
                    "{} is not a directory (a symlink?); refusing to let this machine's rpm follow it",
                    at.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&at).map_err(|e| host_err(format!("{}: {e}", at.display())))?;
            }
            Err(e) => return Err(host_err(format!("{}: {e}", at.display()))),
        }
    }
    let image = Root::open(root).map_err(|e| host_err(e.to_string()))?;
    let dir = image
        .open_dir(DBPATH.trim_start_matches('/'))
        .map_err(|e| host_err(format!("{DBPATH}: {e}")))?;
    plain_db_files(&dir).map_err(|m| host_err(format!("{DBPATH}/{m}")))?;
    // rpm reads private copies (hard links where the file system allows:
    // this machine's rpm runs no image code), checked against the
    // verified hashes.
    let private = tempfile::Builder::new()
        .prefix("rpmdb-")
        .tempdir_in(scratch)
        .map_err(|e| host_err(format!("temporary directory in {}: {e}", scratch.display())))?;
    let private_fd = rustix::fs::open(
        private.path(),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| host_err(format!("{}: {e}", private.path().display())))?;
    let mut copies = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let name = format!("{i:04}-{}.rpm", f.name);
        stage(&private_fd, &f.path, &name, &f.sha256, true).map_err(|message| {
            RpmDbError::Staging {
                file: f.path.clone(),
                message,
            }
        })?;
        copies.push(private.path().join(name));
    }
    let out = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args([
            "--dbpath",
            DBPATH,
            // Debian's rpm would otherwise pick its own default format.
            "--define",
            "_db_backend sqlite",
            "--ignorearch",
            "--ignoreos",
        ])
        .args(JUSTDB)
        .args(&copies)
        .env("SOURCE_DATE_EPOCH", sde)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| host_err(e.to_string()))?;
    if !out.status.success() {
        return Err(host_err(format!(
            "{}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    settle(&image, DBPATH)?;
    Ok(Writer::Host(version))
}

/// Checks that the sqlite database files in `dir`, where present, are
/// plain files: rpm and sqlite3 open them by name, and a symlink shipped
/// by a package could lead them out of the image. Returns whether the
/// database itself is there.
fn plain_db_files(dir: &rustix::fd::OwnedFd) -> Result<bool, String> {
    use rustix::fs::{AtFlags, FileType};
    let mut db = false;
    for name in [
        "rpmdb.sqlite",
        "rpmdb.sqlite-wal",
        "rpmdb.sqlite-shm",
        "rpmdb.sqlite-journal",
    ] {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let t = FileType::from_raw_mode(st.st_mode);
                if t != FileType::RegularFile {
                    return Err(format!("{name} is not a regular file ({t:?})"));
                }
                db |= name == "rpmdb.sqlite";
            }
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(format!("{name}: {e}")),
        }
    }
    Ok(db)
}

/// Leaves the database at `dbpath` (in the image) in a reproducible state:
/// sqlite out of WAL mode, Berkeley DB environment files removed.
fn settle(root: &Root, dbpath: &str) -> Result<(), RpmDbError> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let err = |message: String| RpmDbError::Settle {
        dbpath: dbpath.to_string(),
        message,
    };
    let rel = dbpath.trim_start_matches('/');
    // Resolved inside the image: a symlinked /var/lib/rpm (as on Fedora)
    // is followed there, never onto the build machine.
    let dir = root.open_dir(rel).map_err(|e| {
        err(format!(
            "rpm has just written its database here, but it cannot be opened: {e}"
        ))
    })?;
    if plain_db_files(&dir).map_err(err)? {
        let raw = rustix::fd::AsRawFd::as_raw_fd(&dir);
        let mut cmd = Command::new("sqlite3");
        // No ~/.sqliterc, plain output: the answer is checked below.
        cmd.args(["-batch", "-init", "/dev/null", "-list", "-noheader"])
            .arg("rpmdb.sqlite")
            .arg("PRAGMA journal_mode=DELETE;");
        // SAFETY: fchdir is async-signal-safe; the descriptor stays open
        // in the child until exec (and closes there: CLOEXEC). Working in
        // the directory itself avoids naming it through /proc.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                let fd = rustix::fd::BorrowedFd::borrow_raw(raw);
                rustix::process::fchdir(fd).map_err(std::io::Error::from)
            });
        }
        let out = cmd.output().map_err(|e| {
            err(format!(
                "running sqlite3: {e} (install the Debian package sqlite3)"
            ))
        })?;
        let said = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || said.trim() != "delete" {
            return Err(err(format!(
                "sqlite3 PRAGMA journal_mode=DELETE: {}\n{said}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    let listing = rustix::fs::openat(
        &dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(e.to_string()))?;
    let mut stale = Vec::new();
    for e in rustix::fs::Dir::read_from(&listing).map_err(|e| err(e.to_string()))? {
        let e = e.map_err(|e| err(e.to_string()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        // The WAL and its index are gone after the switch when the
        // database was checkpointed; whatever is left is stale, as are a
        // Berkeley DB environment's region files.
        if name.starts_with("__db.")
            || name == ".dbenv.lock"
            || name == "rpmdb.sqlite-shm"
            || name == "rpmdb.sqlite-wal"
        {
            stale.push(name);
        }
    }
    for name in stale {
        rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty())
            .map_err(|e| err(format!("removing {name}: {e}")))?;
    }
    Ok(())
}
