//! Applying a livesync on a running node: fetch the new commit's trees
//! (only those the cache lacks), build the node's view, diff it against
//! the view the node runs (Merkle: unchanged subtrees cost nothing), fetch
//! only the chunks of changed files, by delta against their old versions
//! (`crate::deltafetch`), then change the root in place:
//! removals deepest first; new and changed entries staged with the store's
//! checkout in a directory inside the root and renamed over their paths
//! (each replacement atomic); hard links re-made; directory metadata
//! restored last. Paths covered by the image's livesync.skip are left alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use vnfs_store::diff::Change;
use vnfs_store::{Commit, Entry, EntryKind, Meta, NoProgress, ObjectId, ObjectKind, Store, Tree};

use crate::client::Master;
use crate::deltafetch;
use crate::error::{AgentError, Result, io};
use crate::fetch::FetchStats;
use crate::glob::any_covers;
use crate::proto::{LivesyncOrder, LivesyncReport};
use crate::provision::{open_cache, parse_commit, prepare_view};
use crate::state::NodeState;

/// What a livesync would change or changed.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Paths removed (deepest first when applied).
    pub remove: Vec<Vec<u8>>,
    /// Entries written: path and the entry of the new view.
    pub write: Vec<(Vec<u8>, Entry)>,
    /// Directories whose metadata alone changed.
    pub dir_meta: Vec<Vec<u8>>,
    /// Changed paths left alone (livesync.skip).
    pub skipped: u64,
}

/// Applies `order` to the node described by `state`; always returns a
/// report (a failure is reported with `ok: false`).
pub fn apply(
    master: &Master,
    cache_dir: &Path,
    state: &mut NodeState,
    order: &LivesyncOrder,
    threads: usize,
) -> LivesyncReport {
    let before = master.counters.wire_bytes();
    let mut report = match apply_inner(master, cache_dir, state, order, threads) {
        Ok(r) => r,
        Err(e) => LivesyncReport {
            id: order.id,
            commit: state.commit.clone(),
            ok: false,
            error: e.to_string(),
            ..LivesyncReport::default()
        },
    };
    report.bytes = master.counters.wire_bytes() - before;
    report
}

fn apply_inner(
    master: &Master,
    cache_dir: &Path,
    state: &mut NodeState,
    order: &LivesyncOrder,
    threads: usize,
) -> Result<LivesyncReport> {
    let cache = open_cache(cache_dir)?;
    let target = parse_commit(master, &order.commit)?;
    let mut report = LivesyncReport {
        id: order.id,
        commit: order.commit.clone(),
        ok: true,
        ..LivesyncReport::default()
    };
    if state.commit == order.commit {
        return Ok(report);
    }
    let old_view = ObjectId::from_hex(&state.view).ok_or_else(|| {
        AgentError::Invalid(format!(
            "the node state names no valid view commit ('{}')",
            state.view
        ))
    })?;
    let mut stats = FetchStats::default();
    let (view, config) = prepare_view(
        master,
        &cache,
        &state.image,
        &target,
        &state.export_root,
        &mut stats,
    )?;
    let skip = config.skip_globs().map_err(|source| AgentError::Config {
        image: state.image.clone(),
        source,
    })?;
    let plan = plan(&cache, &old_view, &view.commit, &skip)?;
    let mut files = Vec::new();
    for (p, e) in &plan.write {
        collect_files(&cache, p, e, &mut files)?;
    }
    deltafetch::chunks(master, &cache, &old_view, &files, threads, &mut stats)?;
    let new_commit = cache.read_commit(&view.commit)?;
    execute(&cache, &state.root, &plan, &new_commit)?;
    report.written = plan.write.len() as u64 + plan.dir_meta.len() as u64;
    report.removed = plan.remove.len() as u64;
    report.skipped = plan.skipped;
    state.commit = target.to_hex();
    state.view = view.commit.to_hex();
    state.save(cache_dir)?;
    Ok(report)
}

fn path_str(rel: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(rel))
}

/// Works out what to change to move a root from view `old` to view `new`.
pub fn plan(
    cache: &Store,
    old: &ObjectId,
    new: &ObjectId,
    skip: &[crate::glob::PathGlob],
) -> Result<Plan> {
    let diff = cache.diff(old, new)?;
    let new_commit = cache.read_commit(new)?;
    let mut entries: HashMap<Vec<u8>, Entry> = HashMap::new();
    cache.walk(&new_commit.tree(), &mut |rel, e| {
        entries.insert(rel.to_vec(), e.clone());
        Ok(true)
    })?;
    let mut plan = Plan::default();
    let mut whole_dirs: BTreeSet<Vec<u8>> = BTreeSet::new();
    for d in &diff.entries {
        if d.path_bytes == b"/" {
            continue; // the root's own metadata is restored at the end
        }
        if any_covers(skip, &path_str(&d.path_bytes)) {
            plan.skipped += 1;
            continue;
        }
        let under_new_dir = ancestors(&d.path_bytes).any(|a| whole_dirs.contains(a));
        match d.change {
            Change::Removed => plan.remove.push(d.path_bytes.clone()),
            Change::Added | Change::Modified | Change::Metadata if under_new_dir => {}
            Change::Metadata if d.kind == "dir" => plan.dir_meta.push(d.path_bytes.clone()),
            Change::Added | Change::Modified | Change::Metadata => {
                let e = entries.get(&d.path_bytes).cloned().ok_or_else(|| {
                    AgentError::Invalid(format!(
                        "diff names {} but the new view lacks it",
                        path_str(&d.path_bytes)
                    ))
                })?;
                if matches!(e.kind, EntryKind::Dir { .. }) {
                    whole_dirs.insert(d.path_bytes.clone());
                }
                plan.write.push((d.path_bytes.clone(), e));
            }
        }
    }
    // Hard links whose target is rewritten must be re-made: a rename
    // replaced the target's inode.
    let written: BTreeSet<Vec<u8>> = plan.write.iter().map(|(p, _)| p.clone()).collect();
    let mut relink = Vec::new();
    for (p, e) in &entries {
        if let EntryKind::HardLink { target } = &e.kind
            && written.contains(target)
            && !written.contains(p)
            && !any_covers(skip, &path_str(p))
        {
            relink.push((p.clone(), e.clone()));
        }
    }
    relink.sort_by(|a, b| a.0.cmp(&b.0));
    plan.write.extend(relink);
    Ok(plan)
}

fn ancestors(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    p.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(move |(i, _)| &p[..i])
}

/// The files an entry brings: itself, or every file under a directory,
/// with their root-relative paths.
fn collect_files(
    cache: &Store,
    path: &[u8],
    e: &Entry,
    out: &mut Vec<(Vec<u8>, Entry)>,
) -> Result<()> {
    match &e.kind {
        EntryKind::File { .. } => out.push((path.to_vec(), e.clone())),
        EntryKind::Dir { tree } => {
            cache.walk(tree, &mut |rel, c| {
                if let EntryKind::File { .. } = &c.kind {
                    let mut p = path.to_vec();
                    p.push(b'/');
                    p.extend_from_slice(rel);
                    out.push((p, c.clone()));
                }
                Ok(true)
            })?;
        }
        _ => {}
    }
    Ok(())
}

/// Changes the root according to the plan.
fn execute(cache: &Store, root: &Path, plan: &Plan, new_commit: &Commit) -> Result<()> {
    let at = |rel: &[u8]| root.join(OsStr::from_bytes(rel));
    let mut parents: BTreeSet<Vec<u8>> = BTreeSet::new();
    let parent_of = |rel: &[u8]| -> Vec<u8> {
        rel.iter()
            .rposition(|&b| b == b'/')
            .map(|i| rel[..i].to_vec())
            .unwrap_or_default()
    };

    // 1. Removals, children before parents.
    for rel in plan.remove.iter().rev() {
        let p = at(rel);
        let r = match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir(&p),
            Ok(_) => std::fs::remove_file(&p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => {}
            // A directory still holding skipped paths stays.
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
            Err(e) => return Err(io(&p)(e)),
        }
        parents.insert(parent_of(rel));
    }

    // 2. Stage every new or changed entry (but hard links) with one
    //    checkout of a flat tree, then rename each into place.
    let stage_dir = root.join(format!(".vnfs-livesync.{}", std::process::id()));
    let staged: Vec<(usize, &Vec<u8>, &Entry)> = plan
        .write
        .iter()
        .enumerate()
        .filter(|(_, (_, e))| !matches!(e.kind, EntryKind::HardLink { .. }))
        .map(|(i, (p, e))| (i, p, e))
        .collect();
    let result = (|| -> Result<()> {
        if !staged.is_empty() {
            let w = cache.writer()?;
            let tree = Tree {
                entries: staged
                    .iter()
                    .map(|(i, _, e)| Entry {
                        name: format!("{i:08}").into_bytes(),
                        ..(*e).clone()
                    })
                    .collect(),
            };
            let tid = w.put(ObjectKind::Tree, &tree.encode())?;
            let c = Commit {
                root: Entry {
                    name: Vec::new(),
                    kind: EntryKind::Dir { tree: tid },
                    meta: Meta {
                        mode: 0o700,
                        ..Meta::default()
                    },
                },
                parents: Vec::new(),
                timestamp: 0,
                message: "livesync staging".into(),
                metadata: BTreeMap::new(),
            };
            let cid = w.put(ObjectKind::Commit, &c.encode())?;
            w.flush()?;
            drop(w);
            cache.checkout(&cid, &stage_dir, &NoProgress)?;
        } else {
            std::fs::create_dir(&stage_dir).map_err(io(&stage_dir))?;
        }
        for (i, (rel, e)) in plan.write.iter().enumerate() {
            let dest = at(rel);
            let src: PathBuf = match &e.kind {
                EntryKind::HardLink { target } => {
                    let tmp = stage_dir.join(format!("link-{i:08}"));
                    let t = at(target);
                    std::fs::hard_link(&t, &tmp).map_err(io(&t))?;
                    tmp
                }
                _ => stage_dir.join(format!("{i:08}")),
            };
            if matches!(e.kind, EntryKind::Dir { .. })
                && let Ok(m) = std::fs::symlink_metadata(&dest)
            {
                // rename(2) cannot replace a directory with a non-empty one.
                if m.is_dir() {
                    std::fs::remove_dir_all(&dest).map_err(io(&dest))?;
                } else {
                    std::fs::remove_file(&dest).map_err(io(&dest))?;
                }
            }
            std::fs::rename(&src, &dest).map_err(io(&dest))?;
            parents.insert(parent_of(rel));
        }
        Ok(())
    })();
    let cleanup = std::fs::remove_dir_all(&stage_dir);
    result?;
    cleanup.map_err(io(&stage_dir))?;

    // 3. Directory metadata, deepest first: renames changed the parents'
    //    mtimes, and some directories changed only their metadata.
    let mut dirs: BTreeSet<Vec<u8>> = parents;
    dirs.extend(plan.dir_meta.iter().cloned());
    dirs.insert(Vec::new());
    let mut metas: HashMap<Vec<u8>, Meta> = HashMap::new();
    for d in &dirs {
        if d.is_empty() {
            metas.insert(Vec::new(), new_commit.root.meta.clone());
        }
    }
    cache.walk(&new_commit.tree(), &mut |rel, e| {
        if dirs.contains(rel) && matches!(e.kind, EntryKind::Dir { .. }) {
            metas.insert(rel.to_vec(), e.meta.clone());
        }
        Ok(matches!(e.kind, EntryKind::Dir { .. }))
    })?;
    let mut order: Vec<&Vec<u8>> = metas.keys().collect();
    order.sort_by(|a, b| b.len().cmp(&a.len()).then(b.cmp(a)));
    for rel in order {
        let p = if rel.is_empty() {
            root.to_path_buf()
        } else {
            at(rel)
        };
        if p.is_dir() {
            vnfs_store::checkout::set_metadata(&p, &metas[rel], false)?;
        }
    }
    Ok(())
}
