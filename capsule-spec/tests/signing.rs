//! Signature cases end to end: trusted, untrusted, unsigned under each
//! policy, broken (tampered block, tampered content resealed), stripped.

mod common;

use common::*;
use vnfs_capsule::format::{
    FILE_HASH_CONTEXT, SIGNATURE_BLOCK_LEN, TRAILER_HASHED_LEN, TRAILER_LEN,
};
use vnfs_capsule::*;

fn status(
    bytes: &[u8],
    trusted: Option<&SecretKey>,
    policy: SignaturePolicy,
) -> Result<VerifiedCapsule, CapsuleError> {
    let mut o = opts(trusted);
    o.policy = policy;
    read(bytes, o).map(|(v, _)| v)
}

/// Recomputes the checksum of a capsule whose hashed bytes were edited, as
/// an attacker can (the checksum is not a secret).
fn reseal(b: &mut [u8], signed: bool) {
    let tail = TRAILER_LEN + if signed { SIGNATURE_BLOCK_LEN } else { 0 };
    let hash_at = b.len() - tail + TRAILER_HASHED_LEN;
    let h = *blake3::Hasher::new_derive_key(FILE_HASH_CONTEXT)
        .update(&b[..hash_at])
        .finalize()
        .as_bytes();
    b[hash_at..hash_at + 32].copy_from_slice(&h);
}

#[test]
fn trusted_untrusted_unsigned() {
    let site_a = SecretKey::from_seed([1; 32], "site-a");
    let stranger = SecretKey::from_seed([2; 32], "");
    let (_, _, signed) = sample(Some(&site_a));
    let (_, _, unsigned) = sample(None);
    let policy = SignaturePolicy::default();

    let v = status(&signed, Some(&site_a), policy).unwrap();
    assert_eq!(
        v.signature,
        SignatureStatus::Trusted {
            key: site_a.public()
        }
    );
    assert_eq!(v.verdict, Verdict::Accept);

    let e = status(&signed, Some(&stranger), policy).unwrap_err();
    assert!(e.to_string().contains("not in the trust list"), "{e}");
    assert!(
        e.to_string()
            .contains(&hex::encode(site_a.public().as_bytes())),
        "{e}"
    );
    let lax = SignaturePolicy {
        allow_untrusted: true,
        ..policy
    };
    assert_eq!(
        status(&signed, None, lax).unwrap().signature.name(),
        "untrusted"
    );

    let v = status(&unsigned, Some(&site_a), policy).unwrap();
    assert!(matches!(v.verdict, Verdict::AcceptWithWarning(ref w) if w.contains("not signed")));
    let quiet = SignaturePolicy {
        unsigned: UnsignedPolicy::Accept,
        ..policy
    };
    assert_eq!(
        status(&unsigned, None, quiet).unwrap().verdict,
        Verdict::Accept
    );
    let strict = SignaturePolicy {
        unsigned: UnsignedPolicy::Reject,
        ..policy
    };
    assert!(
        status(&unsigned, None, strict)
            .unwrap_err()
            .to_string()
            .contains("unsigned")
    );
}

#[test]
fn broken_signatures_are_refused_even_when_lax() {
    let key = SecretKey::from_seed([1; 32], "site-a");
    let (_, _, signed) = sample(Some(&key));
    let lax = SignaturePolicy {
        allow_untrusted: true,
        unsigned: UnsignedPolicy::Accept,
    };
    let sig_at = signed.len() - SIGNATURE_BLOCK_LEN;

    // A flipped bit in the signature itself.
    let mut b = signed.clone();
    b[sig_at + 50] ^= 1;
    let e = status(&b, Some(&key), lax).unwrap_err();
    assert!(e.to_string().contains("BROKEN"), "{e}");

    // Content changed and the checksum recomputed: the old signature no
    // longer covers it.
    let mut b2 = signed.clone();
    let pos = b2.windows(11).position(|w| w == b"debian-node").unwrap();
    b2[pos] = b'D';
    reseal(&mut b2, true);
    let v = inspect(
        std::io::Cursor::new(&b2),
        Limits::default(),
        &opts(Some(&key)).trust,
        false,
    )
    .unwrap();
    assert_eq!(v.signature.name(), "broken");
    assert!(status(&b2, Some(&key), lax).is_err());

    // A public key that is not a valid curve point.
    let mut b = signed.clone();
    b[sig_at + 8..sig_at + 40].copy_from_slice(&[0xff; 32]);
    let i = inspect(
        std::io::Cursor::new(&b),
        Limits::default(),
        &TrustList::new(),
        false,
    )
    .unwrap();
    assert_eq!(i.signature.name(), "broken");
}

#[test]
fn stripped_signature_reads_as_unsigned() {
    // Anyone can remove a signature (and fix the checksum): such a capsule
    // is unsigned, which is why sites that require signatures set the
    // unsigned policy to Reject.
    let key = SecretKey::from_seed([1; 32], "");
    let (_, _, signed) = sample(Some(&key));
    let mut b = signed[..signed.len() - SIGNATURE_BLOCK_LEN].to_vec();
    b[12] &= !1;
    reseal(&mut b, false);
    let strict = SignaturePolicy {
        unsigned: UnsignedPolicy::Reject,
        ..SignaturePolicy::default()
    };
    assert!(status(&b, Some(&key), strict).is_err());
    assert_eq!(
        status(&b, Some(&key), SignaturePolicy::default())
            .unwrap()
            .signature,
        SignatureStatus::Unsigned
    );
}

#[test]
fn key_files_sign_capsules() {
    let d = tempfile::tempdir().unwrap();
    let k = SecretKey::generate("admin@site-a").unwrap();
    let (sk, pk) = (d.path().join("site-a.key"), d.path().join("site-a.pub"));
    k.save(&sk, &pk).unwrap();
    let trust_file = d.path().join("trusted-keys");
    std::fs::write(
        &trust_file,
        format!(
            "# sites we import from\n{}",
            std::fs::read_to_string(&pk).unwrap()
        ),
    )
    .unwrap();
    let loaded = SecretKey::load(&sk).unwrap();
    let (_, _, bytes) = sample(Some(&loaded));
    let o = ReadOptions {
        trust: TrustList::load(&trust_file).unwrap(),
        ..ReadOptions::default()
    };
    let (v, _) = read(&bytes, o).unwrap();
    match v.signature {
        SignatureStatus::Trusted { key } => assert_eq!(key.comment, "admin@site-a"),
        s => panic!("{s}"),
    }
}
