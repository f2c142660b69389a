//! Hostile input: every way a capsule can be cut, flipped or forged must end
//! in a clear error that names where, and nothing unverified may reach the
//! sink (the `Collect` sink re-checks every id it receives).

mod common;

use common::*;
use vnfs_capsule::format::{
    BlockHeader, HEADER_LEN, Member, RECORD_HEADER_LEN, RecordHeader, TRAILER_LEN,
};
use vnfs_capsule::*;

fn err_of(bytes: &[u8]) -> CapsuleError {
    match read(bytes, opts(None)) {
        Ok(_) => panic!("hostile capsule accepted"),
        Err(e) => e,
    }
}

#[test]
fn truncation_at_every_byte_is_refused() {
    let key = SecretKey::from_seed([1; 32], "");
    for signer in [None, Some(&key)] {
        let (_, _, bytes) = sample(signer);
        for n in 0..bytes.len() {
            let e = match read(&bytes[..n], opts(signer)) {
                Ok(_) => panic!("capsule cut at {n} of {} accepted", bytes.len()),
                Err(e) => e,
            };
            assert!(
                matches!(e, CapsuleError::Truncated { end, .. } if end == n as u64),
                "cut at {n}: {e}"
            );
            // The seekable path refuses it too (any error).
            assert!(
                inspect(
                    std::io::Cursor::new(&bytes[..n]),
                    Limits::default(),
                    &TrustList::new(),
                    false
                )
                .is_err(),
                "inspect accepted a capsule cut at {n}"
            );
        }
    }
}

#[test]
fn every_flipped_bit_is_refused() {
    let key = SecretKey::from_seed([1; 32], "");
    for signer in [None, Some(&key)] {
        let (_, _, bytes) = sample(signer);
        let mut seen_kinds = std::collections::HashSet::new();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                // The trust list holds the signer, so only a broken signature
                // or damaged data can make the import fail.
                match read(&b, opts(signer)) {
                    Ok(_) => panic!("flip of bit {bit} at byte {i} accepted"),
                    Err(e) => {
                        seen_kinds.insert(std::mem::discriminant(&e));
                        assert!(!e.to_string().is_empty());
                    }
                }
                // inspect reports rather than enforces signatures: a flip in
                // the signature block shows as a broken signature.
                if let Ok(i) = inspect(
                    std::io::Cursor::new(&b),
                    Limits::default(),
                    &opts(signer).trust,
                    false,
                ) {
                    assert_eq!(
                        i.signature.name(),
                        "broken",
                        "flip at byte {i:?} passed inspect"
                    );
                }
            }
        }
        // Flips are caught by many different checks, not one catch-all.
        assert!(
            seen_kinds.len() >= 5,
            "only {} error kinds",
            seen_kinds.len()
        );
    }
}

#[test]
fn wrong_magic_and_version() {
    let (_, _, bytes) = sample(None);
    let mut b = bytes.clone();
    b[1] = b'X';
    let e = err_of(&b);
    assert!(
        e.to_string().contains("header at offset 0: bad magic"),
        "{e}"
    );
    for major in [1u8, 3] {
        let mut b = bytes.clone();
        b[8] = major;
        let e = err_of(&b);
        assert!(
            e.to_string()
                .contains(&format!("unsupported format version {major}.0")),
            "{e}"
        );
    }
    let e = err_of(b"PK\x03\x04 not a capsule: a zip file, 32 bytes long!");
    assert!(e.to_string().contains("bad magic"), "{e}");
    let e = err_of(b"");
    assert!(
        matches!(e, CapsuleError::Truncated { what: "header", .. }),
        "{e}"
    );
}

#[test]
fn content_not_matching_id_is_named() {
    let records = sample_records(COMMIT);
    let m = manifest(ObjectKind::Commit.id_of(COMMIT)).encode().unwrap();
    let mut p = parts(&records);
    // Raw tree whose bytes were swapped for other bytes of the same length.
    let t = p
        .iter()
        .position(|(h, _)| h.compression == Compression::Raw && h.kind == ObjectKind::Tree)
        .unwrap();
    let n = p[t].1.len();
    p[t].1 = vec![b'x'; n];
    let bytes = assemble(&m, &p, None, |_, _| {});
    let e = err_of(&bytes);
    let offset = objects_start(&m)
        + p[..t]
            .iter()
            .map(|(_, d)| RECORD_HEADER_LEN + d.len())
            .sum::<usize>();
    match &e {
        CapsuleError::IdMismatch {
            offset: o,
            kind,
            id,
            ..
        } => {
            assert_eq!(
                (*o, *kind, *id),
                (offset as u64, ObjectKind::Tree, p[t].0.id)
            );
        }
        _ => panic!("{e}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&p[t].0.id.to_hex()) && msg.contains(&format!("offset {offset}")),
        "{msg}"
    );

    // Compressed chunk that decompresses to other content.
    let mut p = parts(&records);
    let z = p
        .iter()
        .position(|(h, _)| h.compression == Compression::Zstd)
        .unwrap();
    let other = zstd::bulk::compress(&vec![b'q'; p[z].0.raw_len as usize], 3).unwrap();
    p[z].0.stored_len = other.len() as u32;
    p[z].1 = other;
    assert!(matches!(
        err_of(&assemble(&m, &p, None, |_, _| {})),
        CapsuleError::IdMismatch { .. }
    ));

    // Kind relabelled: same bytes, other domain, other id.
    let mut p = parts(&records);
    p[0].0.kind = ObjectKind::Commit;
    let e = err_of(&assemble(&m, &p, None, |_, _| {}));
    assert!(matches!(e, CapsuleError::IdMismatch { .. }), "{e}");
}

/// The parts of the sample capsule: two singles, one block.
fn sample_parts() -> Vec<Part> {
    let mut p: Vec<Part> = parts(&sample_singles())
        .into_iter()
        .map(|(h, d)| Part::Single(h, d))
        .collect();
    p.push(Part::block(&sample_block()));
    p
}

fn sample_manifest() -> Vec<u8> {
    manifest(ObjectKind::Commit.id_of(COMMIT)).encode().unwrap()
}

#[test]
fn block_members_not_matching_their_ids_are_named() {
    let m = sample_manifest();
    let block = sample_block();
    let block_at =
        (objects_start(&m) + sample_parts()[..2].iter().map(Part::len).sum::<usize>()) as u64;
    // Two members swap ids: each is now wrong; the first one is named.
    let mut p = sample_parts();
    let mut lying = block.clone();
    let (a, b) = (lying.members[1].id, lying.members[2].id);
    lying.members[1].id = b;
    lying.members[2].id = a;
    p[2] = Part::block(&lying);
    match err_of(&assemble_parts(&m, &p, None, |_, _| {})) {
        CapsuleError::IdMismatch {
            offset, kind, id, ..
        } => {
            assert_eq!((offset, kind, id), (block_at, ObjectKind::Tree, b));
        }
        e => panic!("{e}"),
    }
    // Members whose lengths are shifted (same total): the split is wrong.
    let mut lying = block.clone();
    lying.members[1].raw_len += 1;
    lying.members[2].raw_len -= 1;
    let mut p = sample_parts();
    p[2] = Part::block(&lying);
    assert!(matches!(
        err_of(&assemble_parts(&m, &p, None, |_, _| {})),
        CapsuleError::IdMismatch { .. }
    ));
    // A payload that decompresses to other bytes of the right length.
    let mut p = sample_parts();
    let other = zstd::bulk::compress(&vec![b'z'; block.raw_len as usize], 3).unwrap();
    let mut lying = block.clone();
    lying.payload = other;
    p[2] = Part::block(&lying);
    assert!(matches!(
        err_of(&assemble_parts(&m, &p, None, |_, _| {})),
        CapsuleError::IdMismatch { .. }
    ));
}

#[test]
fn block_lengths_and_counts_that_lie() {
    let m = sample_manifest();
    let with = |edit: &dyn Fn(&mut Part)| {
        let mut p = sample_parts();
        edit(&mut p[2]);
        assemble_parts(&m, &p, None, |_, _| {})
    };
    // Declared raw length differs from the members' sum.
    let e = err_of(&with(&|p| {
        if let Part::Block(h, _, _) = p {
            h.raw_len += 1;
        }
    }));
    assert!(e.to_string().contains("members add up to"), "{e}");
    // Members and raw length agree, but the payload decodes to less or more.
    for delta in [-1i64, 1] {
        let e = err_of(&with(&|p| {
            if let Part::Block(h, m, _) = p {
                h.raw_len = (i64::from(h.raw_len) + delta) as u32;
                m[1].raw_len = (i64::from(m[1].raw_len) + delta) as u32;
            }
        }));
        assert!(
            matches!(e, CapsuleError::Inconsistent { what: "block", .. }),
            "raw {delta:+}: {e}"
        );
    }
    // No members at all.
    let e = err_of(&with(&|p| {
        if let Part::Block(h, m, _) = p {
            h.members = 0;
            m.clear();
        }
    }));
    assert!(e.to_string().contains("no members"), "{e}");
    // A raw block whose lengths disagree.
    let e = err_of(&with(&|p| {
        if let Part::Block(h, _, d) = p {
            h.compression = Compression::Raw;
            h.stored_len = d.len() as u32;
        }
    }));
    assert!(e.to_string().contains("raw block declares"), "{e}");
    // A member entry with an unknown kind.
    let mut b = assemble_parts(&m, &sample_parts(), None, |_, _| {});
    let table = objects_start(&m)
        + sample_parts()[..2].iter().map(Part::len).sum::<usize>()
        + RECORD_HEADER_LEN;
    b[table + 40] = 9; // kind of member 1
    let e = err_of(&b);
    assert!(e.to_string().contains("block member entry"), "{e}");
    // Record and member counts in the trailer and index must be right.
    type Tweak = fn(&mut Vec<vnfs_capsule::format::IndexEntry>, &mut vnfs_capsule::format::Trailer);
    let tweaks: [(&str, Tweak); 3] = [
        ("record count", |_, t| t.record_count += 1),
        ("object count", |_, t| t.object_count -= 1),
        ("members in index", |i, _| {
            if let vnfs_capsule::format::RecordHead::Block(h) = &mut i[2].record {
                h.members += 1;
            }
        }),
    ];
    for (what, tweak) in tweaks {
        let e = err_of(&assemble_parts(&m, &sample_parts(), None, tweak));
        assert!(
            matches!(
                e,
                CapsuleError::Inconsistent { .. } | CapsuleError::Layout { .. }
            ),
            "{what}: {e}"
        );
    }
}

#[test]
fn lying_lengths_and_counts() {
    let records = sample_records(COMMIT);
    let m = manifest(ObjectKind::Commit.id_of(COMMIT)).encode().unwrap();
    let base = parts(&records);
    let z = base
        .iter()
        .position(|(h, _)| h.compression == Compression::Zstd)
        .unwrap();

    // Record declaring a raw length other than what it decompresses to.
    for delta in [-1i64, 1] {
        let mut p = base.clone();
        p[z].0.raw_len = (i64::from(p[z].0.raw_len) + delta) as u32;
        let e = err_of(&assemble(&m, &p, None, |_, _| {}));
        assert!(
            matches!(e, CapsuleError::BadRecord { .. }),
            "raw_len {delta:+}: {e}"
        );
    }
    // Raw record whose raw and stored lengths disagree.
    let mut p = base.clone();
    let r = p
        .iter()
        .position(|(h, _)| h.compression == Compression::Raw)
        .unwrap();
    p[r].0.raw_len += 1;
    let e = err_of(&assemble(&m, &p, None, |_, _| {}));
    assert!(
        e.to_string().contains("raw record declares raw length"),
        "{e}"
    );

    // Trailer lying about each total; index lying about an entry.
    type Tweak = fn(&mut Vec<vnfs_capsule::format::IndexEntry>, &mut vnfs_capsule::format::Trailer);
    let tweaks: [(&str, Tweak); 8] = [
        ("object count", |_, t| t.object_count += 1),
        ("record count", |_, t| t.record_count -= 1),
        ("stored total", |_, t| t.stored_total -= 1),
        ("raw total", |_, t| t.raw_total += 7),
        ("index offset", |_, t| t.index_offset -= 1),
        ("index", |i, _| {
            if let vnfs_capsule::format::RecordHead::Object(h) = &mut i[1].record {
                h.raw_len += 1;
            }
        }),
        ("index entry", |i, _| i[2].offset += 1),
        ("index entry missing", |i, _| {
            i.pop();
        }),
    ];
    for (what, tweak) in tweaks {
        let e = err_of(&assemble(&m, &base, None, tweak));
        assert!(
            matches!(
                e,
                CapsuleError::Inconsistent { .. } | CapsuleError::Layout { .. }
            ),
            "{what}: {e}"
        );
    }

    // Header lying about the manifest length (resealed): shorter or longer.
    for delta in [-1i64, 1] {
        let mut b = assemble(&m, &base, None, |_, _| {});
        let len = (m.len() as i64 + delta) as u64;
        b[16..24].copy_from_slice(&len.to_le_bytes());
        assert!(
            read(&b, opts(None)).is_err(),
            "manifest_len {delta:+} accepted"
        );
    }

    // Manifest naming a head commit that is not in the capsule.
    let mut lie = manifest(ObjectKind::Commit.id_of(b"absent"));
    lie.history.clear();
    let e = err_of(&assemble(&lie.encode().unwrap(), &base, None, |_, _| {}));
    assert!(e.to_string().contains("head commit"), "{e}");
}

#[test]
fn duplicates_and_trailing_data() {
    let records = sample_records(COMMIT);
    let m = manifest(ObjectKind::Commit.id_of(COMMIT)).encode().unwrap();
    // Any order is accepted...
    let mut p = parts(&records);
    p.reverse();
    read(&assemble(&m, &p, None, |_, _| {}), opts(None)).unwrap();
    // ...but an object twice is not: as two records,
    let mut p = parts(&records);
    p.insert(1, p[0].clone());
    let second = (objects_start(&m) + RECORD_HEADER_LEN + p[0].1.len()) as u64;
    match err_of(&assemble(&m, &p, None, |_, _| {})) {
        CapsuleError::Duplicate { offset, id, .. } => {
            assert_eq!((offset, id), (second, p[0].0.id));
        }
        e => panic!("{e}"),
    }
    // as a record and a block member,
    let sm = sample_manifest();
    let mut p = sample_parts();
    if let (Part::Single(h, _), Part::Block(bh, members, _)) = (p[0].clone(), &mut p[2]) {
        members.push(Member {
            kind: h.kind,
            raw_len: 0,
            id: h.id,
        });
        bh.members += 1;
    }
    assert!(matches!(
        err_of(&assemble_parts(&sm, &p, None, |_, _| {})),
        CapsuleError::Duplicate { .. }
    ));
    // or twice in one block.
    let mut p = sample_parts();
    if let Part::Block(bh, members, _) = &mut p[2] {
        let first = members[0];
        members.push(first);
        bh.members += 1;
    }
    assert!(matches!(
        err_of(&assemble_parts(&sm, &p, None, |_, _| {})),
        CapsuleError::Duplicate { .. }
    ));
    let (_, _, mut bytes) = sample(None);
    let end = bytes.len() as u64;
    bytes.push(0);
    let e = err_of(&bytes);
    assert!(
        matches!(e, CapsuleError::TrailingData { offset } if offset == end),
        "{e}"
    );
}

#[test]
fn names_with_dotdot_or_slash() {
    let records = sample_records(COMMIT);
    let p = parts(&records);
    let good = manifest(ObjectKind::Commit.id_of(COMMIT));
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit); 5] = [
        ("name", |v| v["name"] = "../../etc/passwd".into()),
        ("name", |v| v["name"] = "a/b".into()),
        ("naming.os", |v| v["naming"]["os"] = "..".into()),
        ("naming.arch", |v| {
            v["naming"]["arch"] = "x86_64/../../x".into()
        }),
        ("config.livesync_skip[0]", |v| {
            v["config"]["livesync_skip"][0] = "/etc/../../root".into()
        }),
    ];
    for (field, edit) in cases {
        let mut v = serde_json::to_value(&good).unwrap();
        edit(&mut v);
        let bytes = assemble(&serde_json::to_vec(&v).unwrap(), &p, None, |_, _| {});
        let e = err_of(&bytes);
        match &e {
            CapsuleError::Manifest { offset, source } => {
                assert_eq!(*offset, HEADER_LEN as u64);
                assert_eq!(source.field, field);
            }
            _ => panic!("{field}: {e}"),
        }
    }
    // Non-canonical (pretty) JSON of a valid manifest is refused as well.
    let pretty = serde_json::to_vec_pretty(&good).unwrap();
    assert!(matches!(
        err_of(&assemble(&pretty, &p, None, |_, _| {})),
        CapsuleError::Manifest { .. }
    ));
}

#[test]
fn huge_declared_lengths_are_capped() {
    let (_, _, bytes) = sample(None);
    // Manifest length of 2^64-1.
    let mut b = bytes.clone();
    b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = err_of(&b);
    assert!(
        matches!(
            e,
            CapsuleError::TooLarge {
                what: "manifest length",
                ..
            }
        ),
        "{e}"
    );
    // Record stored/raw length of 4 GiB - 1.
    let m = manifest(ObjectKind::Commit.id_of(COMMIT)).encode().unwrap();
    let first = objects_start(&m);
    for field in [4..8, 8..12] {
        let mut b = bytes.clone();
        b[first + field.start..first + field.end].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = err_of(&b);
        assert!(
            matches!(e, CapsuleError::TooLarge { offset, .. } if offset == first as u64),
            "{e}"
        );
    }
    // Within the limit but far more than the input holds: a plain
    // truncation error, after reading only what exists.
    let mut b = bytes[..first + RECORD_HEADER_LEN].to_vec();
    let h = RecordHeader {
        kind: ObjectKind::Chunk,
        compression: Compression::Raw,
        stored_len: 60 << 20,
        raw_len: 60 << 20,
        id: ObjectId::from_bytes([0; 32]),
    };
    b[first..first + RECORD_HEADER_LEN].copy_from_slice(&h.encode());
    b.extend_from_slice(b"only a few bytes");
    assert!(matches!(
        err_of(&b),
        CapsuleError::Truncated {
            what: "object record",
            ..
        }
    ));
    // Tighter limits are honoured.
    let mut o = opts(None);
    o.limits.max_object_len = 100;
    assert!(matches!(
        read(&bytes, o).unwrap_err(),
        CapsuleError::TooLarge { .. }
    ));
    let mut o = opts(None);
    o.limits.max_objects = 2;
    assert!(matches!(
        read(&bytes, o).unwrap_err(),
        CapsuleError::TooLarge {
            what: "object count",
            ..
        }
    ));
    // Seekable path: a trailer declaring an absurd object or record count.
    for at in [16, 40] {
        let mut b = bytes.clone();
        let t = b.len() - TRAILER_LEN;
        b[t + at..t + at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(
            inspect(
                std::io::Cursor::new(&b),
                Limits::default(),
                &TrustList::new(),
                false
            )
            .is_err()
        );
    }
    // A block declaring more members than the limit, or a table that is
    // not there.
    let block_at = first + sample_parts()[..2].iter().map(Part::len).sum::<usize>();
    let mut b = bytes.clone();
    b[block_at + 12..block_at + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        err_of(&b),
        CapsuleError::TooLarge {
            what: "block member count",
            ..
        }
    ));
    let mut b = bytes[..block_at + RECORD_HEADER_LEN].to_vec();
    let h = BlockHeader {
        compression: Compression::Zstd,
        stored_len: 10,
        raw_len: 10,
        members: 60_000,
    };
    b[block_at..].copy_from_slice(&h.encode());
    b.extend_from_slice(&[1u8; 100]);
    assert!(matches!(
        err_of(&b),
        CapsuleError::Truncated {
            what: "block member table",
            ..
        }
    ));
    let mut o = opts(None);
    o.limits.max_block_members = 3;
    assert!(matches!(
        read(&bytes, o).unwrap_err(),
        CapsuleError::TooLarge { .. }
    ));
}

#[test]
fn unknown_flags_and_reserved_bytes() {
    let (_, _, bytes) = sample(None);
    let mut b = bytes.clone();
    b[12] |= 0x04;
    assert!(err_of(&b).to_string().contains("unknown flags 0x4"));
    let mut b = bytes.clone();
    b[30] = 1;
    assert!(err_of(&b).to_string().contains("reserved"));
}
