//! Prints the message of a few hostile cases (run with --nocapture) and
//! checks each names an offset: the messages are the user interface.

mod common;

use common::*;

#[test]
fn messages_name_the_offset() {
    let (_, _, bytes) = sample(None);
    let mut cases = Vec::new();
    cases.push(("cut", bytes[..bytes.len() / 2].to_vec()));
    for at in [3usize, 40, 600, bytes.len() - 90, bytes.len() - 5] {
        let mut b = bytes.clone();
        b[at] ^= 0x10;
        cases.push(("flip", b));
    }
    for (what, b) in cases {
        let e = read(&b, opts(None)).unwrap_err();
        println!("{what}: {e}");
        assert!(e.to_string().contains("offset"), "{e}");
    }
}
