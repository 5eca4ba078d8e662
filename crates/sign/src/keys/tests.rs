use super::*;

const COSIGN_KEY: &str = include_str!("../../testdata/cosign.key");
const COSIGN_PUB: &str = include_str!("../../testdata/cosign.pub");
const OPENSSL_SEC1: &str = include_str!("../../testdata/openssl-sec1.pem");
const OPENSSL_PKCS8: &str = include_str!("../../testdata/openssl-pkcs8.pem");
const OPENSSL_PUB: &str = include_str!("../../testdata/openssl.pub");

fn pw(s: &str) -> Passphrase {
    Passphrase::from(s.to_string())
}

#[test]
fn loads_a_key_made_by_cosign() {
    let key = SigningKey::from_encrypted_pem(COSIGN_KEY, &pw("pw")).expect("cosign key");
    let public = PublicKey::from_pem(COSIGN_PUB).expect("cosign pub");
    assert_eq!(key.public_key(), public);
    // Our PEM of cosign's public key is byte-identical to the one cosign wrote.
    assert_eq!(public.to_pem(), COSIGN_PUB);
    // The hint cosign put in its bundles for this key.
    assert_eq!(
        public.hint(),
        "ykmLH1a6/YjWeWgZgDXK+UTZE/S/GwTnmxnLokjxH6g="
    );
}

#[test]
fn accepts_the_older_cosign_label() {
    let old = COSIGN_KEY.replace(SIGSTORE_PRIVATE_KEY_LABEL, COSIGN_PRIVATE_KEY_LABEL);
    assert!(SigningKey::pem_is_encrypted(&old));
    let key = SigningKey::from_encrypted_pem(&old, &pw("pw")).expect("old label");
    assert_eq!(
        key.public_key(),
        PublicKey::from_pem(COSIGN_PUB).expect("pub")
    );
}

#[test]
fn encrypted_round_trip_uses_cosign_layout() {
    let key = SigningKey::generate();
    let pem_text = key.to_encrypted_pem(&pw("pw")).expect("encrypt");
    assert!(pem_text.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    assert!(pem_text.lines().all(|l| l.len() <= 64));
    let blocks = pem::parse_blocks(&pem_text).expect("pem");
    let json: serde_json::Value = serde_json::from_slice(&blocks[0].der).expect("json");
    assert_eq!(json["kdf"]["params"]["N"], 65536);
    assert_eq!(json["cipher"]["name"], "nacl/secretbox");
    let back = SigningKey::from_encrypted_pem(&pem_text, &pw("pw")).expect("decrypt");
    assert_eq!(back.public_key(), key.public_key());
    // Fresh salt and nonce each time.
    assert_ne!(*key.to_encrypted_pem(&pw("pw")).expect("again"), *pem_text);
}

#[test]
fn wrong_passphrase_is_a_clear_error_without_secrets() {
    let err = SigningKey::from_encrypted_pem(COSIGN_KEY, &pw("not-the-pw")).expect_err("wrong");
    assert!(matches!(err, KeyError::Encrypted(EncryptedError::Decrypt)));
    let msg = err.to_string();
    assert!(msg.contains("wrong passphrase"), "{msg}");
    assert!(!msg.contains("not-the-pw"), "{msg}");
}

#[test]
fn truncated_pem_is_an_error() {
    let half = &COSIGN_KEY[..COSIGN_KEY.len() / 2];
    let err = SigningKey::from_encrypted_pem(half, &pw("pw")).expect_err("truncated");
    assert!(
        matches!(err, KeyError::Pem(PemError::Unterminated { .. })),
        "{err}"
    );
    // Lines cut from the middle: the END line survives, the JSON inside does not.
    let lines: Vec<&str> = COSIGN_KEY.lines().collect();
    let cut = format!("{}\n{}\n{}\n", lines[0], lines[1], lines[lines.len() - 1]);
    let err = SigningKey::from_encrypted_pem(&cut, &pw("pw")).expect_err("cut");
    assert!(
        matches!(
            err,
            KeyError::Encrypted(EncryptedError::Json(_)) | KeyError::Pem(_)
        ),
        "{err}"
    );
    let err = PublicKey::from_pem(&COSIGN_PUB[..60]).expect_err("truncated pub");
    assert!(matches!(err, KeyError::Pem(_)), "{err}");
}

#[test]
fn imports_sec1_and_pkcs8_from_openssl() {
    let a = SigningKey::from_plain_pem(OPENSSL_SEC1).expect("sec1");
    let b = SigningKey::from_plain_pem(OPENSSL_PKCS8).expect("pkcs8");
    let public = PublicKey::from_pem(OPENSSL_PUB).expect("pub");
    assert_eq!(a.public_key(), public);
    assert_eq!(b.public_key(), public);
    assert!(!SigningKey::pem_is_encrypted(OPENSSL_SEC1));
    assert!(matches!(
        SigningKey::from_encrypted_pem(OPENSSL_SEC1, &pw("x")),
        Err(KeyError::NotEncrypted)
    ));
    assert!(matches!(
        SigningKey::from_plain_pem(COSIGN_KEY),
        Err(KeyError::Malformed { .. })
    ));
    assert!(matches!(
        SigningKey::from_plain_pem(COSIGN_PUB),
        Err(KeyError::NoPrivateKey { .. })
    ));
}

#[test]
fn other_key_types_are_refused_by_name() {
    let p384 = include_str!("../../testdata/openssl-p384.pem");
    let ed = include_str!("../../testdata/openssl-ed25519.pem");
    let e = SigningKey::from_plain_pem(p384).expect_err("p384");
    assert!(e.to_string().contains("P-384"), "{e}");
    let e = SigningKey::from_plain_pem(ed).expect_err("ed25519");
    assert!(e.to_string().contains("Ed25519"), "{e}");
}

#[test]
fn signatures_verify_and_fail_as_they_should() {
    let key = SigningKey::generate();
    let public = key.public_key();
    let sig = key.sign(b"payload");
    public.verify(b"payload", &sig).expect("verifies");
    // Deterministic: signing again gives the same bytes.
    assert_eq!(key.sign(b"payload"), sig);
    assert_eq!(
        public.verify(b"payload!", &sig),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        SigningKey::generate().public_key().verify(b"payload", &sig),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        public.verify(b"payload", b"junk"),
        Err(SignatureError::Encoding)
    );
    let digest = Sha256::digest(b"payload");
    public.verify_prehash(&digest, &sig).expect("prehash");
}

#[test]
fn debug_does_not_show_private_material() {
    let key = SigningKey::from_encrypted_pem(COSIGN_KEY, &pw("pw")).expect("key");
    let dbg = format!("{key:?}");
    assert!(dbg.starts_with("SigningKey(public "), "{dbg}");
    assert!(dbg.contains(&key.public_key().hint()));
}
