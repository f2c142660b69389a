//! Fuzz target: Debian control data: deb822 paragraphs, Packages stanzas, Release files, apt sources, relationship fields and versions.
//! The entry point (and its assertions) is shared with the CI smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vnfs_builder::fuzzing::control(data));
