//! A cheap, deterministic stand-in for the cargo-fuzz targets in `fuzz/`:
//! thousands of mutated inputs through the range parser and the importers.
//! Nothing may panic; what parses must behave (ranges match what they say).

use std::path::Path;

use vnfs_provisioner::import::{dhcpd, ethers, warewulf};
use vnfs_provisioner::pattern::Pattern;

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
        (self.next() % n as u64) as usize
    }
}

/// Deletes, duplicates, or replaces a few characters with interesting ones.
fn mutate(rng: &mut Rng, seed: &str, alphabet: &[char]) -> String {
    let mut v: Vec<char> = seed.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = if v.is_empty() {
            0
        } else {
            rng.below(v.len() + 1)
        };
        match rng.below(3) {
            0 if at < v.len() => {
                v.remove(at);
            }
            1 => v.insert(at, alphabet[rng.below(alphabet.len())]),
            _ if at < v.len() => v[at] = alphabet[rng.below(alphabet.len())],
            _ => {}
        }
    }
    v.into_iter().collect()
}

#[test]
fn range_parser_survives_mutations() {
    let mut rng = Rng(0x5eed);
    let seeds = [
        "n00[00-05,06,20-40]",
        "io*",
        "n[0010-1023]",
        "r[1-2]n[01-02]?",
        "n1*",
    ];
    let alphabet: Vec<char> = "[]-,*?0123456789n\u{e9}".chars().collect();
    for i in 0..20_000 {
        let p = mutate(&mut rng, seeds[i % seeds.len()], &alphabet);
        if let Ok(pat) = Pattern::parse(&p) {
            for name in [
                "n0000",
                "n0006",
                "n1023",
                "io",
                "r2n01x",
                "",
                "n99999999999999999999",
            ] {
                let _ = pat.matches(name);
            }
            // A literal pattern matches itself and nothing else of its length.
            if pat.is_literal() {
                assert!(pat.matches(&p), "{p}");
            }
        }
    }
}

#[test]
fn importers_survive_mutations() {
    let mut rng = Rng(0xfeed);
    let dhcp_seed = "host n0000 {\n  hardware ethernet 00:00:00:00:00:00;\n  fixed-address 10.0.1.0;\n  option host-name \"a\";\n}\n";
    let ethers_seed = "08:00:20:00:61:CA n1\n08:00:20:00:61:CB 10.0.0.2 # x\n";
    let ww_seed = "nodes:\n  n1:\n    profiles: [default, gpu]\n    network devices:\n      default:\n        hwaddr: 00:11:22:33:44:55\n        ipaddr: 10.0.0.1\n        netmask: 255.255.0.0\n    tags:\n      a: b\n";
    let alphabet: Vec<char> = "{};\"#:\n -[]0a.".chars().collect();
    for _ in 0..3_000 {
        let _ = dhcpd::parse(Path::new("f"), &mutate(&mut rng, dhcp_seed, &alphabet));
        let _ = ethers::parse(Path::new("f"), &mutate(&mut rng, ethers_seed, &alphabet));
        let _ = warewulf::parse(Path::new("f"), &mutate(&mut rng, ww_seed, &alphabet));
    }
}
