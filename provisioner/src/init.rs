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
    /// Keys that have no value to offer: the device they would follow has
    /// no IPv4 address here. They must be answered before writing.
    unknown: BTreeSet<&'static str>,
    ifs: Vec<Interface>,
    /// Every device name on the machine, addressed or not; `None` when they
    /// could not be listed.
    devices: Option<BTreeSet<String>>,
    /// Notes for the user (e.g. Perceus keys ignored, a device that is not
    /// on this machine). Callers print and clear them as they go.
    pub warnings: Vec<String>,
}

/// The keys whose defaults follow the chosen device's address.
const FOLLOWS_DEVICE: [&str; 3] = ["address", "dhcp-start", "dhcp-end"];

impl Init {
    /// Starts from built-in values, then the given interfaces, taken as
    /// every device the machine has.
    pub fn new(ifs: Vec<Interface>) -> Init {
        let names = ifs.iter().map(|i| i.name.clone()).collect();
        Init::with_devices(ifs, Some(names))
    }

    /// Starts from built-in values, then the IPv4 interfaces `ifs`, with
    /// `devices` naming every network device (those without an IPv4
    /// address, and loopback, too); `None` when they are not known.
    pub fn with_devices(ifs: Vec<Interface>, devices: Option<Vec<String>>) -> Init {
        let devices = devices.map(|d| {
            d.into_iter()
                .chain(ifs.iter().map(|i| i.name.clone()))
                .collect()
        });
        let mut i = Init {
            conf: VnfsConf::default(),
            defaults: Defaults::default(),
            fixed: BTreeSet::new(),
            unknown: BTreeSet::new(),
            ifs,
            devices,
            warnings: Vec::new(),
        };
        if let Some(guess) = netif::guess_cluster_interface(&i.ifs).cloned() {
            i.follow_device(&guess.name);
        }
        i
    }

    /// [`Init::with_devices`] with the interfaces and devices of this
    /// machine.
    pub fn from_machine() -> Init {
        Init::with_devices(netif::ipv4_interfaces(), netif::device_names())
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
            self.fix("device");
        }
        if has("vnfs transfer master") || has("master address") {
            self.conf.master_address = c.master_address;
            self.fix("address");
        }
        if has("node timeout") {
            self.conf.node_timeout = c.node_timeout;
            self.fix("timeout");
        }
        // Each end on its own: the other one keeps what the device gave.
        if has("dhcp range start") {
            self.conf.dhcp_start = c.dhcp_start;
            self.fix("dhcp-start");
        }
        if has("dhcp range end") {
            self.conf.dhcp_end = c.dhcp_end;
            self.fix("dhcp-end");
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
    ///
    /// A device without an IPv4 address here leaves them without a default
    /// rather than keeping the values of the interface guessed before: that
    /// would configure the nodes' network from another interface's address
    /// without a word. Writing a configuration for a device this machine
    /// lacks stays possible (a master prepared elsewhere, a Perceus
    /// configuration carried over, an interface set up later), with the
    /// address and range given explicitly; a device name that does not
    /// exist at all is also warned about, since it may be a typo.
    fn follow_device(&mut self, dev: &str) {
        self.conf.master_device = dev.to_string();
        let Some(i) = self.ifs.iter().find(|i| i.name == dev).cloned() else {
            for k in FOLLOWS_DEVICE {
                if !self.fixed.contains(k) {
                    self.unknown.insert(k);
                }
            }
            if let Some(devs) = self.devices.as_ref().filter(|d| !d.contains(dev)) {
                self.warnings.push(format!(
                    "network device '{dev}' does not exist on this machine (devices: {}); \
                     no master address or DHCP range can be read from it",
                    devs.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            return;
        };
        if !self.fixed.contains("address") {
            self.conf.master_address = i.addr;
            self.unknown.remove("address");
        }
        match netif::default_dhcp_range(&i) {
            Some((lo, hi)) => {
                if !self.fixed.contains("dhcp-start") {
                    self.conf.dhcp_start = lo;
                    self.unknown.remove("dhcp-start");
                }
                if !self.fixed.contains("dhcp-end") {
                    self.conf.dhcp_end = hi;
                    self.unknown.remove("dhcp-end");
                }
            }
            // A /31 or /32 has no room for a range: whatever was offered
            // before belongs to another network.
            None => {
                for k in ["dhcp-start", "dhcp-end"] {
                    if !self.fixed.contains(k) {
                        self.unknown.insert(k);
                    }
                }
            }
        }
    }

    /// The current value (the default offered) for a question; empty when
    /// there is none to offer.
    pub fn current(&self, key: &str) -> String {
        if self.unknown.contains(key) {
            return String::new();
        }
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

    /// Records an answer; an empty answer keeps the current value, and is
    /// an error when there is none.
    pub fn answer(&mut self, key: &str, value: &str) -> Result<()> {
        let value = value.trim();
        if value.is_empty() {
            if self.unknown.contains(key) {
                return Err(Error::Config(format!(
                    "{key}: there is no default to keep ({})",
                    self.why_unknown()
                )));
            }
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
        self.fix(q.key);
        Ok(())
    }

    /// Marks a key as given (by an answer or a file): later device changes
    /// leave it alone, and it has a value now.
    fn fix(&mut self, key: &'static str) {
        self.fixed.insert(key);
        self.unknown.remove(key);
    }

    /// Why the device gives no address: for messages.
    fn why_unknown(&self) -> String {
        let dev = &self.conf.master_device;
        match &self.devices {
            Some(d) if !d.contains(dev) => {
                format!("network device '{dev}' does not exist on this machine")
            }
            _ => format!("network device '{dev}' has no non-loopback IPv4 address on this machine"),
        }
    }

    /// The network the master address is on, as `(network, prefix)`, when
    /// this machine says so: an address of the master device whose subnet
    /// holds the master address. `None` when it is not known here.
    fn known_network(&self) -> Option<(Ipv4Addr, u8)> {
        let m = self.conf.master_address;
        self.ifs
            .iter()
            .filter(|i| i.name == self.conf.master_device)
            .find(|i| same_network(i.addr, m, i.prefix))
            .map(|i| (network(m, i.prefix), i.prefix))
    }

    /// Checks the whole configuration for consistency. Errors for what
    /// cannot work; warnings (returned) for what this machine cannot
    /// confirm.
    ///
    /// The DHCP range must lie in the master address's network: dnsmasq
    /// serves a range only on the network of an address of the device it
    /// listens on. When the device holds the master address here, its
    /// netmask decides and a range outside is refused, like a backwards
    /// range; otherwise the netmask is not known, the address's classful
    /// network (10/8, 172.16/16, 192.168.1/24, ...) is assumed, and a range
    /// outside it is only a warning.
    pub fn check(&self) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        if !self.unknown.is_empty() {
            let flags: Vec<String> = FOLLOWS_DEVICE
                .iter()
                .filter(|k| self.unknown.contains(*k))
                .map(|k| format!("--{k}"))
                .collect();
            return Err(Error::Config(format!(
                "{}, so the master address and DHCP range cannot be taken from it: give {}",
                self.why_unknown(),
                flags.join(", ")
            )));
        }
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
        let (start, end, master) = (
            self.conf.dhcp_start,
            self.conf.dhcp_end,
            self.conf.master_address,
        );
        let outside =
            |prefix: u8| !same_network(start, master, prefix) || !same_network(end, master, prefix);
        let dev = &self.conf.master_device;
        match self.known_network() {
            Some((net, prefix)) if outside(prefix) => {
                return Err(Error::Config(format!(
                    "the DHCP range {start} - {end} is not in the master's network {net}/{prefix} \
                     (device {dev}); dnsmasq would not serve it"
                )));
            }
            Some(_) => {}
            None => {
                let on_device: Vec<String> = self
                    .ifs
                    .iter()
                    .filter(|i| &i.name == dev)
                    .map(|i| format!("{}/{}", i.addr, i.prefix))
                    .collect();
                if !on_device.is_empty() {
                    warnings.push(format!(
                        "the master address {master} is not on device {dev} ({}); nodes will not reach it unless it is added",
                        on_device.join(", ")
                    ));
                }
                if let Some(prefix) = classful_prefix(master)
                    && outside(prefix)
                {
                    warnings.push(format!(
                        "the DHCP range {start} - {end} is not in the network of the master address {master} \
                         (assumed {}/{prefix}: its netmask is not known on this machine); \
                         dnsmasq serves a range only on the network of the device's own address",
                        network(master, prefix)
                    ));
                }
            }
        }
        Ok(warnings)
    }

    /// Writes `vnfs.conf` and `defaults.conf` into `dir`. Existing files are
    /// kept unless `force`. Returns the files written; [`Init::check`] gives
    /// the warnings to show first.
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

/// The network address of `a` under `prefix`.
fn network(a: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a) & u32::from(crate::ipaddr::prefix_to_mask(prefix)))
}

/// Whether `a` and `b` are on one network of length `prefix`.
fn same_network(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    network(a, prefix) == network(b, prefix)
}

/// The classful network length of an address (A /8, B /16, C /24); `None`
/// for multicast and reserved addresses, which have none.
fn classful_prefix(a: Ipv4Addr) -> Option<u8> {
    match a.octets()[0] {
        0..=127 => Some(8),
        128..=191 => Some(16),
        192..=223 => Some(24),
        _ => None,
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
    fn a_missing_device_borrows_no_address() {
        let mut i = Init::new(ifs());
        i.answer("device", "bogus0").unwrap();
        assert_eq!(i.current("device"), "bogus0");
        assert!(
            i.warnings[0].contains("'bogus0' does not exist on this machine (devices: eth0, eth1)"),
            "{:?}",
            i.warnings
        );
        // eth1's 10.0.0.1 and its range are not offered for bogus0.
        for k in ["address", "dhcp-start", "dhcp-end"] {
            assert_eq!(i.current(k), "", "{k}");
        }
        let e = i.check().unwrap_err().to_string();
        assert!(
            e.contains("'bogus0' does not exist")
                && e.contains("--address, --dhcp-start, --dhcp-end"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        assert!(i.write(dir.path(), false).is_err());
        assert!(!dir.path().join(config::VNFS_CONF).exists());
        // An empty answer cannot keep a value that is not there.
        assert!(i.answer("address", "").is_err());
        // Given explicitly, the configuration is written (a master prepared
        // elsewhere), for exactly what was given.
        i.answer("address", "192.168.7.1").unwrap();
        assert!(
            i.check()
                .unwrap_err()
                .to_string()
                .contains("give --dhcp-start, --dhcp-end")
        );
        i.answer("dhcp-start", "192.168.7.100").unwrap();
        i.answer("dhcp-end", "192.168.7.200").unwrap();
        assert_eq!(i.check().unwrap(), Vec::<String>::new());
        i.write(dir.path(), false).unwrap();
        assert_eq!(i.conf.master_address, Ipv4Addr::new(192, 168, 7, 1));

        // A device that exists without an IPv4 address (loopback, an
        // unconfigured port) is no typo: no warning, but no address either.
        let mut i = Init::with_devices(ifs(), Some(vec!["lo".into(), "eth2".into()]));
        i.answer("device", "eth2").unwrap();
        assert!(i.warnings.is_empty(), "{:?}", i.warnings);
        assert!(
            i.check()
                .unwrap_err()
                .to_string()
                .contains("'eth2' has no non-loopback IPv4")
        );
        // Devices that cannot be listed: nobody can say it does not exist.
        let mut i = Init::with_devices(ifs(), None);
        i.answer("device", "bogus0").unwrap();
        assert!(i.warnings.is_empty());
        assert_eq!(i.current("address"), "");
        // Choosing a real device afterwards brings its values back.
        i.answer("device", "eth0").unwrap();
        assert_eq!(i.current("address"), "203.0.113.5");
        assert!(i.check().is_ok());
    }

    #[test]
    fn a_perceus_device_missing_here_keeps_its_own_values_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("perceus.conf");
        std::fs::write(
            &p,
            "master network device = eth9\nvnfs transfer master = 172.16.0.1\ndhcp range end = 172.16.9.200\n",
        )
        .unwrap();
        let mut i = Init::new(ifs());
        i.read_perceus_conf(&p).unwrap();
        assert_eq!(i.current("device"), "eth9");
        assert_eq!(i.current("address"), "172.16.0.1");
        assert_eq!(i.current("dhcp-end"), "172.16.9.200");
        // Not eth1's range start: there is none for eth9.
        assert_eq!(i.current("dhcp-start"), "");
        assert!(
            i.warnings
                .iter()
                .any(|w| w.contains("'eth9' does not exist"))
        );
        let e = i.check().unwrap_err().to_string();
        assert!(e.ends_with("give --dhcp-start"), "{e}");
        i.answer("dhcp-start", "172.16.9.100").unwrap();
        assert_eq!(i.check().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn the_dhcp_range_must_be_on_the_masters_network() {
        // eth1 holds 10.0.0.1/16: its netmask is known, and a range outside
        // the network is refused like a backwards one.
        let mut i = Init::new(ifs());
        i.answer("dhcp-start", "10.1.0.10").unwrap();
        i.answer("dhcp-end", "10.1.0.50").unwrap();
        let e = i.check().unwrap_err().to_string();
        assert!(e.contains("not in the master's network 10.0.0.0/16"), "{e}");
        i.answer("dhcp-end", "10.0.255.1").unwrap();
        assert!(i.check().is_err(), "half outside is outside");
        i.answer("dhcp-start", "10.0.200.1").unwrap();
        assert_eq!(i.check().unwrap(), Vec::<String>::new());
        // An address the device does not hold: the netmask is unknown, the
        // classful network is assumed and the mismatch is a warning.
        let mut i = Init::new(ifs());
        i.answer("address", "192.168.1.1").unwrap();
        i.answer("dhcp-start", "10.0.0.10").unwrap();
        i.answer("dhcp-end", "10.0.0.50").unwrap();
        let w = i.check().unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("192.168.1.1 is not on device eth1 (10.0.0.1/16)"),
            "{w:?}"
        );
        assert!(
            w[1].contains("10.0.0.10 - 10.0.0.50 is not in the network of the master address 192.168.1.1 (assumed 192.168.1.0/24"),
            "{w:?}"
        );
        i.answer("dhcp-start", "192.168.1.10").unwrap();
        i.answer("dhcp-end", "192.168.1.50").unwrap();
        assert_eq!(
            i.check().unwrap().len(),
            1,
            "only the address warning is left"
        );
    }

    #[test]
    fn range_may_not_hold_the_master() {
        let mut i = Init::new(ifs());
        i.answer("dhcp-start", "10.0.0.0").unwrap();
        assert!(i.check().is_err());
    }
}
