//! A cheap, deterministic stand-in for the cargo-fuzz targets in
//! `builder/fuzz/`: the seed corpus and thousands of byte-level mutations
//! of it through the same entry points (`vnfs_builder::fuzzing`). Nothing
//! may panic; the entry points assert what accepted inputs must satisfy.

use std::path::{Path, PathBuf};

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to the parsers under test.
const INTERESTING: &[u8] = b"\n\r\t :=[]{}\"'#,|()<>!~+-.0129/\\\x00\xff\x80";

/// A few edits: flip, delete, insert, duplicate or splice from `other`.
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if at < v.len() => v[at] ^= 1 << rng.below(8),
            1 if at < v.len() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            2 => v.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            3 if at < v.len() => {
                let end = (at + 1 + rng.below(64)).min(v.len());
                let chunk = v[at..end].to_vec();
                let to = rng.below(v.len() + 1);
                v.splice(to..to, chunk);
            }
            4 if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + 1 + rng.below(64)).min(other.len());
                v.splice(at..at, other[from..end].iter().copied());
            }
            _ if at < v.len() => v[at] = INTERESTING[rng.below(INTERESTING.len())],
            _ => v.push(b'\n'),
        }
    }
    v
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

fn run(name: &str, entry: fn(&[u8]), rounds: usize, seed: u64) {
    let seeds = corpus(name);
    for s in &seeds {
        entry(s);
    }
    let mut rng = Rng(seed);
    for i in 0..rounds {
        let a = &seeds[i % seeds.len()];
        let b = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, a, b);
        entry(&input);
    }
}

#[test]
fn recipe_parser_survives_mutations() {
    run("recipe", vnfs_builder::fuzzing::recipe, 10_000, 0x5eed);
}

#[test]
fn control_parsers_survive_mutations() {
    run("control", vnfs_builder::fuzzing::control, 10_000, 0xc0de);
}

#[test]
fn deb_reader_survives_mutations() {
    run("deb", vnfs_builder::fuzzing::deb, 5_000, 0xdeb);
}

#[test]
fn rpm_metadata_parsers_survive_mutations() {
    run("rpm", vnfs_builder::fuzzing::rpm_metadata, 5_000, 0x0e19);
}
