//! Limits a reader applies to lengths declared by untrusted input, so that a
//! hostile capsule can never make it allocate or loop without bound.

/// Caps on declared sizes. The defaults suit real images; raise them only for
/// capsules you have reason to expect are larger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest accepted (default 16 MiB: package lists and recipes
    /// are text, well below that).
    pub max_manifest_len: u64,
    /// Largest object or solid block payload, stored or raw (default 64 MiB:
    /// chunks are at most 256 KiB, blocks a few MiB; trees of very large
    /// directories are the big ones).
    pub max_object_len: u32,
    /// Most members in one solid block (default 65,536: a 2.5 MiB member
    /// table).
    pub max_block_members: u32,
    /// Most objects accepted (default 2^32).
    pub max_objects: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_manifest_len: 16 << 20,
            max_object_len: 64 << 20,
            max_block_members: 1 << 16,
            max_objects: 1 << 32,
        }
    }
}
