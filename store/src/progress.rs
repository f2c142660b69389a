//! Progress reporting without a UI dependency: the CLI plugs in its bars.

/// Receives progress of long operations. Implementations must be cheap:
/// `advance` is called from worker threads for every file or object.
pub trait Progress: Sync {
    /// A new phase begins; `total` is in the phase's unit (bytes or items).
    fn phase(&self, _name: &str, _total: Option<u64>, _bytes: bool) {}
    /// `n` more units of the current phase are done.
    fn advance(&self, _n: u64) {}
    /// The operation is over.
    fn finish(&self) {}
    /// Whether the user asked to stop (Ctrl-C): operations that leave
    /// something to clean up check it and stop with
    /// [`crate::StoreError::Interrupted`].
    fn cancelled(&self) -> bool {
        false
    }
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
