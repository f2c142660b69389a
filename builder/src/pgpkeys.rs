//! Signing keys from an OpenPGP key file, taken as a careful verifier
//! takes them, and the rules a data signature must meet. Shared by the
//! Debian archive check (InRelease) and the RPM checks (repomd.xml.asc,
//! package headers).
//!
//! A key file is trusted as the user gives it, but not every packet in it
//! is: a subkey counts only with a valid binding by its primary key that
//! allows signing (and the subkey's own back signature), so a subkey
//! appended to a vendor's key file signs nothing; a revoked key or subkey
//! signs nothing; a key signs only while it is alive (expiry from its
//! newest valid self-signature), judged at the signature's creation time.
//! A data signature must name its issuer, carry a creation time, not have
//! expired, be of the expected type (binary, or text where the format is
//! text) and use a SHA-2 or SHA-3 digest, as rpm's own policy requires.

use pgp::composed::{CleartextSignedMessage, PublicOrSecret, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{PublicKey, PublicSubkey, Signature, SignatureType};
use pgp::types::{KeyDetails, Timestamp};

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

    /// Verifies `sig` over `data` with this key, which must have been
    /// alive when the signature was made ([`check_signature`] first).
    pub fn verify(&self, sig: &Signature, data: &[u8]) -> Result<(), String> {
        self.alive_at(sig)?;
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
        self.alive_at(sig)?;
        Ok(sig)
    }

    fn alive_at(&self, sig: &Signature) -> Result<(), String> {
        let at = sig.created().map(Timestamp::as_secs).unwrap_or(0);
        if at < self.created {
            return Err("the signature is older than the key that made it".into());
        }
        if let Some(end) = self.expires
            && u64::from(at) >= end
        {
            return Err("the key had expired when the signature was made".into());
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
        && u64::from(created.as_secs()) + u64::from(d.as_secs())
            <= u64::from(Timestamp::now().as_secs())
    {
        return Err("the signature has expired".into());
    }
    Ok(())
}

/// The signing keys of an OpenPGP key file (armored or binary, one or
/// several keys, public or secret: the public part is used), with what
/// was left out and why.
pub fn load(data: &[u8]) -> Result<(Vec<SigningKey>, Vec<String>), String> {
    let (iter, _) = PublicOrSecret::from_reader_many(data).map_err(|e| e.to_string())?;
    let mut keys = Vec::new();
    let mut dropped = Vec::new();
    for k in iter {
        match k {
            Ok(PublicOrSecret::Public(k)) => take(&k, &mut keys, &mut dropped),
            Ok(PublicOrSecret::Secret(k)) => take(&k.to_public_key(), &mut keys, &mut dropped),
            Err(e) => dropped.push(format!("a key that cannot be read: {e}")),
        }
    }
    Ok((keys, dropped))
}

/// Adds the usable parts of `k`.
fn take(k: &SignedPublicKey, keys: &mut Vec<SigningKey>, dropped: &mut Vec<String>) {
    let primary = &k.primary_key;
    let name = format!("key {}", primary.legacy_key_id());
    let created = primary.created_at().as_secs();
    if k.details
        .revocation_signatures
        .iter()
        .any(|s| s.verify_key(primary).is_ok())
    {
        dropped.push(format!("{name}: revoked"));
        return;
    }
    // The newest valid self-signature says what the primary key may do
    // and until when.
    let self_sigs = k
        .details
        .users
        .iter()
        .flat_map(|u| {
            u.signatures.iter().filter(|s| {
                s.verify_certification(primary, pgp::types::Tag::UserId, &u.id)
                    .is_ok()
            })
        })
        .chain(
            k.details
                .direct_signatures
                .iter()
                .filter(|s| s.verify_key(primary).is_ok()),
        );
    let Some(newest) = self_sigs.max_by_key(|s| s.created().map(Timestamp::as_secs)) else {
        dropped.push(format!("{name}: no valid self-signature"));
        return;
    };
    let flags = newest.key_flags();
    // No key flags at all: an old key that predates them, usable.
    let flags_given = flags.sign()
        || flags.certify()
        || flags.encrypt_comms()
        || flags.encrypt_storage()
        || flags.authentication();
    if !flags_given || flags.sign() {
        keys.push(SigningKey {
            material: Material::Primary(primary.clone()),
            created,
            expires: expiry(created, newest),
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
        if valid(SignatureType::SubkeyRevocation).next().is_some() {
            dropped.push(format!("{sname}: revoked"));
            continue;
        }
        let Some(binding) =
            valid(SignatureType::SubkeyBinding).max_by_key(|s| s.created().map(Timestamp::as_secs))
        else {
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
        keys.push(SigningKey {
            material: Material::Sub(sub.key.clone()),
            created: screated,
            expires: expiry(screated, binding),
        });
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
pub fn reason(e: &pgp::errors::Error) -> String {
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
        keys[0].verify(&good, b"data").unwrap();
        assert!(keys[0].verify(&good, b"dat4").is_err());
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
        keys[0].verify(&by_sub, b"pkg").unwrap();
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
        // Every key of the archive keyring may sign.
        assert!(keys.len() >= 2 && dropped.is_empty(), "{dropped:?}");
    }
}
