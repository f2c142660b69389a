//! Micro-benchmark of the capsule writer and verifying reader on in-memory
//! data: `cargo run --release -p vnfs-capsule --example bench [MiB]`.
//!
//! Builds chunks of 64 KiB (the store's average) that zstd-3 compresses about
//! 3:1 like binaries do, compresses them once up front (as the store holds
//! them), then times: export (stored bytes copied into a capsule), import
//! with full verification (decompress + BLAKE3 every object + checksum), a
//! re-import where the sink already has everything (checksum only), and the
//! seekable inspect path.

use std::time::Instant;

use vnfs_capsule::*;

fn noise(seed: u64, out: &mut Vec<u8>, len: usize) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
}

/// 64 KiB that compresses roughly 3:1: random bytes interleaved with
/// repeats of earlier material, as code and data sections are.
fn chunk(seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(64 << 10);
    let mut s = seed;
    while v.len() < 64 << 10 {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = 16 + (s >> 58) as usize;
        if v.len() > 256 && !(s >> 40).is_multiple_of(3) {
            let from = (s >> 20) as usize % (v.len() - n.min(v.len()));
            let piece: Vec<u8> = v[from..from + n.min(v.len() - from)].to_vec();
            v.extend_from_slice(&piece);
        } else {
            noise(s, &mut v, n / 2);
        }
    }
    v.truncate(64 << 10);
    v
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

/// CPU time of this process (all threads, user + system) in seconds, from
/// /proc (Linux, 10 ms ticks), so that results stay meaningful when other
/// processes share the two cores.
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// Runs `f` three times; returns the best wall and best CPU seconds.
fn best_of(mut f: impl FnMut()) -> (f64, f64) {
    let (mut wall, mut cpu_best) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let (t, c) = (Instant::now(), cpu());
        f();
        wall = wall.min(t.elapsed().as_secs_f64());
        cpu_best = cpu_best.min(cpu() - c);
    }
    (wall, cpu_best)
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(512);
    let n = mib * 1024 * 1024 / (64 << 10);
    let t = Instant::now();
    let mut records: Vec<OwnedRecord> = (0..n as u64)
        .map(|i| OwnedRecord::from_raw(ObjectKind::Chunk, &chunk(i), Some(3)).unwrap())
        .collect();
    let commit = b"commit bench".to_vec();
    records.push(OwnedRecord::from_raw(ObjectKind::Commit, &commit, None).unwrap());
    records.sort_by_key(|r| (r.kind, r.id));
    let raw: u64 = records.iter().map(|r| u64::from(r.raw_len)).sum();
    let stored: u64 = records.iter().map(|r| r.stored.len() as u64).sum();
    eprintln!(
        "setup: {} objects, {:.0} MB raw, {:.0} MB stored (ratio {:.2}), {:.1} s",
        records.len(),
        raw as f64 / 1e6,
        stored as f64 / 1e6,
        raw as f64 / stored as f64,
        t.elapsed().as_secs_f64()
    );
    let manifest = Manifest {
        name: "bench".into(),
        naming: Naming::parse_file_name("bench-1-1.stateless.x86_64.vnfs").unwrap(),
        config: VnfsConfig::default(),
        recipe: None,
        lock: None,
        packages: vec![],
        head: ObjectKind::Commit.id_of(&commit),
        base: None,
        history: vec![],
    };
    let key = SecretKey::from_seed([9; 32], "bench");

    let write = |out: &mut dyn std::io::Write| {
        let mut w = CapsuleWriter::new(out, &manifest, Some(&key)).unwrap();
        for r in &records {
            w.add(&r.as_record()).unwrap();
        }
        w.finish().unwrap().bytes
    };
    let mut capsule = Vec::new();
    let (wall, c) = best_of(|| {
        let mut buf = Vec::with_capacity(stored as usize + (8 << 20));
        write(&mut buf);
        capsule = buf;
    });
    println!(
        "export into memory (signed):      {:>6.0} MB/s wall, {:>6.0} MB/s per CPU-second, of stored data",
        mbps(stored, wall),
        mbps(stored, c)
    );
    let (wall, c) = best_of(|| {
        write(&mut std::io::sink());
    });
    println!(
        "export into io::sink (format cost): {:>4.0} MB/s wall, {:>6.0} MB/s per CPU-second",
        mbps(stored, wall),
        mbps(stored, c)
    );

    let mut trust = TrustList::new();
    trust.add(key.public());
    let opts = || ReadOptions {
        trust: trust.clone(),
        ..ReadOptions::default()
    };

    let (wall, c) = best_of(|| {
        let mut sink = |_: &VerifiedObject<'_>| Ok(());
        let v = read_capsule(&capsule[..], opts(), &mut sink).unwrap();
        assert_eq!(v.signature.name(), "trusted");
    });
    println!(
        "import, every object verified:    {:>6.0} MB/s wall, {:>6.0} MB/s per CPU-second of stored data; raw: {:.0} wall, {:.0} per CPU-second",
        mbps(stored, wall),
        mbps(stored, c),
        mbps(raw, wall),
        mbps(raw, c)
    );

    // Re-import: the sink already has everything.
    struct Have;
    impl ObjectSink for Have {
        fn wants(&mut self, _: ObjectKind, _: &ObjectId) -> Result<bool, BoxError> {
            Ok(false)
        }
        fn put(&mut self, _: &VerifiedObject<'_>) -> Result<(), BoxError> {
            Ok(())
        }
    }
    let (wall, c) = best_of(|| {
        read_capsule(&capsule[..], opts(), &mut Have).unwrap();
    });
    println!(
        "re-import, all present (checksum): {:>5.0} MB/s wall, {:>6.0} MB/s per CPU-second",
        mbps(stored, wall),
        mbps(stored, c)
    );
    let (wall, c) = best_of(|| {
        inspect(
            std::io::Cursor::new(&capsule),
            Limits::default(),
            &trust,
            false,
        )
        .unwrap();
    });
    println!(
        "inspect, seekable (checksum):      {:>5.0} MB/s wall, {:>6.0} MB/s per CPU-second",
        mbps(capsule.len() as u64, wall),
        mbps(capsule.len() as u64, c)
    );
    println!(
        "overhead: capsule is {:.3}% larger than the stored objects",
        (capsule.len() as f64 / stored as f64 - 1.0) * 100.0
    );
}
