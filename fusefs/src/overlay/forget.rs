//! Node lifetime: the kernel counts the entries it receives (lookup,
//! create, mknod, mkdir, symlink, link, each readdirplus entry but `.` and
//! `..`) and gives the counts back with `forget` when it drops an inode.
//! A node whose count is zero is freed unless something still needs it:
//! the root, a hard link that still has a name (all its names must keep
//! one inode number), or a directory with nodes below it. Freeing a directory frees the nodes
//! under it that the kernel never counted (made by a listing), and a
//! freed node may let its parent go too. Open files need no node: a
//! handle holds its own descriptor or store data, and the kernel only
//! forgets an inode nothing uses.

use super::{Overlay, ROOT, Tables};

impl Overlay {
    /// Counts one more kernel reference to `ino`.
    pub(super) fn counted(t: &mut Tables, ino: u64) {
        if let Some(n) = t.nodes.get_mut(&ino) {
            n.nlookup += 1;
        }
    }

    /// The kernel dropped `n` references to `ino` (FUSE `forget`).
    pub fn forget(&self, ino: u64, n: u64) {
        let mut t = self.lock();
        Self::release(&mut t, ino, n);
    }

    /// Several forgets under one lock (FUSE `batch_forget`).
    pub fn forget_many(&self, items: &[(u64, u64)]) {
        let mut t = self.lock();
        for &(ino, n) in items {
            Self::release(&mut t, ino, n);
        }
    }

    /// Number of nodes in the inode table (for `trusted.vnfs.inodes`).
    pub fn node_count(&self) -> usize {
        self.lock().nodes.len()
    }

    fn release(t: &mut Tables, ino: u64, n: u64) {
        let Some(node) = t.nodes.get_mut(&ino) else {
            return;
        };
        node.nlookup = node.nlookup.saturating_sub(n);
        if node.nlookup == 0 {
            Self::free_upward(t, ino);
        }
    }

    /// Frees `ino` if nothing needs it, then its parent if that was all
    /// the parent was kept for.
    fn free_upward(t: &mut Tables, ino: u64) {
        let mut cur = ino;
        loop {
            let Some(parent) = t.nodes.get(&cur).map(|n| n.parent) else {
                return;
            };
            if !Self::free_tree(t, cur) {
                return;
            }
            match t.nodes.get(&parent) {
                Some(p) if parent != ROOT && p.nlookup == 0 => cur = parent,
                _ => return,
            }
        }
    }

    /// Frees `ino` and the uncounted nodes under it. Returns false (and
    /// keeps `ino`) when it, or something under it, is still needed.
    pub(super) fn free_tree(t: &mut Tables, ino: u64) -> bool {
        let Some(n) = t.nodes.get(&ino) else {
            return true;
        };
        if ino == ROOT || n.nlookup > 0 || n.pinned() {
            return false;
        }
        if let Some(d) = &n.dir {
            let kids: Vec<u64> = d.children.values().copied().collect();
            let mut all = true;
            for k in kids {
                // A hard-linked child listed here under a second name is
                // pinned, so this never frees a node another directory holds.
                all &= Self::free_tree(t, k);
            }
            if !all {
                return false;
            }
        }
        let Some(n) = t.nodes.remove(&ino) else {
            return true;
        };
        if let Some(o) = t.orphans.remove(&ino) {
            // Nothing can reach the unlinked file any more.
            let _ = std::fs::remove_file(o);
        }
        if n.upper_linked {
            t.upper_links.retain(|_, v| *v != ino);
        }
        if n.link_key.is_some() {
            t.link_keys.retain(|_, v| *v != ino);
        }
        for (p, name) in std::iter::once((n.parent, n.name)).chain(n.more_names) {
            if let Some(d) = t.nodes.get_mut(&p).and_then(|pn| pn.dir.as_mut())
                && d.children.get(&name) == Some(&ino)
            {
                d.children.remove(&name);
                d.complete = false;
            }
        }
        true
    }
}
