//! Progress reporting hooks. The library calls them; the CLI draws bars.

/// The phases of a build, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Fetching indexes and resolving dependencies.
    Resolve,
    /// Downloading packages (counted in bytes).
    Download,
    /// Unpacking packages (counted in packages).
    Unpack,
    /// Running maintainer scripts and recipe steps.
    Configure,
    /// Normalising and committing the tree.
    Commit,
}

impl Stage {
    /// A short lower-case label.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Resolve => "resolve",
            Stage::Download => "download",
            Stage::Unpack => "unpack",
            Stage::Configure => "configure",
            Stage::Commit => "commit",
        }
    }
}

/// Receives progress events; every method has a no-op default.
pub trait Progress: Sync {
    /// A stage starts; `total` units are expected (bytes for Download).
    fn begin(&self, _stage: Stage, _total: Option<u64>) {}
    /// `n` more units of the stage are done.
    fn advance(&self, _stage: Stage, _n: u64) {}
    /// What the stage is doing now.
    fn message(&self, _stage: Stage, _msg: &str) {}
    /// The stage is over.
    fn end(&self, _stage: Stage) {}
}

/// Ignores all progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
