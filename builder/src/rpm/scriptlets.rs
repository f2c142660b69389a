//! Running scriptlets and triggers in the image. As rpm does, the body is
//! written to a file under `/var/tmp` and run as `INTERPRETER [ARGS] FILE
//! [ARGUMENTS]` (for `%pre` and `%post`, the argument 1 = instances of the
//! package after this install), with the matching paths on standard input
//! for file triggers. Lua scriptlets run with rpm's own interpreter
//! staged in the image (`lua.rs`), with rpm's `arg` table and, for file
//! triggers, `rpm.next_file()`. Scriptlets whose interpreter the image
//! lacks are skipped and reported.

use std::io::Write;

use super::lua::{self, Lua};
use crate::chroot::{Chroot, ChrootError};
use crate::unpack::{Root, create_excl};

use super::unpack::Script;

/// What happened to one scriptlet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and exited 0.
    Ran,
    /// It was not run, and why.
    Skipped(String),
}

/// A scriptlet failed.
#[derive(Debug, thiserror::Error)]
pub enum ScriptletError {
    /// The script exited non-zero (its output is in the source error).
    #[error("%{which} scriptlet of {package}: {source}")]
    Failed {
        /// `pre` or `post`.
        which: String,
        /// The package.
        package: String,
        /// The failure with the script's output.
        source: ChrootError,
    },
    /// rpm's Lua interpreter could not be staged or run.
    #[error("%{which} scriptlet of {package} (Lua): {message}")]
    Lua {
        /// `pre`, `post`, ...
        which: String,
        /// The package.
        package: String,
        /// What failed.
        message: String,
    },
    /// Writing the script file failed.
    #[error("%{which} scriptlet of {package}: writing /var/tmp/{file}: {message}")]
    Io {
        /// `pre` or `post`.
        which: String,
        /// The package.
        package: String,
        /// The file name.
        file: String,
        /// What failed.
        message: String,
    },
}

/// Runs one scriptlet of `package` (`which`: `pre`, `post`, `triggerin`
/// ...) in the image with `args` after the script file and `stdin`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    root: &Root,
    chroot: &Chroot,
    lua: &Lua<'_>,
    package: &str,
    which: &str,
    s: &Script,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Result<Outcome, ScriptletError> {
    let Some(interp) = s.program.first() else {
        return Ok(Outcome::Skipped("no interpreter".into()));
    };
    let is_lua = interp == "<lua>";
    let what = format!("%{which} scriptlet of {package}");
    // A scriptlet without a body (`%post -p /sbin/ldconfig`) runs its
    // program as given: rpm adds the script file and the arguments only
    // when there is a body.
    if s.body.trim().is_empty() {
        if is_lua {
            return Ok(Outcome::Ran);
        }
        let argv: Vec<&str> = s.program.iter().map(String::as_str).collect();
        let result = chroot.run(&what, &argv, &[], stdin, false);
        return outcome(result, &what, interp, which, package);
    }
    let file = format!("rpm-tmp.vnfs-{package}-{which}");
    let path = format!("/var/tmp/{file}");
    let (argv, text) = if is_lua {
        // rpm's interpreter, staged on first use. Unlike a shell the image
        // lacks, it is the build machine's to provide: without it the
        // build stops rather than leave %pre and the like undone.
        match lua.command(&path) {
            Ok(argv) => (argv, lua::script_text(&s.body, args, stdin.is_some())),
            Err(message) => {
                return Err(ScriptletError::Lua {
                    which: which.to_string(),
                    package: package.to_string(),
                    message,
                });
            }
        }
    } else {
        let mut argv = s.program.clone();
        argv.push(path.clone());
        argv.extend(args.iter().map(|a| a.to_string()));
        (argv, s.body.clone())
    };
    let io = |message: String| ScriptletError::Io {
        which: which.to_string(),
        package: package.to_string(),
        file: file.clone(),
        message,
    };
    let dir = root
        .mkdir_all("var/tmp")
        .map_err(|e| io(format!("creating /var/tmp: {e}")))?;
    let fd = create_excl(&dir, &file).map_err(|e| io(e.to_string()))?;
    std::fs::File::from(fd)
        .write_all(text.as_bytes())
        .map_err(|e| io(e.to_string()))?;
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let result = chroot.run(&what, &argv, &[], stdin, false);
    let result = match result {
        // The staged interpreter itself is gone (a scriptlet removed it):
        // a failure, not an interpreter the image lacks.
        Err(ChrootError::Spawn { source, .. }) if is_lua => Err(ChrootError::Failed {
            what: what.clone(),
            status: "not started".into(),
            output: format!("rpm's staged Lua interpreter did not start: {source}"),
        }),
        r => r,
    };
    // The file goes whatever happened; a failure to remove it is only
    // untidy (normalisation empties /var/tmp anyway).
    let _ = rustix::fs::unlinkat(&dir, file.as_str(), rustix::fs::AtFlags::empty());
    outcome(result, &what, interp, which, package)
}

/// What a scriptlet's run amounts to.
fn outcome(
    result: Result<String, ChrootError>,
    what: &str,
    interp: &str,
    which: &str,
    package: &str,
) -> Result<Outcome, ScriptletError> {
    match result {
        Ok(out) => {
            if !out.trim().is_empty() {
                tracing::info!("{what}:\n{}", out.trim_end());
            }
            Ok(Outcome::Ran)
        }
        Err(ChrootError::Spawn { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(Outcome::Skipped(format!(
                "interpreter {interp} is not in the image"
            )))
        }
        Err(source) => Err(ScriptletError::Failed {
            which: which.to_string(),
            package: package.to_string(),
            source,
        }),
    }
}
