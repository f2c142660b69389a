//! Image names (refs): `refs/<name>` holds the newest commit id of an image.
//! History is kept through commit parents; refs move by atomic rename.

use std::fs::{self, File};
use std::path::PathBuf;

use rustix::fs::{FlockOperation, flock};

use crate::commit::Commit;
use crate::error::{IoContext, Result, StoreError};
use crate::id::ObjectId;
use crate::pack;
use crate::repo::Store;

/// Longest image name, in bytes. It is the capsule format's limit
/// (`capsule-spec/SPEC.md`, manifest `name`), so every image the store
/// accepts can also be exported.
pub const MAX_NAME_LEN: usize = 128;

/// Longest name earlier versions accepted. Refs that long may exist in an
/// older store: they stay readable and deletable (and gc keeps their
/// objects), but no new name may be that long.
const LEGACY_MAX_NAME_LEN: usize = 200;

/// Checks that `name` can be used as a new image name (and file name).
pub fn validate_name(name: &str) -> Result<()> {
    check_name(name, MAX_NAME_LEN)
}

/// Checks a name that may already exist in the store: the character rules
/// of [`validate_name`] with the older, longer length limit, so that an
/// image named before the limit became [`MAX_NAME_LEN`] is not lost to
/// `list`, `delete` or gc. Pin labels (`mount.NAME`) use it too, since
/// they are longer than the name they carry.
pub(crate) fn validate_existing_name(name: &str) -> Result<()> {
    check_name(name, LEGACY_MAX_NAME_LEN)
}

fn check_name(name: &str, max: usize) -> Result<()> {
    let bad = |why| {
        Err(StoreError::BadName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() || name.len() > max {
        return bad(if max == MAX_NAME_LEN {
            "must be 1 to 128 characters (the capsule format's limit)"
        } else {
            "must be 1 to 200 characters"
        });
    }
    if name.starts_with('.') || name.starts_with('-') {
        return bad("must not start with '.' or '-'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
    {
        return bad("only letters, digits and . _ + - are allowed");
    }
    Ok(())
}

/// Holds the refs lock; refs are read-modify-written under it.
struct RefLock {
    _file: File,
}

impl Store {
    fn refs_dir(&self) -> PathBuf {
        self.root().join("refs")
    }

    fn ref_lock(&self) -> Result<RefLock> {
        let path = self.refs_dir().join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(std::io::Error::from)
            .at(&path)?;
        Ok(RefLock { _file: file })
    }

    /// The commit an image name points to, if the name exists.
    pub fn get_ref(&self, name: &str) -> Result<Option<ObjectId>> {
        validate_existing_name(name)?;
        let path = self.refs_dir().join(name);
        match fs::read_to_string(&path) {
            Ok(s) => ObjectId::from_hex(&s)
                .map(Some)
                .ok_or_else(|| StoreError::BadPack {
                    path,
                    why: "ref file does not hold a commit id".into(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(path),
        }
    }

    /// Every image name and its commit, sorted by name.
    pub fn list_refs(&self) -> Result<Vec<(String, ObjectId)>> {
        let dir = self.refs_dir();
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).at(dir),
        };
        for ent in rd {
            let ent = ent.at(&dir)?;
            let Some(name) = ent.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if validate_existing_name(&name).is_err() {
                continue; // .lock and temp files
            }
            if let Some(id) = self.get_ref(&name)? {
                out.push((name, id));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Moves `name` under the refs lock: `f` sees the current commit and
    /// returns the new one (writing any commit object it needs first).
    pub fn update_ref<F>(&self, name: &str, f: F) -> Result<ObjectId>
    where
        F: FnOnce(Option<ObjectId>) -> Result<ObjectId>,
    {
        validate_name(name)?;
        let _guard = self.ref_lock()?;
        let current = self.get_ref(name)?;
        let new = f(current)?;
        let tmp = self
            .tmp_dir()
            .join(format!("ref-{}", pack::unique_suffix()));
        pack::write_synced(&tmp, format!("{new}\n").as_bytes())?;
        let path = self.refs_dir().join(name);
        fs::rename(&tmp, &path).at(&path)?;
        pack::sync_dir(&self.refs_dir())?;
        Ok(new)
    }

    /// Removes an image name; its objects stay until `gc`.
    pub fn delete_ref(&self, name: &str) -> Result<ObjectId> {
        validate_existing_name(name)?;
        let _guard = self.ref_lock()?;
        let id = self
            .get_ref(name)?
            .ok_or_else(|| StoreError::NoSuchImage(name.to_string()))?;
        let path = self.refs_dir().join(name);
        fs::remove_file(&path).at(&path)?;
        pack::sync_dir(&self.refs_dir())?;
        let _ = fs::remove_file(self.stat_cache_path(name));
        Ok(id)
    }

    /// The commits of an image's history, newest first (first parents).
    pub fn history(&self, head: ObjectId) -> Result<Vec<(ObjectId, Commit)>> {
        let mut out = Vec::new();
        let mut next = Some(head);
        let mut seen = crate::id::IdSet::default();
        while let Some(id) = next {
            if !seen.insert(id) {
                break;
            }
            let c = self.read_commit(&id)?;
            next = c.parents.first().copied();
            out.push((id, c));
        }
        Ok(out)
    }

    /// Moves `name` back to an earlier version by recording a new commit
    /// with that version's tree and metadata on top of the current one, so
    /// the rollback itself is part of the history and nothing is lost.
    /// `target` defaults to the parent of the current commit.
    pub fn rollback(&self, name: &str, target: Option<ObjectId>) -> Result<ObjectId> {
        let head = self
            .get_ref(name)?
            .ok_or_else(|| StoreError::NoSuchImage(name.to_string()))?;
        let target = match target {
            Some(t) => t,
            None => *self.read_commit(&head)?.parents.first().ok_or_else(|| {
                StoreError::Invalid(format!(
                    "{name} has only one version; nothing to roll back to"
                ))
            })?,
        };
        let old = self.read_commit(&target)?;
        let writer = self.writer()?;
        self.update_ref(name, |current| {
            let mut metadata = old.metadata.clone();
            metadata.insert("vnfs.rollback-to".into(), target.to_hex());
            let commit = Commit {
                root: old.root.clone(),
                parents: current.into_iter().collect(),
                timestamp: crate::ingest::now(),
                message: format!("Roll back to {}", target.short()),
                metadata,
            };
            let id = writer.put(crate::id::ObjectKind::Commit, &commit.encode())?;
            writer.flush()?;
            Ok(id)
        })
    }

    /// Resolves `NAME`, `NAME@COMMIT` (a commit id or unique prefix from
    /// NAME's history; a commit outside it is refused) or a bare commit
    /// id/prefix. Returns the image name when one was given and the commit
    /// id.
    pub fn resolve(&self, spec: &str) -> Result<(Option<String>, ObjectId)> {
        let (name, at) = match spec.split_once('@') {
            Some((n, c)) => (Some(n), Some(c)),
            None => (Some(spec), None),
        };
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            if let Some(head) = self.get_ref(n).ok().flatten() {
                let Some(at) = at else {
                    return Ok((Some(n.to_string()), head));
                };
                let hist = self.history(head)?;
                let hits: Vec<ObjectId> = hist
                    .iter()
                    .map(|(id, _)| *id)
                    .filter(|id| id.to_hex().starts_with(&at.to_ascii_lowercase()))
                    .collect();
                return match hits.as_slice() {
                    [one] => Ok((Some(n.to_string()), *one)),
                    // A commit of another image must not pass as a version
                    // of this one: export would ship its tree under this
                    // name, and show would label it so.
                    [] => Err(match self.resolve_commit_prefix(at) {
                        Ok(id) => StoreError::NotInHistory {
                            name: n.to_string(),
                            commit: id,
                        },
                        Err(e) => e,
                    }),
                    _ => Err(StoreError::Ambiguous(at.to_string())),
                };
            }
            if at.is_some() {
                return Err(StoreError::NoSuchImage(n.to_string()));
            }
        }
        let prefix = at.unwrap_or(spec);
        match self.resolve_commit_prefix(prefix) {
            Ok(id) => Ok((None, id)),
            Err(StoreError::NoSuchCommit(_)) if at.is_none() => {
                Err(StoreError::NoSuchImage(spec.to_string()))
            }
            Err(e) => Err(e),
        }
    }

    fn resolve_commit_prefix(&self, prefix: &str) -> Result<ObjectId> {
        let p = prefix.to_ascii_lowercase();
        if p.len() < 4 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::NoSuchCommit(prefix.to_string()));
        }
        let hits: Vec<ObjectId> = self
            .commit_ids()
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&p))
            .collect();
        match hits.as_slice() {
            [one] => Ok(*one),
            [] => Err(StoreError::NoSuchCommit(prefix.to_string())),
            _ => Err(StoreError::Ambiguous(prefix.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("debian-12-1.stateless.x86_64").is_ok());
        for bad in ["", ".x", "-x", "a/b", "a b", "..", "é"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_names_fit_a_capsule_and_older_long_ones_stay_reachable() {
        assert!(validate_name(&"n".repeat(MAX_NAME_LEN)).is_ok());
        assert!(validate_name(&"n".repeat(MAX_NAME_LEN + 1)).is_err());
        // A ref an older version created stays listed (so gc keeps its
        // objects), readable and deletable, but cannot be moved.
        let t = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(&t.path().join("s")).unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("f"), "x").unwrap();
        let id = commit(&store, &src, "img");
        let legacy = "n".repeat(150);
        fs::write(store.refs_dir().join(&legacy), format!("{id}\n")).unwrap();
        assert!(store.list_refs().unwrap().iter().any(|(n, _)| *n == legacy));
        assert_eq!(store.get_ref(&legacy).unwrap(), Some(id));
        assert!(store.update_ref(&legacy, |_| Ok(id)).is_err());
        assert_eq!(store.delete_ref(&legacy).unwrap(), id);
    }

    fn commit(store: &Store, src: &std::path::Path, name: &str) -> ObjectId {
        let opts = crate::ingest::CommitOptions {
            name: name.into(),
            timestamp: Some(1),
            ..Default::default()
        };
        store.commit_dir(src, &opts, &crate::NoProgress).unwrap().id
    }

    #[test]
    fn name_at_commit_is_only_a_commit_of_that_images_history() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(&t.path().join("s")).unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        for (d, text) in [(&a, "a"), (&b, "b")] {
            fs::create_dir_all(d).unwrap();
            fs::write(d.join("f"), text).unwrap();
        }
        let node = commit(&store, &a, "node");
        let xnode = commit(&store, &b, "xnode");
        let hex = xnode.to_hex();
        match store.resolve(&format!("node@{}", &hex[..12])) {
            Err(StoreError::NotInHistory { name, commit }) => {
                assert_eq!((name.as_str(), commit), ("node", xnode));
            }
            other => panic!("node@<xnode's commit> resolved to {other:?}"),
        }
        assert_eq!(
            store
                .resolve(&format!("node@{}", &node.to_hex()[..12]))
                .unwrap(),
            (Some("node".into()), node)
        );
        // A bare commit id names no image.
        assert_eq!(store.resolve(&hex[..12]).unwrap(), (None, xnode));
        assert!(matches!(
            store.resolve("node@00000000"),
            Err(StoreError::NoSuchCommit(_))
        ));
    }
}
