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
        max_block_members: 1 << 12,
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
    let accepted = read_capsule(data, opts, &mut sink);
    if let Ok(v) = &accepted {
        // Anything accepted is a complete capsule of exactly this length.
        assert_eq!(v.file_len, data.len() as u64);
    }
    // The seekable inspection agrees with the streaming read on everything
    // the streaming read accepts.
    let i = inspect(std::io::Cursor::new(data), limits, &TrustList::new(), false);
    if let Ok(v) = &accepted {
        let i = i.expect("inspect refused a capsule the reader accepted");
        assert_eq!(i.stats, v.stats);
    }
});
