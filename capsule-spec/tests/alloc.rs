//! Memory bounds under hostile input, measured with a counting global
//! allocator: declared lengths never turn into allocations larger than the
//! data that arrived (plus a fixed slack), and buffers do not accumulate
//! across batches. One test per binary section runs at a time (a mutex), so
//! the peak belongs to the case being measured.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use common::*;
use vnfs_capsule::format::{BlockHeader, RECORD_HEADER_LEN, RecordHeader};
use vnfs_capsule::*;

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(l.size(), Relaxed) + l.size();
        PEAK.fetch_max(now, Relaxed);
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        CURRENT.fetch_sub(l.size(), Relaxed);
        // SAFETY: `p` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Peak bytes allocated above the starting level while `f` runs.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = CURRENT.load(Relaxed);
    PEAK.store(base, Relaxed);
    f();
    PEAK.load(Relaxed) - base
}

const MIB: usize = 1 << 20;

#[test]
fn lying_lengths_do_not_allocate() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_, _, bytes) = sample(None);
    let m = manifest(ObjectKind::Commit.id_of(COMMIT)).encode().unwrap();
    let first = objects_start(&m);

    // Manifest length just under the 16 MiB limit, 100 bytes present.
    let mut b = bytes[..first + 100].to_vec();
    b[16..24].copy_from_slice(&((16 * MIB - 1) as u64).to_le_bytes());
    let p = peak_during(|| assert!(read(&b, opts(None)).is_err()));
    eprintln!("lying manifest length: peak {} KiB", p >> 10);
    assert!(p < 4 * MIB, "manifest: peak {p}");

    // A record declaring 60 MiB stored, 16 bytes present.
    let mut b = bytes[..first + RECORD_HEADER_LEN].to_vec();
    let h = RecordHeader {
        kind: ObjectKind::Chunk,
        compression: Compression::Zstd,
        stored_len: 60 << 20,
        raw_len: 60 << 20,
        id: ObjectId::from_bytes([1; 32]),
    };
    b[first..first + RECORD_HEADER_LEN].copy_from_slice(&h.encode());
    b.extend_from_slice(&[0u8; 16]);
    let p = peak_during(|| assert!(read(&b, opts(None)).is_err()));
    eprintln!("lying record length: peak {} KiB", p >> 10);
    assert!(p < 4 * MIB, "record: peak {p}");

    // A block declaring the most members (a 2.5 MiB table) and 60 MiB of
    // payload, 16 bytes present.
    let mut b = bytes[..first + RECORD_HEADER_LEN].to_vec();
    let h = BlockHeader {
        compression: Compression::Zstd,
        stored_len: 60 << 20,
        raw_len: 60 << 20,
        members: 1 << 16,
    };
    b[first..first + RECORD_HEADER_LEN].copy_from_slice(&h.encode());
    b.extend_from_slice(&[0u8; 16]);
    let p = peak_during(|| assert!(read(&b, opts(None)).is_err()));
    eprintln!("lying block: peak {} KiB", p >> 10);
    assert!(p < 4 * MIB, "block: peak {p}");
}

#[test]
fn buffers_do_not_accumulate_across_batches() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Many distinct 8 MiB objects that compress to almost nothing, mixed
    // with small ones: a valid capsule whose raw size is large.
    let mut records = Vec::new();
    for i in 0..48u32 {
        let mut big = vec![0u8; 8 * MIB];
        big[..4].copy_from_slice(&i.to_le_bytes());
        records.push(OwnedRecord::from_raw(ObjectKind::Chunk, &big, Some(1)).unwrap());
    }
    for i in 0..400u32 {
        records.push(OwnedRecord::from_raw(ObjectKind::Chunk, &noise(i.into(), 64), None).unwrap());
    }
    records.push(OwnedRecord::from_raw(ObjectKind::Commit, COMMIT, None).unwrap());
    records.sort_by_key(|r| (r.kind, r.id));
    let m = manifest(ObjectKind::Commit.id_of(COMMIT));
    let out = write_capsule(
        Vec::new(),
        &m,
        None,
        records.into_iter().map(Ok::<_, String>),
    )
    .unwrap();
    let bytes = out.inner;
    assert!(bytes.len() < 4 * MIB, "capsule is {} bytes", bytes.len());
    let p = peak_during(|| {
        let mut sink = |_: &VerifiedObject<'_>| Ok(());
        let v = read_capsule(&bytes[..], opts(None), &mut sink).unwrap();
        assert_eq!(v.stats.chunks.raw, 48 * 8 * MIB as u64 + 400 * 64);
    });
    // One batch: at most 16 MiB of raw output plus one object past it, plus
    // buffers; 384 MiB of raw data went through.
    eprintln!("384 MiB raw through the reader: peak {} MiB", p / MIB);
    assert!(p < 64 * MIB, "peak {} MiB", p / MIB);
}
