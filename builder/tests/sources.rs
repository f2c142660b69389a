//! `tar` and `dir` sources end to end: a root tree with device nodes,
//! hard links, extended attributes (user, file capabilities, ACLs), setuid
//! and setgid bits, built from a tarball (gzip, xz, zstd; made by GNU tar
//! `--xattrs`, as `docker export` writes them) and from a directory, with
//! steps applied on top; the commit is checked out again and compared.
//! Archive members that would leave the root are refused and nothing is
//! committed. Needs root (mknod, chown, chroot).

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use common::{host_tools, sh};
use vnfs_builder::build::{BuildError, BuildOptions, Built, build};
use vnfs_builder::progress::NoProgress;
use vnfs_builder::recipe::Recipe;
use vnfs_builder::unpack::UnpackError;

/// `security.capability` for `cap_net_raw+ep` (VFS_CAP_REVISION_2).
const CAP_NET_RAW: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn mknod(path: &Path, kind: u32, mode: u32, major: u32, minor: u32) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a plain system call on a valid path.
    let r = unsafe { libc::mknod(c.as_ptr(), kind | mode, libc::makedev(major, minor)) };
    assert_eq!(
        r,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    // Not the umask's idea of the mode.
    chmod(path, mode);
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A small root file system with every kind of entry a real one has.
fn make_source(src: &Path) {
    host_tools(src, &["sh"]);
    for d in ["etc", "dev", "srv/acl", "var/mail", "opt"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    let data = src.join("etc/data");
    std::fs::write(&data, "data\n").unwrap();
    chown(&data, 1000, 1001);
    chmod(&data, 0o640);
    xattr::set(&data, "user.vnfs", b"hello").unwrap();
    std::fs::write(src.join("etc/remove-me"), "x").unwrap();
    std::os::unix::fs::symlink("data", src.join("etc/link")).unwrap();
    // setuid after chown (chown clears it); a capability likewise.
    let suid = src.join("usr/bin/suid");
    std::fs::write(&suid, "#!/bin/sh\n").unwrap();
    chmod(&suid, 0o4755);
    let capped = src.join("usr/bin/capped");
    std::fs::write(&capped, "#!/bin/sh\n").unwrap();
    chmod(&capped, 0o755);
    xattr::set(&capped, "security.capability", &CAP_NET_RAW).unwrap();
    std::fs::write(src.join("usr/bin/a"), "linked\n").unwrap();
    std::fs::hard_link(src.join("usr/bin/a"), src.join("usr/bin/b")).unwrap();
    mknod(&src.join("dev/null"), libc::S_IFCHR, 0o666, 1, 3);
    mknod(&src.join("dev/loop9"), libc::S_IFBLK, 0o660, 7, 9);
    chown(&src.join("dev/loop9"), 0, 6);
    mknod(&src.join("srv/fifo"), libc::S_IFIFO, 0o600, 0, 0);
    chown(&src.join("var/mail"), 0, 8);
    chmod(&src.join("var/mail"), 0o2775);
    sh(Command::new("setfacl")
        .args(["-d", "-m", "u:1000:rwx"])
        .arg(src.join("srv/acl")));
    sh(Command::new("setfacl")
        .args(["-m", "u:1000:r"])
        .arg(src.join("etc/data")));
}

/// Everything `make_source` put there, and the steps' work, is in `root`.
fn check_tree(root: &Path, src: &Path) {
    let md = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
    let data = md("etc/data");
    assert_eq!(
        (data.mode() & 0o7777, data.uid(), data.gid()),
        (0o640, 1000, 1001)
    );
    assert_eq!(std::fs::read(root.join("etc/data")).unwrap(), b"data\n");
    assert_eq!(
        xattr::get(root.join("etc/data"), "user.vnfs").unwrap(),
        Some(b"hello".to_vec())
    );
    for (p, name) in [
        ("etc/data", "system.posix_acl_access"),
        ("srv/acl", "system.posix_acl_default"),
    ] {
        let want = xattr::get(src.join(p), name).unwrap();
        assert!(want.is_some());
        assert_eq!(xattr::get(root.join(p), name).unwrap(), want, "{p} {name}");
    }
    assert_eq!(
        std::fs::read_link(root.join("etc/link")).unwrap(),
        Path::new("data")
    );
    assert_eq!(md("usr/bin/suid").mode() & 0o7777, 0o4755);
    assert_eq!(
        xattr::get(root.join("usr/bin/capped"), "security.capability").unwrap(),
        Some(CAP_NET_RAW.to_vec())
    );
    let (a, b) = (md("usr/bin/a"), md("usr/bin/b"));
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "hard link kept");
    let null = md("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (null.rdev(), null.mode() & 0o7777),
        (libc::makedev(1, 3), 0o666)
    );
    let lo = md("dev/loop9");
    assert!(lo.file_type().is_block_device());
    assert_eq!((lo.rdev(), lo.gid()), (libc::makedev(7, 9), 6));
    assert!(md("srv/fifo").file_type().is_fifo());
    let mail = md("var/mail");
    assert_eq!((mail.mode() & 0o7777, mail.gid()), (0o2775, 8));
    // The steps.
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        "from a step\n"
    );
    assert_eq!(md("etc/motd").mode() & 0o7777, 0o600);
    assert!(std::fs::symlink_metadata(root.join("etc/remove-me")).is_err());
    let copied = md("opt/copied");
    assert_eq!(
        (copied.mode() & 0o7777, copied.uid(), copied.gid()),
        (0o640, 5, 6)
    );
    assert_eq!(std::fs::read_to_string(root.join("ran")).unwrap(), "ran\n");
    // `to` ending in `/`: into that directory, under the source's name.
    assert_eq!(
        std::fs::read_to_string(root.join("opt/into/host-file")).unwrap(),
        "copied\n"
    );
}

const RECIPE: &str = r#"
[image]
os = "test"
version = "1"
release = "1"
arch = "x86_64"
name = "NAME"

[source.KIND]
path = "PATH"

[[step]]
write = "/etc/motd"
content = "from a step\n"
mode = "0600"

[[step]]
remove = ["/etc/remove-me"]

[[step]]
copy = "host-file"
to = "/opt/copied"
mode = "0640"
owner = 5
group = 6

[[step]]
copy = "host-file"
to = "/opt/into/"

[[step]]
run = "echo ran > /ran"
"#;

fn recipe(dir: &Path, name: &str, kind: &str, path: &str) -> Recipe {
    std::fs::write(dir.join("host-file"), "copied\n").unwrap();
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        RECIPE
            .replace("NAME", name)
            .replace("KIND", kind)
            .replace("PATH", path),
    )
    .unwrap();
    Recipe::load(&p).unwrap()
}

fn build_in(home: &Path, r: &Recipe, out: Option<PathBuf>) -> Result<Built, BuildError> {
    let mut opts = BuildOptions::new(home);
    opts.output_dir = out;
    build(r, &opts, &NoProgress, &AtomicBool::new(false))
}

/// Checks the committed tree out again and checks it too.
fn check_commit(home: &Path, built: &Built, src: &Path, out: &Path) {
    let store = vnfs_store::Store::open(&home.join("store")).unwrap();
    let (_, id) = store.resolve(&built.name).unwrap();
    assert_eq!(Some(id), built.commit);
    store.checkout(&id, out, &vnfs_store::NoProgress).unwrap();
    check_tree(out, src);
}

#[test]
fn tar_sources_keep_everything_and_apply_steps() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_source(&src);
    let plain = t.path().join("root.tar");
    sh(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&plain)
        .arg("."));
    let raw = std::fs::read(&plain).unwrap();
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&raw).unwrap();
    let compressed = [
        ("gz", gz.finish().unwrap()),
        ("xz", xz.finish().unwrap()),
        ("zst", zstd::encode_all(&raw[..], 3).unwrap()),
    ];
    let home = t.path().join("home");
    let mut ids = Vec::new();
    for (ext, bytes) in compressed {
        let file = format!("root.tar.{ext}");
        std::fs::write(t.path().join(&file), bytes).unwrap();
        // Same mtime for every tarball: the timestamp comes from it.
        sh(Command::new("touch")
            .args(["-d", "@1700000000"])
            .arg(t.path().join(&file)));
        let r = recipe(t.path(), &format!("tar-{ext}"), "tar", &file);
        let out = t.path().join(format!("out-{ext}"));
        let built = build_in(&home, &r, Some(out.clone())).unwrap();
        check_tree(&out, &src);
        check_commit(&home, &built, &src, &t.path().join(format!("co-{ext}")));
        ids.push(built.commit.unwrap());
    }
    // The same tree, whatever the compression: the same root tree object.
    let store = vnfs_store::Store::open(&home.join("store")).unwrap();
    let trees: Vec<_> = ids
        .iter()
        .map(|id| store.read_commit(id).unwrap().tree())
        .collect();
    assert!(trees.windows(2).all(|w| w[0] == w[1]), "{trees:?}");
}

#[test]
fn dir_source_keeps_everything_and_applies_steps() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_source(&src);
    let home = t.path().join("home");
    let r = recipe(t.path(), "dir", "dir", "src");
    // Glob characters in the build directory's own path: the remove step
    // still finds its file.
    let out = t.path().join("out[1]*");
    let built = build_in(&home, &r, Some(out.clone())).unwrap();
    check_tree(&out, &src);
    check_commit(&home, &built, &src, &t.path().join("co"));
    // The source itself is untouched by the steps.
    assert!(src.join("etc/remove-me").exists());
    assert!(!src.join("ran").exists());

    // A killed build's temporary root (its owner.lock unlocked) goes at
    // the next build; a running build's (locked) and one without a lock
    // file stay.
    let tmp = home.join("tmp");
    let (orphan, running, other) = (
        tmp.join("build-x1"),
        tmp.join("build-x2"),
        tmp.join("build-x3"),
    );
    for d in [&orphan, &running, &other] {
        std::fs::create_dir_all(d.join("root/etc")).unwrap();
        std::fs::write(d.join("root/etc/f"), "x").unwrap();
    }
    std::fs::write(orphan.join("owner.lock"), "").unwrap();
    std::fs::write(running.join("owner.lock"), "").unwrap();
    let held = std::fs::File::open(running.join("owner.lock")).unwrap();
    held.lock().unwrap();
    build_in(&home, &r, None).unwrap();
    assert!(!orphan.exists());
    assert!(running.exists() && other.exists());
    drop(held);

    // A dir source that is not there, or not a directory: said so.
    for (path, says) in [
        ("nosuch", "does not exist"),
        ("host-file", "not a directory"),
    ] {
        let r = recipe(t.path(), "missing", "dir", path);
        let e = build_in(&home, &r, None).unwrap_err().to_string();
        assert!(e.contains(path) && e.contains(says), "{e}");
    }
}

/// A raw tar member (the tar crate refuses to write `..` names itself).
fn raw_member(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, link: &str) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(if kind == tar::EntryType::Regular {
        4
    } else {
        0
    });
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    let data: &[u8] = if kind == tar::EntryType::Regular {
        b"evil"
    } else {
        b""
    };
    b.append(&h, data).unwrap();
}

#[test]
fn members_escaping_the_root_are_refused() {
    let t = tempfile::tempdir().unwrap();
    type Members<'a> = &'a [(&'a str, tar::EntryType, &'a str)];
    let cases: [(&str, Members<'_>); 2] = [
        (
            "../escaped",
            &[
                ("./etc/", tar::EntryType::Directory, ""),
                ("../escaped", tar::EntryType::Regular, ""),
            ],
        ),
        (
            "../../etc/shadow",
            &[
                ("./etc/", tar::EntryType::Directory, ""),
                ("./etc/shadow", tar::EntryType::Link, "../../etc/shadow"),
            ],
        ),
    ];
    for (i, (bad, members)) in cases.iter().enumerate() {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link) in members.iter() {
            raw_member(&mut b, name, *kind, link);
        }
        let tarball = t.path().join(format!("bad{i}.tar"));
        std::fs::write(&tarball, b.into_inner().unwrap()).unwrap();
        let home = t.path().join(format!("home{i}"));
        let r = recipe(t.path(), &format!("bad{i}"), "tar", &format!("bad{i}.tar"));
        let e = build_in(&home, &r, None).unwrap_err();
        assert!(
            matches!(e, BuildError::Unpack(UnpackError::Escape { .. })),
            "{e}"
        );
        assert!(e.to_string().contains(bad), "{e}");
        assert!(e.to_string().contains("escapes the root"), "{e}");
        assert!(!home.join("store").exists(), "nothing committed");
        let left: Vec<_> = std::fs::read_dir(home.join("tmp")).unwrap().collect();
        assert!(left.is_empty(), "temporary root removed");
    }
    assert!(!t.path().join("escaped").exists());
    assert!(!Path::new("/tmp/escaped").exists());

    // Absolute names and paths through in-image symlinks stay inside.
    let mut b = tar::Builder::new(Vec::new());
    raw_member(&mut b, "./etc/", tar::EntryType::Directory, "");
    raw_member(&mut b, "/etc/absolute", tar::EntryType::Regular, "");
    raw_member(&mut b, "./up", tar::EntryType::Symlink, "/");
    raw_member(&mut b, "./up/etc/through", tar::EntryType::Regular, "");
    std::fs::write(t.path().join("inside.tar"), b.into_inner().unwrap()).unwrap();
    let r = recipe(t.path(), "inside", "tar", "inside.tar");
    let out = t.path().join("inside-out");
    let e = build_in(&t.path().join("home-inside"), &r, Some(out.clone()));
    // The steps fail (no shell in this image), but the unpacked tree is
    // kept in the output directory for inspection.
    assert!(matches!(e, Err(BuildError::Step(_))), "{e:?}");
    assert_eq!(std::fs::read(out.join("etc/absolute")).unwrap(), b"evil");
    assert_eq!(std::fs::read(out.join("etc/through")).unwrap(), b"evil");
    assert!(!Path::new("/etc/through").exists());

    // A file that is no tar archive at all.
    std::fs::write(t.path().join("notes.tar"), "just some text\n".repeat(100)).unwrap();
    let r = recipe(t.path(), "notes", "tar", "notes.tar");
    let e = build_in(&t.path().join("home-notes"), &r, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("notes.tar") && e.contains("not a tar archive"),
        "{e}"
    );

    // A symlink to a host directory the image lacks, then a file through
    // it: refused, saying why.
    let mut b = tar::Builder::new(Vec::new());
    raw_member(
        &mut b,
        "./out",
        tar::EntryType::Symlink,
        "/no-such-dir-vnfs",
    );
    raw_member(&mut b, "./out/pwned", tar::EntryType::Regular, "");
    std::fs::write(t.path().join("dangling.tar"), b.into_inner().unwrap()).unwrap();
    let r = recipe(t.path(), "dangling", "tar", "dangling.tar");
    let e = build_in(&t.path().join("home-dangling"), &r, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("out/pwned"), "{e}");
    assert!(e.contains("leads nowhere inside the image"), "{e}");
}

#[test]
fn a_run_step_in_a_root_without_a_shell_says_so() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("bare/etc")).unwrap();
    let r = common::small_recipe(
        t.path(),
        "bare",
        "[source.dir]\npath = \"bare\"\n[[step]]\nrun = \"true\"\n",
    );
    let e = build_in(&t.path().join("home"), &r, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot execute /bin/sh in the image"), "{e}");
}
