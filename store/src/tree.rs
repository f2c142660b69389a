//! Tree objects: one directory, every entry with all of its metadata.
//!
//! File content is never mixed with metadata: a file entry lists the ids of
//! its content chunks (and holes), so a rebuild that only changes mtimes
//! re-uses every chunk. Entries are sorted by name bytes and every field
//! has a single encoding, which makes the tree id canonical.

use crate::codec::{DecodeError, Decoder, Encoder};
use crate::id::ObjectId;

/// One piece of a regular file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Extent {
    /// `len` bytes of content stored as the chunk `id`.
    Data {
        /// Chunk id.
        id: ObjectId,
        /// Chunk length in bytes.
        len: u64,
    },
    /// `len` bytes of hole (a sparse region that reads as zeros).
    Hole {
        /// Hole length in bytes.
        len: u64,
    },
}

impl Extent {
    /// Logical length of the extent.
    pub fn len(&self) -> u64 {
        match self {
            Extent::Data { len, .. } | Extent::Hole { len } => *len,
        }
    }
    /// True for a zero-length extent (never produced by ingest).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What an entry is, with the data that only that kind has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file: its size and content extents in order.
    File {
        /// Logical size; equals the sum of the extent lengths.
        size: u64,
        /// Content, in order.
        extents: Vec<Extent>,
    },
    /// A directory: the id of its tree object.
    Dir {
        /// Tree id.
        tree: ObjectId,
    },
    /// A symbolic link and its target bytes.
    Symlink {
        /// Link target, exactly as readlink returns it.
        target: Vec<u8>,
    },
    /// A character device.
    CharDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
    /// A hard link to the regular file at `target` (a path from the image
    /// root). The target is the first path of the inode in the canonical
    /// walk order (depth first, entries sorted by name bytes).
    HardLink {
        /// Root-relative path of the first link, components separated by `/`.
        target: Vec<u8>,
    },
}

impl EntryKind {
    fn tag(&self) -> u8 {
        match self {
            EntryKind::File { .. } => 1,
            EntryKind::Dir { .. } => 2,
            EntryKind::Symlink { .. } => 3,
            EntryKind::CharDev { .. } => 4,
            EntryKind::BlockDev { .. } => 5,
            EntryKind::Fifo => 6,
            EntryKind::HardLink { .. } => 7,
        }
    }

    /// Short name for listings (`file`, `dir`, `symlink`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::File { .. } => "file",
            EntryKind::Dir { .. } => "dir",
            EntryKind::Symlink { .. } => "symlink",
            EntryKind::CharDev { .. } => "chardev",
            EntryKind::BlockDev { .. } => "blockdev",
            EntryKind::Fifo => "fifo",
            EntryKind::HardLink { .. } => "hardlink",
        }
    }

    /// The file type bits of `st_mode` for this kind.
    pub fn type_bits(&self) -> u32 {
        match self {
            EntryKind::File { .. } | EntryKind::HardLink { .. } => libc::S_IFREG,
            EntryKind::Dir { .. } => libc::S_IFDIR,
            EntryKind::Symlink { .. } => libc::S_IFLNK,
            EntryKind::CharDev { .. } => libc::S_IFCHR,
            EntryKind::BlockDev { .. } => libc::S_IFBLK,
            EntryKind::Fifo => libc::S_IFIFO,
        }
    }
}

/// Inode metadata kept for every entry.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Meta {
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_nsec: u32,
    /// Extended attributes (including ACLs and capabilities), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One name in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// File name bytes: never empty, never `.` or `..`, no `/` or NUL.
    pub name: Vec<u8>,
    /// Type and type-specific data.
    pub kind: EntryKind,
    /// Ownership, permissions, times, xattrs.
    pub meta: Meta,
}

/// A directory's entries, sorted by name.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Tree {
    /// Entries in strictly increasing name order.
    pub entries: Vec<Entry>,
}

/// Checks that a name is a single safe path component.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// Checks a root-relative hard-link target: safe components joined by `/`.
pub fn valid_link_target(path: &[u8]) -> bool {
    !path.is_empty() && path.split(|&b| b == b'/').all(valid_name)
}

impl Meta {
    pub(crate) fn encode(&self, e: &mut Encoder) {
        e.uvar(u64::from(self.mode));
        e.uvar(u64::from(self.uid));
        e.uvar(u64::from(self.gid));
        e.i64(self.mtime);
        e.u32(self.mtime_nsec);
        e.uvar(self.xattrs.len() as u64);
        for (k, v) in &self.xattrs {
            e.bytes(k);
            e.bytes(v);
        }
    }

    pub(crate) fn decode(d: &mut Decoder<'_>) -> Result<Meta, DecodeError> {
        let mode = u32_of(d)?;
        if mode > 0o7777 {
            return Err(d.invalid(format!("mode {mode:o} has file-type bits")));
        }
        let uid = u32_of(d)?;
        let gid = u32_of(d)?;
        let mtime = d.i64()?;
        let mtime_nsec = d.u32()?;
        if mtime_nsec >= 1_000_000_000 {
            return Err(d.invalid("nanoseconds out of range"));
        }
        let n = d.len()?;
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let k = d.bytes()?.to_vec();
            let v = d.bytes()?.to_vec();
            if k.is_empty() || k.contains(&0) {
                return Err(d.invalid("bad xattr name"));
            }
            if let Some((last, _)) = xattrs.last()
                && *last >= k
            {
                return Err(d.invalid("xattrs not sorted"));
            }
            xattrs.push((k, v));
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            mtime_nsec,
            xattrs,
        })
    }
}

/// Encodes a file's size and extents (shared with the stat cache).
pub(crate) fn encode_extents(e: &mut Encoder, size: u64, extents: &[Extent]) {
    e.uvar(size);
    e.uvar(extents.len() as u64);
    for x in extents {
        match x {
            Extent::Data { id, len } => {
                e.u8(0);
                e.uvar(*len);
                e.id(id);
            }
            Extent::Hole { len } => {
                e.u8(1);
                e.uvar(*len);
            }
        }
    }
}

/// Decodes what `encode_extents` wrote, checking that the extents add up.
pub(crate) fn decode_extents(d: &mut Decoder<'_>) -> Result<(u64, Vec<Extent>), DecodeError> {
    let size = d.uvar()?;
    let n = d.len()?;
    let mut extents = Vec::with_capacity(n.min(4096));
    let mut total: u64 = 0;
    for _ in 0..n {
        let x = match d.u8()? {
            0 => {
                let len = d.uvar()?;
                Extent::Data { len, id: d.id()? }
            }
            1 => Extent::Hole { len: d.uvar()? },
            t => return Err(d.invalid(format!("unknown extent tag {t}"))),
        };
        if x.is_empty() {
            return Err(d.invalid("empty extent"));
        }
        total = total
            .checked_add(x.len())
            .ok_or_else(|| d.invalid("file size overflows"))?;
        extents.push(x);
    }
    if total != size {
        return Err(d.invalid(format!("extents add up to {total}, size says {size}")));
    }
    Ok((size, extents))
}

fn u32_of(d: &mut Decoder<'_>) -> Result<u32, DecodeError> {
    let v = d.uvar()?;
    u32::try_from(v).map_err(|_| d.invalid("value does not fit 32 bits"))
}

impl Entry {
    pub(crate) fn encode(&self, e: &mut Encoder) {
        e.bytes(&self.name);
        e.u8(self.kind.tag());
        self.meta.encode(e);
        match &self.kind {
            EntryKind::File { size, extents } => encode_extents(e, *size, extents),
            EntryKind::Dir { tree } => e.id(tree),
            EntryKind::Symlink { target } => e.bytes(target),
            EntryKind::CharDev { major, minor } | EntryKind::BlockDev { major, minor } => {
                e.uvar(u64::from(*major));
                e.uvar(u64::from(*minor));
            }
            EntryKind::Fifo => {}
            EntryKind::HardLink { target } => e.bytes(target),
        }
    }

    pub(crate) fn decode(
        d: &mut Decoder<'_>,
        allow_empty_name: bool,
    ) -> Result<Entry, DecodeError> {
        let name = d.bytes()?.to_vec();
        if (!allow_empty_name || !name.is_empty()) && !valid_name(&name) {
            return Err(d.invalid(format!(
                "unsafe entry name {:?}",
                String::from_utf8_lossy(&name)
            )));
        }
        let tag = d.u8()?;
        let meta = Meta::decode(d)?;
        let kind = match tag {
            1 => {
                let (size, extents) = decode_extents(d)?;
                EntryKind::File { size, extents }
            }
            2 => EntryKind::Dir { tree: d.id()? },
            3 => EntryKind::Symlink {
                target: d.bytes()?.to_vec(),
            },
            4 | 5 => {
                let major = u32_of(d)?;
                let minor = u32_of(d)?;
                if tag == 4 {
                    EntryKind::CharDev { major, minor }
                } else {
                    EntryKind::BlockDev { major, minor }
                }
            }
            6 => EntryKind::Fifo,
            7 => {
                let target = d.bytes()?.to_vec();
                if !valid_link_target(&target) {
                    return Err(d.invalid("unsafe hard-link target"));
                }
                EntryKind::HardLink { target }
            }
            t => return Err(d.invalid(format!("unknown entry type {t}"))),
        };
        Ok(Entry { name, kind, meta })
    }
}

impl Tree {
    /// The canonical encoding (the bytes whose hash is the tree id).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        e.uvar(self.entries.len() as u64);
        for entry in &self.entries {
            entry.encode(&mut e);
        }
        e.buf
    }

    /// Decodes and validates a tree: names safe, sorted and unique.
    pub fn decode(raw: &[u8]) -> Result<Tree, DecodeError> {
        let mut d = Decoder::new(raw);
        let n = d.len()?;
        let mut entries: Vec<Entry> = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            let entry = Entry::decode(&mut d, false)?;
            if let Some(prev) = entries.last()
                && prev.name >= entry.name
            {
                return Err(d.invalid("entries not sorted or duplicated"));
            }
            entries.push(entry);
        }
        if !d.is_empty() {
            return Err(d.invalid("trailing bytes"));
        }
        Ok(Tree { entries })
    }

    /// Looks an entry up by name.
    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ObjectKind;
    use proptest::prelude::*;

    fn arb_meta() -> impl Strategy<Value = Meta> {
        (
            0u32..0o7777,
            any::<u32>(),
            any::<u32>(),
            any::<i64>(),
            0u32..1_000_000_000,
            proptest::collection::btree_map(
                proptest::collection::vec(1u8..=255, 1..8),
                proptest::collection::vec(any::<u8>(), 0..8),
                0..3,
            ),
        )
            .prop_map(|(mode, uid, gid, mtime, mtime_nsec, x)| Meta {
                mode,
                uid,
                gid,
                mtime,
                mtime_nsec,
                xattrs: x.into_iter().collect(),
            })
    }

    fn arb_kind() -> impl Strategy<Value = EntryKind> {
        prop_oneof![
            proptest::collection::vec((any::<bool>(), 1u64..1 << 40), 0..5).prop_map(|xs| {
                let extents: Vec<Extent> = xs
                    .into_iter()
                    .map(|(hole, len)| {
                        if hole {
                            Extent::Hole { len }
                        } else {
                            Extent::Data {
                                len,
                                id: ObjectId::of(ObjectKind::Chunk, &len.to_le_bytes()),
                            }
                        }
                    })
                    .collect();
                EntryKind::File {
                    size: extents.iter().map(Extent::len).sum(),
                    extents,
                }
            }),
            any::<[u8; 32]>().prop_map(|b| EntryKind::Dir { tree: ObjectId(b) }),
            proptest::collection::vec(any::<u8>(), 0..20)
                .prop_map(|target| EntryKind::Symlink { target }),
            (any::<u32>(), any::<u32>())
                .prop_map(|(major, minor)| EntryKind::CharDev { major, minor }),
            (any::<u32>(), any::<u32>())
                .prop_map(|(major, minor)| EntryKind::BlockDev { major, minor }),
            Just(EntryKind::Fifo),
            Just(EntryKind::HardLink {
                target: b"usr/bin/x".to_vec()
            }),
        ]
    }

    proptest! {
        #[test]
        fn tree_round_trip(
            entries in proptest::collection::btree_map(
                proptest::collection::vec(1u8..=255, 1..12).prop_filter("valid", |n| valid_name(n)),
                (arb_kind(), arb_meta()),
                0..8,
            )
        ) {
            let tree = Tree {
                entries: entries
                    .into_iter()
                    .map(|(name, (kind, meta))| Entry { name, kind, meta })
                    .collect(),
            };
            let raw = tree.encode();
            prop_assert_eq!(Tree::decode(&raw).unwrap(), tree);
        }

        #[test]
        fn decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Tree::decode(&raw);
        }
    }

    #[test]
    fn rejects_unsafe_names_and_unsorted_entries() {
        let meta = Meta::default();
        for bad in [&b".."[..], b".", b"a/b", b"", b"a\0"] {
            let t = Tree {
                entries: vec![Entry {
                    name: bad.to_vec(),
                    kind: EntryKind::Fifo,
                    meta: meta.clone(),
                }],
            };
            assert!(Tree::decode(&t.encode()).is_err(), "{bad:?}");
        }
        let e = |n: &[u8]| Entry {
            name: n.to_vec(),
            kind: EntryKind::Fifo,
            meta: meta.clone(),
        };
        let unsorted = Tree {
            entries: vec![e(b"b"), e(b"a")],
        };
        assert!(Tree::decode(&unsorted.encode()).is_err());
        let dup = Tree {
            entries: vec![e(b"a"), e(b"a")],
        };
        assert!(Tree::decode(&dup.encode()).is_err());
        let link = Tree {
            entries: vec![Entry {
                name: b"x".to_vec(),
                kind: EntryKind::HardLink {
                    target: b"../etc/shadow".to_vec(),
                },
                meta,
            }],
        };
        assert!(Tree::decode(&link.encode()).is_err());
    }
}
