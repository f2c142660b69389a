//! The thread pool for file work. Reading and writing files with a cold
//! page cache waits on the disk more than it computes, so the pool has
//! more threads than cores: a deeper I/O queue keeps the device busy while
//! the hashing and compression still use every core.

use std::sync::OnceLock;

/// Runs `f` on the I/O pool (rayon parallel iterators inside use it).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = std::env::var("VNFS_IO_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or((cores * 3).max(6));
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("vnfs-io-{i}"))
            .build()
            .ok()
    });
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}
