//! Export from and import into a vnfs store: the binding between the
//! capsule format and `vnfs_store`.
//!
//! Export ([`export`], planned in `plan.rs`): the objects of a capsule are
//! the commit's closure, in walk order; small objects are recompressed
//! together in solid blocks, large chunks copied as stored. A delta leaves
//! out the closure of its base, which the importing store must already hold
//! (and, being consistent, holds with its whole closure).
//!
//! Import: verified objects are written as they stream (a content-addressed
//! store can take any verified object), in the stored form when the capsule
//! has it and compressed on their own when they come from a block; the ref
//! moves only after the reader has verified the trailer and the signature
//! policy, and after the image's closure has been checked to be complete in
//! the store.

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;

use vnfs_store::tree::{EntryKind, Extent};
use vnfs_store::{Store, StoreError};

use crate::error::CapsuleError;
use crate::id::{Compression, ObjectId, ObjectKind};
use crate::metadata::MetadataError;
use crate::reader::{CapsuleReader, ObjectSink, ReadOptions, VerifiedCapsule, VerifiedObject};

mod export;
mod plan;

pub use export::{DamagedPack, ExportReport, export, export_with};
pub use plan::{DEFAULT_SOLID_BELOW, ExportOptions};

/// Export or import failure.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The capsule itself (format, verification, signature policy).
    #[error(transparent)]
    Capsule(#[from] CapsuleError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The commit's VNFS metadata.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// An object the export would write is damaged in this store: its
    /// stored bytes do not decode, or decode to content that does not match
    /// its id. The export stops rather than carry (and perhaps sign) bad
    /// data; what was written so far is not a complete capsule.
    #[error(
        "{kind} {id} is damaged in this store: {why} (pack {}, record at offset {offset}{}); \
         export stopped; run `vnfs store fsck` to list every damaged object and the images it breaks",
        pack.display(),
        place.as_deref().map(|p| format!("; in {p}")).unwrap_or_default()
    )]
    Damaged {
        /// Kind of the damaged object.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// The pack file holding it.
        pack: PathBuf,
        /// Offset of its record in the pack.
        offset: u64,
        /// What is wrong with it.
        why: String,
        /// Where the exported image uses it, as `image@commit:/path` (the
        /// first place in walk order), when it could be found.
        place: Option<String>,
    },
    /// A delta whose base commit the store does not have.
    #[error(
        "delta capsule needs base commit {0}, which this store does not have; import the base first"
    )]
    MissingBase(ObjectId),
    /// After import, an object the image needs is not in the store.
    #[error(
        "capsule is incomplete: {kind} {id}, needed by the image, is neither in it nor in this store"
    )]
    Incomplete {
        /// Kind of the missing object.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
    },
    /// The name already points at a commit that is not an ancestor of the
    /// capsule's head.
    #[error(
        "image {name} is at commit {current}, which is not in the history of the capsule's commit {head}; import under another name (--name)"
    )]
    Diverged {
        /// The image name.
        name: String,
        /// Where it points now.
        current: ObjectId,
        /// The capsule's head.
        head: ObjectId,
    },
}

fn to_store(id: &ObjectId) -> vnfs_store::ObjectId {
    vnfs_store::ObjectId(*id.as_bytes())
}

fn from_store(id: &vnfs_store::ObjectId) -> ObjectId {
    ObjectId::from_bytes(id.0)
}

fn kind_to_store(k: ObjectKind) -> vnfs_store::ObjectKind {
    match k {
        ObjectKind::Chunk => vnfs_store::ObjectKind::Chunk,
        ObjectKind::Tree => vnfs_store::ObjectKind::Tree,
        ObjectKind::Commit => vnfs_store::ObjectKind::Commit,
    }
}

fn kind_from_store(k: vnfs_store::ObjectKind) -> ObjectKind {
    match k {
        vnfs_store::ObjectKind::Chunk => ObjectKind::Chunk,
        vnfs_store::ObjectKind::Tree => ObjectKind::Tree,
        vnfs_store::ObjectKind::Commit => ObjectKind::Commit,
    }
}

fn compression_from_store(c: vnfs_store::Compression) -> Compression {
    match c {
        vnfs_store::Compression::Raw => Compression::Raw,
        vnfs_store::Compression::Zstd => Compression::Zstd,
    }
}

/// What [`import`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImportReport {
    /// The image name the ref was set under.
    pub name: String,
    /// The capsule's head commit: where the name points, unless it was
    /// already at a later version ([`ImportReport::newer`]).
    pub head: String,
    /// For a delta, its base.
    pub base: Option<String>,
    /// Objects written (the store lacked them).
    pub added: u64,
    /// Objects the store already had.
    pub present: u64,
    /// Whether the ref moved (false when it already pointed at head, or
    /// at a later version).
    pub moved: bool,
    /// When the image was already at a later version (the capsule's head
    /// is in its history): that version, which the name keeps.
    pub newer: Option<String>,
    /// Signature status (`unsigned`, `trusted`, `untrusted`).
    pub signature: String,
    /// A warning for the user (e.g. unsigned capsule), if any.
    pub warning: Option<String>,
    /// The verified capsule.
    #[serde(skip)]
    pub verified: Option<Box<VerifiedCapsule>>,
}

/// Writes verified objects into a store transaction.
struct StoreSink<'w, 's> {
    writer: &'w vnfs_store::Writer<'s>,
    added: u64,
}

impl ObjectSink for StoreSink<'_, '_> {
    fn wants(&mut self, _: ObjectKind, id: &ObjectId) -> Result<bool, crate::BoxError> {
        Ok(!self.writer.has(&to_store(id)))
    }

    fn member_level(&self) -> Option<i32> {
        // Block members arrive compressed as the store keeps objects.
        Some(vnfs_store::pack::ZSTD_LEVEL)
    }

    fn put(&mut self, o: &VerifiedObject<'_>) -> Result<(), crate::BoxError> {
        let compression = match o.compression {
            Compression::Raw => vnfs_store::Compression::Raw,
            Compression::Zstd => vnfs_store::Compression::Zstd,
        };
        // The length was checked against the record (at most the reader's
        // object limit, far below u32::MAX).
        let raw_len = o.raw.len() as u32;
        let added = self.writer.put_stored_parts(
            kind_to_store(o.kind),
            to_store(&o.id),
            compression,
            raw_len,
            o.stored,
        )?;
        if added {
            self.added += 1;
        }
        Ok(())
    }
}

/// Imports a capsule into `store` under `name` (default: the manifest's).
/// Checks the whole file and every object before the ref moves; a delta
/// whose base is missing is refused before anything is written.
pub fn import<R: Read>(
    store: &Store,
    input: R,
    name: Option<&str>,
    opts: ReadOptions,
) -> Result<ImportReport, ExchangeError> {
    let mut reader = CapsuleReader::open(input, opts)?;
    // Early refusal on the unverified manifest; the verified one decides.
    if let Some(b) = reader.unverified_manifest().base
        && !store.contains(&to_store(&b))
    {
        return Err(ExchangeError::MissingBase(b));
    }
    let name = name
        .unwrap_or(&reader.unverified_manifest().name)
        .to_owned();
    vnfs_store::refs::validate_name(&name)?;
    let writer = store.writer()?;
    let mut sink = StoreSink {
        writer: &writer,
        added: 0,
    };
    reader.read_objects(&mut sink)?;
    let added = sink.added;
    let v = reader.finish()?;
    writer.flush()?;
    let m = &v.manifest;
    if let Some(b) = m.base
        && !store.contains(&to_store(&b))
    {
        return Err(ExchangeError::MissingBase(b));
    }
    check_complete(store, m.head)?;
    let head = to_store(&m.head);
    let history: HashSet<vnfs_store::ObjectId> =
        store.history(head)?.into_iter().map(|(id, _)| id).collect();
    let mut moved = false;
    let mut diverged = None;
    let mut newer = None;
    // Under the refs lock: a current commit that is not in the capsule's
    // history keeps its place (the closure rewrites the same value); a later
    // version of the image (head in its history) is kept quietly, an
    // unrelated one is reported below.
    store.update_ref(&name, |current| {
        Ok(match current {
            Some(c) if c == head => c,
            Some(c) if !history.contains(&c) => {
                if store.history(c)?.iter().any(|(id, _)| *id == head) {
                    newer = Some(c);
                } else {
                    diverged = Some(c);
                }
                c
            }
            _ => {
                moved = true;
                head
            }
        })
    })?;
    if let Some(c) = diverged {
        return Err(ExchangeError::Diverged {
            name,
            current: from_store(&c),
            head: m.head,
        });
    }
    let warning = match &v.verdict {
        crate::trust::Verdict::AcceptWithWarning(w) => Some(w.clone()),
        crate::trust::Verdict::Accept => None,
    };
    Ok(ImportReport {
        name,
        head: m.head.to_hex(),
        base: m.base.map(|b| b.to_hex()),
        added,
        present: v.skipped,
        moved,
        newer: newer.map(|c| c.to_hex()),
        signature: v.signature.name().to_owned(),
        warning,
        verified: Some(Box::new(v)),
    })
}

/// Checks that every object of `head`'s closure is in the store, so a
/// capsule that leaves something out (by mistake or malice) cannot leave a
/// ref pointing at an image that does not check out.
fn check_complete(store: &Store, head: ObjectId) -> Result<(), ExchangeError> {
    let mut stack = vec![to_store(&head)];
    let mut seen_commits = HashSet::new();
    let mut seen_trees = HashSet::new();
    let missing = |kind: ObjectKind, id: &vnfs_store::ObjectId| ExchangeError::Incomplete {
        kind,
        id: from_store(id),
    };
    while let Some(c) = stack.pop() {
        if !seen_commits.insert(c) {
            continue;
        }
        if !store.contains(&c) {
            return Err(missing(ObjectKind::Commit, &c));
        }
        let commit = store.read_commit(&c)?;
        let mut trees = vec![commit.tree()];
        while let Some(t) = trees.pop() {
            if !seen_trees.insert(t) {
                continue;
            }
            if !store.contains(&t) {
                return Err(missing(ObjectKind::Tree, &t));
            }
            for e in store.read_tree(&t)?.entries {
                match e.kind {
                    EntryKind::Dir { tree } => trees.push(tree),
                    EntryKind::File { extents, .. } => {
                        for x in extents {
                            if let Extent::Data { id, .. } = x
                                && !store.contains(&id)
                            {
                                return Err(missing(ObjectKind::Chunk, &id));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        stack.extend(commit.parents.iter().copied());
    }
    Ok(())
}
