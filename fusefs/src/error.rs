//! The crate's error type. Every variant names the image, path or object.

use std::io;
use std::path::PathBuf;

use vnfs_store::StoreError;

/// Everything that can go wrong mounting, serving or committing an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A store operation failed (it names the object or file).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An operating-system error on a named file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The image is mounted already (by a live server).
    #[error("image '{name}' is already mounted at {} (server pid {pid})", dir.display())]
    AlreadyMounted {
        /// Image name.
        name: String,
        /// Where.
        dir: PathBuf,
        /// Server process.
        pid: u32,
    },
    /// Something else is mounted at the directory, or it holds files.
    #[error("{}: {why}", dir.display())]
    BadMountPoint {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Processes still use the mount.
    #[error("{} is busy: {}", dir.display(), users.join("; "))]
    Busy {
        /// The mount point.
        dir: PathBuf,
        /// `pid (command): how it uses the mount`, one per process.
        users: Vec<String>,
    },
    /// No mount matches the name or directory.
    #[error("no vnfs mount of '{0}' (see `vnfs mounts`)")]
    NotMounted(String),
    /// Pending edits exist for another commit than the one asked for.
    #[error(
        "image '{name}' has unsaved edits on commit {pending}; \
         commit them with `vnfs umount --recover {name}` or drop them with \
         `vnfs umount --discard {name}` before mounting {asked}"
    )]
    PendingEdits {
        /// Image name.
        name: String,
        /// The commit the edits were made on.
        pending: String,
        /// The commit asked for.
        asked: String,
    },
    /// The mount state directory is damaged.
    #[error("{}: {why}", path.display())]
    BadState {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The FUSE server stopped or failed to start.
    #[error("FUSE server: {0}")]
    Server(String),
}

/// Result alias for the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
    }
}
