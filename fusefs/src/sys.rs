//! Thin wrappers over the system calls the upper layer needs, on paths,
//! never following a final symlink (the image's symlinks point into the
//! image, not the host).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Converts a path for libc, refusing interior NULs.
pub fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn cname(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check_size(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `lstat(2)`.
pub fn lstat(path: &Path) -> io::Result<libc::stat> {
    let p = cpath(path)?;
    // SAFETY: a zeroed stat is a valid out-buffer; `p` is NUL-terminated.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::lstat(p.as_ptr(), &mut st) })?;
    Ok(st)
}

/// `fstat(2)`.
pub fn fstat(fd: std::os::fd::RawFd) -> io::Result<libc::stat> {
    // SAFETY: as for lstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

/// True for an overlay-style whiteout: a character device 0:0.
pub fn is_whiteout(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// `mknod(2)` with the given type bits and permissions.
pub fn mknod(path: &Path, mode: u32, dev: u64) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: `p` is NUL-terminated.
    check(unsafe { libc::mknod(p.as_ptr(), mode, dev) })
}

/// Creates a whiteout (character device 0:0) at `path`.
pub fn make_whiteout(path: &Path) -> io::Result<()> {
    mknod(path, libc::S_IFCHR | 0o600, 0)
}

/// `lchown(2)`.
pub fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: `p` is NUL-terminated.
    check(unsafe { libc::lchown(p.as_ptr(), uid, gid) })
}

/// `chmod(2)`; never called on symlinks (whose mode Linux ignores).
pub fn chmod(path: &Path, mode: u32) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: `p` is NUL-terminated.
    check(unsafe { libc::chmod(p.as_ptr(), mode) })
}

/// A time for `utimens`: `None` leaves it, `Some(None)` means now.
pub type TimeSpec = Option<Option<(i64, u32)>>;

fn timespec(t: TimeSpec) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(None) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(Some((s, ns))) => libc::timespec {
            tv_sec: s,
            tv_nsec: i64::from(ns),
        },
    }
}

/// `utimensat(2)` without following a final symlink.
pub fn utimens(path: &Path, atime: TimeSpec, mtime: TimeSpec) -> io::Result<()> {
    let p = cpath(path)?;
    let ts = [timespec(atime), timespec(mtime)];
    // SAFETY: `p` is NUL-terminated and `ts` holds two timespecs.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// `renameat2(2)` with `RENAME_*` flags.
pub fn rename2(from: &Path, to: &Path, flags: u32) -> io::Result<()> {
    let f = cpath(from)?;
    let t = cpath(to)?;
    // SAFETY: both paths are NUL-terminated.
    check(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            flags,
        )
    })
}

/// `symlink(2)`.
pub fn symlink(target: &[u8], path: &Path) -> io::Result<()> {
    let t = cname(target)?;
    let p = cpath(path)?;
    // SAFETY: both are NUL-terminated.
    check(unsafe { libc::symlink(t.as_ptr(), p.as_ptr()) })
}

/// `readlink(2)`.
pub fn readlink(path: &Path) -> io::Result<Vec<u8>> {
    Ok(std::fs::read_link(path)?.as_os_str().as_bytes().to_vec())
}

/// `llistxattr(2)`: the names, without NULs.
pub fn list_xattrs(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let p = cpath(path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `buf` is writable for its length.
        let r = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        match check_size(r) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf
                    .split(|&b| b == 0)
                    .filter(|s| !s.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect());
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

/// `lgetxattr(2)`; `Ok(None)` when the attribute is absent.
pub fn get_xattr(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let p = cpath(path)?;
    let n = cname(name)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: `buf` is writable for its length; names are NUL-terminated.
        let r =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        match check_size(r) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(Some(buf));
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// `lsetxattr(2)` with `XATTR_CREATE`/`XATTR_REPLACE` flags.
pub fn set_xattr(path: &Path, name: &[u8], value: &[u8], flags: i32) -> io::Result<()> {
    let p = cpath(path)?;
    let n = cname(name)?;
    // SAFETY: value points to `value.len()` readable bytes.
    check(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
}

/// `lremovexattr(2)`.
pub fn remove_xattr(path: &Path, name: &[u8]) -> io::Result<()> {
    let p = cpath(path)?;
    let n = cname(name)?;
    // SAFETY: both NUL-terminated.
    check(unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) })
}

/// `statvfs(3)`.
pub fn statvfs(path: &Path) -> io::Result<libc::statvfs> {
    let p = cpath(path)?;
    // SAFETY: zeroed statvfs is a valid out-buffer.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    check(unsafe { libc::statvfs(p.as_ptr(), &mut s) })?;
    Ok(s)
}

/// `fallocate(2)`.
pub fn fallocate(fd: std::os::fd::RawFd, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on an owned descriptor.
    check(unsafe { libc::fallocate(fd, mode, offset as i64, len as i64) })
}

/// `lseek(2)` (for SEEK_DATA / SEEK_HOLE on upper files).
pub fn lseek(fd: std::os::fd::RawFd, offset: i64, whence: i32) -> io::Result<i64> {
    // SAFETY: plain syscall.
    let r = unsafe { libc::lseek(fd, offset, whence) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Linux's `new_encode_dev`, the device encoding FUSE uses for `rdev`.
pub fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// Inverse of `encode_dev`.
pub fn decode_dev(rdev: u32) -> (u32, u32) {
    (
        (rdev & 0xfff00) >> 8,
        (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
    )
}

/// Major and minor of a `dev_t`.
pub fn split_dev(dev: u64) -> (u32, u32) {
    (libc::major(dev), libc::minor(dev))
}

/// A `dev_t` from major and minor.
pub fn make_dev(major: u32, minor: u32) -> u64 {
    libc::makedev(major, minor)
}
