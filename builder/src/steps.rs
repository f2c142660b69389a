//! Recipe steps applied to a built root: remove globs, copy host files in,
//! write inline files, run shell commands in the image, enable systemd
//! units. Paths inside the image are resolved inside the root.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::chroot::{Chroot, ChrootError};
use crate::recipe::Step;
use crate::unpack::Root;

/// A step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Filesystem error.
    #[error("step {index}: {path}: {message}")]
    Io {
        /// 1-based step number.
        index: usize,
        /// The path involved.
        path: String,
        /// What failed.
        message: String,
    },
    /// A command in the image failed. The failure names the step and
    /// carries the command's output, so it is the message; it is not also
    /// a source, which would print the output twice.
    #[error("{failure}")]
    Run {
        /// 1-based step number.
        index: usize,
        /// The failure, with the command's output.
        failure: ChrootError,
    },
}

/// Applies `steps` in order. `recipe_dir` anchors relative host paths.
pub fn apply(
    root_path: &Path,
    steps: &[Step],
    recipe_dir: &Path,
    chroot: &Chroot,
) -> Result<(), StepError> {
    let root = Root::open(root_path).map_err(|e| StepError::Io {
        index: 0,
        path: root_path.display().to_string(),
        message: e.to_string(),
    })?;
    for (i, step) in steps.iter().enumerate() {
        let index = i + 1;
        let io = |path: &str, message: String| StepError::Io {
            index,
            path: path.to_string(),
            message,
        };
        match step {
            Step::Remove(globs) => {
                let canon_root = std::fs::canonicalize(root_path)
                    .map_err(|e| io(&root_path.display().to_string(), e.to_string()))?;
                for g in globs {
                    // The root's own path is matched literally: a build
                    // directory named `out[1]` must not turn into a class.
                    let pattern = format!(
                        "{}{}",
                        glob::Pattern::escape(&root_path.display().to_string()),
                        g
                    );
                    let paths = glob::glob(&pattern).map_err(|e| io(g, e.to_string()))?;
                    let mut matched = false;
                    for p in paths {
                        let p = p.map_err(|e| io(g, e.to_string()))?;
                        remove_inside(&canon_root, &p)
                            .map_err(|m| io(&p.display().to_string(), m))?;
                        matched = true;
                    }
                    if !matched {
                        // Not an error (removing what is absent is done),
                        // but a misspelt path would otherwise go unseen.
                        tracing::warn!("step {index} (remove): {g} matches nothing in the image");
                    }
                }
            }
            Step::Write {
                path,
                content,
                mode,
                owner,
                group,
            } => write_inside(&root, path, content.as_bytes(), *mode, *owner, *group)
                .map_err(|m| io(path, m))?,
            Step::Copy {
                from,
                to,
                mode,
                owner,
                group,
            } => {
                let src = if from.is_absolute() {
                    from.clone()
                } else {
                    recipe_dir.join(from)
                };
                copy_in(&root, &src, to, *mode, *owner, *group)
                    .map_err(|m| io(&format!("{} -> {to}", src.display()), m))?;
            }
            Step::Run { command, network } => {
                let out = chroot
                    .shell(&format!("step {index} (run)"), command, *network)
                    .map_err(|failure| StepError::Run { index, failure })?;
                if !out.is_empty() {
                    tracing::info!("step {index} output:\n{out}");
                }
            }
            Step::Enable(units) => {
                let mut argv = vec!["systemctl", "enable"];
                argv.extend(units.iter().map(String::as_str));
                chroot
                    .run(
                        &format!("step {index} (systemctl enable)"),
                        &argv,
                        &[],
                        None,
                        false,
                    )
                    .map_err(|failure| StepError::Run { index, failure })?;
            }
        }
    }
    Ok(())
}

/// Removes `p` if its parent resolves inside `root` (a glob may have
/// walked through a symlink pointing out of the image).
fn remove_inside(root: &Path, p: &Path) -> Result<(), String> {
    let parent = p.parent().ok_or("no parent")?;
    let canon = std::fs::canonicalize(parent).map_err(|e| e.to_string())?;
    if !canon.starts_with(root) {
        return Err(format!("resolves outside the image ({})", canon.display()));
    }
    let m = std::fs::symlink_metadata(p).map_err(|e| e.to_string())?;
    if m.is_dir() {
        std::fs::remove_dir_all(p).map_err(|e| e.to_string())
    } else {
        std::fs::remove_file(p).map_err(|e| e.to_string())
    }
}

fn split(path: &str) -> (&str, &str) {
    let t = path.trim_start_matches('/');
    match t.rsplit_once('/') {
        Some((p, f)) => (p, f),
        None => ("", t),
    }
}

/// Writes a file inside the root, replacing what is there; every path
/// component is resolved inside the root, so an image's symlink cannot
/// send the write to the host.
pub(crate) fn write_inside(
    root: &Root,
    path: &str,
    data: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), String> {
    let (parent, file) = split(path);
    if file.is_empty() {
        return Err("not a file path".into());
    }
    let dir = root.mkdir_all(parent).map_err(|e| e.to_string())?;
    match rustix::fs::unlinkat(&dir, file, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.to_string()),
    }
    let fd = rustix::fs::openat(
        &dir,
        file,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| e.to_string())?;
    let mut f = std::fs::File::from(fd);
    std::io::Write::write_all(&mut f, data).map_err(|e| e.to_string())?;
    rustix::fs::fchown(
        &f,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .map_err(|e| e.to_string())?;
    rustix::fs::fchmod(&f, Mode::from_raw_mode(mode)).map_err(|e| e.to_string())?;
    Ok(())
}

/// Copies a host file or directory tree to `to` inside the root.
fn copy_in(
    root: &Root,
    src: &Path,
    to: &str,
    mode: Option<u32>,
    uid: u32,
    gid: u32,
) -> Result<(), String> {
    // `to` ending in `/` is a directory to copy into, as with cp.
    let joined;
    let to = match (to.ends_with('/'), src.file_name()) {
        (true, Some(name)) => {
            joined = format!("{to}{}", name.to_string_lossy());
            joined.as_str()
        }
        _ => to,
    };
    let m = std::fs::symlink_metadata(src).map_err(|e| e.to_string())?;
    if m.is_dir() {
        let (parent, file) = split(to);
        let dir = root.mkdir_all(parent).map_err(|e| e.to_string())?;
        match rustix::fs::mkdirat(
            &dir,
            file,
            Mode::from_raw_mode(m.permissions().mode() & 0o7777),
        ) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.to_string()),
        }
        rustix::fs::chownat(
            &dir,
            file,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| e.to_string())?;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(src)
            .map_err(|e| e.to_string())?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        entries.sort();
        for e in entries {
            let name = e
                .file_name()
                .ok_or("bad name")?
                .to_string_lossy()
                .into_owned();
            copy_in(
                root,
                &e,
                &format!("{}/{name}", to.trim_end_matches('/')),
                mode,
                uid,
                gid,
            )?;
        }
        Ok(())
    } else if m.file_type().is_symlink() {
        let target = std::fs::read_link(src).map_err(|e| e.to_string())?;
        let (parent, file) = split(to);
        let dir = root.mkdir_all(parent).map_err(|e| e.to_string())?;
        let _ = rustix::fs::unlinkat(&dir, file, AtFlags::empty());
        rustix::fs::symlinkat(&target, &dir, file).map_err(|e| e.to_string())
    } else {
        let data = std::fs::read(src).map_err(|e| e.to_string())?;
        let mode = mode.unwrap_or(m.permissions().mode() & 0o7777);
        write_inside(root, to, &data, mode, uid, gid)
    }
}
