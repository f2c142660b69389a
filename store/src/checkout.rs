//! Checkout: materialise a commit into a directory exactly: content,
//! holes, hard links, devices, owners, modes, xattrs and mtimes.
//!
//! Metadata goes on in the order the kernel needs: chown (which clears
//! setuid bits and file capabilities), then chmod, then xattrs, then
//! times; directories last and deepest first so their mtimes stick.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};

use crate::error::{IoContext, Result, StoreError};
use crate::id::{ObjectId, ObjectKind};
use crate::progress::Progress;
use crate::repo::Store;
use crate::tree::{Entry, EntryKind, Extent, Meta};

/// What a checkout did, and what it could not do without privileges.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckoutStats {
    /// Regular files written (hard links not counted).
    pub files: u64,
    /// Directories created, the root included.
    pub dirs: u64,
    /// Symlinks, devices, FIFOs and hard links.
    pub others: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries whose owner could not be set (not root).
    pub owners_skipped: u64,
    /// Device nodes that could not be created (not root).
    pub devices_skipped: u64,
    /// Privileged xattrs (trusted.*, security.*) that could not be set (not root).
    pub xattrs_skipped: u64,
}

struct Item {
    rel: Vec<u8>,
    entry: Entry,
}

impl Store {
    /// Writes `commit` into `dest`, which must be absent or an empty
    /// directory. A checkout that fails, or stops because
    /// [`Progress::cancelled`] said so, removes what it wrote: the
    /// directories it created (`dest` and missing parents), or, in an empty
    /// directory it was given, the image's top-level entries.
    pub fn checkout(
        &self,
        commit: &ObjectId,
        dest: &Path,
        progress: &dyn Progress,
    ) -> Result<CheckoutStats> {
        let c = self.read_commit(commit)?;
        let made = prepare_dest(dest)?;
        let mut top = Vec::new();
        self.checkout_into(&c, dest, progress, &mut top)
            .map_err(|e| match made.undo(dest, &top) {
                Ok(()) => e,
                Err(u) => StoreError::Invalid(format!(
                    "{e}; what the checkout wrote could not all be removed: {u}"
                )),
            })
    }

    /// The checkout proper, into a prepared `dest`; `top` learns the
    /// image's top-level names before anything is written under them.
    fn checkout_into(
        &self,
        c: &crate::commit::Commit,
        dest: &Path,
        progress: &dyn Progress,
        top: &mut Vec<Vec<u8>>,
    ) -> Result<CheckoutStats> {
        let mut items = Vec::new();
        self.walk(&c.tree(), &mut |rel, e| {
            items.push(Item {
                rel: rel.to_vec(),
                entry: e.clone(),
            });
            Ok(true)
        })?;
        top.extend(
            items
                .iter()
                .filter(|i| !i.rel.contains(&b'/'))
                .map(|i| i.rel.clone()),
        );
        let stats = Stats::default();
        let path_of = |rel: &[u8]| dest.join(OsStr::from_bytes(rel));

        let go_on = || match progress.cancelled() {
            true => Err(StoreError::Interrupted),
            false => Ok(()),
        };
        for it in items
            .iter()
            .filter(|i| matches!(i.entry.kind, EntryKind::Dir { .. }))
        {
            go_on()?;
            let p = path_of(&it.rel);
            fs::DirBuilder::new().mode(0o700).create(&p).at(&p)?;
            stats.dirs.fetch_add(1, Ordering::Relaxed);
        }

        let total: u64 = items
            .iter()
            .map(|i| match &i.entry.kind {
                EntryKind::File { size, .. } => *size,
                _ => 0,
            })
            .sum();
        progress.phase("checking out", Some(total), true);
        crate::pool::install(|| {
            items
                .par_iter()
                .filter(|i| matches!(i.entry.kind, EntryKind::File { .. }))
                .try_for_each(|it| {
                    go_on()?;
                    self.write_file(&path_of(&it.rel), &it.entry, &stats, progress)
                })
        })?;

        let mut files: HashMap<&[u8], ()> = HashMap::new();
        for it in &items {
            if matches!(it.entry.kind, EntryKind::File { .. }) {
                files.insert(&it.rel, ());
            }
        }
        for it in &items {
            go_on()?;
            let p = path_of(&it.rel);
            match &it.entry.kind {
                EntryKind::Symlink { target } => {
                    std::os::unix::fs::symlink(OsStr::from_bytes(target), &p).at(&p)?;
                    apply_path_meta(&p, &it.entry.meta, true, &stats)?;
                }
                EntryKind::CharDev { major, minor } | EntryKind::BlockDev { major, minor } => {
                    let ft = if matches!(it.entry.kind, EntryKind::CharDev { .. }) {
                        FileType::CharacterDevice
                    } else {
                        FileType::BlockDevice
                    };
                    let dev = rustix::fs::makedev(*major, *minor);
                    match rustix::fs::mknodat(CWD, &p, ft, Mode::from_raw_mode(0o600), dev) {
                        Ok(()) => apply_path_meta(&p, &it.entry.meta, false, &stats)?,
                        Err(rustix::io::Errno::PERM) => {
                            stats.devices_skipped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Err(e) => return Err(std::io::Error::from(e)).at(&p),
                    }
                }
                EntryKind::Fifo => {
                    rustix::fs::mknodat(CWD, &p, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                        .map_err(std::io::Error::from)
                        .at(&p)?;
                    apply_path_meta(&p, &it.entry.meta, false, &stats)?;
                }
                EntryKind::HardLink { target } => {
                    if !files.contains_key(target.as_slice()) {
                        return Err(StoreError::Invalid(format!(
                            "hard link {} points to {}, which is not a regular file of this image",
                            String::from_utf8_lossy(&it.rel),
                            String::from_utf8_lossy(target)
                        )));
                    }
                    let t = path_of(target);
                    fs::hard_link(&t, &p).at(&p)?;
                }
                EntryKind::File { .. } | EntryKind::Dir { .. } => continue,
            }
            stats.others.fetch_add(1, Ordering::Relaxed);
        }

        go_on()?;
        for it in items.iter().rev() {
            if matches!(it.entry.kind, EntryKind::Dir { .. }) {
                apply_path_meta(&path_of(&it.rel), &it.entry.meta, false, &stats)?;
            }
        }
        apply_path_meta(dest, &c.root.meta, false, &stats)?;
        stats.dirs.fetch_add(1, Ordering::Relaxed);
        progress.finish();
        Ok(stats.into_stats())
    }

    fn write_file(
        &self,
        p: &Path,
        e: &Entry,
        stats: &Stats,
        progress: &dyn Progress,
    ) -> Result<()> {
        let EntryKind::File { size, extents } = &e.kind else {
            return Ok(());
        };
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(p)
            .at(p)?;
        let mut pos = 0u64;
        for x in extents {
            // Per chunk, so Ctrl-C does not wait for a large file's end.
            if progress.cancelled() {
                return Err(StoreError::Interrupted);
            }
            if let Extent::Data { id, len } = x {
                let data = self.read_chunk_for(id, p)?;
                if data.len() as u64 != *len {
                    return Err(StoreError::Invalid(format!(
                        "chunk {id} of {} has {} bytes, the tree says {len}",
                        p.display(),
                        data.len()
                    )));
                }
                f.write_all_at(&data, pos).at(p)?;
            }
            pos += x.len();
            progress.advance(x.len());
        }
        if extents
            .last()
            .is_some_and(|x| matches!(x, Extent::Hole { .. }))
        {
            f.set_len(*size).at(p)?;
        }
        apply_fd_meta(&f, p, &e.meta, stats)?;
        stats.files.fetch_add(1, Ordering::Relaxed);
        stats.bytes.fetch_add(*size, Ordering::Relaxed);
        Ok(())
    }

    fn read_chunk_for(&self, id: &ObjectId, p: &Path) -> Result<Vec<u8>> {
        self.read_raw(id, ObjectKind::Chunk)
            .map_err(|e| StoreError::Invalid(format!("cannot restore {}: {e}", p.display())))
    }
}

#[derive(Default)]
struct Stats {
    files: AtomicU64,
    dirs: AtomicU64,
    others: AtomicU64,
    bytes: AtomicU64,
    owners_skipped: AtomicU64,
    devices_skipped: AtomicU64,
    xattrs_skipped: AtomicU64,
}

impl Stats {
    fn into_stats(self) -> CheckoutStats {
        CheckoutStats {
            files: self.files.into_inner(),
            dirs: self.dirs.into_inner(),
            others: self.others.into_inner(),
            bytes: self.bytes.into_inner(),
            owners_skipped: self.owners_skipped.into_inner(),
            devices_skipped: self.devices_skipped.into_inner(),
            xattrs_skipped: self.xattrs_skipped.into_inner(),
        }
    }
}

/// The directories a checkout created (outermost first): what it may
/// remove again. Only a directory this process created counts; one that
/// appeared meanwhile (another checkout's) is not touched.
struct Made {
    created: Vec<PathBuf>,
}

impl Made {
    /// Removes what a failed checkout wrote: `dest` whole if it was
    /// created, else the image's top-level names in it; then the created
    /// parents, innermost first, each only if empty.
    fn undo(&self, dest: &Path, top: &[Vec<u8>]) -> std::io::Result<()> {
        let ours = |p: &Path| self.created.iter().any(|c| c == p);
        if ours(dest) {
            remove_tree(dest)?;
        } else {
            for name in top {
                let p = dest.join(OsStr::from_bytes(name));
                match p.symlink_metadata() {
                    Ok(m) if m.is_dir() => remove_tree(&p)?,
                    Ok(_) => fs::remove_file(&p)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for p in self.created.iter().rev().filter(|p| p.as_path() != dest) {
            // Not empty: someone else put something there; theirs now.
            let _ = fs::remove_dir(p);
        }
        Ok(())
    }
}

/// Removes a directory tree, first making its directories writable (an
/// image's read-only directories would otherwise keep their entries).
fn remove_tree(p: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            make_writable(p);
            fs::remove_dir_all(p)
        }
        r => r,
    }
}

fn make_writable(p: &Path) {
    if let Ok(m) = p.symlink_metadata()
        && m.is_dir()
    {
        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
        for e in fs::read_dir(p).into_iter().flatten().flatten() {
            make_writable(&e.path());
        }
    }
}

/// Makes `dest` an empty directory to check out into: created with any
/// missing parents, one level at a time (so a level that exists, or
/// appears meanwhile, is never counted as the checkout's), or an existing
/// empty directory.
fn prepare_dest(dest: &Path) -> Result<Made> {
    // Missing levels, innermost first; only "not found" is missing.
    let mut missing = Vec::new();
    for p in dest.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        match p.symlink_metadata() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(p),
            _ => break,
        }
    }
    let mut made = Made {
        created: Vec::new(),
    };
    for p in missing.iter().rev() {
        match fs::create_dir(p) {
            Ok(()) => made.created.push(p.to_path_buf()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                let _ = made.undo(dest, &[]);
                return Err(e).at(p);
            }
        }
    }
    if made.created.last().is_some_and(|p| p == dest) {
        return Ok(made);
    }
    // Not created here (it existed, or the path goes through `..`): it
    // must be an empty directory.
    let refuse = |why: String| {
        let _ = made.undo(dest, &[]);
        Err(StoreError::Invalid(why))
    };
    match fs::read_dir(dest) {
        Ok(mut rd) => match rd.next() {
            None => Ok(made),
            Some(_) => refuse(format!(
                "{} is not empty; check out into a new or empty directory",
                dest.display()
            )),
        },
        Err(e) => {
            let _ = made.undo(dest, &[]);
            Err(e).at(dest)
        }
    }
}

fn times(meta: &Meta) -> Timestamps {
    let t = Timespec {
        tv_sec: meta.mtime,
        tv_nsec: i64::from(meta.mtime_nsec) as _,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn is_perm(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EINVAL))
}

fn apply_fd_meta(f: &File, p: &Path, meta: &Meta, stats: &Stats) -> Result<()> {
    use xattr::FileExt as _;
    match std::os::unix::fs::fchown(f, Some(meta.uid), Some(meta.gid)) {
        Ok(()) => {}
        Err(e) if is_perm(&e) => {
            stats.owners_skipped.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => return Err(e).at(p),
    }
    f.set_permissions(fs::Permissions::from_mode(meta.mode))
        .at(p)?;
    for (k, v) in &meta.xattrs {
        let r = f.set_xattr(OsStr::from_bytes(k), v);
        xattr_result(r, p, k, stats)?;
    }
    rustix::fs::futimens(f.as_fd(), &times(meta))
        .map_err(std::io::Error::from)
        .at(p)
}

fn apply_path_meta(p: &Path, meta: &Meta, symlink: bool, stats: &Stats) -> Result<()> {
    match std::os::unix::fs::lchown(p, Some(meta.uid), Some(meta.gid)) {
        Ok(()) => {}
        Err(e) if is_perm(&e) => {
            stats.owners_skipped.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => return Err(e).at(p),
    }
    if !symlink {
        fs::set_permissions(p, fs::Permissions::from_mode(meta.mode)).at(p)?;
    }
    for (k, v) in &meta.xattrs {
        let r = xattr::set(p, OsStr::from_bytes(k), v);
        xattr_result(r, p, k, stats)?;
    }
    rustix::fs::utimensat(CWD, p, &times(meta), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(std::io::Error::from)
        .at(p)
}

/// Privileged namespaces fail with EPERM for ordinary users: count those
/// (the caller warns once); anything else is an error naming the file.
fn xattr_result(r: std::io::Result<()>, p: &Path, k: &[u8], stats: &Stats) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e)
            if e.raw_os_error() == Some(libc::EPERM) && !rustix::process::geteuid().is_root() =>
        {
            stats.xattrs_skipped.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(xattr_error(p, k, e)),
    }
}

/// Applies `meta` (owner, mode, xattrs, times) to an existing path, the way
/// checkout does; `symlink` skips the mode, which links do not have.
/// Livesync uses it for directories whose metadata changed. Xattrs the
/// path has but `meta` lacks are left in place.
pub fn set_metadata(p: &Path, meta: &Meta, symlink: bool) -> Result<()> {
    apply_path_meta(p, meta, symlink, &Stats::default())
}

fn xattr_error(p: &Path, k: &[u8], e: std::io::Error) -> StoreError {
    StoreError::Io {
        path: PathBuf::from(p),
        source: std::io::Error::new(
            e.kind(),
            format!("setting xattr {}: {e}", String::from_utf8_lossy(k)),
        ),
    }
}
