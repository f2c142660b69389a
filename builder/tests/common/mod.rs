//! Fixtures shared by the builder's offline tests: small `.deb`s made with
//! `dpkg-deb`, a signed local (`file://`) Debian archive, and image roots
//! holding a few of the host's own programs (so that chroot steps and
//! `dpkg --configure` can run without downloading anything).
//!
//! A missing tool (`dpkg-deb`, `ldd`) fails the test with a message; it is
//! never a silent skip.

#![allow(dead_code)]

pub mod tools;

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
pub use tools::*;

/// One file in a test package.
pub enum Member {
    /// A regular file with this content and mode.
    File(&'static str, String, u32),
    /// A symlink to the target.
    Symlink(&'static str, &'static str),
}

/// A package to build with `dpkg-deb`.
pub struct DebSpec {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Extra control fields (`Replaces: a`, `Depends: b`, ...), one per line.
    pub fields: Vec<String>,
    /// Files (paths relative to the root, no leading slash).
    pub members: Vec<Member>,
    /// Maintainer scripts by name (`preinst`, `postinst`, ...).
    pub scripts: Vec<(&'static str, String)>,
    /// Conffiles (absolute paths).
    pub conffiles: Vec<String>,
    /// Copy these host programs (with libraries) into the package.
    pub host_tools: Vec<&'static str>,
}

impl DebSpec {
    /// A package with no files and no relationships.
    pub fn new(name: &str, version: &str) -> DebSpec {
        DebSpec {
            name: name.into(),
            version: version.into(),
            fields: Vec::new(),
            members: Vec::new(),
            scripts: Vec::new(),
            conffiles: Vec::new(),
            host_tools: Vec::new(),
        }
    }

    /// Adds a control field line.
    pub fn field(mut self, line: &str) -> DebSpec {
        self.fields.push(line.into());
        self
    }

    /// Adds a regular file (mode 0644).
    pub fn file(mut self, path: &'static str, content: &str) -> DebSpec {
        self.members
            .push(Member::File(path, content.to_string(), 0o644));
        self
    }

    /// Adds a maintainer script.
    pub fn script(mut self, name: &'static str, body: &str) -> DebSpec {
        self.scripts.push((name, body.to_string()));
        self
    }

    /// Builds `<dir>/<name>_<version>_all.deb` and returns its path.
    pub fn build(&self, dir: &Path) -> PathBuf {
        let src = dir.join(format!("src-{}-{}", self.name, self.version));
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(src.join("DEBIAN")).unwrap();
        if !self.host_tools.is_empty() {
            host_tools(&src, &self.host_tools);
        }
        for m in &self.members {
            match m {
                Member::File(p, content, mode) => {
                    let f = src.join(p);
                    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                    std::fs::write(&f, content).unwrap();
                    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode)).unwrap();
                }
                Member::Symlink(p, target) => {
                    let f = src.join(p);
                    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                    std::os::unix::fs::symlink(target, f).unwrap();
                }
            }
        }
        let mut control = format!(
            "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: vnfs tests <tests@invalid>\nPriority: optional\nDescription: test package {}\n",
            self.name, self.version, self.name
        );
        for f in &self.fields {
            let _ = writeln!(control, "{f}");
        }
        std::fs::write(src.join("DEBIAN/control"), control).unwrap();
        for (name, body) in &self.scripts {
            let p = src.join("DEBIAN").join(name);
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        if !self.conffiles.is_empty() {
            std::fs::write(
                src.join("DEBIAN/conffiles"),
                self.conffiles.join("\n") + "\n",
            )
            .unwrap();
        }
        let out = dir.join(format!("{}_{}_all.deb", self.name, self.version));
        sh(Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&src)
            .arg(&out));
        std::fs::remove_dir_all(&src).unwrap();
        out
    }
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

/// A signed Debian archive in a local directory, read over `file://`.
pub struct Mirror {
    /// The archive root.
    pub dir: PathBuf,
    /// The keyring holding the signing key's public part.
    pub keyring: PathBuf,
    /// The suite.
    pub suite: String,
    key: pgp::composed::SignedSecretKey,
}

impl Mirror {
    /// An empty archive for `suite`, with a fresh signing key.
    pub fn new(dir: &Path, suite: &str) -> Mirror {
        use pgp::composed::{EncryptionCaps, KeyType, SecretKeyParamsBuilder};
        use pgp::ser::Serialize as _;
        let mut rng = rand::thread_rng();
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .can_encrypt(EncryptionCaps::None)
            .primary_user_id("vnfs test archive <archive@invalid>".into())
            .build()
            .unwrap();
        let key = params.generate(&mut rng).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let keyring = dir.join("test-archive-keyring.gpg");
        let public = pgp::composed::SignedPublicKey::from(key.clone());
        std::fs::write(&keyring, public.to_bytes().unwrap()).unwrap();
        Mirror {
            dir: dir.to_path_buf(),
            keyring,
            suite: suite.into(),
            key,
        }
    }

    /// The archive URI to put in a recipe.
    pub fn uri(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    /// Publishes `debs` (with `Priority`/`Essential` overrides given as
    /// extra stanza lines per package name) as the whole `main` component:
    /// pool files, `Packages`, `Release` and the clear-signed `InRelease`.
    pub fn publish(&self, debs: &[PathBuf], extra: &[(&str, &str)]) {
        let pool = self.dir.join("pool/main");
        std::fs::create_dir_all(&pool).unwrap();
        let mut packages = String::new();
        for deb in debs {
            let name = deb.file_name().unwrap().to_string_lossy().into_owned();
            let dest = pool.join(&name);
            if deb != &dest {
                std::fs::copy(deb, &dest).unwrap();
            }
            let mut control = sh(Command::new("dpkg-deb").arg("-f").arg(&dest));
            if !control.ends_with('\n') {
                control.push('\n');
            }
            let pkg = control
                .lines()
                .find_map(|l| l.strip_prefix("Package: "))
                .unwrap()
                .to_string();
            // Stanza fields the index adds (or overrides) for this package.
            let overrides: Vec<&str> = extra
                .iter()
                .filter(|(n, _)| *n == pkg)
                .map(|(_, l)| *l)
                .collect();
            for line in control.lines() {
                let key = line.split(':').next().unwrap_or("");
                if overrides
                    .iter()
                    .any(|o| o.split(':').next() == Some(key) && !line.starts_with(' '))
                {
                    continue;
                }
                let _ = writeln!(packages, "{line}");
            }
            for o in &overrides {
                let _ = writeln!(packages, "{o}");
            }
            let _ = writeln!(packages, "Filename: pool/main/{name}");
            let _ = writeln!(
                packages,
                "Size: {}",
                std::fs::metadata(&dest).unwrap().len()
            );
            let _ = writeln!(packages, "SHA256: {}\n", sha256_file(&dest));
        }
        let dists = self.dir.join("dists").join(&self.suite);
        let bin = dists.join("main/binary-amd64");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("Packages"), &packages).unwrap();
        let sha = hex::encode(Sha256::digest(packages.as_bytes()));
        let release = format!(
            "Origin: vnfs-test\nSuite: {s}\nCodename: {s}\nDate: Sat, 01 Jun 2024 00:00:00 UTC\nArchitectures: amd64\nComponents: main\nSHA256:\n {sha} {len} main/binary-amd64/Packages\n",
            s = self.suite,
            len = packages.len()
        );
        std::fs::write(dists.join("Release"), &release).unwrap();
        self.sign_release(&release);
    }

    /// Writes `InRelease`: `release` clear-signed with the archive key.
    pub fn sign_release(&self, release: &str) {
        let msg = pgp::composed::CleartextSignedMessage::sign(
            rand::thread_rng(),
            release,
            &self.key.primary_key,
            &pgp::types::Password::empty(),
        )
        .unwrap();
        let text = msg.to_armored_string(Default::default()).unwrap();
        std::fs::write(
            self.dir.join("dists").join(&self.suite).join("InRelease"),
            text,
        )
        .unwrap();
    }

    /// Path of the `Packages` index.
    pub fn packages_path(&self) -> PathBuf {
        self.dir
            .join("dists")
            .join(&self.suite)
            .join("main/binary-amd64/Packages")
    }

    /// Path of `InRelease`.
    pub fn inrelease_path(&self) -> PathBuf {
        self.dir.join("dists").join(&self.suite).join("InRelease")
    }
}

/// Writes `<dir>/<name>.toml`: an `[image]` table (test/1/1/x86_64)
/// followed by `rest` (the source and any steps), and loads it.
pub fn small_recipe(dir: &Path, name: &str, rest: &str) -> vnfs_builder::recipe::Recipe {
    let p = dir.join(format!("{name}.toml"));
    let text =
        format!("[image]\nos = \"t\"\nversion = \"1\"\nrelease = \"1\"\narch = \"x86_64\"\n{rest}");
    std::fs::write(&p, text).unwrap();
    vnfs_builder::recipe::Recipe::load(&p).unwrap()
}
