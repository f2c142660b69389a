//! Image rendering: a commit of the store written as a squashfs file
//! system, a newc cpio archive (an initramfs) or a pax tar archive.
//!
//! Every format is rendered straight from the store (file content is
//! streamed chunk by chunk; nothing is checked out first), in the store's
//! canonical walk order, with every timestamp taken from the commit, so the
//! same commit and options always give the same bytes. [`render`] writes
//! through [`output`]: a regular file goes to a temporary name in its
//! directory, synced and renamed over it, so a failed or killed run never
//! leaves a half-written image under the final name; a device or FIFO is
//! written directly.
//!
//! What each format can carry (see also `docs/images.md`):
//!
//! | | squashfs | cpio (newc) | tar (pax) |
//! | --- | --- | --- | --- |
//! | mtime | seconds (u32) | seconds (u32) | nanoseconds |
//! | xattrs | `user.`, `trusted.`, `security.` (ACLs in `system.` are dropped, counted) | none (newc has no field) | all, as `SCHILY.xattr.*` |
//! | holes | zero blocks are stored sparse | written as zeros | written as zeros |
//! | largest file | unlimited | 4 GiB − 1 | unlimited (pax `size`) |

pub mod compress;
pub mod cpio;
pub mod output;
pub mod squashfs;
pub mod tar;
pub mod walker;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use output::{Kind, Output, OutputError, OutputOptions};

use vnfs_store::{Entry, ObjectId, Progress, Store, StoreError};

/// An image format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A squashfs file system (loop-mountable; `unsquashfs` reads it).
    Squashfs,
    /// A newc ("SVR4 with no CRC") cpio archive, usable as an initramfs.
    Cpio,
    /// A POSIX pax tar archive with xattrs as `SCHILY.xattr.*` records.
    Tar,
}

/// A compressor for the image (squashfs: its block compressor; cpio and
/// tar: a filter around the whole stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// No compression (cpio and tar only).
    None,
    /// zstd (default level 3).
    Zstd,
    /// gzip (default level 6).
    Gzip,
    /// xz with CRC32 checks, as the kernel's decompressor expects (default level 6).
    Xz,
}

impl Compression {
    /// The level used when none is given.
    pub fn default_level(self) -> i32 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 3,
            Compression::Gzip | Compression::Xz => 6,
        }
    }

    /// Accepted levels, inclusive.
    pub fn level_range(self) -> (i32, i32) {
        match self {
            Compression::None => (0, 0),
            Compression::Zstd => (1, 22),
            Compression::Gzip | Compression::Xz => (1, 9),
        }
    }
}

/// How to render.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// Output format.
    pub format: Format,
    /// Compressor.
    pub compression: Compression,
    /// Compression level; `None` takes [`Compression::default_level`].
    pub level: Option<i32>,
    /// Worker threads for squashfs compression (0: one per core).
    pub threads: usize,
}

impl RenderOptions {
    /// The effective level, checked against the compressor's range.
    pub fn checked_level(&self) -> Result<i32> {
        let level = self.level.unwrap_or(self.compression.default_level());
        let (lo, hi) = self.compression.level_range();
        if self.level.is_some() && (level < lo || level > hi) {
            return Err(ImageError::Options(format!(
                "--level {level} is out of range for {} ({lo} to {hi})",
                format!("{:?}", self.compression).to_lowercase()
            )));
        }
        Ok(level)
    }
}

/// What a render wrote.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RenderStats {
    /// Entries written (the root included).
    pub entries: u64,
    /// Bytes of file content (logical, holes included).
    pub content_bytes: u64,
    /// Size of the image file.
    pub image_bytes: u64,
    /// Extended attributes the format could not carry (and so left out).
    pub xattrs_dropped: u64,
    /// The first of them, as `/path (name)`, so the warning can point at
    /// one.
    pub xattr_dropped_first: Option<String>,
    /// POSIX ACLs among them (`system.posix_acl_*`): without them a file's
    /// group permission bits show the ACL mask, which may grant more.
    pub acls_dropped: u64,
    /// Modification times the format's 32-bit unsigned field cannot hold
    /// (before 1970 or after 2106), written clamped (cpio, squashfs).
    pub mtimes_clamped: u64,
    /// The first of them: its `/path` and its time in seconds since the
    /// epoch (the caller formats it as a date).
    pub mtime_clamped_first: Option<(String, i64)>,
}

/// `/path (what)` for a warning, from a root-relative path (`.` is the root).
fn place(path: &[u8], what: &str) -> String {
    format!("{} ({what})", absolute(path))
}

/// `/path` from a root-relative path (`.` is the root).
fn absolute(path: &[u8]) -> String {
    let path = match path {
        b"." | b"./" => &b""[..],
        p => p,
    };
    format!("/{}", String::from_utf8_lossy(path))
}

impl RenderStats {
    /// Counts the entry at `path` if its mtime does not fit the unsigned
    /// 32-bit seconds field of cpio and squashfs (the writers clamp it).
    pub(crate) fn check_mtime(&mut self, path: &[u8], e: &Entry) {
        if (0..=i64::from(u32::MAX)).contains(&e.meta.mtime) {
            return;
        }
        self.mtimes_clamped += 1;
        if self.mtime_clamped_first.is_none() {
            self.mtime_clamped_first = Some((absolute(path), e.meta.mtime));
        }
    }

    /// Counts the extended attributes of the entry at `path` (root-relative)
    /// that `kept` rejects, and remembers the first one.
    pub(crate) fn drop_xattrs(&mut self, path: &[u8], e: &Entry, kept: impl Fn(&[u8]) -> bool) {
        for (name, _) in e.meta.xattrs.iter().filter(|(n, _)| !kept(n)) {
            self.xattrs_dropped += 1;
            if name.starts_with(b"system.posix_acl_") {
                self.acls_dropped += 1;
            }
            if self.xattr_dropped_first.is_none() {
                self.xattr_dropped_first = Some(place(path, &String::from_utf8_lossy(name)));
            }
        }
    }
}

/// Errors while rendering an image. Each names the path or object involved.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading the commit, a tree or a chunk failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the output failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The output (or temporary) file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An entry cannot be represented in the chosen format.
    #[error("{path}: cannot be written as {format}: {why}")]
    Unrepresentable {
        /// The entry's path in the image.
        path: String,
        /// The format.
        format: &'static str,
        /// Why.
        why: String,
    },
    /// The commit's trees are inconsistent (e.g. a hard link to nothing).
    #[error("{path}: {why}")]
    BadTree {
        /// The entry's path in the image.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The squashfs library failed.
    #[error("squashfs writer: {0}")]
    Squashfs(String),
    /// Opening or finishing the output (see [`output`]).
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The render was cancelled.
    #[error("interrupted")]
    Interrupted,
    /// Invalid options (format and compressor do not fit, bad level).
    #[error("{0}")]
    Options(String),
}

/// Result of image operations.
pub type Result<T> = std::result::Result<T, ImageError>;

/// The path write errors name while the output's own name is not known
/// ([`render_stream`] into any writer); [`render_into`] replaces it with
/// the output's path.
pub const OUTPUT: &str = "<output>";

impl ImageError {
    /// Names `path` in a write error that names the placeholder [`OUTPUT`].
    fn naming_output(self, path: &Path) -> ImageError {
        match self {
            ImageError::Io { path: p, source } if p == Path::new(OUTPUT) => ImageError::Io {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        }
    }
}

/// Attaches a path to an I/O error.
pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Renders `commit` to the path `out`, as [`output`] describes: a regular
/// file through a temporary file renamed into place (an existing file is
/// replaced), a device or FIFO directly, a symlink followed.
pub fn render(
    store: &Store,
    commit: &ObjectId,
    opts: &RenderOptions,
    out: &Path,
    progress: &dyn Progress,
) -> Result<RenderStats> {
    check_destination(opts, out)?;
    let mut output = Output::create(
        out,
        OutputOptions {
            replace: true,
            cancel: None,
        },
    )?;
    let stats = render_into(store, commit, opts, &mut output, progress)?;
    output.commit()?;
    Ok(stats)
}

/// Checks the options, and that the destination `out` can take the format
/// (squashfs needs a file or a block device), before the output is opened:
/// opening a FIFO waits for a reader.
pub fn check_destination(opts: &RenderOptions, out: &Path) -> Result<()> {
    opts.checked_level()?;
    if opts.format == Format::Squashfs {
        let kind = Kind::of(out)?;
        if !kind.is_seekable() && kind != Kind::Directory {
            return Err(not_seekable(out, kind));
        }
    }
    Ok(())
}

fn not_seekable(out: &Path, kind: Kind) -> ImageError {
    ImageError::Options(format!(
        "{}: squashfs cannot be written to a {} (it writes at any offset): \
         give a file or a block device",
        out.display(),
        kind.name()
    ))
}

/// Renders `commit` into an opened output; the caller commits it (or drops
/// it, which removes a temporary file). Squashfs needs a seekable output
/// (a file or a block device). Write errors name the output's path; a set
/// cancel flag stops the render with [`OutputError::Interrupted`].
pub fn render_into(
    store: &Store,
    commit: &ObjectId,
    opts: &RenderOptions,
    out: &mut Output,
    progress: &dyn Progress,
) -> Result<RenderStats> {
    opts.checked_level()?;
    let name = out.path().to_path_buf();
    let result = match opts.format {
        Format::Squashfs => {
            let Some(file) = out.seekable_file() else {
                return Err(not_seekable(&name, out.kind()));
            };
            let file = file.try_clone().map_err(io_at(&name))?;
            let cancel = out.cancel_flag();
            squashfs::write(store, commit, opts, file, cancel, progress)
        }
        Format::Cpio | Format::Tar => buffered_stream(store, commit, opts, out, progress),
    };
    if out.cancelled() {
        return Err(out.interrupted().into());
    }
    result.map_err(|e| e.naming_output(&name))
}

/// [`render_stream`] through a 1 MiB buffer, flushed.
fn buffered_stream(
    store: &Store,
    commit: &ObjectId,
    opts: &RenderOptions,
    out: &mut Output,
    progress: &dyn Progress,
) -> Result<RenderStats> {
    let mut w = io::BufWriter::with_capacity(1 << 20, out);
    let s = render_stream(store, commit, opts, &mut w, progress)?;
    w.flush().map_err(io_at(Path::new(OUTPUT)))?;
    Ok(s)
}

/// Renders a cpio or tar image of `commit` into a stream (e.g. stdout).
/// Squashfs needs a seekable file: use [`render`].
pub fn render_stream(
    store: &Store,
    commit: &ObjectId,
    opts: &RenderOptions,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<RenderStats> {
    let level = opts.checked_level()?;
    let image = walker::Image::load(store, commit)?;
    progress.phase("rendering", Some(image.content_bytes()), true);
    let mut counted = compress::Counting::new(out);
    let mut enc = compress::Encoder::new(&mut counted, opts.compression, level)
        .map_err(io_at(Path::new(OUTPUT)))?;
    let mut stats = match opts.format {
        Format::Cpio => cpio::write(store, &image, &mut enc, progress)?,
        Format::Tar => tar::write(store, &image, &mut enc, progress)?,
        Format::Squashfs => {
            return Err(ImageError::Options(
                "squashfs cannot be written to a stream; give an output file".into(),
            ));
        }
    };
    enc.finish().map_err(io_at(Path::new(OUTPUT)))?;
    stats.image_bytes = counted.count();
    progress.finish();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnfs_store::EntryKind;

    fn entry(xattrs: &[&[u8]], mtime: i64) -> Entry {
        Entry {
            name: b"f".to_vec(),
            kind: EntryKind::Fifo,
            meta: vnfs_store::Meta {
                mtime,
                xattrs: xattrs.iter().map(|n| (n.to_vec(), b"v".to_vec())).collect(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn dropped_xattrs_and_clamped_mtimes_are_counted_with_the_first_place() {
        let mut s = RenderStats::default();
        let storable = |n: &[u8]| n.starts_with(b"user.");
        s.drop_xattrs(
            b"etc/a",
            &entry(&[b"user.x", b"security.capability"], 0),
            storable,
        );
        s.drop_xattrs(
            b"srv",
            &entry(
                &[b"system.posix_acl_access", b"system.posix_acl_default"],
                0,
            ),
            storable,
        );
        assert_eq!(s.xattrs_dropped, 3);
        assert_eq!(s.acls_dropped, 2);
        assert_eq!(
            s.xattr_dropped_first.as_deref(),
            Some("/etc/a (security.capability)")
        );
        for (path, mtime) in [(&b"."[..], 5), (b"new", 1 << 33), (b"old", -1)] {
            s.check_mtime(path, &entry(&[], mtime));
        }
        assert_eq!(s.mtimes_clamped, 2);
        assert_eq!(s.mtime_clamped_first, Some(("/new".into(), 1 << 33)));
    }
}
