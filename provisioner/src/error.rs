//! The provisioner's error type: every variant names the thing that was wrong
//! (the node, the file and line, the field) so the CLI can print it as is.

use std::path::PathBuf;

/// Everything that can go wrong in the node database, naming, modules and
/// configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A MAC address (NodeID) that does not parse.
    #[error("malformed MAC address '{0}' (expected six hex pairs such as 00:11:22:33:44:55)")]
    BadMac(String),
    /// A node or group pattern with a bad bracket range.
    #[error("malformed pattern '{pattern}': {reason}")]
    BadPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A pattern given to a command that changes nodes matched nothing.
    #[error("no node matches '{0}'")]
    NoMatch(String),
    /// A field name that `node set` does not know.
    #[error(
        "unknown field '{0}' (fields: hostname, group, vnfs, enabled, debug, desc, ipaddr, attr.NAME)"
    )]
    UnknownField(String),
    /// A value that does not fit its field.
    #[error("invalid value '{value}' for field '{field}': {reason}")]
    BadValue {
        /// The field being set.
        field: String,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// `node set vnfs X` (or a group/default) naming an image the store lacks.
    #[error("no VNFS image named '{0}' in the store")]
    UnknownVnfs(String),
    /// Deleting an image that nodes are still set to.
    #[error(
        "image '{image}' is used by {count} node(s): {nodes}; set them to another image first \
         (`vnfs node set vnfs IMAGE NODES`), or pass --force to delete it anyway \
         (they then wait at init until they get one)"
    )]
    ImageInUse {
        /// The image name.
        image: String,
        /// How many nodes are set to it.
        count: usize,
        /// Their host names, shortened when there are many.
        nodes: String,
    },
    /// Adding a MAC address that is already a node.
    #[error("node {mac} already exists (hostname {hostname})")]
    DuplicateMac {
        /// The MAC address.
        mac: String,
        /// The hostname of the existing node.
        hostname: String,
    },
    /// A MAC address given twice in one request.
    #[error("MAC address {0} is given more than once")]
    RepeatedMac(String),
    /// A node addressed by MAC that is not in the database.
    #[error("no node with NodeID {0}")]
    UnknownNode(String),
    /// `node replace` where the source pattern did not resolve to one node.
    #[error("'{pattern}' must name exactly one node, it names {count}")]
    NotOneNode {
        /// The pattern as given.
        pattern: String,
        /// How many nodes it matched.
        count: usize,
    },
    /// No free node name left in the First Node .. First Node + Total Nodes window.
    #[error(
        "no free node name left: all {total} names from {first} are taken (raise Total Nodes in defaults.conf)"
    )]
    NamesExhausted {
        /// First Node.
        first: u64,
        /// Total Nodes.
        total: u64,
    },
    /// Another process holds the database lock past the busy timeout.
    #[error("database is locked: {path} is busy in another vnfs process (waited {waited_ms} ms)")]
    Locked {
        /// The database file.
        path: PathBuf,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The database was written by a newer vnfs.
    #[error("database {path} has schema version {found}, newer than this vnfs knows ({known})")]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Version found on disk.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// Any other SQLite failure.
    #[error("node database {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A syntax error in a configuration or import file.
    #[error("{}:{line}: {reason}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when unknown).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A module that is missing, malformed or unsafe.
    #[error("module {module}: {reason}")]
    Module {
        /// The module name or file.
        module: String,
        /// What is wrong.
        reason: String,
    },
    /// A provisionary state string that does not parse.
    #[error(
        "malformed provisionary state '{state}': {reason} (expected STATE/all, STATE/group/G, STATE/vnfs/V or STATE/node/N)"
    )]
    BadState {
        /// The state as given.
        state: String,
        /// What is wrong.
        reason: String,
    },
    /// The configuration is missing something a command needs.
    #[error("{0}")]
    Config(String),
    /// An I/O error on a named file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Result with the provisioner's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
