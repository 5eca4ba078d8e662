//! Parsing, `@pkg:` resolution and YAML rendering of image configurations.

use super::*;
use crate::yaml::SpecErrorKind;

const MINIMAL: &str = "\
kernel:
  image: linuxkit/kernel:6.12.59
  cmdline: \"console=tty0 console=ttyS0\"
init:
  - linuxkit/init:b5506cc7
  - \"@pkg:../pkg/runc\"
onboot:
  - name: dhcpcd
    image: linuxkit/dhcpcd:b87e9ece
    command: [\"/sbin/dhcpcd\", \"--nobackground\", \"-f\", \"/dhcpcd.conf\", \"-1\"]
services:
  - name: getty
    image: \"@pkg:../pkg/getty\"
    env:
     - INSECURE=true
    uid: 0
    sysctl:
      net.ipv4.ip_forward: 1
files:
  - path: etc/linuxkit-config
    metadata: yaml
  - path: etc/motd
    contents: |
      hello & <welcome>
      second line
    mode: \"0644\"
volumes:
  - name: cache
    readonly: false
trust:
  keys: {lk: keys/lk.pub}
  rules:
    - match: \"linuxkit/*\"
      keys: [lk]
";

fn parse(text: &str) -> ImageYaml {
    ImageYaml::parse(text, "minimal.yml").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn entries_keep_their_locations() {
    let y = parse(MINIMAL);
    let k = y.kernel.image.as_ref().unwrap();
    assert_eq!((k.loc.line, k.loc.column), (2, 10));
    assert_eq!(y.kernel.cmdline, "console=tty0 console=ttyS0");
    assert_eq!(y.init[1].text, "@pkg:../pkg/runc");
    assert_eq!((y.init[1].loc.line, y.init[1].loc.column), (6, 5));
    let getty = &y.services[0];
    assert_eq!(getty.loc.to_string(), "minimal.yml:12:5");
    assert_eq!(getty.image.loc.to_string(), "minimal.yml:13:12");
    assert_eq!(
        getty.config.env.as_deref(),
        Some(&["INSECURE=true".to_string()][..])
    );
    assert_eq!(getty.config.uid, Some(IdValue::Id(0)));
    assert_eq!(
        getty
            .config
            .sysctl
            .as_ref()
            .unwrap()
            .get("net.ipv4.ip_forward")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(y.onboot[0].config.command.as_ref().map(Vec::len), Some(5));
    assert_eq!(y.files[0].loc.line, 20);
    assert_eq!(
        y.files[1].contents.as_deref(),
        Some("hello & <welcome>\nsecond line\n")
    );
    assert_eq!(y.volumes[0].loc.line, 28);
    assert_eq!(y.trust.rules[0].loc.line, 33);
    y.validate().unwrap();
}

#[test]
fn image_values_parse_into_references_or_pkg() {
    let y = parse(MINIMAL);
    let refs: Vec<String> = y
        .images()
        .map(|i| i.image_ref().unwrap().to_string())
        .collect();
    assert_eq!(
        refs,
        [
            "docker.io/linuxkit/kernel:6.12.59",
            "docker.io/linuxkit/init:b5506cc7",
            "@pkg:../pkg/runc",
            "docker.io/linuxkit/dhcpcd:b87e9ece",
            "@pkg:../pkg/getty",
        ]
    );
    assert_eq!(
        y.init[1].image_ref().unwrap(),
        ImageRef::Pkg("../pkg/runc".into())
    );
}

#[test]
fn pkg_refs_are_resolved_by_the_callback() {
    let mut y = parse(MINIMAL);
    let mut asked = Vec::new();
    y.resolve_pkg_refs(|path| {
        asked.push(path.to_string());
        Ok::<_, std::io::Error>(format!(
            "linuxkit/{}:0123abc",
            path.rsplit('/').next().unwrap()
        ))
    })
    .unwrap();
    assert_eq!(asked, ["../pkg/runc", "../pkg/getty"]);
    assert_eq!(y.init[1].text, "linuxkit/runc:0123abc");
    assert_eq!(y.services[0].image.text, "linuxkit/getty:0123abc");
    // Locations stay: later errors still point at the YAML.
    assert_eq!(y.services[0].image.loc.line, 13);
    assert!(y.images().all(|i| i.pkg_path().is_none()));
    y.validate().unwrap();
}

#[test]
fn pkg_ref_errors_name_the_location() {
    let mut y = parse(MINIMAL);
    let e = y
        .resolve_pkg_refs_at(|path, loc| {
            assert_eq!(&*loc.file, "minimal.yml");
            Err(std::io::Error::other(format!("no build.yml in {path}")))
        })
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "minimal.yml:6:5: cannot resolve \"@pkg:../pkg/runc\": no build.yml in ../pkg/runc"
    );
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn structural_errors() {
    let e = ImageYaml::parse("unknownField: \"abc\"\nkernel: {}\n", "x.yml").unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::UnknownField);
    assert!(
        e.to_string().starts_with(
            "x.yml:1:1: unknown field \"unknownField\"; expected one of kernel, init,"
        ),
        "{e}"
    );
    let e = ImageYaml::parse(
        "services:\n  - name: a\n    image: b\n    capabilitys: []\n",
        "x.yml",
    )
    .unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::UnknownField);
    assert_eq!(e.line(), Some(4));
    assert!(
        e.message
            .contains("expected one of name, image, capabilities,"),
        "{e}"
    );
    let e = ImageYaml::parse("services:\n  - name: a\n", "x.yml").unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::MissingField);
    assert_eq!(e.line(), Some(2));
    let e = ImageYaml::parse("init: linuxkit/init:abc\n", "x.yml").unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::WrongType);
    assert_eq!(
        e.to_string(),
        "x.yml:1:7: init: expected a list, found the scalar linuxkit/init:abc"
    );
    let e = ImageYaml::parse("kernel:\n  image: a\n  image: b\n", "x.yml").unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::DuplicateKey);
    assert_eq!(e.line(), Some(3));
    let e =
        ImageYaml::parse("files:\n  - path: a\n    directory: \"true\"\n", "x.yml").unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::WrongType);
    assert_eq!(e.line(), Some(3));
    let e = ImageYaml::parse("- a\n", "x.yml").unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::WrongType);
}

#[test]
fn empty_document_is_an_empty_configuration() {
    assert_eq!(ImageYaml::parse("", "e.yml").unwrap(), ImageYaml::default());
    assert_eq!(
        ImageYaml::parse("# nothing\n", "e.yml").unwrap(),
        ImageYaml::default()
    );
    assert_eq!(ImageYaml::default().to_yaml_string().trim(), "{}");
}

/// The configuration without locations, for comparing a reparse with the original.
fn strip(y: &ImageYaml) -> serde_json::Value {
    serde_json::to_value(y).unwrap()
}

#[test]
fn yaml_rendering_round_trips_and_is_deterministic() {
    let y = parse(MINIMAL);
    let text = y.to_yaml_string();
    let again = ImageYaml::parse(&text, "rendered.yml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(strip(&again), strip(&y), "{text}");
    assert_eq!(again.services[0].config, y.services[0].config);
    assert_eq!(again.files, {
        let mut f = y.files.clone();
        for (a, b) in f.iter_mut().zip(&again.files) {
            a.loc = b.loc.clone();
        }
        f
    });
    assert_eq!(again.to_yaml_string(), text);
    // Sections in LinuxKit's order, keys in struct order, `@pkg:` kept quoted.
    let order: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with([' ', '-']))
        .collect();
    assert_eq!(
        order,
        [
            "kernel:",
            "init:",
            "onboot:",
            "services:",
            "files:",
            "volumes:",
            "trust:"
        ]
    );
    assert!(text.contains("  image: \"@pkg:../pkg/getty\"\n"), "{text}");
}
