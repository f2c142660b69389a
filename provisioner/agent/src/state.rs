//! What the agent remembers between runs, in `CACHE/node.json`: which
//! master, root and image commit the node runs, and the node view it
//! assembled, so the daemon can check in with it and livesync can diff
//! from it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, io};

/// File name of the state inside the cache directory.
pub const STATE_FILE: &str = "node.json";

/// The node's provisioning state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeState {
    /// Master base URL.
    pub master: String,
    /// NodeID.
    pub mac: String,
    /// Root directory the image was assembled in.
    pub root: PathBuf,
    /// Image name.
    pub image: String,
    /// Image commit the root shows.
    pub commit: String,
    /// Node view commit (equal to `commit` without hybridization).
    pub view: String,
    /// Export root the hybridized links point into.
    pub export_root: String,
}

impl NodeState {
    /// Reads the state from a cache directory, if there is one.
    pub fn load(cache: &Path) -> Result<Option<NodeState>> {
        let p = cache.join(STATE_FILE);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| io(&p)(std::io::Error::new(std::io::ErrorKind::InvalidData, e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// Writes the state atomically (temp file, fsync, rename).
    pub fn save(&self, cache: &Path) -> Result<()> {
        let p = cache.join(STATE_FILE);
        let tmp = cache.join(format!(".{STATE_FILE}.{}", std::process::id()));
        let data = serde_json::to_vec_pretty(self).map_err(|e| io(&p)(std::io::Error::other(e)))?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&data).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &p).map_err(io(&p))
    }
}
