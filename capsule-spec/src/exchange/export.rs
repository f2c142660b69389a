//! Export: a commit's closure written as a capsule, as a stream.
//!
//! Four threads and the rayon pool share the work: one thread reads the
//! large chunks from the packs in runs of neighbouring records (one `pread`
//! each, ahead of the writer, so a cold cache keeps the disk busy); another
//! hashes whole the packs the export copies at least half of, against their
//! names, while their records are written; the runs of the other packs go
//! to the pool, which decompresses every chunk and checks it against its id
//! while the next runs are read; a third thread has the pool build solid
//! blocks (read, verify, recompress small objects) a few blocks ahead; the
//! calling thread writes records in order, hashing them for the trailer.
//! Large chunks are written exactly as stored, never recompressed, so
//! checking does not change a byte of the capsule. Every object is checked
//! before the trailer is written, without which no reader accepts a
//! capsule (unless [`ExportOptions::verify`] is off for the large chunks):
//! a damaged store stops the export, with [`ExchangeError::Damaged`] naming
//! the first bad object in write order (among a pack's that failed its
//! whole check, after the other records), its pack and offset, and where
//! the image uses it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use rayon::prelude::*;
use vnfs_store::{ReadRun, Store, StoredSpan};

use super::plan::{self, ExportOptions, Unit};
use super::{
    ExchangeError, compression_from_store, from_store, kind_from_store, kind_to_store, to_store,
};
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
/// Largest decoding buffer a pool thread keeps between runs: every chunk
/// fits (FastCDC's maximum is 256 KiB); a rare huge tree's does not stay.
const KEEP_SCRATCH: usize = 1 << 20;

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
    /// Packs that do not match their checksums although every object the
    /// export copied from them checked out (the capsule is sound; the
    /// store needs `fsck`), with the reason.
    pub damaged_packs: Vec<DamagedPack>,
}

/// A pack whose whole-file check failed during an export.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DamagedPack {
    /// The pack file.
    pub path: std::path::PathBuf,
    /// Why it failed its check.
    pub why: String,
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

/// [`export`] with a chosen layout and checks ([`ExportOptions`]).
pub fn export_with<W: Write>(
    store: &Store,
    name: &str,
    head: ObjectId,
    base: Option<ObjectId>,
    signer: Option<&SecretKey>,
    out: W,
    opts: &ExportOptions,
) -> Result<(ExportReport, W), ExchangeError> {
    write_capsule(store, name, head, base, signer, out, opts)
        .map_err(|e| with_place(e, store, name, head))
}

/// Adds to a damaged-object error where the image uses the object: looked
/// up only now, so exports that succeed pay nothing for it.
fn with_place(mut e: ExchangeError, store: &Store, name: &str, head: ObjectId) -> ExchangeError {
    if let ExchangeError::Damaged {
        kind, id, place, ..
    } = &mut e
        && place.is_none()
    {
        *place = plan::find_place(store, name, to_store(&head), *kind, to_store(id));
    }
    e
}

/// The export proper: plans, then writes records in plan order while two
/// helper threads prepare single records and solid blocks ahead.
fn write_capsule<W: Write>(
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
    let whole = if opts.verify {
        whole_checked(&runs)?
    } else {
        Vec::new()
    };
    let blocks: Vec<&[(ObjectKind, ObjectId)]> = units
        .iter()
        .filter_map(|u| match u {
            Unit::Block(m) => Some(&m[..]),
            Unit::Single(..) => None,
        })
        .collect();
    let (level, verify) = (opts.level, opts.verify);
    let mut block_count = 0;
    let mut damaged_packs = Vec::new();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<(), ExchangeError> {
        // Receivers are locals of this closure: returning early drops them,
        // which ends both helper threads at their next send.
        let (run_tx, run_rx) = sync_channel(RUNS_AHEAD);
        let (buf_tx, buf_rx) = channel();
        let per_object: HashSet<u32> = match verify {
            true => runs
                .iter()
                .map(ReadRun::pack_number)
                .filter(|p| !whole.iter().any(|(w, _)| w == p))
                .collect(),
            false => HashSet::new(),
        };
        // Set when this closure returns, early on an error too: the check
        // of the remaining packs then stops instead of running to its end.
        let _stop_on_exit = SetOnDrop(&stop);
        let checker = s.spawn(|| check_packs(&whole, &stop));
        s.spawn(move || read_runs(runs, &per_object, &run_tx, &buf_rx));
        let (block_tx, block_rx) = sync_channel(BLOCKS_AHEAD);
        s.spawn(move || build_blocks(store, &blocks, level, &block_tx));
        let mut singles = Singles {
            incoming: run_rx,
            recycle: buf_tx,
            current: None,
        };
        for unit in &units {
            match unit {
                Unit::Single(kind, id) => {
                    let (sp, stored) = singles.next(*kind, *id)?;
                    w.add(&Record {
                        kind: *kind,
                        id: *id,
                        compression: compression_from_store(sp.compression),
                        raw_len: sp.raw_len,
                        stored,
                    })?;
                }
                Unit::Block(_) => {
                    let b = block_rx.recv().map_err(|_| gone())??;
                    w.add_block(&b)?;
                    block_count += 1;
                }
            }
        }
        // Before the trailer: until it is written, no reader accepts the
        // capsule, so a damaged pack's objects may go out ahead of its check.
        let failed = checker.join().map_err(|_| gone())?;
        damaged_packs = name_damage(&whole, failed)?;
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
        damaged_packs,
    };
    Ok((report, s.inner))
}

/// The error for a helper thread that ended without a result.
fn gone() -> ExchangeError {
    CapsuleError::Input("an export helper thread stopped early".into()).into()
}

/// A run of single records read from its pack, each record header checked
/// against the index (and, when verifying, each object against its id).
struct ReadyRun {
    buf: Vec<u8>,
    spans: Vec<StoredSpan>,
}

/// A run as the writer receives it.
type RunResult = Result<ReadyRun, ExchangeError>;

/// Smallest share of a pack, in bytes, that an export must copy for the
/// whole pack to be checked against its name instead of each object being
/// decoded: hashing a byte costs about a tenth of decoding and hashing the
/// content it holds, and reading the rest of the pack at most doubles the
/// pack reads.
const WHOLE_CHECK_SHARE: u64 = 2;

/// The packs to check whole, in the order the export first reads them,
/// each with the runs the export copies from it: those at least
/// 1/[`WHOLE_CHECK_SHARE`] of whose bytes the runs copy. The runs of other
/// packs are checked object by object.
fn whole_checked(runs: &[ReadRun]) -> Result<Vec<(u32, Vec<ReadRun>)>, ExchangeError> {
    let mut by_pack: Vec<(u32, u64, Vec<ReadRun>)> = Vec::new();
    let mut slot: HashMap<u32, usize> = HashMap::new();
    for r in runs {
        let i = *slot.entry(r.pack_number()).or_insert_with(|| {
            by_pack.push((r.pack_number(), 0, Vec::new()));
            by_pack.len() - 1
        });
        by_pack[i].1 += r.byte_len() as u64;
        by_pack[i].2.push(r.clone());
    }
    let mut out = Vec::new();
    for (pack, bytes, runs) in by_pack {
        if bytes.saturating_mul(WHOLE_CHECK_SHARE) >= runs[0].pack_len()? {
            out.push((pack, runs));
        }
    }
    Ok(out)
}

/// Hashes each pack in `whole` against its name, while the writer copies
/// their records (a cold pack is read once from disk, by the check, and the
/// writer's reads find it cached); returns the packs that do not match,
/// with the reason.
fn check_packs(whole: &[(u32, Vec<ReadRun>)], stop: &AtomicBool) -> Vec<(u32, String)> {
    whole
        .iter()
        .filter_map(|(p, runs)| runs[0].check_pack(stop).map(|why| (*p, why)))
        .collect()
}

/// Sets its flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// For each pack that failed its whole check: checks every object the
/// export copied from it, in copy order, and returns the first damaged one
/// as the error (the capsule must not be finished). When all of them check
/// out, the damage lies elsewhere in the pack: the capsule is sound and
/// the pack is returned for a warning.
fn name_damage(
    whole: &[(u32, Vec<ReadRun>)],
    failed: Vec<(u32, String)>,
) -> Result<Vec<DamagedPack>, ExchangeError> {
    let mut damaged = Vec::new();
    for (pack, why) in failed {
        let Some((_, runs)) = whole.iter().find(|(p, _)| *p == pack) else {
            continue;
        };
        let mut buf = Vec::new();
        for run in runs {
            run.fill(&mut buf)?;
            buf = checked_run(run, std::mem::take(&mut buf))?.buf;
        }
        damaged.push(DamagedPack {
            path: runs[0].path().to_path_buf(),
            why,
        });
    }
    Ok(damaged)
}

/// Reads the runs of single records in plan order, ahead of the writer.
/// The runs of packs in `per_object` are checked object by object on the
/// rayon pool while the next ones are read; the others are copied as read
/// (their packs are checked whole, or not at all with `--no-verify`).
/// Either way the writer gets, per run and in order, the channel its
/// result arrives on. Stops after a read error or when the writer has
/// gone; returns once every check it started has ended.
fn read_runs(
    runs: Vec<ReadRun>,
    per_object: &HashSet<u32>,
    ahead: &SyncSender<Receiver<RunResult>>,
    recycled: &Receiver<Vec<u8>>,
) {
    rayon::in_place_scope(|s| {
        for run in runs {
            let mut buf = recycled.try_recv().unwrap_or_default();
            // Capacity 1: a pool thread never blocks on sending its result.
            let (tx, rx) = sync_channel(1);
            let failed = match run.fill(&mut buf) {
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                    true
                }
                Ok(()) if per_object.contains(&run.pack_number()) => {
                    s.spawn(move |_| {
                        let _ = tx.send(checked_run(&run, buf));
                    });
                    false
                }
                Ok(()) => {
                    let _ = tx.send(located_run(&run, buf));
                    false
                }
            };
            if ahead.send(rx).is_err() || failed {
                return;
            }
        }
    });
}

/// The records of a run read into `buf`, headers checked, contents not.
fn located_run(run: &ReadRun, buf: Vec<u8>) -> RunResult {
    let spans = run.spans(&buf)?;
    Ok(ReadyRun { buf, spans })
}

/// The records of a run read into `buf`, every object decoded and checked
/// against its id; the first bad one, in run order, is the error.
fn checked_run(run: &ReadRun, buf: Vec<u8>) -> RunResult {
    let ready = located_run(run, buf)?;
    CHECK_SCRATCH.with(|raw| -> Result<(), ExchangeError> {
        let mut raw = raw.borrow_mut();
        for sp in &ready.spans {
            verified(sp, &ready.buf[sp.range.clone()], run.path(), &mut raw)?;
        }
        if raw.capacity() > KEEP_SCRATCH {
            *raw = Vec::new();
        }
        Ok(())
    })?;
    Ok(ready)
}

/// Decodes one object as read from its pack and checks it against its id
/// (the capsule reader's check); returns its content. A failure names the
/// object, its pack and its record's offset there.
fn verified<'a>(
    sp: &StoredSpan,
    stored: &'a [u8],
    pack: &Path,
    raw: &'a mut Vec<u8>,
) -> Result<&'a [u8], ExchangeError> {
    let (kind, id) = (kind_from_store(sp.kind), from_store(&sp.id));
    let compression = compression_from_store(sp.compression);
    crate::reader::decode_verified(kind, id, compression, sp.raw_len, stored, raw).map_err(
        |damage| ExchangeError::Damaged {
            kind,
            id,
            pack: pack.to_path_buf(),
            offset: sp.offset,
            why: damage.to_string(),
            place: None,
        },
    )
}

/// The writer's end of the single records' pipeline: runs arrive in plan
/// order, their objects are handed out one by one, and emptied buffers go
/// back to the reading thread.
struct Singles {
    incoming: Receiver<Receiver<RunResult>>,
    recycle: Sender<Vec<u8>>,
    current: Option<(ReadyRun, usize)>,
}

impl Singles {
    /// The next single record's span and stored bytes; the plan says it is
    /// `kind` `id`.
    fn next(
        &mut self,
        kind: ObjectKind,
        id: ObjectId,
    ) -> Result<(&StoredSpan, &[u8]), ExchangeError> {
        while self
            .current
            .as_ref()
            .is_none_or(|(run, i)| *i == run.spans.len())
        {
            self.advance()?;
        }
        let Some((run, i)) = self.current.as_mut() else {
            return Err(gone());
        };
        let sp = &run.spans[*i];
        *i += 1;
        if from_store(&sp.id) != id {
            return Err(CapsuleError::Input(format!(
                "pack read order differs from the plan at {kind} {id}"
            ))
            .into());
        }
        Ok((sp, &run.buf[sp.range.clone()]))
    }

    /// Recycles the finished run's buffer and waits for the next run.
    fn advance(&mut self) -> Result<(), ExchangeError> {
        if let Some((done, _)) = self.current.take() {
            let _ = self.recycle.send(done.buf);
        }
        let result = self.incoming.recv().map_err(|_| gone())?;
        let run = result.recv().map_err(|_| gone())??;
        self.current = Some((run, 0));
        Ok(())
    }
}

/// Builds the solid blocks in order on the rayon pool, as many at once as
/// it has threads, and sends them to the writer; stops after a failure or
/// when the writer has gone.
fn build_blocks(
    store: &Store,
    blocks: &[&[(ObjectKind, ObjectId)]],
    level: i32,
    out: &SyncSender<Result<Block, ExchangeError>>,
) {
    let width = rayon::current_num_threads().max(1);
    for window in blocks.chunks(width) {
        let built: Vec<_> = window
            .par_iter()
            .map(|m| build_block(store, m, level))
            .collect();
        for b in built {
            let failed = b.is_err();
            if out.send(b).is_err() || failed {
                return;
            }
        }
    }
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
                let content = verified(&sp, &buf[sp.range.clone()], run.path(), decoded)?;
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
    /// A pool thread's decompression buffer for checking single records,
    /// kept across runs so no chunk costs an allocation.
    static CHECK_SCRATCH: std::cell::RefCell<Vec<u8>> =
        const { std::cell::RefCell::new(Vec::new()) };
}
