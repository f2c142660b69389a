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
            let dbpath = chroot
                .run(
                    "rpm --eval %{_dbpath}",
                    &["rpm", "--eval", "%{_dbpath}"],
                    &[],
                    None,
                    false,
                )
                .map_err(RpmDbError::Image)?;
            settle(root, dbpath.trim())?;
            return Ok(Writer::Image(version));
        }
        Err(ChrootError::Spawn { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
        }
        // An rpm that cannot even print its version (missing libraries
        // halfway through an install): the host's can still do the job.
        Err(e) => tracing::warn!("the image's rpm does not run ({e}); using this machine's"),
    }
    register_from_host(root.path(), files, &sde)
}

/// Links (or copies) the package files into the image, runs the image's
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
            stage(&dir, &f.path, &name).map_err(|m| staging_err(&f.path, m))?;
            names.push(name);
        }
        let paths: Vec<String> = names.iter().map(|n| format!("/{STAGING}/{n}")).collect();
        let mut argv = vec![
            "rpm",
            "-i",
            "--justdb",
            "--nodeps",
            "--noscripts",
            "--notriggers",
            "--nosignature",
            "--ignoresize",
        ];
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

/// Hard-links `src` into `dir` as `name`, or copies it when that fails
/// (another file system).
fn stage(dir: &rustix::fd::OwnedFd, src: &Path, name: &str) -> Result<(), String> {
    if rustix::fs::linkat(
        rustix::fs::CWD,
        src,
        dir,
        name,
        rustix::fs::AtFlags::empty(),
    )
    .is_ok()
    {
        return Ok(());
    }
    let mut from = std::fs::File::open(src).map_err(|e| e.to_string())?;
    let fd = create_excl(dir, name).map_err(|e| e.to_string())?;
    let mut to = std::fs::File::from(fd);
    std::io::copy(&mut from, &mut to).map_err(|e| e.to_string())?;
    Ok(())
}

/// Runs the build machine's rpm with `--root`.
fn register_from_host(root: &Path, files: &[RpmFile], sde: &str) -> Result<Writer, RpmDbError> {
    let version = match Command::new("rpm").arg("--version").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(_) | Err(_) => return Err(RpmDbError::NoRpm),
    };
    let host_err = |message: String| RpmDbError::Host {
        root: root.to_path_buf(),
        message,
    };
    let out = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args([
            "--dbpath",
            DBPATH,
            // Debian's rpm would otherwise pick its own default format.
            "--define",
            "_db_backend sqlite",
            "-i",
            "--justdb",
            "--nodeps",
            "--noscripts",
            "--notriggers",
            "--nosignature",
            "--ignoresize",
            "--ignorearch",
            "--ignoreos",
        ])
        .args(files.iter().map(|f| &f.path))
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
    let root = Root::open(root).map_err(|e| host_err(e.to_string()))?;
    settle(&root, DBPATH)?;
    Ok(Writer::Host(version))
}

/// Leaves the database at `dbpath` (in the image) in a reproducible state:
/// sqlite out of WAL mode, Berkeley DB environment files removed.
fn settle(root: &Root, dbpath: &str) -> Result<(), RpmDbError> {
    let err = |message: String| RpmDbError::Settle {
        dbpath: dbpath.to_string(),
        message,
    };
    let rel = dbpath.trim_start_matches('/');
    // Resolved inside the image: a symlinked /var/lib/rpm (as on Fedora)
    // is followed there, never onto the build machine.
    let dir = match root.open_dir(rel) {
        Ok(d) => d,
        // rpm wrote nothing there (a database elsewhere, or none): nothing
        // to settle.
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(err(e.to_string())),
    };
    // The host sees the directory through this process's descriptor.
    let host_dir = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        rustix::fd::AsRawFd::as_raw_fd(&dir)
    ));
    let db = host_dir.join("rpmdb.sqlite");
    if db.exists() {
        let out = Command::new("sqlite3")
            .arg(&db)
            .arg("PRAGMA journal_mode=DELETE;")
            .output()
            .map_err(|e| {
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
    let entries = std::fs::read_dir(&host_dir).map_err(|e| err(e.to_string()))?;
    for e in entries {
        let name = e.map_err(|e| err(e.to_string()))?.file_name();
        let name = name.to_string_lossy();
        // The WAL and its index are gone after the switch when the
        // database was checkpointed; whatever is left is stale, as are a
        // Berkeley DB environment's region files.
        if name.starts_with("__db.")
            || name == ".dbenv.lock"
            || name == "rpmdb.sqlite-shm"
            || name == "rpmdb.sqlite-wal"
        {
            rustix::fs::unlinkat(&dir, name.as_ref(), rustix::fs::AtFlags::empty())
                .map_err(|e| err(format!("removing {name}: {e}")))?;
        }
    }
    Ok(())
}
