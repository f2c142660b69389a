//! Depth-first traversal of a commit's trees in canonical order.

use crate::error::Result;
use crate::id::ObjectId;
use crate::repo::Store;
use crate::tree::{Entry, EntryKind};

impl Store {
    /// Visits every entry under `tree` depth first, names sorted; `path` is
    /// root-relative with `/` separators. Returning `false` from `visit` for
    /// a directory skips its contents.
    pub fn walk(
        &self,
        tree: &ObjectId,
        visit: &mut dyn FnMut(&[u8], &Entry) -> Result<bool>,
    ) -> Result<()> {
        let mut path = Vec::new();
        self.walk_at(tree, &mut path, visit)
    }

    fn walk_at(
        &self,
        tree: &ObjectId,
        path: &mut Vec<u8>,
        visit: &mut dyn FnMut(&[u8], &Entry) -> Result<bool>,
    ) -> Result<()> {
        let t = self.read_tree(tree)?;
        for e in &t.entries {
            let len = path.len();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&e.name);
            let descend = visit(path, e)?;
            if let (true, EntryKind::Dir { tree }) = (descend, &e.kind) {
                self.walk_at(tree, path, visit)?;
            }
            path.truncate(len);
        }
        Ok(())
    }
}
