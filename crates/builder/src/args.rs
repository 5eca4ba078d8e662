//! Build arguments with BuildKit's scoping: global ARGs (before the first FROM) are seen only
//! by FROM lines and by stages that redeclare them; a stage ARG takes the `--build-arg` value,
//! else its default (expanded where it is declared), else the global value; the automatic
//! platform ARGs (`TARGETPLATFORM`, `BUILDARCH`, ...) live in the global scope; the proxy ARGs
//! reach RUN without a declaration. ENV wins over ARG of the same name.
//!
//! Pure bookkeeping over strings; nothing here touches files.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use oxkit_spec::Platform;
use oxkit_spec::dockerfile::{ArgDef, EnvLookup, ExpandError, expand_word};

/// ARGs Docker lets through to RUN without a declaration (and leaves out of the history).
pub(crate) const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The `--build-arg` values of a build, remembering which ones a declaration used.
#[derive(Debug, Default)]
pub(crate) struct BuildArgs {
    values: BTreeMap<String, String>,
    used: RefCell<BTreeSet<String>>,
}

impl BuildArgs {
    pub(crate) fn new(values: BTreeMap<String, String>) -> Self {
        Self {
            values,
            used: RefCell::default(),
        }
    }

    /// The value given for `name`, marking it used.
    pub(crate) fn take(&self, name: &str) -> Option<String> {
        let v = self.values.get(name).cloned();
        if v.is_some() {
            self.used.borrow_mut().insert(name.to_string());
        }
        v
    }

    /// Proxy values given on the command line (they need no declaration).
    pub(crate) fn proxies(&self) -> Vec<(String, String)> {
        PROXY_ARGS
            .iter()
            .filter_map(|k| self.take(k).map(|v| (k.to_string(), v)))
            .collect()
    }

    /// Names given but never declared by the stages built (BuildKit warns about them).
    pub(crate) fn unused(&self) -> Vec<String> {
        let used = self.used.borrow();
        self.values
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect()
    }
}

/// The automatic platform ARGs for a build targeting `target` on `build`.
pub(crate) fn platform_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        out.push((format!("{prefix}PLATFORM"), p.to_string()));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((format!("{prefix}ARCH"), p.architecture.clone()));
        out.push((
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        ));
    }
    out
}

/// An ordered set of variables; a later definition replaces an earlier one in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Vars {
    list: Vec<(String, String)>,
}

impl Vars {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.list
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn set(&mut self, name: &str, value: String) {
        match self.list.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.list.push((name.to_string(), value)),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.list.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The global scope: automatic platform ARGs, then the global ARGs in order, each the
/// `--build-arg` value or its default expanded in the scope so far.
pub(crate) fn global_scope(
    defs: &[ArgDef],
    given: &BuildArgs,
    auto: &[(String, String)],
    escape: char,
) -> Result<Vars, (usize, ExpandError)> {
    let mut vars = Vars::default();
    for (k, v) in auto {
        vars.set(k, v.clone());
    }
    for def in defs {
        let value = match given.take(&def.name) {
            Some(v) => Some(v),
            None => match &def.default {
                Some(d) => {
                    let snapshot = vars.clone();
                    let lookup = move |n: &str| snapshot.get(n).map(str::to_string);
                    Some(expand_word(d, &lookup, escape).map_err(|e| (def.line, e))?)
                }
                None => None,
            },
        };
        if let Some(v) = value {
            vars.set(&def.name, v);
        }
    }
    Ok(vars)
}

/// The value a stage `ARG` declaration gets: `--build-arg`, else the default expanded in the
/// stage's environment `env`, else the global value (global ARGs and the platform ARGs).
pub(crate) fn stage_arg_value(
    def: &ArgDef,
    given: &BuildArgs,
    global: &Vars,
    env: EnvLookup<'_>,
    escape: char,
) -> Result<Option<String>, ExpandError> {
    if let Some(v) = given.take(&def.name) {
        return Ok(Some(v));
    }
    if let Some(d) = &def.default {
        return expand_word(d, env, escape).map(Some);
    }
    Ok(global.get(&def.name).map(str::to_string))
}

/// Parses a `--build-arg-file`: `KEY=VALUE` lines; blank lines and `#` comments are skipped;
/// a line `KEY` alone is refused (it has no value to give).
pub fn parse_build_arg_file(text: &str, file: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                    .unwrap_or(v);
                out.push((k.trim().to_string(), v.to_string()));
            }
            _ => {
                return Err(format!(
                    "{file}:{}: {line:?} is not KEY=VALUE; write one build argument per line as NAME=value",
                    i + 1
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, default: Option<&str>) -> ArgDef {
        ArgDef {
            name: name.into(),
            default: default.map(str::to_string),
            line: 1,
        }
    }

    #[test]
    fn global_scope_uses_build_args_then_defaults() {
        let given = BuildArgs::new([("B".to_string(), "given".to_string())].into());
        let auto = platform_args(
            &Platform::linux("arm64").unwrap(),
            &Platform::linux("amd64").unwrap(),
        );
        let g = global_scope(
            &[
                def("A", Some("a-$TARGETARCH")),
                def("B", Some("b")),
                def("C", None),
            ],
            &given,
            &auto,
            '\\',
        )
        .unwrap();
        assert_eq!(g.get("A"), Some("a-arm64"));
        assert_eq!(g.get("B"), Some("given"));
        assert_eq!(g.get("C"), None);
        assert_eq!(g.get("BUILDPLATFORM"), Some("linux/amd64"));
        assert_eq!(g.get("TARGETVARIANT"), Some(""));
        assert!(given.unused().is_empty());
    }

    #[test]
    fn stage_args() {
        let given = BuildArgs::new([("X".to_string(), "cli".to_string())].into());
        let mut global = Vars::default();
        global.set("G", "global".into());
        let env = |n: &str| (n == "E").then(|| "env".to_string());
        let v = |d: ArgDef| stage_arg_value(&d, &given, &global, &env, '\\').unwrap();
        assert_eq!(v(def("X", Some("dflt"))), Some("cli".into()));
        assert_eq!(v(def("Y", Some("${E}-y"))), Some("env-y".into()));
        assert_eq!(v(def("G", None)), Some("global".into()));
        assert_eq!(v(def("G", Some("mine"))), Some("mine".into()));
        assert_eq!(v(def("Z", None)), None);
    }

    #[test]
    fn unused_args_are_reported() {
        let given = BuildArgs::new(
            [
                ("A".to_string(), "1".to_string()),
                ("http_proxy".to_string(), "p".to_string()),
            ]
            .into(),
        );
        assert_eq!(
            given.proxies(),
            [("http_proxy".to_string(), "p".to_string())]
        );
        assert_eq!(given.unused(), ["A"]);
    }

    #[test]
    fn arg_files() {
        let got = parse_build_arg_file("# c\n\nA=1\nexport B=\"two words\"\nC=x=y\n", "f").unwrap();
        assert_eq!(
            got,
            [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "two words".to_string()),
                ("C".to_string(), "x=y".to_string())
            ]
        );
        let e = parse_build_arg_file("A=1\nNOPE\n", "args.env").unwrap_err();
        assert!(e.starts_with("args.env:2:"), "{e}");
    }
}
