//! The registry operations publishing needs, as a small trait: implemented by
//! [`oxkit_registry::Client`] (every byte goes through it) and, in unit tests, by an in-memory
//! fake that can play a concurrent writer. Nothing here talks HTTP itself.

use oxkit_registry::{BlobUpload, Client, Manifest, Pushed, Result};
use oxkit_spec::{Digest, Reference};
use oxkit_store::oci::Descriptor;

/// The largest signature payload, bundle or referrer manifest read.
pub(crate) const SMALL_BLOB_LIMIT: u64 = 4 << 20;

/// What publishing asks of a registry.
pub(crate) trait Remote: Sync {
    /// Whether `r` exists, and its descriptor.
    fn head(&self, r: &Reference) -> Result<Option<Descriptor>>;
    /// The manifest or index `r` names, `None` when the registry says it does not exist.
    fn get(&self, r: &Reference) -> Result<Option<Manifest>>;
    /// Puts a manifest under `r`'s tag (or digest); returns its digest.
    fn put(&self, r: &Reference, media_type: &str, bytes: &[u8]) -> Result<Digest>;
    /// A small blob of `r`'s repository, verified against `digest`.
    fn get_blob(&self, r: &Reference, digest: &Digest) -> Result<Vec<u8>>;
    /// Uploads blobs the repository lacks.
    fn push_blobs(&self, r: &Reference, blobs: &[BlobUpload]) -> Result<Vec<Pushed>>;
    /// [`Remote::push_blobs`], calling `under_way` once the blobs' bytes are going (see
    /// [`Client::push_blobs_noting`]); by default, before they start.
    fn push_blobs_noting(
        &self,
        r: &Reference,
        blobs: &[BlobUpload],
        under_way: &(dyn Fn() + Sync),
    ) -> Result<Vec<Pushed>> {
        under_way();
        self.push_blobs(r, blobs)
    }
    /// Manifests whose subject is `subject` (referrers API or its tag fallback).
    fn referrers(&self, r: &Reference, subject: &Digest) -> Result<Vec<Descriptor>>;
}

impl Remote for Client {
    fn head(&self, r: &Reference) -> Result<Option<Descriptor>> {
        self.head_manifest(r)
    }

    fn get(&self, r: &Reference) -> Result<Option<Manifest>> {
        match self.get_manifest(r) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn put(&self, r: &Reference, media_type: &str, bytes: &[u8]) -> Result<Digest> {
        self.put_manifest(r, media_type, bytes)
    }

    fn get_blob(&self, r: &Reference, digest: &Digest) -> Result<Vec<u8>> {
        Client::get_blob(self, r, digest, SMALL_BLOB_LIMIT)
    }

    fn push_blobs(&self, r: &Reference, blobs: &[BlobUpload]) -> Result<Vec<Pushed>> {
        Client::push_blobs(self, r, blobs)
    }

    fn push_blobs_noting(
        &self,
        r: &Reference,
        blobs: &[BlobUpload],
        under_way: &(dyn Fn() + Sync),
    ) -> Result<Vec<Pushed>> {
        Client::push_blobs_noting(self, r, blobs, under_way)
    }

    fn referrers(&self, r: &Reference, subject: &Digest) -> Result<Vec<Descriptor>> {
        Client::referrers(self, r, subject, None)
    }
}

/// Puts a manifest whose blobs were just uploaded with `uploads`. Distribution can briefly
/// lose track of a blob that two clients uploaded at the same moment (both publishing one
/// package: a shared layer, identical signature blobs), and then refuses the manifest with
/// `MANIFEST_BLOB_UNKNOWN`; the blobs are pushed again (only what is missing goes up) and the
/// put retried, with jittered backoff.
pub(crate) fn put_after_blobs(
    remote: &dyn Remote,
    r: &Reference,
    media_type: &str,
    bytes: &[u8],
    uploads: &[BlobUpload],
) -> Result<Digest> {
    const ATTEMPTS: u32 = 5;
    let policy = oxkit_registry::RetryPolicy {
        max_attempts: ATTEMPTS,
        base_delay: std::time::Duration::from_millis(50),
        max_delay: std::time::Duration::from_secs(1),
    };
    let mut attempt = 1;
    loop {
        match remote.put(r, media_type, bytes) {
            Err(e)
                if attempt < ATTEMPTS
                    && e.status() == Some(400)
                    && e.body()
                        .is_some_and(|b| b.has_code("MANIFEST_BLOB_UNKNOWN")) =>
            {
                tracing::debug!("{r}: {e}; pushing its blobs again");
                std::thread::sleep(policy.backoff(attempt));
                attempt += 1;
                remote.push_blobs(r, uploads)?;
            }
            other => return other,
        }
    }
}

/// `r`'s repository with another tag.
pub(crate) fn retag(r: &Reference, tag: &str) -> Result<Reference, crate::PublishError> {
    r.without_tag()
        .with_tag(tag)
        .map_err(|e| crate::PublishError::Reference {
            reference: format!("{}:{tag}", r.name()),
            reason: e.reason,
        })
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory registry: tags, manifests and blobs, with a hook that runs before each
    //! manifest write so a test can play another process writing at the worst moment.

    use std::collections::HashMap;
    use std::sync::Mutex;

    use oxkit_registry::{BlobSource, BlobUpload, Error, Manifest, Pushed, Result};
    use oxkit_spec::{Digest, Reference};
    use oxkit_store::oci::{Descriptor, DocumentKind, sniff};

    use super::Remote;

    #[derive(Default)]
    pub(crate) struct State {
        /// `repo:tag` -> digest.
        pub(crate) tags: HashMap<String, Digest>,
        /// digest -> (media type, bytes), manifests and blobs alike.
        pub(crate) objects: HashMap<Digest, (String, Vec<u8>)>,
        pub(crate) uploads: usize,
        pub(crate) puts: usize,
    }

    /// Which operation a hook runs before.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Op {
        Get,
        Put,
    }

    /// Runs before each manifest read or write, with the registry's state: another process.
    pub(crate) type Hook = Box<dyn FnMut(&mut State, Op, &Reference) + Send>;

    #[derive(Default)]
    pub(crate) struct Fake {
        pub(crate) state: Mutex<State>,
        pub(crate) hook: Mutex<Option<Hook>>,
    }

    impl State {
        /// Stores an object and, with `r` tagged, points the tag at it.
        pub(crate) fn put(
            &mut self,
            r: Option<&Reference>,
            media_type: &str,
            bytes: &[u8],
        ) -> Digest {
            let d = Digest::sha256(bytes);
            self.objects
                .insert(d.clone(), (media_type.to_string(), bytes.to_vec()));
            if let Some(r) = r {
                self.tags.insert(key(r), d.clone());
            }
            d
        }
    }

    pub(crate) fn key(r: &Reference) -> String {
        format!("{}:{}", r.name(), r.tag().unwrap_or("latest"))
    }

    impl Fake {
        pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().expect("fake state")
        }

        pub(crate) fn tagged(&self, r: &Reference) -> Option<(String, Vec<u8>)> {
            let st = self.state();
            let d = st.tags.get(&key(r))?;
            st.objects.get(d).cloned()
        }

        pub(crate) fn set_hook(&self, hook: Hook) {
            *self.hook.lock().expect("hook") = Some(hook);
        }

        fn run_hook(&self, op: Op, r: &Reference) {
            if let Some(hook) = self.hook.lock().expect("hook").as_mut() {
                let mut st = self.state();
                hook(&mut st, op, r);
            }
        }

        fn lookup(&self, r: &Reference) -> Option<(Digest, String, Vec<u8>)> {
            let st = self.state();
            let d = match r.digest() {
                Some(d) => d.clone(),
                None => st.tags.get(&key(r))?.clone(),
            };
            let (m, b) = st.objects.get(&d)?.clone();
            Some((d, m, b))
        }
    }

    impl Remote for Fake {
        fn head(&self, r: &Reference) -> Result<Option<Descriptor>> {
            Ok(self
                .lookup(r)
                .map(|(d, m, b)| Descriptor::new(m, d, b.len() as u64)))
        }

        fn get(&self, r: &Reference) -> Result<Option<Manifest>> {
            self.run_hook(Op::Get, r);
            Ok(self.lookup(r).map(|(digest, media_type, bytes)| Manifest {
                media_type,
                digest,
                bytes,
            }))
        }

        fn put(&self, r: &Reference, media_type: &str, bytes: &[u8]) -> Result<Digest> {
            self.run_hook(Op::Put, r);
            // A registry refuses a manifest whose children it lacks.
            let children: Vec<Digest> = match sniff(bytes) {
                DocumentKind::Index => {
                    serde_json::from_slice::<oxkit_store::oci::ImageIndex>(bytes)
                        .map(|i| i.manifests.into_iter().map(|d| d.digest).collect())
                        .unwrap_or_default()
                }
                DocumentKind::Manifest => {
                    serde_json::from_slice::<oxkit_store::oci::ImageManifest>(bytes)
                        .map(|m| {
                            std::iter::once(m.config.digest)
                                .chain(m.layers.into_iter().map(|l| l.digest))
                                .collect()
                        })
                        .unwrap_or_default()
                }
                _ => Vec::new(),
            };
            let mut st = self.state();
            if let Some(missing) = children.iter().find(|c| !st.objects.contains_key(c)) {
                return Err(Error::Protocol {
                    what: format!("push manifest {r}"),
                    url: String::new(),
                    reason: format!("fake registry: child {missing} missing"),
                });
            }
            let d = Digest::sha256(bytes);
            st.puts += 1;
            st.objects
                .insert(d.clone(), (media_type.to_string(), bytes.to_vec()));
            if r.tag().is_some() {
                st.tags.insert(key(r), d.clone());
            }
            Ok(d)
        }

        fn get_blob(&self, _r: &Reference, digest: &Digest) -> Result<Vec<u8>> {
            let st = self.state();
            let (_, bytes) = st
                .objects
                .get(digest)
                .cloned()
                .ok_or_else(|| Error::Protocol {
                    what: format!("fetch blob {digest}"),
                    url: String::new(),
                    reason: "fake registry: no such blob".into(),
                })?;
            let actual = Digest::sha256(&bytes);
            if &actual != digest {
                return Err(Error::DigestMismatch {
                    what: format!("fetch blob {digest}"),
                    url: String::new(),
                    expected: digest.clone(),
                    actual,
                });
            }
            Ok(bytes)
        }

        fn push_blobs(&self, _r: &Reference, blobs: &[BlobUpload]) -> Result<Vec<Pushed>> {
            let mut out = Vec::new();
            for b in blobs {
                let mut st = self.state();
                if st.objects.contains_key(&b.digest) {
                    out.push(Pushed::AlreadyThere);
                    continue;
                }
                let bytes = match &b.source {
                    BlobSource::Bytes(bytes) => bytes.to_vec(),
                    BlobSource::File(p) => std::fs::read(p).expect("blob file"),
                };
                st.uploads += 1;
                st.objects
                    .insert(b.digest.clone(), ("blob".to_string(), bytes));
                out.push(Pushed::Transferred);
            }
            Ok(out)
        }

        fn referrers(&self, _r: &Reference, _subject: &Digest) -> Result<Vec<Descriptor>> {
            Ok(Vec::new())
        }
    }
}
