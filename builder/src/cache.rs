//! The package cache: files named by their sha256 under
//! `<home>/cache/packages/`, shared by every build and recipe. A file is
//! only ever placed there after its hash was checked.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::http::{Expect, FetchError, Fetcher};
use crate::progress::{Progress, Stage};

/// Parallel downloads (network-bound, so more than the CPU count).
const PARALLEL_DOWNLOADS: usize = 8;

/// One file to have in the cache.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// Where to get it.
    pub url: String,
    /// Its sha256 (lower-case hex).
    pub sha256: String,
    /// Its size.
    pub size: u64,
}

/// Cache failure.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Download failed or did not match.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// Local filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A package the lock names arrived with another hash than the lock's.
    #[error(
        "{cause}; the package is not the one {lock} names: if the archive replaced it, \
         resolve again with --update (a lock edited by hand, or a file tampered with \
         on the way, fails the same way)"
    )]
    LockMismatch {
        /// The lock file.
        lock: PathBuf,
        /// The download that did not match.
        cause: FetchError,
    },
    /// The build was interrupted.
    #[error("interrupted")]
    Interrupted,
}

/// A directory of files keyed by sha256.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache under a vnfs home directory.
    pub fn new(home: &Path) -> Cache {
        Cache {
            dir: home.join("cache").join("packages"),
        }
    }

    /// Where the file with this hash lives.
    pub fn path_for(&self, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("xx");
        self.dir.join(prefix).join(sha256)
    }

    /// Removes the partial downloads of `sha256` (`.<sha256>.<n>.part`)
    /// that nobody is writing: a download holds its file locked (`flock`)
    /// while it writes, so one that can be locked was left by a build that
    /// was killed, or interrupted while a stalled download was still
    /// waiting (an interrupted build does not wait for it to give up).
    fn remove_orphaned_parts(&self, sha256: &str) {
        let dir = match self.path_for(sha256).parent() {
            Some(d) => d.to_path_buf(),
            None => return,
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let prefix = format!(".{sha256}.");
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with(&prefix) && name.ends_with(".part")) {
                continue;
            }
            let orphan = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(e.path())
                .is_ok_and(|f| f.try_lock().is_ok());
            if orphan {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Makes sure every wanted file is cached, downloading missing ones in
    /// parallel. Returns their paths in the same order. `lock` is the lock
    /// file the wanted list was read from, if it was: a download with
    /// another hash is then reported as [`CacheError::LockMismatch`].
    pub fn ensure(
        &self,
        fetcher: &Fetcher,
        wanted: &[Wanted],
        progress: &dyn Progress,
        cancel: &AtomicBool,
        lock: Option<&Path>,
    ) -> Result<Vec<PathBuf>, CacheError> {
        let missing: Vec<&Wanted> = wanted
            .iter()
            .filter(|w| {
                std::fs::metadata(self.path_for(&w.sha256)).map_or(true, |m| m.len() != w.size)
            })
            .collect();
        for w in &missing {
            self.remove_orphaned_parts(&w.sha256);
        }
        let total: u64 = missing.iter().map(|w| w.size).sum();
        progress.begin(Stage::Download, Some(total));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(PARALLEL_DOWNLOADS)
            .build()
            .map_err(|e| CacheError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other(e),
            })?;
        pool.install(|| {
            missing.par_iter().try_for_each(|w| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(CacheError::Interrupted);
                }
                let dest = self.path_for(&w.sha256);
                let dir = dest.parent().unwrap_or(&self.dir);
                std::fs::create_dir_all(dir).map_err(|source| CacheError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
                // Unique, so a download left running by an interrupted
                // build (in this process too) never shares its file.
                let tmp = dir.join(format!(
                    ".{}.{}.part",
                    w.sha256,
                    vnfs_store::pack::unique_suffix()
                ));
                fetcher
                    .download(
                        &w.url,
                        &tmp,
                        Expect {
                            sha256: &w.sha256,
                            size: Some(w.size),
                        },
                        &|n| progress.advance(Stage::Download, n),
                    )
                    .map_err(|e| match (e, lock) {
                        (e @ FetchError::HashMismatch { .. }, Some(lock)) => {
                            CacheError::LockMismatch {
                                lock: lock.to_path_buf(),
                                cause: e,
                            }
                        }
                        (e, _) => e.into(),
                    })?;
                std::fs::rename(&tmp, &dest).map_err(|source| CacheError::Io {
                    path: dest.clone(),
                    source,
                })
            })
        })?;
        progress.end(Stage::Download);
        Ok(wanted.iter().map(|w| self.path_for(&w.sha256)).collect())
    }
}
