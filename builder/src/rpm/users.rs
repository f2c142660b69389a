//! Owner names in RPM headers are user and group *names*; they become ids
//! through the image's own `/etc/passwd` and `/etc/group` (read inside the
//! root, so a symlink there cannot point at the host's files).

use std::collections::BTreeMap;
use std::io::Read;

use rustix::fs::{Mode, OFlags};

use crate::unpack::Root;

/// Name → id maps of one image.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    users: BTreeMap<String, u32>,
    groups: BTreeMap<String, u32>,
}

fn read_in_root(root: &Root, dir: &str, file: &str) -> Option<String> {
    let d = root.open_dir(dir).ok()?;
    let fd = rustix::fs::openat(
        &d,
        file,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut s = String::new();
    std::fs::File::from(fd).read_to_string(&mut s).ok()?;
    Some(s)
}

fn parse(text: &str) -> BTreeMap<String, u32> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            Some((name.to_string(), id))
        })
        .collect()
}

impl Ids {
    /// Reads the image's passwd and group files (missing ones are empty).
    pub fn load(root: &Root) -> Ids {
        let mut ids = Ids {
            users: read_in_root(root, "etc", "passwd")
                .map(|t| parse(&t))
                .unwrap_or_default(),
            groups: read_in_root(root, "etc", "group")
                .map(|t| parse(&t))
                .unwrap_or_default(),
        };
        // root is 0 on every system rpm runs on, with or without /etc/passwd.
        ids.users.entry("root".into()).or_insert(0);
        ids.groups.entry("root".into()).or_insert(0);
        ids
    }

    /// The uid of a user name.
    pub fn uid(&self, name: &str) -> Option<u32> {
        self.users.get(name).copied()
    }

    /// The gid of a group name.
    pub fn gid(&self, name: &str) -> Option<u32> {
        self.groups.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_image_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n#c\nbin:x:1:1::/:/sbin/nologin\nbad\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nwheel:x:10:a,b\n").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let ids = Ids::load(&root);
        assert_eq!(ids.uid("bin"), Some(1));
        assert_eq!(ids.gid("wheel"), Some(10));
        assert_eq!(ids.uid("nobody"), None);
        // No files at all: only root is known.
        let empty = tempfile::tempdir().unwrap();
        let ids = Ids::load(&Root::open(empty.path()).unwrap());
        assert_eq!(
            (ids.uid("root"), ids.gid("root"), ids.uid("bin")),
            (Some(0), Some(0), None)
        );
    }
}
