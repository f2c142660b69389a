//! Network boot endpoints: the per-node iPXE script, and the kernel and
//! initrd streamed out of the node's image (newest `/boot/vmlinuz-*`,
//! else the `/vmlinuz` link at the root, else the configured path).

use std::path::Path;

use crate::common;
use crate::fixture::*;
use vnfs_node::client::{Master, Retry};
use vnfs_node::imageconf::ImageConfig;
use vnfs_node::proto::CheckinRequest;

/// Real boot images shipped by Debian's `ipxe` package (scripts/setup.sh
/// installs it): `ipxe.lkrn` is a Linux-format kernel image.
const KERNEL: &str = "/boot/ipxe.lkrn";
const INITRD: &str = "/boot/ipxe.efi";

fn read_boot_file(p: &str) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| {
        panic!("{p}: {e}: this test needs Debian's ipxe package (scripts/setup.sh installs it)")
    })
}

/// GET; returns status, headers' content-length and body.
fn get(url: &str) -> (u16, Option<u64>, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent.get(url).call().unwrap();
    let len = r
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    (r.status().as_u16(), len, body)
}

fn text(url: &str) -> (u16, String) {
    let (s, _, b) = get(url);
    (s, String::from_utf8(b).unwrap())
}

fn image_with_kernels(dir: &Path) {
    let boot = dir.join("boot");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/hostname"), "image\n").unwrap();
    // Natural order: 6.1.0-10 is newer than 6.1.0-9.
    std::fs::write(boot.join("vmlinuz-6.1.0-9-amd64"), b"old kernel\n").unwrap();
    std::fs::write(boot.join("initrd.img-6.1.0-9-amd64"), b"old initrd\n").unwrap();
    std::fs::write(boot.join("vmlinuz-6.1.0-10-amd64"), read_boot_file(KERNEL)).unwrap();
    std::fs::write(
        boot.join("initrd.img-6.1.0-10-amd64"),
        read_boot_file(INITRD),
    )
    .unwrap();
}

#[test]
fn boot_script_kernel_and_initrd_come_from_the_nodes_image() {
    common::require_root();
    let kernel = read_boot_file(KERNEL);
    let initrd = read_boot_file(INITRD);
    let m = Site::new();
    let src = m.path("src-boot");
    image_with_kernels(&src);
    let config = ImageConfig {
        kernel_args: "console=ttyS0 quiet".into(),
        ..ImageConfig::default()
    };
    let v1 = m.commit_with("img", &src, &config);
    m.set_default_vnfs("img");
    let daemon = m.start_daemon();
    let mac = "52:54:00:b0:00:01";
    let dash = mac.replace(':', "-");
    let master = Master::new(&daemon.url, Retry::default());
    let host = master
        .checkin(&CheckinRequest {
            mac: mac.into(),
            state: "init".into(),
            ..CheckinRequest::default()
        })
        .unwrap()
        .hostname;

    // The script names the master as vnfs.conf does (the address nodes
    // reach), the node, its image commit and the image's kernel arguments.
    // iPXE's ${mac:hexhyp} form of the MAC is accepted too.
    let base = "http://127.0.0.1:9873";
    for id in [mac.to_string(), dash.clone()] {
        let (status, script) = text(&format!("{}/boot/{id}", daemon.url));
        assert_eq!(status, 200);
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[0], "#!ipxe", "{script}");
        assert_eq!(
            lines[1],
            format!("echo vnfs: booting {host} ({})", v1.short()),
            "{script}"
        );
        assert_eq!(
            lines[2],
            format!(
                "kernel {base}/boot/{id}/kernel initrd=initrd console=ttyS0 quiet vnfs.master={base} vnfs.mac={id}"
            ),
            "{script}"
        );
        assert_eq!(
            lines[3],
            format!("initrd --name initrd {base}/boot/{id}/initrd"),
            "{script}"
        );
        assert_eq!(lines[4], "boot", "{script}");
    }

    // Kernel and initrd: the newest in /boot, byte for byte, with a length.
    let (status, len, body) = get(&format!("{}/boot/{dash}/kernel", daemon.url));
    assert_eq!(status, 200);
    assert_eq!(len, Some(kernel.len() as u64));
    assert!(body == kernel, "kernel differs from {KERNEL}");
    let (status, len, body) = get(&format!("{}/boot/{mac}/initrd", daemon.url));
    assert_eq!(status, 200);
    assert_eq!(len, Some(initrd.len() as u64));
    assert!(body == initrd, "initrd differs from {INITRD}");
    let (status, _) = text(&format!("{}/boot/{mac}/System.map", daemon.url));
    assert_eq!(status, 404);

    // A new version with Debian's links at the root: they win over the
    // newest file in /boot, and are followed inside the image.
    std::os::unix::fs::symlink("boot/vmlinuz-6.1.0-9-amd64", src.join("vmlinuz")).unwrap();
    std::os::unix::fs::symlink("/boot/initrd.img-6.1.0-9-amd64", src.join("initrd.img")).unwrap();
    m.commit_with("img", &src, &config);
    let (_, _, body) = get(&format!("{}/boot/{mac}/kernel", daemon.url));
    assert_eq!(body, b"old kernel\n");
    let (_, _, body) = get(&format!("{}/boot/{mac}/initrd", daemon.url));
    assert_eq!(body, b"old initrd\n");

    // The image's configured paths win over both.
    let configured = ImageConfig {
        kernel: Some("/boot/vmlinuz-6.1.0-10-amd64".into()),
        initrd: Some("/boot/initrd.img-6.1.0-10-amd64".into()),
        ..config.clone()
    };
    m.commit_with("img", &src, &configured);
    let (_, _, body) = get(&format!("{}/boot/{mac}/kernel", daemon.url));
    assert!(body == kernel, "configured kernel not served");

    // An unknown node gets a script that says so and chains back; its
    // kernel is refused. A disabled node is told it is disabled.
    let stranger = "52:54:00:b0:00:99";
    let (status, script) = text(&format!("{}/boot/{stranger}", daemon.url));
    assert_eq!(status, 200);
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    assert!(script.contains("is unknown"), "{script}");
    assert!(
        script.contains(&format!("chain {base}/boot/{stranger}")),
        "{script}"
    );
    let (status, why) = text(&format!("{}/boot/{stranger}/kernel", daemon.url));
    assert_eq!(status, 404);
    assert!(why.contains("unknown"), "{why}");
    m.vnfs(&["node", "set", "enabled", "0", &host]);
    let (_, script) = text(&format!("{}/boot/{mac}", daemon.url));
    assert!(
        script.contains(&format!("node {host} is disabled")),
        "{script}"
    );
    let (status, _) = text(&format!("{}/boot/{mac}/initrd", daemon.url));
    assert_eq!(status, 404);
    let (status, _) = text(&format!("{}/boot/not-a-mac", daemon.url));
    assert_eq!(status, 200, "the script explains instead of failing");
}
