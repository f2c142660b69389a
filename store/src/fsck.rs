//! Store verification: every pack checksum, every object against its id,
//! and every image's history for missing or damaged objects, naming the
//! images and paths each bad object breaks.

use std::collections::BTreeMap;
use std::rc::Rc;

use rayon::prelude::*;

use crate::error::{Result, StoreError};
use crate::id::{IdMap, IdSet, ObjectId, ObjectKind};
use crate::pack;
use crate::progress::Progress;
use crate::repo::{Location, Store};
use crate::tree::{EntryKind, Extent};

/// One problem fsck found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Problem {
    /// The object, when the problem is about one.
    pub object: Option<String>,
    /// What is wrong.
    pub what: String,
    /// `image:path` places that this breaks.
    pub breaks: Vec<String>,
}

/// The outcome of `fsck`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FsckReport {
    /// Objects whose content was verified.
    pub objects: u64,
    /// Stored bytes read.
    pub bytes: u64,
    /// Packs checked.
    pub packs: u64,
    /// Everything wrong; empty means the store is sound.
    pub problems: Vec<Problem>,
}

type BadUnder = Rc<Vec<(Vec<u8>, ObjectId, String)>>;

impl Store {
    /// Verifies the whole store.
    pub fn fsck(&self, progress: &dyn Progress) -> Result<FsckReport> {
        self.reload_index()?;
        let mut report = FsckReport::default();
        let idx = self.read_index();
        for e in &idx.damaged {
            report.problems.push(Problem {
                object: None,
                what: e.to_string(),
                breaks: Vec::new(),
            });
        }
        let total: u64 = idx
            .packs
            .iter()
            .map(|p| p.file.metadata().map(|m| m.len()).unwrap_or(0))
            .sum();
        progress.phase("verifying packs", Some(total * 2), true);
        for p in &idx.packs {
            report.packs += 1;
            if let Some(why) = pack::check_pack_file(&p.file, &p.name, |n| {
                progress.advance(n);
                std::ops::ControlFlow::Continue(())
            }) {
                report.problems.push(Problem {
                    object: None,
                    what: format!("{}: {why}", p.path.display()),
                    breaks: Vec::new(),
                });
            }
        }
        let locs: Vec<Location> = idx.objects.values().copied().collect();
        let bad: Vec<(ObjectId, String)> = locs
            .par_iter()
            .filter_map(|l| {
                let p = &idx.packs[l.pack as usize];
                progress.advance(u64::from(l.entry.stored_len) + pack::RECORD_HEADER as u64);
                let r =
                    pack::read_record(&p.file, &p.path, &l.entry).and_then(|o| o.decode(&p.path));
                r.err().map(|e| (l.entry.id, e.to_string()))
            })
            .collect();
        report.objects = locs.len() as u64;
        report.bytes = locs.iter().map(|l| u64::from(l.entry.stored_len)).sum();
        drop(idx);

        let bad_ids: IdMap<String> = bad.into_iter().collect();
        let mut breaks: BTreeMap<ObjectId, (String, Vec<String>)> = BTreeMap::new();
        for (id, why) in &bad_ids {
            breaks.insert(*id, (why.clone(), Vec::new()));
        }
        progress.phase("checking images", None, false);
        let mut memo: IdMap<BadUnder> = IdMap::default();
        let mut seen_commits = IdSet::default();
        for (name, head) in self.list_refs()? {
            let mut next = Some(head);
            while let Some(cid) = next.take() {
                if !seen_commits.insert(cid) {
                    break;
                }
                let commit = match self.read_commit(&cid) {
                    Ok(c) => c,
                    Err(e) => {
                        let why = bad_ids.get(&cid).cloned().unwrap_or_else(|| e.to_string());
                        breaks
                            .entry(cid)
                            .or_insert((why, Vec::new()))
                            .1
                            .push(format!("{name}: commit {}", cid.short()));
                        break;
                    }
                };
                for (path, id, why) in self.bad_under(&commit.tree(), &bad_ids, &mut memo).iter() {
                    let p = String::from_utf8_lossy(path);
                    breaks
                        .entry(*id)
                        .or_insert((why.clone(), Vec::new()))
                        .1
                        .push(format!("{name}@{}:/{p}", cid.short()));
                }
                next = commit.parents.first().copied();
            }
        }
        for (id, (why, places)) in breaks {
            report.problems.push(Problem {
                object: Some(id.to_hex()),
                what: why,
                breaks: places,
            });
        }
        progress.finish();
        Ok(report)
    }

    /// Bad or missing objects under a tree, with their paths (memoised:
    /// shared subtrees are checked once).
    fn bad_under(
        &self,
        tree: &ObjectId,
        bad: &IdMap<String>,
        memo: &mut IdMap<BadUnder>,
    ) -> BadUnder {
        if let Some(r) = memo.get(tree) {
            return r.clone();
        }
        let mut out = Vec::new();
        match self.read_tree(tree) {
            Err(e) => {
                let why = bad.get(tree).cloned().unwrap_or_else(|| e.to_string());
                out.push((Vec::new(), *tree, why));
            }
            Ok(t) => {
                for e in &t.entries {
                    match &e.kind {
                        EntryKind::Dir { tree: sub } => {
                            for (p, id, why) in self.bad_under(sub, bad, memo).iter() {
                                let mut full = e.name.clone();
                                if !p.is_empty() {
                                    full.push(b'/');
                                    full.extend_from_slice(p);
                                }
                                out.push((full, *id, why.clone()));
                            }
                        }
                        EntryKind::File { extents, .. } => {
                            for x in extents {
                                let Extent::Data { id, .. } = x else { continue };
                                let why = match bad.get(id) {
                                    Some(w) => Some(w.clone()),
                                    None if !self.contains(id) => Some(
                                        StoreError::Missing {
                                            id: *id,
                                            kind: ObjectKind::Chunk,
                                        }
                                        .to_string(),
                                    ),
                                    None => None,
                                };
                                if let Some(why) = why {
                                    out.push((e.name.clone(), *id, why));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        let r = Rc::new(out);
        memo.insert(*tree, r.clone());
        r
    }
}
