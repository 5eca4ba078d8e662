//! Instruction flags (`--from=build`, `--link`, `--mount=...`) checked against what each
//! instruction accepts, with BuildKit's rules: booleans take no value or `=true`/`=false`,
//! strings need `=value`, repeatable flags collect every value, anything unknown or repeated
//! is an error. Values stay unexpanded.

use std::collections::BTreeMap;

use super::error::DockerfileErrorKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagType {
    Bool,
    String,
    /// May be given several times.
    Strings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Bool(bool),
    String(String),
    Strings(Vec<String>),
}

/// The flags given to one instruction, by name (without `--`).
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: BTreeMap<&'static str, Value>,
}

impl Flags {
    /// Checks `given` against `spec` for `instruction`.
    pub(crate) fn parse(
        instruction: &str,
        given: &[String],
        spec: &[(&'static str, FlagType)],
    ) -> Result<Self, DockerfileErrorKind> {
        let mut values = BTreeMap::new();
        for arg in given {
            if arg == "--" {
                break;
            }
            let Some(body) = arg.strip_prefix("--") else {
                return Err(invalid(instruction, arg, "flags start with --"));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let flag = format!("--{name}");
            let Some(&(key, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                return Err(DockerfileErrorKind::UnknownFlag {
                    instruction: instruction.to_string(),
                    flag,
                    allowed: allowed(instruction, spec),
                });
            };
            if values.contains_key(key) && kind != FlagType::Strings {
                return Err(invalid(
                    instruction,
                    &flag,
                    "given more than once; keep one",
                ));
            }
            match kind {
                FlagType::Bool => {
                    let v = match value.map(str::to_ascii_lowercase).as_deref() {
                        None | Some("true") => true,
                        Some("false") => false,
                        Some("") => return Err(missing_value(instruction, &flag)),
                        Some(_) => {
                            return Err(invalid(
                                instruction,
                                &flag,
                                "expects a boolean; write the flag alone, =true or =false",
                            ));
                        }
                    };
                    values.insert(key, Value::Bool(v));
                }
                FlagType::String => {
                    let v = value.ok_or_else(|| missing_value(instruction, &flag))?;
                    values.insert(key, Value::String(v.to_string()));
                }
                FlagType::Strings => {
                    let v = value.ok_or_else(|| missing_value(instruction, &flag))?;
                    if let Some(Value::Strings(list)) = values.get_mut(key) {
                        list.push(v.to_string());
                    } else {
                        values.insert(key, Value::Strings(vec![v.to_string()]));
                    }
                }
            }
        }
        Ok(Self { values })
    }

    pub(crate) fn bool(&self, name: &str) -> bool {
        matches!(self.values.get(name), Some(Value::Bool(true)))
    }

    /// `Some` when the boolean flag was given at all (`--keep-git-dir=false` is `Some(false)`).
    pub(crate) fn opt_bool(&self, name: &str) -> Option<bool> {
        match self.values.get(name) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// The value of a string flag; an empty value counts as not given, as in BuildKit.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        match self.values.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    }

    /// The value of a string flag exactly as given, even when empty.
    pub(crate) fn raw(&self, name: &str) -> Option<&str> {
        match self.values.get(name) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        match self.values.get(name) {
            Some(Value::Strings(v)) => v.clone(),
            _ => Vec::new(),
        }
    }
}

fn invalid(instruction: &str, flag: &str, message: &str) -> DockerfileErrorKind {
    DockerfileErrorKind::InvalidFlag {
        instruction: instruction.to_string(),
        flag: flag.to_string(),
        message: message.to_string(),
    }
}

fn missing_value(instruction: &str, flag: &str) -> DockerfileErrorKind {
    invalid(
        instruction,
        flag,
        "missing a value; write it as --name=value",
    )
}

fn allowed(instruction: &str, spec: &[(&'static str, FlagType)]) -> String {
    if spec.is_empty() {
        return format!("{instruction} takes no flags");
    }
    let names: Vec<String> = spec.iter().map(|(n, _)| format!("--{n}")).collect();
    format!("{instruction} accepts {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &[(&str, FlagType)] = &[
        ("link", FlagType::Bool),
        ("from", FlagType::String),
        ("exclude", FlagType::Strings),
    ];

    fn parse(given: &[&str]) -> Result<Flags, DockerfileErrorKind> {
        let given: Vec<String> = given.iter().map(|s| s.to_string()).collect();
        Flags::parse("COPY", &given, SPEC)
    }

    #[test]
    fn values() {
        let f = parse(&["--link", "--from=a", "--exclude=x", "--exclude=y"]).unwrap();
        assert!(f.bool("link"));
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert_eq!(f.strings("exclude"), ["x", "y"]);
        assert!(!parse(&["--link=FALSE"]).unwrap().bool("link"));
        assert_eq!(
            parse(&["--link=false"]).unwrap().opt_bool("link"),
            Some(false)
        );
        assert_eq!(parse(&[]).unwrap().opt_bool("link"), None);
        assert!(parse(&["--", "--bogus"]).is_ok());
    }

    #[test]
    fn errors() {
        let e = parse(&["--bogus"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown flag --bogus for COPY; COPY accepts --link, --from, --exclude"
        );
        assert!(
            parse(&["--from"])
                .unwrap_err()
                .to_string()
                .contains("missing a value")
        );
        assert!(
            parse(&["--link="])
                .unwrap_err()
                .to_string()
                .contains("missing a value")
        );
        assert!(
            parse(&["--link=maybe"])
                .unwrap_err()
                .to_string()
                .contains("boolean")
        );
        assert!(
            parse(&["--from=a", "--from=b"])
                .unwrap_err()
                .to_string()
                .contains("more than once")
        );
        assert!(parse(&["--exclude"]).is_err());
        let none = Flags::parse("ENV", &["--x".to_string()], &[]).unwrap_err();
        assert!(none.to_string().contains("ENV takes no flags"), "{none}");
    }
}
