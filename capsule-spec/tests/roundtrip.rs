//! Round trips, determinism and streaming behaviour of writer and reader.

mod common;

use std::io::{Read, Write};

use common::*;
use proptest::prelude::*;
use vnfs_capsule::*;

#[test]
fn full_round_trip() {
    let (records, m, bytes) = sample(None);
    let (v, c) = read(&bytes, opts(None)).unwrap();
    assert_eq!(v.manifest, m);
    assert_eq!(v.file_len, bytes.len() as u64);
    assert_eq!(v.signature, SignatureStatus::Unsigned);
    assert!(matches!(v.verdict, Verdict::AcceptWithWarning(_)));
    assert_eq!(v.stats.chunks.count, 3);
    assert_eq!(v.stats.trees.count, 2);
    assert_eq!(v.stats.commits.count, 1);
    let got: Vec<_> = c.objects.iter().map(|(k, id, _)| (*k, *id)).collect();
    let want: Vec<_> = records.iter().map(|r| (r.kind, r.id)).collect();
    assert_eq!(got, want);
    for ((_, _, raw), r) in c.objects.iter().zip(&records) {
        assert_eq!(raw.len() as u32, r.raw_len);
    }
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
    let (records, m, bytes) = sample(None);
    let out = write_capsule(
        Pipe(Vec::new()),
        &m,
        None,
        records.into_iter().map(Ok::<_, String>),
    )
    .unwrap();
    assert_eq!(out.inner.0, bytes);
    assert_eq!(out.bytes, bytes.len() as u64);
    let mut c = Collect::default();
    let v = read_capsule(Trickle(&bytes), opts(None), &mut c).unwrap();
    assert_eq!(v.manifest, m);
    assert_eq!(c.objects.len(), 6);
}

#[test]
fn real_os_pipe() {
    let (records, m, bytes) = sample(None);
    let (mut rx, tx) = std::io::pipe().unwrap();
    let writer = std::thread::spawn(move || {
        write_capsule(tx, &m, None, records.into_iter().map(Ok::<_, String>))
            .map(|s| s.bytes)
            .unwrap()
    });
    let mut got = Vec::new();
    rx.read_to_end(&mut got).unwrap();
    assert_eq!(writer.join().unwrap(), bytes.len() as u64);
    assert_eq!(got, bytes);
}

#[test]
fn sink_can_skip_present_objects() {
    let (records, _, bytes) = sample(None);
    let mut c = Collect {
        skip: vec![records[0].id, records[3].id],
        ..Collect::default()
    };
    let v = read_capsule(&bytes[..], opts(None), &mut c).unwrap();
    assert_eq!(v.skipped, 2);
    assert_eq!(c.objects.len(), 4);
}

#[test]
fn pull_api_and_early_finish() {
    let (records, m, bytes) = sample(None);
    let mut r = CapsuleReader::open(&bytes[..], opts(None)).unwrap();
    assert_eq!(r.unverified_manifest(), &m);
    let first = r.next_object().unwrap().unwrap();
    assert_eq!(first.id, records[0].id);
    // finish() still verifies the objects that were not pulled.
    let v = r.finish().unwrap();
    assert_eq!(v.stats.total().count, 6);
}

#[test]
fn writer_refuses_bad_input() {
    let records = sample_records(COMMIT);
    let m = manifest(ObjectKind::Commit.id_of(COMMIT));
    // Unsorted.
    let mut w = CapsuleWriter::new(Vec::new(), &m, None).unwrap();
    w.add(&records[1].as_record()).unwrap();
    let e = w.add(&records[0].as_record()).unwrap_err();
    assert!(e.to_string().contains("out of order"), "{e}");
    // Duplicate.
    let mut w = CapsuleWriter::new(Vec::new(), &m, None).unwrap();
    w.add(&records[0].as_record()).unwrap();
    assert!(w.add(&records[0].as_record()).is_err());
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
        records.sort_by_key(|r| (r.kind, r.id));
        records.dedup_by_key(|r| (r.kind, r.id));
        let mut m = manifest(ObjectKind::Commit.id_of(&commit_raw));
        m.config.kernel_args = args;
        m.config.hybridize = patterns;
        m.history[0].message = message;
        m.history[0].timestamp = timestamp;
        let a = write_capsule(Vec::new(), &m, None, records.iter().cloned().map(Ok::<_, String>)).unwrap();
        let b = write_capsule(Vec::new(), &m, None, records.iter().cloned().map(Ok::<_, String>)).unwrap();
        prop_assert_eq!(&a.inner, &b.inner);
        let (v, c) = read(&a.inner, opts(None)).unwrap();
        prop_assert_eq!(v.manifest, m);
        prop_assert_eq!(c.objects.len(), records.len());
        for ((k, id, raw), r) in c.objects.iter().zip(&records) {
            prop_assert_eq!((*k, *id), (r.kind, r.id));
            prop_assert_eq!(r.kind.id_of(raw), r.id);
        }
        prop_assert_eq!(v.trailer.stored_total, a.stored_total);
    }
}
