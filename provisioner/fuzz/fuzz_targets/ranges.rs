//! Fuzzes the node range parser and matcher.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vnfs_provisioner::pattern::Pattern;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (pat, name) = s.split_once('\n').unwrap_or((s, "n0000"));
    if let Ok(p) = Pattern::parse(pat) {
        let _ = p.matches(name);
        let _ = p.matches_ignore_case(name);
    }
});
