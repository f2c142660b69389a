//! End to end: `vnfs serve` as a real process on loopback, node agents
//! (the `vnfs_node` library the `vnfs-node` binary runs) provisioning,
//! re-provisioning from their cache, and livesyncing; plus the fault cases
//! (daemon killed mid-transfer, a corrupt chunk, unknown, disabled and
//! image-less nodes, a wrong secret).

// The store's own tree builder and exact tree comparison, shared as is.
mod boot;
#[allow(clippy::needless_borrows_for_generic_args)]
#[path = "../../store/tests/common/mod.rs"]
mod common;
mod delta;
mod faults;
mod fixture;
mod http;
mod hybrid;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fixture::*;
use vnfs_node::client::{Master, Retry};
use vnfs_node::proto::CheckinRequest;

/// Eight agents provision at once; every root equals `vnfs checkout`; node
/// status goes init -> ready; a second provision from the cache fetches
/// only the new version's new chunks and trees; a livesync under constant
/// check-ins moves all eight to the next version, honouring livesync.skip.
#[test]
fn eight_nodes_provision_reprovision_and_livesync() {
    common::require_root();
    let m = Site::new();
    let v1 = m.commit_image("img", &m.image_v1(), &["/etc/hostname"]);
    m.set_default_vnfs("img");
    let daemon = m.start_daemon();
    let macs: Vec<String> = (0..8).map(|i| format!("52:54:00:aa:00:{i:02x}")).collect();

    // Check in as init first: the daemon adds the unknown MACs with
    // defaults.conf, and node status shows them in init.
    let master = Master::new(&daemon.url, Retry::default());
    for mac in &macs {
        let r = master
            .checkin(&CheckinRequest {
                mac: mac.clone(),
                state: "init".into(),
                ..CheckinRequest::default()
            })
            .unwrap();
        assert_eq!(r.image, "img");
        assert_eq!(r.commit, v1.to_hex());
        assert!(r.script.starts_with("#!/bin/sh"), "{}", r.script);
    }
    let status = m.vnfs(&["node", "status"]);
    assert_eq!(status.matches(" init ").count(), 8, "{status}");

    let reports = provision_all(&m, &daemon.url, &macs, "a");
    // What the node's own configuration would write; livesync.skip keeps it.
    for i in 0..8 {
        std::fs::write(m.root(i, "a").join("etc/hostname"), "node-local\n").unwrap();
    }
    let expected = m.checkout("img", "expect-v1");
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r.commit, v1.to_hex());
        assert_eq!(r.fetch.chunks_cached, 0);
        let root = m.root(i, "a");
        let want = std::fs::read(expected.join("etc/hostname")).unwrap();
        let meta = std::fs::symlink_metadata(expected.join("etc/hostname")).unwrap();
        // Compare with the image's hostname file put back (content and time).
        std::fs::write(root.join("etc/hostname"), &want).unwrap();
        set_mtime_like(&root.join("etc/hostname"), &meta);
        common::assert_same_tree(&expected, &root, &[]);
        std::fs::write(root.join("etc/hostname"), "node-local\n").unwrap();
    }
    let status = m.vnfs(&["node", "status"]);
    assert_eq!(status.matches(" ready ").count(), 8, "{status}");
    assert!(!status.contains(" init "), "{status}");

    // A new version made from an edited checkout (stand-in for
    // mount/edit/umount): node 0 re-provisions from its cache.
    let edited = m.edit_checkout("img", "edit-v2", 2);
    let v2 = m.commit_image("img", &edited, &["/etc/hostname"]);
    let (new_chunks, new_trees) = m.new_objects(&v1, &v2);
    assert!(new_chunks > 0 && new_trees > 0);
    let r = provision_one(&daemon.url, &macs[0], &m.root(0, "b"), &m.cache(0));
    std::fs::write(m.root(0, "b").join("etc/hostname"), "node-local\n").unwrap();
    assert_eq!(r.commit, v2.to_hex());
    assert_eq!(r.fetch.chunks_fetched, new_chunks, "{r:?}");
    assert_eq!(r.fetch.trees_fetched, new_trees, "{r:?}");
    assert!(r.fetch.chunks_cached > 0);
    let expected = m.checkout("img", "expect-v2");
    remove_keeping_parent_time(&expected, "etc/hostname");
    let mut cmp = m.root(0, "b");
    cmp.set_file_name("cmp-v2");
    copy_tree(&m.root(0, "b"), &cmp);
    remove_keeping_parent_time(&cmp, "etc/hostname");
    common::assert_same_tree(&expected, &cmp, &[]);

    // Livesync to v3 while every node (and a stranger) keeps checking in.
    let edited = m.edit_checkout("img", "edit-v3", 3);
    std::fs::write(edited.join("etc/hostname"), "from-the-image\n").unwrap();
    let v3 = m.commit_image("img", &edited, &["/etc/hostname"]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut agents = Vec::new();
    for (i, _) in macs.iter().enumerate() {
        let o = vnfs_node::daemon::Options {
            cache: m.cache(i),
            secret: None,
            interval: Some(Duration::from_millis(100)),
            iterations: Some(3000),
            threads: 4,
            run_scripts: true,
            stop: stop.clone(),
        };
        let url = daemon.url.clone();
        agents.push(std::thread::spawn(move || {
            vnfs_node::daemon::run(&Master::new(&url, Retry::default()), &o)
        }));
    }
    let noise = {
        let (url, stop) = (daemon.url.clone(), stop.clone());
        std::thread::spawn(move || {
            let master = Master::new(&url, Retry::default());
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 5000 {
                master
                    .checkin(&CheckinRequest {
                        mac: "52:54:00:bb:00:01".into(),
                        state: "ready".into(),
                        ..CheckinRequest::default()
                    })
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    let dry = m.vnfs(&["livesync", "img", "--dry-run"]);
    assert!(dry.contains("A /etc/edited-3"), "{dry}");
    assert!(dry.contains("M /etc/motd"), "{dry}");
    assert!(dry.contains("1 skipped"), "{dry}");
    let out = m.vnfs(&["livesync", "img", "--timeout", "60"]);
    stop.store(true, Ordering::Relaxed);
    for a in agents {
        a.join().unwrap().unwrap();
    }
    assert!(noise.join().unwrap() > 0);
    let ok_rows = out
        .lines()
        .filter(|l| l.trim_end().ends_with(" ok"))
        .count();
    assert_eq!(ok_rows, 8, "{out}");
    let expected = m.checkout("img", "expect-v3");
    remove_keeping_parent_time(&expected, "etc/hostname");
    for i in 0..8 {
        let root = if i == 0 {
            m.root(0, "b")
        } else {
            m.root(i, "a")
        };
        // livesync.skip: the node keeps its own /etc/hostname.
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
            "node-local\n"
        );
        remove_keeping_parent_time(&root, "etc/hostname");
        common::assert_same_tree(&expected, &root, &[]);
    }
    let state = vnfs_node::state::NodeState::load(&m.cache(3))
        .unwrap()
        .unwrap();
    assert_eq!(state.commit, v3.to_hex());
    let plans = m.vnfs(&["livesync", "img", "--dry-run"]);
    assert_eq!(plans.matches("up to date").count(), 8, "{plans}");
}
