//! squashfs through the (patched, vendored) `squashfs-ng` crate over
//! libsquashfs: entries are fed in post-order (children before their
//! directory, as the writer requires) from the store's walk, file content
//! is streamed from the store by a prefetch thread while libsquashfs
//! compresses blocks on every core.
//!
//! Kept: content (all-zero blocks stored sparse), modes incl. setuid,
//! uid/gid, mtimes (whole seconds, u32), symlinks, device nodes, FIFOs,
//! hard links (one inode, link count set), xattrs in the `user.`,
//! `trusted.` and `security.` namespaces (file capabilities included).
//! squashfs cannot store other namespaces (`system.posix_acl_*`): those are
//! left out and counted. The superblock time is the commit's timestamp, so
//! the output is reproducible.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use squashfs_ng::write::{Compressor, Source, SourceData, Writer, WriterOptions};
use vnfs_store::{Entry, EntryKind, ObjectId, Progress, Store};

use super::walker::{ContentReader, Image, show};
use super::{Compression, ImageError, RenderOptions, RenderStats, Result};

/// Pieces of file content in flight between the prefetch thread and the writer.
enum Piece {
    Data(Vec<u8>),
    End,
    Failed(String),
}

/// Reads one file's pieces from the shared channel, up to its `End`.
struct PieceReader {
    rx: Arc<Mutex<Receiver<Piece>>>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
    // Checked per piece, so a large file does not delay an interrupt.
    cancel: Option<&'static AtomicBool>,
}

fn is_set(flag: Option<&AtomicBool>) -> bool {
    flag.is_some_and(|c| c.load(Ordering::Relaxed))
}

impl Read for PieceReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if is_set(self.cancel) {
            return Err(io::Error::other("interrupted"));
        }
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            let next = self
                .rx
                .lock()
                .map_err(|_| io::Error::other("prefetch lock poisoned"))?
                .recv()
                .map_err(|_| io::Error::other("prefetch thread stopped"))?;
            match next {
                Piece::Data(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Piece::End => self.done = true,
                Piece::Failed(why) => return Err(io::Error::other(why)),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes `commit` as a squashfs image into `file` from offset 0 (a
/// regular file is truncated first). A failed write is an
/// [`ImageError::Io`] naming [`super::OUTPUT`] with the OS error; once
/// `cancel` is set, the render stops with [`ImageError::Interrupted`].
pub fn write(
    store: &Store,
    commit: &ObjectId,
    opts: &RenderOptions,
    file: File,
    cancel: Option<&'static AtomicBool>,
    progress: &dyn Progress,
) -> Result<RenderStats> {
    let compressor = match opts.compression {
        Compression::Zstd => Compressor::Zstd,
        Compression::Gzip => Compressor::Gzip,
        Compression::Xz => Compressor::Xz,
        Compression::None => {
            return Err(ImageError::Options(
                "squashfs needs a compressor: zstd, gzip or xz".into(),
            ));
        }
    };
    let level = opts.checked_level()?;
    let image = Image::load(store, commit)?;
    let timestamp = store.read_commit(commit)?.timestamp;
    let workers = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    };
    let options = WriterOptions {
        compressor,
        level: Some(level as u32),
        block_size: 128 * 1024,
        mkfs_time: timestamp.clamp(0, u32::MAX as i64) as u32,
        workers: workers as u32,
    };
    let mut writer = Writer::open_file_with(file, &options).map_err(sq)?;
    progress.phase("rendering", Some(image.content_bytes()), true);

    let (tx, rx) = sync_channel::<Piece>(64);
    let rx = Arc::new(Mutex::new(rx));
    let added = std::thread::scope(|s| {
        let image_ref = &image;
        s.spawn(move || prefetch(store, image_ref, tx, progress));
        let r = add_all(&mut writer, &image, &rx, cancel);
        // Unblock the prefetcher if we stopped early.
        drop(rx);
        r
    });
    // libsquashfs reports a failed write as "Generic I/O failure" wherever
    // it happened (often while adding some file): the OS error, kept by the
    // file object, is what the user needs, and it is about the output.
    let finished = added.and_then(|()| writer.finish().map_err(sq));
    if let Some(source) = writer.take_io_error() {
        return Err(ImageError::Io {
            path: super::OUTPUT.into(),
            source,
        });
    }
    finished?;
    let image_bytes = writer.bytes_written().unwrap_or(0);
    drop(writer);
    let mut stats = RenderStats {
        entries: image.items.len() as u64 + 1,
        content_bytes: image.content_bytes(),
        image_bytes,
        ..Default::default()
    };
    for (path, e) in std::iter::once((&b""[..], &image.root))
        .chain(image.items.iter().map(|i| (&i.path[..], &i.entry)))
    {
        stats.drop_xattrs(path, e, storable_xattr);
        stats.check_mtime(path, e);
    }
    progress.finish();
    Ok(stats)
}

/// Sends every regular file's content, in walk order, ending each with `End`.
fn prefetch(store: &Store, image: &Image, tx: SyncSender<Piece>, progress: &dyn Progress) {
    for it in &image.items {
        let EntryKind::File { extents, size } = &it.entry.kind else {
            continue;
        };
        let mut r = ContentReader::new(store, extents, progress);
        let mut n = 0u64;
        loop {
            match r.next_piece() {
                Ok(Some(p)) => {
                    n += p.len() as u64;
                    if tx.send(Piece::Data(p)).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Piece::Failed(format!("{}: {e}", show(&it.path))));
                    return;
                }
            }
        }
        let last = if n == *size {
            Piece::End
        } else {
            Piece::Failed(format!(
                "{}: content is {n} bytes, the tree says {size}",
                show(&it.path)
            ))
        };
        if tx.send(last).is_err() {
            return;
        }
    }
}

/// A directory whose children are being collected.
struct Open {
    path: Vec<u8>,
    entry: Entry,
    children: Vec<(OsString, u32)>,
}

/// Adds every entry, children before parents, the root last; stops when
/// `cancel` is set.
fn add_all(
    writer: &mut Writer,
    image: &Image,
    rx: &Arc<Mutex<Receiver<Piece>>>,
    cancel: Option<&'static AtomicBool>,
) -> Result<()> {
    let mut stack: Vec<Open> = vec![Open {
        path: Vec::new(),
        entry: image.root.clone(),
        children: Vec::new(),
    }];
    let mut inodes: HashMap<&[u8], u32> = HashMap::new();
    for it in &image.items {
        if is_set(cancel) {
            return Err(ImageError::Interrupted);
        }
        // Close directories that are not ancestors of this entry.
        while stack.len() > 1 && !is_child(&stack[stack.len() - 1].path, &it.path) {
            close_dir(writer, &mut stack)?;
        }
        let name = OsString::from_vec(it.entry.name.clone());
        let e = &it.entry;
        let data =
            match &e.kind {
                EntryKind::Dir { .. } => {
                    stack.push(Open {
                        path: it.path.clone(),
                        entry: e.clone(),
                        children: Vec::new(),
                    });
                    continue;
                }
                EntryKind::HardLink { target } => {
                    let ino = inodes.get(target.as_slice()).copied().ok_or_else(|| {
                        ImageError::BadTree {
                            path: show(&it.path),
                            why: format!("hard link to {}, not written before it", show(target)),
                        }
                    })?;
                    push_child(&mut stack, name, ino);
                    continue;
                }
                EntryKind::File { .. } => SourceData::File(Box::new(PieceReader {
                    rx: Arc::clone(rx),
                    buf: Vec::new(),
                    pos: 0,
                    done: false,
                    cancel,
                })),
                EntryKind::Symlink { target } => {
                    SourceData::Symlink(PathBuf::from(OsString::from_vec(target.clone())))
                }
                EntryKind::CharDev { major, minor } => SourceData::CharDev(*major, *minor),
                EntryKind::BlockDev { major, minor } => SourceData::BlockDev(*major, *minor),
                EntryKind::Fifo => SourceData::Fifo,
            };
        let nlink = image.link_counts.get(&it.path).copied().unwrap_or(1);
        let ino = writer
            .add(source(data, e, nlink))
            .map_err(|err| ImageError::Squashfs(format!("{}: {err}", show(&it.path))))?;
        if nlink > 1 {
            inodes.insert(&it.path, ino);
        }
        push_child(&mut stack, name, ino);
    }
    while !stack.is_empty() {
        close_dir(writer, &mut stack)?;
    }
    Ok(())
}

fn is_child(dir: &[u8], path: &[u8]) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}

fn push_child(stack: &mut [Open], name: OsString, ino: u32) {
    if let Some(top) = stack.last_mut() {
        top.children.push((name, ino));
    }
}

fn close_dir(writer: &mut Writer, stack: &mut Vec<Open>) -> Result<()> {
    let Some(d) = stack.pop() else { return Ok(()) };
    let name = OsString::from_vec(d.entry.name.clone());
    let data = SourceData::Dir(Box::new(d.children.into_iter()));
    let ino = writer
        .add(source(data, &d.entry, 1))
        .map_err(|err| ImageError::Squashfs(format!("{}: {err}", show(&d.path))))?;
    push_child(stack, name, ino);
    Ok(())
}

fn storable_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.") || name.starts_with(b"trusted.") || name.starts_with(b"security.")
}

fn source(data: SourceData, e: &Entry, nlink: u32) -> Source {
    let mut s = Source::defaults(data);
    s.uid = e.meta.uid;
    s.gid = e.meta.gid;
    s.mode = (e.meta.mode & 0o7777) as u16;
    s.modified = e.meta.mtime.clamp(0, u32::MAX as i64) as u32;
    s.nlink = nlink;
    s.xattrs = e
        .meta
        .xattrs
        .iter()
        .filter(|(k, _)| storable_xattr(k))
        .map(|(k, v)| (OsString::from_vec(k.clone()), v.clone()))
        .collect();
    s
}

fn sq(e: squashfs_ng::SquashfsError) -> ImageError {
    ImageError::Squashfs(e.to_string())
}
