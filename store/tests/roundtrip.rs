//! Commit → checkout fidelity, reproducible ids, dedup and the stat cache.

mod common;

use std::fs;
use std::path::Path;

use vnfs_store::{CommitOptions, NoProgress, Store};

fn opts(name: &str, ts: i64) -> CommitOptions {
    CommitOptions {
        name: name.into(),
        message: "test".into(),
        timestamp: Some(ts),
        ..Default::default()
    }
}

#[test]
fn every_file_type_and_metadata_round_trips() {
    common::require_root();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let skip = common::build_full_tree(&src);
    let store = Store::open_or_create(&t.path().join("store")).unwrap();
    let out = store
        .commit_dir(&src, &opts("full", 1), &NoProgress)
        .unwrap();
    assert_eq!(
        out.stats.skipped.len(),
        1,
        "the socket is skipped and named"
    );
    assert!(out.stats.skipped[0].ends_with("sock"));
    let dst = t.path().join("dst");
    store.checkout(&out.id, &dst, &NoProgress).unwrap();
    common::assert_same_tree(&src, &dst, &skip);
    // The >4 GiB sparse file kept its size and stayed sparse.
    let md = fs::metadata(dst.join("sparse")).unwrap();
    assert_eq!(md.len(), (5u64 << 30) + 200_000);
    use std::os::unix::fs::MetadataExt;
    assert!(md.blocks() * 512 < 10 << 20);
}

#[test]
fn same_content_same_id_across_fresh_stores() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    fs::write(src.join("a/b/f"), common::noise(500_000, 1)).unwrap();
    fs::write(src.join("g"), b"g").unwrap();
    let s1 = Store::open_or_create(&t.path().join("s1")).unwrap();
    let s2 = Store::open_or_create(&t.path().join("s2")).unwrap();
    let a = s1
        .commit_dir(&src, &opts("x", 100), &NoProgress)
        .unwrap()
        .id;
    let b = s2
        .commit_dir(&src, &opts("x", 100), &NoProgress)
        .unwrap()
        .id;
    assert_eq!(a, b);
    // A copy with the same metadata elsewhere gives the same id too.
    let copy = t.path().join("copy");
    fs::create_dir(&copy).unwrap();
    let st = s1.checkout(&a, &copy.join("c"), &NoProgress);
    assert!(st.is_ok());
    let s3 = Store::open_or_create(&t.path().join("s3")).unwrap();
    let c = s3
        .commit_dir(&copy.join("c"), &opts("x", 100), &NoProgress)
        .unwrap()
        .id;
    assert_eq!(a, c);
    // A different timestamp is a different commit with the same tree.
    let d = s1
        .commit_dir(&src, &opts("y", 101), &NoProgress)
        .unwrap()
        .id;
    assert_ne!(a, d);
    assert_eq!(
        s1.read_commit(&a).unwrap().tree(),
        s1.read_commit(&d).unwrap().tree()
    );
}

#[test]
fn unchanged_recommit_reads_nothing_and_dedups() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..50 {
        fs::write(
            src.join(format!("f{i}")),
            common::noise(40_000 + i * 1000, i as u64),
        )
        .unwrap();
    }
    // Push mtimes/ctimes out of the racy window.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let store = Store::open_or_create(&t.path().join("s")).unwrap();
    let first = store
        .commit_dir(&src, &opts("img", 1), &NoProgress)
        .unwrap();
    assert_eq!(first.stats.unchanged_files, 0);
    let second = store
        .commit_dir(&src, &opts("img", 2), &NoProgress)
        .unwrap();
    assert_eq!(
        second.stats.unchanged_files, 50,
        "stat cache should skip every file"
    );
    assert_eq!(
        second.stats.written.objects, 1,
        "only the commit object is new"
    );
    // Change one file: only it is re-read.
    fs::write(src.join("f3"), b"changed").unwrap();
    let third = store
        .commit_dir(&src, &opts("img", 3), &NoProgress)
        .unwrap();
    assert_eq!(third.stats.unchanged_files, 49);
    let d = store.diff(&second.id, &third.id).unwrap();
    assert_eq!(d.entries.len(), 1);
    assert_eq!(d.entries[0].path, "f3");
    assert_eq!(store.history(third.id).unwrap().len(), 3);
}

#[test]
fn diff_reports_each_kind_of_change() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("d/e")).unwrap();
    fs::write(src.join("keep"), b"k").unwrap();
    fs::write(src.join("modify"), common::noise(100_000, 5)).unwrap();
    fs::write(src.join("chmod"), b"c").unwrap();
    fs::write(src.join("d/e/gone"), b"g").unwrap();
    let store = Store::open_or_create(&t.path().join("s")).unwrap();
    let a = store
        .commit_dir(&src, &opts("img", 1), &NoProgress)
        .unwrap()
        .id;
    let mut m = common::noise(100_000, 5);
    m[50_000] ^= 1;
    fs::write(src.join("modify"), m).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(src.join("chmod"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_dir_all(src.join("d")).unwrap();
    fs::create_dir(src.join("new")).unwrap();
    fs::write(src.join("new/file"), common::noise(300_000, 6)).unwrap();
    let b = store
        .commit_dir(&src, &opts("img", 2), &NoProgress)
        .unwrap()
        .id;
    let d = store.diff(&a, &b).unwrap();
    let got: Vec<(String, char)> = d
        .entries
        .iter()
        .map(|e| (e.path.clone(), e.change.letter()))
        .collect();
    let want: Vec<(String, char)> = [
        ("/", 'm'),
        ("chmod", 'm'),
        ("d", 'D'),
        ("d/e", 'D'),
        ("d/e/gone", 'D'),
        ("modify", 'M'),
        ("new", 'A'),
        ("new/file", 'A'),
    ]
    .iter()
    .map(|(p, c)| (p.to_string(), *c))
    .collect();
    assert_eq!(got, want);
    assert!(
        d.new_bytes >= 300_000,
        "new file's chunks are needed: {}",
        d.new_bytes
    );
    assert!(
        d.new_bytes < 300_000 + 200_000,
        "one modified chunk region, not the whole image"
    );
}

#[test]
fn rollback_is_recorded_in_history() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("v"), b"1").unwrap();
    let store = Store::open_or_create(&t.path().join("s")).unwrap();
    let v1 = store
        .commit_dir(&src, &opts("img", 1), &NoProgress)
        .unwrap()
        .id;
    fs::write(src.join("v"), b"2").unwrap();
    let v2 = store
        .commit_dir(&src, &opts("img", 2), &NoProgress)
        .unwrap()
        .id;
    let r = store.rollback("img", None).unwrap();
    assert_eq!(store.get_ref("img").unwrap(), Some(r));
    let c = store.read_commit(&r).unwrap();
    assert_eq!(c.parents, vec![v2]);
    assert_eq!(c.tree(), store.read_commit(&v1).unwrap().tree());
    assert_eq!(store.history(r).unwrap().len(), 3);
    assert_eq!(
        store
            .resolve(&format!("img@{}", &v1.to_hex()[..10]))
            .unwrap()
            .1,
        v1
    );
}

#[test]
fn real_system_directories_round_trip() {
    common::require_root();
    let t = tempfile::tempdir().unwrap();
    let store = Store::open_or_create(&t.path().join("s")).unwrap();
    for dir in ["/etc", "/usr/bin", "/usr/lib/x86_64-linux-gnu/perl-base"] {
        if !Path::new(dir).exists() {
            continue;
        }
        let name = dir.trim_start_matches('/').replace('/', "-");
        let out = store
            .commit_dir(Path::new(dir), &opts(&name, 1), &NoProgress)
            .unwrap();
        let dst = t.path().join(&name);
        store.checkout(&out.id, &dst, &NoProgress).unwrap();
        let skipped: Vec<String> = out
            .stats
            .skipped
            .iter()
            .map(|s| {
                s.trim_start_matches(dir)
                    .trim_start_matches('/')
                    .to_string()
            })
            .collect();
        let skip: Vec<&str> = skipped.iter().map(String::as_str).collect();
        common::assert_same_tree(Path::new(dir), &dst, &skip);
    }
}

#[test]
fn pack_runs_read_objects_in_order_with_one_read_each() {
    use vnfs_store::{Compression, ObjectKind};
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open_or_create(&tmp.path().join("s")).unwrap();
    let w = store.writer().unwrap();
    let objs: Vec<Vec<u8>> = (0..20u8)
        .map(|i| {
            if i % 2 == 0 {
                vec![i; 3000 + usize::from(i)]
            } else {
                (0..2000u32)
                    .map(|x| (x.wrapping_mul(2_654_435_761) >> 13) as u8 ^ i)
                    .collect()
            }
        })
        .collect();
    let ids: Vec<_> = objs
        .iter()
        .map(|o| w.put(ObjectKind::Chunk, o).unwrap())
        .collect();
    w.flush().unwrap();
    drop(w);
    let want: Vec<_> = ids.iter().map(|id| (*id, ObjectKind::Chunk)).collect();
    // Consecutive records: one run; a small size limit splits it.
    let runs = store.plan_reads(&want, 1 << 20, 0).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].count(), 20);
    let third = runs[0].byte_len() / 3;
    let small = store.plan_reads(&want, third, 0).unwrap();
    assert!(small.len() >= 3, "{} runs", small.len());
    assert!(small.iter().all(|r| r.byte_len() <= third));
    assert_eq!(small.iter().map(|r| r.count()).sum::<usize>(), 20);
    assert_eq!(store.plan_reads(&want, 1, 0).unwrap().len(), 20);
    // Every other object: gaps; read across them only when allowed.
    let odd: Vec<_> = want.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(store.plan_reads(&odd, 1 << 20, 0).unwrap().len(), 10);
    let runs = store.plan_reads(&odd, 1 << 20, 4 << 10).unwrap();
    assert_eq!(runs.len(), 1);
    let mut buf = Vec::new();
    runs[0].fill(&mut buf).unwrap();
    for (span, (id, _)) in runs[0].spans(&buf).unwrap().iter().zip(&odd) {
        assert_eq!(span.id, *id);
        let data = &buf[span.range.clone()];
        let raw = match span.compression {
            Compression::Raw => data.to_vec(),
            Compression::Zstd => zstd::bulk::decompress(data, span.raw_len as usize).unwrap(),
        };
        assert_eq!(raw, store.read_raw(id, ObjectKind::Chunk).unwrap());
    }
    // Out of order: a new run whenever the next object lies behind.
    let rev: Vec<_> = want.iter().rev().copied().collect();
    assert_eq!(store.plan_reads(&rev, 1 << 20, 1 << 20).unwrap().len(), 20);
    // A missing object is named.
    let missing = vnfs_store::ObjectId::of(ObjectKind::Chunk, b"absent");
    let e = store
        .plan_reads(&[(missing, ObjectKind::Chunk)], 1 << 20, 0)
        .unwrap_err();
    assert!(e.to_string().contains(&missing.to_string()), "{e}");
}
