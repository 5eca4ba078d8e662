//! Fixtures shared by the unit tests: artefacts captured from the real cosign 2.5 (see
//! testdata/README.md) and small helpers.

use std::collections::BTreeMap;

use oxkit_spec::digest::Digest;

use crate::keys::{PublicKey, SigningKey};
use crate::passphrase::Passphrase;

/// The image cosign signed for the fixtures.
pub(crate) const IMAGE: &str =
    "sha256:56333d65e1974031b2dc0b9a81c6c3db17ebfd49fbd3aa66fffd0f6bb72cdfa3";
pub(crate) const SIG_MANIFEST: &[u8] = include_bytes!("../testdata/sig-manifest.json");
pub(crate) const SIG_CONFIG: &[u8] = include_bytes!(
    "../testdata/blob-d198bce96f21e0d04731d317ee853bcec16bb90062434a403c79a1fd209c778c"
);
/// Payload signed by `cosign.key`.
pub(crate) const PAYLOAD_KEY1: &[u8] = include_bytes!(
    "../testdata/blob-cb0f20102673433c916264e1c8ab1fa386c7a1489a0c96b99e7a32dd049152c1"
);
/// Payload with annotations signed by the second key.
pub(crate) const PAYLOAD_KEY2: &[u8] = include_bytes!(
    "../testdata/blob-3bac683c8cf0d940af23e1da6387f0d3674decf8d21c33650354c7c50838b96b"
);

pub(crate) fn image() -> Digest {
    IMAGE.parse().expect("digest")
}

pub(crate) fn cosign_pub() -> PublicKey {
    PublicKey::from_pem(include_str!("../testdata/cosign.pub")).expect("cosign.pub")
}

pub(crate) fn cosign2_pub() -> PublicKey {
    PublicKey::from_pem(include_str!("../testdata/cosign2.pub")).expect("cosign2.pub")
}

pub(crate) fn cosign_key() -> SigningKey {
    SigningKey::from_encrypted_pem(
        include_str!("../testdata/cosign.key"),
        &Passphrase::from("pw".to_string()),
    )
    .expect("cosign.key")
}

/// The blobs of the fixture signature image, by digest.
pub(crate) fn sig_blobs() -> BTreeMap<Digest, Vec<u8>> {
    [PAYLOAD_KEY1, PAYLOAD_KEY2, SIG_CONFIG]
        .into_iter()
        .map(|b| (Digest::sha256(b), b.to_vec()))
        .collect()
}

/// The base64 signature annotations of the fixture manifest's layers, in order.
pub(crate) fn sig_annotations() -> Vec<String> {
    let m: serde_json::Value = serde_json::from_slice(SIG_MANIFEST).expect("manifest");
    m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            l["annotations"]["dev.cosignproject.cosign/signature"]
                .as_str()
                .expect("sig")
                .to_string()
        })
        .collect()
}
