//! Test helpers: build trees with every kind of entry, compare two trees
//! exactly (content, type, mode, owner, mtime, xattrs, devices, hard-link
//! structure, holes).

#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Fails loudly unless running as root: these tests exist to check owners,
/// devices and privileged xattrs, so skipping would hide regressions.
pub fn require_root() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (owners, device nodes, trusted.* and security.* xattrs); run the suite as root"
    );
}

/// Lists every path under `root` (relative, sorted, root excluded).
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

/// Describes one entry's metadata for comparison.
fn describe(p: &Path, md: &fs::Metadata, with_mtime: bool) -> String {
    format!(
        "type={:o} mode={:o} uid={} gid={} size={} rdev={} mtime={} xattrs={:?}",
        md.mode() & libc::S_IFMT,
        md.mode() & 0o7777,
        md.uid(),
        md.gid(),
        if md.is_dir() { 0 } else { md.size() },
        md.rdev(),
        if with_mtime {
            format!("{}.{:09}", md.mtime(), md.mtime_nsec())
        } else {
            "-".into()
        },
        xattrs(p)
    )
}

/// Asserts that two trees are identical in everything the store keeps.
/// Skips `skip` (relative paths present only in `a`, e.g. sockets).
pub fn assert_same_tree(a: &Path, b: &Path, skip: &[&str]) {
    let pa: Vec<PathBuf> = walk(a)
        .into_iter()
        .filter(|p| !skip.iter().any(|s| p == Path::new(s)))
        .collect();
    let pb = walk(b);
    assert_eq!(pa, pb, "different path lists");
    let root_a = fs::symlink_metadata(a).unwrap();
    let root_b = fs::symlink_metadata(b).unwrap();
    assert_eq!(
        describe(a, &root_a, true),
        describe(b, &root_b, true),
        "root differs"
    );
    let mut links_a: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut links_b: HashMap<(u64, u64), PathBuf> = HashMap::new();
    // Names each source inode has inside the tree: a link from outside it
    // (e.g. perf's build-id cache linking /usr/bin/bash) is not the tree's.
    let mut names_a: HashMap<(u64, u64), u64> = HashMap::new();
    for rel in &pa {
        let m = fs::symlink_metadata(a.join(rel)).unwrap();
        if m.is_file() {
            *names_a.entry((m.dev(), m.ino())).or_default() += 1;
        }
    }
    for rel in &pa {
        let (x, y) = (a.join(rel), b.join(rel));
        let (mx, my) = (
            fs::symlink_metadata(&x).unwrap(),
            fs::symlink_metadata(&y).unwrap(),
        );
        assert_eq!(
            describe(&x, &mx, true),
            describe(&y, &my, true),
            "metadata of {}",
            rel.display()
        );
        if mx.is_file() {
            let in_tree = names_a[&(mx.dev(), mx.ino())];
            assert_eq!(in_tree, my.nlink(), "link count of {}", rel.display());
            if in_tree > 1 {
                let fa = links_a
                    .entry((mx.dev(), mx.ino()))
                    .or_insert(rel.clone())
                    .clone();
                let fb = links_b
                    .entry((my.dev(), my.ino()))
                    .or_insert(rel.clone())
                    .clone();
                assert_eq!(fa, fb, "hard-link group of {}", rel.display());
            }
            if mx.blocks() * 512 < mx.size() / 2 {
                assert!(
                    my.blocks() * 512 < my.size() / 2,
                    "{} lost its holes",
                    rel.display()
                );
            }
            assert!(same_content(&x, &y), "content of {}", rel.display());
        } else if mx.file_type().is_symlink() {
            assert_eq!(fs::read_link(&x).unwrap(), fs::read_link(&y).unwrap());
        }
    }
}

fn same_content(x: &Path, y: &Path) -> bool {
    use std::io::Read;
    let (mut fx, mut fy) = (fs::File::open(x).unwrap(), fs::File::open(y).unwrap());
    let (mut bx, mut by) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let nx = read_full(&mut fx, &mut bx);
        let ny = read_full(&mut fy, &mut by);
        if nx != ny || bx[..nx] != by[..ny] {
            return false;
        }
        if nx == 0 {
            return true;
        }
    }
    fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]).unwrap() {
                0 => break,
                k => n += k,
            }
        }
        n
    }
}

/// The workspace's shared test data that does not compress.
#[path = "../../../tests/support/noise.rs"]
mod shared_noise;
pub use shared_noise::noise;

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

/// Builds a tree with every entry type and metadata item the store keeps.
/// Returns the relative paths that must NOT survive (sockets).
pub fn build_full_tree(root: &Path) -> Vec<&'static str> {
    fs::create_dir_all(root.join("dir/sub")).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("small"), b"hello\n").unwrap();
    fs::write(root.join("dir/big"), noise(3 << 20, 7)).unwrap();
    // Sparse and larger than 4 GiB: data at both ends, a hole between.
    let f = fs::File::create(root.join("sparse")).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(&noise(100_000, 3), 5 << 30).unwrap();
    f.set_len((5u64 << 30) + 200_000).unwrap();
    drop(f);
    // Hard links across directories.
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
        "null",
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::makedev(1, 3),
    );
    mk(
        "loop0",
        rustix::fs::FileType::BlockDevice,
        rustix::fs::makedev(7, 0),
    );
    mk("fifo", rustix::fs::FileType::Fifo, 0);
    let _sock = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    std::mem::forget(_sock);
    // Modes, owners.
    fs::set_permissions(root.join("small"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(root.join("dir/sub"), fs::Permissions::from_mode(0o2750)).unwrap();
    std::os::unix::fs::lchown(root.join("dir/big"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(root.join("sym"), Some(42), Some(43)).unwrap();
    std::os::unix::fs::lchown(root.join("dir/sub"), Some(7), Some(8)).unwrap();
    // Xattrs of every namespace.
    xattr::set(root.join("small"), "user.note", b"a note").unwrap();
    xattr::set(root.join("small"), "trusted.t", b"\x00\x01binary").unwrap();
    // A valid VFS_CAP_REVISION_2 value: cap_net_raw+ep.
    let cap: [u8; 20] = [
        0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    xattr::set(root.join("dir/big"), "security.capability", &cap).unwrap();
    let acl = std::process::Command::new("setfacl")
        .args(["-m", "u:1000:rwx", "-m", "d:g:100:rx"])
        .arg(root.join("dir"))
        .status()
        .expect("setfacl (package acl) must be installed");
    assert!(acl.success());
    // Names that are not UTF-8 or contain a newline.
    fs::write(root.join(OsStr::from_bytes(b"bad\xffname")), b"x").unwrap();
    fs::write(root.join("new\nline"), b"y").unwrap();
    // Nanosecond mtimes everywhere, directories last.
    for (i, rel) in walk(root).iter().rev().enumerate() {
        set_mtime(
            &root.join(rel),
            1_600_000_000 + i as i64,
            123_456_789 + i as i64,
        );
    }
    set_mtime(root, 1_500_000_000, 1);
    vec!["sock"]
}
