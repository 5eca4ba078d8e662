//! ECDSA P-256 keys in cosign's formats: the encrypted private-key PEM (`ENCRYPTED SIGSTORE
//! PRIVATE KEY`, or the older `ENCRYPTED COSIGN PRIVATE KEY`, holding PKCS#8 DER), plain PKCS#8
//! (`PRIVATE KEY`) and SEC1 (`EC PRIVATE KEY`) for import, and PKIX (`PUBLIC KEY`) public keys.
//!
//! Signatures are ECDSA over SHA-256, DER-encoded, as cosign makes them. Only P-256 is supported
//! (cosign's default); other key types are refused with a message saying so. Nothing here prints
//! or logs key material, and private bytes live in zeroizing buffers.

use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, VerifyingKey};
use pkcs8::der::Decode;
use pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rand_core::OsRng;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::encrypted::{self, EncryptedError};
use crate::passphrase::Passphrase;
use crate::pem::{self, PemError};

/// The PEM label cosign 2.x writes for encrypted private keys.
pub const SIGSTORE_PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The label older cosign releases wrote; still read.
pub const COSIGN_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
const PKCS8_LABEL: &str = "PRIVATE KEY";
const SEC1_LABEL: &str = "EC PRIVATE KEY";
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

/// Why a key cannot be read, written or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Any of the others, about a file.
    #[error("{}: {reason}", path.display())]
    InFile {
        path: PathBuf,
        reason: Box<KeyError>,
    },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} already exists; refusing to overwrite a key (remove it, choose another --output-key-prefix, or pass --force)",
        path.display()
    )]
    Exists { path: PathBuf },
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error(
        "no private key found (PEM blocks: {found}); expected {SIGSTORE_PRIVATE_KEY_LABEL}, {COSIGN_PRIVATE_KEY_LABEL}, {PKCS8_LABEL} or {SEC1_LABEL}"
    )]
    NoPrivateKey { found: String },
    #[error(
        "no public key found (PEM blocks: {found}); expected a {PUBLIC_KEY_LABEL} block such as cosign.pub"
    )]
    NoPublicKey { found: String },
    #[error("cannot decrypt the private key: {0}")]
    Encrypted(#[from] EncryptedError),
    #[error(
        "the private key is not encrypted; import it first with `oxkit key import` (or `cosign import-key-pair`)"
    )]
    NotEncrypted,
    #[error(
        "unsupported key: {0}; only ECDSA P-256 keys are supported (`oxkit key generate` and `cosign generate-key-pair` make those)"
    )]
    Unsupported(String),
    #[error("the {what} is malformed ({detail})")]
    Malformed { what: &'static str, detail: String },
    #[error("no passphrase: {0}")]
    Passphrase(String),
}

impl KeyError {
    pub(crate) fn in_file(self, path: impl Into<PathBuf>) -> Self {
        match self {
            e @ (Self::InFile { .. } | Self::Io { .. } | Self::Exists { .. }) => e,
            e => Self::InFile {
                path: path.into(),
                reason: Box::new(e),
            },
        }
    }
}

fn labels(blocks: &[pem::PemBlock]) -> String {
    blocks
        .iter()
        .map(|b| b.label.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An ECDSA P-256 private key. `Debug` prints only the public key's hint.
pub struct SigningKey {
    // p256's key zeroizes its scalar on drop.
    inner: p256::ecdsa::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {})", self.public_key().hint())
    }
}

impl SigningKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        Self {
            inner: p256::ecdsa::SigningKey::random(&mut OsRng),
        }
    }

    /// Whether PEM text holds an encrypted cosign private key (so a passphrase is needed).
    pub fn pem_is_encrypted(text: &str) -> bool {
        pem::parse_blocks(text).is_ok_and(|blocks| {
            blocks.iter().any(|b| {
                b.label == SIGSTORE_PRIVATE_KEY_LABEL || b.label == COSIGN_PRIVATE_KEY_LABEL
            })
        })
    }

    /// Reads cosign's encrypted private key PEM.
    pub fn from_encrypted_pem(text: &str, passphrase: &Passphrase) -> Result<Self, KeyError> {
        let blocks = pem::parse_blocks(text)?;
        let block = blocks
            .iter()
            .find(|b| b.label == SIGSTORE_PRIVATE_KEY_LABEL || b.label == COSIGN_PRIVATE_KEY_LABEL);
        let Some(block) = block else {
            if blocks
                .iter()
                .any(|b| b.label == PKCS8_LABEL || b.label == SEC1_LABEL)
            {
                return Err(KeyError::NotEncrypted);
            }
            return Err(KeyError::NoPrivateKey {
                found: labels(&blocks),
            });
        };
        let der = encrypted::open(&block.der, passphrase)?;
        Self::from_pkcs8_der(&der)
    }

    /// Reads an unencrypted PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) PEM, e.g. from
    /// `openssl genpkey` or `openssl ecparam -genkey` (whose `EC PARAMETERS` block is skipped).
    pub fn from_plain_pem(text: &str) -> Result<Self, KeyError> {
        let blocks = pem::parse_blocks(text)?;
        for b in &blocks {
            match b.label.as_str() {
                PKCS8_LABEL => return Self::from_pkcs8_der(&b.der),
                SEC1_LABEL => {
                    // SEC1 may name its curve; anything but P-256 fails to parse as P-256.
                    let secret = p256::SecretKey::from_sec1_der(&b.der).map_err(|e| {
                        KeyError::Unsupported(format!(
                            "EC PRIVATE KEY that is not a P-256 key ({e})"
                        ))
                    })?;
                    return Ok(Self {
                        inner: secret.into(),
                    });
                }
                SIGSTORE_PRIVATE_KEY_LABEL | COSIGN_PRIVATE_KEY_LABEL => {
                    return Err(KeyError::Malformed {
                        what: "import input",
                        detail: "this key is already in cosign's encrypted format".into(),
                    });
                }
                _ => {}
            }
        }
        Err(KeyError::NoPrivateKey {
            found: labels(&blocks),
        })
    }

    pub(crate) fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = pkcs8::PrivateKeyInfo::from_der(der).map_err(|e| KeyError::Malformed {
            what: "PKCS#8 private key",
            detail: e.to_string(),
        })?;
        let alg = info.algorithm.oid.to_string();
        if alg != OID_EC_PUBLIC_KEY {
            let name = match alg.as_str() {
                "1.2.840.113549.1.1.1" => "RSA".to_string(),
                "1.3.101.112" => "Ed25519".to_string(),
                other => format!("algorithm {other}"),
            };
            return Err(KeyError::Unsupported(name));
        }
        let curve = info
            .algorithm
            .parameters_oid()
            .map(|o| o.to_string())
            .unwrap_or_default();
        if curve != OID_P256 {
            let name = match curve.as_str() {
                "1.3.132.0.34" => "ECDSA P-384".to_string(),
                "1.3.132.0.35" => "ECDSA P-521".to_string(),
                other => format!("ECDSA on curve {other}"),
            };
            return Err(KeyError::Unsupported(name));
        }
        let secret = p256::SecretKey::from_pkcs8_der(der).map_err(|e| KeyError::Malformed {
            what: "PKCS#8 private key",
            detail: e.to_string(),
        })?;
        Ok(Self {
            inner: secret.into(),
        })
    }

    /// cosign's encrypted PEM (`ENCRYPTED SIGSTORE PRIVATE KEY`, scrypt N=65536 r=8 p=1, a fresh
    /// salt and nonce), ready to write to a `.key` file.
    pub fn to_encrypted_pem(&self, passphrase: &Passphrase) -> Result<Zeroizing<String>, KeyError> {
        let json = encrypted::seal(&self.to_pkcs8_der()?, passphrase)?;
        Ok(pem::encode(SIGSTORE_PRIVATE_KEY_LABEL, &json))
    }

    /// The private key as PKCS#8 DER (what cosign's key files and the kernel keyring hold).
    pub(crate) fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.inner
            .to_pkcs8_der()
            .map(|d| Zeroizing::new(d.as_bytes().to_vec()))
            .map_err(|e| KeyError::Malformed {
                what: "private key",
                detail: e.to_string(),
            })
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            inner: *self.inner.verifying_key(),
        }
    }

    /// ECDSA P-256 over SHA-256 of `message`, DER-encoded (what cosign base64-encodes into the
    /// `dev.cosignproject.cosign/signature` annotation). Deterministic (RFC 6979): the same key
    /// and message give the same signature, which keeps repeated signing idempotent.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: Signature = self.inner.sign(message);
        sig.to_der().as_bytes().to_vec()
    }
}

/// An ECDSA P-256 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    inner: VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.hint())
    }
}

/// A signature that does not verify under the key it was checked with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature is not a DER-encoded ECDSA signature")]
    Encoding,
    #[error(
        "the signature does not verify with this key (signed by another key, or the signed data changed after signing)"
    )]
    Mismatch,
}

impl PublicKey {
    /// Reads a PKIX `PUBLIC KEY` PEM (cosign.pub).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let blocks = pem::parse_blocks(text)?;
        let block = blocks
            .iter()
            .find(|b| b.label == PUBLIC_KEY_LABEL)
            .ok_or_else(|| KeyError::NoPublicKey {
                found: labels(&blocks),
            })?;
        let spki = pkcs8::spki::SubjectPublicKeyInfoRef::from_der(&block.der).map_err(|e| {
            KeyError::Malformed {
                what: "public key",
                detail: e.to_string(),
            }
        })?;
        let alg = spki.algorithm.oid.to_string();
        let curve = spki
            .algorithm
            .parameters_oid()
            .map(|o| o.to_string())
            .unwrap_or_default();
        if alg != OID_EC_PUBLIC_KEY || curve != OID_P256 {
            return Err(KeyError::Unsupported(format!(
                "public key algorithm {alg} {curve}"
            )));
        }
        let inner =
            VerifyingKey::from_public_key_der(&block.der).map_err(|e| KeyError::Malformed {
                what: "public key",
                detail: e.to_string(),
            })?;
        Ok(Self { inner })
    }

    fn der(&self) -> Vec<u8> {
        // Encoding a valid P-256 point as SPKI cannot fail.
        self.inner
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// PKIX `PUBLIC KEY` PEM, as cosign writes `cosign.pub`.
    pub fn to_pem(&self) -> String {
        pem::encode(PUBLIC_KEY_LABEL, &self.der()).to_string()
    }

    /// base64(SHA-256(PKIX DER)): the key hint Sigstore bundles carry, and a short public way
    /// to name a key in messages.
    pub fn hint(&self) -> String {
        STANDARD.encode(Sha256::digest(self.der()))
    }

    /// Checks a DER ECDSA signature over SHA-256 of `message`.
    pub fn verify(&self, message: &[u8], signature_der: &[u8]) -> Result<(), SignatureError> {
        let sig = Signature::from_der(signature_der).map_err(|_| SignatureError::Encoding)?;
        self.inner
            .verify(message, &sig)
            .map_err(|_| SignatureError::Mismatch)
    }

    /// Checks a DER ECDSA signature over an already computed SHA-256 digest.
    pub(crate) fn verify_prehash(
        &self,
        sha256: &[u8],
        signature_der: &[u8],
    ) -> Result<(), SignatureError> {
        let sig = Signature::from_der(signature_der).map_err(|_| SignatureError::Encoding)?;
        self.inner
            .verify_prehash(sha256, &sig)
            .map_err(|_| SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests;
