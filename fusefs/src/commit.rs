//! Unmount makes a new version: the lower commit's trees, with every upper
//! directory merged over its lower source. Only upper files with content
//! of their own are read and re-chunked (a metadata-only copy reuses the
//! stored chunk list); a directory with no upper counterpart keeps its tree
//! id, so the work follows the size of the change, not of the image.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use vnfs_store::{Commit, Entry, EntryKind, NoProgress, ObjectId, ObjectKind, Store, Tree, Writer};

use crate::error::{IoContext, Result};
use crate::lower::find;
use crate::sys;
use crate::upper::{self, Layout};

/// What a commit of the upper layer did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CommitSummary {
    /// The new commit; `None` when the view equals the mounted commit.
    pub id: Option<ObjectId>,
    /// Regular files read and chunked.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Regular files whose metadata changed but not their content (their
    /// stored chunks are reused).
    pub metadata_only: u64,
    /// Names deleted (whiteouts).
    pub deleted: u64,
    /// Upper entries skipped (sockets cannot be stored).
    pub skipped: Vec<String>,
    /// The head the new version follows when that is not the mounted
    /// commit (an older version was mounted, or the image moved on).
    pub follows: Option<ObjectId>,
}

struct Builder<'a> {
    store: &'a Store,
    writer: &'a Writer<'a>,
    root: Entry,
    links: HashMap<(u64, u64), Vec<u8>>,
    trees: HashMap<ObjectId, Arc<Tree>>,
    sum: CommitSummary,
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a.is_empty() {
        return b.to_vec();
    }
    [a, b"/", b].concat()
}

impl Builder<'_> {
    fn tree(&mut self, id: &ObjectId) -> Result<Arc<Tree>> {
        if let Some(t) = self.trees.get(id) {
            return Ok(t.clone());
        }
        let t = Arc::new(self.store.read_tree(id)?);
        self.trees.insert(*id, t.clone());
        Ok(t)
    }

    /// The lower entry at a root-relative path.
    fn lower_entry(&mut self, path: &[u8]) -> Result<Option<Entry>> {
        let mut cur = self.root.clone();
        if !path.is_empty() {
            for comp in path.split(|&b| b == b'/') {
                let EntryKind::Dir { tree } = cur.kind else {
                    return Ok(None);
                };
                let t = self.tree(&tree)?;
                match find(&t, comp) {
                    Some(e) => cur = e.clone(),
                    None => return Ok(None),
                }
            }
        }
        Ok(Some(cur))
    }

    fn lower_dir(&mut self, path: &[u8]) -> Result<Option<Arc<Tree>>> {
        match self.lower_entry(path)? {
            Some(Entry {
                kind: EntryKind::Dir { tree },
                ..
            }) => Ok(Some(self.tree(&tree)?)),
            _ => Ok(None),
        }
    }

    /// The stored content of a metadata-only copy (`src`: its lower path).
    fn lower_content(&mut self, src: &[u8], upper: &Path) -> Result<EntryKind> {
        let mut e = self.lower_entry(src)?;
        if let Some(Entry {
            kind: EntryKind::HardLink { target },
            ..
        }) = &e
        {
            let target = target.clone();
            e = self.lower_entry(&target)?;
        }
        match e {
            Some(Entry {
                kind: kind @ EntryKind::File { .. },
                ..
            }) => Ok(kind),
            _ => Err(crate::error::Error::BadState {
                path: upper.to_path_buf(),
                why: format!(
                    "its content is said to be /{} of the mounted commit, which is not a regular file",
                    String::from_utf8_lossy(src)
                ),
            }),
        }
    }

    fn dir(&mut self, path: &Path, rel: &[u8], name: &[u8]) -> Result<Entry> {
        let st = sys::lstat(path).at(path)?;
        let meta = upper::read_meta(path, &st).at(path)?;
        let mut entries: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
        if let Some(src) = upper::redirect_of(path).at(path)?
            && let Some(tree) = self.lower_dir(&src)?
        {
            for e in &tree.entries {
                entries.insert(e.name.clone(), e.clone());
            }
        }
        let mut names: Vec<Vec<u8>> = fs::read_dir(path)
            .at(path)?
            .map(|d| d.map(|d| d.file_name().as_bytes().to_vec()))
            .collect::<std::io::Result<_>>()
            .at(path)?;
        names.sort();
        for n in names {
            let cp = path.join(OsStr::from_bytes(&n));
            let st = sys::lstat(&cp).at(&cp)?;
            if sys::is_whiteout(&st) {
                if entries.remove(&n).is_some() {
                    self.sum.deleted += 1;
                }
                continue;
            }
            let crel = join(rel, &n);
            let ft = st.st_mode & libc::S_IFMT;
            let kind = match ft {
                libc::S_IFDIR => {
                    let e = self.dir(&cp, &crel, &n)?;
                    entries.insert(n, e);
                    continue;
                }
                libc::S_IFREG => {
                    let key = (st.st_dev, st.st_ino);
                    match self.links.get(&key) {
                        Some(first) if st.st_nlink > 1 => EntryKind::HardLink {
                            target: first.clone(),
                        },
                        _ => {
                            if st.st_nlink > 1 {
                                self.links.insert(key, crel.clone());
                            }
                            if let Some(src) = upper::metacopy_of(&cp).at(&cp)? {
                                self.sum.metadata_only += 1;
                                let kind = self.lower_content(&src, &cp)?;
                                let meta = upper::read_meta(&cp, &st).at(&cp)?;
                                entries.insert(
                                    n.clone(),
                                    Entry {
                                        name: n,
                                        kind,
                                        meta,
                                    },
                                );
                                continue;
                            }
                            let size = st.st_size as u64;
                            let extents = vnfs_store::ingest::store_file(
                                self.writer,
                                &cp,
                                size,
                                st.st_blocks as u64,
                                &NoProgress,
                            )?;
                            self.sum.files += 1;
                            self.sum.bytes += size;
                            EntryKind::File { size, extents }
                        }
                    }
                }
                libc::S_IFLNK => EntryKind::Symlink {
                    target: sys::readlink(&cp).at(&cp)?,
                },
                libc::S_IFCHR | libc::S_IFBLK => {
                    let (major, minor) = sys::split_dev(st.st_rdev);
                    if ft == libc::S_IFCHR {
                        EntryKind::CharDev { major, minor }
                    } else {
                        EntryKind::BlockDev { major, minor }
                    }
                }
                libc::S_IFIFO => EntryKind::Fifo,
                _ => {
                    self.sum
                        .skipped
                        .push(String::from_utf8_lossy(&crel).into_owned());
                    continue;
                }
            };
            let meta = upper::read_meta(&cp, &st).at(&cp)?;
            entries.insert(
                n.clone(),
                Entry {
                    name: n,
                    kind,
                    meta,
                },
            );
        }
        let tree = Tree {
            entries: entries.into_values().collect(),
        };
        let id = self.writer.put(ObjectKind::Tree, &tree.encode())?;
        Ok(Entry {
            name: name.to_vec(),
            kind: EntryKind::Dir { tree: id },
            meta,
        })
    }
}

/// Adjusts the metadata a new version inherits from the mounted one, given
/// the upper layer's directory (what the edits wrote) and the mounted
/// commit: e.g. the package list, read again from the edited image.
pub type MetadataEdit<'a> = &'a dyn Fn(&Path, &ObjectId, &mut BTreeMap<String, String>);

/// Commits the upper layer of `layout` over `lower` as a new version of
/// `name`. Its parent is the image's head when the ref moves, under the
/// refs lock: `lower` itself, or a newer version (an older one was
/// mounted, or the image moved on meanwhile), which then stays in the
/// history ([`CommitSummary::follows`]); `lower` when the name is gone.
/// Makes no commit when nothing differs from `lower`.
pub fn commit_upper(
    store: &Store,
    layout: &Layout,
    lower: &ObjectId,
    name: &str,
    message: &str,
    edit: Option<MetadataEdit<'_>>,
) -> Result<CommitSummary> {
    let commit = store.read_commit(lower)?;
    let writer = store.writer()?;
    let mut b = Builder {
        store,
        writer: &writer,
        root: commit.root.clone(),
        links: HashMap::new(),
        trees: HashMap::new(),
        sum: CommitSummary::default(),
    };
    let root = b.dir(&layout.upper(), b"", b"")?;
    let mut sum = std::mem::take(&mut b.sum);
    if root == commit.root {
        return Ok(sum);
    }
    let mut metadata = commit.metadata.clone();
    if let Some(edit) = edit {
        edit(&layout.upper(), lower, &mut metadata);
    }
    let mut follows = None;
    let id = store.update_ref(name, |current| {
        follows = current.filter(|c| c != lower);
        let commit = Commit {
            root,
            parents: vec![current.unwrap_or(*lower)],
            timestamp: vnfs_store::ingest::now(),
            message: message.to_string(),
            metadata,
        };
        let id = writer.put(ObjectKind::Commit, &commit.encode())?;
        // Durable before the ref moves.
        writer.flush()?;
        Ok(id)
    })?;
    sum.id = Some(id);
    sum.follows = follows;
    Ok(sum)
}

/// Pending edits of an upper layer, for `vnfs mounts`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Pending {
    /// Non-directory entries written or changed.
    pub changed: u64,
    /// Bytes of regular files with content in the upper layer (a
    /// metadata-only copy counts none).
    pub bytes: u64,
    /// Deletions (whiteouts).
    pub deleted: u64,
}

/// Counts what the upper layer holds.
pub fn pending(layout: &Layout) -> Result<Pending> {
    fn walk(p: &Path, out: &mut Pending) -> Result<()> {
        for d in fs::read_dir(p).at(p)? {
            let d = d.at(p)?;
            let cp = d.path();
            let st = sys::lstat(&cp).at(&cp)?;
            if sys::is_whiteout(&st) {
                out.deleted += 1;
            } else if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                walk(&cp, out)?;
            } else {
                out.changed += 1;
                if st.st_mode & libc::S_IFMT == libc::S_IFREG
                    && upper::metacopy_of(&cp).at(&cp)?.is_none()
                {
                    out.bytes += st.st_size as u64;
                }
            }
        }
        Ok(())
    }
    let mut out = Pending::default();
    let up = layout.upper();
    if up.exists() {
        walk(&up, &mut out)?;
    }
    Ok(out)
}
