//! Garbage collection: objects no image (nor any version of one) reaches
//! are removed by rewriting the packs that hold them.
//!
//! gc holds the store lock exclusively, so it waits for every running
//! commit or import (they hold it shared) and none starts meanwhile: an
//! object written by a transaction in progress is never collected.
//! New packs are durable before old ones go, so a kill at any point leaves
//! every reachable object in at least one indexed pack.

use std::fs;

use crate::error::{IoContext, Result};
use crate::id::IdSet;
use crate::pack::{self, PackWriter};
use crate::progress::Progress;
use crate::repo::{Store, StoreLock};

/// What gc did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GcReport {
    /// Objects reachable from some image.
    pub live_objects: u64,
    /// Objects removed (including duplicate copies).
    pub removed_objects: u64,
    /// Packs rewritten or removed.
    pub packs_rewritten: u64,
    /// Disk bytes before and after.
    pub bytes_before: u64,
    /// Disk bytes after.
    pub bytes_after: u64,
    /// Bytes of leftovers removed besides: temporary files of writers that
    /// were killed or interrupted, and packs that never got an index
    /// (neither counts in the disk bytes above, which are the packs').
    pub leftover_bytes: u64,
}

impl Store {
    /// Removes unreachable objects. Refuses to run on a store with missing
    /// or unreadable trees (it could not know what they reference).
    pub fn gc(&self, progress: &dyn Progress) -> Result<GcReport> {
        let _lock = StoreLock::exclusive(self.root())?;
        self.reload_index()?;
        let mut report = GcReport {
            bytes_before: self.disk_usage()?,
            ..GcReport::default()
        };
        progress.phase("marking", None, false);
        let mut live = IdSet::default();
        for c in self.reachable_commits()? {
            live.insert(c);
            let tree = self.read_commit(&c)?.tree();
            self.tree_objects(&tree, &mut live)?;
            progress.advance(1);
        }
        report.live_objects = live.len() as u64;

        let idx = self.read_index();
        // A pack is kept as is when every object in it is live and this is
        // the copy the index uses; otherwise its live objects move.
        let mut keep_in: Vec<Vec<pack::IndexEntry>> = vec![Vec::new(); idx.packs.len()];
        let mut dead_in = vec![0u64; idx.packs.len()];
        for loc in idx.objects.values() {
            if live.contains(&loc.entry.id) {
                keep_in[loc.pack as usize].push(loc.entry);
            }
        }
        for (i, p) in idx.packs.iter().enumerate() {
            dead_in[i] = (p.entries - keep_in[i].len()) as u64;
        }
        let victims: Vec<usize> = (0..idx.packs.len()).filter(|&i| dead_in[i] > 0).collect();
        let moving: u64 = victims
            .iter()
            .map(|&i| {
                keep_in[i]
                    .iter()
                    .map(|e| u64::from(e.stored_len))
                    .sum::<u64>()
            })
            .sum();
        progress.phase("repacking", Some(moving), true);
        let mut out: Option<PackWriter> = None;
        for &i in &victims {
            let p = &idx.packs[i];
            let mut entries = keep_in[i].clone();
            entries.sort_by_key(|e| e.offset);
            for e in entries {
                let obj = pack::read_record(&p.file, &p.path, &e)?;
                if out.is_none() {
                    out = Some(PackWriter::create(&self.tmp_dir())?);
                }
                if let Some(w) = out.as_mut() {
                    w.add(&obj)?;
                }
                progress.advance(u64::from(e.stored_len));
            }
            report.removed_objects += dead_in[i];
        }
        if let Some(w) = out.take()
            && !w.is_empty()
        {
            w.finish(&self.packs_dir())?;
        }
        for &i in &victims {
            let p = &idx.packs[i];
            let idx_path = p.path.with_extension("idx");
            fs::remove_file(&idx_path).at(&idx_path)?;
            fs::remove_file(&p.path).at(&p.path)?;
            report.packs_rewritten += 1;
        }
        drop(idx);
        report.leftover_bytes = self.remove_leftovers()?;
        self.reload_index()?;
        report.bytes_after = self.disk_usage()?;
        progress.finish();
        Ok(report)
    }

    /// Temp files of killed writers, packs that never got an index, stat
    /// caches of deleted images. Only safe under the exclusive lock.
    /// Returns the bytes of the first two removed.
    fn remove_leftovers(&self) -> Result<u64> {
        let mut freed = 0;
        let mut remove = |p: &std::path::Path| {
            let len = fs::symlink_metadata(p).map(|m| m.len()).unwrap_or(0);
            if fs::remove_file(p).is_ok() {
                freed += len;
            }
        };
        let tmp = self.tmp_dir();
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                remove(&e.path());
            }
        }
        if let Ok(rd) = fs::read_dir(self.packs_dir()) {
            for sub in rd.flatten() {
                let Ok(files) = fs::read_dir(sub.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    let p = f.path();
                    if p.extension().is_some_and(|e| e == "pack")
                        && !p.with_extension("idx").exists()
                    {
                        remove(&p);
                    }
                }
            }
        }
        let names: Vec<String> = self.list_refs()?.into_iter().map(|(n, _)| n).collect();
        if let Ok(rd) = fs::read_dir(self.root().join("cache/stat")) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if !names.contains(&n) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(freed)
    }
}
