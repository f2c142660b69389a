//! Pack files and their indexes.
//!
//! A pack is a sequence of self-describing object records; its `.idx` lists
//! the records sorted by id with their offsets and ends with checksums. A
//! pack becomes visible only when its index is renamed into place, so a
//! killed writer leaves at most an unindexed pack (or a temp file) that gc
//! removes. See store/FORMAT.md.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, StoreError};
use crate::id::{ObjectId, ObjectKind};

/// Magic at the start of every pack.
pub const PACK_MAGIC: &[u8; 8] = b"VNFSPACK";
/// Magic at the start of every index.
pub const IDX_MAGIC: &[u8; 8] = b"VNFSIDX1";
/// Bytes before each object's data in a pack.
pub const RECORD_HEADER: usize = 1 + 1 + 32 + 4 + 4;
const IDX_ENTRY: usize = 32 + 1 + 1 + 8 + 4 + 4;
/// Largest object the store accepts (a tree of a huge directory, say).
pub const MAX_OBJECT: u32 = 1 << 30;
/// zstd level objects are compressed at.
pub const ZSTD_LEVEL: i32 = 3;

/// How an object's bytes are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    /// As is (compression did not make it smaller).
    Raw = 0,
    /// One zstd frame.
    Zstd = 1,
}

impl Compression {
    fn from_u8(b: u8) -> Option<Compression> {
        match b {
            0 => Some(Compression::Raw),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Where an object lives and how it is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Object id.
    pub id: ObjectId,
    /// Object kind.
    pub kind: ObjectKind,
    /// Raw or zstd.
    pub compression: Compression,
    /// Offset of the record header in the pack.
    pub offset: u64,
    /// Uncompressed length.
    pub raw_len: u32,
    /// Length of the stored bytes.
    pub stored_len: u32,
}

/// An object as it is kept: the form capsules and the daemon copy verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Object kind.
    pub kind: ObjectKind,
    /// Object id (of the raw bytes).
    pub id: ObjectId,
    /// How `data` is encoded.
    pub compression: Compression,
    /// Uncompressed length.
    pub raw_len: u32,
    /// The stored bytes.
    pub data: Vec<u8>,
}

impl StoredObject {
    /// Compresses `raw` with zstd level 3, keeping it raw when that is not smaller.
    pub fn compress(kind: ObjectKind, id: ObjectId, raw: &[u8]) -> Result<StoredObject> {
        let raw_len = u32::try_from(raw.len())
            .ok()
            .filter(|&n| n <= MAX_OBJECT)
            .ok_or_else(|| {
                StoreError::Invalid(format!("{kind} {id} is too large ({} bytes)", raw.len()))
            })?;
        let packed = zstd_compress(raw);
        let (compression, data) = match packed {
            Some(z) if z.len() < raw.len() => (Compression::Zstd, z),
            _ => (Compression::Raw, raw.to_vec()),
        };
        Ok(StoredObject {
            kind,
            id,
            compression,
            raw_len,
            data,
        })
    }

    /// Returns the raw bytes, checking the length and the id.
    pub fn decode(&self, where_: &Path) -> Result<Vec<u8>> {
        let corrupt = |why: String| StoreError::Corrupt {
            id: self.id,
            kind: self.kind,
            where_: where_.to_path_buf(),
            why,
        };
        let raw = match self.compression {
            Compression::Raw => self.data.clone(),
            Compression::Zstd => zstd_decompress(&self.data, self.raw_len as usize)
                .map_err(|e| corrupt(format!("zstd: {e}")))?,
        };
        if raw.len() != self.raw_len as usize {
            return Err(corrupt(format!(
                "{} bytes after decompression, expected {}",
                raw.len(),
                self.raw_len
            )));
        }
        if ObjectId::of(self.kind, &raw) != self.id {
            return Err(corrupt("content does not match its id".into()));
        }
        Ok(raw)
    }
}

thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompresses into a buffer of at most `capacity` bytes with a
/// per-thread context: creating a zstd context per call costs more than
/// decompressing a small object.
fn zstd_decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        let d = match &mut *d {
            Some(d) => d,
            slot => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(data, capacity)
    })
}

/// zstd level 3 with a per-thread context (creating one costs more than
/// compressing a small file).
fn zstd_compress(raw: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        c.as_mut()?.compress(raw).ok()
    })
}

/// Appends records to a new pack under a temporary name.
pub struct PackWriter {
    tmp_path: PathBuf,
    file: File,
    /// Bytes not yet written; hashed and written a whole buffer at a time,
    /// because BLAKE3 reaches its SIMD speed only on large updates aligned
    /// to its chunk tree (a 42-byte header then a payload halves it).
    buf: Vec<u8>,
    hasher: blake3::Hasher,
    offset: u64,
    /// Bytes handed to the kernel so far.
    written: u64,
    synced: u64,
    entries: Vec<IndexEntry>,
    done: bool,
}

/// Bytes between early-writeback requests.
const WRITEBACK_STEP: u64 = 16 << 20;
/// Write buffer size (a power of two, so hash updates stay aligned).
const WRITE_BUF: usize = 1 << 20;

impl PackWriter {
    /// Starts a pack in `tmp_dir`.
    pub fn create(tmp_dir: &Path) -> Result<PackWriter> {
        let tmp_path = tmp_dir.join(format!("pack-{}.tmp", unique_suffix()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .at(&tmp_path)?;
        let mut w = PackWriter {
            tmp_path,
            file,
            buf: Vec::with_capacity(WRITE_BUF),
            hasher: blake3::Hasher::new(),
            offset: 0,
            written: 0,
            synced: 0,
            entries: Vec::new(),
            done: false,
        };
        let mut header = PACK_MAGIC.to_vec();
        header.extend_from_slice(&1u32.to_le_bytes());
        w.write(&header)?;
        Ok(w)
    }

    fn write(&mut self, mut b: &[u8]) -> Result<()> {
        self.offset += b.len() as u64;
        while !b.is_empty() {
            let n = b.len().min(WRITE_BUF - self.buf.len());
            self.buf.extend_from_slice(&b[..n]);
            b = &b[n..];
            if self.buf.len() == WRITE_BUF {
                self.drain()?;
            }
        }
        Ok(())
    }

    /// Hashes and writes out the buffer; every 16 MiB asks the kernel to
    /// start writing what we have so far without waiting, so the fsync at
    /// `finish` only waits for the tail instead of the whole pack landing
    /// on the disk at once.
    fn drain(&mut self) -> Result<()> {
        self.hasher.update(&self.buf);
        self.file.write_all(&self.buf).at(&self.tmp_path)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        if self.written - self.synced >= WRITEBACK_STEP {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open fd; SYNC_FILE_RANGE_WRITE only schedules I/O.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.synced as i64,
                    (self.written - self.synced) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.synced = self.written;
        }
        Ok(())
    }

    /// Appends one object record.
    pub fn add(&mut self, obj: &StoredObject) -> Result<IndexEntry> {
        self.add_parts(obj.kind, obj.id, obj.compression, obj.raw_len, &obj.data)
    }

    /// Appends one object record given by its parts (no copy of `data`
    /// into a [`StoredObject`] needed).
    pub fn add_parts(
        &mut self,
        kind: ObjectKind,
        id: ObjectId,
        compression: Compression,
        raw_len: u32,
        data: &[u8],
    ) -> Result<IndexEntry> {
        let stored_len = u32::try_from(data.len())
            .ok()
            .filter(|&n| n <= MAX_OBJECT)
            .ok_or_else(|| StoreError::Invalid(format!("object {id} too large")))?;
        let entry = IndexEntry {
            id,
            kind,
            compression,
            offset: self.offset,
            raw_len,
            stored_len,
        };
        self.write(&record_header(&entry))?;
        self.write(data)?;
        self.entries.push(entry);
        Ok(entry)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    /// True when no object was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Flushes and fsyncs the pack, writes its index, and renames both into
    /// `packs_dir/<xx>/`. Returns the pack's name and its entries.
    pub fn finish(mut self, packs_dir: &Path) -> Result<(String, Vec<IndexEntry>)> {
        if !self.buf.is_empty() {
            self.drain()?;
        }
        self.file.sync_all().at(&self.tmp_path)?;
        let pack_hash = self.hasher.finalize();
        let name = pack_hash.to_hex().to_string();
        let dir = packs_dir.join(&name[..2]);
        fs::create_dir_all(&dir).at(&dir)?;
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_by_key(|e| e.id);
        entries.dedup_by(|a, b| a.id == b.id);
        let idx = encode_index(&entries, pack_hash.as_bytes());
        let idx_tmp = self.tmp_path.with_extension("idx.tmp");
        write_synced(&idx_tmp, &idx)?;
        let pack_path = dir.join(format!("{name}.pack"));
        let idx_path = dir.join(format!("{name}.idx"));
        fs::rename(&self.tmp_path, &pack_path).at(&pack_path)?;
        // The index goes last: a pack without one is invisible and unused.
        fs::rename(&idx_tmp, &idx_path).at(&idx_path)?;
        sync_dir(&dir)?;
        self.done = true;
        Ok((name, entries))
    }
}

impl Drop for PackWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

pub(crate) fn record_header(e: &IndexEntry) -> [u8; RECORD_HEADER] {
    let mut h = [0u8; RECORD_HEADER];
    h[0] = e.kind as u8;
    h[1] = e.compression as u8;
    h[2..34].copy_from_slice(&e.id.0);
    h[34..38].copy_from_slice(&e.raw_len.to_le_bytes());
    h[38..42].copy_from_slice(&e.stored_len.to_le_bytes());
    h
}

fn encode_index(entries: &[IndexEntry], pack_hash: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 4 + entries.len() * IDX_ENTRY + 64);
    out.extend_from_slice(IDX_MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.id.0);
        out.push(e.kind as u8);
        out.push(e.compression as u8);
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.raw_len.to_le_bytes());
        out.extend_from_slice(&e.stored_len.to_le_bytes());
    }
    out.extend_from_slice(pack_hash);
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Reads and checks an index file. Returns its entries and the pack hash.
pub fn read_index(path: &Path) -> Result<(Vec<IndexEntry>, [u8; 32])> {
    let data = fs::read(path).at(path)?;
    let bad = |why: &str| StoreError::BadPack {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    if data.len() < 8 + 4 + 64 || &data[..8] != IDX_MAGIC {
        return Err(bad("not a vnfs pack index (bad magic or too short)"));
    }
    let count = u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize;
    let expected = count
        .checked_mul(IDX_ENTRY)
        .and_then(|n| n.checked_add(8 + 4 + 64));
    if expected != Some(data.len()) {
        return Err(bad("index length does not match its entry count"));
    }
    let (body, sum) = data.split_at(data.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        return Err(bad("index checksum mismatch"));
    }
    let mut pack_hash = [0u8; 32];
    pack_hash.copy_from_slice(&body[body.len() - 32..]);
    let mut entries = Vec::with_capacity(count);
    for rec in body[12..body.len() - 32].chunks_exact(IDX_ENTRY) {
        let mut id = [0u8; 32];
        id.copy_from_slice(&rec[..32]);
        let kind = ObjectKind::from_u8(rec[32]).ok_or_else(|| bad("unknown object kind"))?;
        let compression =
            Compression::from_u8(rec[33]).ok_or_else(|| bad("unknown compression"))?;
        let le64 = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        };
        let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        entries.push(IndexEntry {
            id: ObjectId(id),
            kind,
            compression,
            offset: le64(&rec[34..42]),
            raw_len: le32(&rec[42..46]),
            stored_len: le32(&rec[46..50]),
        });
    }
    if entries.windows(2).any(|w| w[0].id >= w[1].id) {
        return Err(bad("index entries not sorted"));
    }
    Ok((entries, pack_hash))
}

/// One object record read whole from its pack: header and stored bytes in
/// one buffer, so a server can send the stored bytes without moving them.
#[derive(Debug)]
pub struct Record {
    /// The index entry it was read by (kind, compression, lengths).
    pub entry: IndexEntry,
    buf: Vec<u8>,
}

impl Record {
    /// The stored (possibly compressed) bytes.
    pub fn stored(&self) -> &[u8] {
        &self.buf[RECORD_HEADER..]
    }

    /// The whole buffer and the offset of the stored bytes in it.
    pub fn into_buf(self) -> (Vec<u8>, usize) {
        (self.buf, RECORD_HEADER)
    }
}

/// Reads one object record from an open pack and checks its header
/// against the index entry (not its content: see `StoredObject::decode`).
/// One `pread` into an uninitialised buffer: the daemon's hot path.
pub fn read_whole_record(file: &File, path: &Path, e: &IndexEntry) -> Result<Record> {
    if e.raw_len > MAX_OBJECT || e.stored_len > MAX_OBJECT {
        return Err(StoreError::BadPack {
            path: path.to_path_buf(),
            why: format!("object {} declares an impossible size", e.id),
        });
    }
    let want = RECORD_HEADER + e.stored_len as usize;
    let mut buf: Vec<u8> = Vec::with_capacity(want);
    while buf.len() < want {
        let at = e.offset + buf.len() as u64;
        let n = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at).map_err(
            |errno| StoreError::Io {
                path: path.to_path_buf(),
                source: errno.into(),
            },
        )?;
        if n == 0 {
            return Err(StoreError::Corrupt {
                id: e.id,
                kind: e.kind,
                where_: path.to_path_buf(),
                why: "pack is truncated".into(),
            });
        }
    }
    if buf[..RECORD_HEADER] != record_header(e) {
        return Err(StoreError::Corrupt {
            id: e.id,
            kind: e.kind,
            where_: path.to_path_buf(),
            why: format!(
                "record header at offset {} does not match the index",
                e.offset
            ),
        });
    }
    Ok(Record { entry: *e, buf })
}

/// Reads one object record from an open pack and checks its header
/// against the index entry (not its content: see `StoredObject::decode`).
pub fn read_record(file: &File, path: &Path, e: &IndexEntry) -> Result<StoredObject> {
    let (mut buf, start) = read_whole_record(file, path, e)?.into_buf();
    buf.drain(..start);
    Ok(StoredObject {
        kind: e.kind,
        id: e.id,
        compression: e.compression,
        raw_len: e.raw_len,
        data: buf,
    })
}

/// Why a pack file does not match its name (the BLAKE3 of the whole file,
/// in hex), or `None` when it does. Positioned reads, so a handle shared
/// with readers keeps its cursor. `advance` is told the bytes read, and
/// stops the check (reported as a failure) by returning `Break`. Catches
/// damage anywhere in the file, between object records too, at a fraction
/// of decoding every object.
pub(crate) fn check_pack_file(
    file: &File,
    name: &str,
    mut advance: impl FnMut(u64) -> std::ops::ControlFlow<()>,
) -> Option<String> {
    use std::os::unix::fs::FileExt;
    // Small enough that a piece read is still in the core's L2 cache when
    // it is hashed: 4 MiB pieces made reading and hashing each pass through
    // memory, and took twice as long as hashing alone.
    const PIECE: usize = 256 << 10;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; PIECE];
    let mut at = 0u64;
    loop {
        let n = match file.read_at(&mut buf, at) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Some(e.to_string()),
        };
        if at == 0 && (n < PACK_MAGIC.len() || &buf[..PACK_MAGIC.len()] != PACK_MAGIC) {
            return Some("bad pack magic".into());
        }
        h.update(&buf[..n]);
        at += n as u64;
        if advance(n as u64).is_break() {
            return Some("check stopped".into());
        }
    }
    if h.finalize().to_hex().as_str() != name {
        return Some("pack checksum mismatch: the file was modified or damaged".into());
    }
    None
}

/// Writes `data` to `path` and fsyncs it.
pub(crate) fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = File::create(path).at(path)?;
    f.write_all(data).at(path)?;
    f.sync_all().at(path)
}

/// fsyncs a directory so renames in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// A name part unique across processes and threads, for temporary files
/// (the store's own, and the builder's partial downloads).
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{}-{}", std::process::id(), t, n)
}
