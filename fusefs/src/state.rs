//! Mount records under `HOME/mounts/NAME/`: which commit is mounted where,
//! by which server process. They survive a crash, so the next mount
//! resumes the edits and `umount --recover` can commit them.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::upper::Layout;

/// One image's mount record.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MountState {
    /// Image name.
    pub name: String,
    /// The mounted commit (hex); the upper layer's edits are against it.
    pub commit: String,
    /// Mount point.
    pub dir: PathBuf,
    /// Server process id (0 before it started).
    pub pid: u32,
    /// Mounted read-only.
    pub read_only: bool,
}

impl MountState {
    /// Reads the record of `layout`, `None` if it has none.
    pub fn load(layout: &Layout) -> Result<Option<MountState>> {
        let p = layout.state_file();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::BadState {
                    path: p,
                    why: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(p),
        }
    }

    /// Writes the record atomically.
    pub fn save(&self, layout: &Layout) -> Result<()> {
        fs::create_dir_all(&layout.dir).at(&layout.dir)?;
        let p = layout.state_file();
        let tmp = layout.dir.join("state.json.tmp");
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::BadState {
            path: p.clone(),
            why: e.to_string(),
        })?;
        fs::write(&tmp, json).at(&tmp)?;
        fs::rename(&tmp, &p).at(&p)
    }

    /// True while the server process runs and the mount is in place.
    pub fn live(&self) -> bool {
        self.pid != 0 && process_alive(self.pid) && mounted_fstype(&self.dir).is_some()
    }
}

/// Every mount record under `home`.
pub fn list(home: &Path) -> Result<Vec<(Layout, MountState)>> {
    let dir = home.join("mounts");
    let mut out = Vec::new();
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).at(dir),
    };
    for d in rd {
        let d = d.at(&dir)?;
        let Some(name) = d.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let layout = Layout::new(home, &name);
        if let Some(s) = MountState::load(&layout)? {
            out.push((layout, s));
        }
    }
    out.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    Ok(out)
}

/// The record for an image name or a mount directory.
pub fn find(home: &Path, name_or_dir: &str) -> Result<(Layout, MountState)> {
    let as_dir = fs::canonicalize(name_or_dir).ok();
    for (l, s) in list(home)? {
        if s.name == name_or_dir
            || as_dir.as_deref() == Some(s.dir.as_path())
            || Path::new(name_or_dir) == s.dir
        {
            return Ok((l, s));
        }
    }
    Err(Error::NotMounted(name_or_dir.to_string()))
}

/// True if `pid` is a running (not zombie) process.
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

fn unescape(s: &str) -> String {
    // /proc/self/mountinfo writes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file-system type mounted exactly at `dir`, if any (topmost mount).
pub fn mounted_fstype(dir: &Path) -> Option<String> {
    mounted_source(dir).map(|(t, _)| t)
}

/// The file-system type and source of the topmost mount exactly at `dir`.
pub fn mounted_source(dir: &Path) -> Option<(String, String)> {
    // canonicalize fails on a dead FUSE mount (ENOTCONN); the path as
    // given is then compared, which is how `vnfs` records mount points.
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut found = None;
    for line in info.lines() {
        let mut parts = line.split(" - ");
        let (Some(left), Some(right)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(mp) = left.split(' ').nth(4) else {
            continue;
        };
        if Path::new(&unescape(mp)) == dir {
            let mut r = right.split(' ');
            if let (Some(t), Some(src)) = (r.next(), r.next()) {
                found = Some((t.to_string(), unescape(src)));
            }
        }
    }
    found
}
