//! `vnfs export` / `import` / `capsule inspect` / `key` through the binary:
//! the naming convention for directory targets, stdout output equal to the
//! file, signature refusal until the key is trusted, idempotent re-import.

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
