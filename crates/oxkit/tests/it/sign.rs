//! Signing interoperability with the real cosign (2.5, offline): keys both ways, blob signatures
//! both ways, and, against Debian's docker-registry, image signatures both ways (`.sig` images
//! and cosign's Sigstore-bundle referrers).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use oxkit_sign::bundle::{BundleArtifact, bundle_referrers, referrers_tag};
use oxkit_sign::sigimage::Descriptor;
use oxkit_sign::{
    Passphrase, PublicKey, SignatureImage, SimpleSigningPayload, load_public_key, load_signing_key,
    signature_tag, verify_signature_image,
};
use oxkit_spec::digest::Digest;
use oxkit_spec::reference::Reference;

use crate::support::{
    Env, Registry, cosign, cosign_sign, on_terminal, require_tool, run_fail, run_ok,
};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn pw(s: &str) -> Passphrase {
    Passphrase::from(s.to_string())
}

fn load_key(path: &Path, pass: &str) -> oxkit_sign::SigningKey {
    load_signing_key(path, || Ok::<_, String>(pw(pass))).expect("load signing key")
}

/// Pipes `input` through `base64 ARGS` (the test binary has no base64 library of its own).
fn base64_cli(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("base64")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("base64");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    let out = child.wait_with_output().expect("base64");
    assert!(out.status.success(), "base64 {args:?} failed");
    out.stdout
}

fn b64(bytes: &[u8]) -> String {
    String::from_utf8(base64_cli(&["-w0"], bytes)).expect("ascii")
}

fn b64_decode(text: &str) -> Vec<u8> {
    base64_cli(&["-d"], text.trim().as_bytes())
}

#[test]
fn key_generate_makes_keys_cosign_signs_with() {
    let env = Env::new();
    run_ok(
        env.oxkit()
            .args(["key", "generate", "--output-key-prefix", "ox"])
            .env("COSIGN_PASSWORD", "ox-pass"),
    );
    let key_path = env.path().join("ox.key");
    let mode = std::fs::metadata(&key_path)
        .expect("ox.key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&key_path).expect("read");
    assert!(text.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));

    // cosign signs a blob with oxkit's key; oxkit verifies cosign's signature.
    std::fs::write(env.path().join("blob"), b"hello from cosign\n").expect("blob");
    let sig = run_ok(cosign(&env, "ox-pass").args([
        "sign-blob",
        "--key",
        "ox.key",
        "--tlog-upload=false",
        "-y",
        "blob",
    ]));
    let public = load_public_key(&env.path().join("ox.pub")).expect("ox.pub");
    public
        .verify(b"hello from cosign\n", &b64_decode(&sig))
        .expect("cosign's signature verifies with oxkit");
    assert!(
        public
            .verify(b"hello from cosign!", &b64_decode(&sig))
            .is_err()
    );
    // cosign derives the same public key from oxkit's private key.
    let derived = run_ok(cosign(&env, "ox-pass").args(["public-key", "--key", "ox.key"]));
    assert_eq!(
        derived,
        std::fs::read_to_string(env.path().join("ox.pub")).expect("pub")
    );
    // A wrong passphrase is refused by cosign too (the encryption is real).
    let out = cosign(&env, "nope")
        .args([
            "sign-blob",
            "--key",
            "ox.key",
            "--tlog-upload=false",
            "-y",
            "blob",
        ])
        .output()
        .expect("cosign");
    assert!(!out.status.success());
}

#[test]
fn cosign_key_pair_signs_in_oxkit_and_cosign_verifies() {
    let env = Env::new();
    run_ok(cosign(&env, "co-pass").arg("generate-key-pair"));
    let key = load_key(&env.path().join("cosign.key"), "co-pass");
    assert_eq!(
        key.public_key(),
        load_public_key(&env.path().join("cosign.pub")).expect("cosign.pub")
    );
    let blob = b"hello from oxkit\n";
    std::fs::write(env.path().join("blob"), blob).expect("blob");
    std::fs::write(env.path().join("blob.sig"), b64(&key.sign(blob))).expect("sig");
    run_ok(cosign(&env, "").args([
        "verify-blob",
        "--key",
        "cosign.pub",
        "--signature",
        "blob.sig",
        "--insecure-ignore-tlog=true",
        "blob",
    ]));
    // Both signatures are plain ECDSA-SHA256 over the same bytes: OpenSSL accepts each.
    let cosign_sig = run_ok(cosign(&env, "co-pass").args([
        "sign-blob",
        "--key",
        "cosign.key",
        "--tlog-upload=false",
        "-y",
        "blob",
    ]));
    for (i, sig) in [key.sign(blob), b64_decode(&cosign_sig)].iter().enumerate() {
        let sig_path = env.path().join(format!("sig-{i}.der"));
        std::fs::write(&sig_path, sig).expect("sig");
        run_ok(Command::new(require_tool("openssl")).args([
            "dgst",
            "-sha256",
            "-verify",
            &env.path().join("cosign.pub").display().to_string(),
            "-signature",
            &sig_path.display().to_string(),
            &env.path().join("blob").display().to_string(),
        ]));
    }
    // A wrong passphrase on cosign's key is a clear error that shows no secret.
    let err = load_signing_key(&env.path().join("cosign.key"), || {
        Ok::<_, String>(pw("co-pass-wrong"))
    })
    .expect_err("wrong passphrase");
    let msg = err.to_string();
    assert!(
        msg.contains("wrong passphrase") && msg.contains("cosign.key"),
        "{msg}"
    );
    assert!(!msg.contains("co-pass"), "{msg}");
}

#[test]
fn key_generate_refuses_to_overwrite_unless_forced() {
    let env = Env::new();
    run_ok(
        env.oxkit()
            .args(["key", "generate"])
            .env("COSIGN_PASSWORD", "a"),
    );
    let before = std::fs::read(env.path().join("cosign.key")).expect("key");
    let err = run_fail(
        env.oxkit()
            .args(["key", "generate"])
            .env("COSIGN_PASSWORD", "b"),
    );
    assert!(
        err.contains("cosign.key already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(env.path().join("cosign.key")).expect("key"),
        before
    );
    run_ok(
        env.oxkit()
            .args(["key", "generate", "--force"])
            .env("COSIGN_PASSWORD", "b"),
    );
    assert_ne!(
        std::fs::read(env.path().join("cosign.key")).expect("key"),
        before
    );
    load_key(&env.path().join("cosign.key"), "b");
}

#[test]
fn key_import_reencrypts_openssl_keys() {
    let env = Env::new();
    let openssl = require_tool("openssl");
    let dir = env.path().display().to_string();
    run_ok(Command::new("sh").arg("-c").arg(format!(
        "set -e; cd {dir}; {o} ecparam -name prime256v1 -genkey -out sec1.pem; \
         {o} pkcs8 -topk8 -nocrypt -in sec1.pem -out pkcs8.pem; \
         {o} ec -in sec1.pem -pubout -out openssl.pub 2>/dev/null",
        o = openssl.display()
    )));
    for (input, prefix) in [("sec1.pem", "from-sec1"), ("pkcs8.pem", "from-pkcs8")] {
        let out = run_ok(
            env.oxkit()
                .args(["key", "import", input, "--output-key-prefix", prefix])
                .env("COSIGN_PASSWORD", "imp"),
        );
        assert!(out.contains(&format!("{prefix}.key")), "{out}");
        let key = load_key(&env.path().join(format!("{prefix}.key")), "imp");
        let openssl_pub = load_public_key(&env.path().join("openssl.pub")).expect("pub");
        assert_eq!(key.public_key(), openssl_pub);
        assert_eq!(
            std::fs::read_to_string(env.path().join(format!("{prefix}.pub"))).expect("pub"),
            std::fs::read_to_string(env.path().join("openssl.pub")).expect("pub")
        );
        // cosign accepts the imported key.
        run_ok(cosign(&env, "imp").args(["public-key", "--key", &format!("{prefix}.key")]));
    }
    // Default prefix, like cosign import-key-pair.
    run_ok(
        env.oxkit()
            .args(["key", "import", "pkcs8.pem"])
            .env("COSIGN_PASSWORD", "imp"),
    );
    assert!(env.path().join("import-cosign.key").exists());
}

#[test]
fn key_import_errors_name_the_file() {
    let env = Env::new();
    std::fs::write(env.path().join("junk.pem"), "not a key\n").expect("junk");
    let err = run_fail(
        env.oxkit()
            .args(["key", "import", "junk.pem"])
            .env("COSIGN_PASSWORD", "x"),
    );
    assert!(
        err.contains("junk.pem") && err.contains("no PEM block"),
        "{err}"
    );
    run_ok(
        env.oxkit()
            .args(["key", "generate"])
            .env("COSIGN_PASSWORD", "x"),
    );
    let err = run_fail(
        env.oxkit()
            .args([
                "key",
                "import",
                "cosign.key",
                "--output-key-prefix",
                "again",
            ])
            .env("COSIGN_PASSWORD", "x"),
    );
    assert!(
        err.contains("cosign.key") && err.contains("already in cosign's encrypted format"),
        "{err}"
    );
    let truncated: String = std::fs::read_to_string(env.path().join("cosign.key"))
        .expect("key")
        .lines()
        .take(3)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(env.path().join("cut.key"), truncated).expect("cut");
    let err = load_signing_key(&env.path().join("cut.key"), || Ok::<_, String>(pw("x")))
        .expect_err("truncated");
    assert!(
        err.to_string().contains("cut.key") && err.to_string().contains("truncated"),
        "{err}"
    );
}

#[test]
fn passphrase_comes_from_env_then_config_command() {
    let env = Env::new();
    // DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE when COSIGN_PASSWORD is unset.
    run_ok(
        env.oxkit()
            .args(["key", "generate", "--output-key-prefix", "dct"])
            .env("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE", "dct-pass"),
    );
    load_key(&env.path().join("dct.key"), "dct-pass");

    // No source at all: an error that says how to provide one, and no key written.
    let err = run_fail(
        env.oxkit()
            .args(["key", "generate", "--output-key-prefix", "none"])
            .stdin(Stdio::null()),
    );
    assert!(
        err.contains("COSIGN_PASSWORD") && err.contains("passphrase-command"),
        "{err}"
    );
    assert!(!env.path().join("none.key").exists());

    // passphrase-command in ~/.config/oxkit/config.toml.
    let cfg = env.home().join(".config/oxkit");
    std::fs::create_dir_all(&cfg).expect("config dir");
    std::fs::write(
        cfg.join("config.toml"),
        "# oxkit settings\npassphrase-command = \"printf 'cmd-pass\\\\n'\"\n",
    )
    .expect("toml");
    run_ok(
        env.oxkit()
            .args(["key", "generate", "--output-key-prefix", "cmd"])
            .stdin(Stdio::null()),
    );
    load_key(&env.path().join("cmd.key"), "cmd-pass");
    // COSIGN_PASSWORD still wins over the config.
    run_ok(
        env.oxkit()
            .args(["key", "generate", "--output-key-prefix", "envwins"])
            .env("COSIGN_PASSWORD", "env-pass"),
    );
    load_key(&env.path().join("envwins.key"), "env-pass");

    // A failing command is an error that does not echo what it printed.
    std::fs::write(
        cfg.join("config.toml"),
        "passphrase-command = \"echo leaked-secret; exit 3\"\n",
    )
    .expect("toml");
    let err = run_fail(
        env.oxkit()
            .args(["key", "generate", "--output-key-prefix", "fail"])
            .stdin(Stdio::null()),
    );
    assert!(
        err.contains("passphrase-command") && err.contains("config.toml"),
        "{err}"
    );
    assert!(!err.contains("leaked-secret"), "{err}");

    // The JSON form works too.
    std::fs::remove_file(cfg.join("config.toml")).expect("rm");
    std::fs::write(
        cfg.join("config.json"),
        r#"{"passphrase-command": "echo json-pass"}"#,
    )
    .expect("json");
    run_ok(
        env.oxkit()
            .args(["key", "generate", "--output-key-prefix", "json"])
            .stdin(Stdio::null()),
    );
    load_key(&env.path().join("json.key"), "json-pass");
}

#[test]
fn passphrase_prompt_on_a_terminal_does_not_echo() {
    const PROMPT: &str = "Enter password for private key";
    let env = Env::new();
    let (ok, shown) = on_terminal(
        &env,
        "key generate --output-key-prefix tty",
        &[(PROMPT, "typed-secret"), (PROMPT, "typed-secret")],
    );
    assert!(ok, "{shown}");
    assert!(
        !shown.contains("typed-secret"),
        "the passphrase was echoed: {shown}"
    );
    load_key(&env.path().join("tty.key"), "typed-secret");

    let (ok, shown) = on_terminal(
        &env,
        "key generate --output-key-prefix mismatch",
        &[(PROMPT, "one"), (PROMPT, "two")],
    );
    assert!(!ok);
    assert!(shown.contains("do not match"), "{shown}");
    assert!(!env.path().join("mismatch.key").exists());
}

// ---- registry round trips ----------------------------------------------------------------

/// Fetches `path` from the registry with the OCI Accept headers (distribution 2.8 answers 404
/// to manifest requests without them).
fn registry_get(reg: &Registry, path: &str) -> Option<Vec<u8>> {
    let out = Command::new(require_tool("curl"))
        .args([
            "-sf",
            "-H",
            &format!("Accept: {OCI_MANIFEST}, {OCI_INDEX}"),
            &format!("{}/v2/{path}", reg.url()),
        ])
        .output()
        .expect("curl");
    out.status.success().then_some(out.stdout)
}

fn blob_fetcher<'a>(
    reg: &'a Registry,
    repo: &'a str,
) -> impl FnMut(&Descriptor) -> Result<Vec<u8>, String> + 'a {
    move |d| {
        registry_get(reg, &format!("{repo}/blobs/{}", d.digest))
            .ok_or_else(|| format!("no blob {}", d.digest))
    }
}

/// Writes an OCI layout holding one manifest (and its blobs) under `tag`.
fn write_layout(dir: &Path, manifest: &[u8], media_type: &str, blobs: &[Vec<u8>], tag: &str) {
    let blob_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blob_dir).expect("layout");
    for b in blobs.iter().chain(std::iter::once(&manifest.to_vec())) {
        std::fs::write(blob_dir.join(Digest::sha256(b).hex()), b).expect("blob");
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": media_type, "digest": Digest::sha256(manifest).to_string(),
        "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": tag}}]});
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index");
}

fn skopeo_push(layout: &Path, tag: &str, dest: &str) {
    run_ok(Command::new(require_tool("skopeo")).args([
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:{tag}", layout.display()),
        &format!("docker://{dest}"),
    ]));
}

/// Pushes a one-layer image to `REG/repo:v1` and returns its manifest digest.
fn push_test_image(env: &Env, reg: &Registry, repo: &str) -> Digest {
    let layer = run_ok_bytes(Command::new("sh").arg("-c").arg(format!(
        "cd {} && mkdir -p rootfs && echo hi > rootfs/hello && tar --sort=name --mtime=@0 --owner=0 --group=0 -C rootfs -c hello | gzip -n",
        env.path().display()
    )));
    let diff = run_ok_bytes(Command::new("sh").arg("-c").arg(format!(
        "cd {} && tar --sort=name --mtime=@0 --owner=0 --group=0 -C rootfs -c hello",
        env.path().display()
    )));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [Digest::sha256(&diff).to_string()]}}))
    .expect("config");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": Digest::sha256(&layer).to_string(), "size": layer.len()}]}))
    .expect("manifest");
    let layout = env.path().join("image-layout");
    write_layout(&layout, &manifest, OCI_MANIFEST, &[config, layer], "v1");
    skopeo_push(&layout, "v1", &format!("{}/{repo}:v1", reg.host()));
    Digest::sha256(&manifest)
}

fn run_ok_bytes(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn cosign_image_signatures_verify_with_oxkit() {
    let env = Env::new();
    let reg = Registry::start();
    let digest = push_test_image(&env, &reg, "sign/cosigned");
    let image_ref = format!("{}/sign/cosigned@{digest}", reg.host());
    run_ok(cosign(&env, "k1").arg("generate-key-pair"));

    // cosign's payload for this image is byte-identical to ours.
    let generated =
        run_ok_bytes(cosign(&env, "").args(["generate", "--allow-http-registry", &image_ref]));
    let reference = Reference::parse(&image_ref).expect("ref");
    assert_eq!(
        SimpleSigningPayload::new(&reference, digest.clone()).to_bytes(),
        generated
    );

    cosign_sign(&env, "k1", "cosign.key", &image_ref, &["built-by=cosign"]);
    let manifest = registry_get(
        &reg,
        &format!("sign/cosigned/manifests/{}", signature_tag(&digest)),
    )
    .expect("cosign pushed a .sig manifest");
    let key = load_public_key(&env.path().join("cosign.pub")).expect("pub");
    let verified = verify_signature_image(
        &manifest,
        blob_fetcher(&reg, "sign/cosigned"),
        &digest,
        &key,
    )
    .expect("cosign's signature verifies");
    assert_eq!(verified.len(), 1);
    assert_eq!(
        verified[0].payload.docker_reference,
        format!("{}/sign/cosigned", reg.host())
    );
    assert_eq!(
        verified[0]
            .payload
            .annotations
            .as_ref()
            .map(|a| a["built-by"].clone()),
        Some("cosign".into())
    );
    // Another key, or another image digest, does not verify.
    let stranger = oxkit_sign::SigningKey::generate().public_key();
    assert!(
        verify_signature_image(
            &manifest,
            blob_fetcher(&reg, "sign/cosigned"),
            &digest,
            &stranger
        )
        .is_err()
    );
    let other = Digest::sha256(b"not this image");
    let err = verify_signature_image(&manifest, blob_fetcher(&reg, "sign/cosigned"), &other, &key)
        .expect_err("other digest");
    assert!(err.to_string().contains("another image"), "{err}");
    // Our re-serialisation of cosign's signature image is byte-identical (a merge changes only
    // what it adds).
    let img = SignatureImage::fetch(&manifest, blob_fetcher(&reg, "sign/cosigned")).expect("parse");
    assert_eq!(img.to_parts().0, manifest);
}

#[test]
fn oxkit_image_signatures_verify_with_cosign() {
    let env = Env::new();
    let reg = Registry::start();
    let repo = "sign/oxsigned";
    let digest = push_test_image(&env, &reg, repo);
    let image_ref = format!("{}/{repo}@{digest}", reg.host());
    run_ok(
        env.oxkit()
            .args(["key", "generate", "--output-key-prefix", "ox"])
            .env("COSIGN_PASSWORD", "ox"),
    );
    let key = load_key(&env.path().join("ox.key"), "ox");
    let reference = Reference::parse(&image_ref).expect("ref");
    let signed = oxkit_sign::sign_image(
        &key,
        &reference,
        digest.clone(),
        [("org.oxkit.test".to_string(), "yes".to_string())],
    );
    let mut img = SignatureImage::new();
    assert!(img.append(&signed.payload, &signed.signature));
    assert!(
        !img.append(&signed.payload, &signed.signature),
        "idempotent"
    );
    push_signature_image(&env, &reg, repo, &digest, &img, "sig-layout-1");

    let verify = |pubkey: &str| {
        cosign(&env, "")
            .args([
                "verify",
                "--key",
                pubkey,
                "--insecure-ignore-tlog=true",
                "--allow-http-registry",
                &image_ref,
            ])
            .output()
            .expect("cosign verify")
    };
    let out = verify("ox.pub");
    assert!(
        out.status.success(),
        "cosign verify refused oxkit's signature: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cosign json");
    assert_eq!(report[0]["optional"]["org.oxkit.test"], "yes");
    assert_eq!(
        report[0]["critical"]["image"]["docker-manifest-digest"],
        digest.to_string()
    );

    // cosign adds its own signature on top of ours; oxkit merges a third and all verify.
    run_ok(cosign(&env, "k2").arg("generate-key-pair"));
    cosign_sign(&env, "k2", "cosign.key", &image_ref, &[]);
    let manifest = registry_get(
        &reg,
        &format!("{repo}/manifests/{}", signature_tag(&digest)),
    )
    .expect("sig");
    let mut merged = SignatureImage::fetch(&manifest, blob_fetcher(&reg, repo)).expect("merged");
    assert_eq!(merged.len(), 2);
    assert!(
        !merged.append(&signed.payload, &signed.signature),
        "already there"
    );
    let third = oxkit_sign::SigningKey::generate();
    let p3 = SimpleSigningPayload::new(&reference, digest.clone()).to_bytes();
    assert!(merged.append(&p3, &third.sign(&p3)));
    push_signature_image(&env, &reg, repo, &digest, &merged, "sig-layout-2");
    assert!(verify("ox.pub").status.success());
    assert!(verify("cosign.pub").status.success());
    let third_pub = env.path().join("third.pub");
    std::fs::write(&third_pub, third.public_key().to_pem()).expect("pub");
    assert!(verify("third.pub").status.success());
    // A key that signed nothing is refused by cosign.
    std::fs::write(
        env.path().join("stranger.pub"),
        oxkit_sign::SigningKey::generate().public_key().to_pem(),
    )
    .expect("pub");
    assert!(!verify("stranger.pub").status.success());
}

fn push_signature_image(
    env: &Env,
    reg: &Registry,
    repo: &str,
    digest: &Digest,
    img: &SignatureImage,
    name: &str,
) {
    let (manifest, blobs) = img.to_parts();
    let layout = env.path().join(name);
    let blobs: Vec<Vec<u8>> = blobs.into_iter().map(|(_, b)| b).collect();
    let tag = signature_tag(digest);
    write_layout(&layout, &manifest, OCI_MANIFEST, &blobs, &tag);
    skopeo_push(&layout, &tag, &format!("{}/{repo}:{tag}", reg.host()));
    // The registry holds exactly our bytes.
    assert_eq!(
        registry_get(reg, &format!("{repo}/manifests/{tag}")).as_deref(),
        Some(manifest.as_slice())
    );
}

#[test]
fn cosign_bundle_referrers_verify_with_oxkit() {
    let env = Env::new();
    let reg = Registry::start();
    let repo = "sign/bundled";
    let digest = push_test_image(&env, &reg, repo);
    let image_ref = format!("{}/{repo}@{digest}", reg.host());
    run_ok(cosign(&env, "kb").arg("generate-key-pair"));
    std::fs::write(env.path().join("predicate.json"), "{}").expect("predicate");
    // cosign 2.5 makes Sigstore bundles for images with `attest --new-bundle-format`; with
    // cosign's signing predicate type this is what cosign v3's `sign` attaches.
    run_ok(cosign(&env, "kb").args([
        "attest",
        "--key",
        "cosign.key",
        "--tlog-upload=false",
        "--allow-http-registry",
        "-y",
        "--new-bundle-format",
        "--predicate",
        "predicate.json",
        "--type",
        oxkit_sign::bundle::COSIGN_SIGN_PREDICATE_TYPE,
        &image_ref,
    ]));
    // distribution 2.8 has no referrers API: cosign used the `sha256-<hex>` tag fallback.
    let index = registry_get(
        &reg,
        &format!("{repo}/manifests/{}", referrers_tag(&digest)),
    )
    .expect("referrers fallback index");
    let candidates = bundle_referrers(&index).expect("index");
    assert_eq!(candidates.len(), 1);
    let manifest = registry_get(&reg, &format!("{repo}/manifests/{}", candidates[0].digest))
        .expect("referrer");
    let artifact =
        BundleArtifact::fetch(&manifest, &digest, blob_fetcher(&reg, repo)).expect("artifact");
    let key = load_public_key(&env.path().join("cosign.pub")).expect("pub");
    let verified = artifact
        .verify(&digest, &key)
        .expect("cosign's bundle verifies");
    assert!(verified.is_image_signature());

    // The policy helper sees it as a signature by that key.
    let keys = BTreeMap::from([("release".to_string(), key)]);
    let report = oxkit_sign::check_signers(
        &Reference::parse(&image_ref).expect("ref"),
        &digest,
        &["release".to_string()],
        &keys,
        &oxkit_sign::SignatureEvidence {
            signature_image: None,
            bundles: vec![artifact.clone()],
        },
    );
    assert!(report.is_satisfied(), "{report}");
    let stranger: PublicKey = oxkit_sign::SigningKey::generate().public_key();
    assert!(artifact.verify(&digest, &stranger).is_err());
    assert!(
        artifact
            .verify(
                &Digest::sha256(b"other"),
                &load_public_key(&env.path().join("cosign.pub")).expect("pub")
            )
            .is_err()
    );
}

// ---- `oxkit sign`: signing what is in a registry already ----------------------------------

/// The `sha256-<hex>.sig` manifest's digest for `digest` in `repo` (`None`: no signatures).
fn sig_manifest_digest(reg: &Registry, repo: &str, digest: &Digest) -> Option<Digest> {
    registry_get(reg, &format!("{repo}/manifests/{}", signature_tag(digest)))
        .map(|m| Digest::sha256(&m))
}

#[test]
fn oxkit_sign_signs_an_unsigned_push_for_cosign_and_oxkit_verify() {
    use crate::publish::{cosign_verify, oxkit_key, package, push_json};
    let reg = Registry::start();
    let env = Env::new();
    oxkit_key(&env);
    let dir = package(&env, &reg.host(), "later", &["amd64", "arm64"]);
    let pushed = push_json(&env, &["--no-sign", dir.to_str().unwrap()]);
    let p = &pushed["packages"][0];
    let repo = "ox/later";
    let name = format!("{}/{repo}", reg.host());
    let tag_ref = format!(
        "{}:{}",
        name,
        p["name"].as_str().unwrap().rsplit(':').next().unwrap()
    );
    let index: Digest = p["index"].as_str().unwrap().parse().unwrap();
    let arches: Vec<Digest> = p["arches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["digest"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(arches.len(), 2);
    let at = |d: &Digest| format!("{name}@{d}");
    assert!(
        cosign_verify(&env, "ox.pub", &at(&index)).is_err(),
        "pushed unsigned"
    );

    let sign = |args: &[&str]| -> serde_json::Value {
        let out = run_ok(
            env.oxkit()
                .env("COSIGN_PASSWORD", "pw")
                .args(["--json", "sign", "--key", "ox.key"])
                .args(args),
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
    };
    let added = |j: &serde_json::Value| -> Vec<(String, bool)> {
        j["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["digest"].as_str().unwrap().to_string(),
                    s["added"].as_bool().unwrap(),
                )
            })
            .collect()
    };

    // The tag is resolved to the index's digest; without --recursive only the index is signed.
    let first = sign(&["-a", "stage=qa", &tag_ref]);
    assert_eq!(added(&first), [(index.to_string(), true)]);
    assert_eq!(first["signatures"][0]["tag"], signature_tag(&index));
    let payloads = cosign_verify(&env, "ox.pub", &at(&index)).expect("cosign verifies the index");
    assert_eq!(payloads[0]["optional"]["stage"], "qa");
    assert_eq!(
        payloads[0]["critical"]["identity"]["docker-reference"],
        name.as_str()
    );
    for d in &arches {
        assert!(
            cosign_verify(&env, "ox.pub", &at(d)).is_err(),
            "{d} signed without --recursive"
        );
    }

    // --recursive adds the architectures; the index's signature is there already.
    let second = sign(&["--recursive", "-a", "stage=qa", &tag_ref]);
    let mut want = vec![(index.to_string(), false)];
    want.extend(arches.iter().map(|d| (d.to_string(), true)));
    assert_eq!(added(&second), want);
    for d in &arches {
        cosign_verify(&env, "ox.pub", &at(d)).expect("cosign verifies each architecture");
    }
    run_ok(
        env.oxkit()
            .args(["verify", "--recursive", "--key", "ox.pub", &tag_ref]),
    );

    // Again: nothing added, and no signature image rewritten.
    let before: Vec<_> = std::iter::once(&index)
        .chain(&arches)
        .map(|d| sig_manifest_digest(&reg, repo, d).expect("signed"))
        .collect();
    let third = sign(&["--recursive", "-a", "stage=qa", &tag_ref]);
    assert!(added(&third).iter().all(|(_, a)| !a), "{third}");
    let after: Vec<_> = std::iter::once(&index)
        .chain(&arches)
        .map(|d| sig_manifest_digest(&reg, repo, d).expect("signed"))
        .collect();
    assert_eq!(before, after);

    // A payload with other annotations is another signature: both kept, both verify.
    let other = sign(&["-a", "stage=prod", &at(&index)]);
    assert_eq!(added(&other), [(index.to_string(), true)]);
    let payloads = cosign_verify(&env, "ox.pub", &at(&index)).expect("both verify");
    let mut stages: Vec<&str> = payloads
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["optional"]["stage"].as_str().unwrap())
        .collect();
    stages.sort();
    assert_eq!(stages, ["prod", "qa"]);

    // cosign's own key signs on top; oxkit's signature survives cosign's write and ours
    // survives when oxkit signs again with yet another key.
    run_ok(cosign(&env, "c").arg("generate-key-pair"));
    cosign_sign(&env, "c", "cosign.key", &at(&arches[0]), &[]);
    run_ok(
        env.oxkit()
            .args(["key", "generate", "--output-key-prefix", "two"])
            .env("COSIGN_PASSWORD", "two"),
    );
    run_ok(env.oxkit().env("COSIGN_PASSWORD", "two").args([
        "sign",
        "--key",
        "two.key",
        &at(&arches[0]),
    ]));
    for key in ["ox.pub", "cosign.pub", "two.pub"] {
        cosign_verify(&env, key, &at(&arches[0]))
            .unwrap_or_else(|e| panic!("{key} no longer verifies: {e}"));
    }
}

#[test]
fn oxkit_sign_refuses_bad_input_with_one_clear_error() {
    use crate::publish::oxkit_key;
    let reg = Registry::start();
    let env = Env::new();
    oxkit_key(&env);
    let repo = "sign/bad";
    let digest = push_test_image(&env, &reg, repo);
    let image = format!("{}/{repo}:v1", reg.host());
    let sign = || {
        let mut c = env.oxkit();
        c.env("COSIGN_PASSWORD", "pw").arg("sign");
        c
    };

    // A tag the registry does not have: named, with what to do.
    let missing = format!("{}/{repo}:nope", reg.host());
    let err = run_fail(sign().args(["--key", "ox.key", &missing]));
    assert!(
        err.contains(&missing) && err.contains("no such tag"),
        "{err}"
    );
    // Not a reference: refused before the key is unlocked.
    let err = run_fail(sign().args(["--key", "ox.key", "Not/A:Reference:"]));
    assert!(err.contains("invalid image reference"), "{err}");
    // No key anywhere: says how to make one.
    let err = run_fail(sign().arg(&image));
    assert!(err.contains("oxkit key generate"), "{err}");
    // A wrong passphrase: the key file is named, the passphrase is not printed.
    let err = run_fail(
        env.oxkit()
            .env("COSIGN_PASSWORD", "wrong-secret-words")
            .args(["sign", "--key", "ox.key", &image]),
    );
    assert!(
        err.contains("ox.key") && !err.contains("wrong-secret-words"),
        "{err}"
    );
    // The same annotation twice.
    let err = run_fail(sign().args(["--key", "ox.key", "-a", "k=1", "-a", "k=2", &image]));
    assert!(err.contains("\"k\"") && err.contains("twice"), "{err}");
    // An annotation that is not KEY=VALUE is a usage error (exit 2) naming it.
    let out = sign()
        .args(["--key", "ox.key", "-a", "novalue", &image])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"novalue\" is not KEY=VALUE"));
    // None of that wrote a signature.
    assert_eq!(sig_manifest_digest(&reg, repo, &digest), None);
}
