//! `vnfs export` / `import` / `capsule inspect` / `key` through the binary:
//! the naming convention for directory targets, stdout output equal to the
//! file, signature refusal until the key is trusted, idempotent re-import.
//! Where a capsule goes: into a FIFO or a device as it is, through
//! symlinks, never over an earlier capsule in a directory without --force,
//! via a private, unpredictable temporary file that SIGINT removes; a full
//! disk named with the file; the JSON report on stderr with `-`; names
//! and NAME@COMMIT. Needs root (mknod, a tmpfs), as CI runs.

use std::path::Path;
use std::process::{Command, Output};

fn vnfs(home: &Path, args: &[&str], stdin: Option<&Path>) -> Output {
    vnfs_env(home, args, stdin, None)
}

fn vnfs_env(home: &Path, args: &[&str], stdin: Option<&Path>, unsigned: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vnfs"));
    c.arg("--home")
        .arg(home)
        .args(args)
        .env_remove("VNFS_UNSIGNED");
    if let Some(u) = unsigned {
        c.env("VNFS_UNSIGNED", u);
    }
    if let Some(f) = stdin {
        c.stdin(std::fs::File::open(f).unwrap());
    }
    c.output().unwrap()
}

fn ok_bytes(o: Output) -> Vec<u8> {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

fn ok(o: Output) -> String {
    String::from_utf8(ok_bytes(o)).unwrap()
}

#[test]
fn export_import_inspect_through_the_cli() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hostname"), "node\n").unwrap();
    std::fs::write(src.join("data"), vec![7u8; 300_000]).unwrap();
    let name = "centos-5.1-1.stateless.x86_64";
    let src_s = src.to_str().unwrap();
    let head = ok(vnfs(
        &a,
        &["commit", src_s, "-n", name, "--timestamp", "1"],
        None,
    ));
    let key = t.path().join("site");
    ok(vnfs(
        &a,
        &["key", "generate", key.to_str().unwrap(), "-c", "site A"],
        None,
    ));
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let keyfile = t.path().join("site.key");
    let keyfile = keyfile.to_str().unwrap();
    ok(vnfs(
        &a,
        &["export", name, out.to_str().unwrap(), "--sign", keyfile],
        None,
    ));
    let file = out.join(format!("{name}.vnfs"));
    assert!(
        file.is_file(),
        "directory target uses the naming convention"
    );
    // --json names the file written, which is not the conventional name
    // when the output is a file.
    let named = out.join("mine.vnfs");
    let named_s = named.to_str().unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&ok(vnfs(&a, &["--json", "export", name, named_s], None))).unwrap();
    assert_eq!(v["file_name"], "mine.vnfs");
    assert_eq!(v["path"], named_s);
    std::fs::remove_file(&named).unwrap();
    // A delta over the version itself would be empty: refused, saying so.
    let same = vnfs(&a, &["export", name, "-", "--base", name], None);
    assert!(!same.status.success());
    assert!(
        String::from_utf8_lossy(&same.stderr).contains("is the version being exported"),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    let piped = ok_bytes(vnfs(&a, &["export", name, "-", "--sign", keyfile], None));
    assert_eq!(
        piped,
        std::fs::read(&file).unwrap(),
        "same inputs, same bytes"
    );

    let file_s = file.to_str().unwrap();
    let inspect = ok(vnfs(&b, &["--json", "capsule", "inspect", file_s], None));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["signature"], "untrusted");
    assert_eq!(v["manifest"]["head"], head.trim());

    let refused = vnfs(&b, &["import", file_s], None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not in the trust list"));
    let public = t.path().join("site.pub");
    ok(vnfs(&b, &["key", "trust", public.to_str().unwrap()], None));
    assert_eq!(
        ok(vnfs(&b, &["import", "-"], Some(&file))).trim(),
        head.trim()
    );
    let again = vnfs(&b, &["import", file_s], None);
    assert!(String::from_utf8_lossy(&again.stderr).contains("image unchanged"));
    assert!(ok(vnfs(&b, &["list"], None)).contains(name));
}

#[test]
fn trusted_keys_are_listed_and_untrusted() {
    let t = tempfile::tempdir().unwrap();
    let home = home_with(t.path(), "node", 1000);
    let b = t.path().join("b");
    let mut publics = Vec::new();
    for site in ["site-a", "site-b", "site-c"] {
        let prefix = t.path().join(site);
        let line = ok(vnfs(
            &home,
            &["key", "generate", prefix.to_str().unwrap(), "-c", site],
            None,
        ));
        ok(vnfs(
            &b,
            &[
                "key",
                "trust",
                prefix.with_extension("pub").to_str().unwrap(),
            ],
            None,
        ));
        // "vnfs-ed25519 HEX comment" → "ed25519:HEX"
        let hex = line.split_whitespace().nth(1).unwrap().to_string();
        publics.push((site, hex, prefix.with_extension("pub")));
    }
    // A comment the list keeps across rewrites.
    let list_file = b.join("trusted-keys");
    let text = std::fs::read_to_string(&list_file).unwrap();
    std::fs::write(&list_file, format!("# keys of our sites\n{text}")).unwrap();
    let listed = ok(vnfs(&b, &["key", "list"], None));
    for (site, hex, _) in &publics {
        assert!(
            listed.contains(&format!("ed25519:{hex}  {site}")),
            "{listed}"
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&ok(vnfs(&b, &["--json", "key", "list"], None))).unwrap();
    assert_eq!(v["keys"].as_array().unwrap().len(), 3);

    // By public key file, and by the first digits of a key.
    let (_, a_hex, a_pub) = &publics[0];
    let (_, c_hex, _) = &publics[2];
    ok(vnfs(
        &b,
        &["key", "untrust", a_pub.to_str().unwrap(), &c_hex[..10]],
        None,
    ));
    let listed = ok(vnfs(&b, &["key", "list"], None));
    assert!(
        !listed.contains(a_hex.as_str()) && !listed.contains(c_hex.as_str()),
        "{listed}"
    );
    assert!(listed.contains("site-b"), "{listed}");
    let text = std::fs::read_to_string(&list_file).unwrap();
    assert!(text.starts_with("# keys of our sites\n"), "{text}");

    // Capsules the removed key signs are now untrusted.
    let capsule = t.path().join("a.vnfs");
    let key = t.path().join("site-a.key");
    ok(vnfs(
        &home,
        &[
            "export",
            "node",
            capsule.to_str().unwrap(),
            "--sign",
            key.to_str().unwrap(),
        ],
        None,
    ));
    let e = failed(vnfs(&b, &["import", capsule.to_str().unwrap()], None));
    assert!(e.contains("not in the trust list"), "{e}");

    // Nothing matching, too short, or no longer trusted: refused, and
    // the list is left as it was.
    for (spec, says) in [
        ("ffffffffffff", "no trusted key starts with"),
        ("abc", "neither a public key file nor a key"),
        (a_pub.to_str().unwrap(), "is not trusted here"),
    ] {
        let e = failed(vnfs(&b, &["key", "untrust", spec], None));
        assert!(e.contains(says), "{spec}: {e}");
    }
    assert_eq!(std::fs::read_to_string(&list_file).unwrap(), text);
}

#[test]
fn concurrent_trust_and_untrust_lose_no_key() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let pubs: Vec<_> = (0..8)
        .map(|i| {
            let prefix = t.path().join(format!("k{i}"));
            ok(vnfs(
                &home,
                &["key", "generate", prefix.to_str().unwrap()],
                None,
            ));
            prefix.with_extension("pub")
        })
        .collect();
    let list_file = home.join("trusted-keys");
    std::fs::create_dir_all(&home).unwrap();
    // Rounds of one untrust rewriting the list while seven trusts append
    // to it, all at once; each round starts from a list of the first key.
    for round in 0..4 {
        std::fs::write(&list_file, std::fs::read(&pubs[0]).unwrap()).unwrap();
        std::thread::scope(|s| {
            let untrust =
                s.spawn(|| vnfs(&home, &["key", "untrust", pubs[0].to_str().unwrap()], None));
            let trusts: Vec<_> = pubs[1..]
                .iter()
                .map(|p| s.spawn(|| vnfs(&home, &["key", "trust", p.to_str().unwrap()], None)))
                .collect();
            for h in trusts.into_iter().chain([untrust]) {
                ok(h.join().unwrap());
            }
        });
        let listed = ok(vnfs(&home, &["--json", "key", "list"], None));
        let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(
            v["keys"].as_array().unwrap().len(),
            7,
            "round {round}: {listed}"
        );
    }

    // The lock itself: while another holder has it, `key trust` waits.
    std::fs::write(&list_file, "").unwrap();
    let held = std::fs::File::create(home.join("trusted-keys.lock")).unwrap();
    held.lock().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vnfs"))
        .arg("--home")
        .arg(&home)
        .args(["key", "trust", pubs[3].to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "key trust did not wait for the lock"
    );
    drop(held);
    assert!(child.wait().unwrap().success());
    let listed = ok(vnfs(&home, &["--json", "key", "list"], None));
    assert!(listed.contains("ed25519:"), "{listed}");
}

#[test]
fn a_capsule_is_inspected_from_a_pipe() {
    let t = tempfile::tempdir().unwrap();
    let home = home_with(t.path(), "node", 300 << 10);
    let capsule = t.path().join("node.vnfs");
    ok(vnfs(
        &home,
        &["export", "node", capsule.to_str().unwrap()],
        None,
    ));
    let from_file: serde_json::Value = serde_json::from_str(&ok(vnfs(
        &home,
        &["--json", "capsule", "inspect", capsule.to_str().unwrap()],
        None,
    )))
    .unwrap();
    for deep in [false, true] {
        let mut args = vec!["--json", "capsule", "inspect", "-"];
        if deep {
            args.push("--deep");
        }
        let piped: serde_json::Value =
            serde_json::from_str(&ok(vnfs(&home, &args, Some(&capsule)))).unwrap();
        for field in ["manifest", "objects", "file_hash", "bytes", "signature"] {
            assert_eq!(piped[field], from_file[field], "{field}, deep {deep}");
        }
        assert_eq!(piped["verified_objects"], deep);
        assert!(piped["file"].is_null());
    }
    // Cut short: refused, naming standard input.
    let bytes = std::fs::read(&capsule).unwrap();
    let cut = t.path().join("cut.vnfs");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = failed(vnfs(&home, &["capsule", "inspect", "-"], Some(&cut)));
    assert!(e.contains("inspecting standard input"), "{e}");
}

#[test]
fn a_bare_commit_travels_under_its_image_name() {
    let t = tempfile::tempdir().unwrap();
    let home = home_with(t.path(), "node", 1000);
    let first = ok(vnfs(&home, &["show", "node", "--json"], None));
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    let id = v["commit"]
        .as_str()
        .expect("commit id in show --json")
        .to_string();
    let capsule = ok_bytes(vnfs(&home, &["export", &id[..12], "-"], None));
    let file = t.path().join("c.vnfs");
    std::fs::write(&file, &capsule).unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(vnfs(
        &home,
        &["--json", "capsule", "inspect", file.to_str().unwrap()],
        None,
    )))
    .unwrap();
    assert_eq!(v["manifest"]["name"], "node");
}

#[test]
fn the_wrong_file_creates_no_store() {
    let t = tempfile::tempdir().unwrap();
    let not_capsule = t.path().join("node.sqfs");
    std::fs::write(&not_capsule, vec![b'h'; 4096]).unwrap();
    let home = t.path().join("fresh");
    let e = failed(vnfs_env(
        &home,
        &["import", not_capsule.to_str().unwrap()],
        None,
        Some("accept"),
    ));
    assert!(e.contains("importing"), "{e}");
    assert!(!home.join("store").exists(), "{e}");
}

#[test]
fn unsigned_policy_from_flag_env_or_vnfs_conf() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x\n").unwrap();
    ok(vnfs(
        &a,
        &["commit", src.to_str().unwrap(), "-n", "img"],
        None,
    ));
    let file = t.path().join("img.vnfs");
    ok(vnfs(&a, &["export", "img", file.to_str().unwrap()], None));
    let file = file.to_str().unwrap();

    /// (vnfs.conf, VNFS_UNSIGNED, --unsigned) -> accepted?, warned?
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        bool,
        bool,
    );
    let cases: [Case; 8] = [
        (None, None, None, true, true),
        (Some("warn"), None, None, true, true),
        (Some("accept"), None, None, true, false),
        (Some("reject"), None, None, false, false),
        (Some("reject"), Some("accept"), None, true, false),
        (Some("accept"), Some("reject"), None, false, false),
        (Some("reject"), Some("reject"), Some("warn"), true, true),
        (None, Some("accept"), Some("reject"), false, false),
    ];
    for (i, (conf, env, flag, accepted, warned)) in cases.into_iter().enumerate() {
        let home = t.path().join(format!("b{i}"));
        std::fs::create_dir_all(&home).unwrap();
        if let Some(c) = conf {
            std::fs::write(
                home.join("vnfs.conf"),
                format!("# site policy\nUnsigned Capsules = {c}\n"),
            )
            .unwrap();
        }
        let mut args = vec!["import", file];
        if let Some(f) = flag {
            args.extend(["--unsigned", f]);
        }
        let out = vnfs_env(&home, &args, None, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let case = format!("case {i}: conf {conf:?} env {env:?} flag {flag:?}: {stderr}");
        assert_eq!(out.status.success(), accepted, "{case}");
        if !accepted {
            assert!(stderr.contains("refusing unsigned capsule"), "{case}");
        }
        assert_eq!(
            stderr.contains("warning: capsule is not signed"),
            warned,
            "{case}"
        );
    }

    // A bad value is an error naming the file and line.
    let home = t.path().join("bad");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("vnfs.conf"), "unsigned capsules = sometimes\n").unwrap();
    let out = vnfs(&home, &["import", file], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("vnfs.conf:1") && stderr.contains("sometimes"),
        "{stderr}"
    );

    // A misspelt key is not silently ignored: the site meant to reject.
    std::fs::write(home.join("vnfs.conf"), "unsigned capsule = reject\n").unwrap();
    let out = vnfs(&home, &["import", file], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("vnfs.conf:1") && stderr.contains("unknown key 'unsigned capsule'"),
        "{stderr}"
    );
}

#[path = "support/outputs.rs"]
mod outputs;

use std::path::PathBuf;

#[path = "support/noise.rs"]
mod noise;
use noise::noise;

/// A home in `t` holding image `name`: a small file and `bytes` of noise.
fn home_with(t: &Path, name: &str, bytes: usize) -> PathBuf {
    let home = t.join("home");
    let src = t.join(format!("src-{name}"));
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hostname"), format!("{name}\n")).unwrap();
    std::fs::write(src.join("data"), noise(bytes, name.len() as u64)).unwrap();
    ok(vnfs(
        &home,
        &[
            "commit",
            src.to_str().unwrap(),
            "-n",
            name,
            "--timestamp",
            "1",
        ],
        None,
    ));
    home
}

fn failed(o: Output) -> String {
    assert!(!o.status.success(), "vnfs succeeded where it must fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Imports `capsule` into a fresh home and returns the image's head.
fn imports(t: &Path, capsule: &[u8]) -> String {
    let file = t.join("check.vnfs");
    std::fs::write(&file, capsule).unwrap();
    let home = t.join("import-check");
    let head = ok(vnfs_env(
        &home,
        &["import", "-"],
        Some(&file),
        Some("accept"),
    ));
    std::fs::remove_file(&file).unwrap();
    std::fs::remove_dir_all(&home).unwrap();
    head.trim().to_owned()
}

#[test]
fn export_writes_into_fifos_and_devices_and_follows_symlinks() {
    let t = tempfile::tempdir().unwrap();
    let home = home_with(t.path(), "node", 200_000);
    let reference = ok_bytes(vnfs(&home, &["export", "node", "-"], None));
    let head = imports(t.path(), &reference);
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();

    // A FIFO: its reader gets the whole capsule, which imports; the FIFO
    // stays a FIFO and nothing else appears beside it.
    let fifo = out.join("pipe");
    outputs::mkfifo(&fifo);
    let reader = outputs::read_fifo(&fifo);
    ok(vnfs(
        &home,
        &["export", "node", fifo.to_str().unwrap()],
        None,
    ));
    let got = reader.join().unwrap();
    assert_eq!(got, reference, "the FIFO's reader got another capsule");
    assert_eq!(imports(t.path(), &got), head);
    assert!(outputs::is_fifo(&fifo), "the FIFO was replaced");

    // A character device (our own /dev/null): written into, not replaced.
    let null = out.join("mynull");
    outputs::mknod_null(&null);
    ok(vnfs(
        &home,
        &["export", "node", null.to_str().unwrap()],
        None,
    ));
    assert!(outputs::is_char_device(&null), "the device was replaced");

    // A symlink to a capsule: the file it points to is replaced, the link
    // stays a link; a dangling link creates its target.
    let real = out.join("real.vnfs");
    std::fs::write(&real, "old").unwrap();
    let link = out.join("link.vnfs");
    std::os::unix::fs::symlink("real.vnfs", &link).unwrap();
    ok(vnfs(
        &home,
        &["export", "node", link.to_str().unwrap()],
        None,
    ));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(&real).unwrap(), reference);
    let dangling = out.join("dangling.vnfs");
    std::os::unix::fs::symlink("new.vnfs", &dangling).unwrap();
    ok(vnfs(
        &home,
        &["export", "node", dangling.to_str().unwrap()],
        None,
    ));
    assert_eq!(std::fs::read(out.join("new.vnfs")).unwrap(), reference);
    assert_eq!(
        outputs::names(&out),
        [
            "dangling.vnfs",
            "link.vnfs",
            "mynull",
            "new.vnfs",
            "pipe",
            "real.vnfs"
        ],
        "a temporary file was left, or a link replaced"
    );
}

#[test]
fn export_to_a_directory_keeps_an_earlier_capsule_unless_forced() {
    let t = tempfile::tempdir().unwrap();
    let home = home_with(t.path(), "node", 100_000);
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let out_s = out.to_str().unwrap();
    ok(vnfs(&home, &["export", "node", out_s], None));
    let file = out.join("node-0-1.stateless.unknown.vnfs");
    let full = std::fs::read(&file).unwrap();
    // A second version, exported as a delta into the same directory: the
    // full capsule is not silently replaced.
    let src = t.path().join("src-node");
    std::fs::write(src.join("etc/motd"), "v2\n").unwrap();
    ok(vnfs(
        &home,
        &["commit", src.to_str().unwrap(), "-n", "node"],
        None,
    ));
    let v1 = ok(vnfs(&home, &["log", "node", "--json"], None));
    let v1: serde_json::Value = serde_json::from_str(&v1).unwrap();
    let v1 = v1[1]["commit"].as_str().unwrap().to_owned();
    let e = failed(vnfs(
        &home,
        &["export", "node", out_s, "--base", &format!("node@{v1}")],
        None,
    ));
    assert!(
        e.contains(file.to_str().unwrap()) && e.contains("--force"),
        "the refusal names neither the file nor --force: {e}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        full,
        "the full capsule changed"
    );
    assert_eq!(outputs::names(&out), ["node-0-1.stateless.unknown.vnfs"]);
    // --force replaces it.
    ok(vnfs(
        &home,
        &[
            "export",
            "node",
            out_s,
            "--base",
            &format!("node@{v1}"),
            "--force",
        ],
        None,
    ));
    assert_ne!(std::fs::read(&file).unwrap(), full);
    // A file named explicitly is the user's to replace, as before.
    let before = outputs::ino(&file);
    ok(vnfs(
        &home,
        &["export", "node", file.to_str().unwrap()],
        None,
    ));
    assert_ne!(outputs::ino(&file), before, "not replaced by rename");
    assert_eq!(outputs::names(&out), ["node-0-1.stateless.unknown.vnfs"]);
}

#[test]
fn json_report_goes_to_stderr_when_the_capsule_goes_to_stdout() {
    let t = tempfile::tempdir().unwrap();
    let home = home_with(t.path(), "node", 100_000);
    let plain = ok_bytes(vnfs(&home, &["export", "node", "-"], None));
    let out = vnfs(&home, &["--json", "export", "node", "-"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, plain, "stdout holds more than the capsule");
    let report: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap_or_else(|e| {
        panic!(
            "stderr is not the JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["path"], serde_json::Value::Null);
    assert_eq!(report["capsule_bytes"], plain.len() as u64);
    // `vnfs --json export node - | vnfs import -` works.
    let piped = t.path().join("piped.vnfs");
    std::fs::write(&piped, &out.stdout).unwrap();
    let other = t.path().join("other");
    ok(vnfs_env(
        &other,
        &["import", "-"],
        Some(&piped),
        Some("accept"),
    ));
    // With a file, the report stays on stdout.
    let file = t.path().join("x.vnfs");
    let v: serde_json::Value = serde_json::from_str(&ok(vnfs(
        &home,
        &["--json", "export", "node", file.to_str().unwrap()],
        None,
    )))
    .unwrap();
    assert_eq!(v["path"], file.to_str().unwrap());
}

#[test]
fn export_temporary_file_is_private_unpredictable_and_removed_on_sigint() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    // Large enough that the export is still writing when the signal comes.
    let home = home_with(t.path(), "big", 48 << 20);
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // The old temporary name was .vnfs-export-<pid>.tmp, opened following
    // symlinks: plant links for the next pids at it, towards a victim.
    let victim = t.path().join("victim");
    std::fs::write(&victim, "keep me\n").unwrap();
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for pid in last + 1..last + 400 {
        let planted = out.join(format!(".vnfs-export-{pid}.tmp"));
        std::os::unix::fs::symlink(&victim, planted).unwrap();
    }
    let planted: Vec<String> = outputs::names(&out);
    let target = out.join("big.vnfs");
    let mut child = outputs::spawn(&home, &["export", "big", target.to_str().unwrap()]);
    let pid = child.id();
    // The temporary file: a random name (not the pid), mode 0600.
    let (name, mode) = outputs::wait_for_temp(&mut child, &out, &planted);
    assert!(!name.contains(&pid.to_string()), "predictable name {name}");
    assert_eq!(mode, 0o600, "{name} is readable by others while written");
    let o = outputs::interrupt(child);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the interrupted export succeeded");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&o.status),
        Some(libc::SIGINT),
        "{stderr}"
    );
    assert_eq!(outputs::names(&out), planted, "the temporary file was left");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");

    // Uninterrupted, the file gets the usual mode.
    for p in &planted {
        std::fs::remove_file(out.join(p)).unwrap();
    }
    let small = home_with(&t.path().join("s"), "small", 1000);
    ok(vnfs(
        &small,
        &["export", "small", target.to_str().unwrap()],
        None,
    ));
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666 & !current_umask(), "final mode");
}

/// This process's umask, as /proc reports it.
fn current_umask() -> u32 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let v = s.lines().find_map(|l| l.strip_prefix("Umask:")).unwrap();
    u32::from_str_radix(v.trim(), 8).unwrap()
}

#[test]
fn export_write_errors_name_the_output_and_the_os_error() {
    let t = tempfile::tempdir().unwrap();
    let home = home_with(t.path(), "node", 1 << 20);
    let small = outputs::Tmpfs::mount(&t.path().join("small"), 200);
    let e = failed(vnfs(
        &home,
        &["export", "node", small.path().to_str().unwrap()],
        None,
    ));
    let file = small.path().join("node-0-1.stateless.unknown.vnfs");
    assert!(
        e.contains(file.to_str().unwrap()) && e.contains("No space left on device"),
        "{e}"
    );
    assert!(!e.contains("offset 0"), "blames the start of a buffer: {e}");
    assert!(outputs::names(small.path()).is_empty(), "left behind");

    // Refused before writing: a missing directory, a name too long.
    let e = failed(vnfs(
        &home,
        &["export", "node", "/nonexistent-dir/x.vnfs"],
        None,
    ));
    assert!(e.contains("/nonexistent-dir"), "{e}");
    let long = t.path().join(format!("{}.vnfs", "x".repeat(300)));
    let e = failed(vnfs(
        &home,
        &["export", "node", long.to_str().unwrap()],
        None,
    ));
    assert!(e.contains("File name too long"), "{e}");
}

#[test]
fn name_at_commit_must_be_in_the_images_history() {
    let t = tempfile::tempdir().unwrap();
    let home = home_with(t.path(), "node", 1000);
    let xsrc = t.path().join("xsrc");
    std::fs::create_dir_all(&xsrc).unwrap();
    std::fs::write(xsrc.join("other"), "xnode\n").unwrap();
    let x = ok(vnfs(
        &home,
        &["commit", xsrc.to_str().unwrap(), "-n", "xnode"],
        None,
    ));
    let x = x.trim();
    for args in [
        vec!["show".to_owned(), format!("node@{}", &x[..12])],
        vec!["export".to_owned(), format!("node@{x}"), "-".to_owned()],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = failed(vnfs(&home, &args, None));
        assert!(
            e.contains("not in the history of image 'node'") && e.contains(&x[..12]),
            "{args:?}: {e}"
        );
    }
    // A commit of its own history, and a bare commit id, still work.
    let node = ok(vnfs(&home, &["log", "node", "--json"], None));
    let node: serde_json::Value = serde_json::from_str(&node).unwrap();
    let own = node[0]["commit"].as_str().unwrap();
    ok(vnfs(
        &home,
        &["show", &format!("node@{}", &own[..12])],
        None,
    ));
    ok(vnfs(&home, &["show", &x[..12]], None));
}

#[test]
fn image_names_are_limited_to_what_a_capsule_carries() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x\n").unwrap();
    let home = t.path().join("home");
    let too_long = "n".repeat(129);
    let e = failed(vnfs(
        &home,
        &["commit", src.to_str().unwrap(), "-n", &too_long],
        None,
    ));
    assert!(e.contains("1 to 128"), "{e}");
    // The longest name commits, exports and imports.
    let longest = "n".repeat(128);
    ok(vnfs(
        &home,
        &["commit", src.to_str().unwrap(), "-n", &longest],
        None,
    ));
    let capsule = ok_bytes(vnfs(&home, &["export", &longest, "-"], None));
    imports(t.path(), &capsule);
}

#[test]
fn a_damaged_store_stops_the_export_unless_no_verify() {
    let t = tempfile::tempdir().unwrap();
    let home = home_with(t.path(), "node", 600 << 10);
    // Noise is stored raw: a byte flipped in the middle of the only big
    // pack lands inside one of the file's chunks.
    flip_in_largest_pack(&home, |len| len / 2);
    let out = t.path().join("node.vnfs");
    let e = failed(vnfs(
        &home,
        &["export", "node", out.to_str().unwrap()],
        None,
    ));
    assert!(
        e.contains("is damaged in this store") && e.contains("node@") && e.contains(":/data"),
        "{e}"
    );
    assert!(e.contains("vnfs store fsck"), "{e}");
    assert!(!out.exists(), "a failed export left {}", out.display());
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 2, "leftovers");
    // --no-verify ships it; the importing site refuses it.
    ok(vnfs(
        &home,
        &["export", "node", "--no-verify", out.to_str().unwrap()],
        None,
    ));
    let e = failed(vnfs_env(
        &t.path().join("b"),
        &["import", out.to_str().unwrap()],
        None,
        Some("accept"),
    ));
    assert!(e.contains("does not match its id"), "{e}");
}

#[test]
fn damage_outside_what_is_copied_is_reported_not_fatal() {
    let t = tempfile::tempdir().unwrap();
    let home = home_with(t.path(), "node", 600 << 10);
    // The pack's magic: no object the export copies, but the whole-pack
    // check (the export copies all of it) fails.
    let pack = flip_in_largest_pack(&home, |_| 1);
    let o = vnfs(&home, &["-q", "export", "node", "-"], None);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let capsule = ok_bytes(o);
    assert!(
        err.contains(&format!("warning: pack {} is damaged", pack.display()))
            && err.contains("vnfs store fsck"),
        "{err}"
    );
    imports(t.path(), &capsule);
}

/// Flips a bit of the byte at `at(length)` in the store's largest pack;
/// returns the pack.
fn flip_in_largest_pack(home: &Path, at: impl FnOnce(usize) -> usize) -> PathBuf {
    let mut packs: Vec<PathBuf> = walkdir(&home.join("store/packs"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let pack = packs.pop().expect("a pack");
    let mut bytes = std::fs::read(&pack).unwrap();
    let i = at(bytes.len());
    bytes[i] ^= 0x40;
    std::fs::write(&pack, bytes).unwrap();
    pack
}

/// Every file under `dir`.
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn signing_warns_about_a_secret_key_others_can_read_and_untrusted_says_how_to_trust() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let home = home_with(t.path(), "node", 1000);
    let prefix = t.path().join("site");
    ok(vnfs(
        &home,
        &["key", "generate", prefix.to_str().unwrap()],
        None,
    ));
    let key = t.path().join("site.key");
    let out = t.path().join("signed.vnfs");
    let export = |home: &Path| {
        vnfs(
            home,
            &[
                "export",
                "node",
                out.to_str().unwrap(),
                "--sign",
                key.to_str().unwrap(),
            ],
            None,
        )
    };
    let quiet = export(&home);
    assert!(quiet.status.success(), "{quiet:?}");
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("readable by others"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loud = export(&home);
    assert!(loud.status.success(), "{loud:?}");
    let e = String::from_utf8_lossy(&loud.stderr);
    assert!(
        e.contains("readable by others") && e.contains("chmod 600"),
        "{e}"
    );
    // Another site that does not trust the key says how to.
    let e = failed(vnfs(
        &t.path().join("b"),
        &["import", out.to_str().unwrap()],
        None,
    ));
    assert!(e.contains("vnfs key trust"), "{e}");
}
