//! The master's side of livesync: which nodes of an image run an older
//! commit, what would change on each (the dry run: paths and bytes, with
//! livesync.skip applied), requests in the node database, and waiting for
//! the nodes' reports. The nodes do the work (see `vnfs_node::livesync`):
//! they pick the request up at their next check-in.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use vnfs_node::glob::{PathGlob, any_covers};
use vnfs_store::diff::Change;
use vnfs_store::{EntryKind, Extent, ObjectId, Store};

use crate::db::NodeDb;
use crate::error::{Error, Result};
use crate::export::lookup;
use crate::node::Node;
use crate::runtime::LivesyncRow;

/// Where a node stands relative to the image's newest commit.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Standing {
    /// Never reported a commit.
    Unknown,
    /// Runs the newest commit.
    UpToDate,
    /// Runs a commit that is not in the image's history.
    Foreign {
        /// The commit it runs.
        commit: String,
    },
    /// Runs an older commit: this is what a livesync changes.
    Behind {
        /// The commit it runs.
        commit: String,
        /// Changed paths that would be written or removed.
        paths: Vec<String>,
        /// Changed paths livesync.skip leaves alone.
        skipped: u64,
        /// Bytes of chunks the node would fetch (uncompressed).
        bytes: u64,
    },
}

/// One node's livesync plan.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodePlan {
    /// Host name.
    pub hostname: String,
    /// NodeID.
    pub nodeid: String,
    /// Where it stands.
    pub standing: Standing,
}

fn store_err(e: vnfs_store::StoreError) -> Error {
    Error::Config(format!("store: {e}"))
}

/// Changed paths from `from` to `to` outside `skip`, the number skipped,
/// and the bytes of chunks the changed files need that `from` lacks.
pub fn changes(
    store: &Store,
    from: &ObjectId,
    to: &ObjectId,
    skip: &[PathGlob],
) -> Result<(Vec<String>, u64, u64)> {
    let diff = store.diff(from, to).map_err(store_err)?;
    let (ta, tb) = (
        store.read_commit(from).map_err(store_err)?.tree(),
        store.read_commit(to).map_err(store_err)?.tree(),
    );
    let mut paths = Vec::new();
    let mut skipped = 0;
    let mut want: BTreeSet<(ObjectId, u64)> = BTreeSet::new();
    let mut have: BTreeSet<ObjectId> = BTreeSet::new();
    for d in &diff.entries {
        let shown = if d.path == "/" {
            "/".to_string()
        } else {
            format!("/{}", d.path)
        };
        if d.path != "/" && any_covers(skip, &shown) {
            skipped += 1;
            continue;
        }
        paths.push(format!("{} {shown}", d.change.letter()));
        if d.kind != "file" {
            continue;
        }
        if matches!(d.change, Change::Added | Change::Modified)
            && let Some(e) = lookup(store, &tb, &d.path_bytes)?
            && let EntryKind::File { extents, .. } = &e.kind
        {
            for x in extents {
                if let Extent::Data { id, len } = x {
                    want.insert((*id, *len));
                }
            }
        }
        if matches!(d.change, Change::Modified)
            && let Some(e) = lookup(store, &ta, &d.path_bytes)?
            && let EntryKind::File { extents, .. } = &e.kind
        {
            for x in extents {
                if let Extent::Data { id, .. } = x {
                    have.insert(*id);
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    let bytes = want
        .iter()
        .filter(|(id, _)| !have.contains(id) && seen.insert(*id))
        .map(|(_, l)| *l)
        .sum();
    Ok((paths, skipped, bytes))
}

/// Plans a livesync of `image` (newest commit `head`) for `nodes`.
pub fn plan(
    store: &Store,
    db: &NodeDb,
    nodes: &[Node],
    head: &ObjectId,
    skip: &[PathGlob],
) -> Result<Vec<NodePlan>> {
    let history: BTreeSet<ObjectId> = store
        .history(*head)
        .map_err(store_err)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut memo: std::collections::HashMap<ObjectId, (Vec<String>, u64, u64)> = Default::default();
    let mut out = Vec::with_capacity(nodes.len());
    for n in nodes {
        let running = db.running(n.nodeid)?.map(|r| r.0).unwrap_or_default();
        let standing = match ObjectId::from_hex(&running) {
            None => Standing::Unknown,
            Some(c) if c == *head => Standing::UpToDate,
            Some(c) if !history.contains(&c) => Standing::Foreign { commit: running },
            Some(c) => {
                let (paths, skipped, bytes) = match memo.get(&c) {
                    Some(v) => v.clone(),
                    None => {
                        let v = changes(store, &c, head, skip)?;
                        memo.insert(c, v.clone());
                        v
                    }
                };
                Standing::Behind {
                    commit: running,
                    paths,
                    skipped,
                    bytes,
                }
            }
        };
        out.push(NodePlan {
            hostname: n.hostname.clone(),
            nodeid: n.nodeid.to_string(),
            standing,
        });
    }
    Ok(out)
}

/// Polls the database until every request in `ids` has a report or
/// `timeout` passes; returns the rows as they are then.
pub fn wait(db: &NodeDb, ids: &[i64], timeout: Duration) -> Result<Vec<LivesyncRow>> {
    let start = Instant::now();
    loop {
        let rows = db.livesync_rows(ids)?;
        if rows.iter().all(|r| r.finished.is_some()) || start.elapsed() >= timeout {
            return Ok(rows);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
