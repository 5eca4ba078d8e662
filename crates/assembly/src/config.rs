//! Loading the image YAML files of one build: each file is parsed with its name in every
//! location, its `@pkg:PATH` images are resolved relative to its own directory (by a callback:
//! this crate does not hash package sources), then the files are merged in command-line
//! order and the result validated.
//!
//! The directory of each file is remembered, because `files` entries' `source:` and
//! `trust.keys` paths are relative to the file that names them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oxkit_spec::SourceLoc;
use oxkit_spec::image_yaml::ImageYaml;

use crate::error::{Error, Result};

/// One image YAML given to the build.
#[derive(Clone, Debug)]
pub enum YamlInput {
    /// A file; its path as given is its name in messages.
    File(PathBuf),
    /// Text read elsewhere (standard input): its name in messages and the directory its
    /// relative paths start from.
    Text {
        name: String,
        text: String,
        dir: PathBuf,
    },
}

/// The merged, validated configuration of a build.
#[derive(Clone, Debug)]
pub struct Config {
    pub yaml: ImageYaml,
    /// Each file's name (as used in locations) and directory.
    dirs: BTreeMap<String, PathBuf>,
}

impl Config {
    /// Reads, parses, resolves and merges `inputs`, then validates the result.
    /// `resolve_pkg(dir)` returns the image reference (tag) of the package in `dir`.
    pub fn load(
        inputs: &[YamlInput],
        resolve_pkg: &mut dyn FnMut(&Path) -> std::result::Result<String, String>,
    ) -> Result<Config> {
        let mut files = Vec::with_capacity(inputs.len());
        let mut dirs = BTreeMap::new();
        for input in inputs {
            let (name, text, dir) = match input {
                YamlInput::File(path) => {
                    let text = fs_err::read_to_string(path).map_err(|e| Error::Input {
                        message: e.to_string(),
                    })?;
                    let dir = path
                        .parent()
                        .map(Path::to_path_buf)
                        .filter(|p| !p.as_os_str().is_empty())
                        .unwrap_or_else(|| PathBuf::from("."));
                    (path.display().to_string(), text, dir)
                }
                YamlInput::Text { name, text, dir } => (name.clone(), text.clone(), dir.clone()),
            };
            let mut y = ImageYaml::parse(&text, &name)?;
            y.resolve_pkg_refs_at(|pkg, _loc: &SourceLoc| resolve_pkg(&dir.join(pkg)))
                .map_err(|e| Error::Input {
                    message: e.to_string(),
                })?;
            dirs.insert(name, dir);
            files.push(y);
        }
        let yaml = ImageYaml::merge(files);
        yaml.validate()?;
        Ok(Config { yaml, dirs })
    }

    /// A configuration already in memory (tests, other front ends); relative paths start at
    /// `dir`.
    pub fn from_yaml(yaml: ImageYaml, dir: &Path) -> Result<Config> {
        yaml.validate()?;
        let mut dirs = BTreeMap::new();
        for loc in yaml.files.iter().map(|f| &f.loc) {
            dirs.insert(loc.file.to_string(), dir.to_path_buf());
        }
        for k in &yaml.trust.keys {
            dirs.insert(k.loc.file.to_string(), dir.to_path_buf());
        }
        Ok(Config { yaml, dirs })
    }

    /// What `--dry-run` prints: the merged configuration with `@pkg:` resolved.
    pub fn to_yaml_string(&self) -> String {
        self.yaml.to_yaml_string()
    }

    /// `path` as written in the file of `loc`: absolute as is, `~/` under `home`, otherwise
    /// relative to that file's directory.
    pub fn resolve_path(&self, loc: &SourceLoc, path: &str, home: Option<&Path>) -> PathBuf {
        if let Some(rest) = path.strip_prefix("~/")
            && let Some(home) = home
        {
            return home.join(rest);
        }
        let p = Path::new(path);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.dirs.get(&*loc.file) {
            Some(dir) => dir.join(p),
            None => p.to_path_buf(),
        }
    }
}
