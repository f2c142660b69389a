//! Debian builds against a local, signed archive (`file://`, signed with
//! a key made for the test): one build that works, then every bad input
//! the builder must refuse with a clear error and without committing:
//! unknown packages (with close names), unsatisfiable dependencies, a
//! tampered InRelease, Packages index or `.deb` (downloaded or already
//! cached), a 404 and an unreachable mirror (bounded retries, the URL
//! named), and a failing step (its output shown). Needs root and dpkg-deb.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{DPKG_TOOLS, DebSpec, Mirror, host_tools};
use vnfs_builder::build::{BuildError, BuildOptions, Built, build};
use vnfs_builder::cache::CacheError;
use vnfs_builder::debian::inrelease::ReleaseError;
use vnfs_builder::debian::install::InstallError;
use vnfs_builder::debian::repo::RepoError;
use vnfs_builder::debian::resolve::ResolveError;
use vnfs_builder::http::{FetchError, Fetcher};
use vnfs_builder::progress::NoProgress;
use vnfs_builder::recipe::Recipe;
use vnfs_builder::steps::StepError;

const SUITE: &str = "testing-vnfs";

/// An archive with a base package (the host's dpkg and shell), a tool
/// that depends on a library, and a package whose dependency cannot be
/// satisfied.
fn archive(dir: &Path) -> Mirror {
    let m = Mirror::new(&dir.join("archive"), SUITE);
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    let mut base = DebSpec::new("hostbase", "1.0");
    base.host_tools = DPKG_TOOLS.to_vec();
    let list = vec![
        base.build(&debs),
        DebSpec::new("libgreet1", "1.2")
            .file("usr/lib/greet/libgreet", "lib\n")
            .build(&debs),
        DebSpec::new("greeter", "2.0")
            .field("Depends: libgreet1 (>= 1.0), hostbase")
            .file("usr/share/greeter/hello", "hello\n")
            .build(&debs),
        DebSpec::new("needy", "1.0")
            .field("Depends: greeter, libgreet1 (>= 3)")
            .file("usr/share/needy/x", "x\n")
            .build(&debs),
    ];
    m.publish(&list, &[]);
    m
}

fn recipe(dir: &Path, m: &Mirror, packages: &str, extra: &str) -> Recipe {
    let text = format!(
        r#"
[image]
os = "test"
version = "1"
release = "1"
arch = "x86_64"
name = "local"

[source.debian]
suite = "{SUITE}"
mirror = "{uri}"
keyring = "{keyring}"
variant = "custom"
packages = [{packages}]
{extra}"#,
        uri = m.uri(),
        keyring = m.keyring.display(),
    );
    let p = dir.join("local.toml");
    std::fs::write(&p, text).unwrap();
    let _ = std::fs::remove_file(dir.join("local.toml.lock"));
    Recipe::load(&p).unwrap()
}

fn try_build(home: &Path, r: &Recipe) -> Result<Built, BuildError> {
    build(
        r,
        &BuildOptions::new(home),
        &NoProgress,
        &AtomicBool::new(false),
    )
}

/// The failed build left nothing: no store, no lock, no temporary root.
fn assert_nothing_left(home: &Path, r: &Recipe) {
    assert!(!home.join("store").exists(), "nothing may be committed");
    assert!(!r.lock_path().exists(), "no lock for a failed build");
    let tmp: Vec<_> = std::fs::read_dir(home.join("tmp"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "temporary roots left: {tmp:?}");
}

#[test]
fn local_archive_build_and_every_bad_input() {
    let t = tempfile::tempdir().unwrap();
    let m = archive(t.path());

    // A build that works: resolve (greeter pulls libgreet1 and hostbase),
    // download, install, configure, commit, lock.
    let home = t.path().join("home");
    let r = recipe(t.path(), &m, "\"greeter\"", "");
    let built = try_build(&home, &r).unwrap();
    let names: Vec<&str> = built.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["greeter", "hostbase", "libgreet1"]);
    assert!(built.commit.is_some() && r.lock_path().exists());
    let lock = std::fs::read_to_string(r.lock_path()).unwrap();
    assert!(
        !lock.contains(&m.dir.display().to_string()),
        "no mirror in the lock"
    );

    // An unknown package, with the close name suggested.
    let home2 = t.path().join("home-unknown");
    let r2 = recipe(t.path(), &m, "\"greter\"", "");
    let e = try_build(&home2, &r2).unwrap_err();
    match &e {
        BuildError::Resolve(ResolveError::Unknown { name, close, .. }) => {
            assert_eq!(name, "greter");
            assert!(close.iter().any(|c| c == "greeter"), "{e}");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(e.to_string().contains("greeter"), "{e}");
    assert_nothing_left(&home2, &r2);

    // Unsatisfiable: needy wants libgreet1 (>= 3), the archive has 1.2.
    let r3 = recipe(t.path(), &m, "\"needy\"", "");
    let e = try_build(&home2, &r3).unwrap_err();
    assert!(
        matches!(e, BuildError::Resolve(ResolveError::Unsatisfiable { .. })),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("libgreet1 (>= 3)") && msg.contains("1.2") && msg.contains("needy"),
        "{msg}"
    );
    assert_nothing_left(&home2, &r3);

    // A tampered .deb in the archive: refused at download, not cached.
    let pool_deb = m.dir.join("pool/main/libgreet1_1.2_all.deb");
    let good = std::fs::read(&pool_deb).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(&pool_deb, &bad).unwrap();
    let home3 = t.path().join("home-deb");
    let r4 = recipe(t.path(), &m, "\"greeter\"", "");
    let e = try_build(&home3, &r4).unwrap_err();
    assert!(
        matches!(
            e,
            BuildError::Cache(CacheError::Fetch(FetchError::HashMismatch { .. }))
        ),
        "{e}"
    );
    assert!(e.to_string().contains("libgreet1_1.2_all.deb"), "{e}");
    assert_nothing_left(&home3, &r4);
    let cached: Vec<_> = walk(&home3.join("cache/packages"))
        .into_iter()
        .filter(|p| std::fs::read(p).unwrap() == bad)
        .collect();
    assert!(cached.is_empty(), "a bad download was cached: {cached:?}");
    // The same from the first build's lock: the error says the lock and
    // the archive disagree, and how to resolve again.
    std::fs::write(r4.lock_path(), &lock).unwrap();
    let e = try_build(&t.path().join("home-deb-locked"), &r4).unwrap_err();
    assert!(
        matches!(e, BuildError::Cache(CacheError::LockMismatch { .. })),
        "{e}"
    );
    assert!(
        e.to_string().contains("sha256 mismatch") && e.to_string().contains("--update"),
        "{e}"
    );
    std::fs::remove_file(r4.lock_path()).unwrap();
    std::fs::write(&pool_deb, &good).unwrap();

    // A package that went bad in the first build's cache (same size, so
    // not downloaded again) is refused before unpacking.
    let r5 = recipe(t.path(), &m, "\"greeter\"", "");
    let sha = built
        .packages
        .iter()
        .find(|p| p.name == "libgreet1")
        .unwrap()
        .sha256
        .clone();
    let cache_file = home.join("cache/packages").join(&sha[..2]).join(&sha);
    std::fs::write(&cache_file, &bad).unwrap();
    let e = try_build(&home, &r5).unwrap_err();
    assert!(
        matches!(e, BuildError::Install(InstallError::Hash { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("libgreet1"), "{e}");
    std::fs::write(&cache_file, &good).unwrap();

    // A tampered Packages index (after signing): its hash no longer
    // matches InRelease.
    let packages = m.packages_path();
    let index = std::fs::read_to_string(&packages).unwrap();
    std::fs::write(&packages, index.replace("Version: 1.2", "Version: 1.3")).unwrap();
    let home4 = t.path().join("home-index");
    let r6 = recipe(t.path(), &m, "\"greeter\"", "");
    let e = try_build(&home4, &r6).unwrap_err();
    assert!(
        matches!(e, BuildError::Repo(RepoError::IndexHash { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("Packages"), "{e}");
    assert_nothing_left(&home4, &r6);
    std::fs::write(&packages, &index).unwrap();

    // A tampered InRelease: the signature no longer verifies.
    let inrelease = m.inrelease_path();
    let signed = std::fs::read_to_string(&inrelease).unwrap();
    std::fs::write(&inrelease, signed.replace("Codename: ", "Codename: x")).unwrap();
    let e = try_build(&home4, &r6).unwrap_err();
    assert!(
        matches!(
            e,
            BuildError::Repo(RepoError::Release(ReleaseError::BadSignature { .. }))
        ),
        "{e}"
    );
    assert!(e.to_string().contains("InRelease"), "{e}");
    assert_nothing_left(&home4, &r6);
    // ...and one signed by another key.
    let other = Mirror::new(&t.path().join("other-key"), SUITE);
    let release = std::fs::read_to_string(m.dir.join("dists").join(SUITE).join("Release")).unwrap();
    std::fs::create_dir_all(other.dir.join("dists").join(SUITE)).unwrap();
    other.sign_release(&release);
    std::fs::copy(other.inrelease_path(), &inrelease).unwrap();
    let e = try_build(&home4, &r6).unwrap_err();
    assert!(e.to_string().contains("no valid signature"), "{e}");
    std::fs::write(&inrelease, &signed).unwrap();

    // A suite the mirror does not have: 404 naming the URL.
    let r7 = recipe(t.path(), &m, "\"greeter\"", "")
        .text
        .replace(&format!("suite = \"{SUITE}\""), "suite = \"no-such-suite\"");
    let p = t.path().join("missing.toml");
    std::fs::write(&p, r7).unwrap();
    let r7 = Recipe::load(&p).unwrap();
    let e = try_build(&home4, &r7).unwrap_err();
    assert!(
        matches!(
            e,
            BuildError::Repo(RepoError::Fetch(FetchError::Status { status: 404, .. }))
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("dists/no-such-suite/InRelease"),
        "{e}"
    );
    assert_nothing_left(&home4, &r7);

    // A failing step: the build stops, shows the command's output and
    // exit status, and commits nothing.
    let home5 = t.path().join("home-step");
    let src = t.path().join("steproot");
    host_tools(&src, &["sh"]);
    let p = t.path().join("step.toml");
    std::fs::write(
        &p,
        r#"
[image]
os = "test"
version = "1"
release = "1"
arch = "x86_64"

[source.dir]
path = "steproot"

[[step]]
run = "echo visible-output; echo visible-error >&2; exit 3"
"#,
    )
    .unwrap();
    let r8 = Recipe::load(&p).unwrap();
    let e = try_build(&home5, &r8).unwrap_err();
    assert!(
        matches!(e, BuildError::Step(StepError::Run { index: 1, .. })),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("step 1")
            && msg.contains("visible-output")
            && msg.contains("visible-error")
            && msg.contains("exit status: 3"),
        "{msg}"
    );
    assert_nothing_left(&home5, &r8);

    // A step failing after a Debian install: the lock, resolved but never
    // part of a commit, is not written either.
    let home6 = t.path().join("home-step-deb");
    let r9 = recipe(
        t.path(),
        &m,
        "\"greeter\"",
        "\n[[step]]\nrun = \"exit 4\"\n",
    );
    let e = try_build(&home6, &r9).unwrap_err();
    assert!(
        matches!(e, BuildError::Step(StepError::Run { index: 1, .. })),
        "{e}"
    );
    assert_nothing_left(&home6, &r9);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A one-route HTTP server answering every request with `status`;
/// returns its base URL and the request counter.
fn serve(status: u16) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            c.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, count)
}

#[test]
fn mirror_errors_retry_a_bounded_number_of_times_and_name_the_url() {
    // Server errors are retried, then reported with the URL.
    let (base, count) = serve(503);
    let url = format!("{base}/dists/x/InRelease");
    let e = Fetcher::new(3).get(&url).unwrap_err();
    assert!(
        matches!(e, FetchError::Transport { attempts: 3, .. }),
        "{e}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert!(
        e.to_string().contains(&url) && e.to_string().contains("503"),
        "{e}"
    );
    // A 404 is final at once.
    let (base, count) = serve(404);
    let url = format!("{base}/dists/x/InRelease");
    let e = Fetcher::new(3).get(&url).unwrap_err();
    assert!(matches!(e, FetchError::Status { status: 404, .. }), "{e}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert!(e.to_string().contains(&url), "{e}");
    // Nothing listening: connection refused, retried, then named.
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let url = format!("http://127.0.0.1:{port}/dists/x/InRelease");
    let started = std::time::Instant::now();
    let e = Fetcher::new(3).get(&url).unwrap_err();
    assert!(
        matches!(e, FetchError::Transport { attempts: 3, .. }),
        "{e}"
    );
    assert!(e.to_string().contains(&url), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn an_unreachable_mirror_fails_the_build_with_the_url() {
    let t = tempfile::tempdir().unwrap();
    let m = archive(t.path());
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let r = recipe(t.path(), &m, "\"greeter\"", "");
    let text = r
        .text
        .replace(&m.uri(), &format!("http://127.0.0.1:{port}/debian"));
    let p = t.path().join("unreachable.toml");
    std::fs::write(&p, text).unwrap();
    let r = Recipe::load(&p).unwrap();
    let home = t.path().join("home");
    let e = try_build(&home, &r).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "http://127.0.0.1:{port}/debian/dists/{SUITE}/InRelease"
        )) && msg.contains("attempts"),
        "{msg}"
    );
    assert_nothing_left(&home, &r);
}

/// Serves `root` over HTTP, except that a file whose name ends in `stall`
/// gets its headers and a few bytes, then nothing more (the connection
/// stays open). Returns the base URL.
fn serve_stalling(root: PathBuf, stall: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let file = root.join(path.trim_start_matches('/'));
            match std::fs::read(&file) {
                Ok(body) if path.ends_with(stall) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(&body[..body.len().min(10)]);
                    held.push(s);
                }
                Ok(body) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(&body);
                }
                Err(_) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 404 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    url
}

#[test]
fn an_interrupt_stops_a_build_waiting_on_a_stalled_mirror() {
    let t = tempfile::tempdir().unwrap();
    let m = archive(t.path());
    // Stalled on the first request (InRelease), then on a package.
    for (stall, stage) in [("InRelease", "index"), (".deb", "download")] {
        let base = serve_stalling(m.dir.clone(), stall);
        let r = recipe(t.path(), &m, "\"greeter\"", "");
        let p = t.path().join(format!("stalled-{stage}.toml"));
        std::fs::write(&p, r.text.replace(&m.uri(), &base)).unwrap();
        let r = Recipe::load(&p).unwrap();
        let home = t.path().join(format!("home-{stage}"));
        let cancel = Arc::new(AtomicBool::new(false));
        let c = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            c.store(true, Ordering::SeqCst);
        });
        let started = std::time::Instant::now();
        let e = build(&r, &BuildOptions::new(&home), &NoProgress, &cancel).unwrap_err();
        assert!(matches!(e, BuildError::Interrupted), "{stage}: {e}");
        // The read timeout is a minute: the interrupt, not it, ended this.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{stage}: took {:?}",
            started.elapsed()
        );
        assert_nothing_left(&home, &r);
        // The second stall came once the indexes had been read and
        // verified, while the packages downloaded.
        assert_eq!(
            home.join("cache/packages").exists(),
            stage == "download",
            "{stage}"
        );
    }
}

#[test]
fn a_suite_without_an_apt_source_lists_the_ones_there_are() {
    let t = tempfile::tempdir().unwrap();
    let etc_apt = t.path().join("apt");
    std::fs::create_dir_all(etc_apt.join("sources.list.d")).unwrap();
    std::fs::write(
        etc_apt.join("sources.list"),
        "deb http://127.0.0.1:9/debian bookworm main\n\
         deb http://127.0.0.1:9/debian bookworm-updates main\n",
    )
    .unwrap();
    let r = common::small_recipe(t.path(), "typo", "[source.debian]\nsuite = \"bookwrom\"\n");
    let mut opts = BuildOptions::new(&t.path().join("home"));
    opts.etc_apt = etc_apt;
    let e = build(&r, &opts, &NoProgress, &AtomicBool::new(false))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"bookwrom\"") && e.contains("(it has bookworm, bookworm-updates)"),
        "{e}"
    );
}
