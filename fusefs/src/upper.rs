//! The upper layer on disk: where edits live until unmount.
//!
//! `HOME/mounts/NAME/upper` mirrors the image's paths for everything that
//! changed. A deleted name is a whiteout (a character device 0:0, as
//! overlayfs does). Every upper directory says where its lower content
//! comes from in the `trusted.vnfs.redirect` attribute (a lower path, `/`
//! for the root); a directory without it is opaque (made by mkdir, so no
//! lower content shows through). Being explicit means a renamed directory
//! keeps its lower content and a new one never inherits any. New entries
//! are built under `work/` and renamed into place, so a crash never leaves
//! a half-copied file in the upper layer.
//!
//! A regular file whose metadata changed but whose content did not
//! (chmod, chown, utimens, xattrs, rename, link) is a metadata-only copy:
//! a sparse upper file of the right size with the metadata, naming the
//! lower file that holds its content in `trusted.vnfs.metacopy`. Reads come
//! from the store and commit reuses the stored chunk list; the first write
//! fills the content in and drops the attribute.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use vnfs_store::Meta;

use crate::sys;

/// Attribute naming an upper directory's lower source (a lower path).
pub const REDIRECT: &[u8] = b"trusted.vnfs.redirect";
/// Attribute of a metadata-only copy: the lower path of its content.
pub const METACOPY: &[u8] = b"trusted.vnfs.metacopy";
/// Prefix of the attributes the mount keeps for itself (never shown).
pub const PRIVATE_PREFIX: &[u8] = b"trusted.vnfs.";

/// True for an attribute name the mount keeps for itself.
pub fn is_private(name: &[u8]) -> bool {
    name.starts_with(PRIVATE_PREFIX)
}

/// The files of one image's mount state.
#[derive(Clone, Debug)]
pub struct Layout {
    /// `HOME/mounts/NAME`.
    pub dir: PathBuf,
}

static TMP: AtomicU64 = AtomicU64::new(0);

impl Layout {
    /// The state of image `name` under `home`.
    pub fn new(home: &Path, name: &str) -> Layout {
        Layout {
            dir: home.join("mounts").join(name),
        }
    }
    /// The upper directory tree.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    /// Scratch space on the same file system (for atomic renames).
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    /// The state file.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    /// The server's log.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("server.log")
    }
    /// A fresh name in the work directory.
    pub fn tmp(&self) -> PathBuf {
        let n = TMP.fetch_add(1, Ordering::Relaxed);
        self.work().join(format!("t{}-{n}", std::process::id()))
    }
}

/// Encodes a lower path for the redirect attribute (`/` + path).
pub fn encode_redirect(lower: &[u8]) -> Vec<u8> {
    let mut v = b"/".to_vec();
    v.extend_from_slice(lower);
    v
}

/// The lower source of an upper directory, `None` when opaque.
pub fn redirect_of(path: &Path) -> io::Result<Option<Vec<u8>>> {
    Ok(sys::get_xattr(path, REDIRECT)?.and_then(|v| v.strip_prefix(b"/").map(<[u8]>::to_vec)))
}

/// The lower path holding the content of a metadata-only copy, `None` for
/// a file with its own content.
pub fn metacopy_of(path: &Path) -> io::Result<Option<Vec<u8>>> {
    Ok(sys::get_xattr(path, METACOPY)?.and_then(|v| v.strip_prefix(b"/").map(<[u8]>::to_vec)))
}

/// The image metadata of an upper entry: permission bits, owner, mtime
/// and the image's own extended attributes.
pub fn read_meta(path: &Path, st: &libc::stat) -> io::Result<Meta> {
    let mut xattrs = Vec::new();
    for name in sys::list_xattrs(path)? {
        if is_private(&name) {
            continue;
        }
        if let Some(v) = sys::get_xattr(path, &name)? {
            xattrs.push((name, v));
        }
    }
    xattrs.sort();
    Ok(Meta {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
        xattrs,
    })
}

/// Gives an upper entry the image metadata `meta`. Owner first: chown
/// clears setuid bits, so the mode must come after it; mtime last.
pub fn apply_meta(path: &Path, meta: &Meta, symlink: bool) -> io::Result<()> {
    sys::lchown(path, meta.uid, meta.gid)?;
    if !symlink {
        sys::chmod(path, meta.mode)?;
    }
    for (k, v) in &meta.xattrs {
        sys::set_xattr(path, k, v, 0)?;
    }
    sys::utimens(
        path,
        Some(Some((meta.mtime, meta.mtime_nsec))),
        Some(Some((meta.mtime, meta.mtime_nsec))),
    )
}

/// Removes a directory tree (a dropped upper directory), not following
/// symlinks.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}
