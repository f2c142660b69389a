//! The store on disk: directory layout, the in-memory index over all packs,
//! object reads, write transactions and the writer/gc lock.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustix::fs::{FlockOperation, flock};

use crate::commit::Commit;
use crate::error::{IoContext, Result, StoreError};
use crate::id::{IdMap, IdSet, ObjectId, ObjectKind};
use crate::pack::{self, Compression, IndexEntry, PackWriter, StoredObject};
use crate::tree::Tree;

const VERSION_FILE: &str = "VERSION";
const VERSION_LINE: &str = "vnfs-store 1";
/// Packs are closed at this size so gc can rewrite them piecewise.
const PACK_TARGET: u64 = 256 << 20;

/// Where an object is: which pack, and its index entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Location {
    pub pack: u32,
    pub entry: IndexEntry,
}

/// One pack known to the index.
pub(crate) struct PackHandle {
    pub name: String,
    pub path: PathBuf,
    pub file: Arc<File>,
    pub entries: usize,
}

#[derive(Default)]
pub(crate) struct Index {
    pub packs: Vec<PackHandle>,
    pub objects: IdMap<Location>,
    /// Index files that failed to load; fsck reports them.
    pub damaged: Vec<StoreError>,
}

/// A content-addressed store rooted at one directory.
pub struct Store {
    root: PathBuf,
    pub(crate) index: RwLock<Index>,
}

impl Store {
    /// Opens an existing store.
    pub fn open(root: &Path) -> Result<Store> {
        let version = root.join(VERSION_FILE);
        match fs::read_to_string(&version) {
            Ok(v) if v.trim() == VERSION_LINE => {}
            Ok(v) => {
                return Err(StoreError::NotAStore {
                    path: root.into(),
                    why: format!("unsupported store format '{}'", v.trim()),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotAStore {
                    path: root.into(),
                    why: "no vnfs store here (it is created by the first commit or build)".into(),
                });
            }
            Err(e) => return Err(e).at(version),
        }
        let store = Store {
            root: root.to_path_buf(),
            index: RwLock::new(Index::default()),
        };
        store.reload_index()?;
        Ok(store)
    }

    /// Opens the store, creating an empty one first if `root` has none.
    pub fn open_or_create(root: &Path) -> Result<Store> {
        if !root.join(VERSION_FILE).exists() {
            for d in ["packs", "refs", "tmp", "cache/stat"] {
                let p = root.join(d);
                fs::create_dir_all(&p).at(&p)?;
            }
            let tmp = root
                .join("tmp")
                .join(format!("VERSION.{}", pack::unique_suffix()));
            pack::write_synced(&tmp, format!("{VERSION_LINE}\n").as_bytes())?;
            let version = root.join(VERSION_FILE);
            fs::rename(&tmp, &version).at(&version)?;
        }
        Store::open(root)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn packs_dir(&self) -> PathBuf {
        self.root.join("packs")
    }
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Re-reads every pack index. Called at open and at the start of each
    /// transaction, so a writer never trusts objects a gc removed since.
    pub fn reload_index(&self) -> Result<()> {
        let mut idx = Index::default();
        for (path, name) in list_index_files(&self.packs_dir())? {
            match load_pack(&path, &name) {
                Ok((handle, entries)) => {
                    let pack = idx.packs.len() as u32;
                    for entry in entries {
                        idx.objects.insert(entry.id, Location { pack, entry });
                    }
                    idx.packs.push(handle);
                }
                Err(e) => {
                    tracing::warn!("{e}; its objects are unavailable (run `vnfs store fsck`)");
                    idx.damaged.push(e);
                }
            }
        }
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = idx;
        Ok(())
    }

    /// True if the object is in the store.
    pub fn contains(&self, id: &ObjectId) -> bool {
        self.read_index().objects.contains_key(id)
    }

    /// An object's index entry (kind, compression, lengths), if stored.
    pub fn entry(&self, id: &ObjectId) -> Option<IndexEntry> {
        self.read_index().objects.get(id).map(|l| l.entry)
    }

    pub(crate) fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored (possibly compressed) form of an object, unverified.
    pub fn read_stored(&self, id: &ObjectId, kind: ObjectKind) -> Result<StoredObject> {
        let rec = self.read_record(id, kind)?;
        let e = rec.entry;
        let (mut data, start) = rec.into_buf();
        data.drain(..start);
        Ok(StoredObject {
            kind,
            id: *id,
            compression: e.compression,
            raw_len: e.raw_len,
            data,
        })
    }

    /// An object's whole pack record (header and stored bytes, unverified)
    /// in one buffer: what a server sends without copying the bytes again.
    pub fn read_record(&self, id: &ObjectId, kind: ObjectKind) -> Result<pack::Record> {
        self.with_location(id, kind, |p, e| {
            pack::read_whole_record(&p.file, &p.path, e)
        })
    }

    /// Runs `f` on the pack and index entry of an object stored as `kind`.
    fn with_location<T>(
        &self,
        id: &ObjectId,
        kind: ObjectKind,
        f: impl FnOnce(&PackHandle, &IndexEntry) -> Result<T>,
    ) -> Result<T> {
        let idx = self.read_index();
        let loc = idx
            .objects
            .get(id)
            .ok_or(StoreError::Missing { id: *id, kind })?;
        let p = &idx.packs[loc.pack as usize];
        if loc.entry.kind != kind {
            return Err(StoreError::Corrupt {
                id: *id,
                kind,
                where_: p.path.clone(),
                why: format!("stored as a {}, expected a {kind}", loc.entry.kind),
            });
        }
        f(p, &loc.entry)
    }

    /// Where an object's stored bytes sit in its pack, with the pack open,
    /// after checking the record header there against the index: what a
    /// server needs to hand the bytes to the kernel (`sendfile`) without
    /// reading them itself. The bytes are not verified against the id.
    pub fn locate_stored(&self, id: &ObjectId, kind: ObjectKind) -> Result<StoredLocation> {
        self.with_location(id, kind, |p, e| {
            let corrupt = |why: String| StoreError::Corrupt {
                id: *id,
                kind,
                where_: p.path.clone(),
                why,
            };
            let mut head = [0u8; pack::RECORD_HEADER];
            p.file.read_exact_at(&mut head, e.offset).map_err(|err| {
                if err.kind() == std::io::ErrorKind::UnexpectedEof {
                    corrupt("pack is truncated".into())
                } else {
                    StoreError::Io {
                        path: p.path.clone(),
                        source: err,
                    }
                }
            })?;
            if head != pack::record_header(e) {
                return Err(corrupt(format!(
                    "record header at offset {} does not match the index",
                    e.offset
                )));
            }
            Ok(StoredLocation {
                file: Arc::clone(&p.file),
                path: p.path.clone(),
                offset: e.offset + pack::RECORD_HEADER as u64,
                entry: *e,
            })
        })
    }

    /// Groups objects, in the given order, into runs that follow each
    /// other in one pack, at most `max_gap` bytes apart (the gap is read and
    /// skipped), each run at most `max_run` bytes (a single larger object is
    /// a run of its own). Reading a run is one large read instead of one
    /// per object; an export in the image's walk order finds most of its
    /// objects nearly side by side, as ingest wrote them (its parallel
    /// workers interleave neighbouring files a little).
    pub fn plan_reads(
        &self,
        objects: &[(ObjectId, ObjectKind)],
        max_run: usize,
        max_gap: usize,
    ) -> Result<Vec<ReadRun>> {
        let idx = self.read_index();
        let mut runs: Vec<ReadRun> = Vec::new();
        for (id, kind) in objects {
            let loc = idx.objects.get(id).ok_or(StoreError::Missing {
                id: *id,
                kind: *kind,
            })?;
            let p = &idx.packs[loc.pack as usize];
            if loc.entry.kind != *kind {
                return Err(StoreError::Corrupt {
                    id: *id,
                    kind: *kind,
                    where_: p.path.clone(),
                    why: format!("stored as a {}, expected a {kind}", loc.entry.kind),
                });
            }
            if loc.entry.raw_len > pack::MAX_OBJECT || loc.entry.stored_len > pack::MAX_OBJECT {
                return Err(StoreError::BadPack {
                    path: p.path.clone(),
                    why: format!("object {id} declares an impossible size"),
                });
            }
            let len = pack::RECORD_HEADER + loc.entry.stored_len as usize;
            let end = loc.entry.offset + len as u64;
            match runs.last_mut() {
                Some(r)
                    if r.pack == loc.pack
                        && loc.entry.offset >= r.start + r.len as u64
                        && loc.entry.offset - (r.start + r.len as u64) <= max_gap as u64
                        && end - r.start <= max_run as u64 =>
                {
                    r.len = (end - r.start) as usize;
                    r.entries.push(loc.entry);
                }
                _ => runs.push(ReadRun {
                    pack: loc.pack,
                    file: Arc::clone(&p.file),
                    path: p.path.clone(),
                    name: p.name.clone(),
                    start: loc.entry.offset,
                    len,
                    entries: vec![loc.entry],
                }),
            }
        }
        Ok(runs)
    }

    /// The raw bytes of an object, verified against its id.
    pub fn read_raw(&self, id: &ObjectId, kind: ObjectKind) -> Result<Vec<u8>> {
        let obj = self.read_stored(id, kind)?;
        let path = self.pack_path_of(id).unwrap_or_default();
        obj.decode(&path)
    }

    pub(crate) fn pack_path_of(&self, id: &ObjectId) -> Option<PathBuf> {
        let idx = self.read_index();
        let loc = idx.objects.get(id)?;
        Some(idx.packs[loc.pack as usize].path.clone())
    }

    /// Reads and decodes a tree.
    pub fn read_tree(&self, id: &ObjectId) -> Result<Tree> {
        let raw = self.read_raw(id, ObjectKind::Tree)?;
        Tree::decode(&raw).map_err(|source| StoreError::Decode {
            id: *id,
            kind: ObjectKind::Tree,
            source,
        })
    }

    /// Reads and decodes a commit.
    pub fn read_commit(&self, id: &ObjectId) -> Result<Commit> {
        let raw = self.read_raw(id, ObjectKind::Commit)?;
        Commit::decode(&raw).map_err(|source| StoreError::Decode {
            id: *id,
            kind: ObjectKind::Commit,
            source,
        })
    }

    /// Starts a write transaction: holds the shared store lock (so gc waits
    /// for it) and refreshes the index.
    pub fn writer(&self) -> Result<Writer<'_>> {
        let lock = StoreLock::shared(&self.root)?;
        self.reload_index()?;
        Ok(Writer {
            store: self,
            _lock: lock,
            pack: Mutex::new(None),
            pending: Mutex::new(IdSet::default()),
            written: Mutex::new(WriteStats::default()),
        })
    }

    /// All commit ids in the store (for resolving abbreviated ids).
    pub fn commit_ids(&self) -> Vec<ObjectId> {
        let idx = self.read_index();
        let mut v: Vec<ObjectId> = idx
            .objects
            .values()
            .filter(|l| l.entry.kind == ObjectKind::Commit)
            .map(|l| l.entry.id)
            .collect();
        v.sort();
        v
    }

    /// Object counts and stored bytes per kind.
    pub fn object_counts(&self) -> BTreeMap<ObjectKind, (u64, u64)> {
        let idx = self.read_index();
        let mut m: BTreeMap<ObjectKind, (u64, u64)> = BTreeMap::new();
        for l in idx.objects.values() {
            let e = m.entry(l.entry.kind).or_default();
            e.0 += 1;
            e.1 += u64::from(l.entry.stored_len);
        }
        m
    }

    /// Total size of all pack and index files.
    pub fn disk_usage(&self) -> Result<u64> {
        let mut total = 0;
        for (idx_path, _) in list_index_files(&self.packs_dir())? {
            total += fs::metadata(&idx_path).at(&idx_path)?.len();
            let pack = idx_path.with_extension("pack");
            total += fs::metadata(&pack).map(|m| m.len()).unwrap_or(0);
        }
        Ok(total)
    }
}

/// `.idx` files under `packs/`, sorted by name.
pub(crate) fn list_index_files(packs: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(packs) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).at(packs),
    };
    for sub in rd {
        let sub = sub.at(packs)?;
        if !sub.file_type().at(sub.path())?.is_dir() {
            continue;
        }
        for f in fs::read_dir(sub.path()).at(sub.path())? {
            let f = f.at(sub.path())?;
            let path = f.path();
            if path.extension().is_some_and(|e| e == "idx") {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.push((path, name));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn load_pack(idx_path: &Path, name: &str) -> Result<(PackHandle, Vec<IndexEntry>)> {
    let (entries, _hash) = pack::read_index(idx_path)?;
    let path = idx_path.with_extension("pack");
    let file = File::open(&path).at(&path)?;
    let len = file.metadata().at(&path)?.len();
    if let Some(last) = entries
        .iter()
        .map(|e| e.offset + pack::RECORD_HEADER as u64 + u64::from(e.stored_len))
        .max()
        && last > len
    {
        return Err(StoreError::BadPack {
            path,
            why: format!("pack is truncated: index needs {last} bytes, file has {len}"),
        });
    }
    Ok((
        PackHandle {
            name: name.to_string(),
            path,
            file: Arc::new(file),
            entries: entries.len(),
        },
        entries,
    ))
}

/// An advisory lock on the store: shared for writers, exclusive for gc.
pub(crate) struct StoreLock {
    _file: File,
}

impl StoreLock {
    fn open(root: &Path) -> Result<File> {
        let path = root.join("lock");
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)
    }

    pub(crate) fn shared(root: &Path) -> Result<StoreLock> {
        let file = Self::open(root)?;
        if flock(&file, FlockOperation::NonBlockingLockShared).is_err() {
            tracing::warn!("waiting for `vnfs store gc` to finish");
            flock(&file, FlockOperation::LockShared)
                .map_err(std::io::Error::from)
                .at(root.join("lock"))?;
        }
        Ok(StoreLock { _file: file })
    }

    pub(crate) fn exclusive(root: &Path) -> Result<StoreLock> {
        let file = Self::open(root)?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            tracing::warn!("waiting for running commits and imports to finish");
            flock(&file, FlockOperation::LockExclusive)
                .map_err(std::io::Error::from)
                .at(root.join("lock"))?;
        }
        Ok(StoreLock { _file: file })
    }
}

/// Counts of what a transaction wrote.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct WriteStats {
    /// Objects newly written.
    pub objects: u64,
    /// Their uncompressed bytes.
    pub raw_bytes: u64,
    /// Their stored bytes.
    pub stored_bytes: u64,
}

/// A write transaction. Objects become visible when `finish` (or a pack
/// rotation) renames a pack into place; dropping it unfinished discards
/// the current pack.
pub struct Writer<'s> {
    store: &'s Store,
    _lock: StoreLock,
    pack: Mutex<Option<PackWriter>>,
    pending: Mutex<IdSet>,
    written: Mutex<WriteStats>,
}

impl Writer<'_> {
    /// The store this writes into.
    pub fn store(&self) -> &Store {
        self.store
    }

    /// True if the object is stored or already written in this transaction.
    pub fn has(&self, id: &ObjectId) -> bool {
        self.store.contains(id) || lock(&self.pending).contains(id)
    }

    /// Stores raw bytes as an object (compressing them) unless present.
    /// Returns the id.
    pub fn put(&self, kind: ObjectKind, raw: &[u8]) -> Result<ObjectId> {
        let id = ObjectId::of(kind, raw);
        if self.claim(&id) {
            let obj = StoredObject::compress(kind, id, raw)?;
            self.append(&obj)?;
        }
        Ok(id)
    }

    /// Adds an object in stored form (already verified by the caller)
    /// unless present. Returns true if it was written.
    pub fn put_stored(&self, obj: &StoredObject) -> Result<bool> {
        if !self.claim(&obj.id) {
            return Ok(false);
        }
        self.append(obj)?;
        Ok(true)
    }

    /// Adds an object given by its stored parts (already verified by the
    /// caller) unless present, without copying `data` first. Returns true
    /// if it was written.
    pub fn put_stored_parts(
        &self,
        kind: ObjectKind,
        id: ObjectId,
        compression: Compression,
        raw_len: u32,
        data: &[u8],
    ) -> Result<bool> {
        if !self.claim(&id) {
            return Ok(false);
        }
        self.append_parts(kind, id, compression, raw_len, data)?;
        Ok(true)
    }

    /// Reserves an id for writing; false if it is stored or reserved already.
    fn claim(&self, id: &ObjectId) -> bool {
        if self.store.contains(id) {
            return false;
        }
        lock(&self.pending).insert(*id)
    }

    fn append(&self, obj: &StoredObject) -> Result<()> {
        self.append_parts(obj.kind, obj.id, obj.compression, obj.raw_len, &obj.data)
    }

    fn append_parts(
        &self,
        kind: ObjectKind,
        id: ObjectId,
        compression: Compression,
        raw_len: u32,
        data: &[u8],
    ) -> Result<()> {
        let mut slot = lock(&self.pack);
        if slot.is_none() {
            *slot = Some(PackWriter::create(&self.store.tmp_dir())?);
        }
        let Some(w) = slot.as_mut() else {
            unreachable!("pack writer created above")
        };
        w.add_parts(kind, id, compression, raw_len, data)?;
        {
            let mut s = lock(&self.written);
            s.objects += 1;
            s.raw_bytes += u64::from(raw_len);
            s.stored_bytes += data.len() as u64;
        }
        if w.len() >= PACK_TARGET
            && let Some(full) = slot.take()
        {
            self.seal(full)?;
        }
        Ok(())
    }

    fn seal(&self, w: PackWriter) -> Result<()> {
        if w.is_empty() {
            return Ok(());
        }
        let (name, entries) = w.finish(&self.store.packs_dir())?;
        let idx_path = self
            .store
            .packs_dir()
            .join(&name[..2])
            .join(format!("{name}.idx"));
        let (handle, _) = load_pack(&idx_path, &name)?;
        let mut idx = self.store.index.write().unwrap_or_else(|p| p.into_inner());
        let pack = idx.packs.len() as u32;
        idx.packs.push(handle);
        for entry in entries {
            idx.objects.insert(entry.id, Location { pack, entry });
        }
        Ok(())
    }

    /// Makes everything written durable and visible. Call before moving refs.
    pub fn flush(&self) -> Result<()> {
        let current = lock(&self.pack).take();
        if let Some(w) = current {
            self.seal(w)?;
        }
        Ok(())
    }

    /// What this transaction has written so far.
    pub fn stats(&self) -> WriteStats {
        *lock(&self.written)
    }
}

/// Locks a mutex, recovering from poisoning (a panicked worker thread must
/// not turn every later call into a second panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Objects that lie side by side in one pack, read with one `pread`
/// (see [`Store::plan_reads`]). It holds the pack open, so it stays
/// readable while the store's index is reloaded.
#[derive(Clone, Debug)]
pub struct ReadRun {
    pack: u32,
    file: Arc<File>,
    path: PathBuf,
    name: String,
    start: u64,
    len: usize,
    entries: Vec<IndexEntry>,
}

/// An object's stored bytes in place: `entry.stored_len` bytes of `file`
/// from `offset` (see [`Store::locate_stored`]).
#[derive(Clone, Debug)]
pub struct StoredLocation {
    /// The pack, open for reading.
    pub file: Arc<File>,
    /// The pack's path, for errors.
    pub path: PathBuf,
    /// Offset of the stored bytes (past the record header).
    pub offset: u64,
    /// The object's index entry (kind, compression, lengths).
    pub entry: IndexEntry,
}

/// One object of a [`ReadRun`]: where its stored bytes are in the run's
/// buffer.
#[derive(Clone, Debug)]
pub struct StoredSpan {
    /// Object kind.
    pub kind: ObjectKind,
    /// Object id (of the raw bytes; not re-checked here).
    pub id: ObjectId,
    /// How the stored bytes are encoded.
    pub compression: Compression,
    /// Uncompressed length.
    pub raw_len: u32,
    /// Offset of the object's record header in its pack, for errors.
    pub offset: u64,
    /// The stored bytes' range in the buffer.
    pub range: std::ops::Range<usize>,
}

impl ReadRun {
    /// The pack's path, for errors.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the run spans in its pack.
    pub fn byte_len(&self) -> usize {
        self.len
    }

    /// The run's pack, as a number that tells the packs of one
    /// [`Store::plan_reads`] call apart.
    pub fn pack_number(&self) -> u32 {
        self.pack
    }

    /// The size of the run's pack file.
    pub fn pack_len(&self) -> Result<u64> {
        self.file.metadata().map(|m| m.len()).at(&self.path)
    }

    /// Hashes the run's whole pack file and compares it with the pack's
    /// name, as fsck does. Returns why it does not match, or `None` when it
    /// does: the pack file is then as it was sealed (packs are never
    /// rewritten), so what [`ReadRun::fill`] reads from it, before or after,
    /// is too, without decoding an object; cheaper than checking each object
    /// once a reader copies a good part of the pack. It does not catch an
    /// object stored wrong before the pack was sealed (decoding does).
    /// Stops early, as a failure, once `stop` is set.
    pub fn check_pack(&self, stop: &std::sync::atomic::AtomicBool) -> Option<String> {
        pack::check_pack_file(&self.file, &self.name, |_| {
            match stop.load(std::sync::atomic::Ordering::Relaxed) {
                true => std::ops::ControlFlow::Break(()),
                false => std::ops::ControlFlow::Continue(()),
            }
        })
    }

    /// Number of objects in the run.
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// Reads the run's bytes into `buf` (replacing its contents).
    pub fn fill(&self, buf: &mut Vec<u8>) -> Result<()> {
        // Reused buffers are overwritten by the read: zero only new space.
        if buf.len() < self.len {
            buf.resize(self.len, 0);
        }
        buf.truncate(self.len);
        self.file
            .read_exact_at(buf, self.start)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::UnexpectedEof => StoreError::BadPack {
                    path: self.path.clone(),
                    why: format!(
                        "pack is truncated: {} bytes at offset {} are missing",
                        self.len, self.start
                    ),
                },
                _ => StoreError::Io {
                    path: self.path.clone(),
                    source,
                },
            })
    }

    /// The objects in `buf` (filled by [`ReadRun::fill`]), in order, each
    /// record header checked against the index.
    pub fn spans(&self, buf: &[u8]) -> Result<Vec<StoredSpan>> {
        let mut out = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let at = (e.offset - self.start) as usize;
            let data_at = at + pack::RECORD_HEADER;
            let end = data_at + e.stored_len as usize;
            let corrupt = |why: String| StoreError::Corrupt {
                id: e.id,
                kind: e.kind,
                where_: self.path.clone(),
                why,
            };
            let Some(rec) = buf.get(at..end) else {
                return Err(corrupt("run buffer does not hold the record".into()));
            };
            if rec[..pack::RECORD_HEADER] != pack::record_header(e) {
                return Err(corrupt(format!(
                    "record header at offset {} does not match the index",
                    e.offset
                )));
            }
            out.push(StoredSpan {
                kind: e.kind,
                id: e.id,
                compression: e.compression,
                raw_len: e.raw_len,
                offset: e.offset,
                range: data_at..end,
            });
        }
        Ok(out)
    }
}
