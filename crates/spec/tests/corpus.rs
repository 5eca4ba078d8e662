//! Compatibility tests on LinuxKit's own files (a verbatim copy under `tests/fixtures/`,
//! Apache-2.0, see its README): every package spec and image YAML LinuxKit ships must parse,
//! and the ones LinuxKit's test suite marks invalid must be refused at the right line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use oxkit_spec::image_yaml::{ImageRef, ImageYaml};
use oxkit_spec::{PackageSpec, SpecErrorKind};

/// The corpus: the copy in the repository first, then the shared one this machine has.
fn corpus() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("tests/fixtures/linuxkit-corpus"),
        manifest.join("../../../shared/linuxkit-corpus"),
        PathBuf::from("/work/shared/linuxkit-corpus"),
    ];
    candidates
        .into_iter()
        .find(|p| p.join("README.md").is_file())
        .expect("LinuxKit corpus not found (tests/fixtures/linuxkit-corpus)")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `*.yml` under `dir`, sorted.
fn yml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn rel(path: &Path) -> String {
    path.strip_prefix(corpus())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Package specs in `test-cases`: `build.yml` and the alternative spec `build-file.yml`.
fn is_package_spec(path: &Path) -> bool {
    matches!(
        path.file_name().and_then(|n| n.to_str()),
        Some("build.yml" | "build-file.yml")
    )
}

/// `080_mirrors/config.yml` configures a registry server, not LinuxKit.
fn is_foreign(path: &Path) -> bool {
    path.ends_with("080_mirrors/config.yml")
}

fn parse_pkg(name: &str) -> PackageSpec {
    let path = corpus().join("pkg").join(format!("{name}.build.yml"));
    PackageSpec::parse(&read(&path), &rel(&path)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn all_linuxkit_package_specs_parse() {
    let files: Vec<PathBuf> = yml_files(&corpus().join("pkg"));
    assert_eq!(files.len(), 42, "the corpus has LinuxKit's 42 packages");
    for path in &files {
        let spec = PackageSpec::parse(&read(path), &rel(path)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!spec.image.is_empty(), "{}", path.display());
        assert!(!spec.arches.is_empty(), "{}", path.display());
    }
}

#[test]
fn package_spec_values_match_the_files() {
    let binfmt = parse_pkg("binfmt");
    assert_eq!(binfmt.image, "binfmt");
    assert_eq!(binfmt.org, "linuxkit");
    assert!(binfmt.network);
    assert_eq!(binfmt.arches, ["amd64"]);
    let config = binfmt.config.as_ref().unwrap();
    assert_eq!(
        config.capabilities.as_deref(),
        Some(&["CAP_SYS_ADMIN".to_string()][..])
    );
    assert_eq!(config.readonly, Some(true));
    assert_eq!(config.net.as_deref(), Some("new"));
    assert_eq!(config.ipc.as_deref(), Some("new"));
    assert_eq!(
        binfmt.config_label_json().unwrap(),
        r#"{"capabilities":["CAP_SYS_ADMIN"],"net":"new","ipc":"new","readonly":true}"#
    );

    // A package without `arches` gets LinuxKit's three defaults and no config label.
    let init = parse_pkg("init");
    assert_eq!(init.arches, ["amd64", "arm64", "riscv64"]);
    assert_eq!(init.tag, "{{.Hash}}");

    let sysctl = parse_pkg("sysctl");
    let c = sysctl.config.as_ref().unwrap();
    assert_eq!(c.pid.as_deref(), Some("host"));
    assert_eq!(c.readonly, Some(true));

    // An unquoted `mode: 0666` stays the octal text, as yaml.v3 reads it into a string.
    let getty = parse_pkg("getty");
    let c = getty.config.as_ref().unwrap();
    assert_eq!(c.binds.as_ref().map(Vec::len), Some(11));
    assert_eq!(c.capabilities.as_deref(), Some(&["all".to_string()][..]));
    let devices = c.devices.as_ref().unwrap();
    assert_eq!(devices.len(), 5);
    assert_eq!(devices[3].path, "/dev/ttyAMA0");
    assert_eq!((devices[3].major, devices[3].minor), (204, 64));
    assert_eq!(devices[3].mode, "0666");
    assert!(
        getty
            .config_label_json()
            .unwrap()
            .contains(r#"{"path":"/dev/console","type":"c","major":5,"minor":1,"mode":"0666"}"#)
    );

    // Every package with a `config:` key yields a label; the others do not.
    for path in yml_files(&corpus().join("pkg")) {
        let text = read(&path);
        let spec = PackageSpec::parse(&text, &rel(&path)).unwrap();
        let has_config = text.lines().any(|l| l.starts_with("config:"));
        assert_eq!(
            spec.config_label_json().is_some(),
            has_config,
            "{}",
            path.display()
        );
    }
}

#[test]
fn test_case_package_specs_parse_except_the_invalid_one() {
    let files: Vec<PathBuf> = yml_files(&corpus().join("test-cases"))
        .into_iter()
        .filter(|p| is_package_spec(p))
        .collect();
    assert!(files.len() >= 20, "found {}", files.len());
    let invalid = corpus().join("test-cases/000_build/090_validate_build_yaml/build.yml");
    for path in &files {
        let result = PackageSpec::parse(&read(path), &rel(path));
        if *path == invalid {
            let e = result.expect_err("090_validate_build_yaml must be refused");
            assert_eq!(e.kind, SpecErrorKind::UnknownField);
            assert_eq!(e.line(), Some(7), "{e}");
            assert!(
                e.to_string().starts_with(&format!(
                    "{}:7:1: unknown field \"unknownField\"; expected one of image, org,",
                    rel(path)
                )),
                "{e}"
            );
        } else {
            result.unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn test_case_special_build_args_are_classified() {
    let path = corpus()
        .join("test-cases/000_build/056_build_args/010_build_arg_special_multiple_yaml/build.yml");
    let spec = PackageSpec::parse(&read(&path), &rel(&path)).unwrap();
    assert_eq!(
        spec.parsed_build_args(),
        [oxkit_spec::build_yml::BuildArg::Pkgs {
            key: "HASH_%".into(),
            glob: "/tmp/foo/*".into()
        }]
    );
}

fn parse_image(path: &Path) -> Result<ImageYaml, oxkit_spec::SpecError> {
    ImageYaml::parse(&read(path), &rel(path))
}

/// The image YAMLs among the test cases.
fn test_case_images() -> Vec<PathBuf> {
    yml_files(&corpus().join("test-cases"))
        .into_iter()
        .filter(|p| !is_package_spec(p) && !is_foreign(p))
        .collect()
}

#[test]
fn all_examples_parse_and_validate() {
    let files = yml_files(&corpus().join("examples"));
    assert_eq!(files.len(), 33, "the corpus has LinuxKit's 33 examples");
    // static-ip.yml is not well-formed YAML: a comment at column 1 inside a block scalar
    // ends it, and the next, indented line is no key. Go's yaml.v3 (LinuxKit's parser)
    // refuses it too ("line 24: did not find expected key").
    let broken = corpus().join("examples/static-ip.yml");
    for path in &files {
        if *path == broken {
            let e = parse_image(path).expect_err("static-ip.yml is not valid YAML");
            assert_eq!(e.kind, SpecErrorKind::Syntax);
            assert!(
                e.to_string()
                    .starts_with("examples/static-ip.yml:28:7: invalid YAML"),
                "{e}"
            );
            continue;
        }
        let y = parse_image(path).unwrap_or_else(|e| panic!("{e}"));
        y.validate().unwrap_or_else(|e| panic!("{e}"));
        assert!(y.images().count() > 0, "{}", path.display());
    }
}

#[test]
fn test_case_images_parse_and_validate_except_the_invalid_ones() {
    let files = test_case_images();
    assert!(files.len() >= 100, "found {}", files.len());
    // LinuxKit's test scripts expect `linuxkit build` to fail on these two.
    let unknown = corpus().join("test-cases/000_build/091_validate_linuxkit_yaml/linuxkit.yml");
    let rw_on_ro = corpus().join("test-cases/000_build/070_volumes/002_rw_on_ro/test.yml");
    for path in &files {
        let result = parse_image(path).and_then(|y| y.validate());
        if *path == unknown {
            let e = result.expect_err("091_validate_linuxkit_yaml must be refused");
            assert_eq!(e.kind, SpecErrorKind::UnknownField);
            assert!(
                e.to_string().starts_with(&format!(
                    "{}:1:1: unknown field \"unknownField\"; expected one of kernel, init,",
                    rel(path)
                )),
                "{e}"
            );
        } else if *path == rw_on_ro {
            let e = result.expect_err("070_volumes/002_rw_on_ro must be refused");
            assert_eq!(e.kind, SpecErrorKind::Invalid);
            assert_eq!(e.line(), Some(8), "{e}");
            assert!(
                e.message.contains("read-only volume \"vola\" read-write"),
                "{e}"
            );
        } else {
            result.unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn example_values_match_the_files() {
    let path = corpus().join("examples/minimal.yml");
    let y = parse_image(&path).unwrap();
    let kernel = y.kernel.image.as_ref().unwrap();
    assert_eq!(kernel.text, "linuxkit/kernel:6.12.59");
    assert_eq!(kernel.loc.to_string(), "examples/minimal.yml:2:10");
    assert_eq!(
        y.kernel.cmdline,
        "console=tty0 console=ttyS0 console=ttyAMA0"
    );
    let init: Vec<String> = y
        .init
        .iter()
        .map(|i| match i.image_ref().unwrap() {
            ImageRef::Reference(r) => r.repository().to_string(),
            ImageRef::Pkg(p) => p,
        })
        .collect();
    assert_eq!(
        init,
        ["linuxkit/init", "linuxkit/runc", "linuxkit/containerd"]
    );
    let dhcpcd = &y.onboot[0];
    assert_eq!(dhcpcd.name, "dhcpcd");
    assert_eq!(dhcpcd.loc.to_string(), "examples/minimal.yml:9:5");
    assert_eq!(
        dhcpcd.config.command.as_deref().map(|c| c.join(" ")),
        Some("/sbin/dhcpcd --nobackground -f /dhcpcd.conf -1".to_string())
    );
    let getty = &y.services[0];
    assert_eq!(getty.name, "getty");
    assert_eq!(getty.loc.line, 13);
    assert_eq!(
        getty.config.env.as_deref(),
        Some(&["INSECURE=true".to_string()][..])
    );
    assert_eq!(getty.config.capabilities, None);

    // LinuxKit allows repeated onboot names (each runs in its own numbered directory).
    let path = corpus().join("examples/dm-crypt-loop.yml");
    let y = parse_image(&path).unwrap();
    let mounts = y.onboot.iter().filter(|e| e.name == "mount").count();
    assert_eq!(mounts, 2);
}

#[test]
fn namespace_tests_merge_common_with_each_case() {
    let dir = corpus().join("test-cases/020_kernel/200_namespace");
    let common = parse_image(&dir.join("common.yml")).unwrap();
    let cases: Vec<PathBuf> = yml_files(&dir)
        .into_iter()
        .filter(|p| p.ends_with("test.yml"))
        .collect();
    assert!(cases.len() >= 20);
    for case in &cases {
        let one = parse_image(case).unwrap();
        let merged = ImageYaml::merge(vec![common.clone(), one.clone()]);
        merged.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(merged.kernel, common.kernel);
        assert_eq!(merged.init.len(), common.init.len() + one.init.len());
        assert_eq!(merged.onboot.len(), common.onboot.len() + one.onboot.len());
        let last = merged.onboot.last().unwrap();
        assert_eq!(&*last.loc.file, rel(case));
    }
}

#[test]
fn every_image_yaml_renders_and_parses_back_the_same() {
    let mut files = yml_files(&corpus().join("examples"));
    files.extend(test_case_images());
    for path in &files {
        let Ok(y) = parse_image(path) else { continue };
        let text = y.to_yaml_string();
        let again = ImageYaml::parse(&text, "rendered.yml")
            .unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()));
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&y).unwrap(),
            "{}",
            path.display()
        );
        for (a, b) in again.services.iter().zip(&y.services) {
            assert_eq!(a.config, b.config, "{}", path.display());
        }
        assert_eq!(again.to_yaml_string(), text, "{}", path.display());
    }
}

/// `tests/fixtures/linuxkit-config-labels.tsv` holds, for each package spec of the corpus,
/// the `org.mobyproject.config` label LinuxKit writes: the file decoded with yaml.v3 into
/// LinuxKit's `pkgInfo`/`moby.ImageConfig` types and `json.Marshal`ed (`-` when the spec
/// has no `config`). Captured with Go 1.19, yaml.v3 3.0.1 and runtime-spec 1.2.1.
#[test]
fn config_labels_are_byte_identical_to_linuxkit() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = read(&manifest.join("tests/fixtures/linuxkit-config-labels.tsv"));
    let mut with_config = 0;
    for line in table.lines() {
        let (file, want) = line.split_once('\t').unwrap();
        let path = corpus().join(file);
        let spec = PackageSpec::parse(&read(&path), file).unwrap_or_else(|e| panic!("{e}"));
        match (want, spec.config_label_json()) {
            ("-", None) => {}
            (want, Some(got)) => {
                assert_eq!(got, want, "{file}");
                with_config += 1;
            }
            (want, None) => panic!("{file}: LinuxKit writes {want}, oxkit no label"),
        }
    }
    assert_eq!(table.lines().count(), 68);
    assert_eq!(with_config, 30);
}

/// Truncated and corrupted versions of real files never panic, and every error they give
/// is one line that names the file.
#[test]
fn damaged_files_give_errors_not_panics() {
    let cases = [
        (corpus().join("pkg/getty.build.yml"), true),
        (corpus().join("examples/minimal.yml"), false),
        (corpus().join("examples/volumes.yml"), false),
    ];
    for (path, is_pkg) in cases {
        let text = read(&path);
        // A sample of cut points and corruptions keeps this fast in debug builds.
        let mut variants: Vec<String> = text
            .char_indices()
            .step_by(3)
            .map(|(i, _)| text[..i].to_string())
            .collect();
        for (n, (i, c)) in text.char_indices().enumerate().filter(|(n, _)| n % 7 == 0) {
            let bad = [":", "[", "\"", "- ", "\t", "{"][n % 6];
            if c != '\n' {
                variants.push(format!("{}{bad}{}", &text[..i], &text[i + c.len_utf8()..]));
            }
        }
        for v in &variants {
            let err = if is_pkg {
                PackageSpec::parse(v, "damaged.yml").err()
            } else {
                ImageYaml::parse(v, "damaged.yml")
                    .and_then(|y| y.validate())
                    .err()
            };
            if let Some(e) = err {
                let s = e.to_string();
                assert!(s.starts_with("damaged.yml"), "{s}");
                assert!(!s.contains('\n'), "{s}");
            }
        }
    }
}
