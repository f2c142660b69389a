//! Fuzz target: recipe TOML (strict schema, line/column errors, step validation).
//! The entry point (and its assertions) is shared with the CI smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vnfs_builder::fuzzing::recipe(data));
