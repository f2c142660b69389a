//! Fuzz target: .deb files: the ar container, control.tar and the data.tar member headers.
//! The entry point (and its assertions) is shared with the CI smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vnfs_builder::fuzzing::deb(data));
