//! fsck finds damage anywhere, gc gives space back and keeps what is
//! reachable, concurrent writers both land, and bad input leaves the store
//! valid.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use vnfs_store::{CommitOptions, NoProgress, Store};

fn opts(name: &str, ts: i64) -> CommitOptions {
    CommitOptions {
        name: name.into(),
        message: "t".into(),
        timestamp: Some(ts),
        ..Default::default()
    }
}

fn small_tree(dir: &Path, seed: u64) {
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("a"), common::noise(200_000, seed)).unwrap();
    fs::write(dir.join("sub/b"), common::noise(5_000, seed + 1)).unwrap();
    fs::write(dir.join("sub/c"), b"text file\n".repeat(100)).unwrap();
}

fn pack_files(store: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for sub in fs::read_dir(store.join("packs")).unwrap() {
        for f in fs::read_dir(sub.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == ext) {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

#[test]
fn fsck_finds_a_flipped_byte_in_every_object_and_names_what_it_breaks() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    small_tree(&src, 1);
    let root = t.path().join("s");
    let store = Store::open_or_create(&root).unwrap();
    store
        .commit_dir(&src, &opts("img", 1), &NoProgress)
        .unwrap();
    assert!(store.fsck(&NoProgress).unwrap().problems.is_empty());
    let packs = pack_files(&root, "pack");
    assert_eq!(packs.len(), 1);
    let pack = &packs[0];
    let clean = fs::read(pack).unwrap();
    // Every byte of the pack: header, record headers and data.
    let mut positions: Vec<usize> = (0..clean.len()).step_by(97).collect();
    positions.extend([0, 5, 12, 13, 20, 50, clean.len() - 1]);
    for pos in positions {
        let mut bad = clean.clone();
        bad[pos] ^= 0x40;
        fs::write(pack, &bad).unwrap();
        let s = Store::open(&root).unwrap();
        let r = s.fsck(&NoProgress).unwrap();
        assert!(
            !r.problems.is_empty(),
            "flip at byte {pos} of the pack went unnoticed"
        );
        fs::write(pack, &clean).unwrap();
    }
    // A damaged chunk is reported with the image and path it breaks.
    let s = Store::open(&root).unwrap();
    let (_, head) = s.resolve("img").unwrap();
    let tree = s.read_commit(&head).unwrap().tree();
    let entry = s.read_tree(&tree).unwrap().get(b"a").cloned().unwrap();
    let vnfs_store::EntryKind::File { extents, .. } = entry.kind else {
        panic!()
    };
    let vnfs_store::Extent::Data { id, .. } = extents[0] else {
        panic!()
    };
    let stored = s.read_stored(&id, vnfs_store::ObjectKind::Chunk).unwrap();
    let at = clean
        .windows(stored.data.len())
        .position(|w| w == stored.data.as_slice())
        .unwrap();
    let mut bad = clean.clone();
    bad[at + stored.data.len() / 2] ^= 1;
    fs::write(pack, &bad).unwrap();
    let r = Store::open(&root).unwrap().fsck(&NoProgress).unwrap();
    let p = r
        .problems
        .iter()
        .find(|p| p.object.as_deref() == Some(id.to_hex().as_str()))
        .expect("the damaged chunk is named");
    assert!(
        p.breaks
            .iter()
            .any(|b| b.starts_with("img@") && b.ends_with(":/a")),
        "{:?}",
        p.breaks
    );
    fs::write(pack, &clean).unwrap();

    // Every byte of the index.
    let idx = &pack_files(&root, "idx")[0];
    let clean_idx = fs::read(idx).unwrap();
    for pos in (0..clean_idx.len()).step_by(13) {
        let mut bad = clean_idx.clone();
        bad[pos] ^= 0x01;
        fs::write(idx, &bad).unwrap();
        let r = Store::open(&root).unwrap().fsck(&NoProgress).unwrap();
        assert!(
            !r.problems.is_empty(),
            "flip at byte {pos} of the index went unnoticed"
        );
    }
    fs::write(idx, &clean_idx).unwrap();
    // A truncated pack.
    fs::write(pack, &clean[..clean.len() / 2]).unwrap();
    let s = Store::open(&root).unwrap();
    assert!(!s.fsck(&NoProgress).unwrap().problems.is_empty());
    let err = s
        .checkout(&head, &t.path().join("co"), &NoProgress)
        .unwrap_err();
    assert!(
        err.to_string().contains("missing") || err.to_string().contains("corrupt"),
        "{err}"
    );
    fs::write(pack, &clean).unwrap();
    assert!(
        Store::open(&root)
            .unwrap()
            .fsck(&NoProgress)
            .unwrap()
            .problems
            .is_empty()
    );
}

#[test]
fn gc_after_delete_gives_space_back_and_keeps_the_rest() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    small_tree(&a, 10);
    small_tree(&b, 20);
    fs::write(a.join("big"), common::noise(3 << 20, 99)).unwrap();
    let root = t.path().join("s");
    let store = Store::open_or_create(&root).unwrap();
    store.commit_dir(&a, &opts("a", 1), &NoProgress).unwrap();
    let kb = store.commit_dir(&b, &opts("b", 1), &NoProgress).unwrap().id;
    let before = store.disk_usage().unwrap();
    store.delete_ref("a").unwrap();
    let r = store.gc(&NoProgress).unwrap();
    assert!(r.removed_objects > 0);
    let after = store.disk_usage().unwrap();
    assert!(
        before - after > 3 << 20,
        "gc freed only {} bytes",
        before - after
    );
    assert!(store.fsck(&NoProgress).unwrap().problems.is_empty());
    let co = t.path().join("co");
    store.checkout(&kb, &co, &NoProgress).unwrap();
    assert_eq!(
        fs::read(co.join("a")).unwrap(),
        fs::read(b.join("a")).unwrap()
    );
    // A second gc has nothing to do.
    let r2 = store.gc(&NoProgress).unwrap();
    assert_eq!(r2.removed_objects, 0);
    assert_eq!(r2.packs_rewritten, 0);
    assert_eq!(r2.leftover_bytes, 0);
    // An interrupted writer's temporary pack is removed and counted.
    fs::write(root.join("tmp/pack-1-2.tmp"), vec![7u8; 12345]).unwrap();
    let r3 = store.gc(&NoProgress).unwrap();
    assert_eq!(r3.leftover_bytes, 12345);
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}

#[test]
fn history_is_kept_by_gc() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    small_tree(&src, 1);
    let store = Store::open_or_create(&t.path().join("s")).unwrap();
    let v1 = store
        .commit_dir(&src, &opts("img", 1), &NoProgress)
        .unwrap()
        .id;
    fs::write(src.join("a"), common::noise(200_000, 77)).unwrap();
    store
        .commit_dir(&src, &opts("img", 2), &NoProgress)
        .unwrap();
    store.gc(&NoProgress).unwrap();
    let co = t.path().join("co");
    store.checkout(&v1, &co, &NoProgress).unwrap();
    assert_eq!(fs::read(co.join("a")).unwrap(), common::noise(200_000, 1));
}

#[test]
fn two_commits_at_once_both_land() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("s");
    Store::open_or_create(&root).unwrap();
    let dirs: Vec<PathBuf> = (0..4).map(|i| t.path().join(format!("d{i}"))).collect();
    for (i, d) in dirs.iter().enumerate() {
        small_tree(d, i as u64 * 100);
        fs::write(d.join("big"), common::noise(2 << 20, i as u64)).unwrap();
    }
    // Two to different names, two to the same name, all at once, each
    // through its own Store handle as separate processes would.
    let ids: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let root = root.clone();
                s.spawn(move || {
                    let store = Store::open(&root).unwrap();
                    let name = if i < 2 {
                        format!("own{i}")
                    } else {
                        "shared".to_string()
                    };
                    store
                        .commit_dir(d, &opts(&name, i as i64), &NoProgress)
                        .unwrap()
                        .id
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let store = Store::open(&root).unwrap();
    assert_eq!(store.get_ref("own0").unwrap(), Some(ids[0]));
    assert_eq!(store.get_ref("own1").unwrap(), Some(ids[1]));
    let head = store.get_ref("shared").unwrap().unwrap();
    let hist: Vec<_> = store
        .history(head)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        hist.len(),
        2,
        "the later commit is re-parented on the earlier one"
    );
    assert!(store.fsck(&NoProgress).unwrap().problems.is_empty());
}

#[test]
fn bad_input_leaves_the_store_valid() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("s");
    let store = Store::open_or_create(&root).unwrap();
    let src = t.path().join("src");
    small_tree(&src, 1);
    let good = store
        .commit_dir(&src, &opts("img", 1), &NoProgress)
        .unwrap()
        .id;
    let err = store
        .commit_dir(&t.path().join("nope"), &opts("img", 2), &NoProgress)
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let file = src.join("a");
    let err = store
        .commit_dir(&file, &opts("img", 2), &NoProgress)
        .unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert!(
        store
            .commit_dir(&src, &opts("bad/name", 2), &NoProgress)
            .is_err()
    );
    assert_eq!(store.get_ref("img").unwrap(), Some(good));
    assert!(store.fsck(&NoProgress).unwrap().problems.is_empty());
    // A corrupt index: the store still opens, says which file, and fsck
    // reports it.
    let idx = pack_files(&root, "idx").remove(0);
    let keep = fs::read(&idx).unwrap();
    fs::write(&idx, b"garbage").unwrap();
    let s = Store::open(&root).unwrap();
    let r = s.fsck(&NoProgress).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.what.contains(idx.to_str().unwrap())),
        "{:?}",
        r.problems
    );
    fs::write(&idx, keep).unwrap();
    // Not a store.
    let e = Store::open(t.path()).err().unwrap();
    assert!(e.to_string().contains("no vnfs store"), "{e}");
}

#[test]
fn full_disk_fails_cleanly() {
    common::require_root();
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("small");
    fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mounting a 4 MiB tmpfs failed");
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Umount(mnt.clone());
    let root = mnt.join("store");
    let store = Store::open_or_create(&root).unwrap();
    let small = t.path().join("small-src");
    small_tree(&small, 3);
    let good = store
        .commit_dir(&small, &opts("img", 1), &NoProgress)
        .unwrap()
        .id;
    let big = t.path().join("big-src");
    fs::create_dir(&big).unwrap();
    fs::write(big.join("noise"), common::noise(8 << 20, 5)).unwrap();
    let err = store
        .commit_dir(&big, &opts("img", 2), &NoProgress)
        .unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    assert_eq!(store.get_ref("img").unwrap(), Some(good));
    assert!(
        Store::open(&root)
            .unwrap()
            .fsck(&NoProgress)
            .unwrap()
            .problems
            .is_empty()
    );
    // The failed pack was removed: the space is back.
    let leftovers: Vec<_> = fs::read_dir(root.join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn pinned_commits_survive_gc() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    small_tree(&src, 42);
    let store = Store::open_or_create(&t.path().join("s")).unwrap();
    let id = store
        .commit_dir(&src, &opts("img", 1), &NoProgress)
        .unwrap()
        .id;
    store.pin("mount-img", id).unwrap();
    store.delete_ref("img").unwrap();
    store.gc(&NoProgress).unwrap();
    store
        .checkout(&id, &t.path().join("co"), &NoProgress)
        .unwrap();
    store.unpin("mount-img").unwrap();
    store.gc(&NoProgress).unwrap();
    assert!(!store.contains(&id), "unpinned and unnamed: collected");
}

#[test]
fn a_checkout_stops_when_cancelled_and_removes_what_it_wrote() {
    use std::sync::atomic::{AtomicU64, Ordering};
    /// Cancels once the checkout has started writing file content; counts
    /// the bytes written.
    struct CancelAfterFirstBytes(AtomicU64);
    impl vnfs_store::Progress for CancelAfterFirstBytes {
        fn advance(&self, n: u64) {
            self.0.fetch_add(n, Ordering::SeqCst);
        }
        fn cancelled(&self) -> bool {
            self.0.load(Ordering::SeqCst) > 0
        }
    }
    let t = tempfile::tempdir().unwrap();
    let store = Store::open_or_create(&t.path().join("s")).unwrap();
    let src = t.path().join("src");
    for i in 0..40 {
        small_tree(&src.join(format!("d{i}")), i);
    }
    let id = store
        .commit_dir(&src, &opts("n", 1), &NoProgress)
        .unwrap()
        .id;
    let co = t.path().join("new/co");
    let p = CancelAfterFirstBytes(AtomicU64::new(0));
    let e = store.checkout(&id, &co, &p).unwrap_err();
    assert!(matches!(e, vnfs_store::StoreError::Interrupted), "{e}");
    // Stopped within a chunk or two per thread, of about 8 MB.
    let written = p.0.load(Ordering::SeqCst);
    assert!(
        written < 2 << 20,
        "{written} bytes written after cancelling"
    );
    assert!(
        !t.path().join("new").exists(),
        "the created levels are removed"
    );

    // Into an empty directory of the user's: it stays, empty.
    let mine = t.path().join("mine");
    fs::create_dir(&mine).unwrap();
    let p = CancelAfterFirstBytes(AtomicU64::new(0));
    store.checkout(&id, &mine, &p).unwrap_err();
    assert_eq!(fs::read_dir(&mine).unwrap().count(), 0);
}
