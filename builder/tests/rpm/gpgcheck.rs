//! dnf-style package signature checks (`gpgcheck`) end to end. The test
//! packages are signed by the host's real `rpmsign` with throwaway keys in
//! a temporary GNUPGHOME, so the format is rpm's own, and every verdict is
//! compared with `rpmkeys --checksig`'s on the same file.
//!
//! Needs gpg and gpg-agent (Debian package gnupg) and rpmsign/rpmkeys
//! (Debian package rpm), installed by scripts/setup.sh; without them the
//! tests fail, they never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vnfs_builder::rpm::layout::Layout;

use super::{builder, fixture, package_names, recipe, require_root, run, write};

/// Runs a host tool the tests cannot do without; its absence is a failure
/// that names it.
fn tool(cmd: &mut Command, name: &str, package: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{name} must be installed (Debian package {package}; scripts/setup.sh): {e}")
    });
    assert!(out.status.success(), "{name} failed: {out:?}");
    out
}

/// A throwaway OpenPGP key in its own GNUPGHOME, used through rpmsign.
struct Signer {
    home: tempfile::TempDir,
    uid: String,
    /// The armored public key, as a recipe's gpgkey.
    public: PathBuf,
    /// Its long key id (lower-case hex).
    key_id: String,
}

impl Signer {
    /// Makes a key of `algo` (`rsa3072`, `ed25519`, ...) named `name`, and
    /// writes its public part to `dir/<name>.asc`.
    fn new(dir: &Path, name: &str, algo: &str) -> Signer {
        let home = tempfile::Builder::new().prefix("gnupg").tempdir().unwrap();
        let uid = format!("vnfs test {name} <{name}@example.invalid>");
        let gpg = |args: &[&str]| {
            tool(
                Command::new("gpg")
                    .env("GNUPGHOME", home.path())
                    .args(["--batch", "--no-tty", "--quiet"])
                    .args(args),
                "gpg",
                "gnupg",
            )
        };
        gpg(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            &uid,
            algo,
            "sign",
            "never",
        ]);
        let public = dir.join(format!("{name}.asc"));
        let out = gpg(&["--armor", "--export", &uid]);
        std::fs::write(&public, &out.stdout).unwrap();
        let out = gpg(&["--with-colons", "--list-keys", &uid]);
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        let key_id = listing
            .lines()
            .find(|l| l.starts_with("pub:"))
            .and_then(|l| l.split(':').nth(4))
            .unwrap_or_else(|| panic!("no key id in {listing}"))
            .to_ascii_lowercase();
        Signer {
            home,
            uid,
            public,
            key_id,
        }
    }

    /// Signs `rpm` in place, as a distribution does (`rpmsign --addsign`;
    /// `--rpmv3` adds the legacy header+payload signature too).
    fn sign(&self, rpm: &Path, v3: bool) {
        let mut cmd = Command::new("rpmsign");
        cmd.env("GNUPGHOME", self.home.path())
            // Debian's rpm names gpg2, which the gnupg package does not
            // install under that name.
            .args(["--define", "__gpg /usr/bin/gpg"])
            .args(["--define", &format!("_gpg_name {}", self.uid)])
            .args([
                "--define",
                &format!("_gpg_path {}", self.home.path().display()),
            ])
            .arg("--addsign")
            .args(v3.then_some("--rpmv3"))
            .arg(rpm)
            .stdin(std::process::Stdio::null());
        tool(&mut cmd, "rpmsign", "rpm");
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        // The agent gpg started for this home; it would outlive the test.
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// rpm's verdict on `file` with only `keys` trusted: `rpmkeys --checksig`
/// requiring a signature (`_pkgverify_level all`, what dnf's gpgcheck
/// asks of rpm), with its output.
fn rpm_accepts(keys: &[&Path], file: &Path) -> (bool, String) {
    let root = tempfile::tempdir().unwrap();
    for k in keys {
        tool(
            Command::new("rpmkeys")
                .arg("--root")
                .arg(root.path())
                .arg("--import")
                .arg(k),
            "rpmkeys",
            "rpm",
        );
    }
    let out = Command::new("rpmkeys")
        .arg("--root")
        .arg(root.path())
        .args(["--define", "_pkgverify_level all", "--checksig", "-v"])
        .arg(file)
        .output()
        .expect("rpmkeys must be installed (Debian package rpm; scripts/setup.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Asserts rpm's verdict on `file` is `ok`; returns its output.
fn rpm_says(ok: bool, keys: &[&Path], file: &Path) -> String {
    let (accepted, text) = rpm_accepts(keys, file);
    assert_eq!(
        accepted,
        ok,
        "rpmkeys --checksig on {}: {text}",
        file.display()
    );
    text
}

/// Regenerates the fixture repository's metadata after its packages
/// changed (signing rewrites them, so their sha256 changes).
fn reindex(fx: &Path) {
    tool(
        Command::new("createrepo_c")
            .args(["--quiet", "--revision", "3"])
            .arg(fx.join("repo")),
        "createrepo_c",
        "createrepo-c",
    );
}

fn flip(file: &Path, at: usize) {
    let mut b = std::fs::read(file).unwrap();
    b[at] ^= 0x20;
    std::fs::write(file, b).unwrap();
}

fn warnings(b: &vnfs_builder::build::Built) -> String {
    b.metadata
        .get("vnfs.rpm.warnings")
        .cloned()
        .unwrap_or_default()
}

#[test]
fn repository_packages_are_checked_like_dnfs_gpgcheck() {
    require_root();
    let fx = fixture();
    let dir = fx.path();
    let good = Signer::new(dir, "good", "rsa3072");
    let other = Signer::new(dir, "other", "ed25519");
    let pkgs = dir.join("repo/Packages");
    for e in std::fs::read_dir(&pkgs).unwrap() {
        good.sign(&e.unwrap().path(), false);
    }
    // One package left unsigned, one signed by another key.
    let mut b = builder("unsigned", "1", "noarch", rpm::CompressionType::Gzip);
    b.with_file_contents("u\n", rpm::FileOptions::new("/usr/share/unsigned/README"))
        .unwrap();
    write(b.build().unwrap(), &pkgs);
    let mut b = builder("foreign", "1", "noarch", rpm::CompressionType::Gzip);
    b.with_file_contents("f\n", rpm::FileOptions::new("/usr/share/foreign/README"))
        .unwrap();
    let foreign = write(b.build().unwrap(), &pkgs);
    other.sign(&foreign, false);
    reindex(dir);
    let libdep = pkgs.join("libdep-2.0-1.noarch.rpm");
    let unsigned = pkgs.join("unsigned-1-1.noarch.rpm");
    // rpm agrees on all three.
    let text = rpm_says(true, &[&good.public], &libdep);
    assert!(text.contains("RSA/SHA"), "{text}");
    rpm_says(false, &[&good.public], &unsigned);
    let text = rpm_says(false, &[&good.public], &foreign);
    assert!(text.contains("NOKEY"), "{text}");
    rpm_says(true, &[&other.public], &foreign);

    let source = |packages: &str, extra: &str| {
        format!(
            "packages = [{packages}]\n\n[[source.rpm.repo]]\nid = \"test\"\nbaseurl = \"repo\"\ngpgkey = \"good.asc\"\n{extra}"
        )
    };
    // gpgkey alone means gpgcheck, not repo_gpgcheck: the repository has
    // no repomd.xml.asc and still builds, verified package by package.
    let r = recipe(dir, "signed", &source("\"libdep\"", ""));
    let built = run(&r, &dir.join("h1"), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(package_names(&built), ["libdep-2.0-1"]);
    assert!(
        !warnings(&built).contains("not verified"),
        "{}",
        warnings(&built)
    );
    // repo_gpgcheck still wants the signed repomd.xml.
    let r = recipe(
        dir,
        "repomd",
        &source("\"libdep\"", "repo_gpgcheck = true\n"),
    );
    let e = run(&r, &dir.join("h2"), None).unwrap_err();
    assert!(e.contains("repomd.xml.asc: HTTP status 404"), "{e}");

    // Unsigned: refused, named with its repository and the key file.
    let r = recipe(dir, "unsigned", &source("\"unsigned\"", ""));
    let e = run(&r, &dir.join("h3"), None).unwrap_err();
    assert!(
        e.contains("package unsigned-1-1.noarch from repo test: not signed")
            && e.contains("good.asc"),
        "{e}"
    );
    assert!(!dir.join("h3/store").exists(), "nothing was committed");
    // Signed, but by a key the recipe does not trust.
    let r = recipe(dir, "foreign", &source("\"foreign\"", ""));
    let e = run(&r, &dir.join("h4"), None).unwrap_err();
    assert!(
        e.contains("package foreign-1-1.noarch from repo test: signed by a key not in")
            && e.contains(&format!("good.asc (key id {})", other.key_id)),
        "{e}"
    );
    // Locked builds check too: the lock is made with gpgcheck off, then
    // used as it is with gpgcheck on.
    let r = recipe(dir, "locked", &source("\"unsigned\"", "gpgcheck = false\n"));
    let built = run(&r, &dir.join("h5"), None).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        warnings(&built).contains("repository test is not verified"),
        "{}",
        warnings(&built)
    );
    let r = recipe(dir, "locked", &source("\"unsigned\"", ""));
    let e = run(&r, &dir.join("h6"), None).unwrap_err();
    assert!(e.contains("not signed"), "{e}");
    assert!(dir.join("locked.toml.lock").exists());
}

#[test]
fn local_files_are_checked_and_tampering_is_caught() {
    require_root();
    let fx = fixture();
    let dir = fx.path();
    let good = Signer::new(dir, "good", "ed25519");
    let other = Signer::new(dir, "other", "ed25519");
    let signed = dir.join("signed");
    std::fs::create_dir_all(&signed).unwrap();
    let copy = |name: &str, signer: Option<&Signer>| {
        let to = signed.join(name);
        std::fs::copy(dir.join("rpms/libdep-1.0-1.noarch.rpm"), &to).unwrap();
        if let Some(s) = signer {
            s.sign(&to, false);
        }
        to
    };
    let build = |name: &str, file: &Path, key: Option<&str>| {
        let key = key.map_or(String::new(), |k| format!("gpgkey = \"{k}\"\n"));
        let rel = file.strip_prefix(dir).unwrap().display();
        let r = recipe(dir, name, &format!("files = [\"{rel}\"]\n{key}"));
        run(&r, &dir.join(format!("home-{name}")), None)
    };
    let ok = copy("ok.rpm", Some(&good));
    rpm_says(true, &[&good.public], &ok);
    let built = build("ok", &ok, Some("good.asc")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(package_names(&built), ["libdep-1.0-1"]);
    assert!(
        !warnings(&built).contains("not verified"),
        "{}",
        warnings(&built)
    );
    // Without a key the same file builds, and the image says it was not
    // verified.
    let built = build("nokey", &ok, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        warnings(&built).contains("local RPM files are not verified"),
        "{}",
        warnings(&built)
    );

    let layout = Layout::parse(&std::fs::read(&ok).unwrap()).unwrap();
    // A byte of the compressed payload: the signature still holds, the
    // payload digest it covers does not.
    let payload = copy("payload.rpm", Some(&good));
    flip(&payload, layout.payload.start + layout.payload.len() / 2);
    let text = rpm_says(false, &[&good.public], &payload);
    assert!(text.contains("Payload SHA256 digest: BAD"), "{text}");
    let e = build("payload", &payload, Some("good.asc")).unwrap_err();
    assert!(
        e.contains("payload.rpm: payload digest mismatch") && e.contains("good.asc"),
        "{e}"
    );
    // A byte of the signed header (its summary text).
    let header = copy("header.rpm", Some(&good));
    let bytes = std::fs::read(&header).unwrap();
    let at = bytes[layout.header.clone()]
        .windows(17)
        .position(|w| w == b"vnfs test package")
        .expect("the summary is in the main header")
        + layout.header.start;
    flip(&header, at);
    let text = rpm_says(false, &[&good.public], &header);
    assert!(
        text.contains("Signature, key ID") && text.contains("BAD"),
        "{text}"
    );
    let e = build("header", &header, Some("good.asc")).unwrap_err();
    assert!(
        e.contains("header.rpm: signature does not verify with key id") && e.contains(&good.key_id),
        "{e}"
    );
    // Unsigned, and signed by another key.
    let unsigned = copy("unsigned.rpm", None);
    rpm_says(false, &[&good.public], &unsigned);
    let e = build("unsigned", &unsigned, Some("good.asc")).unwrap_err();
    assert!(e.contains("unsigned.rpm: not signed"), "{e}");
    let foreign = copy("foreign.rpm", Some(&other));
    rpm_says(false, &[&good.public], &foreign);
    let e = build("foreign", &foreign, Some("good.asc")).unwrap_err();
    assert!(
        e.contains(&format!(
            "signed by a key not in {}",
            dir.join("good.asc").display()
        )) && e.contains(&other.key_id),
        "{e}"
    );
    // A locked build checks again: the key changes, the lock does not.
    let e = build("ok", &ok, Some("other.asc")).unwrap_err();
    assert!(e.contains("ok.rpm: signed by a key not in"), "{e}");
}

#[test]
fn legacy_header_and_payload_signatures_are_read() {
    require_root();
    let fx = fixture();
    let dir = fx.path();
    let good = Signer::new(dir, "good", "rsa3072");
    let file = dir.join("v3.rpm");
    std::fs::copy(dir.join("rpms/libdep-1.0-1.noarch.rpm"), &file).unwrap();
    good.sign(&file, true);
    // Hide the header-only signature (tag 268 renamed to an unused tag),
    // leaving the v3 signature over header and payload (tag 1002).
    let mut bytes = std::fs::read(&file).unwrap();
    let layout = Layout::parse(&bytes).unwrap();
    let index = layout.signature.start + 16;
    let count = u32::from_be_bytes(bytes[index - 8..index - 4].try_into().unwrap()) as usize;
    let tags: Vec<u32> = (0..count)
        .map(|i| u32::from_be_bytes(bytes[index + 16 * i..][..4].try_into().unwrap()))
        .collect();
    assert!(
        tags.contains(&1002),
        "rpmsign --rpmv3 adds the v3 signature: {tags:?}"
    );
    let rsa = tags
        .iter()
        .position(|&t| t == 268)
        .expect("a header-only signature");
    bytes[index + 16 * rsa..][..4].copy_from_slice(&264u32.to_be_bytes());
    std::fs::write(&file, &bytes).unwrap();
    let text = rpm_says(true, &[&good.public], &file);
    assert!(text.contains("V4 RSA/SHA"), "{text}");
    let r = recipe(dir, "v3", "files = [\"v3.rpm\"]\ngpgkey = \"good.asc\"\n");
    let built = run(&r, &dir.join("h1"), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(package_names(&built), ["libdep-1.0-1"]);
    // That signature covers the payload itself (resolved again: the lock's
    // sha256 would refuse the changed file first).
    flip(&file, layout.payload.start + 10);
    std::fs::remove_file(dir.join("v3.toml.lock")).unwrap();
    rpm_says(false, &[&good.public], &file);
    let e = run(&r, &dir.join("h2"), None).unwrap_err();
    assert!(e.contains("v3.rpm: signature does not verify"), "{e}");
}

#[test]
fn gpgcheck_without_a_key_is_a_recipe_error() {
    let dir = tempfile::tempdir().unwrap();
    for key in ["gpgcheck", "repo_gpgcheck"] {
        let r = recipe(
            dir.path(),
            key,
            &format!(
                "packages = [\"a\"]\n\n[[source.rpm.repo]]\nid = \"r\"\nbaseurl = \"repo\"\n{key} = true\n"
            ),
        );
        let e = run(&r, &dir.path().join("home"), None).unwrap_err();
        assert!(
            e.contains(&format!("repo \"r\": {key} = true needs a gpgkey")),
            "{e}"
        );
    }
}
