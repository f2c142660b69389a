//! Tests against the real Debian mirror named by this machine's apt
//! sources. No network or a missing tool is a failure, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use vnfs_builder::build::{BuildError, BuildOptions, build};
use vnfs_builder::cache::{Cache, CacheError, Wanted};
use vnfs_builder::debian::inrelease::{Keyring, ReleaseError};
use vnfs_builder::debian::repo::{self, ArchiveSpec, RepoError};
use vnfs_builder::debian::resolve::ResolveError;
use vnfs_builder::debian::sources;
use vnfs_builder::http::{FetchError, Fetcher};
use vnfs_builder::progress::NoProgress;
use vnfs_builder::recipe::{DEBIAN_KEYRING, Recipe};

/// The mirror for the suite the machine itself uses.
fn mirror() -> (String, String) {
    let entries = sources::read_system_sources(Path::new("/etc/apt")).expect("apt sources");
    let e = entries
        .iter()
        .find(|e| e.kind == "deb" && !e.suite.contains('-') && e.uri.starts_with("http"))
        .expect("an http deb source for the release suite in /etc/apt");
    (e.uri.clone(), e.suite.clone())
}

fn keyring() -> Keyring {
    Keyring::load(Path::new(DEBIAN_KEYRING)).expect("debian-archive-keyring must be installed")
}

const MINIMAL: &str = r#"
[image]
os = "debian"
version = "12"
release = "1"
arch = "x86_64"
name = "test-minimal"

[source.debian]
suite = "SUITE"
variant = "minbase"

[[step]]
write = "/etc/motd"
content = "built by vnfs\n"

[[step]]
run = "test -x /usr/bin/apt-get && echo ok > /root/step-ran"
"#;

fn write_recipe(dir: &Path, suite: &str, extra: &str) -> PathBuf {
    let p = dir.join("r.toml");
    std::fs::write(&p, MINIMAL.replace("SUITE", suite) + extra).unwrap();
    p
}

fn chroot_ok(root: &Path, args: &[&str]) -> String {
    let out = Command::new("chroot")
        .arg(root)
        .args(args)
        .output()
        .expect("chroot must be available");
    assert!(out.status.success(), "{args:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Builds the minimal recipe twice from empty caches and stores: the
/// trees must be clean by dpkg and apt, and the commit ids equal.
#[test]
fn minimal_build_is_clean_and_reproducible() {
    let (_, suite) = mirror();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let tmp = tempfile::tempdir().unwrap();
        let recipe = Recipe::load(&write_recipe(tmp.path(), &suite, "")).unwrap();
        let mut opts = BuildOptions::new(&tmp.path().join("home"));
        opts.output_dir = Some(tmp.path().join("root"));
        let built = build(&recipe, &opts, &NoProgress, &AtomicBool::new(false)).unwrap();
        let root = tmp.path().join("root");
        assert_eq!(chroot_ok(&root, &["dpkg", "--audit"]), "");
        chroot_ok(&root, &["apt-get", "check"]);
        assert_eq!(
            std::fs::read_to_string(root.join("root/step-ran")).unwrap(),
            "ok\n"
        );
        // minbase has no systemd, so no machine-id; if present it is empty.
        let mid = std::fs::read_to_string(root.join("etc/machine-id")).unwrap_or_default();
        assert_eq!(mid, "");
        assert!(built.lock_written && recipe.lock_path().exists());
        assert!(built.packages.iter().any(|p| p.name == "apt"));
        let meta = &built.metadata;
        assert!(meta["vnfs.packages"].contains("\"name\":\"dpkg\""));
        assert_eq!(meta["vnfs.image"], "test-minimal");
        ids.push(built.commit.expect("committed").to_string());
    }
    assert_eq!(
        ids[0], ids[1],
        "same recipe, same mirror state => same commit"
    );
}

#[test]
fn tampered_inrelease_is_refused() {
    let (uri, suite) = mirror();
    let f = Fetcher::default();
    let real = f.get(&format!("{uri}/dists/{suite}/InRelease")).unwrap();
    let text = String::from_utf8(real).unwrap();
    // Change one hash digit inside the signed text.
    let i = text.find("SHA256:\n ").unwrap() + 9;
    let mut bytes = text.into_bytes();
    bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
    let tmp = tempfile::tempdir().unwrap();
    let dists = tmp.path().join("dists").join(&suite);
    std::fs::create_dir_all(&dists).unwrap();
    std::fs::write(dists.join("InRelease"), &bytes).unwrap();
    let spec = ArchiveSpec {
        uri: format!("file://{}", tmp.path().display()),
        suite: suite.clone(),
        components: vec!["main".into()],
    };
    let e = repo::load_index(&f, &[spec], "amd64", &keyring()).unwrap_err();
    assert!(
        matches!(e, RepoError::Release(ReleaseError::BadSignature { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("InRelease"), "{e}");
}

#[test]
fn tampered_packages_index_is_refused() {
    let (uri, suite) = mirror();
    let f = Fetcher::default();
    let tmp = tempfile::tempdir().unwrap();
    let dists = tmp.path().join("dists").join(&suite);
    std::fs::create_dir_all(dists.join("main/binary-amd64")).unwrap();
    let inrelease = f.get(&format!("{uri}/dists/{suite}/InRelease")).unwrap();
    std::fs::write(dists.join("InRelease"), inrelease).unwrap();
    let mut xz = f
        .get(&format!(
            "{uri}/dists/{suite}/main/binary-amd64/Packages.xz"
        ))
        .unwrap();
    let last = xz.len() - 100;
    xz[last] ^= 0xff;
    std::fs::write(dists.join("main/binary-amd64/Packages.xz"), xz).unwrap();
    let spec = ArchiveSpec {
        uri: format!("file://{}", tmp.path().display()),
        suite,
        components: vec!["main".into()],
    };
    let e = repo::load_index(&f, &[spec], "amd64", &keyring()).unwrap_err();
    assert!(matches!(e, RepoError::IndexHash { .. }), "{e}");
    assert!(e.to_string().contains("Packages.xz"), "{e}");
}

#[test]
fn tampered_deb_is_refused_and_not_cached() {
    let (uri, suite) = mirror();
    let f = Fetcher::default();
    let index = repo::load_index(
        &f,
        &[ArchiveSpec {
            uri: uri.clone(),
            suite,
            components: vec!["main".into()],
        }],
        "amd64",
        &keyring(),
    )
    .unwrap();
    let p = index
        .packages
        .iter()
        .find(|p| p.name == "base-passwd")
        .expect("base-passwd in the index");
    let tmp = tempfile::tempdir().unwrap();
    let mut deb = f.get(&format!("{uri}/{}", p.filename)).unwrap();
    let mid = deb.len() / 2;
    deb[mid] ^= 0x55;
    let bad = tmp.path().join("bad.deb");
    std::fs::write(&bad, deb).unwrap();
    let cache = Cache::new(&tmp.path().join("home"));
    let wanted = Wanted {
        url: format!("file://{}", bad.display()),
        sha256: p.sha256.clone(),
        size: p.size,
    };
    let e = cache
        .ensure(&f, &[wanted], &NoProgress, &AtomicBool::new(false), None)
        .unwrap_err();
    assert!(
        matches!(e, CacheError::Fetch(FetchError::HashMismatch { .. })),
        "{e}"
    );
    assert!(!cache.path_for(&p.sha256).exists());
}

#[test]
fn unknown_package_is_explained_and_nothing_is_committed() {
    let (_, suite) = mirror();
    let tmp = tempfile::tempdir().unwrap();
    let extra = "";
    let p = write_recipe(tmp.path(), &suite, extra);
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "variant = \"minbase\"",
        "variant = \"minbase\"\npackages = [\"openssh-servr\"]",
    );
    std::fs::write(&p, text).unwrap();
    let recipe = Recipe::load(&p).unwrap();
    let home = tmp.path().join("home");
    let e = build(
        &recipe,
        &BuildOptions::new(&home),
        &NoProgress,
        &AtomicBool::new(false),
    )
    .unwrap_err();
    match &e {
        BuildError::Resolve(ResolveError::Unknown { name, close, .. }) => {
            assert_eq!(name, "openssh-servr");
            assert!(close.iter().any(|c| c == "openssh-server"), "{e}");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(!recipe.lock_path().exists());
    assert!(!home.join("store").exists());
    // The temporary root is gone.
    let leftovers: Vec<_> = std::fs::read_dir(home.join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty());
}

#[test]
fn missing_mirror_path_names_the_url() {
    let (uri, _) = mirror();
    let f = Fetcher::new(2);
    let url = format!("{uri}/dists/no-such-suite-vnfs/InRelease");
    let e = f.get(&url).unwrap_err();
    assert!(matches!(e, FetchError::Status { status: 404, .. }), "{e}");
    assert!(e.to_string().contains(&url));
}
