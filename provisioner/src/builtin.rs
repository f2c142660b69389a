//! The modules shipped with vnfs (`provisioner/modules/`), compiled in so
//! they are available without an import step, as Perceus shipped its own.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::module::{Module, Origin};

/// (module, relative path, contents) of every shipped file.
const FILES: &[(&str, &str, &str)] = &[
    (
        "groupfile",
        "module.toml",
        include_str!("../modules/groupfile/module.toml"),
    ),
    (
        "groupfile",
        "scripts/init.sh",
        include_str!("../modules/groupfile/scripts/init.sh"),
    ),
    (
        "groupfile",
        "scripts/ready.sh",
        include_str!("../modules/groupfile/scripts/ready.sh"),
    ),
    (
        "hostname",
        "module.toml",
        include_str!("../modules/hostname/module.toml"),
    ),
    (
        "hostname",
        "scripts/init.sh",
        include_str!("../modules/hostname/scripts/init.sh"),
    ),
    (
        "ipaddr",
        "module.toml",
        include_str!("../modules/ipaddr/module.toml"),
    ),
    (
        "ipaddr",
        "scripts/init.sh",
        include_str!("../modules/ipaddr/scripts/init.sh"),
    ),
    (
        "masterauth",
        "module.toml",
        include_str!("../modules/masterauth/module.toml"),
    ),
    (
        "masterauth",
        "scripts/init.sh",
        include_str!("../modules/masterauth/scripts/init.sh"),
    ),
    (
        "masterauth",
        "scripts/ready.sh",
        include_str!("../modules/masterauth/scripts/ready.sh"),
    ),
    (
        "modprobe",
        "module.toml",
        include_str!("../modules/modprobe/module.toml"),
    ),
    (
        "modprobe",
        "scripts/init.sh",
        include_str!("../modules/modprobe/scripts/init.sh"),
    ),
    (
        "passwdfile",
        "module.toml",
        include_str!("../modules/passwdfile/module.toml"),
    ),
    (
        "passwdfile",
        "scripts/init.sh",
        include_str!("../modules/passwdfile/scripts/init.sh"),
    ),
    (
        "passwdfile",
        "scripts/ready.sh",
        include_str!("../modules/passwdfile/scripts/ready.sh"),
    ),
    (
        "syncnodes",
        "module.toml",
        include_str!("../modules/syncnodes/module.toml"),
    ),
    (
        "syncnodes",
        "scripts/init.sh",
        include_str!("../modules/syncnodes/scripts/init.sh"),
    ),
    (
        "syncnodes",
        "scripts/ready.sh",
        include_str!("../modules/syncnodes/scripts/ready.sh"),
    ),
];

/// The built-in modules, parsed and validated.
pub fn modules() -> Result<Vec<Module>> {
    let mut by_name: BTreeMap<&str, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for (m, rel, text) in FILES {
        by_name
            .entry(m)
            .or_default()
            .insert((*rel).to_string(), text.as_bytes().to_vec());
    }
    by_name
        .into_iter()
        .map(|(m, files)| Module::from_files(m, files, Origin::Builtin))
        .collect()
}

#[cfg(test)]
mod tests {
    /// Every file under provisioner/modules is compiled in (the list above
    /// is written by hand).
    #[test]
    fn every_shipped_file_is_listed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("modules");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    on_disk.push(
                        p.strip_prefix(&root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = super::FILES
            .iter()
            .map(|(m, rel, _)| format!("{m}/{rel}"))
            .collect();
        listed.sort();
        assert_eq!(listed, on_disk);
    }

    #[test]
    fn all_shipped_modules_parse() {
        let names: Vec<String> = super::modules()
            .unwrap()
            .iter()
            .map(|m| m.name().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "groupfile",
                "hostname",
                "ipaddr",
                "masterauth",
                "modprobe",
                "passwdfile",
                "syncnodes"
            ]
        );
    }
}
