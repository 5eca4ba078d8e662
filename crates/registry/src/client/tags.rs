//! Listing: a repository's tags (following `Link` pagination) and the manifests that refer
//! to a subject (the OCI 1.1 referrers API, or its `sha256-<hex>` tag fallback on registries
//! that answer 404, like distribution 2.8).

use oxkit_spec::{Digest, Reference};
use oxkit_store::oci::{self, Descriptor, ImageIndex, media_type as mt};
use reqwest::header::{ACCEPT, LINK};
use reqwest::{Method, StatusCode, Url};

use super::http::{Call, read_limited, refuse_html};
use super::manifest::{MANIFEST_LIMIT, referrers_tag};
use super::{Client, Host};
use crate::auth::Scope;
use crate::error::{Error, Result, display_url};

/// A bound on tag-list pages, so a registry that links in circles cannot keep us forever.
const MAX_TAG_PAGES: usize = 10_000;

/// The `rel="next"` target of a `Link` header, resolved against the request URL.
fn next_link(link: &str, base: &Url) -> Option<Url> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| base.join(target).ok())
            .flatten()
    })
}

impl Client {
    /// The tags of `r`'s repository, in the registry's order.
    pub fn list_tags(&self, r: &Reference) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let host = self.host(r)?;
        let what = format!("list tags of {}", r.name());
        let scope = Scope::pull(r.repository());
        let mut url = host.url(&format!("{}/tags/list", r.repository()))?;
        let mut tags = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let call = Call::new(&what, Method::GET, url.clone(), &scope);
            let resp = self.send(&host, &call)?;
            if !resp.status().is_success() {
                return Err(self.fail(&host, &call, resp));
            }
            refuse_html(&what, &host, &resp)?;
            let next = resp
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| next_link(l, &url));
            let bytes = read_limited(resp, 64 << 20, &what, "tag list")?;
            let page: TagList = self.parse_json(&host, &what, &url, &bytes)?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) if n != url => url = n,
                _ => return Ok(tags),
            }
        }
        Ok(tags)
    }

    fn parse_json<T: serde::de::DeserializeOwned>(
        &self,
        host: &Host,
        what: &str,
        url: &Url,
        bytes: &[u8],
    ) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| Error::NotJson {
            what: what.to_string(),
            host: host.registry.clone(),
            url: display_url(url),
            reason: e.to_string(),
        })
    }

    /// The manifests whose `subject` is `subject` (in `repo`'s repository), optionally only
    /// those of one artifact type. Uses the referrers API, or the fallback tag when the
    /// registry answers 404.
    pub fn referrers(
        &self,
        repo: &Reference,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let host = self.host(repo)?;
        let what = format!("list referrers of {}@{subject}", repo.name());
        let scope = Scope::pull(repo.repository());
        let mut url = host.url(&format!("{}/referrers/{subject}", repo.repository()))?;
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        let call = Call::new(&what, Method::GET, url.clone(), &scope).header(ACCEPT, mt::OCI_INDEX);
        let resp = self.send(&host, &call)?;
        let index = if resp.status() == StatusCode::NOT_FOUND {
            drop(resp);
            let tag = referrers_tag(subject);
            let tag_ref = repo.with_tag(&tag).map_err(|e| Error::BadUrl {
                url: format!("{}:{tag}", repo.name()),
                reason: e.reason,
            })?;
            match self.get_manifest(&tag_ref) {
                Ok(m) => {
                    oci::from_json::<ImageIndex>(&m.bytes, format!("referrers index {tag_ref}"))?
                }
                Err(e) if e.is_not_found() => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        } else if resp.status().is_success() {
            refuse_html(&what, &host, &resp)?;
            let bytes = read_limited(resp, MANIFEST_LIMIT, &what, "referrers index")?;
            self.parse_json::<ImageIndex>(&host, &what, &url, &bytes)?
        } else {
            return Err(self.fail(&host, &call, resp));
        };
        // Filter here too: registries may ignore `artifactType` (they then omit
        // `OCI-Filters-Applied`), and the fallback tag holds everything.
        Ok(index
            .manifests
            .into_iter()
            .filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        let base = Url::parse("https://r.example/v2/me/x/tags/list").unwrap();
        let n = next_link(r#"</v2/me/x/tags/list?n=2&last=b>; rel="next""#, &base).unwrap();
        assert_eq!(n.as_str(), "https://r.example/v2/me/x/tags/list?n=2&last=b");
        let n = next_link(
            r#"<https://o.example/p>; rel="prev", <https://o.example/q>; rel=next"#,
            &base,
        )
        .unwrap();
        assert_eq!(n.as_str(), "https://o.example/q");
        assert!(next_link(r#"</x>; rel="prev""#, &base).is_none());
        assert!(next_link("garbage", &base).is_none());
    }
}
