//! Helpers for the image tests: a tree with every entry kind, a store
//! commit of it, and a comparison of two directories limited to what an
//! image format can carry.

#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use vnfs_store::{CommitOptions, NoProgress, ObjectId, Store};

/// Fails loudly unless root: owners, devices and security.* xattrs are
/// what these tests check.
pub fn require_root() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the image tests need root (owners, device nodes, security.* xattrs, loop mounts)"
    );
}

/// Runs a command, failing with its output if it fails.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is the tool installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub use crate::noise::noise;

fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Every relative path under `root`, sorted by bytes.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn rec(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        let mut names: Vec<_> = fs::read_dir(root.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for n in names {
            let r = rel.join(&n);
            out.push(r.clone());
            if fs::symlink_metadata(root.join(&r)).unwrap().is_dir() {
                rec(root, &r, out);
            }
        }
    }
    rec(root, Path::new(""), &mut out);
    out
}

/// A tree with every kind of entry and metadata the formats carry: files
/// of several sizes (one spanning chunks), a file with a hole, a 3-name
/// hard-link group across directories, symlinks (one dangling), char and
/// block devices, a FIFO, setuid/setgid/sticky modes, owners, user.,
/// trusted. and security.capability xattrs, non-UTF-8 and newline names,
/// a long path, nanosecond mtimes.
pub fn build_tree(root: &Path) {
    fs::create_dir_all(root.join("dir/sub")).unwrap();
    fs::create_dir_all(root.join("dev")).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("small"), b"hello\n").unwrap();
    fs::write(root.join("dir/big"), noise(3 << 20, 7)).unwrap();
    let f = fs::File::create(root.join("holey")).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(&noise(100_000, 3), 2 << 20).unwrap();
    drop(f);
    fs::write(root.join("dir/linked"), noise(70_000, 9)).unwrap();
    fs::hard_link(root.join("dir/linked"), root.join("dir/sub/linked2")).unwrap();
    fs::hard_link(root.join("dir/linked"), root.join("zlink")).unwrap();
    std::os::unix::fs::symlink("small", root.join("sym")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", root.join("dangling")).unwrap();
    let mk = |name: &str, ft, dev| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join(name),
            ft,
            rustix::fs::Mode::from_raw_mode(0o620),
            dev,
        )
        .unwrap()
    };
    mk(
        "dev/null",
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::makedev(1, 3),
    );
    mk(
        "dev/console",
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::makedev(5, 1),
    );
    mk(
        "dev/loop0",
        rustix::fs::FileType::BlockDevice,
        rustix::fs::makedev(7, 0),
    );
    mk("fifo", rustix::fs::FileType::Fifo, 0);
    fs::set_permissions(root.join("small"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(root.join("dir/sub"), fs::Permissions::from_mode(0o2750)).unwrap();
    std::os::unix::fs::lchown(root.join("dir/big"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(root.join("sym"), Some(42), Some(43)).unwrap();
    std::os::unix::fs::lchown(root.join("dir/sub"), Some(7), Some(8)).unwrap();
    xattr::set(root.join("small"), "user.note", b"a note").unwrap();
    xattr::set(root.join("small"), "trusted.t", b"\x00\x01binary").unwrap();
    // cap_net_raw+ep, VFS_CAP_REVISION_2.
    let cap: [u8; 20] = [
        0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    xattr::set(root.join("dir/big"), "security.capability", &cap).unwrap();
    fs::write(root.join(OsStr::from_bytes(b"bad\xffname")), b"x").unwrap();
    fs::write(root.join("new\nline"), b"y").unwrap();
    let long = "d".repeat(60);
    fs::create_dir_all(root.join(&long).join(&long)).unwrap();
    fs::write(root.join(&long).join(&long).join("f".repeat(70)), b"deep").unwrap();
    for (i, rel) in walk(root).iter().rev().enumerate() {
        set_mtime(
            &root.join(rel),
            1_600_000_000 + i as i64,
            123_456_789 + i as i64,
        );
    }
    set_mtime(root, 1_500_000_000, 1);
}

/// A store in `dir/store` holding `build_tree` as image `t`; returns the store and commit.
pub fn store_with_tree(dir: &Path) -> (Store, ObjectId) {
    let src = dir.join("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let store = Store::open_or_create(&dir.join("store")).unwrap();
    let opts = CommitOptions {
        name: "t".into(),
        message: "test".into(),
        timestamp: Some(1_700_000_000),
        ..Default::default()
    };
    let out = store.commit_dir(&src, &opts, &NoProgress).unwrap();
    (store, out.id)
}

/// What a format can carry, for [`assert_same`].
#[derive(Clone, Copy, Debug)]
pub struct Carries {
    /// Nanosecond mtimes (else whole seconds).
    pub mtime_nsec: bool,
    /// Extended attributes.
    pub xattrs: bool,
    /// Symlink mtimes (some extractors do not restore them).
    pub symlink_mtime: bool,
    /// Directory mtimes.
    pub dir_mtime: bool,
    /// The root directory's mtime (GNU cpio does not set it on an existing directory).
    pub root_mtime: bool,
}

fn xattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v: Vec<_> = xattr::list(p)
        .map(|it| {
            it.filter_map(|n| {
                xattr::get(p, &n)
                    .ok()
                    .flatten()
                    .map(|v| (n.as_bytes().to_vec(), v))
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn describe(p: &Path, md: &fs::Metadata, c: Carries) -> String {
    let is_link = md.file_type().is_symlink();
    let mtime = if (is_link && !c.symlink_mtime) || (md.is_dir() && !c.dir_mtime) {
        "-".to_string()
    } else if c.mtime_nsec {
        format!("{}.{:09}", md.mtime(), md.mtime_nsec())
    } else {
        md.mtime().to_string()
    };
    format!(
        "type={:o} mode={:o} uid={} gid={} size={} rdev={} mtime={} xattrs={:?}",
        md.mode() & libc::S_IFMT,
        md.mode() & 0o7777,
        md.uid(),
        md.gid(),
        if md.is_dir() { 0 } else { md.size() },
        md.rdev(),
        mtime,
        if c.xattrs { xattrs(p) } else { Vec::new() }
    )
}

/// Asserts that `got` (an extraction) equals `want` (a checkout) in
/// paths, types, modes, owners, sizes, devices, mtimes and xattrs as far as
/// `c` allows, hard-link structure and content.
pub fn assert_same(want: &Path, got: &Path, c: Carries) {
    let pa = walk(want);
    let pb = walk(got);
    assert_eq!(pa, pb, "different path lists");
    let (ra, rb) = (
        fs::symlink_metadata(want).unwrap(),
        fs::symlink_metadata(got).unwrap(),
    );
    let rc = Carries {
        dir_mtime: c.root_mtime,
        ..c
    };
    assert_eq!(
        describe(want, &ra, rc),
        describe(got, &rb, rc),
        "root differs"
    );
    let mut la: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut lb: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for rel in &pa {
        let (x, y) = (want.join(rel), got.join(rel));
        let (mx, my) = (
            fs::symlink_metadata(&x).unwrap(),
            fs::symlink_metadata(&y).unwrap(),
        );
        assert_eq!(
            describe(&x, &mx, c),
            describe(&y, &my, c),
            "metadata of {}",
            rel.display()
        );
        if mx.is_file() {
            assert_eq!(mx.nlink(), my.nlink(), "link count of {}", rel.display());
            if mx.nlink() > 1 {
                let fa = la
                    .entry((mx.dev(), mx.ino()))
                    .or_insert(rel.clone())
                    .clone();
                let fb = lb
                    .entry((my.dev(), my.ino()))
                    .or_insert(rel.clone())
                    .clone();
                assert_eq!(fa, fb, "hard-link group of {}", rel.display());
            }
            assert!(
                fs::read(&x).unwrap() == fs::read(&y).unwrap(),
                "content of {}",
                rel.display()
            );
        } else if mx.file_type().is_symlink() {
            assert_eq!(fs::read_link(&x).unwrap(), fs::read_link(&y).unwrap());
        }
    }
}
