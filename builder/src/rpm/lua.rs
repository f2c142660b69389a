//! rpm's embedded Lua for `<lua>` scriptlets. rpm runs them inside its own
//! process after changing root into the image, so `dnf --installroot` runs
//! them with the build machine's rpm. Here the build machine's `rpmlua`
//! (rpm's interpreter as a command, with rpm's `posix` and `rpm`
//! extensions) is copied into the image together with the shared objects
//! and the dynamic loader it needs, and run chrooted through that loader.
//! Nothing of the image's own is needed, so this works in a root without
//! a shell, which is what Lua scriptlets are for. The copies go when the
//! scriptlet phase ends.
//!
//! `rpmlua` reads rpm's configuration from `/usr/lib/rpm/rpmrc` (a path
//! compiled into it). An image with rpm has that file; for one without,
//! the build machine's `rpmrc` and `macros` are put there for the phase
//! (as dnf would expand macros with the host's rpm) and removed after.

use std::cell::OnceCell;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

use crate::unpack::Root;

/// The directory, at the top of the image, that holds the interpreter.
pub const DIR: &str = ".vnfs-rpmlua";
/// Where rpm keeps its configuration, in the image and on this machine.
const RPM_CONFIG: &str = "usr/lib/rpm";

/// The interpreter, staged into the image on first use.
pub struct Lua<'r> {
    root: &'r Root,
    staged: OnceCell<Result<Staged, String>>,
}

impl<'r> Lua<'r> {
    /// Nothing is copied until a Lua scriptlet asks for it.
    pub fn new(root: &'r Root) -> Lua<'r> {
        Lua {
            root,
            staged: OnceCell::new(),
        }
    }

    /// The command that runs the Lua script file `script` (an image
    /// path), or why Lua scriptlets cannot run here.
    pub fn command(&self, script: &str) -> Result<Vec<String>, String> {
        let staged = self
            .staged
            .get_or_init(|| Staged::new(self.root))
            .as_ref()
            .map_err(Clone::clone)?;
        Ok(vec![
            format!("/{DIR}/{}", staged.loader),
            "--library-path".into(),
            format!("/{DIR}"),
            format!("/{DIR}/rpmlua"),
            script.to_string(),
        ])
    }

    /// Removes everything staged and checks that the interpreter is gone
    /// (a scriptlet could have put files beside it; the build machine's
    /// libraries must not end up in the image). Returns which interpreter
    /// ran, when one was staged.
    pub fn finish(mut self) -> Result<Option<String>, String> {
        match self.staged.take() {
            Some(Ok(s)) => {
                s.remove(self.root);
                if self.root.open_dir(DIR).is_ok() {
                    return Err(format!(
                        "/{DIR} (rpm's Lua interpreter, staged for the scriptlets) could not be removed: a scriptlet left files in it"
                    ));
                }
                Ok(Some(s.version.clone()))
            }
            _ => Ok(None),
        }
    }
}

impl Drop for Lua<'_> {
    fn drop(&mut self) {
        if let Some(Ok(s)) = self.staged.get() {
            s.remove(self.root);
        }
    }
}

/// The script file for a Lua scriptlet: rpm's `arg` table (`"<lua>"`, then
/// the numeric arguments; rpmlua would set its own) and, for file
/// triggers, `rpm.next_file()` over the paths on standard input, on the
/// first line so that line numbers in errors match the package's.
pub fn script_text(body: &str, args: &[&str], file_trigger: bool) -> String {
    let mut out = String::from("arg = {\"<lua>\"");
    for a in args {
        out.push_str(", ");
        if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(a);
        } else {
            out.push_str(&lua_string(a));
        }
    }
    out.push_str("}; ");
    if file_trigger {
        // "*l": every Lua rpm links (5.1 to 5.4) reads a line with it.
        out.push_str("rpm.next_file = function() return io.stdin:read(\"*l\") end; ");
    }
    out.push_str(body);
    out
}

/// A Lua string literal for any text (decimal escapes for everything
/// but plain printable ASCII).
fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b' '..=b'~' if b != b'"' && b != b'\\' => out.push(b as char),
            // Three digits: a shorter escape would swallow a digit after it.
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

/// What was put into the image, to be taken out again.
struct Staged {
    /// Which rpm and Lua the scriptlets ran with (for the commit metadata).
    version: String,
    /// File name of the dynamic loader in [`DIR`].
    loader: String,
    /// Whether [`DIR`] was made here (and so is to be removed).
    dir_created: bool,
    /// Files in [`DIR`].
    files: Vec<String>,
    /// rpm configuration files lent to the image (relative paths).
    config_files: Vec<String>,
    /// The directories created for them, innermost first.
    config_dirs: Vec<String>,
}

impl Staged {
    fn new(root: &Root) -> Result<Staged, String> {
        let rpmlua = find_on_path("rpmlua").ok_or_else(|| {
            "rpm's Lua interpreter (rpmlua) is not on this machine: install rpm (Debian package rpm, 4.17 or later; scripts/setup.sh does)".to_string()
        })?;
        let (loader, libs) = shared_objects(&rpmlua)?;
        let mut staged = Staged {
            version: host_version(&rpmlua),
            loader: file_name(&loader)?,
            dir_created: false,
            files: Vec::new(),
            config_files: Vec::new(),
            config_dirs: Vec::new(),
        };
        if let Err(e) = staged.stage(root, &rpmlua, &loader, &libs) {
            staged.remove(root);
            return Err(e);
        }
        Ok(staged)
    }

    /// Takes everything staged out again. Best effort: a failure here
    /// must not mask the build's own result ([`Lua::finish`] checks the
    /// interpreter is gone). Every path is resolved inside the image,
    /// whatever its scriptlets made of it.
    fn remove(&self, root: &Root) {
        if let Ok(dir) = root.open_dir(DIR) {
            for f in &self.files {
                let _ = rustix::fs::unlinkat(&dir, f.as_str(), AtFlags::empty());
            }
        }
        let unlink = |rel: &str, flags: AtFlags| {
            let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
            if let Ok(dir) = root.open_dir(parent) {
                let _ = rustix::fs::unlinkat(&dir, name, flags);
            }
        };
        if self.dir_created {
            unlink(DIR, AtFlags::REMOVEDIR);
        }
        for f in &self.config_files {
            unlink(f, AtFlags::empty());
        }
        // Only if empty: a scriptlet may have put something there.
        for d in &self.config_dirs {
            unlink(d, AtFlags::REMOVEDIR);
        }
    }

    fn stage(
        &mut self,
        root: &Root,
        rpmlua: &Path,
        loader: &Path,
        libs: &[(String, PathBuf)],
    ) -> Result<(), String> {
        let at = |what: &str, e: &dyn std::fmt::Display| {
            format!("staging rpmlua in {}: {what}: {e}", root.path().display())
        };
        // Anything by that name already there (a package's) is refused.
        let top = root.open_dir("").map_err(|e| at("/", &e))?;
        rustix::fs::mkdirat(&top, DIR, Mode::from_raw_mode(0o755))
            .map_err(|e| at(&format!("/{DIR}"), &e))?;
        self.dir_created = true;
        let dir = root.open_dir(DIR).map_err(|e| at(&format!("/{DIR}"), &e))?;
        let mut copies: Vec<(String, &Path)> = vec![
            ("rpmlua".to_string(), rpmlua),
            (self.loader.clone(), loader),
        ];
        copies.extend(libs.iter().map(|(n, p)| (n.clone(), p.as_path())));
        for (name, from) in copies {
            copy_new(&dir, &name, from, 0o755)
                .map_err(|e| at(&format!("{} -> /{DIR}/{name}", from.display()), &e))?;
            self.files.push(name);
        }
        if exists(&top, &format!("{RPM_CONFIG}/rpmrc")) {
            return Ok(());
        }
        // The image has no rpm configuration: lend it this machine's
        // (what the host's rpm would read), file by file, never over
        // anything the image has at that path, a dangling link included.
        let mut lend = vec!["rpmrc".to_string(), "macros".to_string()];
        if let Some(target) = host_target() {
            lend.push(format!("platform/{target}/macros"));
        }
        for name in lend {
            let rel = format!("{RPM_CONFIG}/{name}");
            let host = Path::new("/").join(&rel);
            if exists(&top, &rel) || !host.is_file() {
                continue;
            }
            let (parent, file) = rel.rsplit_once('/').unwrap_or(("", &rel));
            self.make_dirs(root, &top, parent)
                .map_err(|e| at(parent, &e))?;
            let dir = root.open_dir(parent).map_err(|e| at(parent, &e))?;
            match copy_new(&dir, file, &host, 0o644) {
                Ok(()) => self.config_files.push(rel),
                // Created meanwhile (by nothing but a race): not ours.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(at(&format!("{} -> /{rel}", host.display()), &e)),
            }
        }
        Ok(())
    }

    /// Creates the missing directories of `rel`, recording each.
    fn make_dirs(&mut self, root: &Root, top: &OwnedFd, rel: &str) -> rustix::io::Result<()> {
        let mut prefix = String::new();
        for comp in rel.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            if !exists(top, &prefix) {
                root.mkdir_all(&prefix)?;
                self.config_dirs.insert(0, prefix.clone());
            }
        }
        Ok(())
    }
}

/// Which rpm and Lua `rpmlua` is, as the commit metadata records it.
fn host_version(rpmlua: &Path) -> String {
    let run = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let rpm = run(Command::new("rpm").arg("--version")).unwrap_or_else(|| "rpm".into());
    let lua =
        run(Command::new(rpmlua).args(["-e", "print(_VERSION)"])).unwrap_or_else(|| "Lua".into());
    format!("the build machine's rpmlua ({rpm}, {lua})")
}

/// The build machine's rpm platform (`x86_64-linux`), whose macros hold
/// `%_lib` and the like.
fn host_target() -> Option<String> {
    let o = Command::new("rpm")
        .args(["--eval", "%{_target}"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let t = String::from_utf8_lossy(&o.stdout).trim().to_string();
    // One plain path component, or nothing.
    (!t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && t != "."
        && t != "..")
        .then_some(t)
}

/// Whether `rel` exists in the image (resolved inside it; a symlink at
/// the end counts, dangling or not).
fn exists(top: &OwnedFd, rel: &str) -> bool {
    rustix::fs::openat2(
        top,
        rel,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .is_ok()
}

/// Copies the host file `from` into `dir` as a new file `name`; fails
/// (`AlreadyExists`) rather than replace anything there.
fn copy_new(dir: &OwnedFd, name: &str, from: &Path, mode: u32) -> std::io::Result<()> {
    let data = std::fs::read(from)?;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let written = rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
        .map_err(std::io::Error::from)
        .and_then(|()| std::fs::File::from(fd).write_all(&data));
    if written.is_err() {
        // Not left half-written where nobody would remove it.
        let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
    }
    written
}

fn file_name(p: &Path) -> Result<String, String> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no usable file name", p.display()))
}

/// The first executable `name` on this machine's PATH.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The dynamic loader of `exe` and the shared objects it loads (name as
/// the loader looks it up, host file), as `ldd` reports them.
fn shared_objects(exe: &Path) -> Result<(PathBuf, Vec<(String, PathBuf)>), String> {
    let out = Command::new("ldd")
        .arg(exe)
        .output()
        .map_err(|e| format!("ldd {}: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(format!(
            "ldd {}: {}",
            exe.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_ldd(&String::from_utf8_lossy(&out.stdout))
        .map_err(|m| format!("ldd {}: {m}", exe.display()))
}

/// Reads `ldd` output: `libc.so.6 => /lib/.../libc.so.6 (0x...)` lines
/// and the loader's `/lib64/ld-linux-x86-64.so.2 (0x...)` line; the vDSO
/// has no file.
fn parse_ldd(text: &str) -> Result<(PathBuf, Vec<(String, PathBuf)>), String> {
    let mut loader = None;
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once("=>") {
            Some((name, rest)) => {
                let name = name.trim();
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(format!("{name} not found"));
                }
                match rest.split_whitespace().next() {
                    Some(p) if p.starts_with('/') => {
                        libs.push((name.to_string(), PathBuf::from(p)));
                    }
                    // The vDSO, with an address only.
                    _ => {}
                }
            }
            None => {
                let first = line.split_whitespace().next().unwrap_or_default();
                if first.starts_with('/') {
                    loader = Some(PathBuf::from(first));
                }
            }
        }
    }
    let loader = loader.ok_or("no dynamic loader listed")?;
    if libs
        .iter()
        .any(|(n, _)| n.contains('/') || n == "." || n == ".." || n == "rpmlua")
    {
        return Err("unexpected shared object name".into());
    }
    Ok((loader, libs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_read() {
        let (loader, libs) = parse_ldd(
            "\tlinux-vdso.so.1 (0x00007ffd)\n\
             \tlibrpm.so.9 => /lib/x86_64-linux-gnu/librpm.so.9 (0x00007f01)\n\
             \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f02)\n\
             \t/lib64/ld-linux-x86-64.so.2 (0x00007f03)\n",
        )
        .unwrap();
        assert_eq!(loader, Path::new("/lib64/ld-linux-x86-64.so.2"));
        assert_eq!(
            libs,
            [
                (
                    "librpm.so.9".to_string(),
                    PathBuf::from("/lib/x86_64-linux-gnu/librpm.so.9")
                ),
                (
                    "libc.so.6".to_string(),
                    PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6")
                ),
            ]
        );
        let e = parse_ldd("\tlibgone.so.1 => not found\n\t/lib64/ld.so (0x1)\n").unwrap_err();
        assert!(e.contains("libgone.so.1 not found"), "{e}");
        assert!(parse_ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n").is_err());
    }

    #[test]
    fn staging_lends_only_what_is_missing_and_takes_it_all_back() {
        let tmp = tempfile::tempdir().unwrap();
        let conf = tmp.path().join("usr/lib/rpm");
        std::fs::create_dir_all(&conf).unwrap();
        // A package's dangling link where rpm keeps its macros: kept.
        std::os::unix::fs::symlink("/nowhere/macros", conf.join("macros")).unwrap();
        let root = Root::open(tmp.path()).unwrap();
        let lua = Lua::new(&root);
        let argv = lua
            .command("/var/tmp/s")
            .unwrap_or_else(|e| panic!("rpmlua must be installed (Debian package rpm): {e}"));
        assert_eq!(
            argv[1..],
            [
                "--library-path",
                "/.vnfs-rpmlua",
                "/.vnfs-rpmlua/rpmlua",
                "/var/tmp/s"
            ]
        );
        assert!(tmp.path().join(&argv[0][1..]).is_file());
        assert!(conf.join("rpmrc").is_file(), "rpmrc is lent");
        assert!(conf.join("macros").is_symlink(), "the package's link stays");
        assert!(std::fs::read_link(conf.join("macros")).is_ok());
        let version = lua.finish().unwrap().unwrap();
        assert!(version.contains("Lua 5."), "{version}");
        assert!(!tmp.path().join(DIR).exists());
        assert!(!conf.join("rpmrc").exists());
        assert!(conf.join("macros").is_symlink());
        // The platform directory was made for the lent macros, and goes.
        assert!(!conf.join("platform").exists());
        // A directory the image has by that name is not taken over.
        std::fs::create_dir(tmp.path().join(DIR)).unwrap();
        let lua = Lua::new(&root);
        let e = lua.command("/var/tmp/s").unwrap_err();
        assert!(e.contains("/.vnfs-rpmlua"), "{e}");
        drop(lua);
        assert!(tmp.path().join(DIR).is_dir(), "not ours to remove");
    }

    #[test]
    fn script_text_sets_args_on_the_first_line() {
        let t = script_text("print(arg[2])\nreturn 0\n", &["1", "2"], false);
        assert_eq!(t, "arg = {\"<lua>\", 1, 2}; print(arg[2])\nreturn 0\n");
        let t = script_text("x()", &["a\"b\n"], true);
        assert!(t.starts_with("arg = {\"<lua>\", \"a\\034b\\010\"}; rpm.next_file = "));
        assert!(t.ends_with("; x()"));
    }
}
