//! Ingest: a directory tree becomes chunks, trees and a commit.
//!
//! Three passes: a sorted walk that records metadata and hard links
//! (cheap, one thread); content chunking, hashing and compression of every
//! changed file on all cores; then tree objects bottom-up. Unchanged files
//! are recognised by the stat cache and not read at all.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::chunker;
use crate::commit::Commit;
use crate::error::{IoContext, Result, StoreError};
use crate::id::{ObjectId, ObjectKind};
use crate::progress::Progress;
use crate::repo::{Store, WriteStats, Writer};
use crate::statcache::{StatCache, StatKey};
use crate::tree::{Entry, EntryKind, Extent, Meta, Tree};

/// What `commit_dir` should record.
#[derive(Clone, Debug, Default)]
pub struct CommitOptions {
    /// Image name to move to the new commit.
    pub name: String,
    /// Commit message.
    pub message: String,
    /// Commit time (seconds since the epoch); `None` means now. Give it for
    /// reproducible ids.
    pub timestamp: Option<i64>,
    /// Metadata stored in the commit (VNFS configuration, package list, ...).
    pub metadata: BTreeMap<String, String>,
    /// Parent commit; `None` means the image's current commit, if any.
    pub parent: Option<ObjectId>,
}

/// What a commit did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct IngestStats {
    /// Regular files (hard links counted once).
    pub files: u64,
    /// Directories including the root.
    pub dirs: u64,
    /// Symlinks, devices, FIFOs and extra hard links.
    pub others: u64,
    /// Logical bytes of file content.
    pub bytes: u64,
    /// Files whose content came from the stat cache without reading.
    pub unchanged_files: u64,
    /// Sockets and other entries that cannot be stored, skipped.
    pub skipped: Vec<String>,
    /// New objects and bytes written.
    pub written: WriteStats,
}

/// Result of `commit_dir`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CommitOutcome {
    /// The new commit.
    pub id: ObjectId,
    /// What was ingested.
    pub stats: IngestStats,
}

enum Node {
    Dir {
        meta: Meta,
        children: Vec<(Vec<u8>, Node)>,
    },
    File {
        job: usize,
        meta: Meta,
    },
    Other(EntryKind, Meta),
}

struct FileJob {
    path: PathBuf,
    rel: Vec<u8>,
    key: StatKey,
    blocks: u64,
}

struct Walk<'a> {
    files: Vec<FileJob>,
    inodes: HashMap<(u64, u64), Vec<u8>>,
    stats: IngestStats,
    skip: Option<(u64, u64)>,
    progress: &'a dyn Progress,
}

impl Store {
    /// Ingests `dir` as a new version of `opts.name` and moves the name to
    /// it. The ref moves only after every object is durable.
    pub fn commit_dir(
        &self,
        dir: &Path,
        opts: &CommitOptions,
        progress: &dyn Progress,
    ) -> Result<CommitOutcome> {
        crate::refs::validate_name(&opts.name)?;
        let writer = self.writer()?;
        let cache_path = self.stat_cache_path(&opts.name);
        let abs = fs::canonicalize(dir).at(dir)?;
        let cache = StatCache::load(&cache_path, abs.as_os_str().as_bytes());
        let (root, mut stats, new_cache) = self.ingest_tree(&writer, &abs, &cache, progress)?;
        let id = self.commit_root(&writer, root, opts)?;
        stats.written = writer.stats();
        drop(writer);
        // The cache only saves work; failing to write it loses nothing.
        if let Err(e) = new_cache.save(self, &cache_path) {
            tracing::warn!("could not save the stat cache: {e}");
        }
        progress.finish();
        Ok(CommitOutcome { id, stats })
    }

    /// Writes a commit for `root` and moves `opts.name` to it, re-parenting
    /// on the current head if another commit landed meanwhile.
    pub fn commit_root(
        &self,
        writer: &Writer<'_>,
        root: Entry,
        opts: &CommitOptions,
    ) -> Result<ObjectId> {
        // Everything goes into one pack with the commit object; the flush
        // inside the closure makes it durable before the ref moves.
        let timestamp = opts.timestamp.unwrap_or_else(now);
        self.update_ref(&opts.name, |current| {
            let commit = Commit {
                root,
                parents: opts.parent.or(current).into_iter().collect(),
                timestamp,
                message: opts.message.clone(),
                metadata: opts.metadata.clone(),
            };
            let id = writer.put(ObjectKind::Commit, &commit.encode())?;
            writer.flush()?;
            Ok(id)
        })
    }

    fn ingest_tree(
        &self,
        writer: &Writer<'_>,
        dir: &Path,
        cache: &StatCache,
        progress: &dyn Progress,
    ) -> Result<(Entry, IngestStats, StatCache)> {
        let md = fs::symlink_metadata(dir).at(dir)?;
        if !md.is_dir() {
            return Err(StoreError::Invalid(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        let skip = fs::metadata(self.root()).ok().map(|m| (m.dev(), m.ino()));
        let mut walk = Walk {
            files: Vec::new(),
            inodes: HashMap::new(),
            stats: IngestStats::default(),
            skip,
            progress,
        };
        progress.phase("scanning", None, false);
        let root = walk.dir(dir, Vec::new(), &md)?;
        let Walk {
            files, mut stats, ..
        } = walk;

        let total: u64 = files.iter().map(|f| f.key.size).sum();
        progress.phase("ingesting", Some(total), true);
        let start = now();
        let results: Vec<(Vec<Extent>, bool)> = crate::pool::install(|| {
            files
                .par_iter()
                .map(|job| {
                    if progress.cancelled() {
                        return Err(StoreError::Interrupted);
                    }
                    if let Some((key, size, extents)) = cache.files.get(&job.rel)
                        && *key == job.key
                        && *size == job.key.size
                        && extents.iter().all(|x| match x {
                            Extent::Data { id, .. } => writer.has(id),
                            Extent::Hole { .. } => true,
                        })
                    {
                        progress.advance(job.key.size);
                        return Ok((extents.clone(), true));
                    }
                    let extents =
                        store_file(writer, &job.path, job.key.size, job.blocks, progress)?;
                    Ok((extents, false))
                })
                .collect::<Result<_>>()
        })?;

        let mut new_cache = StatCache {
            dir: dir.as_os_str().as_bytes().to_vec(),
            files: HashMap::with_capacity(files.len()),
        };
        for (job, (extents, hit)) in files.iter().zip(&results) {
            stats.unchanged_files += u64::from(*hit);
            stats.bytes += extents.iter().map(Extent::len).sum::<u64>();
            // Racy-clean rule: a file touched in the last second could
            // change again without its mtime moving; don't trust it later.
            if job.key.mtime < start - 1 && job.key.ctime < start - 1 {
                let size = extents.iter().map(Extent::len).sum();
                new_cache
                    .files
                    .insert(job.rel.clone(), (job.key, size, extents.clone()));
            }
        }

        progress.phase("writing trees", None, false);
        let root_entry = build(root, &results, writer)?;
        Ok((root_entry, stats, new_cache))
    }
}

impl Walk<'_> {
    fn dir(&mut self, path: &Path, rel: Vec<u8>, md: &fs::Metadata) -> Result<Node> {
        self.stats.dirs += 1;
        let meta = meta_of(path, md)?;
        let mut names: Vec<(Vec<u8>, PathBuf)> = Vec::new();
        for ent in fs::read_dir(path).at(path)? {
            let ent = ent.at(path)?;
            names.push((ent.file_name().as_bytes().to_vec(), ent.path()));
        }
        names.sort();
        let mut children = Vec::with_capacity(names.len());
        for (name, child) in names {
            let md = fs::symlink_metadata(&child).at(&child)?;
            let mut child_rel = rel.clone();
            if !child_rel.is_empty() {
                child_rel.push(b'/');
            }
            child_rel.extend_from_slice(&name);
            if let Some(node) = self.entry(&child, child_rel, &md)? {
                children.push((name, node));
            }
        }
        self.progress.advance(1);
        Ok(Node::Dir { meta, children })
    }

    fn entry(&mut self, path: &Path, rel: Vec<u8>, md: &fs::Metadata) -> Result<Option<Node>> {
        let ft = md.file_type();
        if ft.is_dir() {
            if self.skip == Some((md.dev(), md.ino())) {
                tracing::warn!("skipping {}: it is the vnfs store itself", path.display());
                return Ok(None);
            }
            return self.dir(path, rel, md).map(Some);
        }
        if ft.is_socket() {
            tracing::warn!(
                "skipping socket {} (sockets cannot be stored)",
                path.display()
            );
            self.stats.skipped.push(path.display().to_string());
            return Ok(None);
        }
        let meta = meta_of(path, md)?;
        if ft.is_file() {
            if md.nlink() > 1 {
                if let Some(first) = self.inodes.get(&(md.dev(), md.ino())) {
                    self.stats.others += 1;
                    return Ok(Some(Node::Other(
                        EntryKind::HardLink {
                            target: first.clone(),
                        },
                        meta,
                    )));
                }
                self.inodes.insert((md.dev(), md.ino()), rel.clone());
            }
            self.stats.files += 1;
            self.files.push(FileJob {
                path: path.to_path_buf(),
                rel,
                key: StatKey::of(md),
                blocks: md.blocks(),
            });
            return Ok(Some(Node::File {
                job: self.files.len() - 1,
                meta,
            }));
        }
        self.stats.others += 1;
        let kind = if ft.is_symlink() {
            let target = fs::read_link(path).at(path)?;
            EntryKind::Symlink {
                target: target.as_os_str().as_bytes().to_vec(),
            }
        } else if ft.is_char_device() || ft.is_block_device() {
            let rdev = md.rdev();
            let (major, minor) = (libc::major(rdev), libc::minor(rdev));
            if ft.is_char_device() {
                EntryKind::CharDev { major, minor }
            } else {
                EntryKind::BlockDev { major, minor }
            }
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else {
            tracing::warn!("skipping {}: unknown file type", path.display());
            self.stats.skipped.push(path.display().to_string());
            return Ok(None);
        };
        Ok(Some(Node::Other(kind, meta)))
    }
}

/// Metadata of an entry, xattrs included (symlinks are not followed).
pub(crate) fn meta_of(path: &Path, md: &fs::Metadata) -> Result<Meta> {
    Ok(Meta {
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: md.mtime(),
        mtime_nsec: md.mtime_nsec() as u32,
        xattrs: read_xattrs(path)?,
    })
}

fn read_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e).at(path),
    };
    let mut out = Vec::new();
    for name in names {
        match xattr::get(path, &name) {
            Ok(Some(v)) => out.push((name.as_bytes().to_vec(), v)),
            Ok(None) => {}
            Err(e) if unsupported(&e) => {}
            Err(e) => {
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        e.kind(),
                        format!("reading xattr {}: {e}", name.to_string_lossy()),
                    ),
                });
            }
        }
    }
    out.sort();
    Ok(out)
}

fn unsupported(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENODATA))
}

/// Segments below this are read whole and cut in memory.
const IN_MEMORY: u64 = 4 << 20;

/// Reads a file's content, stores its chunks and returns its extents.
/// Holes (sparse regions) are kept as holes.
pub fn store_file(
    writer: &Writer<'_>,
    path: &Path,
    size: u64,
    blocks: u64,
    progress: &dyn Progress,
) -> Result<Vec<Extent>> {
    let file = open_for_read(path)?;
    let mut extents = Vec::new();
    let mut done = 0u64;
    for seg in segments(&file, size, blocks) {
        match seg {
            Segment::Hole(len) => {
                extents.push(Extent::Hole { len });
                progress.advance(len);
            }
            Segment::Data(offset, len) => {
                // Per segment, so Ctrl-C does not wait for a large file.
                if progress.cancelled() {
                    return Err(StoreError::Interrupted);
                }
                let before = extents.len();
                store_segment(writer, &file, path, offset, len, &mut extents)?;
                let got: u64 = extents[before..].iter().map(Extent::len).sum();
                progress.advance(got);
                if got != len {
                    tracing::warn!(
                        "{} changed size while being read; stored what was read",
                        path.display()
                    );
                    done += got;
                    break;
                }
            }
        }
        done += seg.len();
    }
    let _ = done;
    Ok(extents)
}

fn open_for_read(path: &Path) -> Result<File> {
    let open = |flags| {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | flags)
            .open(path)
    };
    // O_NOATIME spares a metadata write per file, but only an owner (or
    // root) may ask for it.
    match open(libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0).at(path),
        r => r.at(path),
    }
}

fn store_segment(
    writer: &Writer<'_>,
    file: &File,
    path: &Path,
    offset: u64,
    len: u64,
    out: &mut Vec<Extent>,
) -> Result<()> {
    let mut put = |data: Vec<u8>| -> Result<()> {
        let len = data.len() as u64;
        let id = writer.put(ObjectKind::Chunk, &data)?;
        out.push(Extent::Data { id, len });
        Ok(())
    };
    if len <= IN_MEMORY {
        let mut buf = vec![0u8; len as usize];
        let n = read_full_at(file, &mut buf, offset).at(path)?;
        buf.truncate(n);
        let mut pos = 0;
        for l in chunker::cut(&buf) {
            put(buf[pos..pos + l].to_vec())?;
            pos += l;
        }
        return Ok(());
    }
    let reader = PosReader {
        file,
        pos: offset,
        end: offset + len,
    };
    chunker::cut_stream(reader, put, |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads until `buf` is full or end of file; returns the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

struct PosReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl std::io::Read for PosReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment {
    Data(u64, u64),
    Hole(u64),
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::Data(_, l) | Segment::Hole(l) => *l,
        }
    }
}

/// Splits a file into data and hole segments with SEEK_DATA/SEEK_HOLE.
/// Only files with fewer allocated blocks than their size can have holes,
/// which spares two syscalls for nearly every file.
fn segments(file: &File, size: u64, blocks: u64) -> Vec<Segment> {
    use rustix::fs::{SeekFrom, seek};
    if size == 0 {
        return Vec::new();
    }
    if blocks.saturating_mul(512) >= size {
        return vec![Segment::Data(0, size)];
    }
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let data = match seek(file, SeekFrom::Data(pos)) {
            Ok(d) => d.min(size),
            Err(e) if e == rustix::io::Errno::NXIO => size,
            Err(_) => return vec![Segment::Data(0, size)],
        };
        if data > pos {
            out.push(Segment::Hole(data - pos));
        }
        if data >= size {
            break;
        }
        let hole = match seek(file, SeekFrom::Hole(data)) {
            Ok(h) => h.min(size),
            Err(_) => size,
        };
        out.push(Segment::Data(data, hole - data));
        pos = hole;
    }
    out
}

fn build(node: Node, results: &[(Vec<Extent>, bool)], writer: &Writer<'_>) -> Result<Entry> {
    let (kind, meta) = match node {
        Node::Dir { meta, children } => {
            let mut entries = Vec::with_capacity(children.len());
            for (name, child) in children {
                let mut e = build(child, results, writer)?;
                e.name = name;
                entries.push(e);
            }
            let tree = writer.put(ObjectKind::Tree, &Tree { entries }.encode())?;
            (EntryKind::Dir { tree }, meta)
        }
        Node::File { job, meta } => {
            let extents = results[job].0.clone();
            let size = extents.iter().map(Extent::len).sum();
            (EntryKind::File { size, extents }, meta)
        }
        Node::Other(kind, meta) => (kind, meta),
    };
    Ok(Entry {
        name: Vec::new(),
        kind,
        meta,
    })
}

/// The current time in seconds since the epoch, as commits record it.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
