//! `vnfs init`: the questions Perceus asked at first run, their defaults
//! (from the machine's interfaces, or from an existing Perceus
//! configuration), validation of each answer, and writing `vnfs.conf` and
//! `defaults.conf`. Prompting is the caller's job: this module only knows
//! the questions.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::config::{self, Defaults, VnfsConf};
use crate::error::{Error, Result};
use crate::netif::{self, Interface};

/// One question: a stable key (also the CLI flag name) and its prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Question {
    /// Key, e.g. `device`.
    pub key: &'static str,
    /// What to ask.
    pub prompt: &'static str,
}

/// The questions in the order they are asked.
pub const QUESTIONS: &[Question] = &[
    Question {
        key: "device",
        prompt: "Which network device on this master is connected directly and privately to the nodes?",
    },
    Question {
        key: "address",
        prompt: "What address do the nodes use to reach this master?",
    },
    Question {
        key: "dhcp-start",
        prompt: "First address of the DHCP range for booting nodes?",
    },
    Question {
        key: "dhcp-end",
        prompt: "Last address of the DHCP range for booting nodes?",
    },
    Question {
        key: "domain",
        prompt: "DNS domain (and search path) of the nodes?",
    },
    Question {
        key: "timeout",
        prompt: "Seconds without a check-in before a node counts as timed out?",
    },
    Question {
        key: "port",
        prompt: "TCP port of the provisioning daemon?",
    },
    Question {
        key: "node-name",
        prompt: "Name template for new nodes ('#' marks a digit)?",
    },
    Question {
        key: "group",
        prompt: "Group of new nodes?",
    },
    Question {
        key: "enabled",
        prompt: "Enable (provision) new nodes at once? (1/0)",
    },
    Question {
        key: "first-node",
        prompt: "Number of the first node?",
    },
    Question {
        key: "total-nodes",
        prompt: "How many node numbers to count through when naming nodes?",
    },
];

/// The answers so far, with defaults that follow earlier answers.
#[derive(Clone, Debug)]
pub struct Init {
    /// The master configuration being built.
    pub conf: VnfsConf,
    /// The node defaults being built.
    pub defaults: Defaults,
    /// Keys whose values came from a file or an answer, not a guess.
    fixed: BTreeSet<&'static str>,
    ifs: Vec<Interface>,
    /// Notes for the user (e.g. Perceus keys ignored).
    pub warnings: Vec<String>,
}

impl Init {
    /// Starts from built-in values, then the machine's interfaces.
    pub fn new(ifs: Vec<Interface>) -> Init {
        let mut i = Init {
            conf: VnfsConf::default(),
            defaults: Defaults::default(),
            fixed: BTreeSet::new(),
            ifs,
            warnings: Vec::new(),
        };
        if let Some(guess) = netif::guess_cluster_interface(&i.ifs).cloned() {
            i.follow_device(&guess.name);
        }
        i
    }

    /// [`Init::new`] with the interfaces of this machine.
    pub fn from_machine() -> Init {
        Init::new(netif::ipv4_interfaces())
    }

    /// The machine's interfaces, for listing next to the first question.
    pub fn interfaces(&self) -> &[Interface] {
        &self.ifs
    }

    /// Takes values from an existing Perceus (or vnfs) `perceus.conf`.
    pub fn read_perceus_conf(&mut self, path: &Path) -> Result<()> {
        let text = crate::fsutil::read_text(path)?;
        let (c, w) = config::parse_vnfs_conf(path, &text)?;
        self.warnings.extend(w);
        // Only keys actually present count as fixed; the rest keep guesses.
        let has = |k: &str| {
            text.lines().any(|l| {
                let l = l.trim();
                !l.starts_with('#')
                    && l.split_once('=').is_some_and(|(key, v)| {
                        key.split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                            .eq_ignore_ascii_case(k)
                            && !v.trim().is_empty()
                    })
            })
        };
        if has("master network device") {
            self.follow_device(&c.master_device);
            self.fixed.insert("device");
        }
        if has("vnfs transfer master") || has("master address") {
            self.conf.master_address = c.master_address;
            self.fixed.insert("address");
        }
        if has("node timeout") {
            self.conf.node_timeout = c.node_timeout;
            self.fixed.insert("timeout");
        }
        for (k, key) in [
            ("dhcp range start", "dhcp-start"),
            ("dhcp range end", "dhcp-end"),
        ] {
            if has(k) {
                self.conf.dhcp_start = c.dhcp_start;
                self.conf.dhcp_end = c.dhcp_end;
                self.fixed.insert(key);
            }
        }
        if has("domain") {
            self.conf.domain = c.domain.clone();
        }
        if has("daemon port") {
            self.conf.daemon_port = c.daemon_port;
        }
        self.conf.transfer_method = c.transfer_method;
        Ok(())
    }

    /// Takes the node defaults from an existing Perceus `defaults.conf`.
    pub fn read_perceus_defaults(&mut self, path: &Path) -> Result<()> {
        let (d, w) = config::read_defaults(path)?;
        self.warnings.extend(w);
        self.defaults = d;
        Ok(())
    }

    /// Sets the device and, unless fixed already, the address and DHCP range
    /// that follow from its first IPv4 address.
    fn follow_device(&mut self, dev: &str) {
        self.conf.master_device = dev.to_string();
        let Some(i) = self.ifs.iter().find(|i| i.name == dev).cloned() else {
            return;
        };
        if !self.fixed.contains("address") {
            self.conf.master_address = i.addr;
        }
        if let Some((lo, hi)) = netif::default_dhcp_range(&i) {
            if !self.fixed.contains("dhcp-start") {
                self.conf.dhcp_start = lo;
            }
            if !self.fixed.contains("dhcp-end") {
                self.conf.dhcp_end = hi;
            }
        }
    }

    /// The current value (the default offered) for a question.
    pub fn current(&self, key: &str) -> String {
        let (c, d) = (&self.conf, &self.defaults);
        match key {
            "device" => c.master_device.clone(),
            "address" => c.master_address.to_string(),
            "dhcp-start" => c.dhcp_start.to_string(),
            "dhcp-end" => c.dhcp_end.to_string(),
            "domain" => c.domain.clone(),
            "timeout" => c.node_timeout.to_string(),
            "port" => c.daemon_port.to_string(),
            "node-name" => d.node_name.clone(),
            "group" => d.group.clone(),
            "enabled" => u8::from(d.enabled).to_string(),
            "first-node" => d.first_node.to_string(),
            "total-nodes" => d.total_nodes.to_string(),
            _ => String::new(),
        }
    }

    /// Records an answer; an empty answer keeps the current value.
    pub fn answer(&mut self, key: &str, value: &str) -> Result<()> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(());
        }
        let bad = |reason: &str| Error::BadValue {
            field: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let ip = || {
            value
                .parse::<Ipv4Addr>()
                .map_err(|_| bad("not an IPv4 address"))
        };
        let Some(q) = QUESTIONS.iter().find(|q| q.key == key) else {
            return Err(bad("no such question"));
        };
        match key {
            "device" => {
                if value.contains(['/', ' ']) {
                    return Err(bad("not a device name"));
                }
                self.follow_device(value);
            }
            "address" => self.conf.master_address = ip()?,
            "dhcp-start" => self.conf.dhcp_start = ip()?,
            "dhcp-end" => self.conf.dhcp_end = ip()?,
            "domain" => {
                crate::node::validate_hostname(value).map_err(|r| bad(&r))?;
                self.conf.domain = value.to_string();
            }
            "timeout" => {
                self.conf.node_timeout =
                    value.parse().map_err(|_| bad("not a number of seconds"))?
            }
            "port" => {
                self.conf.daemon_port = value
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad("not a port number"))?
            }
            "node-name" => {
                crate::naming::validate_template(value).map_err(|r| bad(&r))?;
                self.defaults.node_name = value.to_string();
            }
            "group" => {
                crate::node::Field::Group.validate(value, &crate::Images::default())?;
                self.defaults.group = value.to_string();
            }
            "enabled" => {
                self.defaults.enabled =
                    crate::node::parse_bool(value).ok_or_else(|| bad("expected 1 or 0"))?
            }
            "first-node" => {
                self.defaults.first_node = value.parse().map_err(|_| bad("not a number"))?
            }
            "total-nodes" => {
                self.defaults.total_nodes = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("a number of at least 1"))?
            }
            _ => return Err(bad("no such question")),
        }
        self.fixed.insert(q.key);
        Ok(())
    }

    /// Checks the whole configuration for consistency.
    pub fn check(&self) -> Result<()> {
        if u32::from(self.conf.dhcp_start) > u32::from(self.conf.dhcp_end) {
            return Err(Error::Config(format!(
                "the DHCP range {} - {} is backwards",
                self.conf.dhcp_start, self.conf.dhcp_end
            )));
        }
        let (s, e, m) = (
            u32::from(self.conf.dhcp_start),
            u32::from(self.conf.dhcp_end),
            u32::from(self.conf.master_address),
        );
        if (s..=e).contains(&m) {
            return Err(Error::Config(format!(
                "the DHCP range {} - {} contains the master's address {}",
                self.conf.dhcp_start, self.conf.dhcp_end, self.conf.master_address
            )));
        }
        Ok(())
    }

    /// Writes `vnfs.conf` and `defaults.conf` into `dir`. Existing files are
    /// kept unless `force`. Returns the files written.
    pub fn write(&self, dir: &Path, force: bool) -> Result<Vec<PathBuf>> {
        self.check()?;
        let files = [
            (
                dir.join(config::VNFS_CONF),
                config::render_vnfs_conf(&self.conf),
            ),
            (
                dir.join(config::DEFAULTS_CONF),
                config::render_defaults(&self.defaults),
            ),
        ];
        if !force && let Some((p, _)) = files.iter().find(|(p, _)| p.exists()) {
            return Err(Error::Config(format!(
                "{} already exists; pass --force to overwrite it",
                p.display()
            )));
        }
        for (p, text) in &files {
            crate::fsutil::write_atomic(p, text.as_bytes())?;
        }
        Ok(files.into_iter().map(|(p, _)| p).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifs() -> Vec<Interface> {
        vec![
            Interface {
                name: "eth0".into(),
                addr: Ipv4Addr::new(203, 0, 113, 5),
                prefix: 24,
            },
            Interface {
                name: "eth1".into(),
                addr: Ipv4Addr::new(10, 0, 0, 1),
                prefix: 16,
            },
        ]
    }

    #[test]
    fn defaults_follow_the_private_interface() {
        let i = Init::new(ifs());
        assert_eq!(i.current("device"), "eth1");
        assert_eq!(i.current("address"), "10.0.0.1");
        assert_eq!(i.current("dhcp-start"), "10.0.128.0");
        let mut i = i;
        i.answer("device", "eth0").unwrap();
        assert_eq!(i.current("address"), "203.0.113.5");
        assert_eq!(i.current("dhcp-start"), "203.0.113.128");
        assert!(i.answer("port", "0").is_err());
        assert!(i.answer("node-name", "node").is_err());
        assert!(i.answer("address", "10.0.0").is_err());
        i.answer("address", "").unwrap();
        assert_eq!(i.current("address"), "203.0.113.5");
    }

    #[test]
    fn perceus_values_win_over_guesses() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("perceus.conf");
        std::fs::write(&p, "master network device = eth0\nvnfs transfer master = 203.0.113.9\nvnfs transfer method = nfs\nnode timeout = 120\n").unwrap();
        let mut i = Init::new(ifs());
        i.read_perceus_conf(&p).unwrap();
        assert_eq!(i.current("device"), "eth0");
        assert_eq!(i.current("address"), "203.0.113.9");
        assert_eq!(i.current("timeout"), "120");
        assert_eq!(i.warnings.len(), 1);
        let files = i.write(dir.path(), false).unwrap();
        assert_eq!(files.len(), 2);
        assert!(i.write(dir.path(), false).is_err());
        i.write(dir.path(), true).unwrap();
        let (back, _) = config::read_vnfs_conf(&files[0]).unwrap();
        assert_eq!(back, i.conf);
    }

    #[test]
    fn range_may_not_hold_the_master() {
        let mut i = Init::new(ifs());
        i.answer("dhcp-start", "10.0.0.0").unwrap();
        assert!(i.check().is_err());
    }
}
