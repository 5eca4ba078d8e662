//! [`Passphrase`]: the secret that unlocks an encrypted private key.
//!
//! It is zeroized when dropped and never printed: `Debug` and `Display` show `<redacted>`.
//! Finding the passphrase (environment, a configured command, a terminal prompt) is the binary's
//! job; this module must not read the environment or the terminal.

use std::fmt;

use zeroize::Zeroizing;

/// A key passphrase. Its bytes are wiped from memory on drop and never appear in output.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// Wraps raw bytes (a passphrase need not be UTF-8; cosign treats it as bytes).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Whether the passphrase is empty (cosign allows that; callers may want to warn).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether two passphrases are equal (for "enter it again" confirmation), in time that does
    /// not depend on where they first differ.
    pub fn matches(&self, other: &Passphrase) -> bool {
        let (a, b) = (self.0.as_slice(), other.0.as_slice());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl From<String> for Passphrase {
    fn from(s: String) -> Self {
        // Moves the String's buffer: no unzeroized copy is left behind.
        Self::new(s.into_bytes())
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl fmt::Display for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let p = Passphrase::from("hunter2-secret".to_string());
        assert_eq!(format!("{p:?}"), "Passphrase(<redacted>)");
        assert_eq!(p.to_string(), "<redacted>");
        assert!(!format!("{p:?}{p}{p:#?}").contains("hunter2"));
    }

    #[test]
    fn matches_compares_bytes() {
        let a = Passphrase::from("abc".to_string());
        assert!(a.matches(&Passphrase::new(b"abc".to_vec())));
        assert!(!a.matches(&Passphrase::new(b"abd".to_vec())));
        assert!(!a.matches(&Passphrase::new(b"abcd".to_vec())));
        assert!(Passphrase::new(Vec::new()).is_empty());
    }
}
