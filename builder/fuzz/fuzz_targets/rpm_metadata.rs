//! Fuzz target: RPM repository metadata: repomd.xml, primary.xml and modules.yaml, with module stream selection and filtering.
//! The entry point (and its assertions) is shared with the CI smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vnfs_builder::fuzzing::rpm_metadata(data));
