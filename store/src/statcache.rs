//! The stat cache: per image, what each file's content was at the last
//! commit, keyed by inode, size, mtime and ctime. A re-commit of an
//! unchanged tree reads no file data (as git's index and restic's parent
//! snapshots do).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::codec::{Decoder, Encoder};
use crate::error::Result;
use crate::pack;
use crate::repo::Store;
use crate::tree::{Extent, decode_extents, encode_extents};

const MAGIC: &[u8] = b"VNFSSTC1";

/// What identifies an unchanged file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StatKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub ctime: i64,
    pub ctime_nsec: i64,
}

impl StatKey {
    pub(crate) fn of(md: &fs::Metadata) -> StatKey {
        use std::os::unix::fs::MetadataExt;
        StatKey {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: md.mtime(),
            mtime_nsec: md.mtime_nsec(),
            ctime: md.ctime(),
            ctime_nsec: md.ctime_nsec(),
        }
    }
}

/// Cached file contents of one image's last committed directory.
#[derive(Default)]
pub(crate) struct StatCache {
    pub dir: Vec<u8>,
    pub files: HashMap<Vec<u8>, (StatKey, u64, Vec<Extent>)>,
}

impl Store {
    pub(crate) fn stat_cache_path(&self, name: &str) -> PathBuf {
        self.root().join("cache/stat").join(name)
    }
}

impl StatCache {
    /// Loads the cache for `dir`; any problem (absent, other directory,
    /// damaged) gives an empty cache: it only ever saves work.
    pub(crate) fn load(path: &Path, dir: &[u8]) -> StatCache {
        let Ok(raw) = fs::read(path) else {
            return StatCache::default();
        };
        match Self::decode(&raw) {
            Some(c) if c.dir == dir => c,
            _ => StatCache::default(),
        }
    }

    fn decode(raw: &[u8]) -> Option<StatCache> {
        let body = raw.strip_prefix(MAGIC)?;
        let mut d = Decoder::new(body);
        let dir = d.bytes().ok()?.to_vec();
        let n = d.len().ok()?;
        let mut files = HashMap::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            let path = d.bytes().ok()?.to_vec();
            let mut f = [0i64; 7];
            for v in &mut f {
                *v = d.i64().ok()?;
            }
            let key = StatKey {
                dev: f[0] as u64,
                ino: f[1] as u64,
                size: f[2] as u64,
                mtime: f[3],
                mtime_nsec: f[4],
                ctime: f[5],
                ctime_nsec: f[6],
            };
            let (size, extents) = decode_extents(&mut d).ok()?;
            files.insert(path, (key, size, extents));
        }
        Some(StatCache { dir, files })
    }

    /// Writes the cache atomically.
    pub(crate) fn save(&self, store: &Store, path: &Path) -> Result<()> {
        let mut e = Encoder::default();
        e.buf.extend_from_slice(MAGIC);
        e.bytes(&self.dir);
        e.uvar(self.files.len() as u64);
        let mut keys: Vec<&Vec<u8>> = self.files.keys().collect();
        keys.sort();
        for k in keys {
            let (key, size, extents) = &self.files[k];
            e.bytes(k);
            for v in [
                key.dev as i64,
                key.ino as i64,
                key.size as i64,
                key.mtime,
                key.mtime_nsec,
                key.ctime,
                key.ctime_nsec,
            ] {
                e.i64(v);
            }
            encode_extents(&mut e, *size, extents);
        }
        let tmp = store
            .root()
            .join("tmp")
            .join(format!("stat-{}", pack::unique_suffix()));
        pack::write_synced(&tmp, &e.buf)?;
        if let Some(parent) = path.parent() {
            let _ = fs::create_dir_all(parent);
        }
        fs::rename(&tmp, path).map_err(|source| crate::error::StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
