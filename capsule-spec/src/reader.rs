//! Streaming, verifying capsule reader over any [`Read`] (a file or stdin).
//!
//! Life cycle, shaped so that import cannot move a ref too early:
//! 1. [`CapsuleReader::open`] reads the header and the manifest. The manifest
//!    is available only as [`CapsuleReader::unverified_manifest`] (for early
//!    refusals such as a missing delta base), never as a verified value.
//! 2. [`CapsuleReader::read_objects`] (or [`CapsuleReader::next_object`])
//!    hands each object to the caller *after* its content has been hashed
//!    and matched against its id. Storing such an object is always safe in a
//!    content-addressed store, whatever the rest of the file holds.
//! 3. [`CapsuleReader::finish`] reads the index, trailer and signature,
//!    checks the index against the records, the totals, the whole-file
//!    checksum, that nothing follows, and the signature policy. Only then is
//!    the manifest returned as [`VerifiedCapsule`]: the point where a ref may
//!    move.

use std::io::Read;

use crate::error::{BoxError, CapsuleError, Result};
use crate::format::{
    HEADER_LEN, Header, INDEX_ENTRY_LEN, IndexEntry, RECORD_HEADER_LEN, RecordHeader,
    SIGNATURE_BLOCK_LEN, SignatureBlock, TRAILER_HASHED_LEN, TRAILER_LEN, Trailer,
};
use crate::id::{Compression, ObjectId, ObjectKind};
use crate::limits::Limits;
use crate::manifest::Manifest;
use crate::source::Source;
use crate::trust::{SignaturePolicy, SignatureStatus, TrustList, Verdict};

/// How a reader checks a capsule.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Caps on declared lengths.
    pub limits: Limits,
    /// Keys whose signatures are trusted.
    pub trust: TrustList,
    /// What [`CapsuleReader::finish`] accepts.
    pub policy: SignaturePolicy,
}

/// An object whose content has been checked against its id.
#[derive(Clone, Copy, Debug)]
pub struct VerifiedObject<'a> {
    /// Object kind.
    pub kind: ObjectKind,
    /// Object id (verified).
    pub id: ObjectId,
    /// How `stored` encodes it.
    pub compression: Compression,
    /// File offset of its record.
    pub offset: u64,
    /// The bytes as stored in the capsule: a store that keeps the same
    /// compression can write these without recompressing.
    pub stored: &'a [u8],
    /// The raw (decompressed) object; the same slice as `stored` when raw.
    pub raw: &'a [u8],
}

/// Receives verified objects from [`CapsuleReader::read_objects`].
pub trait ObjectSink {
    /// Whether the sink wants this object. Return `false` for objects the
    /// store already has: their bytes are then only checksummed, not
    /// decompressed and re-hashed, which makes re-imports cheap.
    fn wants(&mut self, kind: ObjectKind, id: &ObjectId) -> std::result::Result<bool, BoxError> {
        let _ = (kind, id);
        Ok(true)
    }

    /// Stores one verified object.
    fn put(&mut self, object: &VerifiedObject<'_>) -> std::result::Result<(), BoxError>;
}

/// Any closure taking a verified object is a sink that wants everything.
impl<F> ObjectSink for F
where
    F: FnMut(&VerifiedObject<'_>) -> std::result::Result<(), BoxError>,
{
    fn put(&mut self, object: &VerifiedObject<'_>) -> std::result::Result<(), BoxError> {
        self(object)
    }
}

/// Per-kind totals of the records in a capsule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KindStats {
    /// Records of this kind.
    pub count: u64,
    /// Their stored bytes.
    pub stored: u64,
    /// Their raw bytes.
    pub raw: u64,
}

/// Totals of a capsule's records, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Chunks.
    pub chunks: KindStats,
    /// Trees.
    pub trees: KindStats,
    /// Commits.
    pub commits: KindStats,
}

impl Stats {
    pub(crate) fn add(&mut self, r: &RecordHeader) {
        let k = match r.kind {
            ObjectKind::Chunk => &mut self.chunks,
            ObjectKind::Tree => &mut self.trees,
            ObjectKind::Commit => &mut self.commits,
        };
        k.count += 1;
        k.stored += u64::from(r.stored_len);
        k.raw += u64::from(r.raw_len);
    }

    /// All kinds together.
    pub fn total(&self) -> KindStats {
        let mut t = KindStats::default();
        for k in [self.chunks, self.trees, self.commits] {
            t.count += k.count;
            t.stored += k.stored;
            t.raw += k.raw;
        }
        t
    }
}

/// A capsule that passed every check.
#[derive(Clone, Debug)]
pub struct VerifiedCapsule {
    /// The header.
    pub header: Header,
    /// The manifest, now covered by the verified checksum (and signature).
    pub manifest: Manifest,
    /// The trailer.
    pub trailer: Trailer,
    /// Record totals by kind.
    pub stats: Stats,
    /// Records the sink declined (already present), not decompressed.
    pub skipped: u64,
    /// Total file length.
    pub file_len: u64,
    /// Signature status against the trust list.
    pub signature: SignatureStatus,
    /// The policy's verdict (a refusal is an error from `finish`).
    pub verdict: Verdict,
}

/// Where the reader is in the file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Objects,
    Ended,
}

/// The streaming reader. See the module documentation for its life cycle.
pub struct CapsuleReader<R: Read> {
    src: Source<R>,
    opts: ReadOptions,
    header: Header,
    manifest: Manifest,
    objects_start: u64,
    phase: Phase,
    last: Option<(ObjectKind, ObjectId)>,
    // Digest of the index entries the records imply; compared with the
    // digest of the index actually read, so the check needs no memory per
    // object.
    expected_index: blake3::Hasher,
    stats: Stats,
    skipped: u64,
    head_seen: bool,
    stored: Vec<u8>,
    raw: Vec<u8>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl<R: Read> CapsuleReader<R> {
    /// Reads and checks the header and the manifest (parsed and validated,
    /// but not yet covered by the checksum).
    pub fn open(input: R, opts: ReadOptions) -> Result<CapsuleReader<R>> {
        let mut src = Source::new(input);
        let mut hb = [0u8; HEADER_LEN];
        src.exact(&mut hb, "header", 0)?;
        let header = Header::decode(&hb).map_err(|e| CapsuleError::Layout {
            what: "header",
            offset: 0,
            reason: e.to_string(),
        })?;
        let mo = HEADER_LEN as u64;
        if header.manifest_len > opts.limits.max_manifest_len {
            return Err(CapsuleError::TooLarge {
                what: "manifest length",
                offset: 16,
                value: header.manifest_len,
                limit: opts.limits.max_manifest_len,
            });
        }
        let mut bytes = Vec::new();
        // Bounded by the check above, and grown only as data arrives.
        src.exact_vec(&mut bytes, header.manifest_len as usize, "manifest", mo)?;
        // A newer minor version may add manifest fields: parse leniently.
        let canonical = crate::format::strict_minor(header.minor);
        let manifest = Manifest::decode(&bytes, canonical)
            .map_err(|source| CapsuleError::Manifest { offset: mo, source })?;
        let objects_start = src.pos;
        Ok(CapsuleReader {
            src,
            opts,
            header,
            manifest,
            objects_start,
            phase: Phase::Objects,
            last: None,
            expected_index: blake3::Hasher::new(),
            stats: Stats::default(),
            skipped: 0,
            head_seen: false,
            stored: Vec::new(),
            raw: Vec::new(),
            zstd: None,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The manifest as read, NOT yet verified: use it only to refuse early
    /// (e.g. a delta whose base is missing), never to move a ref.
    pub fn unverified_manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Reads the next record header; `None` at the end marker.
    fn next_header(&mut self) -> Result<Option<(u64, RecordHeader)>> {
        if self.phase == Phase::Ended {
            return Ok(None);
        }
        let at = self.src.pos;
        let mut b = [0u8; RECORD_HEADER_LEN];
        self.src.exact(&mut b, "record header", at)?;
        let layout = |e: crate::format::LayoutError| CapsuleError::Layout {
            what: "record header",
            offset: at,
            reason: e.to_string(),
        };
        let Some(h) = RecordHeader::decode(&b).map_err(layout)? else {
            self.phase = Phase::Ended;
            return Ok(None);
        };
        let max = self.opts.limits.max_object_len;
        for (what, v) in [("stored length", h.stored_len), ("raw length", h.raw_len)] {
            if v > max {
                return Err(CapsuleError::TooLarge {
                    what,
                    offset: at,
                    value: v.into(),
                    limit: max.into(),
                });
            }
        }
        if self.last.is_some_and(|l| l >= (h.kind, h.id)) {
            return Err(CapsuleError::OutOfOrder {
                offset: at,
                kind: h.kind,
                id: h.id,
            });
        }
        if self.stats.total().count >= self.opts.limits.max_objects {
            return Err(CapsuleError::TooLarge {
                what: "object count",
                offset: at,
                value: self.stats.total().count + 1,
                limit: self.opts.limits.max_objects,
            });
        }
        if h.compression == Compression::Raw && h.raw_len != h.stored_len {
            return Err(self.bad(
                at,
                &h,
                format!(
                    "raw record declares raw length {} but {} stored bytes",
                    h.raw_len, h.stored_len
                ),
            ));
        }
        self.last = Some((h.kind, h.id));
        self.stats.add(&h);
        self.head_seen |= h.kind == ObjectKind::Commit && h.id == self.manifest.head;
        self.expected_index.update(
            &IndexEntry {
                offset: at,
                record: h,
            }
            .encode(),
        );
        Ok(Some((at, h)))
    }

    fn bad(&self, offset: u64, h: &RecordHeader, reason: String) -> CapsuleError {
        CapsuleError::BadRecord {
            offset,
            kind: h.kind,
            id: h.id,
            reason,
        }
    }

    /// Reads the body of record `h` at `at`; when `verify`, decompresses
    /// into `self.raw` and checks the id.
    fn body(&mut self, at: u64, h: &RecordHeader, verify: bool) -> Result<()> {
        self.src
            .exact_vec(&mut self.stored, h.stored_len as usize, "object record", at)?;
        if !verify {
            return Ok(());
        }
        verify_record(&mut self.zstd, at, h, &self.stored, &mut self.raw)
    }

    /// The next object, verified; `None` after the last one.
    pub fn next_object(&mut self) -> Result<Option<VerifiedObject<'_>>> {
        let Some((at, h)) = self.next_header()? else {
            return Ok(None);
        };
        self.body(at, &h, true)?;
        Ok(Some(self.verified(at, &h)))
    }

    fn verified(&self, at: u64, h: &RecordHeader) -> VerifiedObject<'_> {
        let stored = &self.stored[..];
        VerifiedObject {
            kind: h.kind,
            id: h.id,
            compression: h.compression,
            offset: at,
            stored,
            raw: match h.compression {
                Compression::Raw => stored,
                Compression::Zstd => &self.raw[..],
            },
        }
    }

    /// Reads every remaining object, handing each verified object the sink
    /// wants to it, in file order. Returns the number of objects handed over.
    ///
    /// Records are read in batches (a few MiB) on this thread, which also
    /// computes the file checksum; each batch is decompressed and hashed on
    /// all cores, then handed to the sink in order. The first failing record
    /// in file order stops the read; records before it have been handed over.
    pub fn read_objects(&mut self, sink: &mut dyn ObjectSink) -> Result<u64> {
        use rayon::prelude::*;
        let mut batch: Vec<Pending> = Vec::new();
        let mut put = 0;
        loop {
            let (mut n, mut stored, mut raw, mut ended) = (0, 0usize, 0usize, false);
            while n < BATCH_RECORDS && stored < BATCH_STORED && raw < BATCH_RAW {
                let Some((at, h)) = self.next_header()? else {
                    ended = true;
                    break;
                };
                let wanted = sink
                    .wants(h.kind, &h.id)
                    .map_err(|source| CapsuleError::Sink {
                        offset: at,
                        kind: h.kind,
                        id: h.id,
                        source,
                    })?;
                if n == batch.len() {
                    batch.push(Pending::default());
                }
                let p = &mut batch[n];
                self.src
                    .exact_vec(&mut p.stored, h.stored_len as usize, "object record", at)?;
                (p.at, p.header, p.wanted) = (at, Some(h), wanted);
                n += 1;
                stored += h.stored_len as usize;
                if wanted {
                    raw += h.raw_len as usize;
                }
            }
            let results: Vec<Result<()>> = batch[..n]
                .par_iter_mut()
                .map(|p| match p.header {
                    Some(h) if p.wanted => DECOMPRESSOR.with(|d| {
                        verify_record(&mut d.borrow_mut(), p.at, &h, &p.stored, &mut p.raw)
                    }),
                    _ => Ok(()),
                })
                .collect();
            for (p, r) in batch[..n].iter().zip(results) {
                r?;
                let Some(h) = p.header else { continue };
                if !p.wanted {
                    self.skipped += 1;
                    continue;
                }
                let object = VerifiedObject {
                    kind: h.kind,
                    id: h.id,
                    compression: h.compression,
                    offset: p.at,
                    stored: &p.stored,
                    raw: match h.compression {
                        Compression::Raw => &p.stored,
                        Compression::Zstd => &p.raw,
                    },
                };
                sink.put(&object).map_err(|source| CapsuleError::Sink {
                    offset: p.at,
                    kind: h.kind,
                    id: h.id,
                    source,
                })?;
                put += 1;
            }
            // Keep small buffers for reuse but free large ones: otherwise
            // each of up to BATCH_RECORDS slots could keep the largest
            // object it ever held, and a capsule of many highly compressible
            // big objects would pin gigabytes.
            for p in &mut batch[..n] {
                for b in [&mut p.stored, &mut p.raw] {
                    if b.capacity() > KEEP_CAPACITY {
                        *b = Vec::new();
                    }
                }
            }
            if ended {
                return Ok(put);
            }
        }
    }

    /// Finishes: verifies any objects not yet read (discarding them), then
    /// the index, trailer, checksum, end of input, and signature policy.
    /// Returns the manifest only when all of that holds.
    pub fn finish(self) -> Result<VerifiedCapsule> {
        let policy = self.opts.policy;
        let v = self.finish_unenforced()?;
        let verdict = policy.check(&v.signature).map_err(CapsuleError::Policy)?;
        Ok(VerifiedCapsule { verdict, ..v })
    }

    /// [`CapsuleReader::finish`] without applying the signature policy
    /// (for inspection: the status is reported, not enforced).
    pub(crate) fn finish_unenforced(mut self) -> Result<VerifiedCapsule> {
        // Drain: an unread object must still be verified, not trusted.
        while let Some((at, h)) = self.next_header()? {
            self.body(at, &h, true)?;
        }
        let index_offset = self.src.pos;
        let count = self.stats.total().count;
        let mut index = blake3::Hasher::new();
        let mut expect_offset = self.objects_start;
        for i in 0..count {
            let at = self.src.pos;
            let mut b = [0u8; INDEX_ENTRY_LEN];
            self.src.exact(&mut b, "index entry", at)?;
            let e = IndexEntry::decode(&b).map_err(|e| CapsuleError::Layout {
                what: "index entry",
                offset: at,
                reason: e.to_string(),
            })?;
            if e.offset != expect_offset {
                return Err(CapsuleError::Inconsistent {
                    what: "index entry",
                    offset: at,
                    reason: format!(
                        "entry {i} ({} {}) points at offset {}, but record {i} starts at {expect_offset}",
                        e.record.kind, e.record.id, e.offset
                    ),
                });
            }
            expect_offset += e.record.record_len();
            index.update(&b);
        }
        if index.finalize() != self.expected_index.finalize() {
            return Err(CapsuleError::Inconsistent {
                what: "index",
                offset: index_offset,
                reason: "its entries do not describe the records (kind, id, compression or lengths differ)".into(),
            });
        }
        let trailer_at = self.src.pos;
        let mut tb = [0u8; TRAILER_LEN];
        self.src
            .exact(&mut tb[..TRAILER_HASHED_LEN], "trailer", trailer_at)?;
        let computed = self.src.hash_so_far();
        self.src.stop_hashing();
        self.src
            .exact(&mut tb[TRAILER_HASHED_LEN..], "trailer", trailer_at)?;
        let trailer = Trailer::decode(&tb).map_err(|e| CapsuleError::Layout {
            what: "trailer",
            offset: trailer_at,
            reason: e.to_string(),
        })?;
        let total = self.stats.total();
        let expected_index_offset = index_offset;
        for (field, declared, actual) in [
            ("index offset", trailer.index_offset, expected_index_offset),
            ("object count", trailer.object_count, total.count),
            ("stored total", trailer.stored_total, total.stored),
            ("raw total", trailer.raw_total, total.raw),
        ] {
            if declared != actual {
                return Err(CapsuleError::Inconsistent {
                    what: "trailer",
                    offset: trailer_at,
                    reason: format!("declares {field} {declared}, the capsule has {actual}"),
                });
            }
        }
        if trailer.file_hash != computed {
            return Err(CapsuleError::Checksum {
                offset: trailer_at,
                expected: hex::encode(trailer.file_hash),
                actual: hex::encode(computed),
            });
        }
        let block = if self.header.signed() {
            let at = self.src.pos;
            let mut sb = [0u8; SIGNATURE_BLOCK_LEN];
            self.src.exact(&mut sb, "signature block", at)?;
            Some(
                SignatureBlock::decode(&sb).map_err(|e| CapsuleError::Layout {
                    what: "signature block",
                    offset: at,
                    reason: e.to_string(),
                })?,
            )
        } else {
            None
        };
        if !self.src.at_eof()? {
            return Err(CapsuleError::TrailingData {
                offset: self.src.pos,
            });
        }
        if !self.head_seen {
            return Err(CapsuleError::Inconsistent {
                what: "manifest",
                offset: HEADER_LEN as u64,
                reason: format!(
                    "its head commit {} is not in the capsule",
                    self.manifest.head
                ),
            });
        }
        let signature = self.opts.trust.status(block.as_ref(), &trailer.file_hash);
        Ok(VerifiedCapsule {
            header: self.header,
            manifest: self.manifest,
            trailer,
            stats: self.stats,
            skipped: self.skipped,
            file_len: self.src.pos,
            signature,
            verdict: Verdict::Accept,
        })
    }
}

/// Checks one record's content against its id: decompresses zstd data into
/// `raw` (capacity capped at the declared raw length, so zstd cannot write
/// past it), compares the length, hashes with the kind's context.
fn verify_record(
    zstd: &mut Option<zstd::bulk::Decompressor<'static>>,
    at: u64,
    h: &RecordHeader,
    stored: &[u8],
    raw: &mut Vec<u8>,
) -> Result<()> {
    let bad = |reason: String| CapsuleError::BadRecord {
        offset: at,
        kind: h.kind,
        id: h.id,
        reason,
    };
    let content: &[u8] = match h.compression {
        Compression::Raw => stored,
        Compression::Zstd => {
            let d = match zstd {
                Some(d) => d,
                None => zstd.insert(
                    zstd::bulk::Decompressor::new()
                        .map_err(|source| CapsuleError::Io { offset: at, source })?,
                ),
            };
            raw.clear();
            raw.reserve(h.raw_len as usize);
            if let Err(e) = d.decompress_to_buffer(stored, raw) {
                return Err(bad(format!(
                    "zstd data is corrupt or larger than the declared raw length {}: {e}",
                    h.raw_len
                )));
            }
            if raw.len() != h.raw_len as usize {
                return Err(bad(format!(
                    "decompresses to {} bytes, but the record declares {}",
                    raw.len(),
                    h.raw_len
                )));
            }
            raw
        }
    };
    let actual = h.kind.id_of(content);
    if actual != h.id {
        return Err(CapsuleError::IdMismatch {
            offset: at,
            kind: h.kind,
            id: h.id,
            actual,
        });
    }
    Ok(())
}

thread_local! {
    /// One zstd context per worker thread, kept across batches and capsules:
    /// creating a context per record or per rayon split costs more than
    /// decompressing a small chunk.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// One record read ahead for parallel verification; buffers are reused.
#[derive(Default)]
struct Pending {
    at: u64,
    header: Option<RecordHeader>,
    wanted: bool,
    stored: Vec<u8>,
    raw: Vec<u8>,
}

/// A batch is verified on all cores once it holds this much stored data...
const BATCH_STORED: usize = 4 << 20;
/// ...or this much raw data to produce...
const BATCH_RAW: usize = 16 << 20;
/// ...or this many records.
const BATCH_RECORDS: usize = 512;
/// Per-slot buffers larger than this are freed after each batch.
const KEEP_CAPACITY: usize = 1 << 20;

/// Reads and verifies a whole capsule, handing verified objects to `sink`,
/// and returns the verified manifest once everything checked out.
pub fn read_capsule<R: Read>(
    input: R,
    opts: ReadOptions,
    sink: &mut dyn ObjectSink,
) -> Result<VerifiedCapsule> {
    let mut r = CapsuleReader::open(input, opts)?;
    r.read_objects(sink)?;
    r.finish()
}
