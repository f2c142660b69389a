//! Signing keys from an OpenPGP key file, taken as a careful verifier
//! takes them, and the rules a data signature must meet. Shared by the
//! Debian archive check (InRelease) and the RPM checks (repomd.xml.asc,
//! package headers).
//!
//! A key file is trusted as the user gives it, but not every packet in it
//! is. Every armored block of a file counts (vendors concatenate them),
//! and GnuPG's trust packets (keyrings written by `gpg --import`) are
//! skipped. A primary key's flags and expiry come from its newest direct
//! key signature that has them, else from its primary user ID's newest
//! certification (a revoked user ID counts for nothing). A subkey counts
//! only with a valid binding by its primary key that allows signing and
//! the subkey's own back signature, so a subkey appended to a vendor's key
//! file signs nothing; it expires no later than its primary key. A key
//! revoked as compromised (or for no stated reason) signs nothing; one
//! revoked as superseded or retired signs nothing made after the
//! revocation; revocations count wherever in the file they appear. A key
//! must have been alive when a signature was made and, for documents
//! (InRelease, repomd.xml), must still be alive now, as apt and dnf
//! require. A data signature must name its issuer, carry a creation time,
//! not have expired, be of the expected type (binary, or text where the
//! format is text) and use a SHA-2 or SHA-3 digest, as rpm's own policy
//! requires.

use std::collections::HashMap;
use std::io::Read;

use pgp::armor::Dearmor;
use pgp::composed::{
    CleartextSignedMessage, PublicOrSecret, SignedPublicKey, SignedPublicKeyParser,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{
    Packet, PacketParser, PublicKey, PublicSubkey, RevocationCode, Signature, SignatureType,
};
use pgp::types::{Fingerprint, KeyDetails, Tag, Timestamp};

/// A key allowed to sign data.
#[derive(Debug)]
pub struct SigningKey {
    material: Material,
    /// Creation time (seconds).
    created: u32,
    /// End of life (seconds), when the key expires.
    expires: Option<u64>,
}

#[derive(Debug)]
enum Material {
    Primary(PublicKey),
    Sub(PublicSubkey),
}

/// Which data signatures a caller accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigKind {
    /// Over bytes (RPM headers, packages).
    Binary,
    /// Over a text document (InRelease, repomd.xml.asc): binary or text.
    Document,
}

impl SigningKey {
    /// Whether `sig` names this key as its issuer.
    pub fn is_issuer_of(&self, sig: &Signature) -> bool {
        let (id, fp) = match &self.material {
            Material::Primary(k) => (k.legacy_key_id(), k.fingerprint()),
            Material::Sub(k) => (k.legacy_key_id(), k.fingerprint()),
        };
        sig.issuer_key_id().iter().any(|i| **i == id)
            || sig.issuer_fingerprint().iter().any(|f| **f == fp)
    }

    /// Verifies `sig` over `data` (a slice, or a file streamed in bounded
    /// memory) with this key, which must have been alive when the
    /// signature was made (and, for documents, still be)
    /// ([`check_signature`] first).
    pub fn verify(&self, sig: &Signature, data: impl Read, kind: SigKind) -> Result<(), String> {
        self.alive_at(sig, kind)?;
        let r = match &self.material {
            Material::Primary(k) => sig.verify(k, data),
            Material::Sub(k) => sig.verify(k, data),
        };
        r.map_err(|e| reason(&e))
    }

    /// Verifies a cleartext-signed document with this key; returns the
    /// signature that verified, checked against the rules.
    pub fn verify_cleartext<'m>(
        &self,
        msg: &'m CleartextSignedMessage,
    ) -> Result<&'m Signature, String> {
        let sig = match &self.material {
            Material::Primary(k) => msg.verify(k),
            Material::Sub(k) => msg.verify(k),
        }
        .map_err(|e| reason(&e))?;
        check_signature(sig, SigKind::Document)?;
        self.alive_at(sig, SigKind::Document)?;
        Ok(sig)
    }

    fn alive_at(&self, sig: &Signature, kind: SigKind) -> Result<(), String> {
        let at = sig.created().map(Timestamp::as_secs).unwrap_or(0);
        if at < self.created {
            return Err("the signature is older than the key that made it".into());
        }
        if let Some(end) = self.expires {
            if u64::from(at) >= end {
                return Err(
                    "the key had expired (or been retired) when the signature was made".into(),
                );
            }
            // A document is current: a key that has expired since cannot
            // vouch for it (an old key could otherwise sign a backdated one).
            if kind == SigKind::Document && now() >= end {
                return Err("the key has expired (or been retired)".into());
            }
        }
        Ok(())
    }
}

/// The rules every data signature must meet, whoever made it.
pub fn check_signature(sig: &Signature, kind: SigKind) -> Result<(), String> {
    match (sig.typ(), kind) {
        (Some(SignatureType::Binary), _) | (Some(SignatureType::Text), SigKind::Document) => {}
        (t, _) => return Err(format!("signature type {t:?} is not accepted here")),
    }
    match sig.hash_alg() {
        Some(
            HashAlgorithm::Sha224
            | HashAlgorithm::Sha256
            | HashAlgorithm::Sha384
            | HashAlgorithm::Sha512
            | HashAlgorithm::Sha3_256
            | HashAlgorithm::Sha3_512,
        ) => {}
        h => {
            return Err(format!(
                "digest {} is too weak (SHA-2 or SHA-3 required)",
                h.map(|h| h.to_string()).unwrap_or_else(|| "unknown".into())
            ));
        }
    }
    if sig.issuer_key_id().is_empty() && sig.issuer_fingerprint().is_empty() {
        return Err("the signature names no issuer".into());
    }
    let Some(created) = sig.created() else {
        return Err("the signature has no creation time".into());
    };
    if let Some(d) = sig.signature_expiration_time()
        && d.as_secs() != 0
        && u64::from(created.as_secs()) + u64::from(d.as_secs()) <= now()
    {
        return Err("the signature has expired".into());
    }
    Ok(())
}

/// Seconds since the epoch (0 for a clock before it).
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The signing keys of an OpenPGP key file (armored, one or several
/// blocks, or binary; one or several keys, public or secret: the public
/// part is used), with what was left out and why.
pub fn load(data: &[u8]) -> Result<(Vec<SigningKey>, Vec<String>), String> {
    let mut certs = Vec::new();
    let mut dropped = Vec::new();
    for block in blocks(data)? {
        parse_certs(&block, &mut certs, &mut dropped);
    }
    if certs.is_empty() && dropped.is_empty() {
        return Err("no OpenPGP keys found".into());
    }
    // A revocation counts for every copy of its key in the file.
    let mut revoked: HashMap<Fingerprint, Revoked> = HashMap::new();
    for k in &certs {
        let valid = k
            .details
            .revocation_signatures
            .iter()
            .filter(|s| s.verify_key(&k.primary_key).is_ok());
        if let Some(r) = revocation(valid) {
            let fp = k.primary_key.fingerprint();
            let merged = revoked.get(&fp).map_or(r, |old| (*old).min(r));
            revoked.insert(fp, merged);
        }
    }
    let mut keys = Vec::new();
    for k in &certs {
        take(
            k,
            revoked.get(&k.primary_key.fingerprint()).copied(),
            &mut keys,
            &mut dropped,
        );
    }
    Ok((keys, dropped))
}

/// The signing keys of the key file at `path` ([`load`]), with every part
/// left out reported as a warning; an error when nothing in it may sign.
pub fn load_file(path: &std::path::Path) -> Result<Vec<SigningKey>, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    let (keys, dropped) = load(&data)?;
    for d in &dropped {
        tracing::warn!("key file {}: {d}: not used", path.display());
    }
    if keys.is_empty() {
        let why = match dropped.is_empty() {
            true => "none found".to_string(),
            false => dropped.join("; "),
        };
        return Err(format!("no key in it may sign ({why})"));
    }
    Ok(keys)
}

/// The binary OpenPGP data of a key file: each armored block decoded, or
/// the file itself when it is binary.
fn blocks(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    const BEGIN: &[u8] = b"-----BEGIN PGP ";
    let starts: Vec<usize> = (0..data.len())
        .filter(|&i| data[i..].starts_with(BEGIN) && (i == 0 || data[i - 1] == b'\n'))
        .collect();
    if starts.is_empty() {
        return Ok(vec![data.to_vec()]);
    }
    let mut out = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(data.len());
        let mut bin = Vec::new();
        Dearmor::new(std::io::BufReader::new(&data[start..end]))
            .read_to_end(&mut bin)
            .map_err(|e| format!("armored block {}: {e}", n + 1))?;
        out.push(bin);
    }
    Ok(out)
}

/// Reads the keys of one binary block, leaving out GnuPG's trust packets,
/// which would otherwise end a key at its first one.
fn parse_certs(block: &[u8], certs: &mut Vec<SignedPublicKey>, dropped: &mut Vec<String>) {
    let mut packets = Vec::new();
    let mut secret = false;
    for p in PacketParser::new(block) {
        match p {
            Ok(Packet::Trust(_) | Packet::Marker(_) | Packet::Padding(_)) => {}
            Ok(p) => {
                secret |= matches!(p, Packet::SecretKey(_) | Packet::SecretSubkey(_));
                packets.push(p);
            }
            // Unknown or unsupported packets (newer key versions, private
            // algorithms): the rest of the file still counts.
            Err(e) => dropped.push(format!("a packet that cannot be read: {e}")),
        }
    }
    if secret {
        // Secret key files come from pgp-aware tools and carry no trust
        // packets: the crate's own parser splits public from secret.
        match PublicOrSecret::from_reader_many(block) {
            Ok((iter, _)) => {
                for k in iter {
                    match k {
                        Ok(PublicOrSecret::Public(k)) => certs.push(k),
                        Ok(PublicOrSecret::Secret(k)) => certs.push(k.to_public_key()),
                        Err(e) => dropped.push(format!("a key that cannot be read: {e}")),
                    }
                }
            }
            Err(e) => dropped.push(format!("keys that cannot be read: {e}")),
        }
        return;
    }
    for k in SignedPublicKeyParser::from_packets(packets.into_iter().map(Ok).peekable()) {
        match k {
            Ok(k) => certs.push(k),
            Err(e) => dropped.push(format!("a key that cannot be read: {e}")),
        }
    }
}

/// How a key or subkey is revoked: for good, or (superseded, retired)
/// from a time on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Revoked {
    Hard,
    Since(u32),
}

/// The strongest of the valid revocations given (`Hard` before any
/// `Since`, an earlier `Since` before a later one).
fn revocation<'a>(valid: impl Iterator<Item = &'a Signature>) -> Option<Revoked> {
    valid
        .map(|s| match s.revocation_reason_code() {
            Some(RevocationCode::KeySuperseded | RevocationCode::KeyRetired) => {
                Revoked::Since(s.created().map_or(0, Timestamp::as_secs))
            }
            _ => Revoked::Hard,
        })
        .min()
}

/// The end of life of a key given its expiry and revocation.
fn end_of_life(expires: Option<u64>, revoked: Option<Revoked>) -> Option<u64> {
    match revoked {
        Some(Revoked::Since(t)) => Some(expires.map_or(u64::from(t), |e| e.min(u64::from(t)))),
        _ => expires,
    }
}

/// The newest of `sigs` by creation time.
fn newest(sigs: Vec<&Signature>) -> Option<&Signature> {
    sigs.into_iter()
        .max_by_key(|s| s.created().map(Timestamp::as_secs))
}

/// Whether a key-flags subpacket says anything at all.
fn has_flags(s: &Signature) -> bool {
    let f = s.key_flags();
    f.sign() || f.certify() || f.encrypt_comms() || f.encrypt_storage() || f.authentication()
}

/// Adds the usable parts of `k`.
fn take(
    k: &SignedPublicKey,
    revoked: Option<Revoked>,
    keys: &mut Vec<SigningKey>,
    dropped: &mut Vec<String>,
) {
    let primary = &k.primary_key;
    let name = format!("key {}", primary.legacy_key_id());
    if revoked == Some(Revoked::Hard) {
        dropped.push(format!("{name}: revoked"));
        return;
    }
    let created = primary.created_at().as_secs();
    // Each user ID's newest valid self-signature, unless that revokes it.
    let mut bindings = Vec::new();
    for u in &k.details.users {
        let latest = newest(
            u.signatures
                .iter()
                .filter(|s| {
                    matches!(
                        s.typ(),
                        Some(
                            SignatureType::CertGeneric
                                | SignatureType::CertPersona
                                | SignatureType::CertCasual
                                | SignatureType::CertPositive
                                | SignatureType::CertRevocation
                        )
                    ) && s.verify_certification(primary, Tag::UserId, &u.id).is_ok()
                })
                .collect(),
        );
        if let Some(s) = latest.filter(|s| s.typ() != Some(SignatureType::CertRevocation)) {
            bindings.push(s);
        }
    }
    let user = bindings
        .iter()
        .filter(|s| s.is_primary())
        .max_by_key(|s| s.created().map(Timestamp::as_secs))
        .or_else(|| {
            bindings
                .iter()
                .max_by_key(|s| s.created().map(Timestamp::as_secs))
        })
        .copied();
    let direct = newest(
        k.details
            .direct_signatures
            .iter()
            .filter(|s| s.typ() == Some(SignatureType::Key) && s.verify_key(primary).is_ok())
            .collect(),
    );
    if user.is_none() && direct.is_none() {
        dropped.push(format!("{name}: no valid self-signature"));
        return;
    }
    let flags_from = direct.filter(|s| has_flags(s)).or(user).or(direct);
    let expiry_from = direct
        .filter(|s| s.key_expiration_time().is_some())
        .or(user)
        .or(direct);
    let primary_end = end_of_life(expiry_from.and_then(|s| expiry(created, s)), revoked);
    let before = keys.len();
    // No key flags at all: an old key that predates them, usable.
    if flags_from.is_none_or(|s| !has_flags(s) || s.key_flags().sign()) {
        keys.push(SigningKey {
            material: Material::Primary(primary.clone()),
            created,
            expires: primary_end,
        });
    }
    for sub in &k.public_subkeys {
        let sname = format!("subkey {} of {name}", sub.key.legacy_key_id());
        let screated = sub.key.created_at().as_secs();
        let valid = |t: SignatureType| {
            sub.signatures
                .iter()
                .filter(move |s| s.typ() == Some(t))
                .filter(|s| s.verify_subkey_binding(primary, &sub.key).is_ok())
        };
        let sub_revoked = revocation(valid(SignatureType::SubkeyRevocation));
        if sub_revoked == Some(Revoked::Hard) {
            dropped.push(format!("{sname}: revoked"));
            continue;
        }
        let Some(binding) = newest(valid(SignatureType::SubkeyBinding).collect()) else {
            dropped.push(format!("{sname}: no valid binding by its primary key"));
            continue;
        };
        if !binding.key_flags().sign() {
            // Encryption subkeys: not a reason to warn.
            continue;
        }
        let back = binding
            .embedded_signature()
            .is_some_and(|b| b.verify_primary_key_binding(&sub.key, primary).is_ok());
        if !back {
            dropped.push(format!(
                "{sname}: a signing subkey without a valid back signature"
            ));
            continue;
        }
        // A subkey lives no longer than its primary key.
        let own = end_of_life(expiry(screated, binding), sub_revoked);
        let expires = match (own, primary_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        keys.push(SigningKey {
            material: Material::Sub(sub.key.clone()),
            created: screated,
            expires,
        });
    }
    if keys.len() == before {
        dropped.push(format!("{name}: neither it nor a subkey may sign"));
    }
}

/// End of life from a self-signature's key expiration time (relative to
/// the key's creation; none or zero: never).
fn expiry(created: u32, sig: &Signature) -> Option<u64> {
    sig.key_expiration_time()
        .filter(|d| d.as_secs() != 0)
        .map(|d| u64::from(created) + u64::from(d.as_secs()))
}

/// The pgp crate's reason in one line. Its check of the digest's first
/// two bytes reports a failed assertion with both values, which tells a
/// user nothing; it means the data is not what was signed.
fn reason(e: &pgp::errors::Error) -> String {
    let m = e.to_string();
    if m.starts_with("assertion failed") {
        "the data's digest differs from the signed one, so it was changed after signing".into()
    } else {
        m.lines().next().unwrap_or_default().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgp::composed::{
        DetachedSignature, KeyType, SecretKeyParamsBuilder, SignedSecretKey, SubkeyParamsBuilder,
    };
    use pgp::ser::Serialize as _;
    use pgp::types::Password;

    /// A fresh key, signing with its primary key or (`subkey`) only with a
    /// signing subkey.
    fn key(uid: &str, subkey: bool) -> SignedSecretKey {
        let mut p = SecretKeyParamsBuilder::default();
        p.key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(!subkey)
            .primary_user_id(format!("{uid} <{uid}@example.invalid>"));
        if subkey {
            p.subkey(
                SubkeyParamsBuilder::default()
                    .key_type(KeyType::Ed25519Legacy)
                    .can_sign(true)
                    .build()
                    .unwrap(),
            );
        }
        p.build().unwrap().generate(rand::thread_rng()).unwrap()
    }

    fn sig(
        k: &impl pgp::types::SigningKey,
        h: HashAlgorithm,
        text: bool,
        data: &[u8],
    ) -> Signature {
        let rng = rand::thread_rng();
        let pw = Password::empty();
        match text {
            false => DetachedSignature::sign_binary_data(rng, k, &pw, h, data),
            true => DetachedSignature::sign_text_data(rng, k, &pw, h, data),
        }
        .unwrap()
        .signature
    }

    fn public(k: &SignedSecretKey) -> Vec<u8> {
        SignedPublicKey::from(k.clone()).to_bytes().unwrap()
    }

    #[test]
    fn data_signatures_follow_the_rules() {
        let k = key("vendor", false);
        let (keys, dropped) = load(&public(&k)).unwrap();
        assert_eq!((keys.len(), dropped.len()), (1, 0), "{dropped:?}");
        let good = sig(&k.primary_key, HashAlgorithm::Sha256, false, b"data");
        check_signature(&good, SigKind::Binary).unwrap();
        assert!(keys[0].is_issuer_of(&good));
        keys[0]
            .verify(&good, &b"data"[..], SigKind::Binary)
            .unwrap();
        assert!(
            keys[0]
                .verify(&good, &b"dat4"[..], SigKind::Binary)
                .is_err()
        );
        // A text signature: for documents only.
        let text = sig(&k.primary_key, HashAlgorithm::Sha256, true, b"data");
        check_signature(&text, SigKind::Document).unwrap();
        let e = check_signature(&text, SigKind::Binary).unwrap_err();
        assert!(e.contains("type"), "{e}");
        // SHA-1 (an RSA key: pgp makes no SHA-1 EdDSA signatures): refused,
        // as rpm's policy refuses it.
        let rsa = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Rsa(2048))
            .can_certify(true)
            .can_sign(true)
            .primary_user_id("old <old@example.invalid>".into())
            .build()
            .unwrap()
            .generate(rand::thread_rng())
            .unwrap();
        let weak = sig(&rsa.primary_key, HashAlgorithm::Sha1, false, b"data");
        let e = check_signature(&weak, SigKind::Binary).unwrap_err();
        assert!(e.contains("too weak"), "{e}");
    }

    #[test]
    fn a_subkey_another_key_bound_signs_nothing() {
        let vendor = key("vendor", false);
        let attacker = key("attacker", true);
        // The attacker's own key: its signing subkey is properly bound.
        let (keys, dropped) = load(&public(&attacker)).unwrap();
        assert_eq!(keys.len(), 1, "only the subkey signs: {dropped:?}");
        let by_sub = sig(
            &attacker.secret_subkeys[0].key,
            HashAlgorithm::Sha256,
            false,
            b"pkg",
        );
        keys[0]
            .verify(&by_sub, &b"pkg"[..], SigKind::Binary)
            .unwrap();
        // Appended to the vendor's key, with the attacker's binding.
        let vendor_pub = SignedPublicKey::from(vendor.clone());
        let attacker_pub = SignedPublicKey::from(attacker.clone());
        let forged = SignedPublicKey::new(
            vendor_pub.primary_key.clone(),
            vendor_pub.details.clone(),
            attacker_pub.public_subkeys.clone(),
        );
        let (keys, dropped) = load(&forged.to_bytes().unwrap()).unwrap();
        assert_eq!(keys.len(), 1, "the vendor's primary key only");
        assert!(
            dropped.len() == 1 && dropped[0].contains("no valid binding"),
            "{dropped:?}"
        );
        assert!(!keys.iter().any(|k| k.is_issuer_of(&by_sub)));
    }

    #[test]
    fn the_debian_archive_keyring_loads() {
        let path = "/usr/share/keyrings/debian-archive-keyring.gpg";
        let data = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (Debian package debian-archive-keyring)"));
        let (keys, dropped) = load(&data).unwrap();
        // Every key of the archive keyring may sign, until it expires
        // (their expiry is on the user ID; later flag-less direct key
        // signatures must not hide it).
        assert!(keys.len() >= 2 && dropped.is_empty(), "{dropped:?}");
        for k in &keys {
            let end = k.expires.expect("Debian's archive keys expire");
            let years = (end - u64::from(k.created)) / (365 * 86_400);
            assert!((1..=10).contains(&years), "{years} years");
        }
    }

    /// Runs gpg with a throwaway home; panics, naming the tool, when it
    /// is missing.
    fn gpg(home: &std::path::Path, args: &[&str]) {
        let out = std::process::Command::new("gpg")
            .arg("--homedir")
            .arg(home)
            .args(["--batch", "--quiet", "--no-autostart"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("gpg must be installed (Debian package gnupg): {e}"));
        assert!(out.status.success(), "gpg {args:?}: {out:?}");
    }

    #[test]
    fn keyrings_with_trust_packets_and_several_armored_blocks_load() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("gnupg");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let (a, b) = (key("alpha", false), key("beta", true));
        let armored = |k: &SignedSecretKey| {
            SignedPublicKey::from(k.clone())
                .to_armored_string(None.into())
                .unwrap()
        };
        // Two armored blocks in one file, as vendors ship them.
        let both = format!("{}\n{}", armored(&a), armored(&b));
        let (keys, dropped) = load(both.as_bytes()).unwrap();
        assert_eq!(keys.len(), 2, "alpha's primary, beta's subkey: {dropped:?}");
        // gpg --import into a keyring file writes trust packets after
        // every key, user ID and signature.
        let asc = tmp.path().join("both.asc");
        std::fs::write(&asc, &both).unwrap();
        let ring = tmp.path().join("ring.gpg");
        // An existing empty file: gpg keeps its (legacy keyring) format
        // instead of making a keybox.
        std::fs::write(&ring, b"").unwrap();
        let ring_s = ring.to_str().unwrap();
        gpg(
            &home,
            &[
                "--no-default-keyring",
                "--keyring",
                ring_s,
                "--import",
                asc.to_str().unwrap(),
            ],
        );
        let data = std::fs::read(&ring).unwrap();
        assert!(
            PacketParser::new(&data[..]).any(|p| matches!(p, Ok(Packet::Trust(_)))),
            "the keyring should hold trust packets"
        );
        let (keys, dropped) = load(&data).unwrap();
        assert_eq!(keys.len(), 2, "{dropped:?}");
        assert!(dropped.is_empty(), "{dropped:?}");
    }
}
