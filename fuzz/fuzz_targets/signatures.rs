//! What a registry answers for signatures (cosign signature images, Sigstore bundles and their
//! referrers index) and key files: an error or a verdict, never a panic. The input is a
//! manifest, then a NUL, then the bytes every blob fetch returns.
#![no_main]

use std::convert::Infallible;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use oxkit_sign::bundle::{BundleArtifact, bundle_referrers};
use oxkit_sign::{PublicKey, SigningKey, verify_signature_image};
use oxkit_spec::Digest;

fn key() -> &'static PublicKey {
    static KEY: OnceLock<PublicKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().public_key())
}

fuzz_target!(|data: &[u8]| {
    let (manifest, blob) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let image = Digest::sha256(b"image");
    let fetch = |_: &_| Ok::<_, Infallible>(blob.to_vec());
    let _ = verify_signature_image(manifest, fetch, &image, key());
    if let Ok(b) = BundleArtifact::fetch(manifest, &image, fetch) {
        let _ = b.verify(&image, key());
    }
    let _ = bundle_referrers(manifest);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PublicKey::from_pem(text);
        let _ = SigningKey::from_plain_pem(text);
    }
});
