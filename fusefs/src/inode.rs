//! The in-memory inode table: one node per entry the kernel holds (or the
//! namespace needs), with where its content and metadata currently come
//! from.
//!
//! A node counts the kernel's lookups of it (`nlookup`) and is freed when
//! the kernel forgets it, unless it is a hard link (kept so every name of
//! the inode keeps one inode number) or a directory that still has nodes
//! below it. Everything a freed node knew can be read again from the upper
//! layer and the store, so a directory's child map may be partial; inode
//! numbers are never reused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};
use vnfs_store::Meta;

use crate::lower::FileData;
use crate::sys;

/// Content of an entry that has not been copied up.
#[derive(Clone, Debug)]
pub enum LowerKind {
    /// Regular file.
    File(Arc<FileData>),
    /// Directory (its lower content is `DirInfo::lower`).
    Dir,
    /// Symbolic link target.
    Symlink(Vec<u8>),
    /// Character device (major, minor).
    Char(u32, u32),
    /// Block device (major, minor).
    Block(u32, u32),
    /// Named pipe.
    Fifo,
}

/// An entry as the store has it.
#[derive(Clone, Debug)]
pub struct LowerInfo {
    /// What it is.
    pub kind: LowerKind,
    /// Its metadata.
    pub meta: Meta,
    /// Number of names (hard links) of the inode in the commit.
    pub nlink: u32,
}

/// Directory-only state.
#[derive(Debug, Default)]
pub struct DirInfo {
    /// Lower path whose entries show through, `None` when opaque.
    pub lower: Option<Vec<u8>>,
    /// Children that have a node, by name. Edits keep it current; freed
    /// children are removed from it.
    pub children: BTreeMap<Vec<u8>, u64>,
    /// True when `children` holds every entry (listed and nothing freed
    /// since); otherwise a name not in it is looked for on disk and in the
    /// store.
    pub complete: bool,
}

/// One inode.
#[derive(Debug)]
pub struct Node {
    /// Parent directory of the node's first name.
    pub parent: u64,
    /// First name (what `upper path` uses).
    pub name: Vec<u8>,
    /// Further names of a hard-linked file: (parent, name).
    pub more_names: Vec<(u64, Vec<u8>)>,
    /// File type bits (`S_IFREG`, ...).
    pub ftype: u32,
    /// `Some` while the entry lives only in the store.
    pub lower: Option<LowerInfo>,
    /// For a lower hard-link group: the group's first lower path.
    pub link_key: Option<Vec<u8>>,
    /// An upper regular file with other names (kept while the mount lives,
    /// so all its names report one inode number).
    pub upper_linked: bool,
    /// A metadata-only copy-up: the upper file holds the metadata, the
    /// content is still this store data (until the first write).
    pub data: Option<Arc<FileData>>,
    /// Set for directories.
    pub dir: Option<DirInfo>,
    /// No name left (it may still be open).
    pub unlinked: bool,
    /// Lookups the kernel counts on this node (see `forget`).
    pub nlookup: u64,
}

impl Node {
    /// True once the entry lives in the upper layer.
    pub fn is_upper(&self) -> bool {
        self.lower.is_none()
    }
    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.ftype == libc::S_IFDIR
    }
    /// True for a node kept whatever the kernel's count: a hard link that
    /// still has a name.
    pub fn pinned(&self) -> bool {
        !self.unlinked && (self.link_key.is_some() || self.upper_linked)
    }
    /// A fresh node with no lookups counted yet.
    pub fn new(parent: u64, name: Vec<u8>, ftype: u32) -> Node {
        Node {
            parent,
            name,
            more_names: Vec::new(),
            ftype,
            lower: None,
            link_key: None,
            upper_linked: false,
            data: None,
            dir: None,
            unlinked: false,
            nlookup: 0,
        }
    }
}

/// The FUSE file type for `S_IF*` bits.
pub fn file_type(ftype: u32) -> FileType {
    match ftype {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    let ns = nsec.clamp(0, 999_999_999) as u32;
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, ns)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::new(0, ns)
    }
}

/// Attributes of a lower entry. Directories report one link: the merged
/// view's subdirectory count is not known without listing it, and 1 tells
/// tools such as find not to rely on the count.
pub fn lower_attr(ino: u64, info: &LowerInfo) -> FileAttr {
    let (ftype, size, rdev) = match &info.kind {
        LowerKind::File(d) => (libc::S_IFREG, d.size, 0),
        LowerKind::Dir => (libc::S_IFDIR, 4096, 0),
        LowerKind::Symlink(t) => (libc::S_IFLNK, t.len() as u64, 0),
        LowerKind::Char(ma, mi) => (libc::S_IFCHR, 0, sys::encode_dev(*ma, *mi)),
        LowerKind::Block(ma, mi) => (libc::S_IFBLK, 0, sys::encode_dev(*ma, *mi)),
        LowerKind::Fifo => (libc::S_IFIFO, 0, 0),
    };
    let t = time(info.meta.mtime, i64::from(info.meta.mtime_nsec));
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: file_type(ftype),
        perm: (info.meta.mode & 0o7777) as u16,
        nlink: if ftype == libc::S_IFDIR {
            1
        } else {
            info.nlink
        },
        uid: info.meta.uid,
        gid: info.meta.gid,
        rdev,
        blksize: 65536,
        flags: 0,
    }
}

/// Attributes of an upper entry from its `stat`.
pub fn upper_attr(ino: u64, st: &libc::stat) -> FileAttr {
    let ftype = st.st_mode & libc::S_IFMT;
    let (ma, mi) = sys::split_dev(st.st_rdev);
    FileAttr {
        ino: INodeNo(ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        crtime: time(st.st_ctime, st.st_ctime_nsec),
        kind: file_type(ftype),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: if ftype == libc::S_IFDIR {
            1
        } else {
            st.st_nlink as u32
        },
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: sys::encode_dev(ma, mi),
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}
