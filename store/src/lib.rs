//! vnfs-store: the content-addressed repository that holds every image and
//! every version, deduplicated.
//!
//! File content is cut by FastCDC into chunks; directories become tree
//! objects carrying all metadata; versions are commits. Objects are
//! identified by domain-separated BLAKE3, kept zstd-compressed in pack
//! files with sorted indexes, and image names are refs that move last.
//! The on-disk format is specified in `store/FORMAT.md`.

pub mod checkout;
pub mod chunker;
pub mod codec;
pub mod commit;
pub mod diff;
pub mod error;
pub mod fsck;
pub mod gc;
pub mod id;
pub mod ingest;
pub mod pack;
pub mod pins;
mod pool;
pub mod progress;
pub mod refs;
pub mod repo;
mod statcache;
pub mod summary;
pub mod tree;
pub mod walk;

pub use commit::Commit;
pub use error::{Result, StoreError};
pub use id::{ObjectId, ObjectKind};
pub use ingest::{CommitOptions, CommitOutcome, IngestStats};
pub use pack::{Compression, StoredObject};
pub use progress::{NoProgress, Progress};
pub use repo::{ReadRun, Store, StoredLocation, StoredSpan, Writer};
pub use tree::{Entry, EntryKind, Extent, Meta, Tree};
