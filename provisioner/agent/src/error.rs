//! The agent's error type. Every variant names what failed: the URL, the
//! object id and kind, the path, the state.

use std::path::PathBuf;

use vnfs_store::{ObjectId, ObjectKind, StoreError};

/// Everything that can stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The master could not be reached or answered with an error, after
    /// retrying for as long as allowed.
    #[error("{url}: {reason}")]
    Http {
        /// The request URL.
        url: String,
        /// What happened (last attempt).
        reason: String,
    },
    /// The master refused this node (disabled, no image, bad secret).
    #[error("the master refused node {mac}: {error}")]
    Refused {
        /// The NodeID.
        mac: String,
        /// Machine-readable reason (`disabled`, `no-image`, ...).
        reason: String,
        /// The master's explanation.
        error: String,
    },
    /// An object whose bytes do not match its id: refused, never written.
    #[error("{kind} {id} from {url} is corrupt ({why}); refused")]
    Corrupt {
        /// Object kind.
        kind: ObjectKind,
        /// The id that was asked for.
        id: ObjectId,
        /// Where it came from.
        url: String,
        /// What did not match.
        why: String,
    },
    /// The master does not have an object the image needs.
    #[error("the master has no {kind} {id} ({url})")]
    Missing {
        /// Object kind.
        kind: ObjectKind,
        /// Object id.
        id: ObjectId,
        /// The request URL.
        url: String,
    },
    /// A malformed reply.
    #[error("{url}: malformed reply: {reason}")]
    Protocol {
        /// The request URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The local object cache.
    #[error("object cache: {0}")]
    Store(#[from] StoreError),
    /// The image's VNFS configuration.
    #[error("image {image}: {source}")]
    Config {
        /// Image name.
        image: String,
        /// The problem.
        #[source]
        source: crate::imageconf::ConfigError,
    },
    /// A file or directory on the node.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The nodescript failed.
    #[error("nodescript for state {state} failed: {status}")]
    Script {
        /// The provisionary state.
        state: String,
        /// Exit status or signal.
        status: String,
    },
    /// Anything else the agent checks (bad arguments, a root in use).
    #[error("{0}")]
    Invalid(String),
}

/// Result with [`AgentError`].
pub type Result<T, E = AgentError> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AgentError {
    let path = path.into();
    move |source| AgentError::Io { path, source }
}
