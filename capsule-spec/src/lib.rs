//! VNFS image metadata and the `.vnfs` capsule file format.
//!
//! This crate owns what a capsule *is*, independent of the store:
//! - [`manifest`]: image name, Perceus naming fields, VNFS configuration,
//!   recipe, lock, packages, commit history, head and delta base;
//! - [`naming`]: the `<os>-<version>-<release>.<state>.<arch>.vnfs` convention
//!   and name validation;
//! - [`writer`]: a streaming writer (works into a pipe, deterministic);
//! - [`reader`]: a streaming verifying reader whose API only yields the
//!   manifest once the whole file is verified;
//! - [`mod@inspect`]: a seekable inspection without importing;
//! - [`keys`] and [`trust`]: ed25519 key files, trust list, signature policy;
//! - [`metadata`]: where the VNFS metadata lives in a store commit;
//! - [`exchange`]: export from and import into a `vnfs_store::Store`.
//!
//! The format is specified in `capsule-spec/SPEC.md`; [`mod@format`] is its
//! executable form. Objects are identified as the store identifies them
//! ([`id`]), so records pass between store and capsule without translation.

#![warn(missing_docs)]

pub mod error;
pub mod exchange;
pub mod format;
pub mod id;
pub mod inspect;
pub mod keys;
pub mod limits;
pub mod manifest;
pub mod metadata;
pub mod naming;
pub mod reader;
mod source;
pub mod trust;
pub mod writer;

pub use error::{BoxError, CapsuleError, Result};
pub use id::{Compression, ObjectId, ObjectKind};
pub use inspect::{Inspection, inspect, inspect_stream};
pub use keys::{KeyError, PublicKey, SecretKey};
pub use limits::Limits;
pub use manifest::{CommitInfo, Manifest, ManifestError, Package, VnfsConfig};
pub use naming::{Naming, validate_image_name};
pub use reader::{
    BlockStats, CapsuleReader, KindStats, ObjectSink, ReadOptions, Stats, VerifiedCapsule,
    VerifiedObject, read_capsule,
};
pub use trust::{SignaturePolicy, SignatureStatus, TrustList, UnsignedPolicy, Verdict};
pub use writer::{
    Block, BlockBuilder, CapsuleWriter, OwnedRecord, Record, WriteSummary, write_capsule,
};
