//! Running a nodescript: written to a temporary file and run with `sh`,
//! `DESTDIR` set to the root it configures. Exit status 75 means "check in
//! again later" (the master's way to hold a node).

use std::path::Path;
use std::process::Command;

use crate::error::{AgentError, Result, io};

/// Exit status asking the node to check in again later.
pub const EXIT_RETRY: i32 = 75;

/// What a nodescript run ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptOutcome {
    /// Exit status 0 (or an empty script).
    Done,
    /// Exit status 75: the master holds the node.
    Retry,
}

/// Runs `script` for `state` with `DESTDIR=root`.
pub fn run(script: &str, state: &str, root: &Path) -> Result<ScriptOutcome> {
    if script.trim().is_empty() {
        return Ok(ScriptOutcome::Done);
    }
    let dir = std::env::temp_dir();
    let file = tempfile_in(&dir, script)?;
    let status = Command::new("sh")
        .arg(file.path())
        .env("DESTDIR", root)
        .status()
        .map_err(io("sh"))?;
    match status.code() {
        Some(0) => Ok(ScriptOutcome::Done),
        Some(EXIT_RETRY) => Ok(ScriptOutcome::Retry),
        Some(c) => Err(AgentError::Script {
            state: state.to_string(),
            status: format!("exit status {c}"),
        }),
        None => Err(AgentError::Script {
            state: state.to_string(),
            status: "killed by a signal".into(),
        }),
    }
}

fn tempfile_in(dir: &Path, text: &str) -> Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut f = tempfile::Builder::new()
        .prefix("vnfs-nodescript.")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    f.write_all(text.as_bytes()).map_err(io(f.path()))?;
    f.flush().map_err(io(f.path()))?;
    Ok(f)
}
