//! Streaming capsule writer: header and manifest first, then the object
//! records in (kind, id) order, then the index, trailer and optional
//! signature. Nothing is ever rewritten, so it writes into a pipe.
//!
//! The writer copies the caller's stored bytes as they are (already
//! compressed bytes from the store go straight through); it does not
//! re-verify ids, because the reader verifies every one of them on import.

use std::io::Write;

use crate::error::{CapsuleError, Result};
use crate::format::{
    FILE_HASH_CONTEXT, FLAG_SIGNED, HEADER_LEN, Header, IndexEntry, RECORD_HEADER_LEN,
    RecordHeader, SignatureBlock, TRAILER_HASHED_LEN, TRAILER_LEN, Trailer, VERSION_MAJOR,
    VERSION_MINOR,
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

/// What a finished write produced.
#[derive(Debug)]
pub struct WriteSummary<W> {
    /// The writer given to [`CapsuleWriter::new`], flushed.
    pub inner: W,
    /// Total bytes written.
    pub bytes: u64,
    /// Object records written.
    pub objects: u64,
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
    fn io(&self, source: std::io::Error) -> CapsuleError {
        CapsuleError::Io {
            offset: self.flushed,
            source,
        }
    }

    /// Hashes (if `hashed`) and writes out the buffer.
    fn drain(&mut self, hashed: bool) -> Result<()> {
        if hashed {
            self.hasher.update(&self.buf);
        }
        if let Err(e) = self.inner.write_all(&self.buf) {
            return Err(self.io(e));
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
    last: Option<(ObjectKind, ObjectId)>,
    // The index must come after the records; entries are kept (56 bytes per
    // object) because the output cannot be rewound.
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
            last: None,
            index: Vec::new(),
            stored_total: 0,
            raw_total: 0,
        })
    }

    /// Appends one object record. Records must come in strictly increasing
    /// (kind, id) order: chunks, then trees, then commits, each by id.
    pub fn add(&mut self, r: &Record<'_>) -> Result<()> {
        let key = (r.kind, r.id);
        if self.last.is_some_and(|last| last >= key) {
            return Err(CapsuleError::Input(format!(
                "{} {} given out of order (records must be sorted by kind, then id, without duplicates)",
                r.kind, r.id
            )));
        }
        let max = self.limits.max_object_len;
        let stored_len = u32::try_from(r.stored.len()).ok().filter(|&l| l <= max);
        let Some(stored_len) = stored_len.filter(|_| r.raw_len <= max) else {
            return Err(CapsuleError::Input(format!(
                "{} {} is larger than readers accept ({max} bytes)",
                r.kind, r.id
            )));
        };
        if r.compression == Compression::Raw && stored_len != r.raw_len {
            return Err(CapsuleError::Input(format!(
                "{} {} is raw but its raw length {} differs from its {} stored bytes",
                r.kind, r.id, r.raw_len, stored_len
            )));
        }
        let header = RecordHeader {
            kind: r.kind,
            compression: r.compression,
            stored_len,
            raw_len: r.raw_len,
            id: r.id,
        };
        self.index.push(IndexEntry {
            offset: self.out.pos,
            record: header,
        });
        self.out.put(&header.encode())?;
        self.out.put(r.stored)?;
        self.stored_total += u64::from(stored_len);
        self.raw_total += u64::from(r.raw_len);
        self.head_seen |= r.kind == ObjectKind::Commit && r.id == self.head;
        self.last = Some(key);
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
            object_count: self.index.len() as u64,
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
            return Err(self.out.io(e));
        }
        let inner = self.out.inner;
        Ok(WriteSummary {
            inner,
            bytes: pos,
            objects: self.index.len() as u64,
            stored_total: self.stored_total,
            raw_total: self.raw_total,
            file_hash: trailer.file_hash,
            signed_by,
        })
    }
}

/// Writes a whole capsule from an iterator of records (already sorted by
/// kind, then id). A failing item aborts the write with its error.
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
