//! The `fuser::Filesystem` implementation: decodes requests, calls the
//! overlay, and does file data I/O outside the namespace lock so reads on
//! several threads proceed in parallel.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileHandle, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};

use crate::inode::file_type;
use crate::lower::FileData;
use crate::overlay::{Caller, NewKind, Opened, Overlay, R, errno};
use crate::sys;

/// Read on the mount's root, the number of nodes in the inode table: how
/// many entries the server holds in memory (see `overlay::forget`).
pub const INODES_XATTR: &[u8] = b"trusted.vnfs.inodes";

enum Handle {
    Lower(Arc<FileData>),
    Upper(File),
    /// Opened for writing, content still in the store: the upper file is
    /// filled in and opened on the first write.
    Pending {
        ino: u64,
        flags: i32,
        data: Arc<FileData>,
        file: OnceLock<File>,
    },
    Dir(Mutex<Vec<(Vec<u8>, u64, u32)>>),
}

impl Handle {
    fn of(o: Opened, ino: u64, flags: i32) -> Handle {
        match o {
            Opened::Lower(d) => Handle::Lower(d),
            Opened::Upper(f) => Handle::Upper(f),
            Opened::Pending(data) => Handle::Pending {
                ino,
                flags,
                data,
                file: OnceLock::new(),
            },
        }
    }
}

/// The mounted file system.
pub struct Fs {
    ov: Overlay,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
}

fn e(code: i32) -> Errno {
    Errno::from_i32(code)
}

fn name(n: &OsStr) -> &[u8] {
    n.as_bytes()
}

fn time_spec(t: Option<TimeOrNow>) -> sys::TimeSpec {
    t.map(|t| match t {
        TimeOrNow::Now => None,
        TimeOrNow::SpecificTime(st) => Some(match st.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let (s, ns) = (d.as_secs() as i64, d.subsec_nanos());
                if ns == 0 {
                    (-s, 0)
                } else {
                    (-s - 1, 1_000_000_000 - ns)
                }
            }
        }),
    })
}

impl Fs {
    /// Serves `ov`.
    pub fn new(ov: Overlay) -> Fs {
        Fs {
            ov,
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    fn add(&self, h: Handle) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(fh, Arc::new(h));
        FileHandle(fh)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Handle>>> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handle(&self, fh: FileHandle) -> Option<Arc<Handle>> {
        self.lock().get(&fh.0).cloned()
    }

    fn upper_file(&self, fh: Option<FileHandle>) -> Option<Arc<Handle>> {
        fh.and_then(|f| self.handle(f)).filter(|h| {
            matches!(**h, Handle::Upper(_))
                || matches!(&**h, Handle::Pending { file, .. } if file.get().is_some())
        })
    }

    /// The upper file to write through: a `Pending` handle's is filled in
    /// and opened now (once; a racing thread's copy is dropped).
    fn writable<'h>(&self, h: &'h Handle) -> R<&'h File> {
        match h {
            Handle::Upper(f) => Ok(f),
            Handle::Pending {
                ino, flags, file, ..
            } => {
                if file.get().is_none() {
                    let f = self.ov.materialize(*ino, *flags)?;
                    let _ = file.set(f);
                }
                file.get().ok_or(libc::EIO)
            }
            _ => Err(libc::EBADF),
        }
    }

    fn entry(&self, r: R<(fuser::FileAttr, std::time::Duration)>, reply: ReplyEntry) {
        match r {
            Ok((attr, ttl)) => reply.entry(&ttl, &attr, Generation(0)),
            Err(c) => reply.error(e(c)),
        }
    }

    fn made(&self, r: R<(fuser::FileAttr, std::time::Duration, Option<File>)>, reply: ReplyEntry) {
        self.entry(r.map(|(a, t, _)| (a, t)), reply)
    }
}

fn read_upper(f: &File, offset: u64, size: u32, reply: ReplyData) {
    let mut buf = vec![0u8; size as usize];
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return reply.error(e(errno(&err))),
        }
    }
    reply.data(&buf[..got])
}

fn as_file(h: &Option<Arc<Handle>>) -> Option<&File> {
    match h.as_deref() {
        Some(Handle::Upper(f)) => Some(f),
        Some(Handle::Pending { file, .. }) => file.get(),
        _ => None,
    }
}

impl fuser::Filesystem for Fs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // O_TRUNC in open (no separate truncate of a copied-up file),
        // readdirplus for fewer lookups, and larger requests.
        for flag in [
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_MAX_PAGES,
        ] {
            let _ = config.add_capabilities(flag);
        }
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        self.entry(self.ov.lookup(parent.0, name(n)), reply)
    }

    // fuser's batch_forget calls this once per inode.
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.ov.forget(ino.0, nlookup)
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let h = self.upper_file(fh);
        match self.ov.getattr(ino.0, as_file(&h)) {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(c) => reply.error(e(c)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let h = self.upper_file(fh);
        match self.ov.setattr(
            ino.0,
            mode,
            uid,
            gid,
            size,
            time_spec(atime),
            time_spec(mtime),
            as_file(&h),
        ) {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(c) => reply.error(e(c)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.ov.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(c) => reply.error(e(c)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let who = Caller {
            uid: req.uid(),
            gid: req.gid(),
        };
        let kind = if mode & libc::S_IFMT == libc::S_IFREG || mode & libc::S_IFMT == 0 {
            NewKind::File(mode)
        } else {
            NewKind::Special(mode, rdev)
        };
        self.made(self.ov.create(parent.0, name(n), kind, who), reply)
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let who = Caller {
            uid: req.uid(),
            gid: req.gid(),
        };
        self.made(
            self.ov.create(parent.0, name(n), NewKind::Dir(mode), who),
            reply,
        )
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        match self.ov.unlink(parent.0, name(n)) {
            Ok(()) => reply.ok(),
            Err(c) => reply.error(e(c)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        match self.ov.rmdir(parent.0, name(n)) {
            Ok(()) => reply.ok(),
            Err(c) => reply.error(e(c)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let who = Caller {
            uid: req.uid(),
            gid: req.gid(),
        };
        let t = target.as_os_str().as_bytes();
        self.made(
            self.ov
                .create(parent.0, name(link_name), NewKind::Symlink(t), who),
            reply,
        )
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        n: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self
            .ov
            .rename(parent.0, name(n), newparent.0, name(newname), flags.bits())
        {
            Ok(()) => reply.ok(),
            Err(c) => reply.error(e(c)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.entry(self.ov.link(ino.0, newparent.0, name(newname)), reply)
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.ov.open(ino.0, flags.0) {
            // Store content never changes: the kernel may keep its pages.
            Ok(o @ Opened::Lower(_)) => reply.opened(
                self.add(Handle::of(o, ino.0, flags.0)),
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Ok(o) => reply.opened(self.add(Handle::of(o, ino.0, flags.0)), FopenFlags::empty()),
            Err(c) => reply.error(e(c)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let who = Caller {
            uid: req.uid(),
            gid: req.gid(),
        };
        match self.ov.create(parent.0, name(n), NewKind::File(mode), who) {
            Ok((attr, ttl, Some(f))) => {
                let fh = self.add(Handle::Upper(f));
                reply.created(&ttl, &attr, Generation(0), fh, FopenFlags::empty())
            }
            Ok(_) => reply.error(e(libc::EIO)),
            Err(libc::EEXIST) if flags & libc::O_EXCL == 0 => {
                // Lost a race with another creator: open what is there.
                let r = self.ov.lookup(parent.0, name(n)).and_then(|(attr, ttl)| {
                    self.ov
                        .open(attr.ino.0, flags)
                        .map(|o| (attr, ttl, o))
                        .inspect_err(|_| {
                            // The entry is not sent: give its count back.
                            self.ov.forget(attr.ino.0, 1)
                        })
                });
                match r {
                    Ok((attr, ttl, o)) => {
                        let h = Handle::of(o, attr.ino.0, flags);
                        reply.created(&ttl, &attr, Generation(0), self.add(h), FopenFlags::empty())
                    }
                    Err(c) => reply.error(e(c)),
                }
            }
            Err(c) => reply.error(e(c)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(h) = self.handle(fh) else {
            return reply.error(e(libc::EBADF));
        };
        let lower =
            |d: &FileData, reply: ReplyData| match self.ov.lower.read(d, offset, size as usize) {
                Ok(buf) => reply.data(&buf),
                Err(err) => {
                    tracing::error!("read failed: {err}");
                    reply.error(e(libc::EIO))
                }
            };
        match &*h {
            Handle::Lower(d) => lower(d, reply),
            Handle::Upper(f) => read_upper(f, offset, size, reply),
            Handle::Pending {
                ino, data, file, ..
            } => {
                if let Some(f) = file.get() {
                    return read_upper(f, offset, size, reply);
                }
                if self.ov.filled(*ino) {
                    // Another handle wrote: read what it wrote.
                    return match self.writable(&h) {
                        Ok(f) => read_upper(f, offset, size, reply),
                        Err(c) => reply.error(e(c)),
                    };
                }
                lower(data, reply)
            }
            Handle::Dir(_) => reply.error(e(libc::EISDIR)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(h) = self.handle(fh) else {
            return reply.error(e(libc::EBADF));
        };
        match self.writable(&h) {
            Ok(f) => match f.write_all_at(data, offset) {
                Ok(()) => reply.written(data.len() as u32),
                Err(err) => reply.error(e(errno(&err))),
            },
            Err(c) => reply.error(e(c)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().remove(&fh.0);
        reply.ok()
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let h = self.handle(fh);
        let r = match as_file(&h) {
            Some(f) if datasync => f.sync_data(),
            Some(f) => f.sync_all(),
            None => Ok(()),
        };
        match r {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(errno(&err))),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.ov.list(ino.0) {
            Ok(l) => reply.opened(self.add(Handle::Dir(Mutex::new(l))), FopenFlags::empty()),
            Err(c) => reply.error(e(c)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(h) = self.handle(fh) else {
            return reply.error(e(libc::EBADF));
        };
        let Handle::Dir(list) = &*h else {
            return reply.error(e(libc::ENOTDIR));
        };
        let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
        if offset == 0 {
            // rewinddir: see what changed since opendir.
            match self.ov.list(ino.0) {
                Ok(l) => *list = l,
                Err(c) => return reply.error(e(c)),
            }
        }
        for (i, (n, child, ft)) in list.iter().enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(*child),
                i as u64 + 1,
                file_type(*ft),
                OsStr::from_bytes(n),
            ) {
                break;
            }
        }
        reply.ok()
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let Some(h) = self.handle(fh) else {
            return reply.error(e(libc::EBADF));
        };
        let Handle::Dir(list) = &*h else {
            return reply.error(e(libc::ENOTDIR));
        };
        let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
        if offset == 0 {
            match self.ov.list(ino.0) {
                Ok(l) => *list = l,
                Err(c) => return reply.error(e(c)),
            }
        }
        let rest: Vec<_> = list
            .iter()
            .enumerate()
            .skip(offset as usize)
            .take(256)
            .collect();
        let names: Vec<&[u8]> = rest.iter().map(|(_, (n, _, _))| n.as_slice()).collect();
        let attrs = self.ov.lookup_listed(ino.0, &names);
        // Every entry but `.` and `..` came back counted; the ones that do
        // not fit in the reply are given back.
        let mut unsent = Vec::new();
        let mut full = false;
        for ((i, (n, _, _)), a) in rest.iter().zip(attrs) {
            let Ok((attr, ttl)) = a else { continue };
            let dot = n.as_slice() == b"." || n.as_slice() == b"..";
            if !full {
                full = reply.add(
                    attr.ino,
                    *i as u64 + 1,
                    OsStr::from_bytes(n),
                    &ttl,
                    &attr,
                    Generation(0),
                );
            }
            if full && !dot {
                unsent.push((attr.ino.0, 1));
            }
        }
        self.ov.forget_many(&unsent);
        reply.ok()
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.lock().remove(&fh.0);
        reply.ok()
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match sys::statvfs(&self.ov.layout.upper()) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                crate::overlay::NAME_MAX as u32,
                s.f_frsize as u32,
            ),
            Err(err) => reply.error(e(errno(&err))),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        n: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        match self.ov.setxattr(ino.0, name(n), value, flags) {
            Ok(()) => reply.ok(),
            Err(c) => reply.error(e(c)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, size: u32, reply: ReplyXattr) {
        let r = if ino.0 == crate::overlay::ROOT && name(n) == INODES_XATTR {
            // The kernel lets only CAP_SYS_ADMIN read trusted.* names.
            Ok(self.ov.node_count().to_string().into_bytes())
        } else {
            self.ov.getxattr(ino.0, name(n))
        };
        match r {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(e(libc::ERANGE)),
            Ok(v) => reply.data(&v),
            Err(c) => reply.error(e(c)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.ov.listxattr(ino.0) {
            Ok(names) => {
                let mut buf = Vec::new();
                for n in names {
                    buf.extend_from_slice(&n);
                    buf.push(0);
                }
                if size == 0 {
                    reply.size(buf.len() as u32)
                } else if buf.len() > size as usize {
                    reply.error(e(libc::ERANGE))
                } else {
                    reply.data(&buf)
                }
            }
            Err(c) => reply.error(e(c)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        match self.ov.removexattr(ino.0, name(n)) {
            Ok(()) => reply.ok(),
            Err(c) => reply.error(e(c)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel has checked already.
        reply.ok()
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let Some(h) = self.handle(fh) else {
            return reply.error(e(libc::EBADF));
        };
        match self.writable(&h) {
            Ok(f) => match sys::fallocate(f.as_raw_fd(), mode, offset, length) {
                Ok(()) => reply.ok(),
                Err(err) => reply.error(e(errno(&err))),
            },
            Err(c) => reply.error(e(c)),
        }
    }
}
