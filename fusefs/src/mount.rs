//! Mounting and unmounting: checks that keep edits safe, the FUSE session,
//! and commit or discard at the end.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, SessionACL};
use vnfs_store::{ObjectId, Store};

use crate::busy;
use crate::commit::{CommitSummary, MetadataEdit, commit_upper, pending};
use crate::error::{Error, IoContext, Result};
use crate::lower::Lower;
use crate::ops::Fs;
use crate::overlay::Overlay;
use crate::state::{MountState, mounted_fstype, mounted_source, process_alive};
use crate::upper::{Layout, remove_tree};

/// Chunk cache size per mount.
pub const CACHE_BYTES: usize = 256 << 20;

/// A mount to make.
#[derive(Clone, Debug)]
pub struct MountRequest {
    /// The vnfs home (store, mount records).
    pub home: PathBuf,
    /// Image name.
    pub name: String,
    /// Commit to show.
    pub commit: ObjectId,
    /// Mount point (absolute).
    pub dir: PathBuf,
    /// Read-only.
    pub read_only: bool,
    /// Request threads.
    pub threads: usize,
}

impl MountRequest {
    /// The mount's state directory.
    pub fn layout(&self) -> Layout {
        Layout::new(&self.home, &self.name)
    }
}

/// Checks an image can be mounted at `dir` and records the mount. A
/// record left by a dead server is resumed (its edits kept) when it is for
/// the same commit, or when no commit was asked for (`commit_given` false).
/// Returns the request to serve, with the commit to show.
pub fn prepare(
    store: &Store,
    home: &Path,
    spec: &str,
    dir: Option<&Path>,
    read_only: bool,
) -> Result<MountRequest> {
    let (name, mut commit) = store.resolve(spec)?;
    let name = name.ok_or_else(|| Error::BadMountPoint {
        dir: PathBuf::from(spec),
        why: "give an image name (NAME or NAME@COMMIT)".into(),
    })?;
    let layout = Layout::new(home, &name);
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/mnt").join(&name));
    if let Some(old) = MountState::load(&layout)? {
        if old.live() {
            return Err(Error::AlreadyMounted {
                name,
                dir: old.dir,
                pid: old.pid,
            });
        }
        let pending = ObjectId::from_hex(&old.commit).ok_or_else(|| Error::BadState {
            path: layout.state_file(),
            why: format!("bad commit id '{}'", old.commit),
        })?;
        if pending != commit && spec.contains('@') {
            return Err(Error::PendingEdits {
                name,
                pending: old.commit,
                asked: commit.to_hex(),
            });
        }
        if pending != commit {
            tracing::warn!(
                "resuming unsaved edits of '{name}' on commit {}",
                pending.short()
            );
        }
        commit = pending;
        // A server that died leaves its mount behind ("transport endpoint
        // is not connected"): detach it.
        detach_dead(&old.dir);
    }
    for (_, other) in crate::state::list(home)? {
        if other.name != name && other.live() && same_dir(&other.dir, &dir) {
            return Err(Error::BadMountPoint {
                dir,
                why: format!("image '{}' is mounted here", other.name),
            });
        }
    }
    detach_dead(&dir);
    check_mount_point(&dir)?;
    let dir = fs::canonicalize(&dir).at(&dir)?;
    // The mounted commit must outlive `vnfs delete` + `vnfs store gc`
    // while it is mounted or has pending edits.
    store.pin(&pin_label(&name), commit)?;
    let req = MountRequest {
        home: home.to_path_buf(),
        name: name.clone(),
        commit,
        dir: dir.clone(),
        read_only,
        threads: 4,
    };
    MountState {
        name,
        commit: commit.to_hex(),
        dir,
        pid: 0,
        read_only,
    }
    .save(&layout)?;
    Ok(req)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    fs::canonicalize(b).map_or(a == b, |b| a == b)
}

/// A mount point must be an empty directory with nothing mounted on it
/// (it is created when missing).
pub fn check_mount_point(dir: &Path) -> Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir).at(dir)?;
    }
    let md = fs::metadata(dir).at(dir)?;
    if !md.is_dir() {
        return Err(Error::BadMountPoint {
            dir: dir.into(),
            why: "not a directory".into(),
        });
    }
    if let Some(t) = mounted_fstype(dir) {
        return Err(Error::BadMountPoint {
            dir: dir.into(),
            why: format!("a {t} file system is mounted here already"),
        });
    }
    if fs::read_dir(dir).at(dir)?.next().is_some() {
        return Err(Error::BadMountPoint {
            dir: dir.into(),
            why: "directory is not empty (mount on an empty directory)".into(),
        });
    }
    Ok(())
}

/// Detaches a vnfs mount at `dir` whose server is gone. Anything else
/// mounted there (a live mount, another file system) is left alone.
fn detach_dead(dir: &Path) {
    let vnfs = mounted_source(dir)
        .is_some_and(|(t, src)| t.starts_with("fuse") && src.starts_with("vnfs:"));
    let dead = fs::metadata(dir).is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN));
    if vnfs && dead {
        detach(dir);
    }
}

fn detach(dir: &Path) {
    if let Ok(c) = crate::sys::cpath(dir) {
        // SAFETY: NUL-terminated path; MNT_DETACH has no other preconditions.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Builds the FUSE session (mounting `req.dir`), ready to run.
pub fn session(store: Arc<Store>, req: &MountRequest) -> Result<fuser::Session<Fs>> {
    let lower = Arc::new(Lower::open(store, req.commit, CACHE_BYTES)?);
    let layout = req.layout();
    let ov = Overlay::new(lower, layout.clone()).at(layout.upper())?;
    let mut options = vec![
        MountOption::FSName(format!("vnfs:{}", req.name)),
        MountOption::Subtype("vnfs".into()),
        MountOption::DefaultPermissions,
        MountOption::Dev,
        MountOption::Suid,
        MountOption::Exec,
        MountOption::NoAtime,
    ];
    options.push(if req.read_only {
        MountOption::RO
    } else {
        MountOption::RW
    });
    let mut config = Config::default();
    config.mount_options = options;
    config.acl = SessionACL::All;
    config.n_threads = Some(req.threads.max(1));
    config.clone_fd = true;
    fuser::Session::new(Fs::new(ov), &req.dir, &config)
        .map_err(|e| Error::Server(format!("mounting {}: {e}", req.dir.display())))
}

/// Mounts and serves until unmounted (the server process's main loop).
/// Records this process as the server once the mount is in place.
pub fn serve(store: Arc<Store>, req: &MountRequest) -> Result<()> {
    let session = session(store, req)?;
    let layout = req.layout();
    if let Some(mut st) = MountState::load(&layout)? {
        st.pid = std::process::id();
        st.save(&layout)?;
    }
    match session.run() {
        Err(e) if !is_session_end(&e) => Err(Error::Server(format!("{}: {e}", req.dir.display()))),
        _ => Ok(()),
    }
}

/// True for the errors a session's reader threads see when the file system
/// is unmounted: one gets ENODEV, the others may find the connection
/// already aborted (ECONNABORTED). Both mean a normal end.
pub fn is_session_end(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODEV) | Some(libc::ECONNABORTED)
    )
}

/// How an unmount ended.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Finished {
    /// Edits were committed (or there were none: `summary.id` is `None`).
    Committed {
        /// What the commit did.
        summary: CommitSummary,
    },
    /// Edits were dropped.
    Discarded,
    /// A read-only mount was removed; pending edits (if any) are kept.
    Unmounted,
}

/// Unmounts (refusing while processes use the mount, naming them) and
/// waits for the server to exit.
pub fn unmount(st: &MountState) -> Result<()> {
    if mounted_fstype(&st.dir).is_some() {
        let users = busy::users(&st.dir);
        if !users.is_empty() {
            return Err(Error::Busy {
                dir: st.dir.clone(),
                users,
            });
        }
        let c = crate::sys::cpath(&st.dir).at(&st.dir)?;
        // SAFETY: NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), 0) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EBUSY) {
                let mut users = busy::users(&st.dir);
                if users.is_empty() {
                    users.push("a process or mount below it (see `fuser -vm`)".into());
                }
                return Err(Error::Busy {
                    dir: st.dir.clone(),
                    users,
                });
            }
            return Err(err).at(&st.dir);
        }
    }
    let start = Instant::now();
    while st.pid != 0 && process_alive(st.pid) {
        if start.elapsed() > Duration::from_secs(30) {
            return Err(Error::Server(format!(
                "server {} did not exit after the unmount of {}",
                st.pid,
                st.dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// `vnfs umount`: unmount, then commit (or discard) the edits. With
/// `recover`, a dead server's edits are committed; without it a dead
/// server is an error that says so.
pub fn finish(
    store: &Store,
    home: &Path,
    name_or_dir: &str,
    message: &str,
    discard: bool,
    recover: bool,
    edit: Option<MetadataEdit<'_>>,
) -> Result<(MountState, Finished)> {
    let (layout, st) = crate::state::find(home, name_or_dir)?;
    if st.live() {
        unmount(&st)?;
    } else {
        if !recover && !discard && st.pid != 0 {
            return Err(Error::Server(format!(
                "the server of '{}' (pid {}) is not running; its edits are kept: \
                 commit them with `vnfs umount --recover {}` or drop them with --discard",
                st.name, st.pid, st.name
            )));
        }
        if mounted_fstype(&st.dir).is_some_and(|t| t.starts_with("fuse")) {
            detach(&st.dir);
        }
    }
    if discard {
        drop_state(&layout)?;
        store.unpin(&pin_label(&st.name))?;
        return Ok((st, Finished::Discarded));
    }
    let commit = ObjectId::from_hex(&st.commit).ok_or_else(|| Error::BadState {
        path: layout.state_file(),
        why: format!("bad commit id '{}'", st.commit),
    })?;
    if st.read_only {
        let p = pending(&layout)?;
        if p.changed == 0 && p.deleted == 0 {
            drop_state(&layout)?;
            store.unpin(&pin_label(&st.name))?;
        } else {
            let mut kept = st.clone();
            kept.pid = 0;
            kept.save(&layout)?;
        }
        return Ok((st, Finished::Unmounted));
    }
    let summary = commit_upper(store, &layout, &commit, &st.name, message, edit)?;
    if let Some(head) = summary.follows {
        // Edits of an older version go on top of the current head: the
        // versions in between stay in the history.
        tracing::warn!(
            "'{}' is at {}, not at the mounted {}: the new version follows {} and holds \
             {}'s files with your edits (`vnfs rollback {}` returns to {})",
            st.name,
            head.short(),
            commit.short(),
            head.short(),
            commit.short(),
            st.name,
            head.short()
        );
    }
    drop_state(&layout)?;
    store.unpin(&pin_label(&st.name))?;
    Ok((st, Finished::Committed { summary }))
}

/// The store pin that keeps a mounted commit from gc.
fn pin_label(image: &str) -> String {
    format!("mount.{image}")
}

/// Removes a mount's state: renamed away first (so a crash never leaves a
/// partial upper layer that looks like pending edits), then deleted in the
/// background. The edits are committed or discarded by then, and deleting
/// thousands of upper files can take longer than the commit itself.
fn drop_state(layout: &Layout) -> Result<()> {
    let Some(parent) = layout.dir.parent() else {
        return Ok(());
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let trash = parent.join(format!(".trash-{}-{nanos}", std::process::id()));
    fs::rename(&layout.dir, &trash).at(&layout.dir)?;
    remove_later(&trash);
    Ok(())
}

/// Deletes a dropped state directory in a detached `rm -rf`, or here when
/// that cannot start. A deletion cut short leaves a `.trash-*` directory
/// that mount listings skip.
fn remove_later(trash: &Path) {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let started = Command::new("rm")
        .arg("-rf")
        .arg("--")
        .arg(trash)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    if let Err(e) = started {
        tracing::debug!("rm -rf {}: {e}; removing it here", trash.display());
        if let Err(e) = remove_tree(trash) {
            tracing::warn!("removing {}: {e}", trash.display());
        }
    }
}
