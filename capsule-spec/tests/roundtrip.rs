//! Round trips, determinism and streaming behaviour of writer and reader.

mod common;

use std::io::{Read, Write};

use common::*;
use proptest::prelude::*;
use vnfs_capsule::*;

#[test]
fn full_round_trip() {
    let (singles, m, bytes) = sample(None);
    let (v, c) = read(&bytes, opts(None)).unwrap();
    assert_eq!(v.manifest, m);
    assert_eq!(v.file_len, bytes.len() as u64);
    assert_eq!(v.signature, SignatureStatus::Unsigned);
    assert!(matches!(v.verdict, Verdict::AcceptWithWarning(_)));
    assert_eq!(v.stats.chunks.count, 3);
    assert_eq!(v.stats.trees.count, 2);
    assert_eq!(v.stats.commits.count, 1);
    let block = sample_block();
    assert_eq!(
        v.stats.blocks,
        BlockStats {
            count: 1,
            members: 4,
            stored: block.payload.len() as u64,
            raw: u64::from(block.raw_len),
        }
    );
    assert_eq!(v.trailer.record_count, 3);
    assert_eq!(v.trailer.object_count, 6);
    // Objects arrive in file order: the singles, then the block's members.
    let got: Vec<_> = c.objects.iter().map(|(k, id, _)| (*k, *id)).collect();
    assert_eq!(got, sample_ids());
    for ((_, _, raw), r) in c.objects.iter().zip(&singles) {
        assert_eq!(raw.len() as u32, r.raw_len);
    }
    assert_eq!(c.objects[5].2, COMMIT);
}

#[test]
fn block_members_are_handed_over_compressed_for_a_store() {
    // A sink that keeps objects compressed one by one (as the store does)
    // gets block members that way; each decodes to the verified raw bytes.
    struct Storeish(Vec<(ObjectId, Compression, Vec<u8>, Vec<u8>)>);
    impl ObjectSink for Storeish {
        fn member_level(&self) -> Option<i32> {
            Some(3)
        }
        fn put(&mut self, o: &VerifiedObject<'_>) -> Result<(), BoxError> {
            self.0
                .push((o.id, o.compression, o.stored.to_vec(), o.raw.to_vec()));
            Ok(())
        }
    }
    let (_, _, bytes) = sample(None);
    let mut s = Storeish(Vec::new());
    read_capsule(&bytes[..], opts(None), &mut s).unwrap();
    assert_eq!(s.0.len(), 6);
    let mut zstd_members = 0;
    for (id, compression, stored, raw) in &s.0[2..] {
        match compression {
            Compression::Raw => assert_eq!(stored, raw),
            Compression::Zstd => {
                zstd_members += 1;
                assert!(stored.len() < raw.len());
                assert_eq!(&zstd::bulk::decompress(stored, raw.len()).unwrap(), raw);
            }
        }
        assert!(
            sample_ids()
                .iter()
                .any(|(k, i)| i == id && k.id_of(raw) == *id)
        );
    }
    // The 400-byte repetitive tree compresses; the empty chunk cannot.
    assert_eq!(zstd_members, 1);
}

#[test]
fn same_inputs_same_bytes() {
    let (_, _, a) = sample(None);
    let (_, _, b) = sample(None);
    assert_eq!(a, b);
    let key = SecretKey::from_seed([7; 32], "site-a");
    let (_, _, c) = sample(Some(&key));
    let (_, _, d) = sample(Some(&key));
    assert_eq!(
        c, d,
        "ed25519 signatures are deterministic, so signed capsules are too"
    );
    // The signed capsule differs from the unsigned one only in the flag,
    // hence the checksum, plus the signature block.
    assert_eq!(c.len(), a.len() + vnfs_capsule::format::SIGNATURE_BLOCK_LEN);
}

/// A writer that is not `Seek` and takes tiny writes, like a pipe.
struct Pipe(Vec<u8>);
impl Write for Pipe {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = b.len().min(7);
        self.0.extend_from_slice(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A reader that returns one byte at a time, like a slow pipe.
struct Trickle<'a>(&'a [u8]);
impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() || buf.is_empty() {
            return Ok(0);
        }
        buf[0] = self.0[0];
        self.0 = &self.0[1..];
        Ok(1)
    }
}

#[test]
fn streams_through_pipes() {
    let (singles, m, bytes) = sample(None);
    let mut w = CapsuleWriter::new(Pipe(Vec::new()), &m, None).unwrap();
    for r in &singles {
        w.add(&r.as_record()).unwrap();
    }
    w.add_block(&sample_block()).unwrap();
    let out = w.finish().unwrap();
    assert_eq!(out.inner.0, bytes);
    assert_eq!(out.bytes, bytes.len() as u64);
    let mut c = Collect::default();
    let v = read_capsule(Trickle(&bytes), opts(None), &mut c).unwrap();
    assert_eq!(v.manifest, m);
    assert_eq!(c.objects.len(), 6);
}

#[test]
fn real_os_pipe() {
    let (singles, m, bytes) = sample(None);
    let (mut rx, tx) = std::io::pipe().unwrap();
    let writer = std::thread::spawn(move || {
        let mut w = CapsuleWriter::new(tx, &m, None).unwrap();
        for r in &singles {
            w.add(&r.as_record()).unwrap();
        }
        w.add_block(&sample_block()).unwrap();
        w.finish().unwrap().bytes
    });
    let mut got = Vec::new();
    rx.read_to_end(&mut got).unwrap();
    assert_eq!(writer.join().unwrap(), bytes.len() as u64);
    assert_eq!(got, bytes);
}

#[test]
fn sink_can_skip_present_objects() {
    let ids = sample_ids();
    let (_, _, bytes) = sample(None);
    // A single record and a block member are skipped...
    let mut c = Collect {
        skip: vec![ids[0].1, ids[3].1],
        ..Collect::default()
    };
    let v = read_capsule(&bytes[..], opts(None), &mut c).unwrap();
    assert_eq!(v.skipped, 2);
    assert_eq!(c.objects.len(), 4);
    // ...and a block whose members are all present is not even decoded:
    // a corrupt payload goes unnoticed by the objects, though not by the
    // file checksum, which the reader still checks.
    let mut c = Collect {
        skip: ids[2..].iter().map(|(_, id)| *id).collect(),
        ..Collect::default()
    };
    let v = read_capsule(&bytes[..], opts(None), &mut c).unwrap();
    assert_eq!(v.skipped, 4);
    assert_eq!(c.objects.len(), 2);
}

#[test]
fn finish_verifies_objects_never_read() {
    let (_, m, bytes) = sample(None);
    let r = CapsuleReader::open(&bytes[..], opts(None)).unwrap();
    assert_eq!(r.unverified_manifest(), &m);
    let v = r.finish().unwrap();
    assert_eq!(v.stats.total().count, 6);
    // The same with a member whose content lies: finish() finds it.
    let block = sample_block();
    let mut parts: Vec<Part> = parts(&sample_singles())
        .into_iter()
        .map(|(h, d)| Part::Single(h, d))
        .collect();
    let mut lying = block.clone();
    lying.members[1].id = ObjectKind::Tree.id_of(b"something else");
    parts.push(Part::block(&lying));
    let bytes = assemble_parts(&m.encode().unwrap(), &parts, None, |_, _| {});
    let r = CapsuleReader::open(&bytes[..], opts(None)).unwrap();
    assert!(matches!(
        r.finish().unwrap_err(),
        CapsuleError::IdMismatch { .. }
    ));
}

#[test]
fn writer_refuses_bad_input() {
    let records = sample_records(COMMIT);
    let m = manifest(ObjectKind::Commit.id_of(COMMIT));
    // Any order is fine...
    let mut w = CapsuleWriter::new(Vec::new(), &m, None).unwrap();
    for r in records.iter().rev() {
        w.add(&r.as_record()).unwrap();
    }
    w.finish().unwrap();
    // ...but each object once: as a record twice, or in a block as well.
    let mut w = CapsuleWriter::new(Vec::new(), &m, None).unwrap();
    w.add(&records[0].as_record()).unwrap();
    let e = w.add(&records[0].as_record()).unwrap_err();
    assert!(e.to_string().contains("given twice"), "{e}");
    let mut b = BlockBuilder::new();
    b.push_raw(records[1].kind, &[]).unwrap();
    b.push(records[0].kind, records[0].id, &noise(1, 700))
        .unwrap();
    assert!(w.add_block(&b.finish(3).unwrap()).is_err());
    // Blocks must be non-empty and their lengths must add up.
    let mut w = CapsuleWriter::new(Vec::new(), &m, None).unwrap();
    assert!(
        w.add_block(&BlockBuilder::new().finish(3).unwrap())
            .is_err()
    );
    let mut lying = sample_block();
    lying.raw_len += 1;
    assert!(w.add_block(&lying).is_err());
    // Head missing.
    let mut w = CapsuleWriter::new(Vec::new(), &m, None).unwrap();
    w.add(&records[0].as_record()).unwrap();
    let e = w.finish().unwrap_err();
    assert!(e.to_string().contains("head commit"), "{e}");
    // Invalid manifest.
    let mut bad = m.clone();
    bad.name = "a/b".into();
    assert!(CapsuleWriter::new(Vec::new(), &bad, None).is_err());
    // Raw record whose lengths disagree.
    let mut w = CapsuleWriter::new(Vec::new(), &m, None).unwrap();
    let mut r = records[0].as_record();
    r.compression = Compression::Raw;
    r.raw_len += 1;
    assert!(w.add(&r).is_err());
}

#[test]
fn inspect_matches_streaming_read() {
    let key = SecretKey::from_seed([3; 32], "site-a");
    let (_, m, bytes) = sample(Some(&key));
    let mut trust = TrustList::new();
    trust.add(key.public());
    for deep in [false, true] {
        let i = inspect(
            std::io::Cursor::new(&bytes),
            Limits::default(),
            &trust,
            deep,
        )
        .unwrap();
        assert_eq!(i.manifest, m);
        assert_eq!(i.stats.total().count, 6);
        assert_eq!(i.file_len, bytes.len() as u64);
        assert_eq!(i.signature.name(), "trusted");
        assert_eq!(i.deep, deep);
    }
    let (v, _) = read(&bytes, opts(Some(&key))).unwrap();
    let i = inspect(
        std::io::Cursor::new(&bytes),
        Limits::default(),
        &trust,
        false,
    )
    .unwrap();
    assert_eq!(i.stats, v.stats);
    assert_eq!(i.trailer, v.trailer);
}

#[test]
fn delta_manifest_round_trips() {
    let records = sample_records(COMMIT);
    let mut m = manifest(ObjectKind::Commit.id_of(COMMIT));
    m.base = Some(ObjectKind::Commit.id_of(b"older"));
    m.history[0].parents = vec![m.base.unwrap()];
    let only_new: Vec<_> = records.into_iter().skip(2).collect();
    let out = write_capsule(
        Vec::new(),
        &m,
        None,
        only_new.into_iter().map(Ok::<_, String>),
    )
    .unwrap();
    let (v, c) = read(&out.inner, opts(None)).unwrap();
    assert_eq!(v.manifest.base, m.base);
    assert_eq!(c.objects.len(), 4);
}

fn kind() -> impl Strategy<Value = ObjectKind> {
    prop_oneof![
        Just(ObjectKind::Chunk),
        Just(ObjectKind::Tree),
        Just(ObjectKind::Commit)
    ]
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 =/_.*-]{0,24}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any set of objects and any valid manifest text survive a round trip,
    /// byte-identically on a second write.
    #[test]
    fn prop_round_trip(
        objs in prop::collection::vec((kind(), prop::collection::vec(any::<u8>(), 0..600), any::<bool>(), any::<bool>()), 0..12),
        in_block in prop::collection::vec(any::<bool>(), 12),
        args in text(),
        patterns in prop::collection::vec("/[a-z]{1,8}(/[a-z*]{1,8}){0,3}", 0..4),
        message in text(),
        timestamp in any::<i64>(),
    ) {
        let commit_raw = format!("commit {message} {timestamp}").into_bytes();
        let mut records: Vec<OwnedRecord> = objs
            .iter()
            .map(|(k, data, compress, repeat)| {
                // Repeated data compresses, random data mostly stays raw.
                let data = if *repeat { data.repeat(4) } else { data.clone() };
                OwnedRecord::from_raw(*k, &data, compress.then_some(3)).unwrap()
            })
            .collect();
        records.push(OwnedRecord::from_raw(ObjectKind::Commit, &commit_raw, None).unwrap());
        let mut seen = std::collections::HashSet::new();
        records.retain(|r| seen.insert(r.id));
        let mut m = manifest(ObjectKind::Commit.id_of(&commit_raw));
        m.config.kernel_args = args;
        m.config.hybridize = patterns;
        m.history[0].message = message;
        m.history[0].timestamp = timestamp;
        // Some objects go into one solid block (after the singles).
        let write = || {
            let mut w = CapsuleWriter::new(Vec::new(), &m, None).unwrap();
            let mut block = BlockBuilder::new();
            let mut order = Vec::new();
            for (i, r) in records.iter().enumerate() {
                if in_block[i % in_block.len()] {
                    let raw = match r.compression {
                        Compression::Raw => r.stored.clone(),
                        Compression::Zstd => zstd::bulk::decompress(&r.stored, r.raw_len as usize).unwrap(),
                    };
                    block.push(r.kind, r.id, &raw).unwrap();
                } else {
                    w.add(&r.as_record()).unwrap();
                    order.push((r.kind, r.id));
                }
            }
            if !block.is_empty() {
                let b = block.finish(3).unwrap();
                order.extend(b.members.iter().map(|x| (x.kind, x.id)));
                w.add_block(&b).unwrap();
            }
            (w.finish().unwrap(), order)
        };
        let (a, order) = write();
        let (b, _) = write();
        prop_assert_eq!(&a.inner, &b.inner);
        let (v, c) = read(&a.inner, opts(None)).unwrap();
        prop_assert_eq!(v.manifest, m);
        prop_assert_eq!(c.objects.len(), records.len());
        for ((k, id, raw), want) in c.objects.iter().zip(&order) {
            prop_assert_eq!((*k, *id), *want);
            prop_assert_eq!(k.id_of(raw), *id);
        }
        prop_assert_eq!(v.trailer.stored_total, a.stored_total);
        let i = inspect(std::io::Cursor::new(&a.inner), Limits::default(), &TrustList::new(), false).unwrap();
        prop_assert_eq!(i.stats, v.stats);
    }
}
