//! Inspection of a capsule file without importing it, using seeks: the
//! trailer is found from the end, the index from the trailer, the member
//! tables of solid blocks from the index, and the whole-file checksum and
//! signature are verified in one sequential pass without decompressing
//! objects. `deep` additionally verifies every object
//! id (the full streaming reader).

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};

use crate::error::{CapsuleError, Result};
use crate::format::{
    FILE_HASH_CONTEXT, HEADER_LEN, Header, INDEX_ENTRY_LEN, IndexEntry, MEMBER_LEN, Member,
    RECORD_HEADER_LEN, RecordHead, SIGNATURE_BLOCK_LEN, SignatureBlock, TRAILER_HASHED_LEN,
    TRAILER_LEN, Trailer,
};
use crate::limits::Limits;
use crate::manifest::Manifest;
use crate::reader::{CapsuleReader, ReadOptions, Stats};
use crate::source::Source;
use crate::trust::{SignatureStatus, TrustList};

/// What [`inspect`] reports.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// The header.
    pub header: Header,
    /// The manifest (verified by the checksum).
    pub manifest: Manifest,
    /// The trailer.
    pub trailer: Trailer,
    /// Object and block totals, from the index and the blocks' member
    /// tables (from the records when deep).
    pub stats: Stats,
    /// File length.
    pub file_len: u64,
    /// Signature status against the trust list (not enforced).
    pub signature: SignatureStatus,
    /// Whether every object id was verified too.
    pub deep: bool,
}

fn io(offset: u64) -> impl FnOnce(std::io::Error) -> CapsuleError {
    move |source| CapsuleError::Io { offset, source }
}

fn layout(
    what: &'static str,
    offset: u64,
) -> impl FnOnce(crate::format::LayoutError) -> CapsuleError {
    move |e| CapsuleError::Layout {
        what,
        offset,
        reason: e.to_string(),
    }
}

/// Inspects a capsule read once from front to end (a pipe): the same
/// checks and report as [`inspect`], which seeks instead. Without `deep`,
/// object records are only checksummed, not decompressed.
pub fn inspect_stream<R: Read>(
    input: R,
    limits: Limits,
    trust: &TrustList,
    deep: bool,
) -> Result<Inspection> {
    /// Takes every object, or none (then none is decompressed).
    struct Sink(bool);
    impl crate::reader::ObjectSink for Sink {
        fn wants(
            &mut self,
            _: crate::id::ObjectKind,
            _: &crate::id::ObjectId,
        ) -> std::result::Result<bool, crate::error::BoxError> {
            Ok(self.0)
        }
        fn put(
            &mut self,
            _: &crate::reader::VerifiedObject<'_>,
        ) -> std::result::Result<(), crate::error::BoxError> {
            Ok(())
        }
    }
    let opts = ReadOptions {
        limits,
        trust: trust.clone(),
        policy: Default::default(),
    };
    let mut r = CapsuleReader::open(input, opts)?;
    r.read_objects(&mut Sink(deep))?;
    let v = r.finish_unenforced()?;
    Ok(Inspection {
        header: v.header,
        manifest: v.manifest,
        trailer: v.trailer,
        stats: v.stats,
        file_len: v.file_len,
        signature: v.signature,
        deep,
    })
}

/// Inspects a seekable capsule. Checks structure, index, checksum and
/// signature status; with `deep`, also decompresses and verifies every
/// object. Nothing is enforced about the signature: it is reported.
pub fn inspect<R: Read + Seek>(
    mut file: R,
    limits: Limits,
    trust: &TrustList,
    deep: bool,
) -> Result<Inspection> {
    let file_len = file.seek(SeekFrom::End(0)).map_err(io(0))?;
    file.seek(SeekFrom::Start(0)).map_err(io(0))?;
    if deep {
        return inspect_stream(file, limits, trust, true);
    }

    // Header and manifest, from the front.
    let mut src = Source::new(&mut file);
    let mut hb = [0u8; HEADER_LEN];
    src.exact(&mut hb, "header", 0)?;
    let header = Header::decode(&hb).map_err(layout("header", 0))?;
    if header.manifest_len > limits.max_manifest_len {
        return Err(CapsuleError::TooLarge {
            what: "manifest length",
            offset: 16,
            value: header.manifest_len,
            limit: limits.max_manifest_len,
        });
    }
    let mut mb = Vec::new();
    src.exact_vec(
        &mut mb,
        header.manifest_len as usize,
        "manifest",
        HEADER_LEN as u64,
    )?;
    let manifest =
        Manifest::decode(&mb, crate::format::strict_minor(header.minor)).map_err(|source| {
            CapsuleError::Manifest {
                offset: HEADER_LEN as u64,
                source,
            }
        })?;
    let objects_start = src.pos;
    drop(src);

    // Trailer (and signature block), from the back.
    let tail = TRAILER_LEN as u64
        + if header.signed() {
            SIGNATURE_BLOCK_LEN as u64
        } else {
            0
        };
    let min_len = objects_start + RECORD_HEADER_LEN as u64 + tail;
    if file_len < min_len {
        return Err(CapsuleError::Truncated {
            what: "capsule",
            offset: 0,
            end: file_len,
        });
    }
    let trailer_at = file_len - tail;
    file.seek(SeekFrom::Start(trailer_at))
        .map_err(io(trailer_at))?;
    let mut tb = [0u8; TRAILER_LEN];
    file.read_exact(&mut tb).map_err(io(trailer_at))?;
    let trailer = Trailer::decode(&tb).map_err(|e| match e {
        // A file cut short ends in the middle of its objects: say so, as
        // the streaming reader does when it meets the end.
        crate::format::LayoutError::BadMagic => CapsuleError::Layout {
            what: "trailer",
            offset: trailer_at,
            reason: "not found where the file ends: the capsule is truncated, or has bytes \
                     appended"
                .into(),
        },
        e => layout("trailer", trailer_at)(e),
    })?;
    let block = if header.signed() {
        let at = trailer_at + TRAILER_LEN as u64;
        let mut sb = [0u8; SIGNATURE_BLOCK_LEN];
        file.read_exact(&mut sb).map_err(io(at))?;
        Some(SignatureBlock::decode(&sb).map_err(layout("signature block", at))?)
    } else {
        None
    };

    // Index: its place and size follow from the trailer; each entry must
    // point at the next record in sequence, ending at the marker.
    let inconsistent = |reason: String| CapsuleError::Inconsistent {
        what: "trailer",
        offset: trailer_at,
        reason,
    };
    trailer
        .record_count
        .checked_mul(INDEX_ENTRY_LEN as u64)
        .filter(|&l| trailer.index_offset.checked_add(l) == Some(trailer_at))
        .ok_or_else(|| {
            inconsistent(format!(
                "index at {} with {} entries does not end where the trailer starts",
                trailer.index_offset, trailer.record_count
            ))
        })?;
    for (what, value) in [
        ("record count", trailer.record_count),
        ("object count", trailer.object_count),
    ] {
        if value > limits.max_objects {
            return Err(CapsuleError::TooLarge {
                what,
                offset: trailer_at,
                value,
                limit: limits.max_objects,
            });
        }
    }
    let marker_at = trailer
        .index_offset
        .checked_sub(RECORD_HEADER_LEN as u64)
        .filter(|&m| m >= objects_start)
        .ok_or_else(|| {
            inconsistent(format!(
                "index offset {} is impossible",
                trailer.index_offset
            ))
        })?;
    file.seek(SeekFrom::Start(trailer.index_offset))
        .map_err(io(trailer.index_offset))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, &mut file);
    let mut stats = Stats::default();
    let mut seen = HashSet::new();
    let mut blocks = Vec::new();
    let mut expect = objects_start;
    for i in 0..trailer.record_count {
        let at = trailer.index_offset + i * INDEX_ENTRY_LEN as u64;
        let mut b = [0u8; INDEX_ENTRY_LEN];
        reader.read_exact(&mut b).map_err(io(at))?;
        let e = IndexEntry::decode(&b).map_err(layout("index entry", at))?;
        if e.offset != expect {
            return Err(CapsuleError::Inconsistent {
                what: "index entry",
                offset: at,
                reason: format!(
                    "entry {i} at record offset {} is out of sequence (expected offset {expect})",
                    e.offset
                ),
            });
        }
        match e.record {
            RecordHead::Object(h) => {
                if !seen.insert(h.id) {
                    return Err(CapsuleError::Duplicate {
                        offset: e.offset,
                        kind: h.kind,
                        id: h.id,
                    });
                }
                stats.add_single(&h);
            }
            RecordHead::Block(h) => {
                if h.members == 0 || h.members > limits.max_block_members {
                    return Err(CapsuleError::Inconsistent {
                        what: "index entry",
                        offset: at,
                        reason: format!("block with {} members", h.members),
                    });
                }
                blocks.push((e.offset, h));
            }
        }
        expect += e.record.record_len();
    }
    drop(reader);
    // Member tables, read where the blocks are (few and small).
    for (at, h) in blocks {
        let table_at = at + RECORD_HEADER_LEN as u64;
        file.seek(SeekFrom::Start(table_at)).map_err(io(table_at))?;
        let mut members = Vec::with_capacity(h.members as usize);
        let mut sum = 0u64;
        let mut r = std::io::BufReader::with_capacity(64 << 10, (&mut file).take(h.table_len()));
        for i in 0..u64::from(h.members) {
            let mut mb = [0u8; MEMBER_LEN];
            let eat = table_at + i * MEMBER_LEN as u64;
            r.read_exact(&mut mb).map_err(io(eat))?;
            let m = Member::decode(&mb).map_err(layout("block member entry", eat))?;
            if !seen.insert(m.id) {
                return Err(CapsuleError::Duplicate {
                    offset: at,
                    kind: m.kind,
                    id: m.id,
                });
            }
            sum += u64::from(m.raw_len);
            members.push(m);
        }
        if sum != u64::from(h.raw_len) {
            return Err(CapsuleError::Inconsistent {
                what: "block",
                offset: at,
                reason: format!(
                    "its members add up to {sum} bytes, but it declares {}",
                    h.raw_len
                ),
            });
        }
        stats.add_block(&h, &members);
    }
    let total = stats.total();
    if expect != marker_at
        || total.stored != trailer.stored_total
        || total.raw != trailer.raw_total
        || total.count != trailer.object_count
    {
        return Err(inconsistent(format!(
            "index totals (records end at {expect}, {} objects, {} stored, {} raw) disagree with the trailer (marker at {marker_at}, {} objects, {} stored, {} raw)",
            total.count,
            total.stored,
            total.raw,
            trailer.object_count,
            trailer.stored_total,
            trailer.raw_total
        )));
    }

    // Whole-file checksum: one sequential pass, no decompression.
    file.seek(SeekFrom::Start(0)).map_err(io(0))?;
    let mut h = blake3::Hasher::new_derive_key(FILE_HASH_CONTEXT);
    let hashed_len = trailer_at + TRAILER_HASHED_LEN as u64;
    let copied = std::io::copy(&mut (&mut file).take(hashed_len), &mut h).map_err(io(0))?;
    if copied != hashed_len {
        return Err(CapsuleError::Truncated {
            what: "capsule",
            offset: 0,
            end: copied,
        });
    }
    let computed = *h.finalize().as_bytes();
    if computed != trailer.file_hash {
        return Err(CapsuleError::Checksum {
            offset: trailer_at,
            expected: hex::encode(trailer.file_hash),
            actual: hex::encode(computed),
        });
    }
    let signature = trust.status(block.as_ref(), &trailer.file_hash);
    Ok(Inspection {
        header,
        manifest,
        trailer,
        stats,
        file_len,
        signature,
        deep: false,
    })
}
