//! Hybridization end to end: the export tree, the node's symlinks, sharing
//! across versions, livesync of a hybridized node, refused patterns.

use vnfs_node::client::{Master, Retry};
use vnfs_node::imageconf::ImageConfig;
use vnfs_node::proto::LivesyncOrder;

use crate::common;
use crate::fixture::*;

fn config(patterns: &[&str]) -> ImageConfig {
    ImageConfig {
        hybridize: patterns.iter().map(|s| s.to_string()).collect(),
        livesync_skip: vec!["/etc/hostname".into()],
        ..ImageConfig::default()
    }
}

#[test]
fn hybridized_paths_are_links_into_the_shared_export() {
    common::require_root();
    let m = Site::new();
    let patterns = ["/usr/share/zoneinfo", "/usr/lib/python3/*"];
    let v1 = m.commit_with("img", &m.image_v1(), &config(&patterns));
    m.set_default_vnfs("img");
    let home = std::fs::canonicalize(m.home()).unwrap();
    let export = home.join("export");

    // The report before anything is built.
    let report = m.vnfs(&["hybridize", "img", "--dry-run"]);
    assert!(report.contains("served remotely"), "{report}");

    let d = m.start_daemon();
    let r = provision_one(&d.url, "52:54:00:ee:00:01", &m.root(0, "h"), &m.cache(0));
    assert_eq!(r.hybridized, 2, "{r:?}");
    assert!(r.remote_bytes > 0 && r.local_bytes > 0);
    let root = m.root(0, "h");
    let link = std::fs::read_link(root.join("usr/share/zoneinfo")).unwrap();
    let want = export.join(v1.to_hex()).join("usr/share/zoneinfo");
    assert_eq!(link, want);
    let link = std::fs::read_link(root.join("usr/lib/python3/email")).unwrap();
    assert_eq!(link, export.join(v1.to_hex()).join("usr/lib/python3/email"));
    // The export holds the image's files exactly.
    let expected = m.checkout("img", "expect-v1");
    // (Link counts differ by design: export files are shared hard links.)
    let (a, b) = (
        expected.join("usr/share/zoneinfo"),
        export.join(v1.to_hex()).join("usr/share/zoneinfo"),
    );
    let paths = common::walk(&a);
    assert_eq!(paths, common::walk(&b));
    for p in &paths {
        use std::os::unix::fs::MetadataExt;
        let (x, y) = (
            std::fs::symlink_metadata(a.join(p)).unwrap(),
            std::fs::symlink_metadata(b.join(p)).unwrap(),
        );
        assert_eq!(
            (x.mode(), x.uid(), x.gid(), x.mtime(), x.size()),
            (y.mode(), y.uid(), y.gid(), y.mtime(), y.size()),
            "{}",
            p.display()
        );
        if x.is_file() {
            assert_eq!(
                std::fs::read(a.join(p)).unwrap(),
                std::fs::read(b.join(p)).unwrap()
            );
        }
    }
    // Everything else is local and exact.
    assert!(root.join("usr/lib/perl-base").is_dir());
    assert!(
        !std::fs::symlink_metadata(root.join("usr/lib/perl-base"))
            .unwrap()
            .is_symlink()
    );

    // A second version shares its unchanged files with the first.
    let edited = m.edit_checkout("img", "edit-v2", 2);
    let v2 = m.commit_with("img", &edited, &config(&patterns));
    let out = m.vnfs(&["--json", "hybridize", "img"]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(j["export"]["shared"].as_u64().unwrap() > 0, "{out}");
    assert!(
        j["export_usage"]["links"].as_u64().unwrap()
            > j["export_usage"]["contents"].as_u64().unwrap()
    );
    let v2_zone = export.join(v2.to_hex()).join("usr/share/zoneinfo/Europe");
    assert!(v2_zone.is_dir());

    // Livesync moves the links to the new version's export.
    let master = Master::new(&d.url, Retry::default());
    let mut state = vnfs_node::state::NodeState::load(&m.cache(0))
        .unwrap()
        .unwrap();
    let rep = vnfs_node::livesync::apply(
        &master,
        &m.cache(0),
        &mut state,
        &LivesyncOrder {
            id: 1,
            commit: v2.to_hex(),
        },
        2,
    );
    assert!(rep.ok, "{rep:?}");
    let link = std::fs::read_link(root.join("usr/share/zoneinfo")).unwrap();
    assert_eq!(link, export.join(v2.to_hex()).join("usr/share/zoneinfo"));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        "version 2\n"
    );
}

#[test]
fn patterns_covering_the_state_directory_are_refused() {
    common::require_root();
    let m = Site::new();
    let home = std::fs::canonicalize(m.home()).unwrap();
    let parent = home.parent().unwrap().to_string_lossy().into_owned();
    let src = m.path("small");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/motd"), "hi\n").unwrap();
    m.commit_with("bad", &src, &config(&[&parent]));
    let err = m.vnfs_fails(&["hybridize", "bad"]);
    assert!(
        err.contains("state directory") && err.contains(&parent),
        "{err}"
    );
    // A node of that image is refused with the same reason.
    m.set_default_vnfs("bad");
    let d = m.start_daemon();
    let o = options(&d.url, "52:54:00:ee:00:02", &m.path("r"), &m.path("c"));
    match vnfs_node::provision::provision(&o).unwrap_err() {
        vnfs_node::AgentError::Refused { reason, error, .. } => {
            assert_eq!(reason, "bad-image");
            assert!(error.contains("state directory"), "{error}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
}
