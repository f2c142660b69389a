//! Recipes: the TOML file a user writes (`[image]`, `[source.*]`,
//! `[[step]]`, `[vnfs]`). Parsing is strict (unknown keys are errors) and
//! every error carries the line and column it refers to.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::debian::resolve::Variant;

/// The default keyring for Debian sources.
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A parsed, validated recipe.
#[derive(Debug, Clone, Serialize)]
pub struct Recipe {
    /// `[image]`
    pub image: Image,
    /// `[source.*]`
    pub source: Source,
    /// `[[step]]`, in order.
    pub steps: Vec<Step>,
    /// `[vnfs]`
    pub vnfs: VnfsConfig,
    /// The recipe file (for relative paths and the lock file).
    #[serde(skip)]
    pub path: PathBuf,
    /// The recipe text as read (stored in the commit).
    #[serde(skip)]
    pub text: String,
}

/// Stateless images are loaded into RAM on the node; stateful ones are
/// installed to disk (Perceus's terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Runs from memory.
    Stateless,
    /// Installed on local disk.
    Stateful,
}

/// `[image]`: naming fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Distribution, e.g. `debian`.
    pub os: String,
    /// Distribution version, e.g. `12`.
    pub version: String,
    /// Image release number, e.g. `1`.
    pub release: String,
    /// `stateless` (default) or `stateful`.
    #[serde(default = "default_state")]
    pub state: State,
    /// CPU architecture in kernel terms (`x86_64`, `aarch64`).
    #[serde(default = "default_arch")]
    pub arch: String,
    /// Overrides the conventional name.
    #[serde(default)]
    pub name: Option<String>,
}

fn default_state() -> State {
    State::Stateless
}

fn default_arch() -> String {
    std::env::consts::ARCH.to_string()
}

impl Image {
    /// The image name: `name`, or Perceus's `<os>-<version>-<release>.<state>.<arch>`.
    pub fn full_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let state = match self.state {
            State::Stateless => "stateless",
            State::Stateful => "stateful",
        };
        format!(
            "{}-{}-{}.{}.{}",
            self.os, self.version, self.release, state, self.arch
        )
    }

    /// The Debian architecture name for `arch`.
    pub fn debian_arch(&self) -> String {
        match self.arch.as_str() {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "i686" | "i386" => "i386",
            "powerpc64le" | "ppc64le" => "ppc64el",
            "riscv64" => "riscv64",
            "s390x" => "s390x",
            other => other,
        }
        .to_string()
    }
}

/// `[source.*]`: where the root file system comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Debian packages from an apt archive.
    Debian(DebianSource),
    /// RPM packages: local files and/or yum/dnf repositories.
    Rpm(crate::rpm::source::RpmSource),
    /// A root file system tarball (gzip, xz, zstd or plain).
    Tar(PathSource),
    /// A directory copied as the root.
    Dir(PathSource),
}

/// `[source.debian]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianSource {
    /// The suite whose Essential/Priority fields define the variant.
    pub suite: String,
    /// More suites to take newer versions from (e.g. `bookworm-updates`).
    #[serde(default)]
    pub extra_suites: Vec<String>,
    /// Archive components.
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// Archive root URI; default: the machine's apt source for each suite.
    #[serde(default)]
    pub mirror: Option<String>,
    /// OpenPGP keyring that must have signed InRelease.
    #[serde(default)]
    pub keyring: Option<PathBuf>,
    /// Base package set (mmdebstrap's variants).
    #[serde(default = "default_variant")]
    pub variant: Variant,
    /// Packages to install on top of the variant.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Packages that must not be installed.
    #[serde(default)]
    pub exclude: Vec<String>,
}

fn default_components() -> Vec<String> {
    vec!["main".to_string()]
}

fn default_variant() -> Variant {
    Variant::Minbase
}

/// `[source.tar]` / `[source.dir]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathSource {
    /// The tarball or directory, relative to the recipe.
    pub path: PathBuf,
}

/// `[vnfs]`: settings stored in the commit for provisioning.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VnfsConfig {
    /// Kernel command line for nodes booting this image.
    #[serde(default)]
    pub kernel_args: String,
    /// Globs served from the network instead of copied to RAM.
    #[serde(default)]
    pub hybridize: Vec<String>,
    /// Globs livesync never touches.
    #[serde(default)]
    pub livesync_skip: Vec<String>,
    /// Scripts run on the node at boot.
    #[serde(default)]
    pub nodescripts: Vec<String>,
}

/// One `[[step]]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Remove paths or globs (inside the image).
    Remove(Vec<String>),
    /// Copy a host file or directory into the image.
    Copy {
        /// Host path, relative to the recipe.
        from: PathBuf,
        /// Destination inside the image.
        to: String,
        /// Octal mode for files (directories keep theirs).
        mode: Option<u32>,
        /// Owner uid.
        owner: u32,
        /// Group gid.
        group: u32,
    },
    /// Write inline text to a file.
    Write {
        /// Destination inside the image.
        path: String,
        /// The text.
        content: String,
        /// Octal mode.
        mode: u32,
        /// Owner uid.
        owner: u32,
        /// Group gid.
        group: u32,
    },
    /// Run a shell command in the image.
    Run {
        /// The `sh -c` script.
        command: String,
        /// Whether the step may use the network.
        network: bool,
    },
    /// Enable systemd units.
    Enable(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    remove: Option<Vec<String>>,
    copy: Option<PathBuf>,
    write: Option<String>,
    run: Option<String>,
    enable: Option<Vec<String>>,
    to: Option<String>,
    content: Option<String>,
    mode: Option<String>,
    owner: Option<u32>,
    group: Option<u32>,
    network: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    image: Image,
    source: Source,
    #[serde(default)]
    step: Vec<toml::Spanned<RawStep>>,
    #[serde(default)]
    vnfs: VnfsConfig,
}

/// A recipe that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The recipe.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// TOML syntax, unknown key, wrong type, or an invalid value.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The recipe.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Recipe {
    /// Reads and validates a recipe file.
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let text = std::fs::read_to_string(path).map_err(|source| RecipeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Recipe::parse(&text, path)
    }

    /// Parses recipe text; `path` is used for messages and relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Recipe, RecipeError> {
        let invalid = |offset: usize, message: String| {
            let (line, column) = line_col(text, offset);
            RecipeError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let raw: RawRecipe = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let message = e.message().trim();
            // serde's words for an enum table with two variants set.
            let message = match message.starts_with("wanted exactly 1 element") {
                true => "a recipe has exactly one source: [source.debian], [source.rpm], [source.tar] or [source.dir]".to_string(),
                false => message.to_string(),
            };
            invalid(offset, message)
        })?;
        let mut steps = Vec::new();
        for s in raw.step {
            let offset = s.span().start;
            let s = s.into_inner();
            steps.push(validate_step(s).map_err(|m| invalid(offset, m))?);
        }
        let image = raw.image;
        for (key, value) in [
            ("os", &image.os),
            ("version", &image.version),
            ("release", &image.release),
            ("arch", &image.arch),
        ] {
            if value.is_empty() || value.contains(['/', ' ', '.']) && key != "version" {
                return Err(invalid(
                    key_offset(text, "image", key),
                    format!("image.{key} must be non-empty without '/', '.' or spaces"),
                ));
            }
        }
        // Checked here, not when the build commits: a name the store
        // refuses would otherwise cost a whole build first.
        if let Err(e) = vnfs_store::refs::validate_name(&image.full_name()) {
            // The field that holds what the store refuses.
            let key = if image.name.is_some() {
                "name"
            } else {
                [
                    ("os", &image.os),
                    ("version", &image.version),
                    ("release", &image.release),
                    ("arch", &image.arch),
                ]
                .into_iter()
                .find(|(_, v)| vnfs_store::refs::validate_name(v).is_err())
                .map_or("os", |(k, _)| k)
            };
            return Err(invalid(key_offset(text, "image", key), e.to_string()));
        }
        if let Source::Debian(d) = &raw.source
            && d.suite.is_empty()
        {
            return Err(invalid(
                text.find("suite").unwrap_or(0),
                "empty suite".into(),
            ));
        }
        if let Source::Debian(d) = &raw.source {
            if let Some(m) = &d.mirror {
                check_mirror(m)
                    .map_err(|why| invalid(key_offset(text, "source.debian", "mirror"), why))?;
            }
            if let Some(bad) = d
                .packages
                .iter()
                .chain(&d.exclude)
                .find(|p| p.is_empty() || p.contains(|c: char| c.is_whitespace() || c == ','))
            {
                let key = if d.packages.contains(bad) {
                    "packages"
                } else {
                    "exclude"
                };
                return Err(invalid(
                    key_offset(text, "source.debian", key),
                    format!(
                        "{bad:?} is not a package name: give one name per string, without versions or spaces"
                    ),
                ));
            }
        }
        if let Source::Rpm(r) = &raw.source {
            r.validate()
                .map_err(|m| invalid(text.find("[source.rpm]").unwrap_or(0), m))?;
        }
        Ok(Recipe {
            image,
            source: raw.source,
            steps,
            vnfs: raw.vnfs,
            path: path.to_path_buf(),
            text: text.to_string(),
        })
    }

    /// The lock file beside the recipe: `<recipe>.lock`.
    pub fn lock_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// Resolves a path given in the recipe relative to the recipe's directory.
    pub fn host_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}

/// Refuses a mirror the fetcher could never use: it takes `http://`,
/// `https://` and `file://` URLs with something after the scheme.
fn check_mirror(m: &str) -> Result<(), String> {
    let rest = ["http://", "https://", "file://"]
        .iter()
        .find_map(|scheme| m.strip_prefix(scheme));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(char::is_whitespace) => Ok(()),
        Some(_) => Err(format!("mirror {m:?} is not a URL")),
        None => Err(format!(
            "mirror {m:?} is not an http://, https:// or file:// URL"
        )),
    }
}

fn parse_mode(m: &str) -> Result<u32, String> {
    let digits = m.strip_prefix("0o").unwrap_or(m);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|v| *v <= 0o7777)
        .ok_or_else(|| format!("mode {m:?} is not an octal file mode like \"0644\""))
}

/// Where `key` is set in the `[table]` of a recipe, for messages about a
/// value that parsed but is not allowed: the start of its line, else the
/// table header, else the start of the file.
fn key_offset(text: &str, table: &str, key: &str) -> usize {
    let header = format!("[{table}]");
    let Some(start) = text.find(&header) else {
        return 0;
    };
    let mut at = start;
    for (i, line) in text[start..].split_inclusive('\n').enumerate() {
        let t = line.trim_start();
        if i > 0 && t.starts_with('[') {
            break;
        }
        if i > 0
            && let Some(rest) = t.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return at + (line.len() - t.len());
        }
        at += line.len();
    }
    start
}

fn validate_step(s: RawStep) -> Result<Step, String> {
    let actions = [
        s.remove.is_some(),
        s.copy.is_some(),
        s.write.is_some(),
        s.run.is_some(),
        s.enable.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if actions != 1 {
        return Err(
            "each [[step]] needs exactly one of remove, copy, write, run, enable".to_string(),
        );
    }
    let only = |allowed: &[&str]| -> Result<(), String> {
        let present = [
            ("to", s.to.is_some()),
            ("content", s.content.is_some()),
            ("mode", s.mode.is_some()),
            ("owner", s.owner.is_some()),
            ("group", s.group.is_some()),
            ("network", s.network.is_some()),
        ];
        for (k, p) in present {
            if p && !allowed.contains(&k) {
                return Err(format!("key `{k}` does not apply to this kind of step"));
            }
        }
        Ok(())
    };
    let check_inside = |p: &str| -> Result<(), String> {
        if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
            return Err(format!(
                "{p:?}: image paths must be absolute and must not contain `..`"
            ));
        }
        Ok(())
    };
    if let Some(globs) = s.remove {
        only(&[])?;
        for g in &globs {
            check_inside(g)?;
        }
        return Ok(Step::Remove(globs));
    }
    if let Some(from) = s.copy {
        only(&["to", "mode", "owner", "group"])?;
        let to = s.to.ok_or("copy step needs `to`")?;
        check_inside(&to)?;
        return Ok(Step::Copy {
            from,
            to,
            mode: s.mode.as_deref().map(parse_mode).transpose()?,
            owner: s.owner.unwrap_or(0),
            group: s.group.unwrap_or(0),
        });
    }
    if let Some(path) = s.write {
        only(&["content", "mode", "owner", "group"])?;
        check_inside(&path)?;
        return Ok(Step::Write {
            path,
            content: s.content.ok_or("write step needs `content`")?,
            mode: s
                .mode
                .as_deref()
                .map(parse_mode)
                .transpose()?
                .unwrap_or(0o644),
            owner: s.owner.unwrap_or(0),
            group: s.group.unwrap_or(0),
        });
    }
    if let Some(command) = s.run {
        only(&["network"])?;
        return Ok(Step::Run {
            command,
            network: s.network.unwrap_or(false),
        });
    }
    let units = s.enable.unwrap_or_default();
    only(&[])?;
    for u in &units {
        if u.is_empty() || u.contains('/') || !u.contains('.') {
            return Err(format!("{u:?} is not a systemd unit name like ssh.service"));
        }
    }
    Ok(Step::Enable(units))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[image]
os = "debian"
version = "12"
release = "1"
arch = "x86_64"

[source.debian]
suite = "bookworm"
packages = ["openssh-server"]

[[step]]
remove = ["/usr/share/doc/*"]

[[step]]
write = "/etc/hostname"
content = "node\n"
mode = "0600"

[[step]]
run = "true"

[[step]]
enable = ["ssh.service"]

[vnfs]
kernel_args = "quiet"
"#;

    fn parse(t: &str) -> Result<Recipe, RecipeError> {
        Recipe::parse(t, Path::new("r.toml"))
    }

    #[test]
    fn good_recipe() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.image.full_name(), "debian-12-1.stateless.x86_64");
        assert_eq!(r.image.debian_arch(), "amd64");
        let Source::Debian(d) = &r.source else {
            panic!("not debian")
        };
        assert_eq!(d.variant, Variant::Minbase);
        assert_eq!(d.components, ["main"]);
        assert_eq!(r.steps.len(), 4);
        assert!(matches!(r.steps[1], Step::Write { mode: 0o600, .. }));
        assert_eq!(r.lock_path(), Path::new("r.toml.lock"));
        assert_eq!(r.vnfs.kernel_args, "quiet");
    }

    #[test]
    fn image_values_the_store_refuses_are_reported_at_their_line() {
        // An image name the store would refuse only after the whole build.
        let t = GOOD.replace(
            "arch = \"x86_64\"\n",
            "arch = \"x86_64\"\nname = \"bad name/x\"\n",
        );
        let (line, column, m) = err_at(&t);
        assert_eq!((line, column), (7, 1), "{m}");
        assert!(m.contains("invalid image name 'bad name/x'"), "{m}");
        // A naming field: the line that sets it, not the table header.
        let (line, column, m) = err_at(&GOOD.replace("release = \"1\"", "  release = \"1.2\""));
        assert_eq!((line, column), (5, 3), "{m}");
        assert!(m.contains("image.release"), "{m}");
        // A character only the store refuses, in a field of the default name.
        let (line, _, m) = err_at(&GOOD.replace("version = \"12\"", "version = \"12~rc1\""));
        assert_eq!(line, 4, "{m}");
        assert!(m.contains("invalid image name"), "{m}");
    }

    fn err_at(t: &str) -> (usize, usize, String) {
        match parse(t).unwrap_err() {
            RecipeError::Invalid {
                line,
                column,
                message,
                ..
            } => (line, column, message),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let (line, col, _) = err_at("[image]\nos = \"debian\nversion = 1\n");
        assert_eq!((line, col), (2, 13));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let t = GOOD.replace("suite = \"bookworm\"", "suite = \"bookworm\"\nsuit = \"x\"");
        let (line, _, msg) = err_at(&t);
        assert_eq!(line, 10);
        assert!(msg.contains("suit"), "{msg}");
        let t = GOOD.replace("[vnfs]", "[vnfs]\nbogus = 1");
        let (_, _, msg) = err_at(&t);
        assert!(msg.contains("bogus"), "{msg}");
        let t = GOOD.replacen("[[step]]", "[source.dir]\npath = \"x\"\n\n[[step]]", 1);
        let (_, _, msg) = err_at(&t);
        assert!(msg.contains("exactly one source"), "{msg}");
    }

    #[test]
    fn bad_steps_point_at_the_step() {
        let t = GOOD.replace("run = \"true\"", "run = \"true\"\nto = \"/x\"");
        let (line, _, msg) = err_at(&t);
        assert_eq!(line, 20, "{msg}");
        assert!(msg.contains("`to`"), "{msg}");
        let t = GOOD.replace("mode = \"0600\"", "mode = \"rw\"");
        assert!(err_at(&t).2.contains("octal"));
        let t = GOOD.replace("/usr/share/doc/*", "../etc");
        assert!(err_at(&t).2.contains("absolute"));
        let t = GOOD.replace("run = \"true\"", "run = \"true\"\nremove = [\"/x\"]");
        assert!(err_at(&t).2.contains("exactly one"));
    }

    #[test]
    fn mirrors_and_package_names_that_cannot_work_are_refused_at_their_line() {
        for (mirror, says) in [
            ("ftp://example.invalid/debian", "not an http://"),
            ("not a url", "not an http://"),
            ("http:// x", "is not a URL"),
        ] {
            let t = GOOD.replace(
                "suite = \"bookworm\"",
                &format!("suite = \"bookworm\"\nmirror = \"{mirror}\""),
            );
            let (line, _, m) = err_at(&t);
            assert_eq!(line, 10, "{m}");
            assert!(m.contains(says), "{mirror}: {m}");
        }
        for ok in ["http://m/debian", "https://m/debian", "file:///srv/mirror"] {
            let t = GOOD.replace(
                "suite = \"bookworm\"",
                &format!("suite = \"bookworm\"\nmirror = \"{ok}\""),
            );
            parse(&t).unwrap();
        }
        for bad in ["", "bash (>= 5)", "a,b"] {
            let t = GOOD.replace(
                "packages = [\"openssh-server\"]",
                &format!("packages = [\"openssh-server\", \"{bad}\"]"),
            );
            let (_, _, m) = err_at(&t);
            assert!(m.contains("is not a package name"), "{bad:?}: {m}");
        }
    }

    #[test]
    fn named_and_stateful() {
        let t = GOOD.replace(
            "arch = \"x86_64\"",
            "arch = \"x86_64\"\nstate = \"stateful\"",
        );
        assert_eq!(
            parse(&t).unwrap().image.full_name(),
            "debian-12-1.stateful.x86_64"
        );
        let t = GOOD.replace("arch = \"x86_64\"", "arch = \"x86_64\"\nname = \"n\"");
        assert_eq!(parse(&t).unwrap().image.full_name(), "n");
        let t = GOOD.replace("os = \"debian\"", "os = \"de/b\"");
        assert!(err_at(&t).2.contains("image.os"));
    }
}
