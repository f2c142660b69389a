//! Pins: commits that gc must keep although no image name points to them,
//! such as the commit a FUSE mount is serving (its image may be deleted
//! or moved while it is mounted). `pins/<label>` holds a commit id.

use std::fs;
use std::path::PathBuf;

use crate::error::{IoContext, Result, StoreError};
use crate::id::ObjectId;
use crate::pack;
use crate::refs::validate_existing_name;
use crate::repo::Store;

impl Store {
    fn pins_dir(&self) -> PathBuf {
        self.root().join("pins")
    }

    /// Keeps `commit` (and its history) from gc until `unpin(label)`.
    pub fn pin(&self, label: &str, commit: ObjectId) -> Result<()> {
        validate_existing_name(label)?;
        let dir = self.pins_dir();
        fs::create_dir_all(&dir).at(&dir)?;
        let tmp = self
            .tmp_dir()
            .join(format!("pin-{}", pack::unique_suffix()));
        pack::write_synced(&tmp, format!("{commit}\n").as_bytes())?;
        let path = dir.join(label);
        fs::rename(&tmp, &path).at(&path)?;
        pack::sync_dir(&dir)
    }

    /// Removes a pin; removing one that does not exist is not an error.
    pub fn unpin(&self, label: &str) -> Result<()> {
        validate_existing_name(label)?;
        let path = self.pins_dir().join(label);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(path),
            _ => Ok(()),
        }
    }

    /// Every pin and its commit, sorted by label.
    pub fn list_pins(&self) -> Result<Vec<(String, ObjectId)>> {
        let dir = self.pins_dir();
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).at(dir),
        };
        for ent in rd {
            let ent = ent.at(&dir)?;
            let Some(label) = ent.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let path = ent.path();
            let text = fs::read_to_string(&path).at(&path)?;
            let id = ObjectId::from_hex(&text).ok_or_else(|| StoreError::BadPack {
                path: path.clone(),
                why: "pin does not hold a commit id".into(),
            })?;
            out.push((label, id));
        }
        out.sort();
        Ok(out)
    }
}
