//! How a rendered image (and, through the CLI, an exported capsule)
//! reaches the path the user named, without ever destroying what was there
//! by mistake.
//!
//! - A **regular file, or a name that does not exist yet**, is written as a
//!   temporary file created exclusively (random name, `O_EXCL`, mode 0600)
//!   in the destination's directory, synced, given its final mode (an
//!   existing file's, else 0666 less the umask) and renamed over the
//!   destination. A failed or interrupted write removes the temporary file
//!   and leaves the destination as it was.
//! - A **character or block device, FIFO or socket** is written into
//!   directly: no temporary file, no rename (`-o /dev/null`, a FIFO another
//!   program reads, a tape or a partition all work).
//! - A **symlink** is followed: the temporary file goes into the directory
//!   of the file it points to, and is renamed onto that file, so the link
//!   stays a link. As the kernel's `fs.protected_symlinks` does, a link in
//!   a sticky world-writable directory (`/tmp`) owned by neither the caller
//!   nor the directory's owner is refused, so another user cannot point a
//!   root export at `/etc/shadow`.
//! - A rename never replaces a directory or a non-regular file that is
//!   there when the rename is prepared (one created in the instant between
//!   that check and `rename(2)` could still be replaced), and replaces a
//!   regular file only when [`OutputOptions::replace`] allows it.
//!
//! The destination's name is checked before anything is written (its
//! directory exists and is writable, the name fits the file system), so a
//! long render does not fail at the end for a reason known at the start.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Errors opening or finishing an output. Each names the path as the user
/// gave it (and the file a symlink led to, when that is where it failed).
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// An I/O error on the destination or its directory.
    #[error("{}: {source}", path.display())]
    Io {
        /// The destination, or its directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The destination exists and [`OutputOptions::replace`] is off.
    #[error("{} already exists", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// The destination is something that must not be written or replaced
    /// (a directory; a non-regular file that appeared during the write).
    #[error("{}: {why}", path.display())]
    Refused {
        /// The destination.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The cancel flag was set (Ctrl-C, SIGTERM): nothing was renamed into
    /// place and the temporary file is removed.
    #[error("interrupted; {} was not written", path.display())]
    Interrupted {
        /// The destination.
        path: PathBuf,
    },
}

/// How to open an output.
#[derive(Clone, Copy, Debug, Default)]
pub struct OutputOptions {
    /// Replace an existing regular file at the destination; when off, an
    /// existing file is refused ([`OutputError::Exists`]) before anything
    /// is written, and the final rename does not replace one that appeared
    /// meanwhile.
    pub replace: bool,
    /// Checked on every write and before the rename: once set (typically
    /// by a SIGINT/SIGTERM handler), writing stops with an error and the
    /// temporary file is removed.
    pub cancel: Option<&'static AtomicBool>,
}

/// What a destination is, symlinks followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Nothing by that name yet: created through a temporary file.
    New,
    /// A regular file: replaced through a temporary file.
    Regular,
    /// A directory: refused.
    Directory,
    /// A character device: written directly.
    CharDevice,
    /// A block device: written directly.
    BlockDevice,
    /// A FIFO: written directly (opening it waits for a reader).
    Fifo,
    /// A Unix socket: connected to and written.
    Socket,
}

impl Kind {
    /// What a destination path is, symlinks followed, without opening it
    /// (so a caller can refuse a FIFO before waiting for its reader).
    pub fn of(path: &Path) -> Result<Kind, OutputError> {
        let dest = follow_symlinks(path)?;
        Ok(kind_at(&dest)?.0)
    }

    /// Whether the output goes through a temporary file (which an
    /// interrupted run must remove).
    pub fn is_temporary(self) -> bool {
        matches!(self, Kind::New | Kind::Regular)
    }

    /// Whether a format that writes at any offset (squashfs) can use it.
    pub fn is_seekable(self) -> bool {
        matches!(self, Kind::New | Kind::Regular | Kind::BlockDevice)
    }

    /// A name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::New | Kind::Regular => "regular file",
            Kind::Directory => "directory",
            Kind::CharDevice => "character device",
            Kind::BlockDevice => "block device",
            Kind::Fifo => "FIFO",
            Kind::Socket => "socket",
        }
    }
}

/// The kind of the (already resolved) `dest` and, for a regular file, its
/// permission bits.
fn kind_at(dest: &Path) -> Result<(Kind, u32), OutputError> {
    let m = match fs::symlink_metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Kind::New, 0)),
        Err(source) => {
            return Err(OutputError::Io {
                path: dest.to_path_buf(),
                source,
            });
        }
    };
    let t = m.file_type();
    let kind = if t.is_dir() {
        Kind::Directory
    } else if t.is_char_device() {
        Kind::CharDevice
    } else if t.is_block_device() {
        Kind::BlockDevice
    } else if t.is_fifo() {
        Kind::Fifo
    } else if t.is_socket() {
        Kind::Socket
    } else if t.is_symlink() {
        // Links were followed before: this one appeared since.
        return Err(OutputError::Refused {
            path: dest.to_path_buf(),
            why: "became a symbolic link; not replaced".into(),
        });
    } else {
        Kind::Regular
    };
    // Permission bits only: setuid, setgid and sticky bits of a replaced
    // file must not pass to new content.
    Ok((kind, m.permissions().mode() & 0o777))
}

/// Where the bytes go.
enum Sink {
    /// A temporary file in the destination's directory, renamed at the end.
    Temp {
        file: tempfile::NamedTempFile,
        /// The final mode.
        mode: u32,
    },
    /// A device or FIFO, written in place.
    Direct(File),
    /// A listening Unix stream socket, written through a connection.
    Socket(UnixStream),
}

/// An output being written; see the module documentation. Dropping it
/// without [`Output::commit`] removes a temporary file.
pub struct Output {
    /// The path as given, for messages.
    shown: PathBuf,
    /// Where the bytes end up: `shown` with symlinks followed.
    dest: PathBuf,
    kind: Kind,
    sink: Sink,
    opts: OutputOptions,
    /// Bytes written so far, and how far write-back has been started.
    written: u64,
    started: u64,
}

/// How often the kernel is asked to start writing back a temporary file,
/// so the final fsync waits only for the tail (the store's pack writer
/// does the same).
const WRITEBACK_EVERY: u64 = 16 << 20;

/// Longest symlink chain followed (the kernel's own limit).
const MAX_SYMLINKS: usize = 40;

impl Output {
    /// Opens `path` for writing as the module documentation describes. A
    /// FIFO blocks here until a reader opens it.
    pub fn create(path: &Path, opts: OutputOptions) -> Result<Output, OutputError> {
        let dest = follow_symlinks(path)?;
        let io_err = |source| OutputError::Io {
            path: dest.clone(),
            source,
        };
        let (kind, mode) = kind_at(&dest)?;
        let sink = match kind {
            Kind::Directory => {
                return Err(OutputError::Refused {
                    path: path.to_path_buf(),
                    why: "is a directory".into(),
                });
            }
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => {
                // No O_TRUNC, no O_CREAT: a device or FIFO is used as it
                // is. O_NOFOLLOW and the type check of what was opened
                // refuse a name swapped for a link or a regular file since
                // it was checked.
                let file = fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&dest)
                    .map_err(io_err)?;
                let t = file.metadata().map_err(io_err)?.file_type();
                let same = match kind {
                    Kind::CharDevice => t.is_char_device(),
                    Kind::BlockDevice => t.is_block_device(),
                    _ => t.is_fifo(),
                };
                if !same {
                    return Err(OutputError::Refused {
                        path: path.to_path_buf(),
                        why: "changed type while it was opened; not written".into(),
                    });
                }
                Sink::Direct(file)
            }
            Kind::Socket => Sink::Socket(UnixStream::connect(&dest).map_err(io_err)?),
            Kind::Regular if !opts.replace => {
                return Err(OutputError::Exists {
                    path: path.to_path_buf(),
                });
            }
            Kind::Regular => Sink::Temp {
                file: temp_beside(&dest)?,
                mode,
            },
            Kind::New => Sink::Temp {
                file: temp_beside(&dest)?,
                mode: 0o666 & !umask(),
            },
        };
        Ok(Output {
            shown: path.to_path_buf(),
            dest,
            kind,
            sink,
            opts,
            written: 0,
            started: 0,
        })
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        &self.shown
    }

    /// What the destination is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The file a seekable format (squashfs) can write at any offset: the
    /// temporary file or a block device; `None` for a character device,
    /// FIFO or socket.
    pub fn seekable_file(&self) -> Option<&File> {
        match &self.sink {
            Sink::Temp { file, .. } => Some(file.as_file()),
            Sink::Direct(file) if self.kind == Kind::BlockDevice => Some(file),
            _ => None,
        }
    }

    /// The cancel flag, for work that does not write through [`Write`]
    /// (squashfs writes its file itself).
    pub fn cancel_flag(&self) -> Option<&'static AtomicBool> {
        self.opts.cancel
    }

    /// Whether the cancel flag is set.
    pub fn cancelled(&self) -> bool {
        self.opts.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// The error for a cancelled output.
    pub fn interrupted(&self) -> OutputError {
        OutputError::Interrupted {
            path: self.shown.clone(),
        }
    }

    /// Finishes: flushes and syncs, then (for a temporary file) sets the
    /// final mode and renames it onto the destination. Returns the path
    /// written (symlinks followed).
    pub fn commit(mut self) -> Result<PathBuf, OutputError> {
        if self.cancelled() {
            return Err(self.interrupted());
        }
        let io_err = |source| OutputError::Io {
            path: self.shown.clone(),
            source,
        };
        match &mut self.sink {
            Sink::Direct(file) => {
                file.flush().map_err(io_err)?;
                // Character devices and FIFOs have nothing to sync (fsync
                // fails on many of them); a partition does.
                if self.kind == Kind::BlockDevice {
                    file.sync_all().map_err(io_err)?;
                }
                Ok(self.dest)
            }
            Sink::Socket(s) => {
                s.flush().map_err(io_err)?;
                Ok(self.dest)
            }
            Sink::Temp { .. } => self.rename_into_place(),
        }
    }

    fn rename_into_place(self) -> Result<PathBuf, OutputError> {
        let Sink::Temp { file, mode } = self.sink else {
            return Ok(self.dest);
        };
        let io_err = |source| OutputError::Io {
            path: self.shown.clone(),
            source,
        };
        file.as_file().sync_all().map_err(io_err)?;
        file.as_file()
            .set_permissions(Permissions::from_mode(mode))
            .map_err(io_err)?;
        let mut file = file;
        // Twice at most: a name that appears between the check and a
        // no-replace rename is checked again.
        for _ in 0..2 {
            let result = match kind_at(&self.dest)?.0 {
                Kind::New => file.persist_noclobber(&self.dest),
                Kind::Regular if self.opts.replace => file.persist(&self.dest),
                Kind::Regular => {
                    return Err(OutputError::Exists {
                        path: self.shown.clone(),
                    });
                }
                other => {
                    return Err(OutputError::Refused {
                        path: self.shown.clone(),
                        why: format!(
                            "became a {} while it was written; not replaced",
                            other.name()
                        ),
                    });
                }
            };
            match result {
                Ok(_) => {
                    sync_parent(&self.dest);
                    return Ok(self.dest);
                }
                Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => file = e.file,
                // File systems with neither RENAME_NOREPLACE nor hard links
                // (exFAT, some CIFS and FUSE mounts): a plain rename onto
                // the name, checked again just before.
                Err(e)
                    if matches!(
                        e.error.raw_os_error(),
                        Some(libc::EPERM | libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS)
                    ) && kind_at(&self.dest)?.0 == Kind::New =>
                {
                    return match e.file.persist(&self.dest) {
                        Ok(_) => {
                            sync_parent(&self.dest);
                            Ok(self.dest)
                        }
                        Err(e) => Err(io_err(e.error)),
                    };
                }
                // Dropping `e.file` removes the temporary file.
                Err(e) => return Err(io_err(e.error)),
            }
        }
        Err(OutputError::Exists { path: self.shown })
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cancelled() {
            return Err(io::Error::other(self.interrupted()));
        }
        let n = match &mut self.sink {
            // Through the File: NamedTempFile's own Write adds the
            // temporary path to errors, and the user never named it.
            Sink::Temp { file, .. } => file.as_file_mut().write(buf)?,
            Sink::Direct(file) => file.write(buf)?,
            Sink::Socket(s) => s.write(buf)?,
        };
        self.written += n as u64;
        if let Sink::Temp { file, .. } = &self.sink
            && self.written - self.started >= WRITEBACK_EVERY
        {
            start_writeback(file.as_file(), self.started, self.written - self.started);
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::Temp { file, .. } => file.as_file_mut().flush(),
            Sink::Direct(file) => file.flush(),
            Sink::Socket(s) => s.flush(),
        }
    }
}

/// Asks the kernel to start writing a range back; only a hint.
fn start_writeback(file: &File, from: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open fd; SYNC_FILE_RANGE_WRITE only schedules I/O
    // (its failure only means a longer fsync later).
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            from as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// `path` with symlinks in its last component followed (a relative target
/// is taken from the link's directory); a dangling link gives the path it
/// points to, which is then created.
fn follow_symlinks(path: &Path) -> Result<PathBuf, OutputError> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                refuse_foreign_link(&p, &m)?;
                let target = fs::read_link(&p).map_err(|source| OutputError::Io {
                    path: p.clone(),
                    source,
                })?;
                p = match p.parent() {
                    Some(dir) => dir.join(target),
                    None => target,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(OutputError::Io {
        path: path.to_path_buf(),
        source: io::Error::from_raw_os_error(libc::ELOOP),
    })
}

/// The kernel's `fs.protected_symlinks` rule, applied because the link is
/// followed here rather than by the kernel: a link in a sticky,
/// world-writable directory is followed only when the caller or the
/// directory's owner owns it.
fn refuse_foreign_link(link: &Path, m: &fs::Metadata) -> Result<(), OutputError> {
    use std::os::unix::fs::MetadataExt;
    let dir = match link.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(d) = fs::metadata(dir) else {
        return Ok(());
    };
    let sticky_open = d.mode() & 0o1002 == 0o1002;
    let me = rustix::process::geteuid().as_raw();
    if sticky_open && m.uid() != me && m.uid() != d.uid() {
        return Err(OutputError::Refused {
            path: link.to_path_buf(),
            why: format!(
                "is a symbolic link owned by another user (uid {}) in the sticky, world-writable directory {}; not followed, as the kernel's protected_symlinks would not",
                m.uid(),
                dir.display()
            ),
        });
    }
    Ok(())
}

/// Creates the temporary file beside `dest`, after checking what would
/// make the final rename fail: the directory, and the name's length.
fn temp_beside(dest: &Path) -> Result<tempfile::NamedTempFile, OutputError> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir_err = |source| OutputError::Io {
        path: dir.to_path_buf(),
        source,
    };
    // Checked first so that an error names the directory, not the
    // temporary file that could not be made in it.
    if !fs::metadata(dir).map_err(dir_err)?.is_dir() {
        return Err(dir_err(io::Error::from_raw_os_error(libc::ENOTDIR)));
    }
    let name = dest.file_name().ok_or_else(|| OutputError::Refused {
        path: dest.to_path_buf(),
        why: "names no file".into(),
    })?;
    let max = rustix::fs::statvfs(dir).map(|s| s.f_namemax).unwrap_or(255);
    if name.len() as u64 > max {
        return Err(OutputError::Io {
            path: dest.to_path_buf(),
            source: io::Error::from_raw_os_error(libc::ENAMETOOLONG),
        });
    }
    // The temporary name shows what it will become, shortened so that it
    // fits wherever the final name fits.
    let shown = name.to_string_lossy();
    let short: String = shown.chars().take(40).collect();
    // Random name, O_CREAT|O_EXCL (a symlink planted at the name is not
    // followed: the open fails and another name is tried), mode 0600 until
    // complete. `make_in` rather than `tempfile_in`, whose errors carry the
    // temporary path the user never named.
    tempfile::Builder::new()
        .prefix(&format!(".{short}."))
        .suffix(".tmp")
        .make_in(dir, |path| {
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
        })
        .map_err(dir_err)
}

/// Makes a rename durable; a failure only weakens durability, as a crash
/// would at worst leave the old file.
fn sync_parent(dest: &Path) {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The process's umask, read without changing it (`umask(2)` can only
/// read by setting, which would race with other threads creating files).
fn umask() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn opts(replace: bool) -> OutputOptions {
        OutputOptions {
            replace,
            cancel: None,
        }
    }

    #[test]
    fn a_rename_that_cannot_happen_removes_the_temporary_file() {
        let t = tempfile::tempdir().unwrap();
        // What appears at the destination while the output is written:
        // never replaced, and the temporary file goes away.
        let dest = t.path().join("x");
        for (appears, replace, expect) in [
            ("dir", true, "became a directory"),
            ("fifo", true, "became a FIFO"),
            ("file", false, "already exists"),
        ] {
            let mut out = Output::create(&dest, opts(replace)).unwrap();
            out.write_all(b"data").unwrap();
            match appears {
                "dir" => fs::create_dir(&dest).unwrap(),
                "fifo" => {
                    let p = std::ffi::CString::new(dest.to_str().unwrap()).unwrap();
                    // SAFETY: a valid NUL-terminated path.
                    assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o600) }, 0);
                }
                _ => fs::write(&dest, "theirs").unwrap(),
            }
            let e = out.commit().unwrap_err().to_string();
            assert!(e.contains(expect), "{appears}: {e}");
            assert_eq!(names(t.path()), ["x"], "{appears}: temporary file left");
            match appears {
                "dir" => fs::remove_dir(&dest).unwrap(),
                "file" => {
                    assert_eq!(fs::read_to_string(&dest).unwrap(), "theirs");
                    fs::remove_file(&dest).unwrap();
                }
                _ => fs::remove_file(&dest).unwrap(),
            }
        }
    }

    #[test]
    fn dropping_or_cancelling_removes_the_temporary_file() {
        static CANCEL: AtomicBool = AtomicBool::new(false);
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("x");
        fs::write(&dest, "old").unwrap();
        let mut out = Output::create(&dest, opts(true)).unwrap();
        out.write_all(b"new").unwrap();
        drop(out);
        assert_eq!(names(t.path()), ["x"]);
        let mut out = Output::create(
            &dest,
            OutputOptions {
                replace: true,
                cancel: Some(&CANCEL),
            },
        )
        .unwrap();
        out.write_all(b"new").unwrap();
        CANCEL.store(true, Ordering::SeqCst);
        assert!(out.write_all(b"more").is_err(), "writes after the cancel");
        assert!(matches!(out.commit(), Err(OutputError::Interrupted { .. })));
        assert_eq!(names(t.path()), ["x"]);
        assert_eq!(fs::read_to_string(&dest).unwrap(), "old");
    }

    #[test]
    fn foreign_links_in_sticky_world_writable_directories_are_refused() {
        if !rustix::process::geteuid().is_root() {
            panic!("this test needs root (a link owned by another user)");
        }
        let t = tempfile::tempdir().unwrap();
        let shared = t.path().join("tmp");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, Permissions::from_mode(0o1777)).unwrap();
        let victim = t.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let link = shared.join("node.vnfs");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(1234), Some(1234)).unwrap();
        let e = Output::create(&link, opts(true)).err().expect("refused");
        assert!(e.to_string().contains("protected_symlinks"), "{e}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        // The caller's own link there is followed.
        std::os::unix::fs::lchown(&link, Some(0), Some(0)).unwrap();
        let mut out = Output::create(&link, opts(true)).unwrap();
        out.write_all(b"new").unwrap();
        out.commit().unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "new");
        // A replaced setuid file does not pass the bit on.
        fs::set_permissions(&victim, Permissions::from_mode(0o4755)).unwrap();
        let mut out = Output::create(&victim, opts(true)).unwrap();
        out.write_all(b"newer").unwrap();
        out.commit().unwrap();
        assert_eq!(
            fs::metadata(&victim).unwrap().permissions().mode() & 0o7777,
            0o755
        );
    }

    #[test]
    fn modes_and_symlinks() {
        let t = tempfile::tempdir().unwrap();
        // A replaced file keeps its mode; a new one gets 0666 less the umask.
        let kept = t.path().join("kept");
        fs::write(&kept, "old").unwrap();
        fs::set_permissions(&kept, Permissions::from_mode(0o640)).unwrap();
        let fresh = t.path().join("fresh");
        for p in [&kept, &fresh] {
            let mut out = Output::create(p, opts(true)).unwrap();
            out.write_all(b"new").unwrap();
            out.commit().unwrap();
        }
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&kept), 0o640);
        assert_eq!(mode(&fresh), 0o666 & !umask());
        // A chain of relative symlinks ends at the file, which is replaced;
        // the links stay.
        fs::create_dir(t.path().join("d")).unwrap();
        std::os::unix::fs::symlink("d/b", t.path().join("a")).unwrap();
        std::os::unix::fs::symlink("../kept", t.path().join("d/b")).unwrap();
        let mut out = Output::create(&t.path().join("a"), opts(true)).unwrap();
        out.write_all(b"through links").unwrap();
        assert_eq!(out.commit().unwrap(), t.path().join("d/../kept"));
        assert_eq!(fs::read_to_string(&kept).unwrap(), "through links");
        assert!(
            fs::symlink_metadata(t.path().join("a"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // A loop is an error, not a hang.
        std::os::unix::fs::symlink("loop", t.path().join("loop")).unwrap();
        assert!(Output::create(&t.path().join("loop"), opts(true)).is_err());
    }
}
