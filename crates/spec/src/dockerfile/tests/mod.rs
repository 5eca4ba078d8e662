//! Parser tests: expected parse trees for BuildKit's own fixtures and tricky cases, errors that
//! name their line, build-time expansion semantics, and a random-input robustness test.

use super::*;

mod errors;
mod expansion;
mod fuzz;
mod heredocs;
mod instructions;
mod structure;

fn parse(text: &str) -> Dockerfile {
    match Dockerfile::parse(text, "Dockerfile") {
        Ok(df) => df,
        Err(e) => panic!("parse failed: {e}\n---\n{text}"),
    }
}

/// The instruction kinds of the only stage of `FROM scratch` followed by `body`.
fn kinds(body: &str) -> Vec<InstructionKind> {
    let df = parse(&format!("FROM scratch\n{body}"));
    assert_eq!(df.stages.len(), 1, "{body}");
    df.stages[0]
        .instructions
        .iter()
        .map(|i| i.kind.clone())
        .collect()
}

fn kind(body: &str) -> InstructionKind {
    let mut all = kinds(body);
    assert_eq!(all.len(), 1, "{body}: {all:?}");
    all.remove(0)
}

fn err(text: &str) -> DockerfileError {
    match Dockerfile::parse(text, "Dockerfile") {
        Ok(df) => panic!("expected an error for\n{text}\ngot {df:?}"),
        Err(e) => e,
    }
}

fn shell(s: &str) -> CommandLine {
    CommandLine::Shell(s.to_string())
}

fn exec(args: &[&str]) -> CommandLine {
    CommandLine::Exec(args.iter().map(|s| s.to_string()).collect())
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: value.to_string(),
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
