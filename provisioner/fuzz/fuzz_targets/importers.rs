//! Fuzzes the dhcpd, ethers and Warewulf importers; the first byte picks one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use vnfs_provisioner::import::{dhcpd, ethers, warewulf};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(s) = std::str::from_utf8(rest) else { return };
    let p = Path::new("fuzz");
    let _ = match which % 3 {
        0 => dhcpd::parse(p, s),
        1 => ethers::parse(p, s),
        _ => warewulf::parse(p, s),
    };
});
