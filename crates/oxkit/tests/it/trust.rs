//! Checking signatures: `oxkit verify` against images `oxkit pkg push` signed, the ways a
//! signature must be refused (another key, a payload edited after signing, a signature over
//! another digest, a signature blob that does not match its digest, no signature at all),
//! Sigstore bundles made by cosign, and `oxkit build`'s trust policy met by them.

use oxkit_registry::BlobUpload;
use oxkit_sign::{SignatureImage, signature_tag};
use oxkit_spec::{Digest, Reference};
use oxkit_store::oci::media_type as mt;

use crate::publish::{client, oxkit_key, package, push_json, show_tag};
use crate::support::cosign;
use crate::support::{Env, Registry, host_arch, run_fail, run_ok};

/// The digest `r` names in the registry.
fn digest_of(r: &str) -> Digest {
    client()
        .get_manifest(&Reference::parse(r).unwrap())
        .unwrap()
        .digest
}

fn signature_image(repo: &Reference, digest: &Digest) -> (Vec<u8>, SignatureImage) {
    let c = client();
    let m = c
        .get_manifest(&repo.with_tag(&signature_tag(digest)).unwrap())
        .unwrap();
    let img = SignatureImage::fetch(&m.bytes, |d| c.get_blob(repo, &d.digest, 1 << 20)).unwrap();
    (m.bytes, img)
}

/// Pushes a signature image as `digest`'s `.sig` in `repo`.
fn put_signature_image(repo: &Reference, digest: &Digest, img: &SignatureImage) {
    let c = client();
    let (manifest, blobs) = img.to_parts();
    let tag = repo.with_tag(&signature_tag(digest)).unwrap();
    let uploads: Vec<BlobUpload> = blobs
        .into_iter()
        .map(|(_, b)| BlobUpload::from_bytes(b))
        .collect();
    c.push_blobs(&tag, &uploads).unwrap();
    c.put_manifest(&tag, mt::OCI_MANIFEST, &manifest).unwrap();
}

/// `oxkit build -f tar` of `NAME.yml`: `image` as the init, under a trust rule for its
/// repository that requires `keys` (of `release`, ox.pub, and `bundles`, cosign.pub).
fn build_with_policy(env: &Env, name: &str, image: &str, keys: &str) -> std::process::Command {
    let yml = env.path().join(format!("{name}.yml"));
    let repo = Reference::parse(image).unwrap().name();
    std::fs::write(
        &yml,
        format!(
            "init:\n  - {image}\ntrust:\n  keys: {{release: ox.pub, bundles: cosign.pub}}\n  rules:\n    - match: {repo}\n      keys: [{keys}]\n"
        ),
    )
    .unwrap();
    let mut cmd = env.oxkit();
    cmd.args(["build", "-f", "tar", "--dir"])
        .arg(env.path().join(format!("out-{name}")))
        .arg(&yml);
    cmd
}

/// `oxkit verify` that must fail; its stderr.
fn refused(env: &Env, key: &str, image: &str) -> String {
    run_fail(env.oxkit().args(["verify", "--key", key, image]))
}

/// The file holding blob `d` in the registry's storage.
fn stored_blob(reg: &Registry, d: &Digest) -> std::path::PathBuf {
    reg.dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&d.hex()[..2])
        .join(d.hex())
        .join("data")
}

struct World {
    env: Env,
    reg: Registry,
    /// `HOST/ox/signed:TAG` (pushed with ox.key) and `HOST/ox/plain:TAG` (unsigned).
    signed: String,
    plain: String,
}

fn world() -> World {
    let reg = Registry::start();
    let env = Env::new();
    oxkit_key(&env);
    let signed_dir = package(&env, &reg.host(), "signed", &["amd64", "arm64"]);
    let plain_dir = package(&env, &reg.host(), "plain", &["amd64", "arm64"]);
    push_json(&env, &["--key", "ox.key", signed_dir.to_str().unwrap()]);
    push_json(&env, &["--no-sign", plain_dir.to_str().unwrap()]);
    let signed = show_tag(&env, &signed_dir);
    let plain = show_tag(&env, &plain_dir);
    World {
        env,
        reg,
        signed,
        plain,
    }
}

#[test]
fn verify_refuses_what_it_must() {
    let w = world();
    let env = &w.env;
    std::fs::write(
        env.path().join("stranger.pub"),
        oxkit_sign::SigningKey::generate().public_key().to_pem(),
    )
    .unwrap();
    // What oxkit signed verifies, recursively too.
    let out = run_ok(
        env.oxkit()
            .args(["verify", "--recursive", "--key", "ox.pub", &w.signed]),
    );
    assert_eq!(out.lines().count(), 3, "index and two arch images: {out}");

    // Another key.
    let err = refused(env, "stranger.pub", &w.signed);
    assert!(
        err.contains("does not verify") && err.contains("stranger.pub"),
        "{err}"
    );
    assert!(err.contains(digest_of(&w.signed).as_str()), "{err}");

    // No signature at all.
    let err = refused(env, "ox.pub", &w.plain);
    assert!(
        err.contains("no signatures found") && err.contains(digest_of(&w.plain).as_str()),
        "{err}"
    );

    let repo = Reference::parse(&w.plain).unwrap().without_tag();
    let key = oxkit_sign::load_signing_key(&env.path().join("ox.key"), || {
        Ok::<_, String>(oxkit_sign::Passphrase::from("pw".to_string()))
    })
    .unwrap();

    // A payload edited after signing (the signature is the one made over the original).
    let amd = format!("{w_plain}-amd64", w_plain = w.plain);
    let amd_digest = digest_of(&amd);
    let genuine = oxkit_sign::sign_image(
        &key,
        &repo,
        amd_digest.clone(),
        [("note".into(), "original".into())],
    );
    let edited = String::from_utf8(genuine.payload.clone())
        .unwrap()
        .replace("original", "tampered");
    let mut img = SignatureImage::new();
    img.append(edited.as_bytes(), &genuine.signature);
    put_signature_image(&repo, &amd_digest, &img);
    let err = refused(env, "ox.pub", &amd);
    assert!(
        err.contains("does not verify") && err.contains("changed after signing"),
        "{err}"
    );

    // A valid signature for another digest, stored as this image's signature.
    let arm = format!("{}-arm64", w.plain);
    let arm_digest = digest_of(&arm);
    let signed_amd = digest_of(&format!("{}-amd64", w.signed));
    let signed_repo = Reference::parse(&w.signed).unwrap().without_tag();
    let (_, theirs) = signature_image(&signed_repo, &signed_amd);
    put_signature_image(&repo, &arm_digest, &theirs);
    let err = refused(env, "ox.pub", &arm);
    assert!(
        err.contains("another image") && err.contains(signed_amd.as_str()),
        "{err}"
    );

    // A signature blob the registry serves with other bytes than its digest says.
    let signed_arm = format!("{}-arm64", w.signed);
    let d = digest_of(&signed_arm);
    let (_, img) = signature_image(&signed_repo, &d);
    let (layer, payload) = img.layers().next().unwrap();
    let file = stored_blob(&w.reg, &layer.digest);
    let mut bad = payload.to_vec();
    bad[0] ^= 1;
    std::fs::write(&file, bad).unwrap();
    let err = refused(env, "ox.pub", &signed_arm);
    assert!(
        err.contains(layer.digest.as_str()) && err.contains("does not match"),
        "{err}"
    );

    // The same for `oxkit build`: with the signature blobs of the image it builds from (this
    // machine's architecture) and of the index both damaged, nothing vouches for it, and the
    // refusal says why.
    run_ok(&mut build_with_policy(env, "before", &w.signed, "release"));
    let index = digest_of(&w.signed);
    for d in [digest_of(&format!("{}-{}", w.signed, host_arch())), index] {
        let (_, img) = signature_image(&signed_repo, &d);
        let (layer, payload) = img.layers().next().unwrap();
        let mut bad = payload.to_vec();
        bad[0] ^= 1;
        std::fs::write(stored_blob(&w.reg, &layer.digest), bad).unwrap();
    }
    let e = run_fail(&mut build_with_policy(env, "damaged", &w.signed, "release"));
    for want in ["damaged.yml:2:5", "is unusable", "does not match"] {
        assert!(e.contains(want), "{want:?} missing from {e}");
    }
}

#[test]
fn cosign_bundles_and_the_trust_policy() {
    let w = world();
    let env = &w.env;
    // cosign v3's format: a Sigstore bundle attached as a referrer (distribution 2.8 has no
    // referrers API, so cosign lists it under the sha256-<hex> tag).
    run_ok(cosign(env, "kb").arg("generate-key-pair"));
    std::fs::write(env.path().join("predicate.json"), "{}").unwrap();
    let plain_digest = digest_of(&w.plain);
    let pinned = format!(
        "{}@{plain_digest}",
        Reference::parse(&w.plain).unwrap().name()
    );
    run_ok(cosign(env, "kb").args([
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
        &pinned,
    ]));
    let out = run_ok(
        env.oxkit()
            .args(["--json", "verify", "--key", "cosign.pub", &w.plain]),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(
        v["images"][0]["signatures"][0]["kind"], "sigstore-bundle",
        "{v}"
    );
    run_fail(env.oxkit().args(["verify", "--key", "ox.pub", &w.plain]));

    // `oxkit build`'s trust policy: a rule is met by a signature over the image built from
    // (oxkit signs each architecture's) or over the index its tag names (the bundle above).
    run_ok(&mut build_with_policy(env, "signed", &w.signed, "release"));
    run_ok(&mut build_with_policy(env, "bundled", &w.plain, "bundles"));
    let e = run_fail(&mut build_with_policy(
        env,
        "both",
        &w.plain,
        "release, bundles",
    ));
    // Its index: the bundle key signed it, the release key did not.
    for want in [
        w.plain.as_str(),
        "both.yml:2:5",
        "signed by bundles; not signed by release",
    ] {
        assert!(e.contains(want), "{want:?} missing from {e}");
    }
}
