use std::collections::BTreeMap;

use super::*;

/// The `.modinfo` sections of Debian 12's linux-image-6.1.0-50-cloud-amd64 modules, extracted
/// with `objcopy -O binary --only-section=.modinfo`.
fn real(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/modinfo")
        .join(format!("{name}.modinfo"));
    std::fs::read(&path).expect("modinfo fixture")
}

/// A minimal relocatable ELF with a `.modinfo` section holding `modinfo` (and a decoy section
/// before it), 64-bit little-endian or 32-bit big-endian.
fn elf(modinfo: &[u8], is64: bool) -> Vec<u8> {
    let put = |buf: &mut Vec<u8>, at: usize, v: u64, size: usize| {
        for i in 0..size {
            let byte = if is64 {
                (v >> (8 * i)) as u8
            } else {
                (v >> (8 * (size - 1 - i))) as u8
            };
            buf[at + i] = byte;
        }
    };
    let (ehsize, shentsize) = if is64 { (64, 64) } else { (52, 40) };
    let shstrtab = b"\0.text\0.modinfo\0.shstrtab\0";
    let text = b"\x90\x90\x90\x90";
    let text_off = ehsize;
    let info_off = text_off + text.len();
    let str_off = info_off + modinfo.len();
    let sh_off = str_off + shstrtab.len();
    let mut buf = vec![0u8; sh_off + 4 * shentsize];
    buf[..4].copy_from_slice(b"\x7fELF");
    buf[4] = if is64 { 2 } else { 1 };
    buf[5] = if is64 { 1 } else { 2 };
    buf[6] = 1;
    buf[text_off..info_off].copy_from_slice(text);
    buf[info_off..str_off].copy_from_slice(modinfo);
    buf[str_off..sh_off].copy_from_slice(shstrtab);
    if is64 {
        put(&mut buf, 0x28, sh_off as u64, 8);
        put(&mut buf, 0x3A, shentsize as u64, 2);
        put(&mut buf, 0x3C, 4, 2);
        put(&mut buf, 0x3E, 3, 2);
    } else {
        put(&mut buf, 0x20, sh_off as u64, 4);
        put(&mut buf, 0x2E, shentsize as u64, 2);
        put(&mut buf, 0x30, 4, 2);
        put(&mut buf, 0x32, 3, 2);
    }
    // Sections: null, .text, .modinfo, .shstrtab (name offsets 1, 7, 16).
    let sections = [
        (0u64, 0usize, 0usize),
        (1, text_off, text.len()),
        (7, info_off, modinfo.len()),
        (16, str_off, shstrtab.len()),
    ];
    for (i, (name, off, size)) in sections.iter().enumerate() {
        let h = sh_off + i * shentsize;
        put(&mut buf, h, *name, 4);
        if is64 {
            put(&mut buf, h + 0x18, *off as u64, 8);
            put(&mut buf, h + 0x20, *size as u64, 8);
        } else {
            put(&mut buf, h + 0x10, *off as u64, 4);
            put(&mut buf, h + 0x14, *size as u64, 4);
        }
    }
    buf
}

fn value<'a>(info: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    info.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn modinfo_of_real_debian_modules() {
    let info = modinfo(&elf(&real("virtio_net"), true)).expect("virtio_net");
    assert_eq!(value(&info, "name"), ["virtio_net"]);
    assert_eq!(value(&info, "depends"), ["virtio_ring,virtio,net_failover"]);
    assert_eq!(value(&info, "alias"), ["virtio:d00000001v*"]);
    let (hard, soft) = dependencies(&info);
    assert_eq!(hard, ["virtio_ring", "virtio", "net_failover"]);
    assert!(soft.is_empty());

    let overlay = modinfo(&elf(&real("overlay"), true)).expect("overlay");
    assert_eq!(value(&overlay, "alias"), ["fs-overlay"]);
    assert_eq!(dependencies(&overlay), (vec![], vec![]));
}

#[test]
fn modinfo_of_32_bit_big_endian_and_broken_files() {
    let info = modinfo(&elf(
        b"depends=a,b-c\0softdep=pre: crc32c post: x\0name=m\0",
        false,
    ))
    .expect("elf32be");
    assert_eq!(
        dependencies(&info),
        (
            vec!["a".to_string(), "b_c".to_string()],
            vec!["crc32c".to_string()]
        )
    );
    assert!(
        modinfo(b"not an elf")
            .expect_err("not elf")
            .contains("not an ELF")
    );
    let mut truncated = elf(&real("virtio"), true);
    truncated.truncate(100);
    assert!(modinfo(&truncated).is_err());
}

#[test]
fn modinfo_from_a_file_reads_only_what_it_needs() {
    let t = tempfile::tempdir().expect("tempdir");
    let p = t.path().join("virtio_pci.ko");
    std::fs::write(&p, elf(&real("virtio_pci"), true)).expect("write");
    let info = modinfo_of_file(&p).expect("file");
    assert_eq!(
        value(&info, "depends"),
        ["virtio_ring,virtio_pci_modern_dev,virtio_pci_legacy_dev,virtio"]
    );
    assert!(
        modinfo_of_file(&t.path().join("nope.ko"))
            .expect_err("missing")
            .contains("nope.ko")
    );
}

fn real_deps() -> BTreeMap<String, Vec<String>> {
    [
        "virtio_net",
        "virtio_pci",
        "net_failover",
        "failover",
        "virtio",
        "virtio_ring",
        "overlay",
        "virtio_pci_modern_dev",
        "virtio_pci_legacy_dev",
    ]
    .iter()
    .map(|n| {
        let info = modinfo(&elf(&real(n), true)).expect("modinfo");
        (n.to_string(), dependencies(&info).0)
    })
    .collect()
}

#[test]
fn dependencies_come_first() {
    let deps = real_deps();
    let lookup = |n: &str| {
        deps.get(n)
            .cloned()
            .ok_or_else(|| format!("module {n} not found"))
    };
    assert_eq!(
        load_order("virtio_net", lookup).expect("order"),
        [
            "virtio_ring",
            "virtio",
            "failover",
            "net_failover",
            "virtio_net"
        ]
    );
    assert_eq!(
        load_order("virtio-pci", lookup).expect("order"),
        [
            "virtio_ring",
            "virtio_pci_modern_dev",
            "virtio_pci_legacy_dev",
            "virtio",
            "virtio_pci"
        ]
    );
    assert_eq!(load_order("overlay", lookup).expect("order"), ["overlay"]);
    assert!(
        load_order("nope", lookup)
            .expect_err("unknown")
            .contains("nope")
    );
}

#[test]
fn cycles_are_reported() {
    let lookup = |n: &str| {
        Ok(match n {
            "a" => vec!["b".to_string()],
            "b" => vec!["c".to_string()],
            _ => vec!["a".to_string()],
        })
    };
    let err = load_order("a", lookup).expect_err("cycle");
    assert_eq!(err, "dependency cycle: a -> b -> c -> a");
}

#[test]
fn alias_patterns_match_like_fnmatch() {
    let pci = b"pci:v00001AF4d*sv*sd*bc*sc*i*";
    assert!(glob_match(
        pci,
        b"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
    ));
    assert!(!glob_match(
        pci,
        b"pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00"
    ));
    assert!(glob_match(
        b"virtio:d00000001v*",
        b"virtio:d00000001v00001AF4"
    ));
    assert!(!glob_match(
        b"virtio:d00000001v*",
        b"virtio:d00000002v00001AF4"
    ));
    assert!(glob_match(b"fs-overlay", b"fs-overlay"));
    assert!(!glob_match(b"fs-overlay", b"fs-overlayfs"));
    assert!(glob_match(b"acpi*:PNP0[Aa]0[0-3]:*", b"acpi:PNP0a03:"));
    assert!(!glob_match(b"acpi*:PNP0[Aa]0[0-3]:*", b"acpi:PNP0A05:"));
    assert!(glob_match(b"x[!0-9]y", b"xay"));
    assert!(!glob_match(b"x[!0-9]y", b"x5y"));
    assert!(glob_match(b"a?c*", b"abc"));
    assert!(glob_match(b"*", b""));
    assert!(!glob_match(b"?", b""));
}

#[test]
fn loader_indexes_a_module_tree() {
    let t = tempfile::tempdir().expect("tempdir");
    let k = t.path().join("kernel");
    for (dir, name) in [
        ("fs/overlayfs", "overlay"),
        ("drivers/net", "virtio_net"),
        ("drivers/net", "net_failover"),
        ("net/core", "failover"),
    ] {
        std::fs::create_dir_all(k.join(dir)).expect("mkdir");
        std::fs::write(
            k.join(dir).join(format!("{name}.ko")),
            elf(&real(name), true),
        )
        .expect("write");
    }
    std::fs::write(k.join("drivers/net/vport-gre.ko.xz"), b"compressed").expect("write");
    std::fs::write(
        t.path().join("modules.builtin"),
        "kernel/fs/ext4/ext4.ko\nkernel/drivers/virtio/virtio_ring.ko\n",
    )
    .expect("write");
    let log = Log::new(Box::new(std::io::sink()), false);
    let mut loader = Loader::new(t.path(), log).expect("loader");
    assert_eq!(loader.len(), 5);
    assert!(loader.builtin.contains("virtio_ring") && loader.builtin.contains("ext4"));
    assert_eq!(loader.by_alias("fs-overlay").as_deref(), Some("overlay"));
    assert_eq!(
        loader.by_alias("virtio:d00000001v00001AF4").as_deref(),
        Some("virtio_net")
    );
    assert_eq!(loader.by_alias("fs-nothing"), None);
    // The compressed module is indexed under its name but contributes no dependencies.
    assert!(loader.by_name.contains_key("vport_gre"));
    assert_eq!(loader.deps("vport_gre"), Ok(vec![]));
    assert_eq!(
        loader.deps("virtio_net"),
        Ok(vec![
            "virtio_ring".to_string(),
            "virtio".to_string(),
            "net_failover".to_string()
        ])
    );
    assert!(
        loader
            .deps("nope")
            .expect_err("missing")
            .contains("module nope not found")
    );
}

#[test]
fn module_names_from_files() {
    assert_eq!(
        module_name_of("virtio_net.ko").as_deref(),
        Some("virtio_net")
    );
    assert_eq!(
        module_name_of("kvm-intel.ko.zst").as_deref(),
        Some("kvm_intel")
    );
    assert_eq!(module_name_of("x.ko.xz").as_deref(), Some("x"));
    assert_eq!(module_name_of("modules.dep"), None);
    assert_eq!(module_name_of(".ko"), None);
}
