//! The master's network interfaces and their IPv4 addresses, for the
//! defaults `vnfs init` offers.

use std::ffi::CStr;
use std::net::Ipv4Addr;

/// One IPv4 address on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Device name (`eth1`).
    pub name: String,
    /// Address.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

/// Lists the IPv4 addresses of every interface except loopback, sorted by
/// name then address.
pub fn ipv4_interfaces() -> Vec<Interface> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below; on failure
    // it returns -1 and we return an empty list.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned and has not
        // been freed; its pointers are valid or null.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points at a sockaddr.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if family != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET address is a sockaddr_in; ifa_name is a C string.
        let (addr, name) = unsafe {
            let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
            (
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned(),
            )
        };
        let prefix = if ifa.ifa_netmask.is_null() {
            32
        } else {
            // SAFETY: a non-null netmask of an AF_INET entry is a sockaddr_in.
            let m = unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in) };
            u32::from_be(m.sin_addr.s_addr).leading_ones() as u8
        };
        if addr.is_loopback() {
            continue;
        }
        out.push(Interface { name, addr, prefix });
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.addr.cmp(&b.addr)));
    out
}

/// The names of every network device on this machine, with or without an
/// address, loopback included, sorted; `None` when they cannot be listed
/// (then nobody can say a device does not exist).
pub fn device_names() -> Option<Vec<String>> {
    // SAFETY: if_nameindex has no preconditions; it returns null on failure
    // or an array we free below with if_freenameindex.
    let head = unsafe { libc::if_nameindex() };
    if head.is_null() {
        return None;
    }
    let mut out = Vec::new();
    let mut cur = head;
    loop {
        // SAFETY: `cur` stays within the array, which ends with an entry
        // whose index is 0 and name null; we stop there.
        let e = unsafe { &*cur };
        if e.if_index == 0 || e.if_name.is_null() {
            break;
        }
        // SAFETY: a non-null if_name of a live entry is a C string.
        out.push(
            unsafe { CStr::from_ptr(e.if_name) }
                .to_string_lossy()
                .into_owned(),
        );
        // SAFETY: this entry was not the terminator, so the next one exists.
        cur = unsafe { cur.add(1) };
    }
    // SAFETY: `head` came from a successful if_nameindex and is freed once.
    unsafe { libc::if_freenameindex(head) };
    out.sort();
    out.dedup();
    Some(out)
}

/// The interface most likely to face the nodes: the first one with a
/// private (RFC 1918) address, else the first one at all.
pub fn guess_cluster_interface(ifs: &[Interface]) -> Option<&Interface> {
    ifs.iter()
        .find(|i| i.addr.is_private())
        .or_else(|| ifs.first())
}

/// A DHCP range inside the interface's subnet that avoids the master's own
/// address: the upper half of the subnet, or the lower half when the master
/// sits in the upper one. `None` for subnets too small to split (/31, /32).
pub fn default_dhcp_range(i: &Interface) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if i.prefix > 30 {
        return None;
    }
    let size = 1u64 << (32 - u32::from(i.prefix));
    let mask = if i.prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(i.prefix))
    };
    let net = u64::from(u32::from(i.addr) & mask);
    let half = size / 2;
    let me = u64::from(u32::from(i.addr));
    let (lo, hi) = if me >= net + half {
        (net + 1, net + half - 1)
    } else {
        (net + half, net + size - 2)
    };
    let ip = |v: u64| Ipv4Addr::from(v as u32);
    Some((ip(lo), ip(hi)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_avoid_the_master() {
        let i = Interface {
            name: "eth1".into(),
            addr: Ipv4Addr::new(10, 0, 0, 1),
            prefix: 16,
        };
        assert_eq!(
            default_dhcp_range(&i),
            Some((Ipv4Addr::new(10, 0, 128, 0), Ipv4Addr::new(10, 0, 255, 254)))
        );
        let j = Interface {
            addr: Ipv4Addr::new(192, 168, 1, 200),
            prefix: 24,
            ..i
        };
        assert_eq!(
            default_dhcp_range(&j),
            Some((
                Ipv4Addr::new(192, 168, 1, 1),
                Ipv4Addr::new(192, 168, 1, 127)
            ))
        );
    }

    #[test]
    fn lists_something_sane() {
        let devices = device_names().expect("if_nameindex failed");
        for i in ipv4_interfaces() {
            assert!(!i.name.is_empty() && i.prefix <= 32 && !i.addr.is_loopback());
            assert!(devices.contains(&i.name), "{} not in {devices:?}", i.name);
        }
        assert!(!devices.iter().any(|d| d == "vnfs-no-such0"));
    }
}
