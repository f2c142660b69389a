//! Entry points for fuzzing the builder's parsers of untrusted text and
//! archives: recipes, Debian control data (Packages stanzas, Release /
//! InRelease, apt sources, relationship fields, versions), `.deb` files
//! and RPM repository metadata (repomd.xml, primary.xml, modules.yaml with
//! the module stream selection and filtering). The cargo-fuzz targets in `builder/fuzz/` and the CI smoke test
//! (`tests/fuzz_smoke.rs`) call the same functions. Each must return for
//! any input without panicking; the assertions inside are properties
//! every accepted input must have.

use std::cmp::Ordering;
use std::io::Read;
use std::path::Path;

use crate::debian::deb::Deb;
use crate::debian::packages::{Package, format_alternatives, parse_relations};
use crate::debian::version::Version;
use crate::debian::{control, inrelease, repo, sources};
use crate::recipe::{Recipe, RecipeError};
use crate::rpm::modular::{self, ModuleMetadata, ModuleRequest};
use crate::rpm::{primary, repomd};

/// Bytes of a fuzzed `.deb`'s data archive read at most, so that a small
/// compressed input cannot make a run decompress gigabytes.
const DATA_LIMIT: u64 = 8 << 20;

/// Parses `data` as a recipe. Errors must point inside the text; an
/// accepted recipe has a usable image name and lock path.
pub fn recipe(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Recipe::parse(text, Path::new("fuzz.toml")) {
        Ok(r) => {
            assert!(!r.image.full_name().is_empty());
            assert!(!r.image.debian_arch().is_empty());
            assert_eq!(r.lock_path(), Path::new("fuzz.toml.lock"));
            // Parsing is a function of the text.
            let again = Recipe::parse(text, Path::new("fuzz.toml"));
            assert!(again.is_ok_and(|a| a.steps == r.steps));
        }
        Err(RecipeError::Invalid { line, column, .. }) => {
            assert!(line >= 1 && column >= 1);
            assert!(line <= text.lines().count().max(1) + 1, "line {line}");
        }
        Err(RecipeError::Io { .. }) => unreachable!("parse does no I/O"),
    }
}

/// Checks dpkg's ordering properties on two versions.
fn versions(a: &Version, b: &Version) {
    assert_eq!(a.cmp(a), Ordering::Equal);
    assert_eq!(a.cmp(b), b.cmp(a).reverse(), "{a} vs {b}");
    // What parsed once parses again to the same version.
    let again = Version::parse(a.as_str());
    assert!(again.is_ok_and(|x| x.cmp(a) == Ordering::Equal), "{a}");
}

/// Parses `data` as Debian control text every way the builder reads it:
/// deb822 paragraphs, Packages stanzas, a Release file, apt sources, and
/// each field as a relationship list and a version.
pub fn control(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = inrelease::parse_release(text, "fuzz");
    let _ = repo::parse_packages(text, "amd64", 0);
    let _ = sources::parse_one_line(text, Path::new("fuzz.list"));
    let _ = sources::parse_deb822(text, Path::new("fuzz.sources"));
    let Ok(paras) = control::parse(text) else {
        return;
    };
    let lines = text.lines().count();
    let mut seen: Vec<Version> = Vec::new();
    for p in &paras {
        assert!(p.line >= 1 && p.line <= lines, "paragraph line {}", p.line);
        for (name, value) in &p.fields {
            assert!(!name.is_empty() && !name.contains(char::is_whitespace));
            assert!(p.get(name).is_some());
            if let Ok(groups) = parse_relations(value, "amd64") {
                for g in &groups {
                    assert!(!g.is_empty());
                    // Formatting what parsed gives text that parses alike.
                    let text = format_alternatives(g);
                    let back = parse_relations(&text, "amd64");
                    assert!(
                        back.as_ref().is_ok_and(|b| b.len() == 1 && b[0] == *g),
                        "{text:?} from {value:?}: {back:?}"
                    );
                }
            }
            if let Ok(v) = Version::parse(value) {
                for w in &seen {
                    versions(&v, w);
                }
                if seen.len() < 8 {
                    seen.push(v);
                }
            }
        }
        if let Ok(pkg) = Package::from_paragraph(p, "amd64", 0) {
            assert!(!pkg.name.is_empty());
            let _ = pkg.label();
        }
    }
}

/// Reads `data` as a `.deb`: the ar container, the control archive and
/// its control file, and the data archive's members (without writing
/// anything to disk).
pub fn deb(data: &[u8]) {
    let Ok(deb) = Deb::parse(data, "fuzz.deb") else {
        return;
    };
    assert!(deb.control.contains_key("control"));
    if let Ok(text) = deb.control_text()
        && let Ok(paras) = control::parse(&text)
        && let Some(p) = paras.first()
    {
        let _ = Package::from_paragraph(p, "amd64", 0);
    }
    let Ok(reader) = deb.data_reader() else {
        return;
    };
    let mut ar = tar::Archive::new(reader.take(DATA_LIMIT));
    let Ok(entries) = ar.entries() else {
        return;
    };
    for e in entries {
        let Ok(mut e) = e else {
            return;
        };
        let _ = e.path();
        let _ = e.link_name();
        let _ = e.header().mode();
        let _ = e.pax_extensions().map(|x| x.map(|x| x.count()));
        if std::io::copy(&mut e, &mut std::io::sink()).is_err() {
            return;
        }
    }
}

/// Reads `data` as RPM repository metadata every way the builder does:
/// repomd.xml, primary.xml, and modules.yaml. Accepted module metadata is
/// then put through stream selection (the defaults, and enabling each of
/// the first modules) and filtering of a package list made from its own
/// artifacts: selection only names streams that exist, and filtering only
/// removes packages, each counted once.
pub fn rpm_metadata(data: &[u8]) {
    let _ = repomd::parse_repomd(data, "fuzz");
    let _ = primary::parse(data, 0);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut meta = ModuleMetadata::default();
    if meta.add_yaml(text).is_err() {
        return;
    }
    for m in &meta.streams {
        assert!(!m.name.is_empty() && !m.stream.is_empty());
    }
    let packages = primary::parse(artifacts_as_primary(&meta).as_bytes(), 0)
        .expect("primary.xml written from parsed artifacts parses");
    let mut names: Vec<&str> = meta.streams.iter().map(|m| m.name.as_str()).collect();
    names.dedup();
    let mut requests = vec![Vec::new()];
    requests.extend(names.iter().take(3).map(|n| vec![n.to_string()]));
    for enable in requests {
        let req = ModuleRequest {
            enable,
            disable: Vec::new(),
            platform: Some("platform:el9".into()),
            arch: "x86_64".into(),
        };
        let Ok(sel) = modular::select(&meta, &req) else {
            continue;
        };
        for (name, (stream, _)) in &sel.enabled {
            assert!(
                meta.streams
                    .iter()
                    .any(|m| m.name == *name && m.stream == *stream),
                "{name}:{stream} enabled but not in the metadata"
            );
        }
        assert!(sel.active.iter().all(|&i| i < meta.streams.len()));
        let states = sel.states();
        assert!(states.windows(2).all(|w| w[0].name < w[1].name));
        let before = packages.len();
        let (kept, f) = modular::filter(packages.clone(), &meta, &sel, |_| false);
        assert_eq!(kept.len() + f.inactive + f.shadowed, before);
    }
}

/// A primary.xml listing one package per module artifact (binary ones),
/// so filtering has packages that the metadata names.
fn artifacts_as_primary(meta: &ModuleMetadata) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('"', "&quot;")
    };
    let mut xml = String::from("<metadata>");
    for a in meta.streams.iter().flat_map(|m| &m.artifacts).take(64) {
        if a.arch == "src" {
            continue;
        }
        xml.push_str(&format!(
            "<package type=\"rpm\"><name>{}</name><arch>{}</arch><version epoch=\"{}\" ver=\"{}\" rel=\"{}\"/><checksum type=\"sha256\">{}</checksum><location href=\"p.rpm\"/></package>",
            esc(&a.name),
            esc(&a.arch),
            a.epoch,
            esc(&a.version),
            esc(&a.release),
            "0".repeat(64)
        ));
    }
    xml.push_str("</metadata>");
    xml
}
