//! Special destinations for the tests of how `vnfs export` and
//! `vnfs image` write their output: FIFOs, a private null device, a small
//! tmpfs that fills up, symlinks, and a run interrupted by SIGINT.
//! Included by the capsule and image CLI tests, each of which uses part
//! of it.
#![allow(dead_code)]

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Creates a FIFO.
pub fn mkfifo(p: &Path) {
    // SAFETY: a valid NUL-terminated path.
    let r = unsafe { libc::mkfifo(c_path(p).as_ptr(), 0o600) };
    assert_eq!(
        r,
        0,
        "mkfifo {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// Creates a character device equal to /dev/null (1:3). Needs root (CI
/// runs as root): fails loudly otherwise.
pub fn mknod_null(p: &Path) {
    // SAFETY: a valid NUL-terminated path.
    let r = unsafe {
        libc::mknod(
            c_path(p).as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(1, 3),
        )
    };
    assert_eq!(
        r,
        0,
        "mknod {} (this test needs root): {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// Whether `p` is (still) a character device.
pub fn is_char_device(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device())
}

/// Whether `p` is (still) a FIFO.
pub fn is_fifo(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_fifo())
}

/// Names in `dir`, sorted (to check that no temporary file is left).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Reads a FIFO to its end on another thread (the writer's open blocks
/// until a reader comes).
pub fn read_fifo(p: &Path) -> std::thread::JoinHandle<Vec<u8>> {
    let p = p.to_path_buf();
    std::thread::spawn(move || fs::read(&p).unwrap())
}

/// A tmpfs of `kib` KiB mounted on a new directory; unmounted when
/// dropped. Needs root: fails loudly otherwise.
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts it at `dir` (created).
    pub fn mount(dir: &Path, kib: u32) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k,mode=0755")])
            .arg("tmpfs")
            .arg(dir)
            .status()
            .expect("running mount");
        assert!(
            st.success(),
            "mounting a tmpfs on {} (this test needs root)",
            dir.display()
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Starts `vnfs ARGS` with its home, its output piped.
pub fn spawn(home: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vnfs"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("VNFS_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until a hidden temporary file other than those in `ignore` shows
/// up in `dir` (the run has begun writing) and returns its name and mode;
/// panics if the run ends first or nothing shows up within a minute.
pub fn wait_for_temp(child: &mut Child, dir: &Path, ignore: &[String]) -> (String, u32) {
    let start = Instant::now();
    loop {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.')
                && !ignore.contains(&name)
                && let Ok(m) = e.metadata()
            {
                return (name, m.permissions().mode() & 0o7777);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it wrote a temporary file");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no temporary file appeared in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends SIGINT to the child and collects its output.
pub fn interrupt(child: Child) -> Output {
    // SAFETY: signalling the process the test created.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    child.wait_with_output().unwrap()
}

/// The inode number of `p` (to tell a replaced file from a rewritten one).
pub fn ino(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}
