//! Hashing bytes as they stream past, in the algorithm of the digest they must match
//! (`sha256`, or `sha512` which the OCI spec allows). Only hashing; the callers decide what a
//! mismatch means.

use oxkit_spec::{Digest, Sha256Hasher};
use sha2::Digest as _;

use crate::error::{Error, Result};

/// An incremental hash matching a digest's algorithm.
#[derive(Clone)]
pub(crate) enum Hasher {
    Sha256(Sha256Hasher),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A hasher for `expected`'s algorithm; `what` names the operation in the error.
    pub(crate) fn for_digest(expected: &Digest, what: &str) -> Result<Self> {
        match expected.algorithm() {
            "sha256" => Ok(Self::Sha256(Sha256Hasher::new())),
            "sha512" => Ok(Self::Sha512(sha2::Sha512::new())),
            _ => Err(Error::UnsupportedDigest {
                what: what.to_string(),
                digest: expected.clone(),
            }),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(bytes),
            Self::Sha512(h) => h.update(bytes),
        }
    }

    pub(crate) fn finish(self) -> Result<Digest> {
        match self {
            Self::Sha256(h) => Ok(h.finish()),
            Self::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize()))
                .parse()
                .map_err(|e: oxkit_spec::DigestError| Error::Protocol {
                    what: "hash content".into(),
                    url: String::new(),
                    reason: e.to_string(),
                }),
        }
    }
}

/// The digest of `bytes` in `like`'s algorithm.
pub(crate) fn digest_like(like: &Digest, bytes: &[u8], what: &str) -> Result<Digest> {
    let mut h = Hasher::for_digest(like, what)?;
    h.update(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_in_the_expected_algorithm() {
        let d = Digest::sha256(b"abc");
        assert_eq!(digest_like(&d, b"abc", "t").unwrap(), d);
        let d512: Digest = "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
            .parse()
            .unwrap();
        assert_eq!(digest_like(&d512, b"abc", "t").unwrap(), d512);
        let mut h = Hasher::for_digest(&d, "t").unwrap();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish().unwrap(), d);
    }
}
