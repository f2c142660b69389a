//! Shared test fixtures: sample objects and manifests, a sink that collects
//! and re-checks what it is given, and an assembler that builds capsules
//! byte by byte (properly sealed) so hostile variants can be crafted.
#![allow(dead_code)]

use std::collections::BTreeMap;

use vnfs_capsule::format::{
    BlockHeader, FILE_HASH_CONTEXT, FLAG_SIGNED, HEADER_LEN, Header, IndexEntry, Member,
    RECORD_HEADER_LEN, RecordHead, RecordHeader, SignatureBlock, TRAILER_HASHED_LEN, Trailer,
    VERSION_MAJOR, VERSION_MINOR,
};
use vnfs_capsule::*;

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG crate.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A handful of objects of every kind: compressible and incompressible
/// chunks, an empty chunk, trees, and a commit; sorted as a capsule wants.
pub fn sample_records(commit_text: &[u8]) -> Vec<OwnedRecord> {
    let mut v = vec![
        OwnedRecord::from_raw(ObjectKind::Chunk, &noise(1, 700), Some(3)).unwrap(),
        OwnedRecord::from_raw(ObjectKind::Chunk, &b"abcd".repeat(300), Some(3)).unwrap(),
        OwnedRecord::from_raw(ObjectKind::Chunk, b"", Some(3)).unwrap(),
        OwnedRecord::from_raw(ObjectKind::Tree, b"tree: etc/ usr/", None).unwrap(),
        OwnedRecord::from_raw(ObjectKind::Tree, &b"dir entry\n".repeat(40), Some(3)).unwrap(),
        OwnedRecord::from_raw(ObjectKind::Commit, commit_text, None).unwrap(),
    ];
    v.sort_by_key(|r| (r.kind, r.id));
    v
}

/// A valid manifest whose head is `head`.
pub fn manifest(head: ObjectId) -> Manifest {
    Manifest {
        name: "debian-node".into(),
        naming: Naming::parse_file_name("debian-node-12-1.stateless.x86_64.vnfs").unwrap(),
        config: VnfsConfig {
            kernel_args: "quiet console=ttyS0".into(),
            hybridize: vec!["/usr/share/doc/*".into()],
            livesync_skip: vec!["/etc/resolv.conf".into(), "/etc/passwd".into()],
            nodescripts: vec!["50-network".into()],
        },
        recipe: Some("[image]\nname = \"debian-node\"\n".into()),
        lock: Some("[[package]]\nname = \"bash\"\n".into()),
        packages: vec![Package {
            name: "bash".into(),
            version: "5.2.15-2+b7".into(),
            arch: "amd64".into(),
            sha256: Some("ab".repeat(32)),
        }],
        head,
        base: None,
        history: vec![CommitInfo {
            id: head,
            tree: ObjectKind::Tree.id_of(b"tree: etc/ usr/"),
            parents: vec![],
            timestamp: 1_700_000_000,
            message: "first version".into(),
            metadata: BTreeMap::new(),
        }],
    }
}

/// The head commit text used by [`sample`].
pub const COMMIT: &[u8] = b"commit: tree=..., parents=[], message=first version";

/// The single records of [`sample`]: a chunk kept raw, a compressed one.
pub fn sample_singles() -> Vec<OwnedRecord> {
    vec![
        OwnedRecord::from_raw(ObjectKind::Chunk, &noise(1, 700), Some(3)).unwrap(),
        OwnedRecord::from_raw(ObjectKind::Chunk, &b"abcd".repeat(300), Some(3)).unwrap(),
    ]
}

/// The solid block of [`sample`]: an empty chunk, two trees and the head
/// commit, compressed together.
pub fn sample_block() -> Block {
    let mut b = BlockBuilder::new();
    b.push_raw(ObjectKind::Chunk, b"").unwrap();
    b.push_raw(ObjectKind::Tree, b"tree: etc/ usr/").unwrap();
    b.push_raw(ObjectKind::Tree, &b"dir entry\n".repeat(40))
        .unwrap();
    b.push_raw(ObjectKind::Commit, COMMIT).unwrap();
    let block = b.finish(3).unwrap();
    assert_eq!(block.compression, Compression::Zstd);
    block
}

/// (kind, id) of every object of [`sample`], in file order.
pub fn sample_ids() -> Vec<(ObjectKind, ObjectId)> {
    let mut v: Vec<_> = sample_singles().iter().map(|r| (r.kind, r.id)).collect();
    v.extend(sample_block().members.iter().map(|m| (m.kind, m.id)));
    v
}

/// A sample capsule (its singles, manifest, bytes), optionally signed: two
/// single records, then one solid block.
pub fn sample(signer: Option<&SecretKey>) -> (Vec<OwnedRecord>, Manifest, Vec<u8>) {
    let singles = sample_singles();
    let m = manifest(ObjectKind::Commit.id_of(COMMIT));
    let mut w = CapsuleWriter::new(Vec::new(), &m, signer).unwrap();
    for r in &singles {
        w.add(&r.as_record()).unwrap();
    }
    w.add_block(&sample_block()).unwrap();
    (singles, m, w.finish().unwrap().inner)
}

/// Collects what the reader hands over, re-checking each id itself.
#[derive(Default, Debug)]
pub struct Collect {
    pub objects: Vec<(ObjectKind, ObjectId, Vec<u8>)>,
    pub skip: Vec<ObjectId>,
}

impl ObjectSink for Collect {
    fn wants(&mut self, _: ObjectKind, id: &ObjectId) -> Result<bool, BoxError> {
        Ok(!self.skip.contains(id))
    }
    fn put(&mut self, o: &VerifiedObject<'_>) -> Result<(), BoxError> {
        // The reader's promise: nothing unverified reaches the sink.
        assert_eq!(
            o.kind.id_of(o.raw),
            o.id,
            "sink received an unverified object"
        );
        self.objects.push((o.kind, o.id, o.raw.to_vec()));
        Ok(())
    }
}

/// Options trusting `key` (if any), default policy.
pub fn opts(trusted: Option<&SecretKey>) -> ReadOptions {
    let mut o = ReadOptions::default();
    if let Some(k) = trusted {
        o.trust.add(k.public());
    }
    o
}

/// Reads a capsule from bytes, returning the verified capsule and objects.
pub fn read(bytes: &[u8], o: ReadOptions) -> Result<(VerifiedCapsule, Collect), CapsuleError> {
    let mut c = Collect::default();
    let v = read_capsule(bytes, o, &mut c)?;
    Ok((v, c))
}

/// One record for [`assemble_parts`].
#[derive(Clone, Debug)]
pub enum Part {
    /// A single object: header and stored bytes.
    Single(RecordHeader, Vec<u8>),
    /// A solid block: header, member table and payload.
    Block(BlockHeader, Vec<Member>, Vec<u8>),
}

impl Part {
    /// The part of a block as the writer would make it.
    pub fn block(b: &Block) -> Part {
        Part::Block(
            BlockHeader {
                compression: b.compression,
                stored_len: b.payload.len() as u32,
                raw_len: b.raw_len,
                members: b.members.len() as u32,
            },
            b.members.clone(),
            b.payload.clone(),
        )
    }

    /// Encoded length.
    pub fn len(&self) -> usize {
        match self {
            Part::Single(_, d) => RECORD_HEADER_LEN + d.len(),
            Part::Block(_, m, d) => RECORD_HEADER_LEN + m.len() * 40 + d.len(),
        }
    }
}

/// Builds a capsule from single records, sealed with a correct checksum
/// (and signature), after letting `tweak` alter the index and trailer.
pub fn assemble(
    manifest: &[u8],
    records: &[(RecordHeader, Vec<u8>)],
    signer: Option<&SecretKey>,
    tweak: impl FnOnce(&mut Vec<IndexEntry>, &mut Trailer),
) -> Vec<u8> {
    let parts: Vec<Part> = records
        .iter()
        .map(|(h, d)| Part::Single(*h, d.clone()))
        .collect();
    assemble_parts(manifest, &parts, signer, tweak)
}

/// Builds a capsule from records of both types, sealed with a correct
/// checksum (and signature), after letting `tweak` alter index and trailer.
/// Totals are computed from the headers as given, so lies stay lies.
pub fn assemble_parts(
    manifest: &[u8],
    parts: &[Part],
    signer: Option<&SecretKey>,
    tweak: impl FnOnce(&mut Vec<IndexEntry>, &mut Trailer),
) -> Vec<u8> {
    let header = Header {
        major: VERSION_MAJOR,
        minor: VERSION_MINOR,
        flags: if signer.is_some() { FLAG_SIGNED } else { 0 },
        manifest_len: manifest.len() as u64,
    };
    let mut b = header.encode().to_vec();
    b.extend_from_slice(manifest);
    let mut index = Vec::new();
    let (mut stored, mut raw, mut objects) = (0u64, 0u64, 0u64);
    for p in parts {
        let offset = b.len() as u64;
        match p {
            Part::Single(h, data) => {
                index.push(IndexEntry {
                    offset,
                    record: RecordHead::Object(*h),
                });
                b.extend_from_slice(&h.encode());
                b.extend_from_slice(data);
                stored += u64::from(h.stored_len);
                raw += u64::from(h.raw_len);
                objects += 1;
            }
            Part::Block(h, members, data) => {
                index.push(IndexEntry {
                    offset,
                    record: RecordHead::Block(*h),
                });
                b.extend_from_slice(&h.encode());
                for m in members {
                    b.extend_from_slice(&m.encode());
                }
                b.extend_from_slice(data);
                stored += u64::from(h.stored_len);
                raw += members.iter().map(|m| u64::from(m.raw_len)).sum::<u64>();
                objects += members.len() as u64;
            }
        }
    }
    b.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    let mut trailer = Trailer {
        index_offset: b.len() as u64,
        object_count: objects,
        record_count: parts.len() as u64,
        stored_total: stored,
        raw_total: raw,
        file_hash: [0; 32],
    };
    tweak(&mut index, &mut trailer);
    for e in &index {
        b.extend_from_slice(&e.encode());
    }
    b.extend_from_slice(&trailer.encode()[..TRAILER_HASHED_LEN]);
    let hash = *blake3::Hasher::new_derive_key(FILE_HASH_CONTEXT)
        .update(&b)
        .finalize()
        .as_bytes();
    b.extend_from_slice(&hash);
    if let Some(k) = signer {
        let block = SignatureBlock {
            public_key: *k.public().as_bytes(),
            signature: k.sign_file_hash(&hash),
        };
        b.extend_from_slice(&block.encode());
    }
    b
}

/// The record parts of owned records, for [`assemble`].
pub fn parts(records: &[OwnedRecord]) -> Vec<(RecordHeader, Vec<u8>)> {
    records
        .iter()
        .map(|r| {
            (
                RecordHeader {
                    kind: r.kind,
                    compression: r.compression,
                    stored_len: r.stored.len() as u32,
                    raw_len: r.raw_len,
                    id: r.id,
                },
                r.stored.clone(),
            )
        })
        .collect()
}

/// Offset of the first record in a capsule with this manifest.
pub fn objects_start(manifest: &[u8]) -> usize {
    HEADER_LEN + manifest.len()
}
