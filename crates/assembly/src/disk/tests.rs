//! The disk writer against the tools that read disks: `sgdisk` and `sfdisk` for the GPT,
//! `fsck.vfat` for the FAT, `mtools` for the files, and `fatfs` itself for the timestamps.

use std::path::{Path, PathBuf};
use std::process::Command;

use fatfs::TimeProvider;
use oxkit_testkit::{Rng, require_tool_from as tool, run_ok};

use super::*;

const SEED: &[u8] = b"sha256:0123456789abcdef";

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// Writes an image of `files` with `seed` into `dir`; returns its path and the size returned.
fn write_image(dir: &Path, name: &str, files: &[EspFile<'_>], seed: &[u8]) -> (PathBuf, u64) {
    let path = dir.join(name);
    let mut out = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    let size = write_esp_disk(&mut out, files, seed).unwrap();
    (path, size)
}

/// `IMG@@1M`: mtools' syntax for the file system 1 MiB into the image.
fn mtools_image(img: &Path) -> String {
    format!("{}@@1M", img.display())
}

fn layout_of(size: u64) -> Layout {
    Layout {
        esp_sectors: size / SECTOR - ESP_START_LBA - TAIL_BYTES / SECTOR,
        disk_sectors: size / SECTOR,
    }
}

/// `mdir` (mtools, `IMAGE` in its `-i` syntax) lists every one of `files`.
fn assert_mdir_lists(image: &str, files: &[EspFile<'_>]) {
    let listing =
        run_ok(Command::new(tool("mdir", "mtools")).args(["-/", "-b", "-i", image, "::"]));
    for f in files {
        assert!(
            listing.contains(&format!("::/{}", f.path)),
            "{} not in\n{listing}",
            f.path
        );
    }
}

fn assert_sgdisk_clean(img: &Path) {
    let out = run_ok(Command::new(tool("sgdisk", "gdisk")).arg("-v").arg(img));
    assert!(out.contains("No problems found"), "sgdisk -v:\n{out}");
}

fn assert_fsck_clean(img: &Path, esp_sectors: u64) {
    let part = img.with_extension("esp");
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", img.display()))
            .arg(format!("of={}", part.display()))
            .args([
                "bs=1M",
                "iflag=skip_bytes,count_bytes",
                "conv=sparse",
                "status=none",
            ])
            .arg(format!("skip={}", ESP_START_LBA * SECTOR))
            .arg(format!("count={}", esp_sectors * SECTOR)),
    );
    // Exit status 0 is "no recoverable errors"; notes (an uninitialised free count, a dirty
    // bit) do not change it, so nothing but the version and the summary may be printed.
    let out = run_ok(
        Command::new(tool("fsck.vfat", "dosfstools"))
            .arg("-n")
            .arg(&part),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.len() == 2 && lines[0].starts_with("fsck.fat ") && lines[1].contains(" files, "),
        "fsck.vfat -n:\n{out}"
    );
    std::fs::remove_file(part).unwrap();
}

#[test]
fn sgdisk_and_sfdisk_read_one_esp_with_the_derived_guids() {
    let dir = tempfile::tempdir().unwrap();
    let uki = random_bytes(1, 3 * 1024 * 1024 + 17);
    let files = [EspFile {
        path: "EFI/BOOT/BOOTX64.EFI",
        data: &uki,
    }];
    let (img, size) = write_image(dir.path(), "disk.img", &files, SEED);
    assert_eq!(size, std::fs::metadata(&img).unwrap().len());
    assert_eq!(size % MIB, 0);
    let layout = layout_of(size);

    assert_sgdisk_clean(&img);
    let json = run_ok(
        Command::new(tool("sfdisk", "fdisk"))
            .arg("--json")
            .arg(&img),
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let table = &v["partitiontable"];
    assert_eq!(table["label"], "gpt", "{json}");
    assert_eq!(table["id"], disk_guid(SEED).to_string(), "{json}");
    assert_eq!(table["sectorsize"], 512, "{json}");
    assert_eq!(table["firstlba"], 34, "{json}");
    assert_eq!(table["lastlba"], layout.disk_sectors - 34, "{json}");
    let parts = table["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{json}");
    let p = &parts[0];
    assert_eq!(p["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "{json}");
    assert_eq!(p["uuid"], partition_guid(SEED).to_string(), "{json}");
    assert_eq!(p["start"], 2048, "{json}");
    assert_eq!(p["size"], layout.esp_sectors, "{json}");
    assert_eq!(p["name"], "EFI System", "{json}");
    // Room for the backup GPT after the partition, as the layout promises.
    assert_eq!(size, MIB + layout.esp_sectors * SECTOR + MIB);
}

#[test]
fn fsck_is_clean_and_mtools_reads_the_files_back() {
    let dir = tempfile::tempdir().unwrap();
    let uki = random_bytes(2, 5 * 1024 * 1024 + 3);
    let conf = b"timeout 0\n".to_vec();
    let nested = random_bytes(3, 70_000);
    let files = [
        EspFile {
            path: "EFI/BOOT/BOOTX64.EFI",
            data: &uki,
        },
        EspFile {
            path: "loader/loader.conf",
            data: &conf,
        },
        EspFile {
            path: "EFI/Linux/deeply/nested/dir/linuxkit-Long Name.efi",
            data: &nested,
        },
        EspFile {
            path: "EFI/empty",
            data: &[],
        },
        EspFile {
            path: "startup.nsh",
            data: b"\\EFI\\BOOT\\BOOTX64.EFI\r\n",
        },
    ];
    let (img, size) = write_image(dir.path(), "disk.img", &files, SEED);
    assert_fsck_clean(&img, layout_of(size).esp_sectors);

    let mtools_img = mtools_image(&img);
    for f in &files {
        let got = dir.path().join("got");
        run_ok(
            Command::new(tool("mcopy", "mtools"))
                .args(["-n", "-i", &mtools_img])
                .arg(format!("::/{}", f.path))
                .arg(&got),
        );
        assert!(std::fs::read(&got).unwrap() == f.data, "{} differs", f.path);
        std::fs::remove_file(got).unwrap();
    }
    assert_mdir_lists(&mtools_img, &files);
}

#[test]
fn the_fat_is_fat32_with_the_seeded_id_and_fixed_times() {
    let dir = tempfile::tempdir().unwrap();
    let files = [EspFile {
        path: "EFI/BOOT/BOOTX64.EFI",
        data: b"MZ not really",
    }];
    let (img, size) = write_image(dir.path(), "disk.img", &files, SEED);
    let layout = layout_of(size);
    let file = File::open(&img).unwrap();
    let mut boot = [0u8; 512];
    file.read_exact_at(&mut boot, ESP_START_LBA * SECTOR)
        .unwrap();
    assert_eq!(&boot[82..90], b"FAT32   ");
    assert_eq!(&boot[71..82], b"ESP        ");

    // fatfs mounts only writable streams; nothing below writes.
    let rw = File::options().read(true).write(true).open(&img).unwrap();
    let region = Region {
        file: &rw,
        start: ESP_START_LBA * SECTOR,
        len: layout.esp_sectors * SECTOR,
        pos: 0,
        buffers: None,
    };
    let fs = fatfs::FileSystem::new(region, fatfs::FsOptions::new()).unwrap();
    assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
    assert_eq!(fs.volume_id(), volume_id(SEED));
    let epoch = FAT_EPOCH.get_current_date_time();
    let mut seen = 0;
    let mut dirs = vec![fs.root_dir()];
    while let Some(d) = dirs.pop() {
        for e in d.iter() {
            let e = e.unwrap();
            if e.file_name() == "." || e.file_name() == ".." {
                continue;
            }
            seen += 1;
            assert_eq!(e.created(), epoch, "{}", e.file_name());
            assert_eq!(e.modified(), epoch, "{}", e.file_name());
            assert_eq!(e.accessed(), epoch.date, "{}", e.file_name());
            if e.is_dir() {
                dirs.push(e.to_dir());
            }
        }
    }
    assert_eq!(seen, 3, "EFI, BOOT and BOOTX64.EFI");
}

#[test]
fn same_files_and_seed_give_the_same_bytes_whatever_the_order_or_old_contents() {
    let dir = tempfile::tempdir().unwrap();
    let a = random_bytes(4, 2 * 1024 * 1024);
    let b = random_bytes(5, 1000);
    let files = [
        EspFile {
            path: "EFI/BOOT/BOOTX64.EFI",
            data: &a,
        },
        EspFile {
            path: "EFI/oxkit/cmdline",
            data: &b,
        },
    ];
    let reversed = [
        EspFile {
            path: files[1].path,
            data: files[1].data,
        },
        EspFile {
            path: files[0].path,
            data: files[0].data,
        },
    ];
    let (one, _) = write_image(dir.path(), "one.img", &files, SEED);
    // A target holding other bytes (longer than the image) is truncated, not overlaid.
    std::fs::write(dir.path().join("two.img"), vec![0xa5; 40 * MIB as usize]).unwrap();
    let (two, _) = write_image(dir.path(), "two.img", &reversed, SEED);
    assert!(
        std::fs::read(&one).unwrap() == std::fs::read(&two).unwrap(),
        "images differ"
    );

    let (other, _) = write_image(dir.path(), "other.img", &files, b"another seed");
    let one = std::fs::read(&one).unwrap();
    let other = std::fs::read(&other).unwrap();
    let at = |img: &[u8], offset: u64, len: usize| img[offset as usize..][..len].to_vec();
    // The disk GUID in the header, the partition GUID in the first entry, the FAT volume id.
    for (offset, len) in [(SECTOR + 56, 16), (2 * SECTOR + 16, 16), (MIB + 67, 4)] {
        assert_ne!(
            at(&one, offset, len),
            at(&other, offset, len),
            "at {offset}"
        );
    }
    assert_eq!(
        at(&other, SECTOR + 56, 16),
        disk_guid(b"another seed").to_mixed_endian()
    );
    assert_eq!(
        at(&other, 2 * SECTOR + 16, 16),
        partition_guid(b"another seed").to_mixed_endian()
    );
    assert_eq!(
        at(&other, MIB + 67, 4),
        volume_id(b"another seed").to_le_bytes()
    );
}

#[test]
fn an_empty_file_list_gives_the_smallest_valid_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (img, size) = write_image(dir.path(), "empty.img", &[], SEED);
    assert_eq!(size, 35 * MIB);
    assert_sgdisk_clean(&img);
    assert_fsck_clean(&img, layout_of(size).esp_sectors);
    // (`mdir -b` fails on an empty directory: ask for the long listing.)
    let listing =
        run_ok(Command::new(tool("mdir", "mtools")).args(["-i", &mtools_image(&img), "::/"]));
    assert!(listing.contains("No files"), "{listing}");
    let id = volume_id(SEED);
    let serial = format!("Serial Number is {:04X}-{:04X}", id >> 16, id & 0xffff);
    assert!(listing.contains(&serial), "{serial} not in\n{listing}");
}

#[test]
fn the_image_is_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(6, MIB as usize);
    let files = [EspFile {
        path: "EFI/BOOT/BOOTX64.EFI",
        data: &data,
    }];
    let (img, size) = write_image(dir.path(), "disk.img", &files, SEED);
    let allocated = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&img).unwrap()) * 512;
    // The file, two FATs of ~530 KiB, and a few sectors of tables: far below the 35 MiB size.
    assert!(allocated < 4 * MIB, "{allocated} bytes allocated of {size}");
}

#[test]
fn bad_paths_are_rejected_not_normalised() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&[""], "empty"),
        (&["/EFI/BOOT/BOOTX64.EFI"], "leading /"),
        (&["EFI//BOOTX64.EFI"], "empty"),
        (&["EFI/BOOT/"], "empty"),
        (&["EFI/./x"], "`.`"),
        (&["EFI/../x"], "`..`"),
        (&[".."], "`..`"),
        (&["EFI/BOOT/x", "efi/boot/X"], "same path"),
        (&["EFI/BOOT", "EFI/BOOT/x"], "needs it to be a directory"),
        (&["EFI/BOOT/x", "efi/BOOT"], "needs it to be a directory"),
        (&["EFI/a*b"], "unsupported characters"),
        (&["EFI/a\\b"], "unsupported characters"),
    ];
    for (paths, why) in cases {
        let files: Vec<EspFile<'_>> = paths
            .iter()
            .map(|p| EspFile {
                path: p,
                data: b"x",
            })
            .collect();
        let mut out = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("bad.img"))
            .unwrap();
        let err = write_esp_disk(&mut out, &files, SEED).unwrap_err();
        assert!(err.contains(why), "{paths:?}: {err}");
        assert!(
            paths.iter().any(|p| err.contains(&format!("{p:?}"))),
            "{paths:?}: the error names no path: {err}"
        );
    }
}

#[test]
fn sizes_grow_with_the_contents_and_stop_at_what_fat32_addresses() {
    let empty = Layout::for_contents(0, 0).unwrap();
    assert_eq!(empty.esp_sectors * SECTOR, 33 * MIB);
    assert_eq!(empty.disk_bytes(), 35 * MIB);

    // A 60 MB kernel image: +10%, +8 MiB, +8 KiB, rounded up to a MiB.
    let uki = Layout::for_contents(60_000_000, 1).unwrap();
    let want = (60_000_000u64 + 6_000_000 + 8 * MIB + 8192).div_ceil(MIB) * MIB;
    assert_eq!(uki.esp_sectors * SECTOR, want);
    assert_eq!(uki.disk_bytes(), want + 2 * MIB);

    for (total, count) in [(1, 1), (33 * MIB, 3), (1 << 30, 10_000), (1 << 40, 1)] {
        let l = Layout::for_contents(total, count).unwrap();
        assert_eq!(l.disk_bytes() % MIB, 0, "{total}");
        assert!(l.esp_sectors * SECTOR >= total + total / 10, "{total}");
        assert!(l.esp_last_lba() < l.backup_entries_lba(), "{total}");
        assert_eq!(l.last_usable_lba(), l.disk_sectors - 34, "{total}");
        assert!(l.esp_sectors <= u64::from(u32::MAX), "{total}");
    }
    for (total, count) in [
        (19 << 40, 1),
        (u64::MAX, 1),
        (0, usize::MAX),
        (u64::MAX / 2, usize::MAX),
    ] {
        let err = Layout::for_contents(total, count).unwrap_err();
        assert!(err.contains("do not fit an EFI system partition"), "{err}");
    }
    // The largest ESP FAT32 takes here: just under 2 TiB.
    let max = Layout::for_contents(1_800 << 30, 1).unwrap();
    assert!(max.esp_sectors <= u64::from(u32::MAX));
    assert!(Layout::for_contents(1_900 << 30, 1).is_err());
}

#[test]
fn guids_are_stored_mixed_endian_and_shaped_like_version_4() {
    assert_eq!(
        ESP_TYPE.to_mixed_endian(),
        [
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
            0xc9, 0x3b
        ]
    );
    assert_eq!(ESP_TYPE.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    for seed in [&b""[..], b"a", SEED] {
        for g in [disk_guid(seed), partition_guid(seed)] {
            let s = g.to_string();
            assert_eq!(s.len(), 36);
            assert_eq!(&s[14..15], "4", "{s}");
            assert!(matches!(&s[19..20], "8" | "9" | "A" | "B"), "{s}");
        }
        assert_ne!(disk_guid(seed), partition_guid(seed));
    }
    assert_ne!(disk_guid(b"a"), disk_guid(b"b"));
    assert_eq!(disk_guid(SEED), disk_guid(SEED));
}

#[test]
fn directories_spanning_several_clusters_stay_clean() {
    // 512-byte clusters hold 16 entries; 60 long names need several clusters per directory.
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..60)
        .map(|i| format!("EFI/many/sub {}/file number {i}.conf", i % 3))
        .collect();
    let data: Vec<Vec<u8>> = (0..60)
        .map(|i| random_bytes(100 + i, 300 * i as usize))
        .collect();
    let files: Vec<EspFile<'_>> = names
        .iter()
        .zip(&data)
        .map(|(path, data)| EspFile { path, data })
        .collect();
    let (img, size) = write_image(dir.path(), "many.img", &files, SEED);
    assert_fsck_clean(&img, layout_of(size).esp_sectors);
    assert_mdir_lists(&mtools_image(&img), &files);
}

#[test]
fn larger_partitions_get_larger_clusters_and_stay_clean() {
    // Layouts sized for contents that are not there: the image stays sparse (~10 MiB written).
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(7, 3 * 1024 * 1024 + 5);
    let file = EspFile {
        path: "EFI/BOOT/BOOTX64.EFI",
        data: &data,
    };
    for (pretend, cluster) in [(300 * MIB, 4096), (8500 * MIB, 8192)] {
        let layout = Layout::for_contents(pretend, 1).unwrap();
        let img = dir.path().join(format!("{pretend}.img"));
        let out = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&img)
            .unwrap();
        write_disk(&out, &layout, &[&file], SEED).unwrap();
        let mut boot = [0u8; 512];
        out.read_exact_at(&mut boot, MIB).unwrap();
        assert_eq!(u32::from(boot[13]) * 512, cluster, "{pretend}");
        assert_sgdisk_clean(&img);
        if layout.esp_sectors * SECTOR < 1 << 30 {
            // Extracting 9 GiB of holes with dd takes seconds; mcopy below still reads it.
            assert_fsck_clean(&img, layout.esp_sectors);
        }
        let got = dir.path().join("got");
        run_ok(
            Command::new(tool("mcopy", "mtools"))
                .args([
                    "-n",
                    "-i",
                    &mtools_image(&img),
                    &format!("::/{}", file.path),
                ])
                .arg(&got),
        );
        assert!(std::fs::read(&got).unwrap() == data, "{pretend}: differs");
        std::fs::remove_file(img).unwrap();
    }
}
