//! Fuzz target: arbitrary bytes through the streaming reader and the
//! seekable inspector. Neither may panic, hang or allocate without bound;
//! whatever the reader hands to the sink must match its id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vnfs_capsule::*;

fuzz_target!(|data: &[u8]| {
    // Small limits keep each run cheap; the caps are what is under test.
    let limits = Limits {
        max_manifest_len: 1 << 20,
        max_object_len: 1 << 20,
        max_objects: 1 << 16,
    };
    let opts = ReadOptions {
        limits,
        ..ReadOptions::default()
    };
    let mut sink = |o: &VerifiedObject<'_>| -> Result<(), BoxError> {
        assert_eq!(o.kind.id_of(o.raw), o.id, "unverified object reached the sink");
        Ok(())
    };
    if let Ok(v) = read_capsule(data, opts, &mut sink) {
        // Anything accepted is a complete capsule of exactly this length.
        assert_eq!(v.file_len, data.len() as u64);
    }
    let _ = inspect(std::io::Cursor::new(data), limits, &TrustList::new(), false);
});
