//! `vnfs build` and `vnfs diff` end to end: package-level diffs between
//! two commits carrying package lists, and Ctrl-C during a build.

#[path = "../builder/tests/common/tools.rs"]
mod tools;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use vnfs_capsule::manifest::Package;

fn vnfs(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vnfs"));
    c.env("VNFS_HOME", home).env_remove("VNFS_CONFIG");
    c
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out: Output = vnfs(home).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "vnfs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn pkg(name: &str, version: &str, arch: &str) -> Package {
    Package {
        name: name.into(),
        version: version.into(),
        arch: arch.into(),
        sha256: Some(format!("{name}{version}")),
    }
}

/// Commits `dir` as `name` with `packages` in the metadata (as the
/// builder writes it), or with no package list at all.
fn commit_with(home: &Path, dir: &Path, name: &str, packages: Option<Vec<Package>>) -> String {
    let store = vnfs_store::Store::open_or_create(&home.join("store")).unwrap();
    let mut metadata = BTreeMap::new();
    if let Some(packages) = packages {
        let meta = vnfs_capsule::metadata::ImageMetadata {
            naming: vnfs_capsule::metadata::default_naming(name),
            config: Default::default(),
            packages,
            recipe: None,
            lock: None,
        };
        meta.to_commit(&mut metadata);
    }
    let out = store
        .commit_dir(
            dir,
            &vnfs_store::CommitOptions {
                name: name.into(),
                message: "test".into(),
                timestamp: Some(1_700_000_000),
                metadata,
                parent: None,
            },
            &vnfs_store::NoProgress,
        )
        .unwrap();
    out.id.to_string()
}

#[test]
fn diff_shows_package_changes_before_files() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("usr/bin")).unwrap();
    std::fs::write(src.join("usr/bin/tool"), "v1").unwrap();
    let old = vec![
        pkg("base-files", "12.4+deb12u5", "amd64"),
        pkg("libc6", "2.36-9+deb12u7", "amd64"),
        pkg("nano", "7.2-1", "amd64"),
        pkg("tzdata", "2024a-0+deb12u1", "all"),
    ];
    let new = vec![
        pkg("base-files", "12.4+deb12u5", "amd64"),
        pkg("htop", "3.2.2-2", "amd64"),
        pkg("libc6", "2.36-9+deb12u10", "amd64"),
        pkg("tzdata", "2023c-5+deb12u1", "all"),
    ];
    let a = commit_with(&home, &src, "img", Some(old));
    std::fs::write(src.join("usr/bin/tool"), "v2").unwrap();
    let b = commit_with(&home, &src, "img", Some(new));
    let a_spec = format!("img@{}", &a[..12]);

    let text = ok(&home, &["diff", &a_spec, "img"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "packages: 1 added, 1 removed, 2 changed",
            "+ htop 3.2.2-2 (amd64)",
            "- nano 7.2-1 (amd64)",
            "~ libc6 2.36-9+deb12u7 -> 2.36-9+deb12u10 (amd64; upgraded)",
            "~ tzdata 2024a-0+deb12u1 -> 2023c-5+deb12u1 (all; downgraded)",
        ],
        "{text}"
    );
    // The file changes follow.
    assert!(
        lines[5..].iter().any(|l| l.ends_with("/usr/bin/tool")),
        "{text}"
    );

    let v: serde_json::Value =
        serde_json::from_str(&ok(&home, &["--json", "diff", &a_spec, &b])).unwrap();
    let p = &v["packages"];
    assert_eq!(p["added"][0]["name"], "htop");
    assert_eq!(p["removed"][0]["name"], "nano");
    assert_eq!(p["changed"][0]["name"], "libc6");
    assert_eq!(p["changed"][0]["old_version"], "2.36-9+deb12u7");
    assert_eq!(p["changed"][0]["new_version"], "2.36-9+deb12u10");
    assert_eq!(p["changed"][0]["direction"], "upgraded");
    assert_eq!(p["changed"][1]["direction"], "downgraded");
    assert_eq!(v["entries"][0]["path"], "usr/bin/tool");

    // --packages: the package section only.
    let text = ok(&home, &["diff", "--packages", &a_spec, "img"]);
    assert_eq!(text.lines().count(), 5, "{text}");
    let v: serde_json::Value = serde_json::from_str(&ok(
        &home,
        &["--json", "diff", "--packages", &a_spec, "img"],
    ))
    .unwrap();
    assert!(v.get("entries").is_none(), "{v}");
    assert_eq!(v["packages"]["added"][0]["version"], "3.2.2-2");

    // A commit without a package list: no package section, and
    // --packages says why it cannot compare.
    commit_with(&home, &src, "plain", None);
    let text = ok(&home, &["diff", &a_spec, "plain"]);
    assert!(!text.contains("packages:"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&home, &["--json", "diff", &a_spec, "plain"])).unwrap();
    assert!(v["packages"].is_null(), "{v}");
    let out = vnfs(&home)
        .args(["diff", "--packages", &a_spec, "plain"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plain has no package list"), "{err}");
}

const SLOW_RECIPE: &str = r#"
[image]
os = "test"
version = "1"
release = "1"
arch = "x86_64"
name = "ctrl-c"

[source.dir]
path = "src"

[[step]]
write = "/etc/motd"
content = "hello\n"

[[step]]
run = "sleep SECONDS"
"#;

/// Ctrl-C while a `run` step sleeps: the build stops at once (it does not
/// wait for the step), says so, exits non-zero, commits nothing, and
/// leaves no temporary directory, mount or process behind; the next
/// build works. Signalled twice: as a terminal does (the foreground
/// process group) and as `kill -INT` does (the vnfs process alone, so the
/// step's command must be stopped by vnfs itself).
#[test]
fn ctrl_c_during_a_step_cleans_up() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let src = t.path().join("src");
    tools::host_tools(&src, &["sh", "sleep"]);
    let recipe = t.path().join("r.toml");
    for whole_group in [true, false] {
        std::fs::write(&recipe, SLOW_RECIPE.replace("SECONDS", "30")).unwrap();
        interrupt_during_step(&home, &recipe, whole_group);
    }
    // The next build works.
    std::fs::write(&recipe, SLOW_RECIPE.replace("SECONDS", "0")).unwrap();
    let text = ok(&home, &["build", recipe.to_str().unwrap()]);
    assert!(text.contains("built ctrl-c"), "{text}");
    assert!(ok(&home, &["list"]).contains("ctrl-c"));
    // Quiet: the commit id alone, for scripts.
    let id = ok(&home, &["-q", "build", recipe.to_str().unwrap()]);
    assert!(
        id.trim().len() == 64 && id.trim().bytes().all(|b| b.is_ascii_hexdigit()),
        "{id:?}"
    );
}

fn interrupt_during_step(home: &Path, recipe: &Path, whole_group: bool) {
    // In its own process group, like a foreground job.
    let mut child = vnfs(home)
        .arg("build")
        .arg(recipe)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let build_tmp = home.join("tmp");
    let start = Instant::now();
    loop {
        let running = tools::processes_rooted_under(&build_tmp);
        if running.iter().any(|(_, cmd)| cmd == "sleep 30") {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "build ended ({status}) before the step ran: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run step never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id() as libc::pid_t;
    let target = if whole_group { -pid } else { pid };
    // SAFETY: signalling the process (group) the test created.
    assert_eq!(unsafe { libc::kill(target, libc::SIGINT) }, 0);
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    let waited = signalled.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "interrupted build succeeded");
    // Cleaned up, then ended by the signal itself, so a shell loop stops.
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(libc::SIGINT),
        "{stderr}"
    );
    assert!(
        stderr.contains("interrupted; nothing was committed"),
        "{stderr}"
    );
    assert!(
        waited < Duration::from_secs(15),
        "the build waited {waited:?} for the step instead of stopping it"
    );
    // Nothing committed: no image, no ref.
    let list = ok(home, &["list"]);
    assert!(!list.contains("ctrl-c"), "{list}");
    // No temporary build directory, store temporary, mount or process.
    let leftovers: Vec<_> = std::fs::read_dir(&build_tmp)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "left in {}: {leftovers:?}",
        build_tmp.display()
    );
    if let Ok(rd) = std::fs::read_dir(home.join("store/tmp")) {
        let v: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        assert!(v.is_empty(), "left in the store's tmp/: {v:?}");
    }
    assert_eq!(tools::mounts_under(home), Vec::<String>::new());
    assert_eq!(tools::processes_rooted_under(home), Vec::new());
}

/// Recipe mistakes stop `vnfs build` before anything happens, with the
/// file, line and column; nothing is created in the home.
#[test]
fn recipe_errors_name_file_line_and_column() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let cases = [
        (
            "[image]\nos = \"debian\nversion = \"12\"\n",
            "syntax.toml:2:13:",
        ),
        (
            "[image]\nos = \"d\"\nversion = \"1\"\nrelease = \"1\"\n\n[source.dir]\npath = \"x\"\nsize = 3\n",
            "unknown.toml:8:1: unknown field `size`",
        ),
        (
            "[image]\nos = \"d\"\nversion = \"1\"\nrelease = \"1\"\n\n[source.dir]\npath = \"x\"\n\n[[step]]\nrun = \"true\"\nmode = \"0644\"\n",
            "step.toml:9:1: key `mode` does not apply to this kind of step",
        ),
    ];
    for (text, want) in cases {
        let name = want.split(':').next().unwrap();
        let p = t.path().join(name);
        std::fs::write(&p, text).unwrap();
        let out = vnfs(&home).arg("build").arg(&p).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "want {want:?} in:\n{err}");
    }
    assert!(!home.join("store").exists() && !home.join("tmp").exists());
}
