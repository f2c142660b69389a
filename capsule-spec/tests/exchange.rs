//! Site A exports, site B imports: full capsules, deltas, re-import,
//! refusals, all against real stores in temporary directories.

use std::collections::BTreeMap;
use std::path::Path;

use vnfs_capsule::exchange::{ExchangeError, export, import};
use vnfs_capsule::metadata::ImageMetadata;
use vnfs_capsule::*;
use vnfs_store::{CommitOptions, NoProgress, Store};

fn noise(seed: u64, len: usize) -> Vec<u8> {
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

fn tree(dir: &Path, version: u64) {
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("usr/lib")).unwrap();
    std::fs::write(dir.join("etc/hostname"), format!("node v{version}\n")).unwrap();
    // Two large files: one the same in every version, one that changes.
    std::fs::write(dir.join("usr/lib/libbig.so"), noise(1, 3 << 20)).unwrap();
    std::fs::write(
        dir.join("usr/lib/libchanging.so"),
        noise(100 + version, 1 << 20),
    )
    .unwrap();
}

fn commit(store: &Store, dir: &Path, version: u64) -> ObjectId {
    tree(dir, version);
    let mut metadata = BTreeMap::new();
    ImageMetadata {
        naming: Naming::parse_file_name(&format!("debian-node-12-{version}.stateless.x86_64"))
            .unwrap(),
        config: VnfsConfig {
            kernel_args: "quiet".into(),
            ..VnfsConfig::default()
        },
        packages: vec![],
        recipe: None,
        lock: None,
    }
    .to_commit(&mut metadata);
    let out = store
        .commit_dir(
            dir,
            &CommitOptions {
                name: "debian-node".into(),
                message: format!("version {version}"),
                timestamp: Some(1_700_000_000 + version as i64),
                metadata,
                parent: None,
            },
            &NoProgress,
        )
        .unwrap();
    ObjectId::from_bytes(out.id.0)
}

fn sid(id: &ObjectId) -> vnfs_store::ObjectId {
    vnfs_store::ObjectId(*id.as_bytes())
}

#[test]
fn site_a_to_site_b_full_then_delta() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Store::open_or_create(&tmp.path().join("a")).unwrap();
    let b = Store::open_or_create(&tmp.path().join("b")).unwrap();
    let src = tmp.path().join("src");
    let v1 = commit(&a, &src, 1);

    // Full capsule, twice: byte-identical.
    let (r1, full) = export(&a, "debian-node", v1, None, None, Vec::new()).unwrap();
    let (_, again) = export(&a, "debian-node", v1, None, None, Vec::new()).unwrap();
    assert_eq!(full, again);
    assert_eq!(r1.file_name, "debian-node-12-1.stateless.x86_64.vnfs");
    assert_eq!(r1.manifest.config.kernel_args, "quiet");

    let rep = import(&b, &full[..], None, ReadOptions::default()).unwrap();
    assert!(rep.moved && rep.added > 0 && rep.present == 0);
    assert_eq!(rep.signature, "unsigned");
    assert!(rep.warning.is_some());
    assert_eq!(b.get_ref("debian-node").unwrap(), Some(sid(&v1)));

    // Checkout on B equals checkout on A (content of every file).
    let (ca, cb) = (tmp.path().join("ca"), tmp.path().join("cb"));
    a.checkout(&sid(&v1), &ca, &NoProgress).unwrap();
    b.checkout(&sid(&v1), &cb, &NoProgress).unwrap();
    for f in [
        "etc/hostname",
        "usr/lib/libbig.so",
        "usr/lib/libchanging.so",
    ] {
        assert_eq!(
            std::fs::read(ca.join(f)).unwrap(),
            std::fs::read(cb.join(f)).unwrap(),
            "{f}"
        );
    }

    // Importing twice changes nothing.
    let rep = import(&b, &full[..], None, ReadOptions::default()).unwrap();
    assert!(!rep.moved);
    assert_eq!(rep.added, 0);

    // Version 2 as a delta over version 1: about the changed chunks only.
    let v2 = commit(&a, &src, 2);
    let (r2, delta) = export(&a, "debian-node", v2, Some(v1), None, Vec::new()).unwrap();
    assert!(
        delta.len() < full.len() / 2,
        "delta {} bytes vs full {}",
        delta.len(),
        full.len()
    );
    assert_eq!(r2.manifest.base, Some(v1));
    assert_eq!(r2.manifest.history.len(), 1);

    // A store without the base refuses the delta, naming the base, and is
    // left without any ref.
    let c = Store::open_or_create(&tmp.path().join("c")).unwrap();
    let e = import(&c, &delta[..], None, ReadOptions::default()).unwrap_err();
    assert!(matches!(e, ExchangeError::MissingBase(b) if b == v1), "{e}");
    assert!(e.to_string().contains(&v1.to_hex()));
    assert!(c.list_refs().unwrap().is_empty());

    // B takes the delta on top of the base.
    let rep = import(&b, &delta[..], None, ReadOptions::default()).unwrap();
    assert!(rep.moved);
    assert_eq!(b.get_ref("debian-node").unwrap(), Some(sid(&v2)));
    let cb2 = tmp.path().join("cb2");
    b.checkout(&sid(&v2), &cb2, &NoProgress).unwrap();
    assert_eq!(
        std::fs::read(cb2.join("usr/lib/libchanging.so")).unwrap(),
        noise(102, 1 << 20)
    );
    assert_eq!(b.history(sid(&v2)).unwrap().len(), 2);
}

#[test]
fn bad_capsules_leave_refs_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Store::open_or_create(&tmp.path().join("a")).unwrap();
    let b = Store::open_or_create(&tmp.path().join("b")).unwrap();
    let v1 = commit(&a, &tmp.path().join("src"), 1);
    let key = SecretKey::from_seed([4; 32], "site-a");
    let (_, full) = export(&a, "debian-node", v1, None, Some(&key), Vec::new()).unwrap();

    // Cut short, flipped in the middle, flipped in the trailer.
    let mut bad = vec![
        full[..full.len() - 1].to_vec(),
        full[..full.len() / 2].to_vec(),
    ];
    for at in [full.len() / 2, full.len() - 150] {
        let mut f = full.clone();
        f[at] ^= 0x40;
        bad.push(f);
    }
    for f in &bad {
        let mut o = ReadOptions::default();
        o.trust.add(key.public());
        assert!(import(&b, &f[..], None, o).is_err());
        assert!(
            b.list_refs().unwrap().is_empty(),
            "a bad capsule moved a ref"
        );
    }

    // Signed by a key B does not trust: refused; trusted: accepted.
    let e = import(&b, &full[..], None, ReadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("not in the trust list"), "{e}");
    assert!(b.list_refs().unwrap().is_empty());
    let mut o = ReadOptions::default();
    o.trust.add(key.public());
    let rep = import(&b, &full[..], Some("renamed"), o).unwrap();
    assert_eq!(rep.signature, "trusted");
    assert_eq!(b.get_ref("renamed").unwrap(), Some(sid(&v1)));
}

#[test]
fn diverged_name_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Store::open_or_create(&tmp.path().join("a")).unwrap();
    let b = Store::open_or_create(&tmp.path().join("b")).unwrap();
    let va = commit(&a, &tmp.path().join("sa"), 1);
    let vb = commit(&b, &tmp.path().join("sb"), 7);
    let (_, full) = export(&a, "debian-node", va, None, None, Vec::new()).unwrap();
    let e = import(&b, &full[..], None, ReadOptions::default()).unwrap_err();
    assert!(matches!(e, ExchangeError::Diverged { .. }), "{e}");
    assert_eq!(b.get_ref("debian-node").unwrap(), Some(sid(&vb)));
}

#[test]
fn an_older_version_leaves_a_later_one_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Store::open_or_create(&tmp.path().join("a")).unwrap();
    let b = Store::open_or_create(&tmp.path().join("b")).unwrap();
    let v1 = commit(&a, &tmp.path().join("sa"), 1);
    let v2 = commit(&a, &tmp.path().join("sa"), 2);
    let (_, c1) = export(&a, "debian-node", v1, None, None, Vec::new()).unwrap();
    let (_, c2) = export(&a, "debian-node", v2, None, None, Vec::new()).unwrap();
    import(&b, &c2[..], None, ReadOptions::default()).unwrap();
    let r = import(&b, &c1[..], None, ReadOptions::default()).unwrap();
    assert!(!r.moved);
    assert_eq!(r.newer, Some(v2.to_hex()));
    assert_eq!(b.get_ref("debian-node").unwrap(), Some(sid(&v2)));
}

#[test]
fn small_objects_travel_in_blocks_and_land_compressed() {
    use vnfs_capsule::exchange::{ExportOptions, export_with};
    let tmp = tempfile::tempdir().unwrap();
    let a = Store::open_or_create(&tmp.path().join("a")).unwrap();
    let b = Store::open_or_create(&tmp.path().join("b")).unwrap();
    let src = tmp.path().join("src");
    // Many small, similar text files (as /etc and /usr/share hold) and one
    // large file.
    for d in 0..4 {
        let dir = src.join(format!("etc/conf{d}.d"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..40 {
            let text = format!(
                "# configuration file {d}/{f}\n[section]\nname = value-{f}\nenabled = true\npath = /usr/lib/thing{d}\n"
            )
            .repeat(3);
            std::fs::write(dir.join(format!("{f}.conf")), text).unwrap();
        }
    }
    std::fs::create_dir_all(src.join("usr/lib")).unwrap();
    std::fs::write(src.join("usr/lib/libbig.so"), noise(1, 2 << 20)).unwrap();
    let out = a
        .commit_dir(
            &src,
            &CommitOptions {
                name: "debian-node".into(),
                timestamp: Some(1_700_000_000),
                ..CommitOptions::default()
            },
            &NoProgress,
        )
        .unwrap();
    let head = ObjectId::from_bytes(out.id.0);

    let (r, full) = export(&a, "debian-node", head, None, None, Vec::new()).unwrap();
    assert!(r.blocks >= 2, "file content and trees in blocks: {r:?}");
    let i = inspect(
        std::io::Cursor::new(&full),
        Limits::default(),
        &TrustList::new(),
        false,
    )
    .unwrap();
    // 160 small files + 8 trees + 1 commit in blocks; the large file's
    // chunks (and only they) as single records.
    assert_eq!(i.stats.blocks.members, 160 + 8 + 1);
    let singles = i.stats.total().count - i.stats.blocks.members;
    assert!(singles >= 8, "{singles} chunks of a 2 MiB file");
    assert_eq!(i.stats.chunks.count - 160, singles);
    // Without blocks for content, the capsule is larger: each small file
    // then pays a record and compresses without its neighbours.
    let singles_only = ExportOptions {
        solid_below: 0,
        ..ExportOptions::default()
    };
    let (_, plain) = export_with(
        &a,
        "debian-node",
        head,
        None,
        None,
        Vec::new(),
        &singles_only,
    )
    .unwrap();
    assert!(
        plain.len() > full.len() + 160 * 100,
        "blocks {} vs singles {}",
        full.len(),
        plain.len()
    );

    // B gets every object, each stored on its own, compressed where that
    // helps, exactly as A keeps it.
    import(&b, &full[..], None, ReadOptions::default()).unwrap();
    assert_eq!(a.object_counts(), b.object_counts());
    let (ca, cb) = (tmp.path().join("ca"), tmp.path().join("cb"));
    a.checkout(&out.id, &ca, &NoProgress).unwrap();
    b.checkout(&out.id, &cb, &NoProgress).unwrap();
    for f in ["etc/conf3.d/39.conf", "usr/lib/libbig.so"] {
        assert_eq!(
            std::fs::read(ca.join(f)).unwrap(),
            std::fs::read(cb.join(f)).unwrap()
        );
    }
    let fsck = b.fsck(&NoProgress).unwrap();
    assert!(fsck.problems.is_empty(), "{fsck:?}");
    assert_eq!(fsck.objects, i.stats.total().count);
}

/// Commits `src` as image `n` into `store`; returns the commit id.
fn commit_as_n(store: &Store, src: &Path) -> vnfs_store::ObjectId {
    store
        .commit_dir(
            src,
            &CommitOptions {
                name: "n".into(),
                timestamp: Some(1_700_000_000),
                ..CommitOptions::default()
            },
            &NoProgress,
        )
        .unwrap()
        .id
}

/// The chunks of the file at `path` (relative, `/`-separated) in commit
/// `head`, with their lengths.
fn chunks_of(
    store: &Store,
    head: &vnfs_store::ObjectId,
    path: &str,
) -> Vec<(vnfs_store::ObjectId, u64)> {
    use vnfs_store::{EntryKind, Extent};
    let mut tree = store.read_commit(head).unwrap().tree();
    let mut parts = path.split('/').peekable();
    while let Some(part) = parts.next() {
        let t = store.read_tree(&tree).unwrap();
        let e = t
            .entries
            .into_iter()
            .find(|e| e.name == part.as_bytes())
            .unwrap();
        match e.kind {
            EntryKind::Dir { tree: sub } => tree = sub,
            EntryKind::File { extents, .. } if parts.peek().is_none() => {
                return extents
                    .into_iter()
                    .filter_map(|x| match x {
                        Extent::Data { id, len } => Some((id, len)),
                        Extent::Hole { .. } => None,
                    })
                    .collect();
            }
            _ => panic!("{path} is not a file"),
        }
    }
    panic!("{path} not found")
}

/// Zeroes 4 stored bytes in the middle of a chunk's pack record, in place
/// (as the trial's damaged store had them), and returns where the record
/// is: its pack and its offset there.
fn damage(store: &Store, id: &vnfs_store::ObjectId) -> (std::path::PathBuf, u64) {
    use std::os::unix::fs::{FileExt, PermissionsExt};
    let at = store
        .locate_stored(id, vnfs_store::ObjectKind::Chunk)
        .unwrap();
    let mut perm = std::fs::metadata(&at.path).unwrap().permissions();
    perm.set_mode(0o644);
    std::fs::set_permissions(&at.path, perm).unwrap();
    let pack = std::fs::OpenOptions::new()
        .write(true)
        .open(&at.path)
        .unwrap();
    let pos = at.offset + u64::from(at.entry.stored_len) / 2;
    let mut old = [0u8; 4];
    std::fs::File::open(&at.path)
        .unwrap()
        .read_exact_at(&mut old, pos)
        .unwrap();
    // Zeroes, unless they were zeroes already: then ones.
    let new = if old == [0; 4] { [0xff; 4] } else { [0; 4] };
    pack.write_all_at(&new, pos).unwrap();
    let record = at.offset - vnfs_store::pack::RECORD_HEADER as u64;
    (at.path, record)
}

/// A writer that keeps what it was given where the test can see it after
/// a failed export has consumed the writer.
#[derive(Clone, Default)]
struct Kept(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Kept {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Kept {
    /// True when what was written is a whole, checkable capsule.
    fn is_complete_capsule(&self) -> bool {
        let bytes = self.0.lock().unwrap().clone();
        inspect(
            std::io::Cursor::new(bytes),
            Limits::default(),
            &TrustList::new(),
            false,
        )
        .is_ok()
    }
}

/// Exports image `n` at `head` with `opts` into a [`Kept`] writer.
fn export_kept(
    store: &Store,
    head: &vnfs_store::ObjectId,
    opts: &vnfs_capsule::exchange::ExportOptions,
) -> (Result<(), ExchangeError>, Kept) {
    let kept = Kept::default();
    let head = ObjectId::from_bytes(head.0);
    let r = vnfs_capsule::exchange::export_with(store, "n", head, None, None, kept.clone(), opts);
    (r.map(|_| ()), kept)
}

/// Checks that `e` names `victim`, a chunk of `file`, in `pack` at `record`,
/// and points at fsck.
fn assert_names_damage(
    e: &ExchangeError,
    victim: &vnfs_store::ObjectId,
    pack: &Path,
    record: u64,
    head: &vnfs_store::ObjectId,
    file: &str,
) {
    let msg = e.to_string();
    match e {
        ExchangeError::Damaged {
            kind,
            id,
            pack: p,
            offset,
            place,
            ..
        } => {
            assert_eq!(*kind, ObjectKind::Chunk, "{msg}");
            assert_eq!(id.as_bytes(), &victim.0, "{msg}");
            assert_eq!(p, pack, "{msg}");
            assert_eq!(*offset, record, "{msg}");
            assert_eq!(
                place.as_deref(),
                Some(format!("n@{}:/{file}", head.short()).as_str()),
                "{msg}"
            );
        }
        other => panic!("expected a damaged-object error, got {other}"),
    }
    for part in [
        victim.to_string(),
        pack.display().to_string(),
        format!("offset {record}"),
        format!("/{file}"),
        "vnfs store fsck".to_string(),
    ] {
        assert!(msg.contains(&part), "{part:?} missing from: {msg}");
    }
}

#[test]
fn a_corrupt_small_object_in_the_store_stops_the_export() {
    use vnfs_capsule::exchange::ExportOptions;
    let tmp = tempfile::tempdir().unwrap();
    let a = Store::open_or_create(&tmp.path().join("a")).unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    for f in 0..20 {
        let text = format!("# file {f}\nkey = value {f}\n").repeat(20);
        std::fs::write(src.join(format!("etc/{f}.conf")), &text).unwrap();
    }
    let head = commit_as_n(&a, &src);
    let [(victim, len)] = chunks_of(&a, &head, "etc/7.conf")[..] else {
        panic!("one chunk expected")
    };
    assert!(len < 16 << 10, "a small chunk, for a solid block");
    let (pack, record) = damage(&a, &victim);

    // Small objects are decoded to be recompressed, so they are checked
    // with or without `verify`.
    for verify in [true, false] {
        let opts = ExportOptions {
            verify,
            ..ExportOptions::default()
        };
        let (r, kept) = export_kept(&a, &head, &opts);
        let e = r.unwrap_err();
        assert_names_damage(&e, &victim, &pack, record, &head, "etc/7.conf");
        assert!(!kept.is_complete_capsule(), "verify {verify}");
    }
}

#[test]
fn a_corrupt_large_chunk_in_the_store_stops_the_export() {
    use vnfs_capsule::exchange::ExportOptions;
    // One file kept raw in the store (noise does not compress), one kept
    // zstd-compressed: the export copies both as stored.
    for (file, content, compression) in [
        (
            "usr/lib/libbig.so",
            noise(1, 1 << 20),
            vnfs_store::Compression::Raw,
        ),
        (
            "usr/share/big.txt",
            noise(2, 1 << 20).iter().map(|b| b & 0x0f).collect(),
            vnfs_store::Compression::Zstd,
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let a = Store::open_or_create(&tmp.path().join("a")).unwrap();
        let src = tmp.path().join("src");
        let path = src.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &content).unwrap();
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/hostname"), "node\n").unwrap();
        let head = commit_as_n(&a, &src);
        let chunks = chunks_of(&a, &head, file);
        let (victim, len) = chunks[1];
        assert!(len >= 16 << 10, "a large chunk, copied as stored");
        let entry = a.entry(&victim).unwrap();
        assert_eq!(entry.compression, compression, "{file}");
        let (pack, record) = damage(&a, &victim);

        for solid_below in [ExportOptions::default().solid_below, 0] {
            let opts = ExportOptions {
                solid_below,
                ..ExportOptions::default()
            };
            let (r, kept) = export_kept(&a, &head, &opts);
            let e = r.unwrap_err();
            assert_names_damage(&e, &victim, &pack, record, &head, file);
            assert!(!kept.is_complete_capsule(), "{file}");
        }

        // Unchecked, the damage travels (the reason for the default); the
        // importing site is the one to find it.
        let opts = ExportOptions {
            verify: false,
            ..ExportOptions::default()
        };
        let (r, kept) = export_kept(&a, &head, &opts);
        r.unwrap();
        assert!(kept.is_complete_capsule());
        let b = Store::open_or_create(&tmp.path().join("b")).unwrap();
        let bytes = kept.0.lock().unwrap().clone();
        let e = import(&b, &bytes[..], None, ReadOptions::default()).unwrap_err();
        assert!(e.to_string().contains(&victim.to_string()), "{e}");
        assert!(b.list_refs().unwrap().is_empty());
    }
}

#[test]
fn the_first_damaged_chunk_in_write_order_is_named() {
    use vnfs_capsule::exchange::ExportOptions;
    let tmp = tempfile::tempdir().unwrap();
    let a = Store::open_or_create(&tmp.path().join("a")).unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("usr/lib")).unwrap();
    // Enough data for several pack runs, checked on several threads.
    std::fs::write(src.join("usr/lib/a.so"), noise(3, 6 << 20)).unwrap();
    std::fs::write(src.join("usr/lib/b.so"), noise(4, 6 << 20)).unwrap();
    let head = commit_as_n(&a, &src);
    let first = chunks_of(&a, &head, "usr/lib/a.so")[40].0;
    let later = chunks_of(&a, &head, "usr/lib/b.so")[3].0;
    let later_too = chunks_of(&a, &head, "usr/lib/a.so")[60].0;
    // Damaged last-first, so file order is not damage order.
    damage(&a, &later);
    damage(&a, &later_too);
    let (pack, record) = damage(&a, &first);
    for _ in 0..3 {
        let (r, _) = export_kept(&a, &head, &ExportOptions::default());
        let e = r.unwrap_err();
        assert_names_damage(&e, &first, &pack, record, &head, "usr/lib/a.so");
    }
}

/// A pack the export copies most of is checked whole against its name;
/// one it copies little of, object by object. Image `n` holds a small and
/// a large file, both in one pack; image `m` holds one of them (nothing
/// new: its pack has only a tree and a commit). A delta of `n` over `m`
/// copies the other file's chunks, so which file `m` holds decides how
/// much of the pack the export copies.
#[test]
fn a_pack_is_checked_whole_or_object_by_object() {
    use vnfs_capsule::exchange::ExportOptions;
    for (base_has, damaged_file, copied_file) in [
        // Three quarters of the pack copied: checked whole. The damage
        // lies in what the delta leaves out, so the capsule is sound, and
        // the damaged pack is reported for fsck.
        ("usr/lib/small.so", "usr/lib/small.so", "usr/lib/large.so"),
        // A quarter copied: checked object by object, and the damaged
        // object it copies is named.
        ("usr/lib/large.so", "usr/lib/small.so", "usr/lib/small.so"),
        // Checked whole, and the damage is in what it copies: named too.
        ("usr/lib/small.so", "usr/lib/large.so", "usr/lib/large.so"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let a = Store::open_or_create(&tmp.path().join("a")).unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("usr/lib")).unwrap();
        std::fs::write(src.join("usr/lib/small.so"), noise(5, 1 << 20)).unwrap();
        std::fs::write(src.join("usr/lib/large.so"), noise(6, 3 << 20)).unwrap();
        let head = commit_as_n(&a, &src);
        let base_src = tmp.path().join("base");
        let in_base = base_src.join(base_has);
        std::fs::create_dir_all(in_base.parent().unwrap()).unwrap();
        std::fs::copy(src.join(base_has), &in_base).unwrap();
        // The same directory and options give the same commit anywhere.
        let commit_base = |store: &Store| {
            let o = CommitOptions {
                name: "m".into(),
                timestamp: Some(1_700_000_000),
                ..CommitOptions::default()
            };
            store.commit_dir(&base_src, &o, &NoProgress).unwrap().id
        };
        let base = commit_base(&a);
        let (victim, _) = chunks_of(&a, &head, damaged_file)[2];
        let (pack, record) = damage(&a, &victim);

        let kept = Kept::default();
        let r = vnfs_capsule::exchange::export_with(
            &a,
            "n",
            ObjectId::from_bytes(head.0),
            Some(ObjectId::from_bytes(base.0)),
            None,
            kept.clone(),
            &ExportOptions::default(),
        )
        .map(|(report, _)| report);
        let what = format!("base holds {base_has}, {damaged_file} damaged");
        if damaged_file == copied_file {
            let e = r.map(|_| ()).unwrap_err();
            assert_names_damage(&e, &victim, &pack, record, &head, damaged_file);
            assert!(!kept.is_complete_capsule(), "{what}");
        } else {
            let report = r.unwrap();
            assert!(kept.is_complete_capsule(), "{what}");
            let [d] = &report.damaged_packs[..] else {
                panic!(
                    "{what}: one damaged pack expected: {:?}",
                    report.damaged_packs
                )
            };
            assert_eq!(d.path, pack, "{what}");
            assert!(d.why.contains("checksum mismatch"), "{what}: {}", d.why);
            // Sound: site B, holding the base, imports it.
            let b = Store::open_or_create(&tmp.path().join("b")).unwrap();
            assert_eq!(commit_base(&b), base);
            let bytes = kept.0.lock().unwrap().clone();
            import(&b, &bytes[..], None, ReadOptions::default()).unwrap();
        }
    }
}

#[test]
fn checking_does_not_change_a_byte() {
    use vnfs_capsule::exchange::{ExportOptions, export_with};
    let tmp = tempfile::tempdir().unwrap();
    let a = Store::open_or_create(&tmp.path().join("a")).unwrap();
    let src = tmp.path().join("src");
    let v1 = commit(&a, &src, 1);
    let v2 = commit(&a, &src, 2);
    let key = SecretKey::from_seed([9; 32], "site-a");
    for solid_below in [ExportOptions::default().solid_below, 0, 1 << 20] {
        for (base, signer) in [(None, None), (Some(v1), Some(&key))] {
            let [on, off] = [true, false].map(|verify| {
                let opts = ExportOptions {
                    solid_below,
                    verify,
                    ..ExportOptions::default()
                };
                export_with(&a, "debian-node", v2, base, signer, Vec::new(), &opts)
                    .unwrap()
                    .1
            });
            assert!(on == off, "solid below {solid_below}, base {base:?}");
        }
    }
}
