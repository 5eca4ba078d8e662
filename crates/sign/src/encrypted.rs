//! The encrypted container inside cosign's private-key PEM (go-securesystemslib's `encrypted`
//! format): JSON `{"kdf":{"name":"scrypt","params":{"N":..,"r":8,"p":1},"salt":..},
//! "cipher":{"name":"nacl/secretbox","nonce":..},"ciphertext":..}` with base64 byte fields.
//! The key is scrypt(passphrase, salt) -> 32 bytes; the ciphertext is NaCl secretbox (XSalsa20-
//! Poly1305, tag first).
//!
//! Only the three scrypt parameter sets that format defines are accepted, so a hostile key file
//! cannot make us allocate gigabytes. This module knows nothing of PEM or keys.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::passphrase::Passphrase;

const KDF_SCRYPT: &str = "scrypt";
const CIPHER_SECRETBOX: &str = "nacl/secretbox";
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// (log2 N, r, p) that go-securesystemslib accepts: legacy, standard (the one it writes), OWASP.
const ALLOWED_PARAMS: [(u8, u32, u32); 3] = [(15, 8, 1), (16, 8, 1), (17, 8, 1)];
/// The standard set, which cosign writes.
const WRITE_LOG_N: u8 = 16;

/// Why an encrypted key container cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptedError {
    #[error("the encrypted key is not valid JSON ({0})")]
    Json(String),
    #[error("unsupported key derivation {0:?} (only scrypt is supported)")]
    Kdf(String),
    #[error("unsupported cipher {0:?} (only nacl/secretbox is supported)")]
    Cipher(String),
    #[error(
        "unsupported scrypt parameters N={n} r={r} p={p} (accepted: N=32768, 65536 or 131072 with r=8 p=1)"
    )]
    Params { n: u64, r: u32, p: u32 },
    #[error("the {field} is not {want} bytes of base64")]
    Field { field: &'static str, want: usize },
    #[error(
        "wrong passphrase, or the key file is damaged (decryption failed); check COSIGN_PASSWORD or the passphrase you typed"
    )]
    Decrypt,
}

#[derive(Serialize, Deserialize)]
struct Container {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn derive_key(
    passphrase: &Passphrase,
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, EncryptedError> {
    let bad = || EncryptedError::Params {
        n: 1u64 << log_n,
        r,
        p,
    };
    let params = scrypt::Params::new(log_n, r, p, 32).map_err(|_| bad())?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(passphrase.expose(), salt, &params, key.as_mut()).map_err(|_| bad())?;
    Ok(key)
}

/// Encrypts `plaintext` under `passphrase` with a fresh random salt and nonce; returns the JSON.
pub(crate) fn seal(plaintext: &[u8], passphrase: &Passphrase) -> Result<Vec<u8>, EncryptedError> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    seal_with(plaintext, passphrase, &salt, &nonce)
}

fn seal_with(
    plaintext: &[u8],
    passphrase: &Passphrase,
    salt: &[u8; SALT_LEN],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>, EncryptedError> {
    let key = derive_key(passphrase, salt, WRITE_LOG_N, 8, 1)?;
    let cipher = XSalsa20Poly1305::new(Key::from_slice(key.as_slice()));
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(nonce), plaintext)
        .map_err(|_| EncryptedError::Decrypt)?;
    let container = Container {
        kdf: Kdf {
            name: KDF_SCRYPT.to_string(),
            params: ScryptParams {
                n: 1 << WRITE_LOG_N,
                r: 8,
                p: 1,
            },
            salt: STANDARD.encode(salt),
        },
        cipher: Cipher {
            name: CIPHER_SECRETBOX.to_string(),
            nonce: STANDARD.encode(nonce),
        },
        ciphertext: STANDARD.encode(ciphertext),
    };
    Ok(crate::gojson::to_vec(&container))
}

/// Decrypts the JSON container. A wrong passphrase and a damaged ciphertext look the same
/// (the authenticator fails): [`EncryptedError::Decrypt`].
pub(crate) fn open(
    json: &[u8],
    passphrase: &Passphrase,
) -> Result<Zeroizing<Vec<u8>>, EncryptedError> {
    let c: Container =
        serde_json::from_slice(json).map_err(|e| EncryptedError::Json(e.to_string()))?;
    if c.kdf.name != KDF_SCRYPT {
        return Err(EncryptedError::Kdf(c.kdf.name));
    }
    if c.cipher.name != CIPHER_SECRETBOX {
        return Err(EncryptedError::Cipher(c.cipher.name));
    }
    let ScryptParams { n, r, p } = c.kdf.params;
    let log_n = ALLOWED_PARAMS
        .iter()
        .find(|(l, rr, pp)| 1u64 << l == n && *rr == r && *pp == p)
        .map(|(l, _, _)| *l)
        .ok_or(EncryptedError::Params { n, r, p })?;
    let salt = STANDARD
        .decode(&c.kdf.salt)
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or(EncryptedError::Field {
            field: "scrypt salt",
            want: SALT_LEN,
        })?;
    let nonce = STANDARD
        .decode(&c.cipher.nonce)
        .ok()
        .filter(|n| n.len() == NONCE_LEN)
        .ok_or(EncryptedError::Field {
            field: "secretbox nonce",
            want: NONCE_LEN,
        })?;
    let ciphertext = STANDARD
        .decode(&c.ciphertext)
        .map_err(|_| EncryptedError::Decrypt)?;
    let key = derive_key(passphrase, &salt, log_n, r, p)?;
    let cipher = XSalsa20Poly1305::new(Key::from_slice(key.as_slice()));
    cipher
        .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| EncryptedError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Passphrase {
        Passphrase::from(s.to_string())
    }

    #[test]
    fn seal_open_round_trip_and_format() {
        let json = seal_with(b"secret der", &pw("pw"), &[1; 32], &[2; 24]).expect("seal");
        let text = String::from_utf8(json.clone()).expect("utf8");
        // Field order and names exactly as go-securesystemslib writes them.
        assert!(
            text.starts_with(
                "{\"kdf\":{\"name\":\"scrypt\",\"params\":{\"N\":65536,\"r\":8,\"p\":1},\"salt\":\"AQEB"
            ),
            "{text}"
        );
        assert!(text.contains(",\"cipher\":{\"name\":\"nacl/secretbox\",\"nonce\":\"AgIC"));
        let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        let ct = STANDARD
            .decode(v["ciphertext"].as_str().expect("ciphertext"))
            .expect("b64");
        assert_eq!(ct.len(), b"secret der".len() + 16, "tag + ciphertext");
        assert_eq!(
            open(&json, &pw("pw")).expect("open").as_slice(),
            b"secret der"
        );
    }

    #[test]
    fn wrong_passphrase_fails_cleanly() {
        let json = seal(b"secret der", &pw("right")).expect("seal");
        let err = open(&json, &pw("wrong")).expect_err("must fail");
        assert_eq!(err, EncryptedError::Decrypt);
        assert!(!err.to_string().contains("wrong\""));
    }

    #[test]
    fn rejects_expensive_or_unknown_parameters() {
        let json = seal_with(b"x", &pw("pw"), &[1; 32], &[2; 24]).expect("seal");
        let text = String::from_utf8(json).expect("utf8");
        let huge = text.replace("\"N\":65536", "\"N\":1073741824");
        assert!(matches!(
            open(huge.as_bytes(), &pw("pw")),
            Err(EncryptedError::Params { n: 1073741824, .. })
        ));
        let other = text.replace("nacl/secretbox", "aes-gcm");
        assert!(matches!(
            open(other.as_bytes(), &pw("pw")),
            Err(EncryptedError::Cipher(_))
        ));
        assert!(matches!(
            open(b"{not json", &pw("pw")),
            Err(EncryptedError::Json(_))
        ));
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let json = seal_with(b"secret der", &pw("pw"), &[1; 32], &[2; 24]).expect("seal");
        let mut v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        let mut ct = STANDARD
            .decode(v["ciphertext"].as_str().expect("ct"))
            .expect("b64");
        ct[20] ^= 1;
        v["ciphertext"] = STANDARD.encode(ct).into();
        let bytes = serde_json::to_vec(&v).expect("json");
        assert_eq!(open(&bytes, &pw("pw")).err(), Some(EncryptedError::Decrypt));
    }
}
