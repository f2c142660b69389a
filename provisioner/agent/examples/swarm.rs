//! Simulated nodes for the daemon memory benchmark (bench/serve-rss.sh):
//! N threads, each a node with its own MAC and keep-alive connection, that
//! check in and fetch the image's commit and a batch of chunks, over and
//! over, for a given time.
//!
//! `swarm URL NODES SECONDS CHUNK_IDS_FILE`

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vnfs_node::client::{Master, Retry};
use vnfs_node::proto::CheckinRequest;
use vnfs_store::{ObjectId, ObjectKind};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 5,
        "usage: swarm URL NODES SECONDS CHUNK_IDS_FILE"
    );
    let url = args[1].clone();
    let nodes: usize = args[2].parse()?;
    let secs: f64 = args[3].parse()?;
    let ids: Vec<ObjectId> = std::fs::read_to_string(&args[4])?
        .lines()
        .filter_map(ObjectId::from_hex)
        .collect();
    anyhow::ensure!(!ids.is_empty(), "no chunk ids in {}", args[4]);
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let (checkins, objects, errors) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for n in 0..nodes {
            let (url, ids) = (&url, &ids);
            let (checkins, objects, errors) = (&checkins, &objects, &errors);
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn_scoped(s, move || {
                    let m = Master::new(url, Retry::default());
                    let mac = format!("02:00:00:00:{:02x}:{:02x}", n / 256, n % 256);
                    let mut i = n * 7;
                    while Instant::now() < until {
                        let r = m.checkin(&CheckinRequest {
                            mac: mac.clone(),
                            state: "init".into(),
                            ..CheckinRequest::default()
                        });
                        match r {
                            Ok(reply) => {
                                checkins.fetch_add(1, Ordering::Relaxed);
                                if let Some(c) = ObjectId::from_hex(&reply.commit) {
                                    let _ = m.object(ObjectKind::Commit, &c);
                                }
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        let batch: Vec<ObjectId> =
                            (0..16).map(|k| ids[(i + k) % ids.len()]).collect();
                        i += 16;
                        match m.batch(ObjectKind::Chunk, &batch, &mut |_, _| Ok(())) {
                            Ok(()) => {
                                objects.fetch_add(16, Ordering::Relaxed);
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
                .expect("spawn");
        }
    });
    println!(
        "nodes={nodes} checkins={} chunks={} errors={}",
        checkins.into_inner(),
        objects.into_inner(),
        errors.into_inner()
    );
    Ok(())
}
