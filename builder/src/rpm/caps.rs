//! File capabilities: RPM headers carry them as text (`cap_net_raw=ep`,
//! libcap's `cap_to_text` form); the kernel wants the binary
//! `security.capability` xattr (`struct vfs_cap_data`, revision 2).

/// Capability names in kernel bit order (linux/capability.h).
const NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;

/// Converts capability text to `security.capability` xattr bytes; `None`
/// when the text grants nothing (no xattr is written then).
pub fn to_xattr(text: &str) -> Result<Option<Vec<u8>>, String> {
    // Sets: permitted, inheritable, effective.
    let mut sets = [0u64; 3];
    let all: u64 = (1u64 << NAMES.len()) - 1;
    for clause in text.split_whitespace() {
        let at = clause
            .find(['=', '+', '-'])
            .ok_or_else(|| format!("capability clause {clause:?} has no =, + or -"))?;
        let (names, mut ops) = clause.split_at(at);
        let mut mask = 0u64;
        if names.is_empty() || names.eq_ignore_ascii_case("all") {
            mask = all;
        } else {
            for n in names.split(',') {
                let n = n.to_ascii_lowercase();
                let n = n.strip_prefix("cap_").unwrap_or(&n);
                let bit = NAMES
                    .iter()
                    .position(|k| *k == n)
                    .ok_or_else(|| format!("unknown capability {n:?} in {text:?}"))?;
                mask |= 1 << bit;
            }
        }
        while let Some(op) = ops.chars().next() {
            ops = &ops[1..];
            let flags_end = ops.find(['=', '+', '-']).unwrap_or(ops.len());
            let (flags, rest) = ops.split_at(flags_end);
            ops = rest;
            if op == '=' {
                for s in &mut sets {
                    *s &= !mask;
                }
            }
            for f in flags.chars() {
                let i = match f {
                    'p' => 0,
                    'i' => 1,
                    'e' => 2,
                    _ => return Err(format!("bad capability flag {f:?} in {text:?}")),
                };
                if op == '-' {
                    sets[i] &= !mask;
                } else {
                    sets[i] |= mask;
                }
            }
        }
    }
    let [permitted, inheritable, effective] = sets;
    if permitted == 0 && inheritable == 0 {
        return Ok(None);
    }
    let magic = VFS_CAP_REVISION_2
        | if effective != 0 {
            VFS_CAP_FLAGS_EFFECTIVE
        } else {
            0
        };
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&(permitted as u32).to_le_bytes());
    out.extend_from_slice(&(inheritable as u32).to_le_bytes());
    out.extend_from_slice(&((permitted >> 32) as u32).to_le_bytes());
    out.extend_from_slice(&((inheritable >> 32) as u32).to_le_bytes());
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        // `setcap cap_net_raw=ep` writes exactly these 20 bytes.
        let x = to_xattr("cap_net_raw=ep").unwrap().unwrap();
        assert_eq!(
            x,
            [
                1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ]
        );
        // Upper word (bpf = 39) and no effective bit.
        let x = to_xattr("cap_bpf,cap_chown+p").unwrap().unwrap();
        assert_eq!(&x[..4], &[0, 0, 0, 2]);
        assert_eq!(&x[4..8], &1u32.to_le_bytes());
        assert_eq!(&x[12..16], &(1u32 << 7).to_le_bytes());
        assert_eq!(to_xattr("").unwrap(), None);
        assert_eq!(to_xattr("=").unwrap(), None);
        assert_eq!(to_xattr("cap_chown=p cap_chown-p").unwrap(), None);
        assert!(to_xattr("cap_bogus=p").is_err());
        assert!(to_xattr("cap_chown").is_err());
    }
}
