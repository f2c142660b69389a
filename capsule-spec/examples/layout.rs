//! Capsule size and export time of one image under several layouts, to
//! choose where small objects stop going into solid blocks:
//! `cargo run --release -p vnfs-capsule --example layout -- STORE IMAGE [KiB...]`
//!
//! For each threshold (default 0 4 16 32 64 256 KiB) it exports the image
//! into a byte counter (warm page cache, median of three) and prints the
//! capsule size, the wall and CPU time, and the stored bytes per wall and
//! per CPU second.

use std::time::Instant;

use vnfs_capsule::ObjectId;
use vnfs_capsule::exchange::{ExportOptions, export_with};

/// CPU seconds of this process (all threads), from /proc.
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Counts what is written and drops it (so the figures hold the export's
/// own work, not a growing buffer's page faults).
#[derive(Default)]
struct Count(u64);

impl std::io::Write for Count {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(store), Some(image)) = (args.next(), args.next()) else {
        return Err("usage: layout STORE IMAGE [KiB...]".into());
    };
    let mut sizes: Vec<u32> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    if sizes.is_empty() {
        sizes = vec![0, 4, 16, 32, 64, 256];
    }
    let store = vnfs_store::Store::open(std::path::Path::new(&store))?;
    let (_, head) = store.resolve(&image)?;
    let head = ObjectId::from_bytes(head.0);
    let stored: u64 = store.object_counts().values().map(|(_, b)| b).sum();
    println!("store holds {:.1} MB stored", stored as f64 / 1e6);
    println!(
        "{:>9} {:>12} {:>7} {:>8} {:>8} {:>10} {:>10}",
        "below KiB", "capsule MB", "blocks", "wall s", "CPU s", "MB/s wall", "MB/CPU-s"
    );
    for kib in sizes {
        let defaults = ExportOptions::default();
        let opts = ExportOptions {
            solid_below: kib << 10,
            // LEVEL and BLOCK_MIB in the environment try other blocks;
            // VERIFY=false measures the export without checking the chunks
            // it copies as stored.
            level: env_or("LEVEL", defaults.level),
            block_size: env_or("BLOCK_MIB", defaults.block_size >> 20) << 20,
            verify: env_or("VERIFY", defaults.verify),
        };
        let mut runs = Vec::new();
        let mut last = None;
        for _ in 0..3 {
            let (t, c) = (Instant::now(), cpu());
            let (r, out) = export_with(&store, &image, head, None, None, Count::default(), &opts)?;
            runs.push((t.elapsed().as_secs_f64(), cpu() - c));
            last = Some((r, out.0));
        }
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (wall, cpu_s) = runs[1];
        let Some((r, len)) = last else { continue };
        println!(
            "{:>9} {:>12.2} {:>7} {:>8.3} {:>8.2} {:>10.0} {:>10.0}",
            kib,
            len as f64 / 1e6,
            r.blocks,
            wall,
            cpu_s,
            stored as f64 / wall / 1e6,
            stored as f64 / cpu_s / 1e6
        );
    }
    Ok(())
}
