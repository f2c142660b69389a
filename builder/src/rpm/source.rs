//! `[source.rpm]` in a recipe: local RPM files and globs, yum/dnf
//! repositories, the packages to install and the ones to keep out.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[source.rpm]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpmSource {
    /// Local RPM files or globs, relative to the recipe; all are installed.
    #[serde(default)]
    pub files: Vec<String>,
    /// `[[source.rpm.repo]]`: repositories to resolve `packages` from.
    #[serde(default, rename = "repo")]
    pub repos: Vec<RpmRepo>,
    /// Packages (names, capabilities or paths) to install with their
    /// Requires.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Package names or globs that must not be installed (from any
    /// repository or local file).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Also install weak dependencies (Recommends, and packages whose
    /// Supplements hold) where they can be, as dnf does with
    /// `install_weak_deps` (its default). Off by default, like Recommends
    /// on the Debian side.
    #[serde(default)]
    pub weak_deps: bool,
    /// OpenPGP key file (relative to the recipe) every local file in
    /// `files` must carry a valid header signature by.
    #[serde(default)]
    pub gpgkey: Option<PathBuf>,
    /// Module streams to enable, `name` (its default stream) or
    /// `name:stream` (dnf's `module enable`).
    #[serde(default)]
    pub modules: Vec<String>,
    /// Modules to disable (dnf's `module disable`).
    #[serde(default)]
    pub disable_modules: Vec<String>,
    /// dnf's `module_platform_id` (`platform:el9`), against which module
    /// streams' `platform` requirements are checked.
    #[serde(default)]
    pub module_platform_id: Option<String>,
}

/// `[[source.rpm.repo]]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RpmRepo {
    /// Short name, recorded in the lock for each package from it.
    pub id: String,
    /// Repository root (the directory holding `repodata/`): `http://`,
    /// `https://`, `file://` or a path relative to the recipe.
    pub baseurl: String,
    /// OpenPGP key file (relative to the recipe) for `gpgcheck` and
    /// `repo_gpgcheck`.
    #[serde(default)]
    pub gpgkey: Option<PathBuf>,
    /// Every package must carry a valid header signature by a key in
    /// `gpgkey` (dnf's `gpgcheck`). Unset: on when `gpgkey` is given
    /// (dnf's default is off; a key given is taken as meant to be used).
    #[serde(default)]
    pub gpgcheck: Option<bool>,
    /// `repodata/repomd.xml.asc` must be a valid signature of repomd.xml
    /// by a key in `gpgkey` (dnf's `repo_gpgcheck`, off by default as in
    /// dnf: most distributions sign packages, not metadata).
    #[serde(default)]
    pub repo_gpgcheck: bool,
    /// Package names or globs this repository's packages are filtered by
    /// (dnf's per-repository `excludepkgs`): the others' packages of
    /// those names still count.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Exempt this repository's packages from modular filtering (dnf's
    /// `module_hotfixes`).
    #[serde(default)]
    pub module_hotfixes: bool,
}

impl RpmRepo {
    /// Whether each package's signature is checked.
    pub fn gpgcheck(&self) -> bool {
        self.gpgcheck.unwrap_or(self.gpgkey.is_some())
    }

    /// Whether anything from this repository is checked against a
    /// signature (if not, it is only as good as the repository's own
    /// checksums).
    pub fn verified(&self) -> bool {
        self.gpgcheck() || self.repo_gpgcheck
    }
}

impl RpmSource {
    /// Checks what serde cannot: ids, URLs and that something is asked for.
    pub fn validate(&self) -> Result<(), String> {
        if self.files.is_empty() && self.packages.is_empty() {
            return Err("[source.rpm] needs `files` or `packages`".into());
        }
        if !self.packages.is_empty() && self.repos.is_empty() {
            return Err("[source.rpm] `packages` needs at least one [[source.rpm.repo]]".into());
        }
        if self.gpgkey.is_some() && self.files.is_empty() {
            return Err("[source.rpm] gpgkey checks the local `files`, and there are none; a repository's key goes in its [[source.rpm.repo]] table".into());
        }
        super::modular::validate(&self.modules, &self.disable_modules)
            .map_err(|e| format!("[source.rpm] {e}"))?;
        if let Some(p) = &self.module_platform_id
            && !p
                .strip_prefix("platform:")
                .is_some_and(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        {
            return Err(format!(
                "[source.rpm] module_platform_id {p:?} must be \"platform:STREAM\", e.g. \"platform:el9\" (PLATFORM_ID in the distribution's /etc/os-release)"
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in &self.repos {
            if r.id.is_empty()
                || !r
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "repo id {:?} must be non-empty letters, digits, '-', '_' or '.'",
                    r.id
                ));
            }
            if !seen.insert(&r.id) {
                return Err(format!("repo id {:?} is used twice", r.id));
            }
            if r.baseurl.trim().is_empty() {
                return Err(format!("repo {:?} has an empty baseurl", r.id));
            }
            for e in &r.exclude {
                if let Err(err) = glob::Pattern::new(e) {
                    return Err(format!("repo {:?}: exclude {e:?}: {err}", r.id));
                }
            }
            if let Some(v) = unexpanded(&r.baseurl) {
                return Err(format!(
                    "repo {:?}: baseurl uses {v}, which vnfs does not expand (only $basearch and $releasever); write it out",
                    r.id
                ));
            }
            if let Some(k) = r.gpgkey.as_ref().and_then(|k| k.to_str()) {
                if let Some(v) = unexpanded(k) {
                    return Err(format!(
                        "repo {:?}: gpgkey uses {v}, which vnfs does not expand (only $basearch and $releasever); write it out",
                        r.id
                    ));
                }
                let scheme = k.split_once("://").map(|(s, _)| s);
                if k.contains(char::is_whitespace) || scheme.is_some_and(|s| s != "file") {
                    return Err(format!(
                        "repo {:?}: gpgkey must be one key file on the build machine (a path, or file:///path), not {k:?}; for several keys, concatenate their files",
                        r.id
                    ));
                }
            }
            if r.gpgkey.is_none() {
                for (key, on) in [
                    ("gpgcheck", r.gpgcheck == Some(true)),
                    ("repo_gpgcheck", r.repo_gpgcheck),
                ] {
                    if on {
                        return Err(format!(
                            "repo {:?}: {key} = true needs a gpgkey (the OpenPGP key file the signatures are checked against)",
                            r.id
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// dnf's variables vnfs replaces in `baseurl` and `gpgkey`.
const DNF_VARIABLES: [&str; 2] = ["$basearch", "$releasever"];

/// The first dnf-style variable in `s` that vnfs does not replace
/// (`$contentdir`, `${releasever}`, ...), if any.
fn unexpanded(s: &str) -> Option<String> {
    let mut rest = s.to_string();
    for v in DNF_VARIABLES {
        rest = rest.replace(v, "");
    }
    let at = rest.find('$')?;
    let tail: String = rest[at..]
        .chars()
        .take_while(|c| !matches!(c, '/' | ':' | ' '))
        .collect();
    Some(tail)
}

/// `s` with dnf's variables replaced by the image's arch and version.
pub fn expand_dnf_variables(s: &str, arch: &str, version: &str) -> String {
    s.replace("$basearch", arch).replace("$releasever", version)
}

#[cfg(test)]
mod tests {
    use crate::recipe::{Recipe, RecipeError, Source};
    use std::path::Path;

    const HEAD: &str =
        "[image]\nos = \"rocky\"\nversion = \"9\"\nrelease = \"1\"\narch = \"x86_64\"\n\n";

    fn parse(src: &str) -> Result<Recipe, RecipeError> {
        Recipe::parse(&format!("{HEAD}{src}"), Path::new("r.toml"))
    }

    #[test]
    fn schema() {
        let r = parse(
            "[source.rpm]\nfiles = [\"a/*.rpm\"]\npackages = [\"bash\"]\nexclude = [\"x\"]\n\n[[source.rpm.repo]]\nid = \"base\"\nbaseurl = \"repo\"\ngpgkey = \"k.asc\"\n",
        )
        .unwrap();
        let Source::Rpm(s) = &r.source else {
            panic!("not rpm")
        };
        assert_eq!(s.repos[0].id, "base");
        assert_eq!(s.repos[0].gpgkey.as_deref(), Some(Path::new("k.asc")));
        // dnf's defaults: packages checked when there is a key, metadata not.
        assert!(s.repos[0].gpgcheck() && !s.repos[0].repo_gpgcheck);
        let msg = |src: &str| parse(src).unwrap_err().to_string();
        assert!(msg("[source.rpm]\n").contains("needs `files` or `packages`"));
        assert!(msg("[source.rpm]\npackages = [\"a\"]\n").contains("at least one"));
        let e = msg("[source.rpm]\nfiles = [\"x\"]\nbogus = 1\n");
        assert!(e.contains("r.toml:9:1:") && e.contains("bogus"), "{e}");
        let two = "[source.rpm]\npackages = [\"a\"]\n[[source.rpm.repo]]\nid = \"a\"\nbaseurl = \"u\"\n[[source.rpm.repo]]\nid = \"a\"\nbaseurl = \"v\"\n";
        assert!(msg(two).contains("used twice"));
        let repo = |keys: &str| {
            format!(
                "[source.rpm]\npackages = [\"a\"]\n[[source.rpm.repo]]\nid = \"a\"\nbaseurl = \"u\"\n{keys}"
            )
        };
        // dnf's variables: two are expanded, others refused by name; a
        // key is one file on this machine.
        let url = |u: &str, k: &str| {
            format!(
                "[source.rpm]\npackages = [\"a\"]\n[[source.rpm.repo]]\nid = \"a\"\nbaseurl = \"{u}\"\ngpgkey = \"{k}\"\n"
            )
        };
        parse(&url(
            "https://m/$releasever/$basearch/os",
            "file:///k-$releasever",
        ))
        .unwrap();
        let e = msg(&url("https://m/$contentdir/9/os", "k"));
        assert!(e.contains("uses $contentdir"), "{e}");
        let e = msg(&url("https://m/${releasever}/os", "k"));
        assert!(e.contains("uses ${releasever}"), "{e}");
        for k in ["https://k.example/key", "a.asc b.asc"] {
            let e = msg(&url("u", k));
            assert!(e.contains("one key file on the build machine"), "{e}");
        }
        // Module keys: checked when the recipe is read.
        let modules = |keys: &str| {
            format!(
                "[source.rpm]\npackages = [\"a\"]\n{keys}\n[[source.rpm.repo]]\nid = \"a\"\nbaseurl = \"u\"\nmodule_hotfixes = true\n"
            )
        };
        parse(&modules(
            "modules = [\"nodejs:18\", \"perl\"]\ndisable_modules = [\"php\"]\nmodule_platform_id = \"platform:el9\"",
        ))
        .unwrap();
        for (keys, expect) in [
            (
                "module_platform_id = \"el9\"",
                "must be \"platform:STREAM\"",
            ),
            ("modules = [\"a:1\", \"a:2\"]", "names a twice"),
            (
                "modules = [\"a\"]\ndisable_modules = [\"a\"]",
                "both in modules",
            ),
            ("disable_modules = [\"a:1\"]", "disabled as a whole"),
            ("modules = [\"a b\"]", "\"name\" or \"name:stream\""),
        ] {
            let e = msg(&modules(keys));
            assert!(e.contains(expect), "{keys}: {e}");
        }
        for key in ["gpgcheck", "repo_gpgcheck"] {
            let e = msg(&repo(&format!("{key} = true\n")));
            assert!(e.contains(&format!("{key} = true needs a gpgkey")), "{e}");
        }
        let Source::Rpm(s) = parse(&repo("gpgcheck = false\n")).unwrap().source else {
            panic!("not rpm")
        };
        assert!(!s.repos[0].gpgcheck() && !s.repos[0].verified());
        let Source::Rpm(s) = parse(&repo(
            "gpgkey = \"k\"\ngpgcheck = false\nrepo_gpgcheck = true\n",
        ))
        .unwrap()
        .source
        else {
            panic!("not rpm")
        };
        assert!(!s.repos[0].gpgcheck() && s.repos[0].verified());
        // A key for local files, but none to check.
        let e = msg(&repo("").replace("[[source", "gpgkey = \"k\"\n[[source"));
        assert!(e.contains("gpgkey checks the local `files`"), "{e}");
        let Source::Rpm(s) = parse("[source.rpm]\nfiles = [\"x.rpm\"]\ngpgkey = \"k\"\n")
            .unwrap()
            .source
        else {
            panic!("not rpm")
        };
        assert_eq!(s.gpgkey.as_deref(), Some(Path::new("k")));
        assert!(
            msg(&two.replace("\"a\"\nbaseurl = \"u\"", "\"a/b\"\nbaseurl = \"u\""))
                .contains("repo id")
        );
    }
}
