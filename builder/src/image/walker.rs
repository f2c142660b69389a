//! The walk shared by every format: a commit's entries in canonical order
//! (depth first, names sorted by bytes), hard-link groups, and a reader
//! that streams a file's content from the store chunk by chunk.

use std::collections::HashMap;
use std::io::{self, Read};

use vnfs_store::{Entry, EntryKind, Extent, ObjectId, ObjectKind, Progress, Store};

use super::{ImageError, Result};

/// One entry and its path from the image root (`/`-separated, no leading `/`).
#[derive(Clone, Debug)]
pub struct Item {
    /// Root-relative path bytes.
    pub path: Vec<u8>,
    /// The entry as the store keeps it.
    pub entry: Entry,
}

/// Everything a renderer needs to know about a commit, loaded up front
/// (metadata only: content stays in the store).
#[derive(Debug)]
pub struct Image {
    /// The root directory (name empty).
    pub root: Entry,
    /// Every entry below the root, in canonical walk order.
    pub items: Vec<Item>,
    /// For each file that has hard links: the number of names it has (the
    /// file itself plus its `HardLink` entries), keyed by its path.
    pub link_counts: HashMap<Vec<u8>, u32>,
    /// Index in `items` of every file that has hard links, keyed by path.
    pub link_targets: HashMap<Vec<u8>, usize>,
}

impl Image {
    /// Reads the commit and all of its trees.
    pub fn load(store: &Store, commit: &ObjectId) -> Result<Image> {
        let c = store.read_commit(commit)?;
        let mut items = Vec::new();
        store.walk(&c.tree(), &mut |path, e| {
            items.push(Item {
                path: path.to_vec(),
                entry: e.clone(),
            });
            Ok(true)
        })?;
        let mut link_counts: HashMap<Vec<u8>, u32> = HashMap::new();
        for it in &items {
            if let EntryKind::HardLink { target } = &it.entry.kind {
                *link_counts.entry(target.clone()).or_insert(1) += 1;
            }
        }
        let mut link_targets = HashMap::new();
        for (i, it) in items.iter().enumerate() {
            if link_counts.contains_key(&it.path) {
                if !matches!(it.entry.kind, EntryKind::File { .. }) {
                    return Err(ImageError::BadTree {
                        path: show(&it.path),
                        why: "hard links point at it but it is not a regular file".into(),
                    });
                }
                link_targets.insert(it.path.clone(), i);
            }
        }
        for (j, it) in items.iter().enumerate() {
            if let EntryKind::HardLink { target } = &it.entry.kind {
                match link_targets.get(target) {
                    Some(&i) if i < j => {}
                    _ => {
                        return Err(ImageError::BadTree {
                            path: show(&it.path),
                            why: format!(
                                "hard link to {}, which is not an earlier regular file",
                                show(target)
                            ),
                        });
                    }
                }
            }
        }
        Ok(Image {
            root: c.root,
            items,
            link_counts,
            link_targets,
        })
    }

    /// Total logical content bytes (each hard-linked file counted once).
    pub fn content_bytes(&self) -> u64 {
        self.items
            .iter()
            .map(|i| match &i.entry.kind {
                EntryKind::File { size, .. } => *size,
                _ => 0,
            })
            .sum()
    }

    /// The file entry a `HardLink` entry names (checked in [`Image::load`]).
    pub fn link_target(&self, target: &[u8]) -> Option<&Item> {
        self.link_targets.get(target).map(|&i| &self.items[i])
    }
}

/// A path for messages.
pub fn show(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

/// Reads a file's content from the store: chunks are fetched (and
/// verified by the store) one at a time; holes read as zeros.
pub struct ContentReader<'a> {
    store: &'a Store,
    extents: std::slice::Iter<'a, Extent>,
    buf: Vec<u8>,
    pos: usize,
    zeros: u64,
    progress: &'a dyn Progress,
}

impl<'a> ContentReader<'a> {
    /// A reader over `extents`.
    pub fn new(store: &'a Store, extents: &'a [Extent], progress: &'a dyn Progress) -> Self {
        ContentReader {
            store,
            extents: extents.iter(),
            buf: Vec::new(),
            pos: 0,
            zeros: 0,
            progress,
        }
    }

    /// The next piece of content: a chunk or up to 1 MiB of a hole; `None` at the end.
    pub fn next_piece(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.zeros > 0 {
            let n = self.zeros.min(1 << 20);
            self.zeros -= n;
            self.progress.advance(n);
            return Ok(Some(vec![0; n as usize]));
        }
        match self.extents.next() {
            None => Ok(None),
            Some(Extent::Hole { len }) => {
                self.zeros = *len;
                self.next_piece()
            }
            Some(Extent::Data { id, len }) => {
                let data = self
                    .store
                    .read_raw(id, ObjectKind::Chunk)
                    .map_err(io::Error::other)?;
                if data.len() as u64 != *len {
                    return Err(io::Error::other(format!(
                        "chunk {id} holds {} bytes, its tree says {len}",
                        data.len()
                    )));
                }
                self.progress.advance(*len);
                Ok(Some(data))
            }
        }
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.next_piece()? {
                None => return Ok(0),
                Some(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Copies a file's content into `w`, checking that exactly `size` bytes came.
pub fn copy_content(
    store: &Store,
    path: &[u8],
    size: u64,
    extents: &[Extent],
    w: &mut dyn io::Write,
    progress: &dyn Progress,
) -> Result<()> {
    let mut r = ContentReader::new(store, extents, progress);
    let mut n = 0u64;
    while let Some(piece) = r.next_piece().map_err(|e| ImageError::BadTree {
        path: show(path),
        why: e.to_string(),
    })? {
        n += piece.len() as u64;
        w.write_all(&piece).map_err(|e| ImageError::Io {
            path: super::OUTPUT.into(),
            source: e,
        })?;
    }
    if n != size {
        return Err(ImageError::BadTree {
            path: show(path),
            why: format!("content is {n} bytes, the tree says {size}"),
        });
    }
    Ok(())
}
