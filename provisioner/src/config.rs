//! `vnfs.conf` and `defaults.conf`: Perceus-style `key = value` files with
//! `#` comments, read case-insensitively. The same reader takes Perceus's own
//! `perceus.conf` and `defaults.conf`, mapping their keys onto ours.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil;

/// File name of the master configuration inside the configuration directory.
pub const VNFS_CONF: &str = "vnfs.conf";
/// File name of the new-node defaults inside the configuration directory.
pub const DEFAULTS_CONF: &str = "defaults.conf";

/// Transfer methods the daemon implements.
pub const TRANSFER_METHODS: &[&str] = &["http"];

/// The master configuration (`vnfs.conf`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VnfsConf {
    /// Network device on the master that faces the nodes (`eth1`).
    pub master_device: String,
    /// Address the nodes use to reach the master (Perceus: vnfs transfer master).
    pub master_address: Ipv4Addr,
    /// How nodes fetch their image.
    pub transfer_method: String,
    /// Seconds after which a silent node shows as "timed out".
    pub node_timeout: u64,
    /// Address the provisioning daemon listens on.
    pub daemon_address: String,
    /// Port the provisioning daemon listens on.
    pub daemon_port: u16,
    /// Node database file; relative paths are relative to the vnfs home.
    pub database: PathBuf,
    /// First address of the DHCP range handed to unknown nodes.
    pub dhcp_start: Ipv4Addr,
    /// Last address of the DHCP range.
    pub dhcp_end: Ipv4Addr,
    /// DNS domain (and search path) for the nodes.
    pub domain: String,
    /// What `vnfs import` does with a capsule that carries no signature
    /// (`--unsigned` and `VNFS_UNSIGNED` override it).
    pub unsigned_capsules: UnsignedCapsules,
}

/// Policy for unsigned capsules (`unsigned capsules = accept|warn|reject`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnsignedCapsules {
    /// Import silently.
    Accept,
    /// Import with a warning (the default).
    #[default]
    Warn,
    /// Refuse.
    Reject,
}

impl UnsignedCapsules {
    /// The configuration word.
    pub fn as_str(self) -> &'static str {
        match self {
            UnsignedCapsules::Accept => "accept",
            UnsignedCapsules::Warn => "warn",
            UnsignedCapsules::Reject => "reject",
        }
    }
}

impl Default for VnfsConf {
    fn default() -> Self {
        VnfsConf {
            master_device: "eth1".into(),
            master_address: Ipv4Addr::new(10, 0, 0, 1),
            transfer_method: "http".into(),
            node_timeout: 600,
            daemon_address: "0.0.0.0".into(),
            daemon_port: 9873,
            database: PathBuf::from("nodes.db"),
            dhcp_start: Ipv4Addr::new(10, 0, 128, 0),
            dhcp_end: Ipv4Addr::new(10, 0, 255, 254),
            domain: "cluster".into(),
            unsigned_capsules: UnsignedCapsules::default(),
        }
    }
}

/// The defaults applied to new nodes (`defaults.conf`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Defaults {
    /// Name template, `#` marking digits (`n####`).
    pub node_name: String,
    /// Group of new nodes.
    pub group: String,
    /// VNFS image of new nodes (empty: none).
    pub vnfs: String,
    /// Whether new nodes may be provisioned at once.
    pub enabled: bool,
    /// Number of the first node.
    pub first_node: u64,
    /// How many numbers to try when naming a node; sets the padding too.
    pub total_nodes: u64,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            node_name: "n####".into(),
            group: "cluster".into(),
            vnfs: String::new(),
            enabled: true,
            first_node: 0,
            total_nodes: 10000,
        }
    }
}

/// A `key = value` line.
#[derive(Clone, Debug)]
struct Entry {
    key: String,
    value: String,
    line: usize,
}

/// Splits a configuration file into entries. Keys are lower-cased and their
/// inner whitespace collapsed, so `Node  Name` and `node name` are one key.
fn parse_entries(path: &Path, text: &str) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(Error::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
                reason: format!("expected 'key = value', found '{line}'"),
            });
        };
        let key = k
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        if key.is_empty() {
            return Err(Error::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
                reason: "empty key".into(),
            });
        }
        out.push(Entry {
            key,
            value: v.trim().to_string(),
            line: i + 1,
        });
    }
    Ok(out)
}

fn bad(path: &Path, e: &Entry, reason: impl Into<String>) -> Error {
    Error::Syntax {
        path: path.to_path_buf(),
        line: e.line,
        reason: format!("{}: {}", e.key, reason.into()),
    }
}

fn parse_bool(path: &Path, e: &Entry) -> Result<bool> {
    match e.value.to_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(bad(path, e, format!("'{}' is not 0/1/yes/no", e.value))),
    }
}

fn parse_num<T: std::str::FromStr>(path: &Path, e: &Entry) -> Result<T> {
    e.value
        .parse()
        .map_err(|_| bad(path, e, format!("'{}' is not a number", e.value)))
}

fn parse_ip(path: &Path, e: &Entry) -> Result<Ipv4Addr> {
    e.value
        .parse()
        .map_err(|_| bad(path, e, format!("'{}' is not an IPv4 address", e.value)))
}

/// Reads a `vnfs.conf` or a Perceus `perceus.conf`. Unknown keys and values
/// that only Perceus knew come back as warnings, not errors, so an old
/// configuration can be carried over.
pub fn read_vnfs_conf(path: &Path) -> Result<(VnfsConf, Vec<String>)> {
    let text = fsutil::read_text(path)?;
    parse_vnfs_conf(path, &text)
}

/// [`read_vnfs_conf`] on text already read.
pub fn parse_vnfs_conf(path: &Path, text: &str) -> Result<(VnfsConf, Vec<String>)> {
    let mut c = VnfsConf::default();
    let mut warnings = Vec::new();
    for e in parse_entries(path, text)? {
        // Perceus leaves values empty to mean "not set": keep our default.
        if e.value.is_empty() {
            continue;
        }
        match e.key.as_str() {
            "master network device" => c.master_device = e.value.clone(),
            "master address" | "vnfs transfer master" => c.master_address = parse_ip(path, &e)?,
            "transfer method" | "vnfs transfer method" => {
                let m = e.value.to_lowercase();
                if TRANSFER_METHODS.contains(&m.as_str()) {
                    c.transfer_method = m;
                } else if e.key.starts_with("vnfs ") {
                    warnings.push(format!(
                        "{}:{}: transfer method '{}' is not supported; using http",
                        path.display(),
                        e.line,
                        e.value
                    ));
                } else {
                    return Err(bad(
                        path,
                        &e,
                        format!(
                            "'{}' is not one of {}",
                            e.value,
                            TRANSFER_METHODS.join(", ")
                        ),
                    ));
                }
            }
            "node timeout" => c.node_timeout = parse_num(path, &e)?,
            "daemon address" => c.daemon_address = e.value.clone(),
            "daemon port" => c.daemon_port = parse_num(path, &e)?,
            "database" => c.database = PathBuf::from(&e.value),
            "dhcp range start" => c.dhcp_start = parse_ip(path, &e)?,
            "dhcp range end" => c.dhcp_end = parse_ip(path, &e)?,
            "domain" => c.domain = e.value.clone(),
            "unsigned capsules" => {
                c.unsigned_capsules = match e.value.to_lowercase().as_str() {
                    "accept" => UnsignedCapsules::Accept,
                    "warn" => UnsignedCapsules::Warn,
                    "reject" => UnsignedCapsules::Reject,
                    _ => {
                        return Err(bad(
                            path,
                            &e,
                            format!("'{}' is not one of accept, warn, reject", e.value),
                        ));
                    }
                }
            }
            other => warnings.push(format!(
                "{}:{}: ignoring unknown key '{other}'",
                path.display(),
                e.line
            )),
        }
    }
    if u32::from(c.dhcp_start) > u32::from(c.dhcp_end) {
        return Err(Error::Syntax {
            path: path.to_path_buf(),
            line: 0,
            reason: format!(
                "dhcp range start {} is after dhcp range end {}",
                c.dhcp_start, c.dhcp_end
            ),
        });
    }
    Ok((c, warnings))
}

/// Reads a `defaults.conf` (ours and Perceus's have the same keys).
pub fn read_defaults(path: &Path) -> Result<(Defaults, Vec<String>)> {
    let text = fsutil::read_text(path)?;
    parse_defaults(path, &text)
}

/// [`read_defaults`] on text already read.
pub fn parse_defaults(path: &Path, text: &str) -> Result<(Defaults, Vec<String>)> {
    let mut d = Defaults::default();
    let mut warnings = Vec::new();
    for e in parse_entries(path, text)? {
        match e.key.as_str() {
            "node name" => {
                if e.value.is_empty() {
                    return Err(bad(path, &e, "must not be empty"));
                }
                crate::naming::validate_template(&e.value).map_err(|r| bad(path, &e, r))?;
                d.node_name = e.value.clone();
            }
            "group name" => d.group = e.value.clone(),
            "vnfs name" => d.vnfs = e.value.clone(),
            "enabled" => d.enabled = !e.value.is_empty() && parse_bool(path, &e)?,
            "first node" if !e.value.is_empty() => d.first_node = parse_num(path, &e)?,
            "total nodes" if !e.value.is_empty() => {
                d.total_nodes = parse_num(path, &e)?;
                if d.total_nodes == 0 {
                    return Err(bad(path, &e, "must be at least 1"));
                }
            }
            "first node" | "total nodes" => {}
            other => warnings.push(format!(
                "{}:{}: ignoring unknown key '{other}'",
                path.display(),
                e.line
            )),
        }
    }
    Ok((d, warnings))
}

/// Renders `vnfs.conf` with a comment over every key.
pub fn render_vnfs_conf(c: &VnfsConf) -> String {
    format!(
        "# vnfs master configuration, written by `vnfs init`.\n\
         # Changing it on a cluster in production can strand nodes: re-run\n\
         # `vnfs configure dhcp` after editing.\n\
         \n\
         # Network device on the master that is connected privately to the nodes.\n\
         master network device = {}\n\
         \n\
         # Address the nodes use to reach the master (Perceus: vnfs transfer master).\n\
         master address = {}\n\
         \n\
         # How nodes fetch their image. Supported: {}.\n\
         transfer method = {}\n\
         \n\
         # Seconds without a check-in after which `vnfs node status` says \"timed out\".\n\
         node timeout = {}\n\
         \n\
         # Where the provisioning daemon listens.\n\
         daemon address = {}\n\
         daemon port = {}\n\
         \n\
         # Node database (relative paths are inside the vnfs home).\n\
         database = {}\n\
         \n\
         # Addresses DHCP hands to nodes that have no static address.\n\
         dhcp range start = {}\n\
         dhcp range end = {}\n\
         \n\
         # DNS domain and search path of the nodes.\n\
         domain = {}\n\
         \n\
         # What `vnfs import` does with a capsule that carries no signature:\n\
         # accept, warn (import with a warning) or reject. --unsigned and\n\
         # VNFS_UNSIGNED override it; signed capsules always need a trusted key.\n\
         unsigned capsules = {}\n",
        c.master_device,
        c.master_address,
        TRANSFER_METHODS.join(", "),
        c.transfer_method,
        c.node_timeout,
        c.daemon_address,
        c.daemon_port,
        c.database.display(),
        c.dhcp_start,
        c.dhcp_end,
        c.domain,
        c.unsigned_capsules.as_str()
    )
}

/// Renders `defaults.conf` with Perceus's comments.
pub fn render_defaults(d: &Defaults) -> String {
    format!(
        "# Template for new nodes, read whenever a node is added.\n\
         \n\
         # Node name: each '#' is one digit of the node number, in the order the\n\
         # nodes are added. When First Node + Total Nodes needs more digits than\n\
         # there are '#', the number is padded to fit.\n\
         Node Name = {}\n\
         \n\
         # Default group of new nodes (groups exist as soon as a node names them).\n\
         Group Name = {}\n\
         \n\
         # Default VNFS image of new nodes (empty: set it per node or group).\n\
         Vnfs Name = {}\n\
         \n\
         # Are new nodes enabled (provisioned) at once? 1 or 0.\n\
         Enabled = {}\n\
         \n\
         # The number of the first node.\n\
         First Node = {}\n\
         \n\
         # How many node numbers to try when naming a new node. It does not limit\n\
         # the size of the cluster; keep it big.\n\
         Total Nodes = {}\n",
        d.node_name,
        d.group,
        d.vnfs,
        u8::from(d.enabled),
        d.first_node,
        d.total_nodes
    )
}

/// Reads `DIR/vnfs.conf`; `None` when the file does not exist yet.
pub fn load_vnfs_conf(dir: &Path) -> Result<Option<(VnfsConf, Vec<String>)>> {
    let p = dir.join(VNFS_CONF);
    if !p.exists() {
        return Ok(None);
    }
    read_vnfs_conf(&p).map(Some)
}

/// Reads `DIR/defaults.conf`, or the built-in defaults when it is absent.
pub fn load_defaults(dir: &Path) -> Result<(Defaults, Vec<String>)> {
    let p = dir.join(DEFAULTS_CONF);
    if !p.exists() {
        return Ok((Defaults::default(), Vec::new()));
    }
    read_defaults(&p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The perceus.conf and defaults.conf printed in the magazine test drive.
    const MAGAZINE_PERCEUS_CONF: &str = "# This is the configuration file for Perceus

# Define the IP Address of the network file server
vnfs transfer master =

# What protocol should be used to retrieve the VNFS information. Generally
# Supported options in this version of Perceus are: 'nfs' and 'http' but
# this maybe overridden by particular VNFS capsules.
vnfs transfer method = nfs

# Define the VNFS transfer location if it is different from the default
# ('statedir'). This gets used differently for different transfer methods
# (e.g. NFS this replaces the path to statedir, while with http it is gets
# prepended to the \"/perceus\" path).
vnfs transfer prefix =

# How long should we wait before considering a node as dead. Note, that if
# you are not running node client daemons, then after provisioning the node
# will never check in, and will no doubt expire.
node timeout =
";
    const MAGAZINE_DEFAULTS: &str =
        "# This is the template name for all new nodes as they are configured.

# Define the node name range. The '#' characters symbolize the node number
# in the order of initialized. If you don't allocate enough number spaces
# here for what you defined in 'Total Nodes' then it will be automatically
# padded.
Node Name = n####

# What is the default group for new nodes (this doesn't have to exist
# anywhere before hand)
Group Name = cluster

# Define the default VNFS image that should be assigned to new nodes
Vnfs Name =

# Are new nodes automatically enabled and provisioned?
Enabled = 1

# What is the first node number that we should count at?
First Node = 1

# This is the total node count that Perceus would ever try and allocate a
# node to. It is safe to make this big, so you should leave it big.
Total Nodes = 10000
";

    #[test]
    fn reads_the_magazine_perceus_files() {
        let (c, warn) = parse_vnfs_conf(Path::new("perceus.conf"), MAGAZINE_PERCEUS_CONF).unwrap();
        assert_eq!(c.transfer_method, "http");
        assert_eq!(c.node_timeout, VnfsConf::default().node_timeout);
        assert_eq!(warn.len(), 1, "{warn:?}");
        assert!(
            warn[0].contains("perceus.conf:9") && warn[0].contains("nfs"),
            "{warn:?}"
        );
        let (d, warn) = parse_defaults(Path::new("defaults.conf"), MAGAZINE_DEFAULTS).unwrap();
        assert!(warn.is_empty());
        assert_eq!(
            d,
            Defaults {
                node_name: "n####".into(),
                group: "cluster".into(),
                vnfs: String::new(),
                enabled: true,
                first_node: 1,
                total_nodes: 10000
            }
        );
    }

    #[test]
    fn unsigned_capsules_policy() {
        let read = |v: &str| {
            parse_vnfs_conf(
                Path::new("vnfs.conf"),
                &format!("Unsigned Capsules = {v}\n"),
            )
        };
        assert_eq!(
            read("REJECT").unwrap().0.unsigned_capsules,
            UnsignedCapsules::Reject
        );
        assert_eq!(
            read("accept").unwrap().0.unsigned_capsules,
            UnsignedCapsules::Accept
        );
        assert_eq!(
            read("").unwrap().0.unsigned_capsules,
            UnsignedCapsules::Warn
        );
        let e = read("maybe").unwrap_err().to_string();
        assert!(e.contains("vnfs.conf:1:") && e.contains("maybe"), "{e}");
    }

    #[test]
    fn filled_perceus_conf_maps_keys() {
        let text = "master network device = eth1\nvnfs transfer master = 10.0.0.1\nnode timeout = 300\ndatabase type = btree\n";
        let (c, warn) = parse_vnfs_conf(Path::new("p.conf"), text).unwrap();
        assert_eq!(c.master_device, "eth1");
        assert_eq!(c.master_address, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(c.node_timeout, 300);
        assert!(warn[0].contains("database type"));
    }

    #[test]
    fn render_then_read_round_trips() {
        let c = VnfsConf {
            master_device: "enp3s0".into(),
            node_timeout: 42,
            unsigned_capsules: UnsignedCapsules::Reject,
            ..VnfsConf::default()
        };
        let (back, warn) = parse_vnfs_conf(Path::new("v"), &render_vnfs_conf(&c)).unwrap();
        assert_eq!(back, c);
        assert!(warn.is_empty());
        let d = Defaults {
            node_name: "node##".into(),
            enabled: false,
            vnfs: "debian".into(),
            ..Defaults::default()
        };
        let (back, warn) = parse_defaults(Path::new("d"), &render_defaults(&d)).unwrap();
        assert_eq!(back, d);
        assert!(warn.is_empty());
    }

    #[test]
    fn errors_name_file_and_line() {
        let e =
            parse_vnfs_conf(Path::new("/x/vnfs.conf"), "# c\nnode timeout = soon\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/x/vnfs.conf:2: node timeout: 'soon' is not a number"
        );
        let e = parse_defaults(Path::new("d.conf"), "Node Name n##\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("d.conf:1: expected 'key = value'"),
            "{e}"
        );
        let e = parse_defaults(Path::new("d.conf"), "Node Name = n#a#\n").unwrap_err();
        assert!(e.to_string().contains("d.conf:1"), "{e}");
        let e = parse_vnfs_conf(Path::new("v"), "transfer method = nfs\n").unwrap_err();
        assert!(e.to_string().contains("not one of http"), "{e}");
    }
}
