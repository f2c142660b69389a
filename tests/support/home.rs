//! A scratch vnfs home for the tests that run the `vnfs` binary on the
//! node-management commands (`VNFS_HOME` set, the caller's
//! configuration and log filter left out). Included by several test
//! crates, each of which uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// A temporary home; removed when dropped.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// An empty home.
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Its directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `vnfs ARGS` in this home.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vnfs"));
        c.args(args)
            .env("VNFS_HOME", self.path())
            .env_remove("VNFS_CONFIG")
            .env_remove("VNFS_LOG");
        c
    }

    /// Runs `vnfs ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout and stderr.
    pub fn ok_with_stderr(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "vnfs {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with_stderr(args).0
    }

    /// Runs and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "vnfs {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }
}
