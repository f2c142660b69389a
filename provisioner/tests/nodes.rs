//! Node database behaviour: the Perceus guide's examples verbatim, naming,
//! groups, importers, and bad input that must leave the database unchanged.

use std::time::{Duration, Instant};

use vnfs_provisioner::config::Defaults;
use vnfs_provisioner::db::{NewNode, NodeDb};
use vnfs_provisioner::node::Field;
use vnfs_provisioner::pattern::PatternSet;
use vnfs_provisioner::{Error, Images, Mac, Node, Selector, Site, import};

fn mac(i: u32) -> Mac {
    let b = i.to_be_bytes();
    Mac([0x52, 0x54, b[0], b[1], b[2], b[3]])
}

fn db_with(n: u32, defaults: &Defaults) -> (tempfile::TempDir, NodeDb) {
    let dir = tempfile::tempdir().unwrap();
    let mut db = NodeDb::open(&dir.path().join("nodes.db")).unwrap();
    let macs: Vec<Mac> = (0..n).map(mac).collect();
    if n > 0 {
        db.add(&macs, defaults, &Images::default()).unwrap();
    }
    (dir, db)
}

fn names(sel: &[&str], by_id: bool) -> Selector {
    Selector::from_args(sel, by_id).unwrap()
}

fn hostnames(nodes: &[Node]) -> Vec<String> {
    nodes.iter().map(|n| n.hostname.clone()).collect()
}

fn images() -> Images {
    Images::from_names([
        "caos-nsa-node-1.0-1.stateless.x86_64",
        "caos-nsa-full-1.0-1.stateless.x86_64",
        "debian-node",
    ])
}

#[test]
fn add_names_nodes_from_defaults() {
    let (_d, db) = db_with(3, &Defaults::default());
    let nodes = db.nodes().unwrap();
    assert_eq!(hostnames(&nodes), ["n0000", "n0001", "n0002"]);
    assert!(nodes.iter().all(|n| n.group == "cluster" && n.enabled));
    // The magazine's defaults.conf: First Node 1, Total Nodes 10000 -> n00001.
    let mag = Defaults {
        first_node: 1,
        ..Defaults::default()
    };
    let (_d, db) = db_with(2, &mag);
    assert_eq!(hostnames(&db.nodes().unwrap()), ["n00001", "n00002"]);
}

#[test]
fn add_fills_gaps_and_reports_exhaustion() {
    let d = Defaults {
        node_name: "c#".into(),
        total_nodes: 3,
        ..Defaults::default()
    };
    let (_dir, mut db) = db_with(3, &d);
    db.delete(&names(&["c1"], false)).unwrap();
    let out = db.add(&[mac(100)], &d, &Images::default()).unwrap();
    assert_eq!(hostnames(&out.nodes), ["c1"]);
    let before = db.nodes().unwrap();
    let e = db.add(&[mac(101)], &d, &Images::default()).unwrap_err();
    assert!(
        matches!(e, Error::NamesExhausted { first: 0, total: 3 }),
        "{e}"
    );
    assert_eq!(db.nodes().unwrap(), before);
}

/// Guide 5.2.1: `perceus node set vnfs [VNFS NAME] n00[00-05,06,20-40] io*`
#[test]
fn guide_set_vnfs_with_ranges_and_glob() {
    let (_d, mut db) = db_with(50, &Defaults::default());
    let io = NewNode {
        mac: Some(mac(1000)),
        hostname: Some("io1".into()),
        ..NewNode::default()
    };
    let io2 = NewNode {
        mac: Some(mac(1001)),
        hostname: Some("io2".into()),
        ..NewNode::default()
    };
    db.add_records(&[io, io2], &Defaults::default(), &Images::default())
        .unwrap();
    let out = db
        .set(
            &names(&["n00[00-05,06,20-40]", "io*"], false),
            &Field::Vnfs,
            "caos-nsa-node-1.0-1.stateless.x86_64",
            &images(),
        )
        .unwrap();
    let mut want: Vec<String> = vec!["io1".into(), "io2".into()];
    want.extend((0..=6).map(|i| format!("n{i:04}")));
    want.extend((20..=40).map(|i| format!("n{i:04}")));
    assert_eq!(hostnames(&out.nodes), want);
    let set: Vec<String> = db
        .nodes()
        .unwrap()
        .into_iter()
        .filter(|n| !n.vnfs.is_empty())
        .map(|n| n.hostname)
        .collect();
    assert_eq!(set, want);
}

/// Guide 5.2.2: `perceus node delete n000[0-2]`
#[test]
fn guide_delete_range() {
    let (_d, mut db) = db_with(5, &Defaults::default());
    let gone = db.delete(&names(&["n000[0-2]"], false)).unwrap();
    assert_eq!(hostnames(&gone), ["n0000", "n0001", "n0002"]);
    assert_eq!(hostnames(&db.nodes().unwrap()), ["n0003", "n0004"]);
}

/// Guide 5.2.3: add a node, describe both, `perceus node replace n0099 n1024`.
#[test]
fn guide_add_then_replace() {
    let (_d, mut db) = db_with(1024, &Defaults::default());
    let imgs = images();
    db.set(
        &names(&["n0099"], false),
        &Field::Vnfs,
        "debian-node",
        &imgs,
    )
    .unwrap();
    db.set(
        &names(&["n0099"], false),
        &Field::Ipaddr,
        "eth0:10.0.0.99/16",
        &imgs,
    )
    .unwrap();
    db.set(
        &names(&["n0099"], false),
        &Field::Attr("rack".into()),
        "7",
        &imgs,
    )
    .unwrap();
    let spare = Mac::parse("00:11:22:33:44:55").unwrap();
    let added = db.add(&[spare], &Defaults::default(), &imgs).unwrap();
    assert_eq!(hostnames(&added.nodes), ["n1024"]);
    db.set(
        &names(&["n1024"], false),
        &Field::Desc,
        "New node is a hot spare",
        &imgs,
    )
    .unwrap();
    db.set(
        &names(&["n0099"], false),
        &Field::Desc,
        "This node just burnt up its CPU",
        &imgs,
    )
    .unwrap();
    let old_mac = db.select(&names(&["n0099"], false), true).unwrap()[0].nodeid;
    let now = db
        .replace(&names(&["n0099"], false), &names(&["n1024"], false))
        .unwrap();
    assert_eq!(now.nodeid, spare);
    assert_eq!(now.hostname, "n0099");
    assert_eq!(now.vnfs, "debian-node");
    assert_eq!(now.desc, "This node just burnt up its CPU");
    assert_eq!(now.attributes.get("rack").map(String::as_str), Some("7"));
    assert_eq!(
        vnfs_provisioner::ipaddr::format_list(&now.ipaddr),
        "eth0:10.0.0.99/16"
    );
    assert!(db.get(old_mac).unwrap().is_none());
    assert_eq!(db.count().unwrap(), 1024);
    assert!(
        db.select(&names(&["n1024"], false), false)
            .unwrap()
            .is_empty()
    );
}

/// Guide 4.2.4: groups.
#[test]
fn guide_groups() {
    let (_d, mut db) = db_with(1100, &Defaults::default());
    let imgs = images();
    db.set(
        &names(&["n000[0-9]"], false),
        &Field::Group,
        "interactive",
        &imgs,
    )
    .unwrap();
    let out = db
        .set(
            &names(&["n[0010-1023]"], false),
            &Field::Group,
            "compute",
            &imgs,
        )
        .unwrap();
    assert_eq!(out.nodes.len(), 1014);
    db.group_set(
        &PatternSet::parse(&["interactive"]).unwrap(),
        &Field::Desc,
        "Interactive and login nodes",
        &imgs,
    )
    .unwrap();
    db.group_set(
        &PatternSet::parse(&["interactive"]).unwrap(),
        &Field::Vnfs,
        "caos-nsa-full-1.0-1.stateless.x86_64",
        &imgs,
    )
    .unwrap();
    db.group_set(
        &PatternSet::parse(&["compute"]).unwrap(),
        &Field::Vnfs,
        "caos-nsa-node-1.0-1.stateless.x86_64",
        &imgs,
    )
    .unwrap();
    let groups = db.groups().unwrap();
    let g: Vec<(String, usize)> = groups
        .iter()
        .map(|g| (g.name.clone(), g.members.len()))
        .collect();
    assert_eq!(
        g,
        [
            ("cluster".into(), 76),
            ("compute".into(), 1014),
            ("interactive".into(), 10)
        ]
    );
    let compute = &groups[1];
    assert_eq!(
        compute.vnfs.get("caos-nsa-node-1.0-1.stateless.x86_64"),
        Some(&1014)
    );
    let n5 = &db.select(&names(&["n0005"], false), true).unwrap()[0];
    assert_eq!(n5.desc, "Interactive and login nodes");
    assert_eq!(n5.vnfs, "caos-nsa-full-1.0-1.stateless.x86_64");
    // A group pattern that matches nothing changes nothing.
    let before = db.nodes().unwrap();
    assert!(
        db.group_set(
            &PatternSet::parse(&["nosuch*"]).unwrap(),
            &Field::Desc,
            "x",
            &imgs
        )
        .is_err()
    );
    assert_eq!(db.nodes().unwrap(), before);
}

/// Guide 4.2.3: duplicate hostnames warn; `-i` addresses nodes by MAC.
#[test]
fn duplicate_hostname_warns_and_nodeid_addresses() {
    let (_d, mut db) = db_with(4, &Defaults::default());
    let out = db
        .set(
            &names(&["n00*"], false),
            &Field::Hostname,
            "duplicatename",
            &Images::default(),
        )
        .unwrap();
    assert_eq!(out.warnings.len(), 1);
    assert!(
        out.warnings[0].contains("shared by 4 nodes"),
        "{:?}",
        out.warnings
    );
    let target = mac(2).to_string().to_lowercase();
    let out = db
        .set(
            &names(&[target.as_str()], true),
            &Field::Hostname,
            "newname",
            &Images::default(),
        )
        .unwrap();
    assert_eq!(out.nodes.len(), 1);
    assert_eq!(out.nodes[0].nodeid, mac(2));
    assert!(out.warnings.is_empty());
    // MAC globs with -i, case-insensitive.
    let hits = db
        .select(&names(&["52:54:00:00:00:0*"], true), true)
        .unwrap();
    assert_eq!(hits.len(), 4);
    // A name used by another node warns on a single set too.
    let out = db
        .set(
            &names(&["newname"], false),
            &Field::Hostname,
            "duplicatename",
            &Images::default(),
        )
        .unwrap();
    assert!(out.warnings[0].contains("shared by 4 nodes"));
}

#[test]
fn attributes_set_show_and_remove() {
    let (_d, mut db) = db_with(2, &Defaults::default());
    db.set(
        &names(&["n0000"], false),
        &Field::Attr("rack".into()),
        "12",
        &Images::default(),
    )
    .unwrap();
    let n = &db.select(&names(&["n0000"], false), true).unwrap()[0];
    assert!(
        n.show_pairs()
            .contains(&("attr.rack".to_string(), "12".to_string()))
    );
    db.set(
        &names(&["n0000"], false),
        &Field::Attr("rack".into()),
        "",
        &Images::default(),
    )
    .unwrap();
    assert!(
        db.select(&names(&["n0000"], false), true).unwrap()[0]
            .attributes
            .is_empty()
    );
}

#[test]
fn status_rows_time_out() {
    let (_d, mut db) = db_with(3, &Defaults::default());
    db.record_contact(mac(0), "ready", "10.0.0.5", 1000)
        .unwrap();
    db.record_contact(mac(1), "init", "10.0.0.6", 1500).unwrap();
    let rows = vnfs_provisioner::status::rows(&db.nodes().unwrap(), 1622, 600);
    assert_eq!(rows[0].state, "ready");
    assert_eq!(rows[0].address, "10.0.0.5");
    assert_eq!(rows[0].seconds_ago, Some(622));
    assert!(rows[0].timed_out);
    assert!(!rows[1].timed_out);
    assert_eq!(rows[2].seconds_ago, None);
    assert!(!rows[2].timed_out);
    assert!(matches!(
        db.record_contact(mac(99), "ready", "x", 1),
        Err(Error::UnknownNode(_))
    ));
}

fn assert_unchanged(db: &NodeDb, before: &[Node], what: &str) {
    assert_eq!(db.nodes().unwrap(), before, "database changed after {what}");
}

#[test]
fn bad_input_leaves_the_database_unchanged() {
    let (_d, mut db) = db_with(10, &Defaults::default());
    let imgs = images();
    let before = db.nodes().unwrap();
    // Malformed MACs never reach the database (the CLI parses first).
    assert!(matches!(
        Mac::parse("00:11:22:33:44"),
        Err(Error::BadMac(_))
    ));
    for bad in ["n[5-2]", "n[1-3", "n1-3]", "n[]", "n[,]"] {
        assert!(
            matches!(
                Selector::from_args(&[bad], false),
                Err(Error::BadPattern { .. })
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        Selector::from_args(&["00:11:22"], true),
        Err(Error::BadMac(_))
    ));
    assert!(matches!(
        Field::parse("colour"),
        Err(Error::UnknownField(_))
    ));
    let e = db
        .set(&names(&["n000*"], false), &Field::Vnfs, "nosuch", &imgs)
        .unwrap_err();
    assert!(matches!(e, Error::UnknownVnfs(_)));
    assert_unchanged(&db, &before, "unknown vnfs");
    let e = db
        .set(&names(&["n0001", "x*"], false), &Field::Desc, "d", &imgs)
        .unwrap_err();
    assert_eq!(e.to_string(), "no node matches 'x*'");
    assert_unchanged(&db, &before, "pattern matching nothing");
    assert!(
        db.set(
            &names(&["n0001"], false),
            &Field::Ipaddr,
            "eth0:10.0.0.300/16",
            &imgs
        )
        .is_err()
    );
    assert!(
        db.set(
            &names(&["n0001"], false),
            &Field::Hostname,
            "bad name",
            &imgs
        )
        .is_err()
    );
    assert!(
        db.set(&names(&["n0001"], false), &Field::Enabled, "perhaps", &imgs)
            .is_err()
    );
    assert_unchanged(&db, &before, "bad values");
    // Duplicate MAC: the whole add is refused, the new MAC before it too.
    let e = db
        .add(&[mac(500), mac(3)], &Defaults::default(), &imgs)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("node {} already exists (hostname n0003)", mac(3))
    );
    assert_unchanged(&db, &before, "duplicate MAC");
    let e = db
        .add(&[mac(500), mac(500)], &Defaults::default(), &imgs)
        .unwrap_err();
    assert!(matches!(e, Error::RepeatedMac(_)));
    assert_unchanged(&db, &before, "repeated MAC");
    // replace needs one node on each side.
    let e = db
        .replace(&names(&["n000*"], false), &names(&["n0009"], false))
        .unwrap_err();
    assert!(matches!(e, Error::NotOneNode { count: 10, .. }), "{e}");
    assert!(
        db.replace(&names(&["n0001"], false), &names(&["n0001"], false))
            .is_err()
    );
    assert_unchanged(&db, &before, "bad replace");
}

#[test]
fn locked_database_waits_then_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nodes.db");
    let mut db = NodeDb::open_with_timeout(&path, Duration::from_millis(300)).unwrap();
    db.add(&[mac(1)], &Defaults::default(), &Images::default())
        .unwrap();
    let before = db.nodes().unwrap();
    // Another process holds the write lock.
    let other = rusqlite_hold(&path);
    let t = Instant::now();
    let e = db
        .set(
            &names(&["n0000"], false),
            &Field::Desc,
            "x",
            &Images::default(),
        )
        .unwrap_err();
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "did not wait: {:?}",
        t.elapsed()
    );
    assert!(e.to_string().starts_with("database is locked:"), "{e}");
    assert!(matches!(e, Error::Locked { .. }));
    drop(other);
    assert_unchanged(&db, &before, "locked write");
    db.set(
        &names(&["n0000"], false),
        &Field::Desc,
        "x",
        &Images::default(),
    )
    .unwrap();
}

/// A second connection holding the write lock, as another `vnfs` process
/// in the middle of a change would.
fn rusqlite_hold(path: &std::path::Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    c
}

#[test]
fn schema_is_wal_and_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nodes.db");
    let db = NodeDb::open(&path).unwrap();
    assert_eq!(
        db.schema_version().unwrap(),
        vnfs_provisioner::schema::latest()
    );
    drop(db);
    // Reopening an up-to-date database is a no-op; a newer one is refused.
    NodeDb::open(&path).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    assert!(matches!(
        NodeDb::open(&path),
        Err(Error::SchemaTooNew { found: 99, .. })
    ));
}

#[test]
fn importers_feed_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = NodeDb::open(&dir.path().join("nodes.db")).unwrap();
    let f = dir.path().join("dhcpd.conf");
    std::fs::write(
        &f,
        "host n0000 {\n    hardware ethernet 00:00:00:00:00:01;\n    fixed-address 10.0.1.0;\n}\n",
    )
    .unwrap();
    let got = import::read(import::Kind::Dhcpd, &f).unwrap();
    db.add_records(&got.nodes, &Defaults::default(), &Images::default())
        .unwrap();
    let e = dir.path().join("ethers");
    std::fs::write(&e, "00:00:00:00:00:02 io1\n00:00:00:00:00:03 10.0.1.3\n").unwrap();
    let got = import::read(import::Kind::Ethers, &e).unwrap();
    db.add_records(&got.nodes, &Defaults::default(), &Images::default())
        .unwrap();
    let w = dir.path().join("nodes.conf");
    std::fs::write(&w, "nodes:\n  ww1:\n    image name: debian-node\n    network devices:\n      default:\n        device: eth0\n        hwaddr: 00:00:00:00:00:04\n        ipaddr: 10.0.1.4\n        netmask: 255.255.0.0\n").unwrap();
    let got = import::read(import::Kind::Warewulf, &w).unwrap();
    let out = db
        .add_records(&got.nodes, &Defaults::default(), &images())
        .unwrap();
    assert!(out.warnings.is_empty());
    let all = db.nodes().unwrap();
    let summary: Vec<(String, String, String)> = all
        .iter()
        .map(|n| {
            (
                n.hostname.clone(),
                vnfs_provisioner::ipaddr::format_list(&n.ipaddr),
                n.vnfs.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("io1".into(), "".into(), "".into()),
            // The ethers line with an address was named from defaults.conf:
            // n0000 is taken by the dhcpd import, so it is n0001.
            ("n0000".into(), "10.0.1.0".into(), "".into()),
            ("n0001".into(), "10.0.1.3".into(), "".into()),
            (
                "ww1".into(),
                "eth0:10.0.1.4/16".into(),
                "debian-node".into()
            ),
        ]
    );
    // Importing the same file again is refused whole.
    let before = db.nodes().unwrap();
    let got = import::read(import::Kind::Warewulf, &w).unwrap();
    assert!(matches!(
        db.add_records(&got.nodes, &Defaults::default(), &images()),
        Err(Error::DuplicateMac { .. })
    ));
    assert_unchanged(&db, &before, "re-import");
}

#[test]
fn deleting_an_image_nodes_use_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let site = Site::load(home, home).unwrap();
    let img = |n: &str| vec![n.to_string()];
    // No node database yet (a store-only user): nothing uses anything, and
    // the check does not create one.
    assert!(
        site.check_image_delete(&img("debian-node"), false)
            .unwrap()
            .is_empty()
    );
    assert!(!site.db_path().exists());
    let mut db = site.open_db().unwrap();
    let macs: Vec<Mac> = (0..10).map(mac).collect();
    db.add(&macs, &Defaults::default(), &images()).unwrap();
    db.set(
        &names(&["n000[0-9]"], false),
        &Field::Vnfs,
        "debian-node",
        &images(),
    )
    .unwrap();
    db.set(
        &names(&["n0009"], false),
        &Field::Vnfs,
        "caos-nsa-node-1.0-1.stateless.x86_64",
        &images(),
    )
    .unwrap();
    assert_eq!(db.nodes_using_image("debian-node").unwrap().len(), 9);
    let e = site
        .check_image_delete(&img("debian-node"), false)
        .unwrap_err();
    assert!(matches!(e, Error::ImageInUse { count: 9, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("image 'debian-node' is used by 9 node(s): n0000, n0001, n0002, n0003, n0004, n0005, n0006, n0007 and 1 more")
            && msg.contains("--force"),
        "{msg}"
    );
    // Any image of a list in use refuses the whole list.
    assert!(
        site.check_image_delete(
            &[
                "caos-nsa-full-1.0-1.stateless.x86_64".into(),
                "caos-nsa-node-1.0-1.stateless.x86_64".into()
            ],
            false
        )
        .is_err()
    );
    let w = site.check_image_delete(&img("debian-node"), true).unwrap();
    assert!(
        w.len() == 1 && w[0].contains("although 9 node(s) use it"),
        "{w:?}"
    );
    assert!(
        site.check_image_delete(&img("caos-nsa-full-1.0-1.stateless.x86_64"), false)
            .unwrap()
            .is_empty()
    );
    // defaults.conf naming the image: a warning, never a refusal.
    std::fs::write(
        home.join("defaults.conf"),
        "Vnfs Name = caos-nsa-full-1.0-1.stateless.x86_64\n",
    )
    .unwrap();
    let site = Site::load(home, home).unwrap();
    let w = site
        .check_image_delete(&img("caos-nsa-full-1.0-1.stateless.x86_64"), false)
        .unwrap();
    assert!(
        w.len() == 1 && w[0].contains("defaults.conf names image"),
        "{w:?}"
    );
}
