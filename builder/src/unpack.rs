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

/// What failed when a member's parent directory could not be opened: a
/// missing component was just created, so "not found" means a symlink on
/// the way points at nothing inside the image (it is resolved there, never
/// on the host), such as an absolute one made to point out of the root.
pub(crate) fn open_parent_failed(e: Errno) -> &'static str {
    match e {
        Errno::NOENT => "open parent: a symlink on its path leads nowhere inside the image",
        _ => "open parent",
    }
}

/// Which archives ship each non-directory path. The first archive to
/// claim a path writes it; later ones skip the member and are recorded,
/// so that the caller can decide afterwards, as dpkg would (Replaces,
/// diversions), who owns it. The decision cannot be made while unpacking
/// in parallel: which archive comes first there is an accident of timing.
#[derive(Debug, Default)]
pub struct Claims {
    files: Mutex<HashMap<String, Vec<String>>>,
}

impl Claims {
    /// Records that `owner` ships `path`; true when `owner` is the first
    /// (or only) archive to do so and should write it now.
    fn claim(&self, path: &str, owner: &str) -> Result<bool, UnpackError> {
        let mut m = self.files.lock().map_err(|_| UnpackError::Corrupt {
            archive: owner.to_string(),
            message: "claims lock poisoned".into(),
        })?;
        let owners = m.entry(path.to_string()).or_default();
        if owners.is_empty() || owners[0] == owner {
            if owners.is_empty() {
                owners.push(owner.to_string());
            }
            return Ok(true);
        }
        if !owners.iter().any(|o| o == owner) {
            owners.push(owner.to_string());
        }
        Ok(false)
    }

    /// Paths shipped by more than one archive, sorted, each with its
    /// archives in claim order (the first one's content is on disk).
    pub fn contested(&self) -> Vec<(String, Vec<String>)> {
        let Ok(m) = self.files.lock() else {
            return Vec::new();
        };
        let mut v: Vec<(String, Vec<String>)> = m
            .iter()
            .filter(|(_, o)| o.len() > 1)
            .map(|(p, o)| (p.clone(), o.clone()))
            .collect();
        v.sort();
        v
    }

    /// The archives that ship `path` (`/usr/bin/x`), in claim order.
    pub fn owners(&self, path: &str) -> Vec<String> {
        self.files
            .lock()
            .ok()
            .and_then(|m| m.get(path).cloned())
            .unwrap_or_default()
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
    /// Extended attributes of directory members (pax `SCHILY.xattr.*`),
    /// applied by [`apply_dir_xattrs`] once everything is extracted: a
    /// default ACL set early would change the modes of files created in
    /// the directory afterwards.
    pub dir_xattrs: Vec<(String, Xattrs)>,
    /// Members not written because another archive claimed the path
    /// first (see [`Claims`]), and hard links to them (`/usr/bin/x`).
    pub skipped: Vec<String>,
    /// With [`Options::md5sums`]: `<md5>  <path>` for every regular file
    /// and hard link in archive order, of this archive's own content
    /// (skipped members too), as dpkg records it while unpacking.
    pub md5sums: String,
}

/// A writer that hashes what passes through it (md5, for dpkg's md5sums).
struct Md5Writer<W> {
    inner: W,
    hash: Option<md5::Md5>,
}

impl<W: std::io::Write> std::io::Write for Md5Writer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hash {
            md5::Digest::update(h, &buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W> Md5Writer<W> {
    fn new(inner: W, on: bool) -> Md5Writer<W> {
        Md5Writer {
            inner,
            hash: on.then(<md5::Md5 as md5::Digest>::new),
        }
    }

    /// The hex digest, when hashing.
    fn hex(self) -> Option<String> {
        self.hash.map(|h| hex::encode(md5::Digest::finalize(h)))
    }
}

/// Extended attributes of one member: (name, value), in archive order.
pub type Xattrs = Vec<(String, Vec<u8>)>;

/// The extended attributes a pax header carries as `SCHILY.xattr.NAME`
/// (what GNU tar `--xattrs`, bsdtar and Go's archive/tar, hence `docker
/// export`, write).
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> std::io::Result<Xattrs> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr."))
                && !name.is_empty()
            {
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// Sets `xattrs` on the entry `name` in directory `dir` without following
/// a symlink (there is no `lsetxattrat`; the path goes through the
/// directory's descriptor in /proc).
fn set_xattrs_at(dir: &OwnedFd, name: &str, xattrs: &Xattrs) -> rustix::io::Result<()> {
    if xattrs.is_empty() {
        return Ok(());
    }
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}/{name}", dir.as_raw_fd());
    for (k, v) in xattrs {
        rustix::fs::lsetxattr(&path, k.as_str(), v, rustix::fs::XattrFlags::empty())?;
    }
    Ok(())
}

/// Options for one archive.
#[derive(Debug, Default)]
pub struct Options<'a> {
    /// Paths (`/etc/x`) to write as `<path>.dpkg-new`, as dpkg unpacks
    /// conffiles.
    pub conffiles: Option<&'a std::collections::BTreeSet<String>>,
    /// Detect files shipped by two archives.
    pub claims: Option<&'a Claims>,
    /// Compute [`Report::md5sums`] (dpkg does for a package that ships no
    /// `md5sums`).
    pub md5sums: bool,
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
    extract(root, reader, archive, opts, None)
}

/// Where [`extract_selected`] puts each chosen member: the member as dpkg
/// lists it (`/usr/bin/x`) → its destination in the root
/// (`/usr/bin/x.distrib` for a diverted file, or the same path).
pub type Selection = std::collections::BTreeMap<String, String>;

/// Extracts again only the members named in `select`, to their
/// destinations, replacing whatever non-directory is there (conffiles get
/// their `.dpkg-new` suffix as when unpacking). Directories are left
/// alone. A hard link whose target is extracted in the same pass links to
/// the target's new place, otherwise to what is on disk at the target.
pub fn extract_selected<R: Read>(
    root: &Root,
    reader: R,
    archive: &str,
    conffiles: Option<&std::collections::BTreeSet<String>>,
    select: &Selection,
) -> Result<(), UnpackError> {
    let opts = Options {
        conffiles,
        claims: None,
        md5sums: false,
    };
    extract(root, reader, archive, &opts, Some(select)).map(|_| ())
}

/// Splits a root-relative path into its directory and file name.
fn split_rel(rel: &str) -> (String, String) {
    match rel.rsplit_once('/') {
        Some((p, f)) => (p.to_string(), f.to_string()),
        None => (String::new(), rel.to_string()),
    }
}

fn extract<R: Read>(
    root: &Root,
    reader: R,
    archive: &str,
    opts: &Options<'_>,
    select: Option<&Selection>,
) -> Result<Report, UnpackError> {
    let mut ar = tar::Archive::new(reader);
    let mut report = Report::default();
    let corrupt = |e: std::io::Error| UnpackError::Corrupt {
        archive: archive.to_string(),
        message: e.to_string(),
    };
    // Paths written elsewhere in this pass (selection), or skipped
    // because another archive claimed them (unpacking).
    let mut moved: HashMap<String, String> = HashMap::new();
    let mut skipped: std::collections::HashSet<String> = std::collections::HashSet::new();
    // Member → md5 of its content, for hard links (with `opts.md5sums`).
    let mut sums: HashMap<String, String> = HashMap::new();
    let mut parent_cache: Option<(String, OwnedFd)> = None;
    for entry in ar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let name = entry.path().map_err(corrupt)?.into_owned();
        let Some(rel) = clean(&name, archive)? else {
            if select.is_none() {
                report.paths.push("/.".to_string());
            }
            continue;
        };
        let listed = format!("/{rel}");
        let header = entry.header().clone();
        let kind = header.entry_type();
        // Where this member goes: its own path, or its selected place.
        let dest = match select {
            None => rel.clone(),
            Some(_) if kind == tar::EntryType::Directory => continue,
            Some(sel) => match sel.get(&listed) {
                Some(d) => match clean(Path::new(d), archive)? {
                    Some(d) => d,
                    None => continue,
                },
                None => continue,
            },
        };
        let io = |what: &str, e: Errno| UnpackError::Io {
            archive: archive.to_string(),
            member: rel.clone(),
            message: format!("{what}: {e}"),
        };
        let mode = header.mode().map_err(corrupt)? & 0o7777;
        let uid = header.uid().map_err(corrupt)? as u32;
        let gid = header.gid().map_err(corrupt)? as u32;
        let mtime = header.mtime().map_err(corrupt)? as i64;
        let xattrs = pax_xattrs(&mut entry).map_err(corrupt)?;
        if kind != tar::EntryType::Directory
            && let Some(c) = opts.claims
        {
            // A hard link to a member this archive did not write cannot
            // be made now; it is extracted again once ownership is known.
            let link_to_skipped = kind == tar::EntryType::Link
                && entry
                    .link_name()
                    .ok()
                    .flatten()
                    .and_then(|t| clean(&t, archive).ok().flatten())
                    .is_some_and(|t| skipped.contains(&format!("/{t}")));
            if !c.claim(&listed, archive)? || link_to_skipped {
                if opts.md5sums && select.is_none() {
                    // dpkg hashes what it unpacks, kept or not.
                    match kind {
                        tar::EntryType::Regular
                        | tar::EntryType::Continuous
                        | tar::EntryType::GNUSparse => {
                            let mut w = Md5Writer::new(std::io::sink(), true);
                            std::io::copy(&mut entry, &mut w).map_err(corrupt)?;
                            if let Some(sum) = w.hex() {
                                note_sum(&mut report, &mut sums, &listed, sum);
                            }
                        }
                        tar::EntryType::Link => {
                            if let Some(sum) = link_sum(&mut entry, archive, &sums) {
                                note_sum(&mut report, &mut sums, &listed, sum);
                            }
                        }
                        _ => {}
                    }
                }
                skipped.insert(listed.clone());
                report.skipped.push(listed.clone());
                report.paths.push(listed);
                continue;
            }
        }
        if select.is_some() && dest != rel {
            moved.insert(listed.clone(), format!("/{dest}"));
        }
        let (parent, file) = split_rel(&dest);
        let pfd = match &parent_cache {
            Some((p, fd)) if *p == parent => fd
                .try_clone()
                .map_err(|e| io("dup", Errno::from_io_error(&e).unwrap_or(Errno::IO)))?,
            _ => {
                let fd = root
                    .mkdir_all(&parent)
                    .map_err(|e| io(open_parent_failed(e), e))?;
                parent_cache = Some((
                    parent.clone(),
                    fd.try_clone()
                        .map_err(|e| io("dup", Errno::from_io_error(&e).unwrap_or(Errno::IO)))?,
                ));
                fd
            }
        };
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
                if !xattrs.is_empty() {
                    report.dir_xattrs.push((rel.clone(), xattrs));
                }
            }
            // GNU sparse members read back with their holes as zeros.
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let target = match opts.conffiles {
                    Some(c) if c.contains(&listed) => format!("{file}.dpkg-new"),
                    _ => file.clone(),
                };
                let fd = create_excl(&pfd, &target).map_err(|e| io("create", e))?;
                let hashing = opts.md5sums && select.is_none();
                let mut w = Md5Writer::new(std::fs::File::from(fd), hashing);
                report.bytes += std::io::copy(&mut entry, &mut w).map_err(|e| UnpackError::Io {
                    archive: archive.to_string(),
                    member: rel.clone(),
                    message: format!("write: {e}"),
                })?;
                let f = w.inner;
                if let Some(sum) = w.hash.map(|h| hex::encode(md5::Digest::finalize(h))) {
                    note_sum(&mut report, &mut sums, &listed, sum);
                }
                rustix::fs::fchown(&f, Some(uid_of(uid)), Some(gid_of(gid)))
                    .map_err(|e| io("chown", e))?;
                rustix::fs::fchmod(&f, Mode::from_raw_mode(mode)).map_err(|e| io("chmod", e))?;
                // After chown, which clears security.capability.
                for (k, v) in &xattrs {
                    rustix::fs::fsetxattr(&f, k.as_str(), v, rustix::fs::XattrFlags::empty())
                        .map_err(|e| io(&format!("setxattr {k}"), e))?;
                }
                rustix::fs::futimens(&f, &times).map_err(|e| io("utimens", e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| io("symlink without target", Errno::INVAL))?
                    .into_owned();
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
                set_xattrs_at(&pfd, &file, &xattrs).map_err(|e| io("setxattr", e))?;
                rustix::fs::utimensat(&pfd, file.as_str(), &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io("utimens", e))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| io("hard link without target", Errno::INVAL))?;
                let Some(mut trel) = clean(&target, archive)? else {
                    return Err(io("hard link to the root", Errno::INVAL));
                };
                let tlisted = format!("/{trel}");
                // The target was put somewhere else in this pass.
                if let Some(m) = moved.get(&tlisted) {
                    trel = m.trim_start_matches('/').to_string();
                }
                let (tp, mut tf) = split_rel(&trel);
                // A conffile target is still under its `.dpkg-new` name,
                // as dpkg links it.
                if opts.conffiles.is_some_and(|c| c.contains(&tlisted)) {
                    tf.push_str(".dpkg-new");
                }
                let tfd = root.open_dir(&tp).map_err(|e| io("open link target", e))?;
                replace(&pfd, &file, |fd, n| {
                    rustix::fs::linkat(&tfd, tf.as_str(), fd, n, AtFlags::empty())
                })
                .map_err(|e| io("link", e))?;
                if opts.md5sums
                    && select.is_none()
                    && let Some(sum) = sums.get(&tlisted).cloned()
                {
                    note_sum(&mut report, &mut sums, &listed, sum);
                }
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
                set_xattrs_at(&pfd, &file, &xattrs).map_err(|e| io("setxattr", e))?;
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

/// Records a member's md5 in the report (dpkg's md5sums line) and for
/// hard links to it.
fn note_sum(report: &mut Report, sums: &mut HashMap<String, String>, listed: &str, sum: String) {
    report
        .md5sums
        .push_str(&format!("{sum}  {}\n", listed.trim_start_matches('/')));
    sums.insert(listed.to_string(), sum);
}

/// The md5 already noted for a hard link's target in this archive.
fn link_sum<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    archive: &str,
    sums: &HashMap<String, String>,
) -> Option<String> {
    let t = entry.link_name().ok().flatten()?;
    let t = clean(&t, archive).ok().flatten()?;
    sums.get(&format!("/{t}")).cloned()
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

/// Sets the extended attributes recorded for directory members (after
/// [`apply_dir_meta`], whose chown would clear some of them). Like there,
/// a directory that is a symlink in the root is left alone.
pub fn apply_dir_xattrs<'a>(
    root: &Root,
    dirs: impl Iterator<Item = &'a (String, Xattrs)>,
) -> Result<(), UnpackError> {
    for (path, xattrs) in dirs {
        let io = |what: &str, e: Errno| UnpackError::Io {
            archive: "directory metadata".into(),
            member: path.clone(),
            message: format!("{what}: {e}"),
        };
        let (parent, file) = match path.rsplit_once('/') {
            Some((p, f)) => (p, f),
            None => ("", path.as_str()),
        };
        let pfd = root.open_dir(parent).map_err(|e| io("open", e))?;
        let fd = match rustix::fs::openat(
            &pfd,
            file,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // A symlink (merged /usr) or something else now.
            Err(Errno::LOOP | Errno::NOTDIR) => continue,
            Err(e) => return Err(io("open", e)),
        };
        for (k, v) in xattrs {
            rustix::fs::fsetxattr(&fd, k.as_str(), v, rustix::fs::XattrFlags::empty())
                .map_err(|e| io(&format!("setxattr {k}"), e))?;
        }
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
            md5sums: true,
        };
        let r = unpack_tar(&root, &t[..], "a", &opts).unwrap();
        // md5("c")
        assert_eq!(r.md5sums, "4a8a08f09d37b73795649038408b5f33  etc/c\n");
        assert!(dir.path().join("r/etc/c.dpkg-new").is_file());
        // A second archive shipping the path does not overwrite it; the
        // claim is recorded for the caller to decide.
        let t2 = tar_with(&[
            ("./etc/c", tar::EntryType::Regular, "b's"),
            ("./etc/d", tar::EntryType::Link, "./etc/c"),
        ]);
        let r = unpack_tar(&root, &t2[..], "b", &opts).unwrap();
        assert_eq!(r.skipped, ["/etc/c", "/etc/d"]);
        // Skipped members are still hashed, as dpkg hashes what it unpacks;
        // the hard link has its target's sum. md5("b's")
        assert_eq!(
            r.md5sums,
            "58f828245c23565d7e1a320d7d26155d  etc/c\n58f828245c23565d7e1a320d7d26155d  etc/d\n"
        );
        assert_eq!(r.paths, ["/etc/c", "/etc/d"]);
        assert_eq!(
            std::fs::read(dir.path().join("r/etc/c.dpkg-new")).unwrap(),
            b"c"
        );
        assert!(!dir.path().join("r/etc/d").exists());
        assert_eq!(
            claims.contested(),
            [("/etc/c".to_string(), vec!["a".to_string(), "b".to_string()])]
        );
        assert_eq!(claims.owners("/etc/d"), ["b"]);
        // Extracting b's members again, to chosen places: the link follows
        // its target.
        let sel: Selection = [
            ("/etc/c".to_string(), "/etc/c.diverted".to_string()),
            ("/etc/d".to_string(), "/etc/d".to_string()),
        ]
        .into();
        extract_selected(&root, &t2[..], "b", Some(&conff), &sel).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("r/etc/c.diverted.dpkg-new")).unwrap(),
            b"b's"
        );
        assert_eq!(std::fs::read(dir.path().join("r/etc/d")).unwrap(), b"b's");
        assert_eq!(
            std::fs::read(dir.path().join("r/etc/c.dpkg-new")).unwrap(),
            b"c"
        );
    }
}
