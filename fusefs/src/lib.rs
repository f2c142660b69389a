//! vnfs-fusefs: a read-write FUSE view of a commit, committed on unmount.
//!
//! The lower layer is the commit, read lazily from the store through a
//! bounded chunk cache; edits go to an upper directory on disk (copy-up on
//! first change, whiteouts for deletions) that survives a crash; unmount
//! merges the upper layer over the lower trees, re-chunking only changed
//! files. `mount` holds the life cycle, `overlay` the namespace semantics,
//! `ops` the FUSE protocol, `commit` the new version.

pub mod busy;
pub mod cache;
pub mod commit;
pub mod error;
pub mod inode;
pub mod lower;
pub mod mount;
pub mod ops;
pub mod overlay;
pub mod state;
pub mod sys;
pub mod upper;

pub use commit::{CommitSummary, MetadataEdit, Pending, commit_upper, pending};
pub use error::{Error, Result};
pub use mount::{Finished, MountRequest, finish, is_session_end, prepare, serve, session, unmount};
pub use state::MountState;
