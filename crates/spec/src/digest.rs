//! Content digests (`sha256:<hex>`), validated once at the boundary so the rest of the code
//! never handles a digest string it has not checked.
//!
//! Only `sha256` is produced; `sha512` is accepted when reading, as the OCI spec allows.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256, Sha512};

/// A validated content digest such as `sha256:2c26b46b...`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    // Invariant: "<algorithm>:<lowercase hex of the algorithm's length>".
    text: String,
    split: usize,
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {input:?}: {reason} (expected sha256:<64 lowercase hex digits>)")]
pub struct DigestError {
    pub input: String,
    pub reason: &'static str,
}

impl Digest {
    /// The digest of `bytes` under SHA-256.
    pub fn sha256(bytes: &[u8]) -> Self {
        Self::from_sha256_bytes(Sha256::digest(bytes).into())
    }

    /// Wraps a raw 32-byte SHA-256 output.
    pub fn from_sha256_bytes(bytes: [u8; 32]) -> Self {
        Self {
            text: format!("sha256:{}", hex::encode(bytes)),
            split: 6,
        }
    }

    /// `sha256`
    pub fn algorithm(&self) -> &str {
        &self.text[..self.split]
    }

    /// The hex part, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.text[self.split + 1..]
    }

    /// The whole digest as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The digest of `bytes` in this digest's algorithm: what `bytes` must hash to if they are
    /// what this digest names.
    pub fn of_like(&self, bytes: &[u8]) -> Digest {
        let mut h = DigestHasher::for_digest(self);
        h.update(bytes);
        h.finish()
    }

    /// A short form for humans: the first 12 hex digits.
    pub fn short(&self) -> &str {
        let hex = self.hex();
        &hex[..hex.len().min(12)]
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| DigestError {
            input: s.to_string(),
            reason,
        };
        let (algo, hex) = s.split_once(':').ok_or_else(|| err("missing ':'"))?;
        let want = match algo {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err(err("unsupported algorithm")),
        };
        if hex.len() != want {
            return Err(err("wrong length"));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err("not lowercase hex"));
        }
        Ok(Self {
            text: s.to_string(),
            split: algo.len(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental SHA-256 that yields a [`Digest`]; used wherever bytes stream past.
#[derive(Default, Clone)]
pub struct Sha256Hasher(Sha256);

impl Sha256Hasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    pub fn finish(self) -> Digest {
        Digest::from_sha256_bytes(self.0.finalize().into())
    }
}

/// Incremental hash in a digest's algorithm, SHA-256 or SHA-512 (the two the OCI image spec
/// registers, and the only ones a [`Digest`] can hold): how bytes streaming past are checked
/// against the digest they must have.
#[derive(Clone)]
pub enum DigestHasher {
    Sha256(Sha256Hasher),
    Sha512(Sha512),
}

impl DigestHasher {
    /// A hasher in `expected`'s algorithm.
    pub fn for_digest(expected: &Digest) -> Self {
        match expected.algorithm() {
            "sha512" => Self::Sha512(Sha512::new()),
            _ => Self::Sha256(Sha256Hasher::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(bytes),
            Self::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        match self {
            Self::Sha256(h) => h.finish(),
            Self::Sha512(h) => Digest {
                text: format!("sha512:{}", hex::encode(h.finalize())),
                split: 6,
            },
        }
    }
}

impl std::io::Write for Sha256Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashers_follow_the_expected_digest() {
        let d256 = Digest::sha256(b"abc");
        assert_eq!(d256.of_like(b"abc"), d256);
        assert_ne!(d256.of_like(b"abd"), d256);
        // FIPS 180-2's SHA-512 of "abc".
        let d512: Digest = "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
            .parse()
            .expect("digest");
        assert_eq!(d512.of_like(b"abc"), d512);
        let mut h = DigestHasher::for_digest(&d512);
        h.update(b"a");
        h.update(b"bc");
        let got = h.finish();
        assert_eq!(got, d512);
        assert_eq!(got.algorithm(), "sha512");
        assert_eq!(got.as_str().parse::<Digest>().expect("reparses"), got);
    }

    #[test]
    fn sha256_of_empty_matches_known_value() {
        let d = Digest::sha256(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.algorithm(), "sha256");
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn parse_round_trips_and_rejects_bad_input() {
        let s = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d: Digest = s.parse().unwrap();
        assert_eq!(d.to_string(), s);
        assert_eq!(d.hex().len(), 64);
        for bad in [
            "",
            "sha256",
            "sha256:abc",
            "md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn hasher_matches_one_shot() {
        let mut h = Sha256Hasher::new();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), Digest::sha256(b"hello world"));
    }
}
