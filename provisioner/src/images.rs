//! The VNFS images the caller knows about. The provisioner does not open the
//! store itself: the caller (the CLI, the daemon) lists the store's refs and
//! hands them over, so this crate can check "that vnfs exists" and fold an
//! image's commit id into a node's configuration hash.

use std::collections::BTreeMap;

/// Known image names and, where known, their commit ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Images {
    commits: BTreeMap<String, String>,
}

impl Images {
    /// Images from `(name, commit id)` pairs, as the store's refs list them.
    pub fn from_refs<I, N, C>(refs: I) -> Images
    where
        I: IntoIterator<Item = (N, C)>,
        N: Into<String>,
        C: Into<String>,
    {
        Images {
            commits: refs
                .into_iter()
                .map(|(n, c)| (n.into(), c.into()))
                .collect(),
        }
    }

    /// Images known by name only (commit ids unknown).
    pub fn from_names<I, N>(names: I) -> Images
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        Images::from_refs(names.into_iter().map(|n| (n, String::new())))
    }

    /// Whether an image of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.commits.contains_key(name)
    }

    /// The image's commit id, when known.
    pub fn commit(&self, name: &str) -> Option<&str> {
        self.commits
            .get(name)
            .map(String::as_str)
            .filter(|c| !c.is_empty())
    }

    /// Image names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.commits.keys().map(String::as_str)
    }
}
