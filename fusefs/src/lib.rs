//! FUSE view of a commit with a writable upper layer; commits on unmount.
