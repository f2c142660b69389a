//! POSIX behaviour of the mount: every operation `vnfs mount` promises,
//! with its error cases, then what the commit records.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt, symlink};
use std::process::Command;

use common::{Fixture, c, drop_kernel_caches, errno, inode_count, snapshot};
use libc::{
    EACCES, EEXIST, EISDIR, ELOOP, ENAMETOOLONG, ENODATA, ENOENT, ENOTDIR, ENOTEMPTY, EPERM, EXDEV,
};

fn rename2(a: &std::path::Path, b: &std::path::Path, flags: u32) -> std::io::Result<()> {
    let (a, b) = (c(a), c(b));
    // SAFETY: NUL-terminated paths.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn lower_entries_read_as_committed() {
    let f = Fixture::new();
    assert_eq!(
        fs::read_to_string(f.p("etc/passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    let m = fs::metadata(f.p("usr/bin/tool")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(
        fs::metadata(f.p("etc/shadow")).unwrap().mode() & 0o777,
        0o640
    );
    assert_eq!(
        fs::read_link(f.p("link")).unwrap().to_str(),
        Some("etc/passwd")
    );
    let null = fs::symlink_metadata(f.p("dev/null")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &null.file_type()
    ));
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::symlink_metadata(f.p("dev/fifo")).unwrap().file_type()
    ));
    let (h1, h2) = (
        fs::metadata(f.p("data/h1")).unwrap(),
        fs::metadata(f.p("data/h2")).unwrap(),
    );
    assert_eq!(h1.ino(), h2.ino(), "lower hard links are one inode");
    assert_eq!(h1.nlink(), 2);
    assert_eq!(fs::metadata(f.p("full/a")).unwrap().uid(), 1000);
    let sparse = fs::read(f.p("data/sparse")).unwrap();
    assert_eq!(sparse.len(), (1 << 20) + 3);
    assert!(sparse[..1 << 20].iter().all(|&b| b == 0));
    assert_eq!(
        xattr_get(&f.p("etc/passwd"), "user.test").unwrap(),
        b"hello"
    );
    let big = fs::read(f.p("usr/lib/big.so")).unwrap();
    assert_eq!(big.len(), 3_000_000);
    assert_eq!(
        big[2_999_999],
        (2_999_999u32.wrapping_mul(2654435761) >> 13) as u8
    );
    assert_eq!(errno(fs::metadata(f.p("nope"))), ENOENT);
    assert_eq!(errno(fs::metadata(f.p("etc/passwd/x"))), ENOTDIR);
    let names: Vec<String> = fs::read_dir(f.p("full"))
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    let st = statvfs(&f.mnt);
    assert!(st.f_blocks > 0 && st.f_namemax == 255);
}

fn statvfs(p: &std::path::Path) -> libc::statvfs {
    let cp = c(p);
    // SAFETY: zeroed out-buffer, NUL-terminated path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(cp.as_ptr(), &mut s) }, 0);
    s
}

fn xattr_get(p: &std::path::Path, name: &str) -> std::io::Result<Vec<u8>> {
    let out = Command::new("getfattr")
        .args(["--only-values", "-h", "-n", name])
        .arg(p)
        .output()?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(std::io::Error::from_raw_os_error(ENODATA))
    }
}

#[test]
fn create_write_truncate_append_excl() {
    let mut f = Fixture::new();
    let p = f.p("etc/new");
    fs::write(&p, "one\n").unwrap();
    let mut a = OpenOptions::new().append(true).open(&p).unwrap();
    a.write_all(b"two\n").unwrap();
    drop(a);
    assert_eq!(fs::read_to_string(&p).unwrap(), "one\ntwo\n");
    assert_eq!(
        errno(OpenOptions::new().write(true).create_new(true).open(&p)),
        EEXIST
    );
    // O_TRUNC of a lower file: copied up empty.
    let mut t = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(f.p("etc/passwd"))
        .unwrap();
    t.write_all(b"x\n").unwrap();
    drop(t);
    assert_eq!(fs::read_to_string(f.p("etc/passwd")).unwrap(), "x\n");
    assert_eq!(
        xattr_get(&f.p("etc/passwd"), "user.test").unwrap(),
        b"hello",
        "xattrs copied up"
    );
    // Partial write into the middle of a lower file keeps the rest.
    let w = OpenOptions::new()
        .write(true)
        .open(f.p("usr/lib/big.so"))
        .unwrap();
    w.write_all_at(b"PATCH", 1_000_000).unwrap();
    drop(w);
    let big = fs::read(f.p("usr/lib/big.so")).unwrap();
    assert_eq!(&big[1_000_000..1_000_005], b"PATCH");
    assert_eq!(big.len(), 3_000_000);
    // truncate(2) both ways.
    let tf = OpenOptions::new().write(true).open(f.p("full/a")).unwrap();
    tf.set_len(10).unwrap();
    assert_eq!(fs::read(f.p("full/a")).unwrap(), b"a\n\0\0\0\0\0\0\0\0");
    tf.set_len(1).unwrap();
    drop(tf);
    assert_eq!(fs::read(f.p("full/a")).unwrap(), b"a");
    assert_eq!(
        fs::metadata(f.p("full/a")).unwrap().uid(),
        1000,
        "owner kept by copy-up"
    );
    assert_eq!(
        fs::metadata(f.p("usr/bin/tool")).unwrap().mode() & 0o7777,
        0o4755
    );
    // fallocate grows the file.
    let fa = OpenOptions::new().write(true).open(f.p("etc/new")).unwrap();
    // SAFETY: valid descriptor.
    assert_eq!(
        unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&fa), 0, 0, 8192) },
        0
    );
    drop(fa);
    assert_eq!(fs::metadata(f.p("etc/new")).unwrap().len(), 8192);
    // Read/seek through one handle after writing.
    let mut rw = OpenOptions::new()
        .read(true)
        .write(true)
        .open(f.p("data/sparse"))
        .unwrap();
    rw.seek(SeekFrom::End(-3)).unwrap();
    let mut end = String::new();
    rw.read_to_string(&mut end).unwrap();
    assert_eq!(end, "end");
    drop(rw);
    let s = f.commit();
    assert!(s.id.is_some());
    let co = f.checkout();
    assert_eq!(fs::read_to_string(co.join("etc/passwd")).unwrap(), "x\n");
    assert_eq!(
        &fs::read(co.join("usr/lib/big.so")).unwrap()[1_000_000..1_000_005],
        b"PATCH"
    );
    assert_eq!(
        fs::metadata(co.join("usr/bin/tool")).unwrap().mode() & 0o7777,
        0o4755
    );
}

#[test]
fn unlink_rmdir_and_their_errors() {
    let mut f = Fixture::new();
    assert_eq!(errno(fs::remove_file(f.p("nope"))), ENOENT);
    assert_eq!(errno(fs::remove_file(f.p("full"))), EISDIR);
    assert_eq!(errno(fs::remove_dir(f.p("full"))), ENOTEMPTY);
    assert_eq!(errno(fs::remove_dir(f.p("etc/passwd"))), ENOTDIR);
    fs::remove_file(f.p("full/a")).unwrap();
    fs::remove_file(f.p("full/sub/b")).unwrap();
    fs::remove_dir(f.p("full/sub")).unwrap();
    fs::remove_dir(f.p("full")).unwrap();
    fs::remove_dir(f.p("empty")).unwrap();
    assert_eq!(errno(fs::metadata(f.p("full"))), ENOENT);
    // Recreate a deleted name: the old content must not show through.
    fs::create_dir(f.p("full")).unwrap();
    assert_eq!(fs::read_dir(f.p("full")).unwrap().count(), 0);
    fs::remove_file(f.p("data/h1")).unwrap();
    assert_eq!(fs::read_to_string(f.p("data/h2")).unwrap(), "linked\n");
    assert_eq!(fs::metadata(f.p("data/h2")).unwrap().nlink(), 1);
    // Unlinked but open: still readable.
    let mut open = File::open(f.p("etc/shadow")).unwrap();
    fs::remove_file(f.p("etc/shadow")).unwrap();
    let mut s = String::new();
    open.read_to_string(&mut s).unwrap();
    assert!(s.starts_with("root:"));
    drop(open);
    f.commit();
    let co = f.checkout();
    assert!(!co.join("etc/shadow").exists());
    assert!(!co.join("data/h1").exists());
    assert_eq!(fs::read_dir(co.join("full")).unwrap().count(), 0);
    assert!(!co.join("empty").exists());
}

#[test]
fn renames_with_flags_and_errors() {
    let mut f = Fixture::new();
    // Over an existing file (the dpkg pattern).
    fs::write(f.p("etc/passwd.new"), "new\n").unwrap();
    fs::rename(f.p("etc/passwd.new"), f.p("etc/passwd")).unwrap();
    assert_eq!(fs::read_to_string(f.p("etc/passwd")).unwrap(), "new\n");
    assert_eq!(errno(fs::metadata(f.p("etc/passwd.new"))), ENOENT);
    // A lower directory with content moves with it.
    fs::rename(f.p("full"), f.p("moved")).unwrap();
    assert_eq!(fs::read_to_string(f.p("moved/sub/b")).unwrap(), "b\n");
    assert_eq!(errno(fs::metadata(f.p("full"))), ENOENT);
    // Errors.
    assert_eq!(errno(fs::rename(f.p("nope"), f.p("x"))), ENOENT);
    assert_eq!(errno(fs::rename(f.p("moved"), f.p("etc/passwd"))), ENOTDIR);
    assert_eq!(errno(fs::rename(f.p("etc/passwd"), f.p("empty"))), EISDIR);
    assert_eq!(errno(fs::rename(f.p("empty"), f.p("moved"))), ENOTEMPTY);
    fs::create_dir(f.p("empty2")).unwrap();
    fs::rename(f.p("empty2"), f.p("empty")).unwrap();
    assert_eq!(
        errno(rename2(
            &f.p("etc/passwd"),
            &f.p("link"),
            libc::RENAME_NOREPLACE
        )),
        EEXIST
    );
    rename2(
        &f.p("usr/bin/tool"),
        &f.p("usr/bin/tool2"),
        libc::RENAME_NOREPLACE,
    )
    .unwrap();
    rename2(&f.p("etc/passwd"), &f.p("moved/a"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read_to_string(f.p("etc/passwd")).unwrap(), "a\n");
    assert_eq!(fs::read_to_string(f.p("moved/a")).unwrap(), "new\n");
    rename2(&f.p("moved"), &f.p("usr"), libc::RENAME_EXCHANGE).unwrap();
    assert!(f.p("usr/sub/b").exists() && f.p("moved/bin/tool2").exists());
    assert_eq!(
        errno(fs::rename(f.p("usr"), f.p("usr/sub/x"))),
        libc::EINVAL
    );
    let outside = f.tmp.path().join("outside");
    assert_eq!(errno(fs::rename(f.p("etc/passwd"), &outside)), EXDEV);
    assert_eq!(errno(fs::hard_link(f.p("etc/passwd"), &outside)), EXDEV);
    let view = snapshot(&f.mnt);
    f.commit();
    assert_eq!(
        snapshot(&f.checkout()),
        view,
        "commit equals the mount view"
    );
}

#[test]
fn links_symlinks_nodes_attrs_xattrs() {
    let mut f = Fixture::new();
    // Hard links.
    fs::hard_link(f.p("etc/passwd"), f.p("etc/passwd.link")).unwrap();
    assert_eq!(fs::metadata(f.p("etc/passwd")).unwrap().nlink(), 2);
    assert_eq!(
        errno(fs::hard_link(f.p("etc/passwd"), f.p("etc/shadow"))),
        EEXIST
    );
    assert_eq!(errno(fs::hard_link(f.p("full"), f.p("full2"))), EPERM);
    // A write through one lower link shows through the other.
    fs::write(f.p("data/h2"), "changed\n").unwrap();
    assert_eq!(fs::read_to_string(f.p("data/h1")).unwrap(), "changed\n");
    assert_eq!(
        fs::metadata(f.p("data/h1")).unwrap().ino(),
        fs::metadata(f.p("data/h2")).unwrap().ino()
    );
    // Symlinks and loops.
    symlink("b", f.p("loop_a")).unwrap();
    symlink("loop_a", f.p("b")).unwrap();
    assert_eq!(errno(File::open(f.p("loop_a"))), ELOOP);
    assert_eq!(
        errno(
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(f.p("link"))
        ),
        ELOOP
    );
    assert_eq!(errno(symlink("x", f.p("link"))), EEXIST);
    // Devices and FIFOs.
    let st = Command::new("sh").arg("-c").arg(format!(
        "mknod {0}/dev/zero c 1 5 && mknod {0}/dev/sda b 8 0 && mkfifo {0}/dev/p2 && head -c 4 {0}/dev/zero | wc -c",
        f.mnt.display()
    )).output().unwrap();
    assert!(st.status.success(), "{st:?}");
    assert_eq!(
        String::from_utf8_lossy(&st.stdout).trim(),
        "4",
        "device opened through the mount"
    );
    assert_eq!(
        fs::symlink_metadata(f.p("dev/sda")).unwrap().rdev(),
        libc::makedev(8, 0)
    );
    // chmod, chown, utimens.
    fs::set_permissions(f.p("etc/shadow"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(f.p("data/sparse"), Some(42), Some(43)).unwrap();
    std::os::unix::fs::lchown(f.p("link"), Some(7), Some(8)).unwrap();
    let t = File::options().write(true).open(f.p("empty")).err();
    assert!(t.is_some());
    Command::new("touch")
        .args(["-h", "-d", "2001-02-03 04:05:06Z"])
        .arg(f.p("link"))
        .status()
        .unwrap();
    Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06Z"])
        .arg(f.p("empty"))
        .status()
        .unwrap();
    assert_eq!(fs::metadata(f.p("empty")).unwrap().mtime(), 981173106);
    assert_eq!(fs::symlink_metadata(f.p("link")).unwrap().uid(), 7);
    // xattrs.
    let set = |p: &str, n: &str, v: &str| {
        Command::new("setfattr")
            .args(["-n", n, "-v", v])
            .arg(f.p(p))
            .status()
            .unwrap()
            .success()
    };
    assert!(set("usr/lib/big.so", "user.k", "v1"));
    assert!(set(
        "usr/lib/big.so",
        "security.capability",
        "0sAQAAAgAgAAAAAAAAAAAAAAAAAAA="
    ));
    assert_eq!(xattr_get(&f.p("usr/lib/big.so"), "user.k").unwrap(), b"v1");
    assert!(
        Command::new("setfattr")
            .args(["-x", "user.test"])
            .arg(f.p("etc/passwd"))
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(errno(xattr_get(&f.p("etc/passwd"), "user.test")), ENODATA);
    assert!(
        !Command::new("setfattr")
            .args(["-x", "user.none"])
            .arg(f.p("etc/passwd"))
            .status()
            .unwrap()
            .success()
    );
    let list = Command::new("getfattr")
        .args(["-d", "-m", "-"])
        .arg(f.p("usr/lib/big.so"))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("user.k") && !list.contains("vnfs"), "{list}");
    // Names too long.
    let long = "x".repeat(256);
    assert_eq!(errno(File::create(f.p(&long))), ENAMETOOLONG);
    assert_eq!(errno(fs::create_dir(f.p(&long))), ENAMETOOLONG);
    assert_eq!(errno(fs::metadata(f.p(&long))), ENAMETOOLONG);
    File::create(f.p(&"y".repeat(255))).unwrap();
    let view = snapshot(&f.mnt);
    f.commit();
    let co = f.checkout();
    assert_eq!(snapshot(&co), view, "commit equals the mount view");
    assert_eq!(
        fs::metadata(co.join("data/h1")).unwrap().ino(),
        fs::metadata(co.join("data/h2")).unwrap().ino()
    );
    assert_eq!(
        fs::metadata(co.join("etc/passwd")).unwrap().ino(),
        fs::metadata(co.join("etc/passwd.link")).unwrap().ino()
    );
    assert_eq!(
        xattr_get(&co.join("usr/lib/big.so"), "user.k").unwrap(),
        b"v1"
    );
}

#[test]
fn permissions_for_a_non_root_user() {
    let mut f = Fixture::new();
    fs::set_permissions(&f.mnt, fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(f.p("open")).unwrap();
    fs::set_permissions(f.p("open"), fs::Permissions::from_mode(0o1777)).unwrap();
    let run = |cmd: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir("/")
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    use std::os::unix::process::CommandExt;
    let m = f.mnt.display();
    let (ok, err) = run(&format!("cat {m}/etc/shadow"));
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let (ok, err) = run(&format!("echo x > {m}/etc/passwd"));
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let (ok, err) = run(&format!("touch {m}/etc/newfile"));
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let (ok, err) = run(&format!(
        "echo mine > {m}/open/f && cat {m}/open/f && cat {m}/etc/passwd"
    ));
    assert!(ok, "{err}");
    assert_eq!(
        fs::metadata(f.p("open/f")).unwrap().uid(),
        65534,
        "new files belong to the caller"
    );
    // Sticky directory: another user's file cannot be removed.
    fs::write(f.p("open/roots"), "r").unwrap();
    let (ok, err) = run(&format!("rm -f {m}/open/roots"));
    assert!(!ok, "{err}");
    // The errno itself: a non-root opener gets EACCES.
    let (ok, err) = run(&format!(
        "python3 -c 'open(\"{m}/etc/shadow\")' 2>&1 || perl -e 'open(F, \"<{m}/etc/shadow\") or die \"errno=\" . ($!+0)'"
    ));
    assert!(
        !ok && (err.contains(&format!("errno={EACCES}")) || err.contains("Permission denied")),
        "{err}"
    );
    f.commit();
}

#[test]
fn shared_writable_mmap() {
    let mut f = Fixture::new();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(f.p("usr/lib/big.so"))
        .unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: mapping 8 KiB of a 3 MB file we hold open; unmapped below.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        let s = std::slice::from_raw_parts_mut(p as *mut u8, 8192);
        s[..4].copy_from_slice(b"MMAP");
        assert_eq!(libc::msync(p, 8192, libc::MS_SYNC), 0);
        libc::munmap(p, 8192);
    }
    drop(file);
    // Read-only mapping of a lower file.
    let ro = File::open(f.p("etc/shadow")).unwrap();
    // SAFETY: as above, read-only.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            std::os::fd::AsRawFd::as_raw_fd(&ro),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        assert_eq!(std::slice::from_raw_parts(p as *const u8, 5), b"root:");
        libc::munmap(p, 4096);
    }
    drop(ro);
    f.commit();
    assert_eq!(
        &fs::read(f.checkout().join("usr/lib/big.so")).unwrap()[..4],
        b"MMAP"
    );
}

#[test]
fn commit_rechunks_only_changes_and_keeps_subtrees() {
    let mut f = Fixture::new();
    let before = f.store.read_commit(&f.commit).unwrap();
    fs::write(f.p("etc/hostname"), "node\n").unwrap();
    let s = f.commit();
    assert_eq!(s.files, 1, "one file re-chunked");
    let id = s.id.unwrap();
    let after = f.store.read_commit(&id).unwrap();
    assert_eq!(after.parents, vec![before_id(&f, &before)]);
    let d = f.store.diff(&after.parents[0], &id).unwrap();
    let paths: Vec<String> = d.entries.iter().map(|e| e.path.clone()).collect();
    assert!(
        paths.iter().any(|p| p.ends_with("etc/hostname")),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .all(|p| p == "/" || p.trim_start_matches('/').starts_with("etc")),
        "{paths:?}"
    );
    let t0 = f.store.read_tree(&before.tree()).unwrap();
    let t1 = f.store.read_tree(&after.tree()).unwrap();
    let usr = |t: &vnfs_store::Tree| {
        t.entries
            .iter()
            .find(|e| e.name == b"usr")
            .unwrap()
            .kind
            .clone()
    };
    assert_eq!(usr(&t0), usr(&t1), "unchanged subtree keeps its tree id");
    // No edits: no new version.
    f.mount();
    let _ = fs::read(f.p("etc/hostname")).unwrap();
    assert!(f.commit().id.is_none());
    let report = f.store.fsck(&vnfs_store::NoProgress).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

fn before_id(f: &Fixture, _c: &vnfs_store::Commit) -> vnfs_store::ObjectId {
    f.store.read_commit(&f.commit).unwrap().parents[0]
}

#[test]
fn crash_leaves_edits_that_the_next_mount_resumes() {
    let mut f = Fixture::new();
    fs::write(f.p("etc/pending"), "kept\n").unwrap();
    fs::remove_file(f.p("full/a")).unwrap();
    // The server goes away without a commit.
    f.unmount();
    f.mount();
    assert_eq!(fs::read_to_string(f.p("etc/pending")).unwrap(), "kept\n");
    assert_eq!(errno(fs::metadata(f.p("full/a"))), ENOENT);
    let s = f.commit();
    assert!(s.id.is_some());
    let co = f.checkout();
    assert!(co.join("etc/pending").exists() && !co.join("full/a").exists());
}

#[test]
fn corrupt_chunk_reads_as_eio() {
    let f = Fixture::with_source(|src| {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<u8> = (0..4_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        fs::write(src.join("blob"), data).unwrap();
    });
    // Damage the middle of every pack (chunk data dominates them).
    for e in walkdir(&f.home.join("store/packs")) {
        if e.extension().is_some_and(|x| x == "pack") && fs::metadata(&e).unwrap().len() > 1 << 20 {
            let file = OpenOptions::new().read(true).write(true).open(&e).unwrap();
            let len = file.metadata().unwrap().len();
            let mut b = [0u8; 64];
            file.read_exact_at(&mut b, len / 2).unwrap();
            for x in &mut b {
                *x ^= 0xff;
            }
            file.write_all_at(&b, len / 2).unwrap();
        }
    }
    let mut buf = Vec::new();
    let r = File::open(f.p("blob")).unwrap().read_to_end(&mut buf);
    assert_eq!(errno(r), libc::EIO);
}

fn walkdir(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walkdir(&e));
        } else {
            out.push(e);
        }
    }
    out
}

/// Stats every entry under `p`; returns how many.
fn stat_all(p: &std::path::Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        let m = fs::symlink_metadata(&e).unwrap();
        n += 1;
        if m.is_dir() {
            n += stat_all(&e);
        }
    }
    n
}

/// Waits until the server holds at most `max` nodes; returns the count.
fn shrinks_to(mnt: &std::path::Path, max: usize) -> usize {
    let start = std::time::Instant::now();
    loop {
        drop_kernel_caches();
        let n = inode_count(mnt);
        if n <= max || start.elapsed() > std::time::Duration::from_secs(10) {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The node count once the kernel has forgotten what it can (two equal
/// readings in a row).
fn settled_count(mnt: &std::path::Path) -> usize {
    let mut last = usize::MAX;
    for _ in 0..50 {
        drop_kernel_caches();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let n = inode_count(mnt);
        if n == last {
            return n;
        }
        last = n;
    }
    last
}

#[test]
fn forgotten_nodes_are_freed_and_come_back_the_same() {
    let mut f = Fixture::with_source(|src| {
        common::build_source(src);
        for d in 0..40 {
            let dir = src.join(format!("tree/d{d}"));
            fs::create_dir_all(&dir).unwrap();
            for i in 0..50 {
                fs::write(dir.join(format!("f{i}")), format!("{d}/{i}\n")).unwrap();
            }
        }
    });
    let base = inode_count(&f.mnt);
    // Edits whose nodes must stay right after being freed: an upper file,
    // a metadata-only copy, a deletion, a renamed directory.
    fs::write(f.p("tree/d1/new"), "new\n").unwrap();
    fs::set_permissions(f.p("tree/d2/f3"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(f.p("tree/d3/f4")).unwrap();
    fs::rename(f.p("tree/d5"), f.p("tree/d5-moved")).unwrap();
    // Held by this process: an open lower file, an open unlinked file.
    let held = File::open(f.p("tree/d7/f7")).unwrap();
    let mut gone = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(f.p("tree/d8/tmp"))
        .unwrap();
    gone.write_all(b"still here").unwrap();
    fs::remove_file(f.p("tree/d8/tmp")).unwrap();

    let mut peaks = Vec::new();
    for _round in 0..3 {
        let seen = stat_all(&f.mnt);
        assert!(seen > 2000, "{seen}");
        let peak = inode_count(&f.mnt);
        assert!(peak > 2000, "every entry visited has a node: {peak}");
        peaks.push(peak);
        let after = shrinks_to(&f.mnt, base + 60);
        eprintln!("walk: {seen} entries, {peak} nodes; after the kernel forgot: {after}");
        assert!(
            after <= base + 60,
            "nodes freed after the kernel forgot them: {peak} -> {after} (base {base})"
        );
    }
    assert!(
        peaks[2] <= peaks[0] + 10,
        "walking again does not grow the table: {peaks:?}"
    );
    // Everything reads back the same after its node was freed.
    assert_eq!(fs::read_to_string(f.p("tree/d1/new")).unwrap(), "new\n");
    assert_eq!(fs::read_to_string(f.p("tree/d9/f9")).unwrap(), "9/9\n");
    assert_eq!(
        fs::metadata(f.p("tree/d2/f3")).unwrap().mode() & 0o777,
        0o600
    );
    assert_eq!(fs::read_to_string(f.p("tree/d2/f3")).unwrap(), "2/3\n");
    assert_eq!(errno(fs::metadata(f.p("tree/d3/f4"))), ENOENT);
    assert_eq!(errno(fs::metadata(f.p("tree/d5"))), ENOENT);
    assert_eq!(fs::read_dir(f.p("tree/d5-moved")).unwrap().count(), 50);
    assert_eq!(fs::read_dir(f.p("tree/d3")).unwrap().count(), 49);
    assert_eq!(fs::read_dir(f.p("tree/d1")).unwrap().count(), 51);
    let mut s = String::new();
    (&held).read_to_string(&mut s).unwrap();
    assert_eq!(s, "7/7\n");
    let mut back = String::new();
    gone.seek(SeekFrom::Start(0)).unwrap();
    gone.read_to_string(&mut back).unwrap();
    assert_eq!(back, "still here");
    assert_eq!(gone.metadata().unwrap().len(), 10);
    // Hard links stay one inode across forgets.
    let (h1, h2) = (
        fs::metadata(f.p("data/h1")).unwrap(),
        fs::metadata(f.p("data/h2")).unwrap(),
    );
    assert_eq!(h1.ino(), h2.ino());
    drop((held, gone));
    let view = snapshot(&f.mnt);
    f.commit();
    assert_eq!(
        snapshot(&f.checkout()),
        view,
        "commit equals the mount view"
    );
}

/// Bytes the upper layer really stores for a path (allocated blocks).
fn upper_blocks(f: &Fixture, rel: &str) -> (u64, u64) {
    let m = fs::symlink_metadata(f.layout().upper().join(rel)).unwrap();
    (m.len(), m.blocks() * 512)
}

fn entry(f: &Fixture, path: &str) -> vnfs_store::Entry {
    let commit = f.store.read_commit(&f.commit).unwrap();
    let mut cur = commit.root;
    for comp in path.split('/') {
        let vnfs_store::EntryKind::Dir { tree } = cur.kind else {
            panic!("{path}: not a directory on the way");
        };
        let t = f.store.read_tree(&tree).unwrap();
        cur = t
            .entries
            .iter()
            .find(|e| e.name == comp.as_bytes())
            .unwrap_or_else(|| panic!("{path} missing"))
            .clone();
    }
    cur
}

#[test]
fn metadata_changes_copy_no_data_and_commit_reuses_the_chunks() {
    let mut f = Fixture::new();
    let big = "usr/lib/big.so";
    let before = entry(&f, big);
    let sparse_before = entry(&f, "data/sparse");
    let content = fs::read(f.p(big)).unwrap();
    // chmod, chown, utimens, setxattr, removexattr on lower files; a rename
    // and a hard link of others.
    fs::set_permissions(f.p(big), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(f.p(big), Some(5), Some(6)).unwrap();
    assert!(
        Command::new("touch")
            .args(["-d", "2001-02-03 04:05:06Z"])
            .arg(f.p(big))
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("setfattr")
            .args(["-n", "user.k", "-v", "v"])
            .arg(f.p(big))
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("setfattr")
            .args(["-x", "user.test"])
            .arg(f.p("etc/passwd"))
            .status()
            .unwrap()
            .success()
    );
    fs::rename(f.p("data/sparse"), f.p("etc/sparse")).unwrap();
    fs::hard_link(f.p("etc/shadow"), f.p("etc/shadow.link")).unwrap();
    fs::set_permissions(f.p("data/h1"), fs::Permissions::from_mode(0o700)).unwrap();

    // The upper layer holds sizes, not data.
    let (size, stored) = upper_blocks(&f, big);
    assert_eq!(size, 3_000_000);
    assert!(
        stored <= 8192,
        "no data copied up: {stored} bytes allocated"
    );
    let (size, stored) = upper_blocks(&f, "etc/sparse");
    assert_eq!(size, (1 << 20) + 3);
    assert!(stored <= 8192, "{stored}");
    assert_eq!(vnfs_fusefs::pending(&f.layout()).unwrap().bytes, 0);
    // The view is right.
    let m = fs::metadata(f.p(big)).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()),
        (0o600, 5, 6, 981173106)
    );
    assert!(
        m.blocks() * 512 >= 3_000_000,
        "blocks of the content: {}",
        m.blocks()
    );
    assert_eq!(fs::read(f.p(big)).unwrap(), content);
    assert_eq!(xattr_get(&f.p(big), "user.k").unwrap(), b"v");
    assert_eq!(errno(xattr_get(&f.p("etc/passwd"), "user.test")), ENODATA);
    assert_eq!(fs::read(f.p("etc/sparse")).unwrap().len(), (1 << 20) + 3);
    assert_eq!(fs::metadata(f.p("etc/shadow.link")).unwrap().nlink(), 2);
    assert_eq!(
        fs::metadata(f.p("data/h2")).unwrap().mode() & 0o777,
        0o700,
        "a lower hard link's other name shares the new metadata"
    );
    // They survive a server restart (crash) as metadata-only copies.
    f.unmount();
    f.mount();
    assert_eq!(fs::read(f.p(big)).unwrap(), content);
    assert_eq!(fs::metadata(f.p(big)).unwrap().mode() & 0o7777, 0o600);

    let view = snapshot(&f.mnt);
    let s = f.commit();
    assert_eq!(s.files, 0, "nothing re-chunked: {s:?}");
    assert!(s.metadata_only >= 5, "{s:?}");
    let after = entry(&f, big);
    assert_eq!(after.kind, before.kind, "same chunk list");
    assert_eq!(
        (
            after.meta.mode,
            after.meta.uid,
            after.meta.gid,
            after.meta.mtime
        ),
        (0o600, 5, 6, 981173106)
    );
    assert!(
        after
            .meta
            .xattrs
            .iter()
            .any(|(k, v)| k == b"user.k" && v == b"v")
    );
    assert_eq!(
        entry(&f, "etc/sparse").kind,
        sparse_before.kind,
        "renamed, same chunks"
    );
    let co = f.checkout();
    assert_eq!(snapshot(&co), view, "commit equals the mount view");
    assert_eq!(
        fs::metadata(co.join("data/h1")).unwrap().ino(),
        fs::metadata(co.join("data/h2")).unwrap().ino()
    );

    // The first write copies the content up, keeping the new metadata.
    f.mount();
    fs::set_permissions(f.p(big), fs::Permissions::from_mode(0o640)).unwrap();
    let w = OpenOptions::new().write(true).open(f.p(big)).unwrap();
    w.write_all_at(b"XY", 10).unwrap();
    drop(w);
    let mut want = content.clone();
    want[10..12].copy_from_slice(b"XY");
    assert_eq!(fs::read(f.p(big)).unwrap(), want);
    let m = fs::metadata(f.p(big)).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o640, 5));
    assert_eq!(xattr_get(&f.p(big), "user.k").unwrap(), b"v");
    let (_, stored) = upper_blocks(&f, big);
    assert!(stored >= 3_000_000, "content copied up: {stored}");
    // A truncate of a metadata-only copy keeps the head.
    fs::set_permissions(f.p("etc/passwd"), fs::Permissions::from_mode(0o600)).unwrap();
    OpenOptions::new()
        .write(true)
        .open(f.p("etc/passwd"))
        .unwrap()
        .set_len(4)
        .unwrap();
    assert_eq!(fs::read_to_string(f.p("etc/passwd")).unwrap(), "root");
    let s = f.commit();
    assert_eq!(s.files, 2, "{s:?}");
    assert_eq!(fs::read(f.checkout().join(big)).unwrap(), want);
    let report = f.store.fsck(&vnfs_store::NoProgress).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn open_unlinked_and_hard_linked_files_are_kept_then_freed() {
    let f = Fixture::new();
    fs::create_dir(f.p("t")).unwrap();
    let base = settled_count(&f.mnt);
    // useradd's lock dance, with the file still open at the end.
    let mut held = Vec::new();
    for i in 0..20 {
        let (a, b) = (f.p(&format!("t/a{i}")), f.p(&format!("t/b{i}")));
        fs::write(&a, format!("file {i}")).unwrap();
        fs::hard_link(&a, &b).unwrap();
        assert_eq!(fs::metadata(&a).unwrap().nlink(), 2);
        let h = OpenOptions::new().read(true).write(true).open(&b).unwrap();
        fs::remove_file(&a).unwrap();
        fs::remove_file(&b).unwrap();
        held.push(h);
    }
    for (i, h) in held.iter_mut().enumerate() {
        let m = h.metadata().unwrap();
        assert_eq!((m.len(), m.nlink()), (format!("file {i}").len() as u64, 0));
        h.write_all_at(b"X", 0).unwrap();
        let mut s = String::new();
        h.seek(SeekFrom::Start(0)).unwrap();
        h.read_to_string(&mut s).unwrap();
        assert_eq!(s, format!("Xile {i}"));
        fs::set_permissions(
            format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&*h)),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert_eq!(h.metadata().unwrap().mode() & 0o777, 0o600);
    }
    let orphans = || fs::read_dir(f.layout().work()).unwrap().count();
    assert_eq!(orphans(), 20, "kept under work/ while open");
    drop(held);
    let after = shrinks_to(&f.mnt, base);
    assert!(after <= base, "nodes freed after close: {after} > {base}");
    assert_eq!(orphans(), 0, "orphans removed with their nodes");
    assert_eq!(fs::read_dir(f.p("t")).unwrap().count(), 0);
    // Upper inode numbers get reused: new links must not meet old nodes.
    for i in 0..20 {
        let (c, d) = (f.p(&format!("t/c{i}")), f.p(&format!("t/d{i}")));
        fs::write(&c, format!("new {i}")).unwrap();
        fs::hard_link(&c, &d).unwrap();
    }
    drop_kernel_caches();
    for i in 0..20 {
        assert_eq!(
            fs::read_to_string(f.p(&format!("t/d{i}"))).unwrap(),
            format!("new {i}")
        );
        assert_eq!(
            fs::metadata(f.p(&format!("t/c{i}"))).unwrap().ino(),
            fs::metadata(f.p(&format!("t/d{i}"))).unwrap().ino()
        );
    }
}
