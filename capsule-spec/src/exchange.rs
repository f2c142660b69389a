//! Export from and import into a vnfs store: the binding between the
//! capsule format and `vnfs_store`.
//!
//! Export: the objects of a capsule are the commit's closure — the commit,
//! its ancestors through all parents, and every tree and chunk their root
//! trees reach — because the store's history, gc and fsck expect every
//! commit's parents and trees to be present. A delta leaves out the closure
//! of its base, which the importing store must already hold (and, being
//! consistent, holds with its whole closure).
//!
//! Import: verified objects are written as they stream (a content-addressed
//! store can take any verified object); the ref moves only after the reader
//! has verified the trailer and the signature policy, and after the image's
//! closure has been checked to be complete in the store.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};

use vnfs_store::tree::{EntryKind, Extent};
use vnfs_store::{Store, StoreError, StoredObject};

use crate::error::CapsuleError;
use crate::id::{Compression, ObjectId, ObjectKind};
use crate::keys::SecretKey;
use crate::manifest::{CommitInfo, Manifest};
use crate::metadata::{ImageMetadata, MetadataError};
use crate::reader::{CapsuleReader, ObjectSink, ReadOptions, VerifiedCapsule, VerifiedObject};
use crate::writer::{CapsuleWriter, Record};

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

/// The objects of a commit's closure, by kind.
#[derive(Default)]
struct Closure {
    commits: Vec<vnfs_store::ObjectId>,
    objects: HashSet<(ObjectKind, ObjectId)>,
    trees_seen: HashSet<vnfs_store::ObjectId>,
}

impl Closure {
    /// Adds `head`'s closure, skipping what `exclude` already has (Merkle:
    /// an excluded tree's whole subtree is excluded).
    fn add(
        &mut self,
        store: &Store,
        head: vnfs_store::ObjectId,
        exclude: Option<&Closure>,
    ) -> Result<(), StoreError> {
        let mut stack = vec![head];
        let mut seen = HashSet::new();
        while let Some(c) = stack.pop() {
            let skip =
                exclude.is_some_and(|x| x.objects.contains(&(ObjectKind::Commit, from_store(&c))));
            if skip || !seen.insert(c) {
                continue;
            }
            let commit = store.read_commit(&c)?;
            self.commits.push(c);
            self.objects.insert((ObjectKind::Commit, from_store(&c)));
            self.add_tree(store, commit.tree(), exclude)?;
            stack.extend(commit.parents.iter().copied());
        }
        Ok(())
    }

    fn add_tree(
        &mut self,
        store: &Store,
        tree: vnfs_store::ObjectId,
        exclude: Option<&Closure>,
    ) -> Result<(), StoreError> {
        if exclude.is_some_and(|x| x.trees_seen.contains(&tree)) || !self.trees_seen.insert(tree) {
            return Ok(());
        }
        self.objects.insert((ObjectKind::Tree, from_store(&tree)));
        for e in store.read_tree(&tree)?.entries {
            match e.kind {
                EntryKind::Dir { tree } => self.add_tree(store, tree, exclude)?,
                EntryKind::File { extents, .. } => {
                    for x in extents {
                        if let Extent::Data { id, .. } = x {
                            let key = (ObjectKind::Chunk, from_store(&id));
                            if !exclude.is_some_and(|b| b.objects.contains(&key)) {
                                self.objects.insert(key);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// What [`export`] produced.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExportReport {
    /// The manifest written.
    #[serde(skip)]
    pub manifest: Manifest,
    /// Convention file name (`<os>-<version>-<release>.<state>.<arch>.vnfs`).
    pub file_name: String,
    /// Object records written.
    pub objects: u64,
    /// Their stored bytes.
    pub stored_bytes: u64,
    /// Their raw bytes.
    pub raw_bytes: u64,
    /// Capsule size.
    pub capsule_bytes: u64,
    /// Whole-file checksum, hex.
    pub file_hash: String,
    /// Signer key, when signed.
    pub signed_by: Option<String>,
}

/// Builds the manifest for exporting `head` as image `name` (delta over
/// `base` if given), and the sorted list of objects to ship.
pub fn plan_export(
    store: &Store,
    name: &str,
    head: ObjectId,
    base: Option<ObjectId>,
) -> Result<(Manifest, Vec<(ObjectKind, ObjectId)>), ExchangeError> {
    let base_closure = match base {
        Some(b) => {
            let mut c = Closure::default();
            c.add(store, to_store(&b), None)?;
            Some(c)
        }
        None => None,
    };
    let mut closure = Closure::default();
    closure.add(store, to_store(&head), base_closure.as_ref())?;
    let mut objects: Vec<(ObjectKind, ObjectId)> = closure.objects.into_iter().collect();
    objects.sort_unstable();

    let head_commit = store.read_commit(&to_store(&head))?;
    let meta = ImageMetadata::from_commit(&head_commit.metadata, name)?;
    // History: first-parent chain from head down to (not including) base.
    let mut history = Vec::new();
    for (id, c) in store.history(to_store(&head))? {
        if Some(from_store(&id)) == base {
            break;
        }
        history.push(CommitInfo {
            id: from_store(&id),
            tree: from_store(&c.tree()),
            parents: c.parents.iter().map(from_store).collect(),
            timestamp: c.timestamp,
            message: c.message.clone(),
            // The VNFS keys are already manifest fields; keep the rest.
            metadata: c
                .metadata
                .iter()
                .filter(|(k, _)| !k.starts_with("vnfs."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        });
    }
    let manifest = Manifest {
        name: name.to_owned(),
        naming: meta.naming,
        config: meta.config,
        recipe: meta.recipe,
        lock: meta.lock,
        packages: meta.packages,
        head,
        base,
        history,
    };
    manifest
        .validate()
        .map_err(|e| CapsuleError::Input(e.to_string()))?;
    Ok((manifest, objects))
}

/// Writes a capsule of image `name` at commit `head` (a delta over `base`
/// if given) into `out`, copying stored objects as they are.
pub fn export<W: Write>(
    store: &Store,
    name: &str,
    head: ObjectId,
    base: Option<ObjectId>,
    signer: Option<&SecretKey>,
    out: W,
) -> Result<(ExportReport, W), ExchangeError> {
    let (manifest, objects) = plan_export(store, name, head, base)?;
    let mut w = CapsuleWriter::new(out, &manifest, signer)?;
    for (kind, id) in &objects {
        let obj = store.read_stored(&to_store(id), kind_to_store(*kind))?;
        w.add(&Record {
            kind: *kind,
            id: *id,
            compression: match obj.compression {
                vnfs_store::Compression::Raw => Compression::Raw,
                vnfs_store::Compression::Zstd => Compression::Zstd,
            },
            raw_len: obj.raw_len,
            stored: &obj.data,
        })?;
    }
    let s = w.finish()?;
    let report = ExportReport {
        file_name: manifest.naming.file_name(),
        manifest,
        objects: s.objects,
        stored_bytes: s.stored_total,
        raw_bytes: s.raw_total,
        capsule_bytes: s.bytes,
        file_hash: hex::encode(s.file_hash),
        signed_by: s.signed_by.map(|k| k.to_string()),
    };
    Ok((report, s.inner))
}

/// What [`import`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImportReport {
    /// The image name the ref was set under.
    pub name: String,
    /// The commit it points at.
    pub head: String,
    /// For a delta, its base.
    pub base: Option<String>,
    /// Objects written (the store lacked them).
    pub added: u64,
    /// Objects the store already had.
    pub present: u64,
    /// Whether the ref moved (false when it already pointed at head).
    pub moved: bool,
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

    fn put(&mut self, o: &VerifiedObject<'_>) -> Result<(), crate::BoxError> {
        let obj = StoredObject {
            kind: kind_to_store(o.kind),
            id: to_store(&o.id),
            compression: match o.compression {
                Compression::Raw => vnfs_store::Compression::Raw,
                Compression::Zstd => vnfs_store::Compression::Zstd,
            },
            raw_len: o.raw.len() as u32,
            data: o.stored.to_vec(),
        };
        if self.writer.put_stored(&obj)? {
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
    // Under the refs lock: an unrelated current commit keeps its place (the
    // closure rewrites the same value) and is reported below.
    store.update_ref(&name, |current| {
        Ok(match current {
            Some(c) if c == head => c,
            Some(c) if !history.contains(&c) => {
                diverged = Some(c);
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
