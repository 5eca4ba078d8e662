//! A string that must never be shown: passwords, identity tokens, bearer tokens.
//!
//! [`Secret`] prints as `<redacted>` through both `Debug` and `Display`, so a secret that ends
//! up in a struct that is logged, or in an error, shows nothing. The value is reachable only
//! through [`Secret::expose`], which makes every use visible in review. The memory is zeroed on
//! drop. This module must not offer any way to format the value.

use std::fmt;

use zeroize::Zeroize;

/// A redacted string. `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for building a request header or a helper's input. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Read from JSON (config files, token responses) straight into a `Secret`.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <String as serde::Deserialize>::deserialize(d).map(Self)
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{s:#?}"), "<redacted>");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            user: String,
            password: Secret,
        }
        let h = Holder {
            user: "me".into(),
            password: s.clone(),
        };
        let shown = format!("{h:?} {h:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("me"), "{shown}");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }
}
