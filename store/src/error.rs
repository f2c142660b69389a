//! The store's error type. Every variant names the file, object or image.

use std::io;
use std::path::PathBuf;

use crate::codec::DecodeError;
use crate::id::{ObjectId, ObjectKind};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An operating-system error on a named file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The directory is not a store (or a newer format).
    #[error("{}: {why}", path.display())]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// Why it was refused.
        why: String,
    },
    /// An object needed is not in any pack.
    #[error("{kind} {id} is missing from the store")]
    Missing {
        /// Object id.
        id: ObjectId,
        /// What kind was expected.
        kind: ObjectKind,
    },
    /// An object's bytes do not match its id or do not decode.
    #[error("{kind} {id} is corrupt ({}): {why}", where_.display())]
    Corrupt {
        /// Object id.
        id: ObjectId,
        /// Its kind.
        kind: ObjectKind,
        /// The pack holding it.
        where_: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A tree or commit failed to decode.
    #[error("{kind} {id} does not decode: {source}")]
    Decode {
        /// Object id.
        id: ObjectId,
        /// Its kind.
        kind: ObjectKind,
        /// Decoder error.
        source: DecodeError,
    },
    /// A pack or index file is damaged.
    #[error("{}: {why}", path.display())]
    BadPack {
        /// The pack or index file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// No image has this name.
    #[error("no image named '{0}' (see `vnfs list`)")]
    NoSuchImage(String),
    /// An image name that cannot be used.
    #[error("invalid image name '{name}': {why}")]
    BadName {
        /// The name given.
        name: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// A commit reference that names nothing.
    #[error("no commit matches '{0}'")]
    NoSuchCommit(String),
    /// `NAME@COMMIT` where the commit exists but is not a version of NAME.
    #[error(
        "commit {} is not in the history of image '{name}' (see `vnfs log {name}`)",
        commit.short()
    )]
    NotInHistory {
        /// The image named.
        name: String,
        /// The commit the prefix matched.
        commit: ObjectId,
    },
    /// A commit prefix matching several commits.
    #[error("'{0}' is ambiguous: it matches several commits; give more digits")]
    Ambiguous(String),
    /// Input given to a store operation that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// The user asked to stop ([`crate::Progress::cancelled`]).
    #[error("interrupted")]
    Interrupted,
}

/// Result alias for the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            path: path.into(),
            source,
        })
    }
}
