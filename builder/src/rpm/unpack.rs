//! Unpacking one RPM's payload into an image root. Paths resolve inside
//! the root (`openat2(RESOLVE_IN_ROOT)` through [`Root`]) and names with
//! `..` are refused. Files are created root-owned with the header's mode
//! and mtime; owners (names) and file capabilities are applied later by
//! [`apply_owners`], once the image's passwd and group files exist.

use std::collections::HashMap;
use std::io::{BufReader, Cursor, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ::rpm::{FileFlags, FileType, IndexTag, PackageReader};
use rustix::fs::{AtFlags, FileType as FsType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::caps;
use super::pkgfile::{self, Rehash};
use super::signature::{GpgCheck, GpgCheckError, PackageSigError};
use super::users::Ids;
use crate::unpack::{DirMeta, Root, create_excl, replace};

/// Failure while unpacking an RPM.
#[derive(Debug, thiserror::Error)]
pub enum RpmUnpackError {
    /// Reading the package file failed.
    #[error("{path}: {source}")]
    Io {
        /// The package file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The cached or local file no longer has the locked hash.
    #[error("{path}: sha256 {actual} does not match {expected} for package {name}")]
    Hash {
        /// The package.
        name: String,
        /// The file.
        path: PathBuf,
        /// The locked hash.
        expected: String,
        /// The hash of the file.
        actual: String,
    },
    /// The package fails its signature check.
    #[error(transparent)]
    Signature(#[from] PackageSigError),
    /// The RPM cannot be read.
    #[error("package {name} ({path}): {message}")]
    Corrupt {
        /// The package.
        name: String,
        /// The file.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
    /// A payload member would land outside the root.
    #[error(
        "package {name}: member {member:?} escapes the root (contains `..` or is not absolute)"
    )]
    Escape {
        /// The package.
        name: String,
        /// The member path.
        member: String,
    },
    /// A system call on a member failed.
    #[error("package {name}: {member}: {message}")]
    Member {
        /// The package.
        name: String,
        /// The member path.
        member: String,
        /// What failed.
        message: String,
    },
    /// Two packages ship different content at one path.
    #[error("{path} is in both {first} and {second} with different content")]
    Conflict {
        /// The path.
        path: String,
        /// The package that claimed it first.
        first: String,
        /// The other package.
        second: String,
    },
}

/// Owner names, mode and capabilities of an entry, applied after unpacking.
#[derive(Debug, Clone)]
pub struct Ownership {
    /// Path inside the root, without leading `/`.
    pub path: String,
    /// User name from the header.
    pub user: String,
    /// Group name from the header.
    pub group: String,
    /// Permission bits (re-applied: chown clears setuid/setgid).
    pub mode: u32,
    /// Capability text, when the header has one.
    pub caps: Option<String>,
    /// Whether the entry is a symlink (no chmod, no xattr).
    pub symlink: bool,
}

/// A scriptlet from the header.
#[derive(Debug, Clone)]
pub struct Script {
    /// Interpreter and its arguments (`/bin/sh`, `<lua>`).
    pub program: Vec<String>,
    /// The script text.
    pub body: String,
}

/// An install trigger from the header: a package trigger, whose
/// conditions are package names with optional ranges, or a file trigger,
/// whose conditions are path prefixes.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// What fires it.
    pub conditions: Vec<super::version::Dep>,
    /// File triggers run in decreasing priority (rpm's `-P`, default
    /// 1000000); 0 for package triggers.
    pub priority: u32,
    /// The script.
    pub script: Script,
}

/// rpm's default file trigger priority.
const DEFAULT_TRIGGER_PRIORITY: u32 = 1_000_000;

/// The install (`TRIGGERIN`) entries of one kind of trigger; `priorities`
/// is the kind's priority tag (file triggers) or `None`. A table the
/// header cannot give, and conditions whose range cannot be read, are
/// reported in `not_run` (a condition read wrongly must not fire).
fn install_triggers(
    m: &::rpm::PackageMetadata,
    what: &str,
    all: Result<Vec<::rpm::Trigger>, ::rpm::Error>,
    priorities: Option<IndexTag>,
    not_run: &mut Vec<String>,
) -> Vec<Trigger> {
    let all = match all {
        Ok(all) => all,
        Err(e) => {
            not_run.push(format!("{what} (unreadable in the header: {e})"));
            return Vec::new();
        }
    };
    let prio = priorities
        .and_then(|t| m.header.get_entry_data_as_u32_array(t).ok())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, t) in all.into_iter().enumerate() {
        let mut conditions = Vec::new();
        for c in &t.conditions {
            if !c.flags.contains(::rpm::DependencyFlags::TRIGGERIN) {
                continue;
            }
            let range = if c.version.is_empty() {
                None
            } else {
                match (
                    super::version::Op::from_sense(c.flags.bits()),
                    super::version::Evr::parse(&c.version),
                ) {
                    (Some(op), Ok(evr)) => Some((op, evr)),
                    _ => {
                        not_run.push(format!(
                            "{what} -- {} {} (unreadable range)",
                            c.name, c.version
                        ));
                        continue;
                    }
                }
            };
            conditions.push(super::version::Dep {
                name: c.name.clone(),
                range,
            });
        }
        if conditions.is_empty() {
            continue;
        }
        out.push(Trigger {
            conditions,
            priority: match priorities {
                Some(_) => prio.get(i).copied().unwrap_or(DEFAULT_TRIGGER_PRIORITY),
                None => 0,
            },
            script: Script {
                program: Some(t.program)
                    .filter(|p| !p.is_empty() && !p[0].is_empty())
                    .unwrap_or_else(|| vec!["/bin/sh".to_string()]),
                body: t.script,
            },
        });
    }
    out
}

/// What one package put into the root.
#[derive(Debug)]
pub struct Unpacked {
    /// Package name.
    pub name: String,
    /// Its header data (for the installation order).
    pub info: super::package::RpmPackage,
    /// Directories with their mode and mtime (owners come from `owners`).
    pub dirs: Vec<DirMeta>,
    /// Entries needing a non-root owner or capabilities.
    pub owners: Vec<Ownership>,
    /// `%pretrans`, when present.
    pub pretrans: Option<Script>,
    /// `%pre`, when present.
    pub pre: Option<Script>,
    /// `%post`, when present.
    pub post: Option<Script>,
    /// `%posttrans`, when present.
    pub posttrans: Option<Script>,
    /// `%triggerin` scripts (conditions: package names and ranges).
    pub triggers_in: Vec<Trigger>,
    /// `%filetriggerin` scripts (conditions: path prefixes).
    pub file_triggers_in: Vec<Trigger>,
    /// `%transfiletriggerin` scripts (conditions: path prefixes).
    pub trans_file_triggers_in: Vec<Trigger>,
    /// Install-time scripts present but never run here (triggers the
    /// header does not give readably), with the reason.
    pub not_run: Vec<String>,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Paths claimed by packages, with a content key, so that two packages
/// shipping different files at one path are refused (rpm's file conflict)
/// while identical shared files (e.g. multilib) are allowed.
#[derive(Debug, Default)]
pub struct Claims(Mutex<HashMap<String, (String, String)>>);

impl Claims {
    fn claim(&self, path: &str, pkg: &str, key: String) -> Result<(), RpmUnpackError> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(path) {
            Some((first, k)) if first != pkg && *k != key => Err(RpmUnpackError::Conflict {
                path: format!("/{path}"),
                first: first.clone(),
                second: pkg.to_string(),
            }),
            Some(_) => Ok(()),
            None => {
                m.insert(path.to_string(), (pkg.to_string(), key));
                Ok(())
            }
        }
    }
}

/// Root-relative form of an absolute member path; `None` for `/` itself.
fn clean(p: &Path, name: &str) -> Result<Option<String>, RpmUnpackError> {
    let s = p.to_string_lossy();
    let escape = || RpmUnpackError::Escape {
        name: name.to_string(),
        member: s.to_string(),
    };
    if !s.starts_with('/') {
        return Err(escape());
    }
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(escape()),
            c => parts.push(c),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

fn split(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or(("", rel))
}

fn script(s: Result<::rpm::Scriptlet, ::rpm::Error>) -> Option<Script> {
    let s = s.ok()?;
    Some(Script {
        program: s
            .program
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".to_string()]),
        body: s.script,
    })
}

/// Unpacks the package at `path` (which must have `sha256` and, with
/// `gpgcheck`, a valid signature) into `root`.
pub fn unpack(
    root: &Root,
    name: &str,
    path: &Path,
    sha256: &str,
    expect: &super::install::Expected,
    gpgcheck: Option<&GpgCheck>,
    claims: &Claims,
) -> Result<Unpacked, RpmUnpackError> {
    let io_err = |source| RpmUnpackError::Io {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |message: String| RpmUnpackError::Corrupt {
        name: name.to_string(),
        path: path.to_path_buf(),
        message,
    };
    let hash_err = |actual: String| RpmUnpackError::Hash {
        name: name.to_string(),
        path: path.to_path_buf(),
        expected: sha256.to_string(),
        actual,
    };
    // Two reads, so that no package is ever held whole in memory: the
    // first checks the hash and the signature before the rpm crate parses
    // anything, the second unpacks and hashes again (pkgfile.rs).
    let file = std::fs::File::open(path).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    let scan = pkgfile::scan(pkgfile::At::new(&file, 0), size).map_err(|e| match e {
        pkgfile::ScanError::Io(source) => io_err(source),
        pkgfile::ScanError::Malformed(m) => corrupt(m),
    })?;
    if scan.sha256 != sha256 {
        return Err(hash_err(scan.sha256));
    }
    if let Some(c) = gpgcheck {
        c.verify(&scan, &file).map_err(|e| match e {
            GpgCheckError::Signature(s) => s.into(),
            GpgCheckError::Read(m) => io_err(std::io::Error::other(m)),
        })?;
    }
    let second = Rehash::new(file.try_clone().map_err(io_err)?, &scan.head);
    let input = Cursor::new(scan.head).chain(BufReader::with_capacity(256 << 10, second.clone()));
    // Unpacked in a closure so that, whatever it returns, the file is
    // then read to its end: a file changed between the two reads is
    // reported as such, not as a corrupt package or member.
    let unpacked = (|| -> Result<Unpacked, RpmUnpackError> {
        let mut reader = PackageReader::parse(input).map_err(|e| corrupt(e.to_string()))?;
        let hname = reader
            .metadata
            .get_name()
            .map_err(|e| corrupt(e.to_string()))?;
        if hname != name {
            return Err(corrupt(format!("header names package {hname:?}")));
        }
        // Hard links: regular files sharing (device, inode); only one member
        // of a set carries the content in the payload.
        let entries = reader
            .metadata
            .get_file_entries()
            .map_err(|e| corrupt(e.to_string()))?;
        let h = &reader.metadata.header;
        let devs = h
            .get_entry_data_as_u32_array(IndexTag::RPMTAG_FILEDEVICES)
            .unwrap_or_default();
        let inodes = h
            .get_entry_data_as_u32_array(IndexTag::RPMTAG_FILEINODES)
            .unwrap_or_default();
        let mut link_id: HashMap<String, (u32, u32)> = HashMap::new();
        let mut set_size: HashMap<(u32, u32), usize> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            if e.file_type() == FileType::Regular
                && !e.flags().contains(FileFlags::GHOST)
                && let (Some(d), Some(n)) = (devs.get(i), inodes.get(i))
            {
                link_id.insert(e.path().to_string_lossy().into_owned(), (*d, *n));
                *set_size.entry((*d, *n)).or_default() += 1;
            }
        }
        link_id.retain(|_, id| set_size.get(id).copied().unwrap_or(0) > 1);
        drop(entries);
        let info = super::package::from_metadata(
            &reader.metadata,
            sha256.to_string(),
            0,
            &path.to_string_lossy(),
            super::package::Origin::Local(path.to_path_buf()),
        )
        .map_err(corrupt)?;
        // A repository's metadata is not signed without repo_gpgcheck: a
        // signed package of another version or arch must not pass for the
        // one the lock (and so the commit's package list) names.
        let e = &info.evr;
        if (e.epoch, &e.version, &e.release, &info.arch)
            != (expect.epoch, &expect.version, &expect.release, &expect.arch)
        {
            let epoch = match expect.epoch {
                0 => String::new(),
                n => format!("{n}:"),
            };
            return Err(corrupt(format!(
                "its header says {}, but the lock names {name}-{epoch}{}-{}.{}",
                info.nevra(),
                expect.version,
                expect.release,
                expect.arch
            )));
        }
        let pre = script(reader.metadata.get_pre_install_script());
        let post = script(reader.metadata.get_post_install_script());
        let m = &reader.metadata;
        let mut not_run = Vec::new();
        let pretrans = script(m.get_pre_trans_script());
        let posttrans = script(m.get_post_trans_script());
        let triggers_in = install_triggers(m, "%triggerin", m.get_triggers(), None, &mut not_run);
        let file_triggers_in = install_triggers(
            m,
            "%filetriggerin",
            m.get_file_triggers(),
            Some(IndexTag::RPMTAG_FILETRIGGERPRIORITIES),
            &mut not_run,
        );
        let trans_file_triggers_in = install_triggers(
            m,
            "%transfiletriggerin",
            m.get_trans_file_triggers(),
            Some(IndexTag::RPMTAG_TRANSFILETRIGGERPRIORITIES),
            &mut not_run,
        );

        let mut out = Unpacked {
            name: name.to_string(),
            info,
            dirs: Vec::new(),
            owners: Vec::new(),
            pretrans,
            pre,
            post,
            posttrans,
            triggers_in,
            file_triggers_in,
            trans_file_triggers_in,
            not_run,
            bytes: 0,
        };
        // Content holders of hard-link sets, and members waiting for them.
        let mut holders: HashMap<(u32, u32), String> = HashMap::new();
        let mut pending_links: Vec<((u32, u32), String)> = Vec::new();
        let mut parent_cache: Option<(String, OwnedFd)> = None;
        while let Some(mut f) = reader.next_file().map_err(|e| corrupt(e.to_string()))? {
            let e = f.metadata.clone();
            if e.flags().contains(FileFlags::GHOST) {
                continue;
            }
            let full = e.path();
            let Some(rel) = clean(&full, name)? else {
                continue;
            };
            let member = |what: &str, err: Errno| RpmUnpackError::Member {
                name: name.to_string(),
                member: format!("/{rel}"),
                message: format!("{what}: {err}"),
            };
            let (parent, file) = split(&rel);
            let pfd = match &parent_cache {
                Some((p, fd)) if p == parent => fd.try_clone().map_err(|err| {
                    member("dup", Errno::from_io_error(&err).unwrap_or(Errno::IO))
                })?,
                _ => {
                    let fd = root
                        .mkdir_all(parent)
                        .map_err(|err| member(crate::unpack::open_parent_failed(err), err))?;
                    let keep = fd.try_clone().map_err(|err| {
                        member("dup", Errno::from_io_error(&err).unwrap_or(Errno::IO))
                    })?;
                    parent_cache = Some((parent.to_string(), keep));
                    fd
                }
            };
            let mode = u32::from(e.permissions()) & 0o7777;
            let mtime = i64::from(e.modified_at().0);
            let t = Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            };
            let times = Timestamps {
                last_access: t,
                last_modification: t,
            };
            let ftype = e.file_type();
            let needs_owner = e.user() != "root"
                || e.group() != "root"
                || e.caps().is_some_and(|c| !c.trim().is_empty());
            match ftype {
                FileType::Dir => {
                    match rustix::fs::mkdirat(&pfd, file, Mode::from_raw_mode(0o755)) {
                        Ok(()) => {}
                        Err(Errno::EXIST) => {
                            let st = rustix::fs::statat(&pfd, file, AtFlags::empty())
                                .map_err(|err| member("stat", err))?;
                            if FsType::from_raw_mode(st.st_mode) != FsType::Directory {
                                return Err(member("exists and is not a directory", Errno::NOTDIR));
                            }
                        }
                        Err(err) => return Err(member("mkdir", err)),
                    }
                    out.dirs.push(DirMeta {
                        path: rel.clone(),
                        mode,
                        uid: 0,
                        gid: 0,
                        mtime,
                    });
                }
                FileType::Regular => {
                    let key = e
                        .digest()
                        .map(|d| d.as_hex().to_string())
                        .unwrap_or_default();
                    claims.claim(&rel, name, format!("f{key}{mode:o}"))?;
                    if !f.has_payload()
                        && let Some(id) = link_id.get(&full.to_string_lossy().into_owned())
                    {
                        pending_links.push((*id, rel.clone()));
                        if needs_owner {
                            out.owners.push(owner(&e, &rel, mode, false));
                        }
                        continue;
                    }
                    let fd = create_excl(&pfd, file).map_err(|err| member("create", err))?;
                    let mut w = std::fs::File::from(fd);
                    out.bytes +=
                        std::io::copy(&mut f, &mut w).map_err(|err| RpmUnpackError::Member {
                            name: name.to_string(),
                            member: format!("/{rel}"),
                            message: format!("write: {err}"),
                        })?;
                    f.finish()
                        .map_err(|err| corrupt(format!("payload: {err}")))?;
                    rustix::fs::fchmod(&w, Mode::from_raw_mode(mode))
                        .map_err(|err| member("chmod", err))?;
                    rustix::fs::futimens(&w, &times).map_err(|err| member("utimens", err))?;
                    if let Some(id) = link_id.get(&full.to_string_lossy().into_owned()) {
                        holders.insert(*id, rel.clone());
                    }
                }
                FileType::SymbolicLink => {
                    let target = e
                        .linkto()
                        .filter(|t| !t.is_empty())
                        .ok_or_else(|| member("symlink without target", Errno::INVAL))?
                        .to_string();
                    claims.claim(&rel, name, format!("l{target}"))?;
                    replace(&pfd, file, |fd, n| {
                        rustix::fs::symlinkat(target.as_str(), fd, n)
                    })
                    .map_err(|err| member("symlink", err))?;
                    rustix::fs::utimensat(&pfd, file, &times, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|err| member("utimens", err))?;
                }
                FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                    let ft = match ftype {
                        FileType::CharacterDevice => FsType::CharacterDevice,
                        FileType::BlockDevice => FsType::BlockDevice,
                        _ => FsType::Fifo,
                    };
                    let dev =
                        rustix::fs::makedev(u32::from(e.rdev_major()), u32::from(e.rdev_minor()));
                    claims.claim(&rel, name, format!("d{ftype:?}{dev}"))?;
                    replace(&pfd, file, |fd, n| {
                        rustix::fs::mknodat(fd, n, ft, Mode::from_raw_mode(mode), dev)
                    })
                    .map_err(|err| member("mknod", err))?;
                    rustix::fs::chmodat(&pfd, file, Mode::from_raw_mode(mode), AtFlags::empty())
                        .map_err(|err| member("chmod", err))?;
                }
                // Sockets are made by the programs that listen on them.
                _ => continue,
            }
            if needs_owner {
                out.owners
                    .push(owner(&e, &rel, mode, ftype == FileType::SymbolicLink));
            }
        }
        for (id, rel) in pending_links {
            let target = holders.get(&id).ok_or_else(|| RpmUnpackError::Member {
                name: name.to_string(),
                member: format!("/{rel}"),
                message: "hard link whose content is missing from the payload".into(),
            })?;
            let member = |what: &str, err: Errno| RpmUnpackError::Member {
                name: name.to_string(),
                member: format!("/{rel}"),
                message: format!("{what}: {err}"),
            };
            let (tp, tf) = split(target);
            let (lp, lf) = split(&rel);
            let tfd = root
                .open_dir(tp)
                .map_err(|err| member("open link target", err))?;
            let lfd = root
                .mkdir_all(lp)
                .map_err(|err| member(crate::unpack::open_parent_failed(err), err))?;
            replace(&lfd, lf, |fd, n| {
                rustix::fs::linkat(&tfd, tf, fd, n, AtFlags::empty())
            })
            .map_err(|err| member("link", err))?;
        }
        Ok(out)
    })();
    let again = second.finish().map_err(io_err)?;
    if again != sha256 {
        return Err(hash_err(again));
    }
    unpacked
}

fn owner(e: &::rpm::FileEntry<'_>, rel: &str, mode: u32, symlink: bool) -> Ownership {
    Ownership {
        path: rel.to_string(),
        user: e.user().to_string(),
        group: e.group().to_string(),
        mode,
        caps: e
            .caps()
            .map(str::to_string)
            .filter(|c| !c.trim().is_empty()),
        symlink,
    }
}

/// Applies owners (names mapped through the image's passwd/group), then
/// the mode again (chown clears setuid/setgid), then capabilities (chown
/// clears them too). Unknown names become root; each is reported once in
/// the returned warnings.
pub fn apply_owners<'a>(
    root: &Root,
    entries: impl Iterator<Item = (&'a str, &'a Ownership)>,
) -> Result<Vec<String>, RpmUnpackError> {
    let ids = Ids::load(root);
    let mut warned = std::collections::BTreeSet::new();
    for (pkg, o) in entries {
        let member = |what: &str, err: Errno| RpmUnpackError::Member {
            name: pkg.to_string(),
            member: format!("/{}", o.path),
            message: format!("{what}: {err}"),
        };
        let uid = ids.uid(&o.user).unwrap_or_else(|| {
            warned.insert(format!("user {:?} (package {pkg})", o.user));
            0
        });
        let gid = ids.gid(&o.group).unwrap_or_else(|| {
            warned.insert(format!("group {:?} (package {pkg})", o.group));
            0
        });
        let (parent, file) = split(&o.path);
        let pfd = root
            .open_dir(parent)
            .map_err(|err| member(crate::unpack::open_parent_failed(err), err))?;
        if o.symlink {
            rustix::fs::chownat(
                &pfd,
                file,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|err| member("chown", err))?;
            continue;
        }
        let uid = Some(rustix::fs::Uid::from_raw(uid));
        let gid = Some(rustix::fs::Gid::from_raw(gid));
        let st = rustix::fs::statat(&pfd, file, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|err| member("stat", err))?;
        let kind = FsType::from_raw_mode(st.st_mode);
        if !matches!(kind, FsType::RegularFile | FsType::Directory) {
            // Device nodes and fifos are not opened (that could block or
            // act on a device); lstat just showed this is no symlink.
            if kind != FsType::Symlink {
                rustix::fs::chownat(&pfd, file, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|err| member("chown", err))?;
                rustix::fs::chmodat(&pfd, file, Mode::from_raw_mode(o.mode), AtFlags::empty())
                    .map_err(|err| member("chmod", err))?;
            }
            continue;
        }
        let fd = rustix::fs::openat(
            &pfd,
            file,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| member("open", err))?;
        rustix::fs::fchown(&fd, uid, gid).map_err(|err| member("chown", err))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(o.mode)).map_err(|err| member("chmod", err))?;
        if let Some(text) = &o.caps {
            let value = caps::to_xattr(text).map_err(|m| RpmUnpackError::Member {
                name: pkg.to_string(),
                member: format!("/{}", o.path),
                message: m,
            })?;
            if let Some(v) = value {
                rustix::fs::fsetxattr(
                    &fd,
                    "security.capability",
                    &v,
                    rustix::fs::XattrFlags::empty(),
                )
                .map_err(|err| member("set security.capability", err))?;
            }
        }
    }
    Ok(warned
        .into_iter()
        .map(|w| format!("unknown {w}: owned by root instead"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_stay_inside() {
        let ok = |p: &str| clean(Path::new(p), "pkg").unwrap();
        assert_eq!(ok("/usr/bin/x"), Some("usr/bin/x".into()));
        assert_eq!(ok("/usr//./bin/x"), Some("usr/bin/x".into()));
        assert_eq!(ok("/"), None);
        for bad in ["/usr/../../etc/shadow", "/..", "relative/path"] {
            let e = clean(Path::new(bad), "pkg").unwrap_err();
            assert!(matches!(e, RpmUnpackError::Escape { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("package pkg"), "{e}");
        }
    }

    #[test]
    fn claims_allow_identical_files_only() {
        let c = Claims::default();
        c.claim("usr/share/x", "a", "f1".into()).unwrap();
        c.claim("usr/share/x", "b", "f1".into()).unwrap();
        let e = c.claim("usr/share/x", "c", "f2".into()).unwrap_err();
        assert!(
            e.to_string().contains("/usr/share/x is in both a and c"),
            "{e}"
        );
    }
}
