//! Safe extraction of tar streams into an image root. Every path is
//! resolved inside the root (`openat2` with `RESOLVE_IN_ROOT`), so neither
//! `..` nor symlinks (absolute or relative) can lead outside it; member
//! names containing `..` are refused outright. Existing symlinks to
//! directories are kept (merged /usr), like `tar --keep-directory-symlink`.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

/// Failure while unpacking.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// A member name tries to leave the root.
    #[error("{archive}: member {member:?} escapes the root (contains `..`)")]
    Escape {
        /// The archive (package or file).
        archive: String,
        /// The member name.
        member: String,
    },
    /// Two packages ship the same file.
    #[error("{path} is in both {first} and {second}")]
    Conflict {
        /// The path inside the image.
        path: String,
        /// The package that wrote it first.
        first: String,
        /// The package that tried again.
        second: String,
    },
    /// A system call failed.
    #[error("{archive}: {member}: {message}")]
    Io {
        /// The archive.
        archive: String,
        /// The member name.
        member: String,
        /// What failed.
        message: String,
    },
    /// The tar stream itself is broken.
    #[error("{archive}: corrupt archive: {message}")]
    Corrupt {
        /// The archive.
        archive: String,
        /// Parser message.
        message: String,
    },
}

/// An open image root.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens (and creates) an image root directory.
    pub fn open(path: &Path) -> std::io::Result<Root> {
        std::fs::create_dir_all(path)?;
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The root's host path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a directory inside the root, resolving symlinks inside it.
    pub fn open_dir(&self, rel: &str) -> rustix::io::Result<OwnedFd> {
        let rel = if rel.is_empty() { "." } else { rel };
        rustix::fs::openat2(
            &self.fd,
            rel,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    }

    /// Creates every missing directory of `rel` (mode 0755, root-owned).
    pub fn mkdir_all(&self, rel: &str) -> rustix::io::Result<OwnedFd> {
        match self.open_dir(rel) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
        let mut prefix = String::new();
        for comp in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
            // Each step resolves inside the root, so a symlink cannot escape.
            let parent = self.open_dir(&prefix)?;
            match rustix::fs::mkdirat(&parent, comp, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e),
            }
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
        }
        self.open_dir(&prefix)
    }
}

/// Which paths each package wrote, to detect two packages shipping one file.
#[derive(Debug, Default)]
pub struct Claims {
    files: Mutex<HashMap<String, String>>,
}

impl Claims {
    fn claim(&self, path: &str, owner: &str) -> Result<(), UnpackError> {
        let mut m = self.files.lock().map_err(|_| UnpackError::Corrupt {
            archive: owner.to_string(),
            message: "claims lock poisoned".into(),
        })?;
        if let Some(first) = m.get(path)
            && first != owner
        {
            return Err(UnpackError::Conflict {
                path: path.to_string(),
                first: first.clone(),
                second: owner.to_string(),
            });
        }
        m.insert(path.to_string(), owner.to_string());
        Ok(())
    }
}

/// Metadata of a directory entry, applied again after a parallel unpack so
/// that the result does not depend on which package ran first.
#[derive(Debug, Clone)]
pub struct DirMeta {
    /// Path inside the root, without leading `/`.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: i64,
}

/// What one archive put into the root.
#[derive(Debug, Default)]
pub struct Report {
    /// Every member as dpkg lists it (`/.`, `/usr`, `/usr/bin/x`), in order.
    pub paths: Vec<String>,
    /// Directory members with their metadata.
    pub dirs: Vec<DirMeta>,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Options for one archive.
#[derive(Debug, Default)]
pub struct Options<'a> {
    /// Paths (`/etc/x`) to write as `<path>.dpkg-new`, as dpkg unpacks
    /// conffiles.
    pub conffiles: Option<&'a std::collections::BTreeSet<String>>,
    /// Detect files shipped by two archives.
    pub claims: Option<&'a Claims>,
}

/// Normalises a member name to a root-relative path; `None` for the root.
fn clean(name: &Path, archive: &str) -> Result<Option<String>, UnpackError> {
    let s = name.to_string_lossy();
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(UnpackError::Escape {
                    archive: archive.to_string(),
                    member: s.to_string(),
                });
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        Ok(None)
    } else {
        Ok(Some(parts.join("/")))
    }
}

/// Extracts a tar stream into `root`. `archive` names it in errors and is
/// the owner recorded in `claims`.
pub fn unpack_tar<R: Read>(
    root: &Root,
    reader: R,
    archive: &str,
    opts: &Options<'_>,
) -> Result<Report, UnpackError> {
    let mut ar = tar::Archive::new(reader);
    let mut report = Report::default();
    let corrupt = |e: std::io::Error| UnpackError::Corrupt {
        archive: archive.to_string(),
        message: e.to_string(),
    };
    let mut parent_cache: Option<(String, OwnedFd)> = None;
    for entry in ar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let name = entry.path().map_err(corrupt)?.into_owned();
        let Some(rel) = clean(&name, archive)? else {
            report.paths.push("/.".to_string());
            continue;
        };
        let io = |what: &str, e: Errno| UnpackError::Io {
            archive: archive.to_string(),
            member: rel.clone(),
            message: format!("{what}: {e}"),
        };
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().map_err(corrupt)? & 0o7777;
        let uid = header.uid().map_err(corrupt)? as u32;
        let gid = header.gid().map_err(corrupt)? as u32;
        let mtime = header.mtime().map_err(corrupt)? as i64;
        let (parent, file) = match rel.rsplit_once('/') {
            Some((p, f)) => (p.to_string(), f.to_string()),
            None => (String::new(), rel.clone()),
        };
        let pfd = match &parent_cache {
            Some((p, fd)) if *p == parent => fd
                .try_clone()
                .map_err(|e| io("dup", Errno::from_io_error(&e).unwrap_or(Errno::IO)))?,
            _ => {
                let fd = root.mkdir_all(&parent).map_err(|e| io("open parent", e))?;
                parent_cache = Some((
                    parent.clone(),
                    fd.try_clone()
                        .map_err(|e| io("dup", Errno::from_io_error(&e).unwrap_or(Errno::IO)))?,
                ));
                fd
            }
        };
        let listed = format!("/{rel}");
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            },
            last_modification: Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            },
        };
        match kind {
            tar::EntryType::Directory => {
                match rustix::fs::mkdirat(&pfd, file.as_str(), Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let st = rustix::fs::statat(&pfd, file.as_str(), AtFlags::empty())
                            .map_err(|e| io("stat", e))?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            return Err(io("exists and is not a directory", Errno::NOTDIR));
                        }
                    }
                    Err(e) => return Err(io("mkdir", e)),
                }
                report.dirs.push(DirMeta {
                    path: rel.clone(),
                    mode,
                    uid,
                    gid,
                    mtime,
                });
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let target = match opts.conffiles {
                    Some(c) if c.contains(&listed) => format!("{file}.dpkg-new"),
                    _ => file.clone(),
                };
                if let Some(c) = opts.claims {
                    c.claim(&listed, archive)?;
                }
                let fd = create_excl(&pfd, &target).map_err(|e| io("create", e))?;
                let mut f = std::fs::File::from(fd);
                report.bytes += std::io::copy(&mut entry, &mut f).map_err(|e| UnpackError::Io {
                    archive: archive.to_string(),
                    member: rel.clone(),
                    message: format!("write: {e}"),
                })?;
                rustix::fs::fchown(&f, Some(uid_of(uid)), Some(gid_of(gid)))
                    .map_err(|e| io("chown", e))?;
                rustix::fs::fchmod(&f, Mode::from_raw_mode(mode)).map_err(|e| io("chmod", e))?;
                rustix::fs::futimens(&f, &times).map_err(|e| io("utimens", e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| io("symlink without target", Errno::INVAL))?
                    .into_owned();
                if let Some(c) = opts.claims {
                    c.claim(&listed, archive)?;
                }
                replace(&pfd, &file, |fd, n| rustix::fs::symlinkat(&target, fd, n))
                    .map_err(|e| io("symlink", e))?;
                rustix::fs::chownat(
                    &pfd,
                    file.as_str(),
                    Some(uid_of(uid)),
                    Some(gid_of(gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io("chown", e))?;
                rustix::fs::utimensat(&pfd, file.as_str(), &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io("utimens", e))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| io("hard link without target", Errno::INVAL))?;
                let Some(trel) = clean(&target, archive)? else {
                    return Err(io("hard link to the root", Errno::INVAL));
                };
                let (tp, tf) = match trel.rsplit_once('/') {
                    Some((p, f)) => (p.to_string(), f.to_string()),
                    None => (String::new(), trel.clone()),
                };
                let tfd = root.open_dir(&tp).map_err(|e| io("open link target", e))?;
                if let Some(c) = opts.claims {
                    c.claim(&listed, archive)?;
                }
                replace(&pfd, &file, |fd, n| {
                    rustix::fs::linkat(&tfd, tf.as_str(), fd, n, AtFlags::empty())
                })
                .map_err(|e| io("link", e))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let dev = rustix::fs::makedev(major, minor);
                if let Some(c) = opts.claims {
                    c.claim(&listed, archive)?;
                }
                replace(&pfd, &file, |fd, n| {
                    rustix::fs::mknodat(fd, n, ft, Mode::from_raw_mode(mode), dev)
                })
                .map_err(|e| io("mknod", e))?;
                rustix::fs::chownat(
                    &pfd,
                    file.as_str(),
                    Some(uid_of(uid)),
                    Some(gid_of(gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io("chown", e))?;
                rustix::fs::chmodat(
                    &pfd,
                    file.as_str(),
                    Mode::from_raw_mode(mode),
                    AtFlags::empty(),
                )
                .map_err(|e| io("chmod", e))?;
            }
            // pax/GNU metadata entries are consumed by the tar crate; others
            // (sparse etc.) do not occur in packages.
            other => {
                return Err(UnpackError::Io {
                    archive: archive.to_string(),
                    member: rel.clone(),
                    message: format!("unsupported tar entry type {other:?}"),
                });
            }
        }
        report.paths.push(listed);
    }
    Ok(report)
}

fn uid_of(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}

fn gid_of(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}

/// Creates a new regular file, replacing a non-directory that is in the way.
pub(crate) fn create_excl(dir: &OwnedFd, name: &str) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600)) {
        Err(Errno::EXIST) => {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
            rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))
        }
        r => r,
    }
}

/// Runs `make`, first removing a non-directory entry that is in the way.
pub(crate) fn replace(
    dir: &OwnedFd,
    name: &str,
    make: impl Fn(&OwnedFd, &str) -> rustix::io::Result<()>,
) -> rustix::io::Result<()> {
    match make(dir, name) {
        Err(Errno::EXIST) => {
            rustix::fs::unlinkat(dir.as_fd(), name, AtFlags::empty())?;
            make(dir, name)
        }
        r => r,
    }
}

/// Applies directory metadata recorded during unpacking, in order (later
/// entries win, as the last package dpkg unpacks would). Directories that
/// are symlinks in the root are left alone.
pub fn apply_dir_meta<'a>(
    root: &Root,
    dirs: impl Iterator<Item = &'a DirMeta>,
) -> Result<(), UnpackError> {
    for d in dirs {
        let io = |what: &str, e: Errno| UnpackError::Io {
            archive: "directory metadata".into(),
            member: d.path.clone(),
            message: format!("{what}: {e}"),
        };
        let (parent, file) = match d.path.rsplit_once('/') {
            Some((p, f)) => (p, f),
            None => ("", d.path.as_str()),
        };
        let pfd = root.open_dir(parent).map_err(|e| io("open", e))?;
        let st =
            rustix::fs::statat(&pfd, file, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io("stat", e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            continue;
        }
        let fd = rustix::fs::openat(
            &pfd,
            file,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("open", e))?;
        rustix::fs::fchown(&fd, Some(uid_of(d.uid)), Some(gid_of(d.gid)))
            .map_err(|e| io("chown", e))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(d.mode)).map_err(|e| io("chmod", e))?;
        let t = Timespec {
            tv_sec: d.mtime,
            tv_nsec: 0,
        };
        rustix::fs::futimens(
            &fd,
            &Timestamps {
                last_access: t,
                last_modification: t,
            },
        )
        .map_err(|e| io("utimens", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_mtime(1_000_000);
            h.set_uid(0);
            h.set_gid(0);
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, name, data).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    // Raw name so that `..` members can be built for tests.
                    let bytes = name.as_bytes();
                    h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
                    h.set_cksum();
                    b.append(&h, data.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn unpacks_through_in_root_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(&dir.path().join("r")).unwrap();
        // An absolute symlink: must resolve inside the root, not on the host.
        let t = tar_with(&[
            ("./", tar::EntryType::Directory, ""),
            ("./usr/", tar::EntryType::Directory, ""),
            ("./usr/bin/", tar::EntryType::Directory, ""),
            ("./bin", tar::EntryType::Symlink, "/usr/bin"),
            ("./etc/", tar::EntryType::Directory, ""),
            ("./etc/esc", tar::EntryType::Symlink, "/"),
        ]);
        unpack_tar(&root, &t[..], "a", &Options::default()).unwrap();
        let t2 = tar_with(&[
            ("./bin/", tar::EntryType::Directory, ""),
            ("./bin/sh", tar::EntryType::Regular, "x"),
            ("./etc/esc/tmp/evil", tar::EntryType::Regular, "y"),
            ("./bin/sh2", tar::EntryType::Link, "./bin/sh"),
        ]);
        let conff: std::collections::BTreeSet<String> = ["/bin/sh2".to_string()].into();
        let _ = conff;
        let r = unpack_tar(&root, &t2[..], "b", &Options::default()).unwrap();
        assert_eq!(r.paths[1], "/bin/sh");
        assert!(dir.path().join("r/usr/bin/sh").is_file());
        assert!(dir.path().join("r/bin").is_symlink());
        // The "escape" landed inside the root.
        assert!(dir.path().join("r/tmp/evil").is_file());
        assert!(!Path::new("/tmp/evil").exists());
        assert_eq!(
            std::fs::read(dir.path().join("r/usr/bin/sh2")).unwrap(),
            b"x"
        );
    }

    #[test]
    fn refuses_dotdot() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(&dir.path().join("r")).unwrap();
        let t = tar_with(&[("./a/../../x", tar::EntryType::Regular, "z")]);
        let e = unpack_tar(&root, &t[..], "pkg", &Options::default()).unwrap_err();
        assert!(matches!(e, UnpackError::Escape { .. }), "{e}");
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn conffiles_and_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(&dir.path().join("r")).unwrap();
        let claims = Claims::default();
        let conff: std::collections::BTreeSet<String> = ["/etc/c".to_string()].into();
        let t = tar_with(&[("./etc/c", tar::EntryType::Regular, "c")]);
        let opts = Options {
            conffiles: Some(&conff),
            claims: Some(&claims),
        };
        unpack_tar(&root, &t[..], "a", &opts).unwrap();
        assert!(dir.path().join("r/etc/c.dpkg-new").is_file());
        let e = unpack_tar(&root, &t[..], "b", &opts).unwrap_err();
        assert!(e.to_string().contains("in both a and b"), "{e}");
    }
}
