//! Authentication against registries: which scheme a registry wants (learned from its
//! `WWW-Authenticate` challenge), the access scopes a request needs, bearer tokens fetched
//! from the registry's token service and cached until they expire, and the `Authorization`
//! header built from them.
//!
//! This module decides what to send; it never logs or formats a credential or a token (they
//! stay in [`Secret`]s and in header values marked sensitive).

pub(crate) mod challenge;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::Url;
use reqwest::header::HeaderValue;

use crate::credentials::Credentials;
use crate::secret::Secret;

/// What a registry asked for in its challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthScheme {
    /// `/v2/` answered without a challenge.
    Anonymous,
    /// HTTP basic on every request.
    Basic,
    /// Bearer tokens from `realm` (the token service) for `service`.
    Bearer { realm: Url, service: Option<String> },
}

impl AuthScheme {
    /// The scheme a set of `WWW-Authenticate` header values asks for; Bearer wins over Basic
    /// because it is what registries that offer both expect of API clients.
    pub(crate) fn from_headers<'a>(
        values: impl Iterator<Item = &'a str>,
        base: &Url,
    ) -> (Option<Self>, Scope) {
        let challenges: Vec<_> = values.flat_map(challenge::parse).collect();
        let mut scope = Scope::default();
        if let Some(b) = challenges.iter().find(|c| c.scheme == "bearer")
            && let Some(realm) = b.param("realm")
        {
            if let Some(s) = b.param("scope") {
                scope.add_all(s);
            }
            // A relative realm is resolved against the registry (seen on some proxies).
            if let Ok(realm) = base.join(realm) {
                return (
                    Some(Self::Bearer {
                        realm,
                        service: b.param("service").map(str::to_string),
                    }),
                    scope,
                );
            }
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            return (Some(Self::Basic), scope);
        }
        (None, scope)
    }
}

/// The access a request needs, as token-service scopes (`repository:NAME:pull,push`). Kept
/// sorted so equal sets make equal cache keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Scope(BTreeSet<String>);

impl Scope {
    pub(crate) fn pull(repository: &str) -> Self {
        let mut s = Self::default();
        s.0.insert(format!("repository:{repository}:pull"));
        s
    }

    pub(crate) fn push(repository: &str) -> Self {
        let mut s = Self::default();
        s.0.insert(format!("repository:{repository}:pull,push"));
        s
    }

    /// Adds pull access to another repository (the source of a cross-repository mount).
    pub(crate) fn with_pull(mut self, repository: &str) -> Self {
        self.0.insert(format!("repository:{repository}:pull"));
        self
    }

    /// Adds space-separated scopes from a challenge.
    pub(crate) fn add_all(&mut self, scopes: &str) -> bool {
        let mut grew = false;
        for s in scopes.split_whitespace() {
            grew |= self.0.insert(s.to_string());
        }
        grew
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    fn key(&self) -> String {
        self.0.iter().cloned().collect::<Vec<_>>().join(" ")
    }
}

/// Cached bearer tokens, keyed by token service and scope set.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, (Secret, Instant)>>,
}

/// How long before its expiry a token is no longer handed out (a request must not start with
/// a token that lapses in flight).
const EXPIRY_MARGIN: Duration = Duration::from_secs(15);

/// Token services that omit `expires_in` mean 60 seconds (the distribution token spec).
pub(crate) const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

impl TokenCache {
    pub(crate) fn key(realm: &Url, service: Option<&str>, scope: &Scope) -> String {
        format!("{realm}|{}|{}", service.unwrap_or(""), scope.key())
    }

    pub(crate) fn get(&self, key: &str) -> Option<Secret> {
        let map = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key)
            .filter(|(_, exp)| Instant::now() + EXPIRY_MARGIN < *exp)
            .map(|(t, _)| t.clone())
    }

    pub(crate) fn put(&self, key: String, token: Secret, lifetime: Duration) {
        let mut map = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.insert(key, (token, Instant::now() + lifetime));
    }

    pub(crate) fn forget(&self, key: &str) {
        let mut map = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(key);
    }
}

/// A token service's answer (distribution's token spec and OAuth2's spelling).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub(crate) token: Option<Secret>,
    #[serde(default)]
    pub(crate) access_token: Option<Secret>,
    #[serde(default)]
    pub(crate) expires_in: Option<u64>,
}

impl TokenResponse {
    pub(crate) fn into_token(self) -> Option<(Secret, Duration)> {
        let lifetime = self
            .expires_in
            .filter(|s| *s > 0)
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        self.token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))
            .map(|t| (t, lifetime))
    }
}

/// `Basic base64(user:password)`, marked sensitive so no `Debug` of a request shows it.
pub(crate) fn basic_header(username: &str, password: &Secret) -> Option<HeaderValue> {
    let encoded = Secret::new(BASE64.encode(format!("{username}:{}", password.expose())));
    sensitive(&format!("Basic {}", encoded.expose()))
}

/// `Bearer TOKEN`, marked sensitive.
pub(crate) fn bearer_header(token: &Secret) -> Option<HeaderValue> {
    sensitive(&format!("Bearer {}", token.expose()))
}

fn sensitive(text: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(text).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// The credentials usable with HTTP basic (a refresh token cannot be).
pub(crate) fn basic_credentials(creds: Option<&Credentials>) -> Option<(&str, &Secret)> {
    match creds {
        Some(Credentials::Basic { username, password }) => Some((username, password)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_from_challenges() {
        let base = Url::parse("https://reg.example/").unwrap();
        let (s, scope) = AuthScheme::from_headers(
            [r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull""#].into_iter(),
            &base,
        );
        assert_eq!(
            s,
            Some(AuthScheme::Bearer {
                realm: Url::parse("https://auth.example/token").unwrap(),
                service: Some("reg".into())
            })
        );
        assert_eq!(scope.iter().collect::<Vec<_>>(), ["repository:a/b:pull"]);
        let (s, _) = AuthScheme::from_headers([r#"Basic realm="x""#].into_iter(), &base);
        assert_eq!(s, Some(AuthScheme::Basic));
        let (s, _) = AuthScheme::from_headers(
            [r#"Basic realm="x""#, r#"Bearer realm="/token""#].into_iter(),
            &base,
        );
        assert!(
            matches!(&s, Some(AuthScheme::Bearer { realm, .. }) if realm.as_str() == "https://reg.example/token"),
            "{s:?}"
        );
        assert_eq!(
            AuthScheme::from_headers(["Negotiate"].into_iter(), &base).0,
            None
        );
    }

    #[test]
    fn scopes_sort_and_merge() {
        let s = Scope::push("me/app").with_pull("me/base");
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            ["repository:me/app:pull,push", "repository:me/base:pull"]
        );
        let mut t = Scope::pull("x");
        assert!(t.add_all("repository:y:pull repository:x:pull"));
        assert!(!t.add_all("repository:y:pull"));
        assert_eq!(t.key(), "repository:x:pull repository:y:pull");
    }

    #[test]
    fn tokens_expire_with_margin() {
        let c = TokenCache::default();
        c.put("k".into(), Secret::new("t1"), Duration::from_secs(300));
        assert_eq!(
            c.get("k").map(|t| t.expose().to_string()),
            Some("t1".into())
        );
        c.put("short".into(), Secret::new("t2"), Duration::from_secs(5));
        assert!(
            c.get("short").is_none(),
            "a token about to expire must not be reused"
        );
        c.forget("k");
        assert!(c.get("k").is_none());
    }

    #[test]
    fn token_response_spellings() {
        let r: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_in":120}"#).unwrap();
        let (t, life) = r.into_token().unwrap();
        assert_eq!((t.expose(), life), ("a", Duration::from_secs(120)));
        let r: TokenResponse = serde_json::from_str(r#"{"token":"t","access_token":"a"}"#).unwrap();
        let (t, life) = r.into_token().unwrap();
        assert_eq!((t.expose(), life), ("t", DEFAULT_TOKEN_LIFETIME));
        let r: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert!(r.into_token().is_none());
        // Debug of the parsed response must not show the token.
        let r: TokenResponse = serde_json::from_str(r#"{"token":"sekrit-token"}"#).unwrap();
        assert!(!format!("{r:?}").contains("sekrit"));
    }

    #[test]
    fn auth_headers_are_sensitive() {
        let h = basic_header("u", &Secret::new("p")).unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Basic dTpw");
        let h = bearer_header(&Secret::new("tok")).unwrap();
        assert!(h.is_sensitive());
        assert!(!format!("{h:?}").contains("tok"));
    }
}
