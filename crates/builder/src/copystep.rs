//! COPY and ADD as build steps: sources matched (wildcards, `.dockerignore`, `--from` a stage
//! or an image, heredocs, ADD's URLs and archives), the step's cache key from their content
//! digests, then the copy itself (`copy.rs`) into the materialised root filesystem and the
//! layer from the diff. Building on the executor in `exec.rs`; nothing here prints.

use std::path::PathBuf;

use oxkit_spec::dockerfile::{AddInstruction, CopyInstruction, CopySource};
use oxkit_spec::dockerignore::DockerIgnore;

use crate::cache;
use crate::copy::{self, CopyOptions, Item};
use crate::error::StepError;
use crate::exec::{Exec, StageState};
use crate::fsutil;
use crate::glob;
use crate::tree::{self, DirTree, Tree};
use crate::users;

impl Exec<'_> {
    pub(crate) fn copy_step(
        &mut self,
        stage_index: usize,
        st: &mut StageState,
        c: CopyLike<'_>,
    ) -> Result<(bool, bool), StepError> {
        let (sources, dest, chown, chmod, excludes, parents, from) = c.parts();
        if sources.len() > 1 && !dest.ends_with('/') {
            return Err(StepError::new(format!(
                "when using {} with more than one source file, the destination must be a directory and end with a /",
                c.name()
            )));
        }
        let dest_abs = fsutil::absolute(&st.workdir(), dest);
        let exclude = match excludes {
            [] => None,
            pats => Some(
                DockerIgnore::from_patterns(pats.iter())
                    .map_err(|e| StepError::new(format!("--exclude: {e}")))?,
            ),
        };
        let chmod = chmod.map(copy::parse_chmod).transpose()?;

        // Where sources come from, and what they are for the cache key.
        let from_root = match from {
            Some(f) => Some(self.source_root(stage_index, f, &st.platform)?),
            None => None,
        };
        let dir_tree = from_root.as_ref().map(|(_, root)| {
            DirTree::new(root.clone(), format!("--from={}", from.unwrap_or_default()))
        });
        let src_tree: &dyn Tree = match &dir_tree {
            Some(t) => t,
            None => self.context,
        };
        let mut inputs = Vec::new();
        let mut matched: Vec<(String, Vec<String>)> = Vec::new();
        let mut fetched: Vec<(String, PathBuf, String)> = Vec::new();
        for src in sources {
            match src {
                CopySource::Heredoc(doc) => {
                    inputs.push(serde_json::json!({"heredoc": doc.name, "content": doc.content}));
                }
                CopySource::Path(p) if c.is_add() && is_url(p) => {
                    let (path, digest) = self.fetch_url(p, c.checksum())?;
                    let name = url_file_name(p);
                    inputs.push(serde_json::json!({"url": p, "digest": digest}));
                    fetched.push((p.clone(), path, name));
                }
                CopySource::Path(p) if c.is_add() && is_git(p) => {
                    return Err(StepError::new(format!(
                        "ADD of a git repository ({p}) is not supported; clone it in a RUN step or add it to the package's extra-sources"
                    )));
                }
                CopySource::Path(p) => {
                    let rel = tree::clean_rel(p.trim_start_matches('/')).ok_or_else(|| {
                        StepError::new(format!(
                            "{} source {p:?} is outside {}; sources must be inside it",
                            c.name(),
                            src_tree.describe()
                        ))
                    })?;
                    let found = glob::expand(src_tree, &rel)?;
                    if found.is_empty() {
                        return Err(StepError::new(format!(
                            "{} source {p:?} not found in {}{}",
                            c.name(),
                            src_tree.describe(),
                            if from.is_none() {
                                " (is it excluded by .dockerignore?)"
                            } else {
                                ""
                            }
                        )));
                    }
                    match &from_root {
                        Some((key, _)) => {
                            inputs.push(serde_json::json!({"from": key, "paths": found}))
                        }
                        None => {
                            let mut hasher = oxkit_spec::Sha256Hasher::new();
                            for f in &found {
                                let ex = |path: &str| {
                                    exclude.as_ref().is_some_and(|e| {
                                        let inner = path
                                            .strip_prefix(f.as_str())
                                            .map(|s| s.trim_start_matches('/'))
                                            .unwrap_or(path);
                                        (!inner.is_empty() && e.is_excluded(inner, false))
                                            || e.is_excluded(path, false)
                                    })
                                };
                                let followed = src_tree.follow(f)?;
                                tree::content_digest(src_tree, &followed, &ex, &mut hasher)?;
                            }
                            inputs.push(serde_json::json!({"context": found, "digest": hasher.finish().as_str()}));
                        }
                    }
                    matched.push((p.clone(), found));
                }
            }
        }
        let material = serde_json::json!({
            "op": c.name(),
            "instr": c.debug(),
            "dest": dest_abs,
            "inputs": inputs,
            "platform": st.platform.to_string(),
        });
        let key = cache::step_key(&st.key, &material);
        if let Some(empty) = self.try_cache(st, &key)? {
            return Ok((true, empty));
        }
        let root = self.materialize(st)?;
        let owner = chown
            .map(|s| users::resolve_chown(s, Some(&root)))
            .transpose()?;
        let heredoc_dir = self.work.path().join(format!("heredoc-{}", self.step));
        let mut items: Vec<Item<'_>> = Vec::new();
        for src in sources {
            if let CopySource::Heredoc(doc) = src {
                std::fs::create_dir_all(&heredoc_dir)
                    .map_err(crate::error::io_step("create", &heredoc_dir))?;
                let host = heredoc_dir.join(items.len().to_string());
                std::fs::write(&host, doc.content.as_bytes())
                    .map_err(crate::error::io_step("write", &host))?;
                items.push(Item::File {
                    host,
                    name: doc.name.clone(),
                    mode: 0o644,
                });
            }
        }
        for (_, path, name) in &fetched {
            items.push(Item::File {
                host: path.clone(),
                name: name.clone(),
                mode: 0o600,
            });
        }
        for (_, found) in &matched {
            for f in found {
                if c.is_add() && c.unpack() != Some(false) {
                    let followed = src_tree.follow(f)?;
                    if let Some(tree::Node::Host { path, meta }) = src_tree.node(&followed)?
                        && meta.is_file()
                        && let Some(kind) = crate::archive::detect(&path)?
                    {
                        items.push(Item::Archive { host: path, kind });
                        continue;
                    }
                }
                items.push(Item::Tree {
                    tree: src_tree,
                    rel: f.clone(),
                });
            }
        }
        let opts = CopyOptions {
            owner,
            keep_owner: from.is_some(),
            chmod,
            excludes: exclude,
            parents,
        };
        let written = copy::copy_items(&root, &items, &dest_abs, sources.len() > 1, &opts)?;
        if let Some(r) = st.rootfs.as_mut() {
            r.record(written);
        }
        let empty = self.finish_step(st, &key)?;
        Ok((false, empty))
    }

    fn fetch_url(&self, url: &str, checksum: Option<&str>) -> Result<(PathBuf, String), StepError> {
        // The URL may carry credentials or a signed query: messages show it without them.
        let shown = oxkit_spec::url::redact(url);
        if !self.settings.network {
            return Err(StepError::new(format!(
                "ADD {shown} needs the network, which this package does not allow; set `network: true` in build.yml (or pass --network), or add the file to the package"
            )));
        }
        let fetcher = self.svc.urls.ok_or_else(|| {
            StepError::new(format!(
                "ADD {shown}: oxkit cannot download URLs in this build; put the file in the package (or its extra-sources) and ADD it from there"
            ))
        })?;
        let dir = self.work.path().join("downloads");
        std::fs::create_dir_all(&dir).map_err(crate::error::io_step("create", &dir))?;
        let path = dir.join(oxkit_spec::Digest::sha256(url.as_bytes()).hex());
        let mut out = HashingFile {
            file: std::fs::File::create(&path).map_err(crate::error::io_step("create", &path))?,
            hasher: oxkit_spec::Sha256Hasher::new(),
        };
        fetcher
            .fetch(url, &mut out)
            .map_err(|e| StepError::new(format!("ADD: {e}")))?;
        let digest = out.hasher.finish();
        if let Some(want) = checksum
            && want != digest.as_str()
        {
            return Err(StepError::new(format!(
                "ADD {shown}: checksum mismatch: expected {want}, got {digest}; fix --checksum or the URL"
            )));
        }
        Ok((path, digest.to_string()))
    }
}

struct HashingFile {
    file: std::fs::File,
    hasher: oxkit_spec::Sha256Hasher,
}

impl std::io::Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

fn is_git(s: &str) -> bool {
    s.starts_with("git@") || s.starts_with("git://") || (is_url(s) && s.ends_with(".git"))
}

/// The file name Docker gives a download: the last path segment of the URL.
fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or("");
    if name.is_empty() || path.matches('/').count() <= 2 {
        "index.html".to_string()
    } else {
        name.to_string()
    }
}

/// COPY or ADD, seen through what they share.
pub(crate) enum CopyLike<'a> {
    Copy(&'a CopyInstruction),
    Add(&'a AddInstruction),
}

type Parts<'a> = (
    &'a [CopySource],
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    &'a [String],
    bool,
    Option<&'a str>,
);

impl<'a> CopyLike<'a> {
    fn parts(&self) -> Parts<'a> {
        match self {
            Self::Copy(c) => (
                &c.sources,
                &c.dest,
                c.chown.as_deref(),
                c.chmod.as_deref(),
                &c.excludes,
                c.parents,
                c.from.as_deref(),
            ),
            Self::Add(a) => (
                &a.sources,
                &a.dest,
                a.chown.as_deref(),
                a.chmod.as_deref(),
                &a.excludes,
                false,
                None,
            ),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Copy(_) => "COPY",
            Self::Add(_) => "ADD",
        }
    }

    fn is_add(&self) -> bool {
        matches!(self, Self::Add(_))
    }

    fn unpack(&self) -> Option<bool> {
        match self {
            Self::Add(a) => a.unpack,
            Self::Copy(_) => Some(false),
        }
    }

    fn checksum(&self) -> Option<&'a str> {
        match self {
            Self::Add(a) => a.checksum.as_deref(),
            Self::Copy(_) => None,
        }
    }

    fn debug(&self) -> String {
        match self {
            Self::Copy(c) => format!("{c:?}"),
            Self::Add(a) => format!("{a:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_names() {
        assert_eq!(url_file_name("https://x.org/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(url_file_name("https://x.org"), "index.html");
        assert_eq!(url_file_name("https://x.org/"), "index.html");
        assert!(is_git("https://github.com/x/y.git"));
        assert!(!is_git("https://x.org/f.tgz"));
    }
}
