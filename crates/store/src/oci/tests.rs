use std::collections::BTreeMap;

use oxkit_spec::{Digest, Platform};

use super::*;

fn d(s: &[u8]) -> Digest {
    Digest::sha256(s)
}

#[test]
fn manifest_serializes_to_golden_bytes() {
    let mut layer = Descriptor::new(media_type::OCI_LAYER_GZIP, d(b"layer"), 42);
    layer.annotations.insert("z".into(), "last".into());
    layer.annotations.insert("a".into(), "first".into());
    let m = ImageManifest::new(
        Descriptor::new(media_type::OCI_CONFIG, d(b"config"), 7),
        vec![layer],
    );
    let got = String::from_utf8(to_canonical_json(&m).unwrap()).unwrap();
    let want = format!(
        concat!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
            r#""config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":7}},"#,
            r#""layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":42,"#,
            r#""annotations":{{"a":"first","z":"last"}}}}]}}"#
        ),
        d(b"config"),
        d(b"layer")
    );
    assert_eq!(got, want);
}

#[test]
fn index_serializes_platform_and_ref_name() {
    let mut child = Descriptor::new(media_type::OCI_MANIFEST, d(b"m"), 3)
        .with_platform("linux/arm/v7".parse().unwrap());
    child
        .annotations
        .insert(ANNOTATION_REF_NAME.into(), "docker.io/x/y:1".into());
    let got = String::from_utf8(to_canonical_json(&ImageIndex::new(vec![child])).unwrap()).unwrap();
    let want = format!(
        concat!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":["#,
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":3,"#,
            r#""annotations":{{"org.opencontainers.image.ref.name":"docker.io/x/y:1"}},"#,
            r#""platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}}]}}"#
        ),
        d(b"m")
    );
    assert_eq!(got, want);
}

#[test]
fn config_serializes_in_buildkit_order_without_nulls() {
    let mut c = ImageConfig {
        created: rfc3339_utc(0),
        ..Default::default()
    };
    c.set_platform(&Platform::linux("amd64").unwrap());
    c.config.env = vec!["PATH=/bin".into()];
    c.config.cmd = vec!["/bin/sh".into()];
    c.config.exposed_ports.insert("80/tcp".into());
    c.config.labels = BTreeMap::from([("b".into(), "2".into()), ("a".into(), "1".into())]);
    c.config.working_dir = "/".into();
    c.rootfs.diff_ids.push(d(b"diff"));
    c.history.push(History {
        created: rfc3339_utc(0),
        created_by: "oxkit image import".into(),
        ..Default::default()
    });
    let got = String::from_utf8(to_canonical_json(&c).unwrap()).unwrap();
    let want = format!(
        concat!(
            r#"{{"created":"1970-01-01T00:00:00Z","architecture":"amd64","os":"linux","#,
            r#""config":{{"ExposedPorts":{{"80/tcp":{{}}}},"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"#,
            r#""WorkingDir":"/","Labels":{{"a":"1","b":"2"}}}},"#,
            r#""rootfs":{{"type":"layers","diff_ids":["{}"]}},"#,
            r#""history":[{{"created":"1970-01-01T00:00:00Z","created_by":"oxkit image import"}}]}}"#
        ),
        d(b"diff")
    );
    assert_eq!(got, want);
    // An empty config is still written as {} (Go does not omit structs).
    let empty = String::from_utf8(to_canonical_json(&ImageConfig::default()).unwrap()).unwrap();
    assert_eq!(
        empty,
        r#"{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#
    );
}

/// The shape Docker (moby) writes: nulls, PascalCase extras, container_config.
const DOCKER_CONFIG: &str = r##"{
  "architecture": "arm64", "variant": "v8", "os": "linux",
  "config": {"Hostname": "", "User": "", "AttachStdin": false, "ExposedPorts": null,
    "Env": ["PATH=/usr/sbin:/usr/bin"], "Cmd": ["sh"], "Image": "sha256:abc",
    "Volumes": {"/data": {}}, "WorkingDir": "", "Entrypoint": null, "OnBuild": null,
    "Labels": null, "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000}},
  "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) CMD [\"sh\"]"]},
  "created": "2024-09-26T21:31:42.000000000Z", "docker_version": "23.0.11",
  "history": [{"created": "2024-09-26T21:31:42Z", "created_by": "/bin/sh", "empty_layer": true}],
  "rootfs": {"type": "layers", "diff_ids": ["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}
}"##;

#[test]
fn docker_config_with_nulls_parses() {
    let c: ImageConfig = from_json(DOCKER_CONFIG.as_bytes(), "fixture").unwrap();
    assert_eq!(c.platform(), Some(Platform::linux("arm64").unwrap()));
    assert_eq!(c.config.cmd, vec!["sh"]);
    assert!(c.config.entrypoint.is_empty() && c.config.labels.is_empty());
    assert!(c.config.volumes.contains("/data"));
    assert_eq!(
        c.config.healthcheck.as_ref().unwrap().interval,
        30_000_000_000
    );
    assert!(c.history[0].empty_layer);
    assert_eq!(c.rootfs.diff_ids.len(), 1);
    // Re-serializing drops Docker's extras and nulls, and round-trips.
    let out = to_canonical_json(&c).unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(
        !text.contains("null") && !text.contains("container_config"),
        "{text}"
    );
    let again: ImageConfig = from_json(&out, "round trip").unwrap();
    assert_eq!(again, c);
}

#[test]
fn docker_manifest_list_and_skopeo_manifest_parse() {
    let list = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
        {{"mediaType":"{}","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
        {{"mediaType":"{}","digest":"{}","size":1,"platform":{{"architecture":"unknown","os":"unknown"}}}}]}}"#,
        media_type::DOCKER_MANIFEST_LIST,
        media_type::DOCKER_MANIFEST,
        d(b"a"),
        media_type::OCI_MANIFEST,
        d(b"b")
    );
    assert_eq!(sniff(list.as_bytes()), DocumentKind::Index);
    let idx: ImageIndex = from_json(list.as_bytes(), "list").unwrap();
    assert_eq!(idx.manifests.len(), 2);
    let p = idx.manifests[0].platform.as_ref().unwrap();
    assert_eq!(
        normalize_platform(&p.os, &p.architecture, p.variant.as_deref()),
        Some(Platform::linux("arm64").unwrap())
    );
    let p = idx.manifests[1].platform.as_ref().unwrap();
    assert_eq!(normalize_platform(&p.os, &p.architecture, None), None);

    // skopeo writes no mediaType in OCI manifests in some versions, and annotations: null.
    let m = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[],"annotations":null}}"#,
        media_type::OCI_CONFIG,
        d(b"c")
    );
    assert_eq!(sniff(m.as_bytes()), DocumentKind::Manifest);
    let m: ImageManifest = from_json(m.as_bytes(), "m").unwrap();
    assert_eq!(m.descriptor_media_type(), media_type::OCI_MANIFEST);
    assert!(m.annotations.is_empty());

    assert_eq!(
        sniff(br#"{"schemaVersion":1,"fsLayers":[]}"#),
        DocumentKind::SchemaV1
    );
    assert_eq!(sniff(b"not json"), DocumentKind::Other);
}

#[test]
fn parse_errors_name_the_document_and_position() {
    let e = from_json::<ImageManifest>(b"{\n  \"config\": 3\n}", "sha256:abc").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("sha256:abc") && msg.contains("line 2"),
        "{msg}"
    );
}

#[test]
fn rfc3339_matches_known_dates() {
    assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339_utc(4_102_444_799), "2099-12-31T23:59:59Z");
    assert_eq!(rfc3339_utc(-5), "1970-01-01T00:00:00Z");
}

/// Captured from `umoci init` + `umoci new` (Go's encoding/json over image-spec structs):
/// our types re-serialize them byte for byte, so our field order is Go's.
#[test]
fn umoci_documents_round_trip_byte_for_byte() {
    let config = r#"{"created":"2026-11-26T18:29:13.179287577Z","architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:101db00b3c5151de5e15e3d7174fda8692e453a3ecf0117406cfdd0293651417","size":134},"layers":[]}"#;
    let index = r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:b4771e1de970c626a07f1937d60fc65778079837df9b08c2e90304249f2a4350","size":192,"annotations":{"org.opencontainers.image.ref.name":"docker.io/linuxkit/init:abc"}}]}"#;
    let c: ImageConfig = from_json(config.as_bytes(), "umoci config").unwrap();
    assert_eq!(
        String::from_utf8(to_canonical_json(&c).unwrap()).unwrap(),
        config
    );
    // umoci's blob is that plus the newline Go's json.Encoder appends.
    assert_eq!(
        Digest::sha256(format!("{config}\n").as_bytes()).as_str(),
        "sha256:101db00b3c5151de5e15e3d7174fda8692e453a3ecf0117406cfdd0293651417"
    );
    let mut m: ImageManifest = from_json(manifest.as_bytes(), "umoci manifest").unwrap();
    m.media_type = None; // umoci 0.4 leaves it out; we write it
    assert_eq!(
        String::from_utf8(to_canonical_json(&m).unwrap()).unwrap(),
        manifest
    );
    let i: ImageIndex = from_json(index.as_bytes(), "umoci index").unwrap();
    assert_eq!(
        i.manifests[0].ref_name(),
        Some("docker.io/linuxkit/init:abc")
    );
    let mut i = i;
    i.media_type = None;
    assert_eq!(
        String::from_utf8(to_canonical_json(&i).unwrap()).unwrap(),
        index
    );
}
