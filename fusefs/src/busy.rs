//! Which processes use a mount: their working directory, root, executable,
//! open files or mapped files lie under it. Read from /proc, so an unmount
//! can say who holds it instead of failing with a bare EBUSY.

use std::fs;
use std::path::Path;

/// One line per process using `dir`: `PID (COMMAND): what`.
pub fn users(dir: &Path) -> Vec<String> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for d in rd.flatten() {
        let Some(pid) = d.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let base = d.path();
        let under = |p: &Path| p.starts_with(dir);
        let mut why = Vec::new();
        for link in ["cwd", "root", "exe"] {
            if fs::read_link(base.join(link)).is_ok_and(|p| under(&p)) {
                why.push(link.to_string());
            }
        }
        if let Ok(fds) = fs::read_dir(base.join("fd")) {
            for fd in fds.flatten() {
                if let Ok(p) = fs::read_link(fd.path())
                    && under(&p)
                {
                    why.push(format!("open {}", p.display()));
                    break;
                }
            }
        }
        if why.is_empty()
            && let Ok(maps) = fs::read_to_string(base.join("maps"))
            && let Some(p) = maps
                .lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .find(|p| under(Path::new(p)))
        {
            why.push(format!("maps {p}"));
        }
        if !why.is_empty() {
            let comm = fs::read_to_string(base.join("comm")).unwrap_or_default();
            out.push(format!("{pid} ({}): {}", comm.trim(), why.join(", ")));
        }
    }
    out.sort();
    out
}
