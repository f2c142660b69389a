//! newc cpio ("SVR4 with no CRC", magic `070701`), as the kernel's
//! initramfs unpacker and `cpio -i` read it.
//!
//! Entries are in walk order, directories before their contents, as the
//! kernel's unpacker needs (it does not create missing parents). The root
//! is the entry `.`; other names are root-relative without a
//! leading `./`. Hard links share an inode number and link count; as GNU
//! cpio writes them, only the last name of a group carries the data (the
//! earlier ones have size 0), which both the kernel and `cpio -i` accept.
//! Directories have link count 2. newc has no field for extended
//! attributes, so xattrs (file capabilities included) are left out and
//! counted in [`RenderStats::xattrs_dropped`]; mtimes are whole seconds in
//! 32 bits (clamped to 0..=u32::MAX); a file must be smaller than 4 GiB.
//! The kernel applies directory mtimes after unpacking; GNU `cpio -idm`
//! keeps a directory's mtime only if it comes after its contents, so it
//! leaves extraction times on directories from these archives.

use std::collections::HashMap;
use std::io::Write;

use vnfs_store::{Entry, EntryKind, Progress, Store};

use super::walker::{Image, copy_content, show};
use super::{ImageError, RenderStats, Result};

/// Writes the whole archive (entries and trailer) to `w`.
pub fn write(
    store: &Store,
    image: &Image,
    w: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<RenderStats> {
    let mut stats = RenderStats::default();
    // Inode numbers: walk order, starting at 1 for the root; hard links
    // take their target's number.
    let mut inos: HashMap<&[u8], u32> = HashMap::new();
    // The last name of each hard-link group carries the data.
    let mut last_name: HashMap<&[u8], &[u8]> = HashMap::new();
    for it in &image.items {
        if let EntryKind::HardLink { target } = &it.entry.kind {
            last_name.insert(target.as_slice(), it.path.as_slice());
        }
    }
    write_entry(w, b".", 1, &image.root, 2, 0, (0, 0), &mut stats)?;
    for (n, it) in image.items.iter().enumerate() {
        let ino =
            u32::try_from(n + 2).map_err(|_| unrepresentable(&it.path, "too many entries"))?;
        let e = &it.entry;
        match &e.kind {
            EntryKind::File { size, extents } => {
                let links = image.link_counts.get(&it.path).copied().unwrap_or(1);
                inos.insert(&it.path, ino);
                let carries = links == 1;
                let len = if carries { *size } else { 0 };
                let len32 = u32::try_from(*size).map_err(|_| {
                    unrepresentable(&it.path, "newc cannot hold a file of 4 GiB or more")
                })?;
                write_entry(
                    w,
                    &it.path,
                    ino,
                    e,
                    links,
                    if carries { len32 } else { 0 },
                    (0, 0),
                    &mut stats,
                )?;
                if len > 0 {
                    copy_content(store, &it.path, *size, extents, w, progress)?;
                    pad(w, len)?;
                }
            }
            EntryKind::HardLink { target } => {
                let t = image
                    .link_target(target)
                    .ok_or_else(|| ImageError::BadTree {
                        path: show(&it.path),
                        why: format!("hard link to missing {}", show(target)),
                    })?;
                let EntryKind::File { size, extents } = &t.entry.kind else {
                    return Err(ImageError::BadTree {
                        path: show(&it.path),
                        why: format!("hard link to {}, not a regular file", show(target)),
                    });
                };
                let size = *size;
                let links = image
                    .link_counts
                    .get(target.as_slice())
                    .copied()
                    .unwrap_or(2);
                let tino = inos.get(target.as_slice()).copied().unwrap_or(ino);
                let carries = last_name.get(target.as_slice()) == Some(&it.path.as_slice());
                let len32 = u32::try_from(size).map_err(|_| {
                    unrepresentable(&it.path, "newc cannot hold a file of 4 GiB or more")
                })?;
                // A hard link's own entry carries the group's metadata (the store keeps it equal).
                let mut as_file = t.entry.clone();
                as_file.meta = e.meta.clone();
                write_entry(
                    w,
                    &it.path,
                    tino,
                    &as_file,
                    links,
                    if carries { len32 } else { 0 },
                    (0, 0),
                    &mut stats,
                )?;
                if carries && size > 0 {
                    copy_content(store, &it.path, size, extents, w, progress)?;
                    pad(w, size)?;
                }
            }
            EntryKind::Dir { .. } => write_entry(w, &it.path, ino, e, 2, 0, (0, 0), &mut stats)?,
            EntryKind::Symlink { target } => {
                let len = u32::try_from(target.len())
                    .map_err(|_| unrepresentable(&it.path, "symlink target too long"))?;
                write_entry(w, &it.path, ino, e, 1, len, (0, 0), &mut stats)?;
                w.write_all(target).map_err(out_err)?;
                pad(w, target.len() as u64)?;
            }
            EntryKind::CharDev { major, minor } | EntryKind::BlockDev { major, minor } => {
                write_entry(w, &it.path, ino, e, 1, 0, (*major, *minor), &mut stats)?
            }
            EntryKind::Fifo => write_entry(w, &it.path, ino, e, 1, 0, (0, 0), &mut stats)?,
        }
    }
    // Trailer.
    let trailer = Entry {
        name: Vec::new(),
        kind: EntryKind::Fifo,
        meta: Default::default(),
    };
    let mut ignore = RenderStats::default();
    write_header(w, b"TRAILER!!!", 0, 0, &trailer, 1, 0, (0, 0), &mut ignore)?;
    Ok(stats)
}

#[allow(clippy::too_many_arguments)]
fn write_entry(
    w: &mut dyn Write,
    name: &[u8],
    ino: u32,
    e: &Entry,
    nlink: u32,
    filesize: u32,
    rdev: (u32, u32),
    stats: &mut RenderStats,
) -> Result<()> {
    let mode = e.kind.type_bits() | (e.meta.mode & 0o7777);
    stats.entries += 1;
    // newc has no field for them.
    stats.drop_xattrs(name, e, |_| false);
    stats.check_mtime(name, e);
    if let EntryKind::File { size, .. } = &e.kind {
        stats.content_bytes += if filesize > 0 { *size } else { 0 };
    }
    write_header(w, name, ino, mode, e, nlink, filesize, rdev, stats)
}

#[allow(clippy::too_many_arguments)]
fn write_header(
    w: &mut dyn Write,
    name: &[u8],
    ino: u32,
    mode: u32,
    e: &Entry,
    nlink: u32,
    filesize: u32,
    rdev: (u32, u32),
    _stats: &mut RenderStats,
) -> Result<()> {
    let mtime = e.meta.mtime.clamp(0, u32::MAX as i64) as u32;
    let namesize = name.len() + 1;
    let mut h = Vec::with_capacity(110 + namesize + 4);
    h.extend_from_slice(b"070701");
    for v in [
        ino,
        mode,
        e.meta.uid,
        e.meta.gid,
        nlink,
        mtime,
        filesize,
        0,
        0,
        rdev.0,
        rdev.1,
        namesize as u32,
        0,
    ] {
        h.extend_from_slice(format!("{v:08x}").as_bytes());
    }
    h.extend_from_slice(name);
    h.push(0);
    while h.len() % 4 != 0 {
        h.push(0);
    }
    w.write_all(&h).map_err(out_err)
}

fn pad(w: &mut dyn Write, len: u64) -> Result<()> {
    let n = (4 - (len % 4) as usize) % 4;
    w.write_all(&[0u8; 3][..n]).map_err(out_err)
}

fn out_err(source: std::io::Error) -> ImageError {
    ImageError::Io {
        path: super::OUTPUT.into(),
        source,
    }
}

fn unrepresentable(path: &[u8], why: &str) -> ImageError {
    ImageError::Unrepresentable {
        path: show(path),
        format: "cpio (newc)",
        why: why.into(),
    }
}
