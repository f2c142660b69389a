//! Writes small valid capsules (unsigned, signed, delta, empty-ish) into a
//! directory, as a seed corpus for the reader fuzz target:
//! `cargo run -p vnfs-capsule --example fuzz_seeds -- fuzz/corpus/reader`.

use std::collections::BTreeMap;

use vnfs_capsule::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: fuzz_seeds DIR")?;
    std::fs::create_dir_all(&dir)?;
    let commit = b"commit seed".to_vec();
    let head = ObjectKind::Commit.id_of(&commit);
    let mut records = vec![
        OwnedRecord::from_raw(ObjectKind::Chunk, &b"hello world ".repeat(20), Some(3))?,
        OwnedRecord::from_raw(ObjectKind::Chunk, b"raw bytes", None)?,
        OwnedRecord::from_raw(ObjectKind::Tree, b"tree", None)?,
        OwnedRecord::from_raw(ObjectKind::Commit, &commit, None)?,
    ];
    records.sort_by_key(|r| (r.kind, r.id));
    let m = Manifest {
        name: "seed".into(),
        naming: Naming::parse_file_name("seed-1-1.stateless.x86_64.vnfs")?,
        config: VnfsConfig {
            kernel_args: "quiet".into(),
            hybridize: vec!["/usr/share/*".into()],
            livesync_skip: vec![],
            nodescripts: vec![],
        },
        recipe: None,
        lock: None,
        packages: vec![],
        head,
        base: None,
        history: vec![CommitInfo {
            id: head,
            tree: records[2].id,
            parents: vec![],
            timestamp: 0,
            message: "seed".into(),
            metadata: BTreeMap::new(),
        }],
    };
    let key = SecretKey::from_seed([5; 32], "seed");
    let mut delta = m.clone();
    delta.base = Some(ObjectKind::Commit.id_of(b"base"));
    let commit_only: Vec<_> = records
        .iter()
        .filter(|r| r.kind == ObjectKind::Commit)
        .cloned()
        .collect();
    let cases: [(&str, &Manifest, Option<&SecretKey>, &[OwnedRecord]); 3] = [
        ("unsigned", &m, None, &records),
        ("signed", &m, Some(&key), &records),
        ("delta", &delta, None, &commit_only),
    ];
    for (name, manifest, signer, recs) in cases {
        let out = write_capsule(
            Vec::new(),
            manifest,
            signer,
            recs.iter().cloned().map(Ok::<_, String>),
        )?;
        std::fs::write(format!("{dir}/{name}.vnfs"), out.inner)?;
    }
    // Solid blocks: one compressed (chunks, tree and commit together) after
    // a single record, one kept raw.
    let mut w = CapsuleWriter::new(Vec::new(), &m, None)?;
    w.add(&records[0].as_record())?;
    let mut b = BlockBuilder::new();
    for r in &records[1..] {
        let raw = match r.compression {
            Compression::Raw => r.stored.clone(),
            Compression::Zstd => zstd::bulk::decompress(&r.stored, r.raw_len as usize)?,
        };
        b.push(r.kind, r.id, &raw)?;
    }
    b.push_raw(ObjectKind::Chunk, &b"more text, more text ".repeat(8))?;
    w.add_block(&b.finish(3)?)?;
    let mut b = BlockBuilder::new();
    b.push_raw(ObjectKind::Chunk, b"x")?;
    b.push_raw(ObjectKind::Chunk, b"")?;
    w.add_block(&b.finish(3)?)?;
    std::fs::write(format!("{dir}/blocks.vnfs"), w.finish()?.inner)?;
    Ok(())
}
