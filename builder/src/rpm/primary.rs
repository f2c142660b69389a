//! `primary.xml`: one `<package>` per RPM with its identity, checksum,
//! location and dependency data. Read as a stream, so a distribution-sized
//! index (100+ MB) is not held as a document tree.

use quick_xml::events::{BytesStart, Event};

use super::package::{Origin, RpmPackage, is_internal};
use super::version::{Dep, Evr, Op};
use super::xml::{attr, push_ref};

/// Which dependency list `<rpm:entry>` elements currently go to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum List {
    None,
    Provides,
    Requires,
    Conflicts,
    Obsoletes,
    Recommends,
    Supplements,
}

fn entry(e: &BytesStart<'_>) -> Result<Dep, String> {
    let name = attr(e, "name").ok_or("rpm:entry without name")?;
    let range = match attr(e, "flags") {
        None => None,
        Some(f) => {
            let op = Op::from_xml(&f).ok_or_else(|| format!("entry {name}: bad flags {f:?}"))?;
            let epoch = match attr(e, "epoch") {
                Some(s) => s
                    .parse()
                    .map_err(|_| format!("entry {name}: bad epoch {s:?}"))?,
                None => 0,
            };
            Some((
                op,
                Evr {
                    epoch,
                    version: attr(e, "ver").unwrap_or_default(),
                    release: attr(e, "rel").unwrap_or_default(),
                },
            ))
        }
    };
    Ok(Dep { name, range })
}

/// Parses primary.xml; packages get `Origin::Repo(origin)`. Packages
/// listing a checksum other than sha256 are refused (the package cache
/// and lock file are keyed by sha256).
pub fn parse(xml: &[u8], origin: usize) -> Result<Vec<RpmPackage>, String> {
    let mut r = quick_xml::Reader::from_reader(xml);
    r.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut cur: Option<RpmPackage> = None;
    let mut list = List::None;
    let mut text = String::new();
    let mut sum_type = String::new();
    loop {
        let ev = r
            .read_event_into(&mut buf)
            .map_err(|e| format!("XML error at byte {}: {e}", r.buffer_position()))?;
        let (start, empty) = match &ev {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            text.clear();
            let name = e.local_name();
            match (name.as_ref(), cur.as_mut()) {
                ("package", _) => {
                    cur = Some(RpmPackage {
                        name: String::new(),
                        evr: Evr::default(),
                        arch: String::new(),
                        sha256: String::new(),
                        size: 0,
                        location: String::new(),
                        origin: Origin::Repo(origin),
                        build_time: 0,
                        provides: Vec::new(),
                        requires: Vec::new(),
                        conflicts: Vec::new(),
                        obsoletes: Vec::new(),
                        recommends: Vec::new(),
                        supplements: Vec::new(),
                        files: Vec::new(),
                    });
                }
                ("version", Some(p)) => {
                    p.evr = Evr {
                        epoch: attr(e, "epoch").and_then(|s| s.parse().ok()).unwrap_or(0),
                        version: attr(e, "ver").unwrap_or_default(),
                        release: attr(e, "rel").unwrap_or_default(),
                    };
                }
                ("checksum", Some(_)) => sum_type = attr(e, "type").unwrap_or_default(),
                ("time", Some(p)) => {
                    p.build_time = attr(e, "build").and_then(|s| s.parse().ok()).unwrap_or(0)
                }
                ("size", Some(p)) => {
                    p.size = attr(e, "package").and_then(|s| s.parse().ok()).unwrap_or(0)
                }
                ("location", Some(p)) => {
                    if attr(e, "base").is_some() {
                        return Err(format!(
                            "package {}: location with xml:base (packages hosted elsewhere) is not supported",
                            p.name
                        ));
                    }
                    p.location = attr(e, "href").unwrap_or_default();
                }
                ("provides", Some(_)) if !empty => list = List::Provides,
                ("requires", Some(_)) if !empty => list = List::Requires,
                ("conflicts", Some(_)) if !empty => list = List::Conflicts,
                ("obsoletes", Some(_)) if !empty => list = List::Obsoletes,
                ("recommends", Some(_)) if !empty => list = List::Recommends,
                ("supplements", Some(_)) if !empty => list = List::Supplements,
                ("entry", Some(p)) if list != List::None => {
                    let d = entry(e).map_err(|m| format!("package {}: {m}", p.name))?;
                    match list {
                        List::Provides => p.provides.push(d),
                        List::Requires if !is_internal(&d.name) => p.requires.push(d),
                        List::Conflicts => p.conflicts.push(d),
                        List::Obsoletes => p.obsoletes.push(d),
                        List::Recommends => p.recommends.push(d),
                        List::Supplements => p.supplements.push(d),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        match ev {
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::GeneralRef(g) => push_ref(&mut text, &g),
            Event::End(e) => {
                let name = e.local_name();
                match (name.as_ref(), cur.as_mut()) {
                    ("name", Some(p)) if p.name.is_empty() => p.name = text.trim().to_string(),
                    ("arch", Some(p)) => p.arch = text.trim().to_string(),
                    ("checksum", Some(p)) => {
                        if sum_type != "sha256" {
                            return Err(format!(
                                "package {}: checksum type {sum_type:?} is not supported (sha256 is)",
                                p.name
                            ));
                        }
                        p.sha256 = text.trim().to_ascii_lowercase();
                    }
                    ("file", Some(p)) => p.files.push(text.trim().to_string()),
                    (
                        "provides" | "requires" | "conflicts" | "obsoletes" | "recommends"
                        | "supplements",
                        _,
                    ) => list = List::None,
                    ("package", Some(_)) => {
                        if let Some(mut p) = cur.take() {
                            validate(&p)?;
                            p.add_self_provide();
                            out.push(p);
                        }
                    }
                    _ => {}
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(out)
}

fn validate(p: &RpmPackage) -> Result<(), String> {
    let bad = |m: &str| Err(format!("package {:?}: {m}", p.name));
    if p.name.is_empty() || p.arch.is_empty() || p.evr.version.is_empty() {
        return bad("missing name, arch or version");
    }
    if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad("missing or malformed sha256 checksum");
    }
    if p.location.is_empty()
        || p.location.starts_with('/')
        || p.location.split('/').any(|c| c == "..")
    {
        return bad(&format!("bad location {:?}", p.location));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const PRIMARY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm">
  <name>foo</name>
  <arch>x86_64</arch>
  <version epoch="1" ver="2.0" rel="3"/>
  <checksum type="sha256" pkgid="YES">00000000000000000000000000000000000000000000000000000000000000AA</checksum>
  <summary>foo &amp; bar</summary>
  <description>d</description>
  <time file="1" build="1700000000"/>
  <size package="1234" installed="1" archive="1"/>
  <location href="Packages/f/foo-2.0-3.x86_64.rpm"/>
  <format>
    <rpm:license>MIT</rpm:license>
    <rpm:provides>
      <rpm:entry name="foo" flags="EQ" epoch="1" ver="2.0" rel="3"/>
      <rpm:entry name="foo-virtual"/>
    </rpm:provides>
    <rpm:requires>
      <rpm:entry name="bar" flags="GE" epoch="0" ver="1.0" pre="1"/>
      <rpm:entry name="rpmlib(CompressedFileNames)" flags="LE" epoch="0" ver="3.0.4" rel="1"/>
      <rpm:entry name="/bin/sh"/>
    </rpm:requires>
    <rpm:conflicts>
      <rpm:entry name="oldfoo" flags="LT" epoch="0" ver="1"/>
    </rpm:conflicts>
    <rpm:obsoletes>
      <rpm:entry name="foo-legacy" flags="LT" epoch="0" ver="2.0"/>
    </rpm:obsoletes>
    <rpm:recommends>
      <rpm:entry name="foo-docs"/>
    </rpm:recommends>
    <rpm:supplements>
      <rpm:entry name="(bash and foo-docs)"/>
    </rpm:supplements>
    <file>/usr/bin/foo&amp;x</file>
    <file type="dir">/etc/foo</file>
  </format>
</package>
<package type="rpm">
  <name>bar</name>
  <arch>noarch</arch>
  <version epoch="0" ver="1.5" rel="1"/>
  <checksum type="sha256" pkgid="YES">00000000000000000000000000000000000000000000000000000000000000bb</checksum>
  <time file="1" build="1600000000"/>
  <size package="99"/>
  <location href="Packages/b/bar-1.5-1.noarch.rpm"/>
  <format><rpm:provides/><rpm:requires/></format>
</package>
</metadata>"#;

    #[test]
    fn parses_packages() {
        let pk = parse(PRIMARY.as_bytes(), 3).unwrap();
        assert_eq!(pk.len(), 2);
        let foo = &pk[0];
        assert_eq!(foo.nevra(), "foo-1:2.0-3.x86_64");
        assert_eq!(foo.sha256, format!("{}aa", "0".repeat(62)));
        assert_eq!(foo.size, 1234);
        assert_eq!(foo.build_time, 1_700_000_000);
        assert_eq!(foo.origin, Origin::Repo(3));
        assert_eq!(foo.location, "Packages/f/foo-2.0-3.x86_64.rpm");
        assert_eq!(foo.provides.len(), 2);
        let req: Vec<String> = foo.requires.iter().map(|d| d.to_string()).collect();
        assert_eq!(req, ["bar >= 1.0", "/bin/sh"]);
        assert_eq!(foo.conflicts[0].to_string(), "oldfoo < 1");
        assert_eq!(foo.obsoletes[0].to_string(), "foo-legacy < 2.0");
        assert_eq!(foo.recommends[0].to_string(), "foo-docs");
        assert_eq!(foo.supplements.len(), 1);
        assert_eq!(foo.supplements[0].name, "(bash and foo-docs)");
        assert_eq!(foo.files, ["/usr/bin/foo&x", "/etc/foo"]);
        assert!(foo.satisfies(&Dep::any("/usr/bin/foo&x")));
        // bar gets its implicit self-provide.
        assert_eq!(pk[1].provides[0].to_string(), "bar = 1.5-1");
    }

    #[test]
    fn refuses_bad_records() {
        let t = PRIMARY.replace("Packages/b/bar", "../b/bar");
        assert!(parse(t.as_bytes(), 0).unwrap_err().contains("bad location"));
        let t = PRIMARY.replacen("type=\"sha256\" pkgid", "type=\"sha1\" pkgid", 1);
        assert!(parse(t.as_bytes(), 0).unwrap_err().contains("sha1"));
        let t = PRIMARY.replace("<name>bar</name>", "<name>bar</nam>");
        assert!(parse(t.as_bytes(), 0).unwrap_err().contains("XML error"));
    }
}
