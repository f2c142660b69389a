//! Streaming capsule writer: header and manifest first, then the records
//! (single objects and solid blocks) in the caller's order, then the index,
//! trailer and optional signature. Nothing is ever rewritten, so it writes
//! into a pipe.
//!
//! The writer copies the caller's stored bytes as they are (already
//! compressed bytes from the store go straight through); it does not
//! re-verify ids, because the reader verifies every one of them on import.
//! [`BlockBuilder`] makes solid blocks from raw small objects.

use std::collections::HashSet;
use std::io::Write;

use crate::error::{CapsuleError, Result};
use crate::format::{
    BlockHeader, FILE_HASH_CONTEXT, FLAG_SIGNED, HEADER_LEN, Header, IndexEntry, MEMBER_LEN,
    Member, RECORD_HEADER_LEN, RecordHead, RecordHeader, SignatureBlock, TRAILER_HASHED_LEN,
    TRAILER_LEN, Trailer, VERSION_MAJOR, VERSION_MINOR,
};
use crate::id::{Compression, ObjectId, ObjectKind};
use crate::keys::{PublicKey, SecretKey};
use crate::limits::Limits;
use crate::manifest::Manifest;

/// One object to write: its identity and its stored bytes, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Object kind.
    pub kind: ObjectKind,
    /// Object id (BLAKE3 of the raw bytes, per kind).
    pub id: ObjectId,
    /// How `stored` encodes the object.
    pub compression: Compression,
    /// Length of the raw (uncompressed) object.
    pub raw_len: u32,
    /// The bytes as stored (compressed for [`Compression::Zstd`]).
    pub stored: &'a [u8],
}

/// An owned [`Record`], for iterators that produce records one by one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRecord {
    /// Object kind.
    pub kind: ObjectKind,
    /// Object id.
    pub id: ObjectId,
    /// How `stored` encodes the object.
    pub compression: Compression,
    /// Length of the raw object.
    pub raw_len: u32,
    /// The stored bytes.
    pub stored: Vec<u8>,
}

impl OwnedRecord {
    /// Makes a record from raw object bytes, as the store does: the id is
    /// computed, and the bytes are zstd-compressed at `level` when that is
    /// smaller (raw otherwise; `level` `None` keeps them raw).
    pub fn from_raw(kind: ObjectKind, raw: &[u8], level: Option<i32>) -> Result<OwnedRecord> {
        let raw_len = u32::try_from(raw.len()).map_err(|_| {
            CapsuleError::Input(format!("{kind} of {} bytes is too large", raw.len()))
        })?;
        let id = kind.id_of(raw);
        if let Some(level) = level {
            let z = zstd::bulk::compress(raw, level)
                .map_err(|e| CapsuleError::Input(format!("compressing {kind} {id}: {e}")))?;
            if z.len() < raw.len() {
                return Ok(OwnedRecord {
                    kind,
                    id,
                    compression: Compression::Zstd,
                    raw_len,
                    stored: z,
                });
            }
        }
        Ok(OwnedRecord {
            kind,
            id,
            compression: Compression::Raw,
            raw_len,
            stored: raw.to_vec(),
        })
    }

    /// Borrows it as a [`Record`].
    pub fn as_record(&self) -> Record<'_> {
        Record {
            kind: self.kind,
            id: self.id,
            compression: self.compression,
            raw_len: self.raw_len,
            stored: &self.stored,
        }
    }
}

/// A solid block ready to be written: small objects, concatenated in
/// member order and compressed together so that each benefits from the
/// others' context (made by [`BlockBuilder`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// How `payload` encodes the concatenated members.
    pub compression: Compression,
    /// Sum of the members' raw lengths.
    pub raw_len: u32,
    /// The members, in payload order.
    pub members: Vec<Member>,
    /// The encoded payload.
    pub payload: Vec<u8>,
}

/// Collects raw small objects for one solid block.
#[derive(Debug, Default)]
pub struct BlockBuilder {
    members: Vec<Member>,
    raw: Vec<u8>,
}

impl BlockBuilder {
    /// An empty builder.
    pub fn new() -> BlockBuilder {
        BlockBuilder::default()
    }

    /// Appends an object whose id the caller has already checked.
    pub fn push(&mut self, kind: ObjectKind, id: ObjectId, raw: &[u8]) -> Result<()> {
        let raw_len = u32::try_from(raw.len())
            .ok()
            .filter(|_| self.raw.len() + raw.len() <= u32::MAX as usize)
            .ok_or_else(|| CapsuleError::Input(format!("{kind} {id} overflows its block")))?;
        self.members.push(Member { kind, raw_len, id });
        self.raw.extend_from_slice(raw);
        Ok(())
    }

    /// Appends an object given by its raw bytes, computing its id.
    pub fn push_raw(&mut self, kind: ObjectKind, raw: &[u8]) -> Result<ObjectId> {
        let id = kind.id_of(raw);
        self.push(kind, id, raw)?;
        Ok(id)
    }

    /// Raw bytes collected so far.
    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }

    /// Members collected so far.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Compresses the collected bytes as one zstd frame at `level` (kept
    /// raw when that is not smaller) and returns the block. Compression is
    /// single-threaded and deterministic: the same members at the same
    /// level give the same bytes with the same zstd version.
    pub fn finish(self, level: i32) -> Result<Block> {
        let raw_len = self.raw.len() as u32; // bounded in push
        let z = BLOCK_COMPRESSOR.with(|c| {
            let mut c = c.borrow_mut();
            let c = match &mut *c {
                Some((l, c)) if *l == level => c,
                slot => {
                    let fresh = zstd::bulk::Compressor::new(level)
                        .map_err(|e| CapsuleError::Input(format!("zstd level {level}: {e}")))?;
                    &mut slot.insert((level, fresh)).1
                }
            };
            c.compress(&self.raw)
                .map_err(|e| CapsuleError::Input(format!("compressing a block: {e}")))
        })?;
        let (compression, payload) = if z.len() < self.raw.len() {
            (Compression::Zstd, z)
        } else {
            (Compression::Raw, self.raw)
        };
        Ok(Block {
            compression,
            raw_len,
            members: self.members,
            payload,
        })
    }
}

thread_local! {
    /// One zstd context per thread and level: making one costs more than
    /// compressing a small block.
    static BLOCK_COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// What a finished write produced.
#[derive(Debug)]
pub struct WriteSummary<W> {
    /// The writer given to [`CapsuleWriter::new`], flushed.
    pub inner: W,
    /// Total bytes written.
    pub bytes: u64,
    /// Objects written (single records plus block members).
    pub objects: u64,
    /// Records written (single objects and blocks).
    pub records: u64,
    /// Sum of stored lengths.
    pub stored_total: u64,
    /// Sum of raw lengths.
    pub raw_total: u64,
    /// The whole-file checksum recorded in the trailer.
    pub file_hash: [u8; 32],
    /// The signer, when signed.
    pub signed_by: Option<PublicKey>,
}

/// Buffer size of the writer (a power of two: see [`Hashing`]).
const BUF: usize = 1 << 20;

/// Buffers, counts and hashes everything written through it. The checksum
/// is fed exactly one full buffer at a time, because BLAKE3 reaches its SIMD
/// speed only on large updates aligned to its chunk tree; feeding it each
/// 48-byte record header and payload separately halves its throughput.
struct Hashing<W: Write> {
    inner: W,
    buf: Vec<u8>,
    hasher: blake3::Hasher,
    /// Bytes accepted so far (buffered or written).
    pos: u64,
    /// File offset of `buf[0]`.
    flushed: u64,
}

impl<W: Write> Hashing<W> {
    /// An I/O error at `done` bytes into the buffer: the file offset where
    /// the write failed, not where the buffer starts.
    fn io(&self, done: usize, source: std::io::Error) -> CapsuleError {
        CapsuleError::Io {
            offset: self.flushed + done as u64,
            source,
        }
    }

    /// Hashes (if `hashed`) and writes out the buffer.
    fn drain(&mut self, hashed: bool) -> Result<()> {
        if hashed {
            self.hasher.update(&self.buf);
        }
        // `write_all` would not say how much it wrote before failing.
        let mut done = 0;
        while done < self.buf.len() {
            match self.inner.write(&self.buf[done..]) {
                Ok(0) => return Err(self.io(done, std::io::ErrorKind::WriteZero.into())),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(done, e)),
            }
        }
        self.flushed += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Appends bytes covered by the checksum.
    fn put(&mut self, mut bytes: &[u8]) -> Result<()> {
        self.pos += bytes.len() as u64;
        while !bytes.is_empty() {
            let n = bytes.len().min(BUF - self.buf.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.len() == BUF {
                self.drain(true)?;
            }
        }
        Ok(())
    }

    /// The checksum of everything put so far; writes the buffer out.
    fn finish_hash(&mut self) -> Result<[u8; 32]> {
        self.drain(true)?;
        Ok(*self.hasher.finalize().as_bytes())
    }

    /// Writes bytes not covered by the checksum (after `finish_hash`).
    fn put_unhashed(&mut self, bytes: &[u8]) -> Result<()> {
        self.pos += bytes.len() as u64;
        self.buf.extend_from_slice(bytes);
        self.drain(false)
    }
}

/// Writes one capsule into any [`Write`], as a stream.
pub struct CapsuleWriter<'k, W: Write> {
    out: Hashing<W>,
    signer: Option<&'k SecretKey>,
    limits: Limits,
    head: ObjectId,
    head_seen: bool,
    // Every id written, so no object goes in twice (readers refuse that).
    seen: HashSet<ObjectId>,
    objects: u64,
    // The index must come after the records; entries are kept (56 bytes per
    // record) because the output cannot be rewound.
    index: Vec<IndexEntry>,
    stored_total: u64,
    raw_total: u64,
}

impl<'k, W: Write> CapsuleWriter<'k, W> {
    /// Starts a capsule: validates and writes the header and manifest. With
    /// `signer`, a signature block is written at the end.
    pub fn new(out: W, manifest: &Manifest, signer: Option<&'k SecretKey>) -> Result<Self> {
        let limits = Limits::default();
        let bytes = manifest
            .encode()
            .map_err(|e| CapsuleError::Input(e.to_string()))?;
        if bytes.len() as u64 > limits.max_manifest_len {
            return Err(CapsuleError::Input(format!(
                "manifest is {} bytes, more than readers accept ({})",
                bytes.len(),
                limits.max_manifest_len
            )));
        }
        let header = Header {
            major: VERSION_MAJOR,
            minor: VERSION_MINOR,
            flags: if signer.is_some() { FLAG_SIGNED } else { 0 },
            manifest_len: bytes.len() as u64,
        };
        let mut out = Hashing {
            inner: out,
            buf: Vec::with_capacity(BUF),
            hasher: blake3::Hasher::new_derive_key(FILE_HASH_CONTEXT),
            pos: 0,
            flushed: 0,
        };
        out.put(&header.encode())?;
        out.put(&bytes)?;
        debug_assert_eq!(out.pos, HEADER_LEN as u64 + bytes.len() as u64);
        Ok(CapsuleWriter {
            out,
            signer,
            limits,
            head: manifest.head,
            head_seen: false,
            seen: HashSet::new(),
            objects: 0,
            index: Vec::new(),
            stored_total: 0,
            raw_total: 0,
        })
    }

    /// Notes an object about to be written; refuses a second copy.
    fn note(&mut self, kind: ObjectKind, id: ObjectId) -> Result<()> {
        if !self.seen.insert(id) {
            return Err(CapsuleError::Input(format!(
                "{kind} {id} given twice (each object goes into a capsule once)"
            )));
        }
        self.objects += 1;
        self.head_seen |= kind == ObjectKind::Commit && id == self.head;
        Ok(())
    }

    fn too_large(&self, what: String) -> CapsuleError {
        CapsuleError::Input(format!(
            "{what} is larger than readers accept ({} bytes)",
            self.limits.max_object_len
        ))
    }

    /// Appends one single-object record. Records may come in any order
    /// (the exporter uses the image's walk order, which keeps related
    /// objects together), but each object only once.
    pub fn add(&mut self, r: &Record<'_>) -> Result<()> {
        let max = self.limits.max_object_len;
        let stored_len = u32::try_from(r.stored.len()).ok().filter(|&l| l <= max);
        let Some(stored_len) = stored_len.filter(|_| r.raw_len <= max) else {
            return Err(self.too_large(format!("{} {}", r.kind, r.id)));
        };
        if r.compression == Compression::Raw && stored_len != r.raw_len {
            return Err(CapsuleError::Input(format!(
                "{} {} is raw but its raw length {} differs from its {} stored bytes",
                r.kind, r.id, r.raw_len, stored_len
            )));
        }
        self.note(r.kind, r.id)?;
        let header = RecordHead::Object(RecordHeader {
            kind: r.kind,
            compression: r.compression,
            stored_len,
            raw_len: r.raw_len,
            id: r.id,
        });
        self.index.push(IndexEntry {
            offset: self.out.pos,
            record: header,
        });
        self.out.put(&header.encode())?;
        self.out.put(r.stored)?;
        self.stored_total += u64::from(stored_len);
        self.raw_total += u64::from(r.raw_len);
        Ok(())
    }

    /// Appends a solid block (see [`BlockBuilder`]).
    pub fn add_block(&mut self, b: &Block) -> Result<()> {
        let max = self.limits.max_object_len;
        if b.members.is_empty() || b.members.len() as u64 > u64::from(self.limits.max_block_members)
        {
            return Err(CapsuleError::Input(format!(
                "a block of {} members (1 to {} allowed)",
                b.members.len(),
                self.limits.max_block_members
            )));
        }
        let sum: u64 = b.members.iter().map(|m| u64::from(m.raw_len)).sum();
        let stored_len = u32::try_from(b.payload.len()).ok().filter(|&l| l <= max);
        let Some(stored_len) = stored_len.filter(|_| b.raw_len <= max) else {
            return Err(self.too_large(format!("a block of {} members", b.members.len())));
        };
        if sum != u64::from(b.raw_len)
            || (b.compression == Compression::Raw && stored_len != b.raw_len)
        {
            return Err(CapsuleError::Input(format!(
                "block lengths disagree: members {sum}, raw {}, stored {stored_len} ({})",
                b.raw_len,
                b.compression.name()
            )));
        }
        for m in &b.members {
            self.note(m.kind, m.id)?;
        }
        let header = RecordHead::Block(BlockHeader {
            compression: b.compression,
            stored_len,
            raw_len: b.raw_len,
            members: b.members.len() as u32,
        });
        self.index.push(IndexEntry {
            offset: self.out.pos,
            record: header,
        });
        self.out.put(&header.encode())?;
        let mut table = Vec::with_capacity(b.members.len() * MEMBER_LEN);
        for m in &b.members {
            table.extend_from_slice(&m.encode());
        }
        self.out.put(&table)?;
        self.out.put(&b.payload)?;
        self.stored_total += u64::from(stored_len);
        self.raw_total += u64::from(b.raw_len);
        Ok(())
    }

    /// Writes the end marker, index, trailer and signature, flushes, and
    /// returns the summary. Fails if the manifest's head commit was not
    /// among the records.
    pub fn finish(mut self) -> Result<WriteSummary<W>> {
        if !self.head_seen {
            return Err(CapsuleError::Input(format!(
                "the manifest's head commit {} is not among the records",
                self.head
            )));
        }
        self.out.put(&[0u8; RECORD_HEADER_LEN])?;
        let index_offset = self.out.pos;
        for e in &self.index {
            self.out.put(&e.encode())?;
        }
        let mut trailer = Trailer {
            index_offset,
            object_count: self.objects,
            record_count: self.index.len() as u64,
            stored_total: self.stored_total,
            raw_total: self.raw_total,
            file_hash: [0; 32],
        };
        self.out.put(&trailer.encode()[..TRAILER_HASHED_LEN])?;
        trailer.file_hash = self.out.finish_hash()?;
        self.out
            .put_unhashed(&trailer.encode()[TRAILER_HASHED_LEN..TRAILER_LEN])?;
        let signed_by = match self.signer {
            Some(key) => {
                let block = SignatureBlock {
                    public_key: *key.public().as_bytes(),
                    signature: key.sign_file_hash(&trailer.file_hash),
                };
                self.out.put_unhashed(&block.encode())?;
                Some(key.public())
            }
            None => None,
        };
        let pos = self.out.pos;
        if let Err(e) = self.out.inner.flush() {
            return Err(self.out.io(0, e));
        }
        let inner = self.out.inner;
        Ok(WriteSummary {
            inner,
            bytes: pos,
            objects: self.objects,
            records: self.index.len() as u64,
            stored_total: self.stored_total,
            raw_total: self.raw_total,
            file_hash: trailer.file_hash,
            signed_by,
        })
    }
}

/// Writes a whole capsule of single-object records from an iterator, in
/// its order. A failing item aborts the write with its error.
pub fn write_capsule<W, I, E>(
    out: W,
    manifest: &Manifest,
    signer: Option<&SecretKey>,
    records: I,
) -> Result<WriteSummary<W>>
where
    W: Write,
    I: IntoIterator<Item = std::result::Result<OwnedRecord, E>>,
    E: std::fmt::Display,
{
    let mut w = CapsuleWriter::new(out, manifest, signer)?;
    for r in records {
        let r = r.map_err(|e| CapsuleError::Input(format!("reading an object to export: {e}")))?;
        w.add(&r.as_record())?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts `room` bytes, in writes of at most 1000, then reports a
    /// full disk.
    struct Full {
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(ENOSPC));
            }
            let n = b.len().min(self.room).min(1000);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// ENOSPC on Linux (the crate does not depend on libc).
    const ENOSPC: i32 = 28;

    #[test]
    fn a_failed_write_names_the_offset_where_it_failed() {
        let mut h = Hashing {
            inner: Full { room: 1_500_000 },
            buf: Vec::with_capacity(BUF),
            hasher: blake3::Hasher::new(),
            pos: 0,
            flushed: 0,
        };
        let data = vec![7u8; 3 * BUF];
        match h.put(&data) {
            Err(CapsuleError::Io { offset, source }) => {
                assert_eq!(offset, 1_500_000, "not the buffer's start");
                assert_eq!(source.raw_os_error(), Some(ENOSPC));
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }
}
