//! Test harness: an image built from a scratch tree, mounted in-process.
//! FUSE tests fail (never skip) when /dev/fuse or root is missing.
#![allow(dead_code)]

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vnfs_fusefs::{CommitSummary, MountRequest, commit_upper, upper::Layout};
use vnfs_store::{CommitOptions, NoProgress, ObjectId, Store};

pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub store: Arc<Store>,
    pub name: String,
    pub commit: ObjectId,
    pub mnt: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

pub fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("test path without NUL")
}

fn sh(cmd: &str) {
    let ok = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .expect("sh");
    assert!(ok.success(), "{cmd}");
}

/// A small root with every entry type.
pub fn build_source(src: &Path) {
    for d in [
        "etc",
        "usr/bin",
        "usr/lib",
        "data",
        "empty",
        "full/sub",
        "dev",
        "var/lib/dpkg",
    ] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    fs::write(src.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(src.join("etc/shadow"), "root:*:1::::::\n").unwrap();
    fs::set_permissions(src.join("etc/shadow"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(src.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(src.join("usr/bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(src.join("usr/lib/big.so"), &big).unwrap();
    fs::write(src.join("data/h1"), "linked\n").unwrap();
    fs::hard_link(src.join("data/h1"), src.join("data/h2")).unwrap();
    fs::write(src.join("full/a"), "a\n").unwrap();
    fs::write(src.join("full/sub/b"), "b\n").unwrap();
    symlink("etc/passwd", src.join("link")).unwrap();
    sh(&format!(
        "mknod {0}/dev/null c 1 3 && mkfifo {0}/dev/fifo && chown 1000:1000 {0}/full/a && setfattr -n user.test -v hello {0}/etc/passwd && truncate -s 1M {0}/data/sparse && printf end >> {0}/data/sparse",
        src.display()
    ));
}

impl Fixture {
    pub fn new() -> Fixture {
        Self::with_source(build_source)
    }

    pub fn with_source(make: impl FnOnce(&Path)) -> Fixture {
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: FUSE tests cannot run"
        );
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "FUSE tests must run as root");
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let src = tmp.path().join("src");
        fs::create_dir_all(&src).unwrap();
        make(&src);
        let store = Arc::new(Store::open_or_create(&home.join("store")).unwrap());
        let opts = CommitOptions {
            name: "img".into(),
            message: "first".into(),
            timestamp: Some(1_700_000_000),
            ..Default::default()
        };
        let commit = store.commit_dir(&src, &opts, &NoProgress).unwrap().id;
        let mnt = tmp.path().join("mnt");
        let mut f = Fixture {
            tmp,
            home,
            store,
            name: "img".into(),
            commit,
            mnt,
            session: None,
        };
        f.mount();
        f
    }

    pub fn layout(&self) -> Layout {
        Layout::new(&self.home, &self.name)
    }

    pub fn mount(&mut self) {
        let req = vnfs_fusefs::prepare(&self.store, &self.home, &self.name, Some(&self.mnt), false)
            .expect("prepare");
        let req = MountRequest {
            commit: self.commit,
            ..req
        };
        let s = vnfs_fusefs::session(self.store.clone(), &req).expect("mount");
        self.session = Some(s.spawn().expect("spawn"));
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn unmount(&mut self) {
        if let Some(s) = self.session.take() {
            let c = c(&self.mnt);
            // Tests run on parallel threads: while another test forks a
            // child, the child holds copies of this test's open files until
            // it execs, so the mount can be briefly busy. Retry for a while;
            // a mount that stays busy still fails the test.
            let mut tries = 0;
            loop {
                // SAFETY: NUL-terminated path.
                let r = unsafe { libc::umount2(c.as_ptr(), 0) };
                if r == 0 {
                    break;
                }
                let e = io::Error::last_os_error();
                tries += 1;
                assert!(
                    e.raw_os_error() == Some(libc::EBUSY) && tries < 100,
                    "umount: {e} (after {tries} tries)"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if let Err(e) = s.join() {
                assert!(vnfs_fusefs::is_session_end(&e), "server thread: {e}");
            }
        }
    }

    /// Unmounts and commits; the new commit becomes the fixture's commit.
    pub fn commit(&mut self) -> CommitSummary {
        self.unmount();
        let s = commit_upper(
            &self.store,
            &self.layout(),
            &self.commit,
            &self.name,
            "test",
            None,
        )
        .expect("commit");
        fs::remove_dir_all(&self.layout().dir).unwrap();
        if let Some(id) = s.id {
            self.commit = id;
        }
        s
    }

    pub fn checkout(&self) -> PathBuf {
        let out = self.tmp.path().join(format!("co-{}", self.commit.short()));
        self.store
            .checkout(&self.commit, &out, &NoProgress)
            .expect("checkout");
        out
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.session.is_some() {
            let c = c(&self.mnt);
            // SAFETY: NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

pub fn errno<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    r.expect_err("expected an error")
        .raw_os_error()
        .expect("an errno")
}

/// A description of a tree: path → kind, mode, owner, content or target.
pub fn snapshot(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|d| d.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if m.is_dir() {
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if m.is_file() {
                let data = fs::read(&p).unwrap();
                format!(
                    "{} bytes {:x}",
                    data.len(),
                    data.iter()
                        .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(b as u64))
                )
            } else {
                format!("rdev {}", m.rdev())
            };
            out.push(format!(
                "{rel} {:o} {}:{} {what}",
                m.mode(),
                m.uid(),
                m.gid()
            ));
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// The number of nodes the server holds (`trusted.vnfs.inodes` on the root).
pub fn inode_count(mnt: &Path) -> usize {
    let p = c(mnt);
    let name = CString::new("trusted.vnfs.inodes").unwrap();
    let mut buf = [0u8; 32];
    // SAFETY: NUL-terminated strings, buffer length passed.
    let n = unsafe {
        libc::getxattr(
            p.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert!(n > 0, "getxattr: {}", io::Error::last_os_error());
    std::str::from_utf8(&buf[..n as usize])
        .unwrap()
        .parse()
        .unwrap()
}

/// Makes the kernel drop unused dentries and inodes (so it sends FORGET
/// for every node nothing holds).
pub fn drop_kernel_caches() {
    sh("sync; echo 2 > /proc/sys/vm/drop_caches");
}

/// Extended attributes of a path (not following symlinks), sorted.
pub fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let cp = c(p);
    let mut names = vec![0u8; 65536];
    // SAFETY: NUL-terminated path, buffer length passed.
    let n = unsafe { libc::llistxattr(cp.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "{}: {}", p.display(), io::Error::last_os_error());
    let mut out = Vec::new();
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
    {
        let cn = CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        // SAFETY: as above.
        let len =
            unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(len >= 0, "{}: {}", p.display(), io::Error::last_os_error());
        v.truncate(len as usize);
        out.push((String::from_utf8_lossy(name).into_owned(), v));
    }
    out.sort();
    out
}

/// `snapshot` plus each entry's mtime and extended attributes: what a
/// commit must reproduce exactly.
pub fn manifest(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = snapshot(root);
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|d| d.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            out.push(format!(
                "{rel} mtime {}.{:09} xattrs {:?}",
                m.mtime(),
                m.mtime_nsec(),
                xattrs(&p)
            ));
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}
