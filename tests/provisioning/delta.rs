//! Livesync's delta transfer: a small edit of a large, incompressible file
//! crosses the wire as a fraction of its new chunks, and a file under a
//! renamed version directory is sent against its old version.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::common;
use crate::fixture::*;
use vnfs_node::client::{Master, Retry};
use vnfs_store::id::IdSet;
use vnfs_store::{EntryKind, Extent, ObjectId};

/// Bytes zstd cannot compress on their own.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Raw bytes of the chunks of `b` that `a` lacks.
fn new_chunk_bytes(m: &Site, a: &ObjectId, b: &ObjectId) -> u64 {
    let store = m.store();
    let chunks = |c: &ObjectId| {
        let mut out: Vec<(ObjectId, u64)> = Vec::new();
        store
            .walk(&store.read_commit(c).unwrap().tree(), &mut |_, e| {
                if let EntryKind::File { extents, .. } = &e.kind {
                    for x in extents {
                        if let Extent::Data { id, len } = x {
                            out.push((*id, *len));
                        }
                    }
                }
                Ok(true)
            })
            .unwrap();
        out
    };
    let old: IdSet = chunks(a).into_iter().map(|c| c.0).collect();
    let mut seen = IdSet::default();
    chunks(b)
        .into_iter()
        .filter(|(id, _)| !old.contains(id) && seen.insert(*id))
        .map(|c| c.1)
        .sum()
}

#[test]
fn livesync_sends_changed_files_as_deltas_against_their_old_versions() {
    common::require_root();
    let m = Site::new();
    let src = m.path("src-delta");
    std::fs::create_dir_all(src.join("usr/lib/modules/6.1.0-9")).unwrap();
    std::fs::create_dir_all(src.join("etc")).unwrap();
    let lib = noise(7, 3 << 20);
    let module = noise(8, 1 << 20);
    std::fs::write(src.join("usr/lib/libbig.so.1"), &lib).unwrap();
    std::fs::write(src.join("usr/lib/modules/6.1.0-9/ext4.ko"), &module).unwrap();
    std::fs::write(src.join("etc/motd"), "v1\n").unwrap();
    let v1 = m.commit_image("img", &src, &[]);
    m.set_default_vnfs("img");
    let daemon = m.start_daemon();
    let mac = "52:54:00:dd:00:01";
    provision_one(&daemon.url, mac, &m.root(0, "d"), &m.cache(0));

    // v2: 200 bytes rewritten in the library; the module moves to a new
    // version directory with a few bytes changed.
    let mut lib2 = lib.clone();
    lib2[1_500_000..1_500_200].copy_from_slice(&noise(9, 200));
    std::fs::write(src.join("usr/lib/libbig.so.1"), &lib2).unwrap();
    let mut module2 = module.clone();
    module2[500_000..500_050].copy_from_slice(&noise(10, 50));
    std::fs::remove_dir_all(src.join("usr/lib/modules/6.1.0-9")).unwrap();
    std::fs::create_dir_all(src.join("usr/lib/modules/6.1.0-10")).unwrap();
    std::fs::write(src.join("usr/lib/modules/6.1.0-10/ext4.ko"), &module2).unwrap();
    std::fs::write(src.join("etc/motd"), "v2\n").unwrap();
    let v2 = m.commit_image("img", &src, &[]);
    let plain = new_chunk_bytes(&m, &v1, &v2);
    // Without delta transfer the node would receive at least these bytes:
    // the new chunks of both files, which do not compress.
    assert!(plain > 64 << 10, "test data too small: {plain} new bytes");

    let o = vnfs_node::daemon::Options {
        cache: m.cache(0),
        secret: None,
        interval: Some(Duration::from_millis(100)),
        iterations: Some(600),
        threads: 2,
        run_scripts: false,
        stop: Arc::new(AtomicBool::new(false)),
    };
    let stop = o.stop.clone();
    let url = daemon.url.clone();
    let agent = std::thread::spawn(move || {
        vnfs_node::daemon::run(&Master::new(&url, Retry::default()), &o)
    });
    let out = m.vnfs(&["--json", "livesync", "img", "--timeout", "60"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    agent.join().unwrap().unwrap();
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(rows[0]["report"].as_str().unwrap()).unwrap();
    assert_eq!(report["ok"], true, "{out}");
    let wire = report["bytes"].as_u64().unwrap();
    // Requests, headers, the changed trees and the commit included.
    assert!(
        wire * 8 < plain,
        "{wire} bytes on the wire for {plain} bytes of new chunks: {out}"
    );
    let expected = m.checkout("img", "expect-delta");
    common::assert_same_tree(&expected, &m.root(0, "d"), &[]);
}
