//! Export: a commit's closure written as a capsule, as a stream.
//!
//! Three threads share the work: one reads the large chunks from the packs
//! in runs of neighbouring records (one `pread` each, ahead of the writer,
//! so a cold cache keeps the disk busy), the rayon pool builds solid blocks
//! (read, verify, recompress small objects) a few blocks ahead, and the
//! calling thread writes records in order, hashing them for the trailer.
//! Large chunks are copied exactly as stored: no decompression, no
//! recompression.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::sync::mpsc::{channel, sync_channel};

use rayon::prelude::*;
use vnfs_store::{ReadRun, Store, StoreError};

use super::plan::{self, ExportOptions, Unit};
use super::{ExchangeError, compression_from_store, from_store, kind_to_store, to_store};
use crate::error::CapsuleError;
use crate::id::{ObjectId, ObjectKind};
use crate::keys::SecretKey;
use crate::manifest::{CommitInfo, Manifest};
use crate::metadata::ImageMetadata;
use crate::writer::{Block, BlockBuilder, CapsuleWriter, Record};

/// Largest pack read for single records.
const RUN_MAX: usize = 4 << 20;
/// Largest gap between two records read in one go (read and skipped).
const RUN_GAP: usize = 64 << 10;
/// Runs read ahead of the writer.
const RUNS_AHEAD: usize = 4;
/// Blocks built ahead of the writer.
const BLOCKS_AHEAD: usize = 4;

/// What [`export`] produced.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExportReport {
    /// The manifest written.
    #[serde(skip)]
    pub manifest: Manifest,
    /// Convention file name (`<os>-<version>-<release>.<state>.<arch>.vnfs`).
    pub file_name: String,
    /// Objects written.
    pub objects: u64,
    /// Records written (single objects and solid blocks).
    pub records: u64,
    /// Solid blocks among them.
    pub blocks: u64,
    /// Stored bytes of all records.
    pub stored_bytes: u64,
    /// Raw bytes of all objects.
    pub raw_bytes: u64,
    /// Capsule size.
    pub capsule_bytes: u64,
    /// Whole-file checksum, hex.
    pub file_hash: String,
    /// Signer key, when signed.
    pub signed_by: Option<String>,
}

/// The manifest for exporting `head` as image `name` (a delta over `base`
/// if given) and the records to write, in order.
pub(crate) fn plan_export(
    store: &Store,
    name: &str,
    head: ObjectId,
    base: Option<ObjectId>,
    opts: &ExportOptions,
) -> Result<(Manifest, Vec<Unit>), ExchangeError> {
    let exclude = match base {
        Some(b) => Some(
            plan::walk(store, to_store(&b), None)?
                .into_iter()
                .map(|(_, id)| id)
                .collect::<HashSet<_>>(),
        ),
        None => None,
    };
    let objects = plan::walk(store, to_store(&head), exclude.as_ref())?;
    let units = plan::layout(store, &objects, opts)?;

    let head_commit = store.read_commit(&to_store(&head))?;
    let meta = ImageMetadata::from_commit(&head_commit.metadata, name)?;
    // History: first-parent chain from head down to (not including) base.
    let mut history = Vec::new();
    for (id, c) in store.history(to_store(&head))? {
        if Some(from_store(&id)) == base {
            break;
        }
        history.push(CommitInfo {
            id: from_store(&id),
            tree: from_store(&c.tree()),
            parents: c.parents.iter().map(from_store).collect(),
            timestamp: c.timestamp,
            message: c.message.clone(),
            // The VNFS keys are already manifest fields; keep the rest.
            metadata: c
                .metadata
                .iter()
                .filter(|(k, _)| !k.starts_with("vnfs."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        });
    }
    let manifest = Manifest {
        name: name.to_owned(),
        naming: meta.naming,
        config: meta.config,
        recipe: meta.recipe,
        lock: meta.lock,
        packages: meta.packages,
        head,
        base,
        history,
    };
    manifest
        .validate()
        .map_err(|e| CapsuleError::Input(e.to_string()))?;
    Ok((manifest, units))
}

/// Writes a capsule of image `name` at commit `head` (a delta over `base`
/// if given) into `out`, with the default layout.
pub fn export<W: Write>(
    store: &Store,
    name: &str,
    head: ObjectId,
    base: Option<ObjectId>,
    signer: Option<&SecretKey>,
    out: W,
) -> Result<(ExportReport, W), ExchangeError> {
    export_with(
        store,
        name,
        head,
        base,
        signer,
        out,
        &ExportOptions::default(),
    )
}

/// [`export`] with a chosen layout.
pub fn export_with<W: Write>(
    store: &Store,
    name: &str,
    head: ObjectId,
    base: Option<ObjectId>,
    signer: Option<&SecretKey>,
    out: W,
    opts: &ExportOptions,
) -> Result<(ExportReport, W), ExchangeError> {
    let (manifest, units) = plan_export(store, name, head, base, opts)?;
    let mut w = CapsuleWriter::new(out, &manifest, signer)?;
    let singles: Vec<_> = units
        .iter()
        .filter_map(|u| match u {
            Unit::Single(k, id) => Some((to_store(id), kind_to_store(*k))),
            Unit::Block(_) => None,
        })
        .collect();
    let runs = store.plan_reads(&singles, RUN_MAX, RUN_GAP)?;
    let blocks: Vec<&[(ObjectKind, ObjectId)]> = units
        .iter()
        .filter_map(|u| match u {
            Unit::Block(m) => Some(&m[..]),
            Unit::Single(..) => None,
        })
        .collect();
    let level = opts.level;
    let mut block_count = 0;
    std::thread::scope(|s| -> Result<(), ExchangeError> {
        // Receivers are locals of this closure: returning early drops them,
        // which ends both helper threads at their next send.
        let (run_tx, run_rx) = sync_channel::<Result<(ReadRun, Vec<u8>), StoreError>>(RUNS_AHEAD);
        let (buf_tx, buf_rx) = channel::<Vec<u8>>();
        s.spawn(move || {
            for run in runs {
                let mut buf = buf_rx.try_recv().unwrap_or_default();
                let r = run.fill(&mut buf).map(|()| (run, buf));
                let failed = r.is_err();
                if run_tx.send(r).is_err() || failed {
                    return;
                }
            }
        });
        let (block_tx, block_rx) = sync_channel::<Result<Block, ExchangeError>>(BLOCKS_AHEAD);
        s.spawn(move || {
            let width = rayon::current_num_threads().max(1);
            for window in blocks.chunks(width) {
                let built: Vec<_> = window
                    .par_iter()
                    .map(|m| build_block(store, m, level))
                    .collect();
                for b in built {
                    let failed = b.is_err();
                    if block_tx.send(b).is_err() || failed {
                        return;
                    }
                }
            }
        });
        let gone = || CapsuleError::Input("an export helper thread stopped early".into());
        // The run being copied: its buffer, its records, the next one.
        let mut run: Option<(Vec<u8>, Vec<vnfs_store::StoredSpan>, usize)> = None;
        for unit in &units {
            match unit {
                Unit::Single(kind, id) => {
                    if run.as_ref().is_none_or(|(_, spans, i)| *i == spans.len()) {
                        if let Some((buf, _, _)) = run.take() {
                            let _ = buf_tx.send(buf);
                        }
                        let (r, buf) = run_rx.recv().map_err(|_| gone())??;
                        let spans = r.spans(&buf)?;
                        run = Some((buf, spans, 0));
                    }
                    let Some((buf, spans, i)) = run.as_mut() else {
                        return Err(gone().into());
                    };
                    let sp = &spans[*i];
                    *i += 1;
                    if from_store(&sp.id) != *id {
                        return Err(CapsuleError::Input(format!(
                            "pack read order differs from the plan at {kind} {id}"
                        ))
                        .into());
                    }
                    w.add(&Record {
                        kind: *kind,
                        id: *id,
                        compression: compression_from_store(sp.compression),
                        raw_len: sp.raw_len,
                        stored: &buf[sp.range.clone()],
                    })?;
                }
                Unit::Block(_) => {
                    let b = block_rx.recv().map_err(|_| gone())??;
                    w.add_block(&b)?;
                    block_count += 1;
                }
            }
        }
        Ok(())
    })?;
    let s = w.finish()?;
    let report = ExportReport {
        file_name: manifest.naming.file_name(),
        manifest,
        objects: s.objects,
        records: s.records,
        blocks: block_count,
        stored_bytes: s.stored_total,
        raw_bytes: s.raw_total,
        capsule_bytes: s.bytes,
        file_hash: hex::encode(s.file_hash),
        signed_by: s.signed_by.map(|k| k.to_string()),
    };
    Ok((report, s.inner))
}

/// Reads (verifying each id: a corrupt store object must not travel) and
/// compresses the members of one block. Members are read in runs of
/// neighbouring pack records, one `pread` each, as the large chunks are:
/// reading the small objects one by one cost a system call and two
/// allocations each, a third of a block's time.
fn build_block(
    store: &Store,
    members: &[(ObjectKind, ObjectId)],
    level: i32,
) -> Result<Block, ExchangeError> {
    let wanted: Vec<_> = members
        .iter()
        .map(|(k, id)| (to_store(id), kind_to_store(*k)))
        .collect();
    let runs = store.plan_reads(&wanted, RUN_MAX, RUN_GAP)?;
    // Runs follow pack order, which may differ from the block's order:
    // contents are gathered in an arena, then laid out in member order.
    let mut at: Vec<Option<std::ops::Range<usize>>> = vec![None; members.len()];
    let mut arena = Vec::new();
    let position: std::collections::HashMap<ObjectId, usize> = members
        .iter()
        .enumerate()
        .map(|(i, (_, id))| (*id, i))
        .collect();
    BLOCK_READ.with(|scratch| -> Result<(), ExchangeError> {
        let mut scratch = scratch.borrow_mut();
        let (buf, decoded) = &mut *scratch;
        for run in runs {
            run.fill(buf)?;
            for sp in run.spans(buf)? {
                let id = from_store(&sp.id);
                // plan_reads checked the stored kind against the member's.
                let Some(&i) = position.get(&id) else {
                    return Err(CapsuleError::Input(format!(
                        "pack read returned object {id}, which the block does not hold"
                    ))
                    .into());
                };
                let corrupt = |why: String| StoreError::Corrupt {
                    id: sp.id,
                    kind: sp.kind,
                    where_: run.path().to_path_buf(),
                    why,
                };
                let stored = &buf[sp.range.clone()];
                let content = crate::reader::decode(
                    compression_from_store(sp.compression),
                    sp.raw_len,
                    stored,
                    decoded,
                )
                .map_err(corrupt)?;
                if members[i].0.id_of(content) != id {
                    return Err(corrupt("content does not match its id".into()).into());
                }
                arena.extend_from_slice(content);
                at[i] = Some(arena.len() - content.len()..arena.len());
            }
        }
        Ok(())
    })?;
    let mut b = BlockBuilder::new();
    for ((kind, id), range) in members.iter().zip(at) {
        let Some(range) = range else {
            return Err(
                CapsuleError::Input(format!("{kind} {id} was not read from its pack")).into(),
            );
        };
        b.push(*kind, *id, &arena[range])?;
    }
    Ok(b.finish(level)?)
}

thread_local! {
    /// A block builder's run buffer and decompression buffer, kept across
    /// blocks.
    static BLOCK_READ: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}
