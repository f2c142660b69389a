//! The one error type of the capsule reader and writer. Every variant that
//! comes from input names where it happened: a byte offset, and the object
//! id and kind when there is one, so that a user can tell which part of a
//! file is bad.

use crate::id::{ObjectId, ObjectKind};
use crate::manifest::ManifestError;

/// Boxed error from a caller-supplied sink or record source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong reading, writing or checking a capsule.
#[derive(Debug, thiserror::Error)]
pub enum CapsuleError {
    /// An I/O error from the underlying reader or writer.
    #[error("I/O error at offset {offset}: {source}")]
    Io {
        /// File offset where the operation was.
        offset: u64,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The input ended inside a structure.
    #[error(
        "truncated capsule: the input ends at offset {end} inside the {what} that starts at offset {offset}"
    )]
    Truncated {
        /// Which structure was being read.
        what: &'static str,
        /// Where that structure starts.
        offset: u64,
        /// Where the input ended.
        end: u64,
    },
    /// A fixed structure failed its own checks (magic, version, codes,
    /// reserved bytes).
    #[error("{what} at offset {offset}: {reason}")]
    Layout {
        /// Which structure.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A declared length exceeds the reader's limit, or is impossible.
    #[error("{what} at offset {offset} declares {value} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Which length.
        what: &'static str,
        /// Where it was declared.
        offset: u64,
        /// The declared value.
        value: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The manifest failed to parse or validate.
    #[error("manifest at offset {offset}: {source}")]
    Manifest {
        /// Where the manifest starts.
        offset: u64,
        /// What is wrong with it.
        source: ManifestError,
    },
    /// An object appears twice (as a record or a block member): a capsule
    /// holds each object once.
    #[error("{kind} {id} at offset {offset} is already in the capsule (each object goes in once)")]
    Duplicate {
        /// Where the record (or the block holding it) starts.
        offset: u64,
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
    },
    /// A record's lengths are inconsistent (e.g. raw record whose raw and
    /// stored lengths differ, or decompressed size different from declared).
    #[error("{kind} {id} at offset {offset}: {reason}")]
    BadRecord {
        /// Where the record starts.
        offset: u64,
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// What is wrong.
        reason: String,
    },
    /// An object's content does not hash to its id.
    #[error(
        "{kind} {id} at offset {offset}: content does not match its id (it hashes to {actual})"
    )]
    IdMismatch {
        /// Where the record starts.
        offset: u64,
        /// Its kind.
        kind: ObjectKind,
        /// The id the record claims.
        id: ObjectId,
        /// The id its content has.
        actual: ObjectId,
    },
    /// The index or trailer disagrees with the object section.
    #[error("{what} at offset {offset}: {reason}")]
    Inconsistent {
        /// Which structure (index, trailer, manifest).
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// What disagrees.
        reason: String,
    },
    /// The whole-file checksum in the trailer does not match the content.
    #[error(
        "checksum mismatch: the trailer at offset {offset} records {expected}, the file hashes to {actual}"
    )]
    Checksum {
        /// Where the trailer starts.
        offset: u64,
        /// Hex of the recorded hash.
        expected: String,
        /// Hex of the computed hash.
        actual: String,
    },
    /// Bytes follow the end of the capsule.
    #[error("unexpected data after the end of the capsule at offset {offset}")]
    TrailingData {
        /// Where the capsule should have ended.
        offset: u64,
    },
    /// The signature policy refuses the capsule.
    #[error("signature: {0}")]
    Policy(String),
    /// The sink refused or failed to store an object.
    #[error("storing {kind} {id} (record at offset {offset}) failed: {source}")]
    Sink {
        /// Where the record starts.
        offset: u64,
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// The sink's error.
        source: BoxError,
    },
    /// The writer was given something it cannot write (unsorted records,
    /// oversize object, invalid manifest, failing record source).
    #[error("cannot write capsule: {0}")]
    Input(String),
}

/// Result alias for this crate.
pub type Result<T, E = CapsuleError> = std::result::Result<T, E>;
