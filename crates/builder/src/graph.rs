//! Which stages a build needs and in which order: the dependency graph from `FROM <stage>`,
//! `COPY --from=<stage|index>` and `RUN --mount from=<stage>`, walked from the target stage.
//! Names that are not stages are images. A cycle is an error naming the lines that form it.
//!
//! Pure: reads the parsed Dockerfile and the global ARGs; builds nothing.

use oxkit_spec::dockerfile::{Dockerfile, InstructionKind};

use crate::args::Vars;

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Base {
    Scratch,
    Stage(usize),
    /// An image reference (expanded).
    Image(String),
}

/// One stage's place in the graph.
#[derive(Debug, Clone)]
pub(crate) struct StageNode {
    pub(crate) base: Base,
    /// Stages it needs, with the line that needs each.
    pub(crate) deps: Vec<(usize, usize)>,
}

/// A `--from` value: a stage (by name or index) or an image.
pub(crate) fn resolve_from(df: &Dockerfile, from: &str, current: usize) -> Result<Base, String> {
    if let Ok(n) = from.parse::<usize>() {
        if n >= current {
            return Err(format!(
                "--from={n} refers to stage {n}, which is the current or a later stage; only earlier stages can be named by index"
            ));
        }
        return Ok(Base::Stage(n));
    }
    match df.stage(from) {
        Some((i, _)) => Ok(Base::Stage(i)),
        None => Ok(Base::Image(from.to_string())),
    }
}

/// The graph of every stage. `line_err` turns (line, message) into the caller's error.
pub(crate) fn build_graph(
    df: &Dockerfile,
    global: &Vars,
) -> Result<Vec<StageNode>, (usize, String)> {
    let escape = df.escape();
    let lookup = |n: &str| global.get(n).map(str::to_string);
    let mut nodes = Vec::with_capacity(df.stages.len());
    for (i, stage) in df.stages.iter().enumerate() {
        let base_text = stage
            .expand_base(&lookup, escape)
            .map_err(|e| (stage.line, e.to_string()))?;
        if base_text.is_empty() {
            return Err((
                stage.line,
                format!(
                    "FROM {:?} expands to an empty image name; give the ARG a value (ARG before FROM, or --build-arg)",
                    stage.base
                ),
            ));
        }
        let base = if base_text.eq_ignore_ascii_case("scratch") {
            Base::Scratch
        } else {
            match df.stage(&base_text) {
                Some((j, _)) if j != i => Base::Stage(j),
                Some(_) => {
                    return Err((
                        stage.line,
                        format!("stage {base_text:?} cannot be based on itself"),
                    ));
                }
                None => Base::Image(base_text),
            }
        };
        let mut deps = Vec::new();
        if let Base::Stage(j) = base {
            deps.push((j, stage.line));
        }
        for inst in &stage.instructions {
            match &inst.kind {
                InstructionKind::Copy(c) => {
                    if let Some(from) = &c.from
                        && let Base::Stage(j) =
                            resolve_from(df, from, i).map_err(|m| (inst.line, m))?
                    {
                        deps.push((j, inst.line));
                    }
                }
                InstructionKind::Run(r) => {
                    for m in &r.mounts {
                        let Ok(mount) = m.resolve_in(&lookup, escape) else {
                            continue; // reported when the step runs
                        };
                        if let Some(from) = &mount.from
                            && let Base::Stage(j) =
                                resolve_from(df, from, i).map_err(|m| (inst.line, m))?
                        {
                            deps.push((j, inst.line));
                        }
                    }
                }
                _ => {}
            }
        }
        nodes.push(StageNode { base, deps });
    }
    Ok(nodes)
}

/// The stages `target` needs, dependencies before dependents (each once), or the cycle.
pub(crate) fn build_order(
    df: &Dockerfile,
    nodes: &[StageNode],
    target: usize,
) -> Result<Vec<usize>, (usize, String)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; nodes.len()];
    let mut order = Vec::new();
    // (stage, next dependency to look at); the path is the active part of the stack.
    let mut stack: Vec<(usize, usize)> = vec![(target, 0)];
    marks[target] = Mark::Active;
    while let Some(&mut (stage, ref mut next)) = stack.last_mut() {
        if let Some(&(dep, line)) = nodes[stage].deps.get(*next) {
            *next += 1;
            match marks[dep] {
                Mark::Done => {}
                Mark::New => {
                    marks[dep] = Mark::Active;
                    stack.push((dep, 0));
                }
                Mark::Active => {
                    let start = stack.iter().position(|(s, _)| *s == dep).unwrap_or(0);
                    let mut text = Vec::new();
                    for (s, n) in &stack[start..] {
                        let via = nodes[*s].deps[n.saturating_sub(1)].1;
                        text.push(format!("{} (line {via})", name(df, *s)));
                    }
                    text.push(name(df, dep));
                    return Err((
                        line,
                        format!(
                            "stages depend on each other in a cycle: {}; break the cycle by copying from a stage that does not depend on this one",
                            text.join(" needs ")
                        ),
                    ));
                }
            }
            continue;
        }
        marks[stage] = Mark::Done;
        order.push(stage);
        stack.pop();
    }
    Ok(order)
}

/// How messages name a stage: `"build"` or `stage 2`.
pub(crate) fn name(df: &Dockerfile, i: usize) -> String {
    match df.stages.get(i).and_then(|s| s.name.as_deref()) {
        Some(n) => format!("stage {n:?}"),
        None => format!("stage {i}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(text: &str) -> Result<Vec<usize>, (usize, String)> {
        let df = Dockerfile::parse(text, "Dockerfile").unwrap();
        let nodes = build_graph(&df, &Vars::default())?;
        build_order(&df, &nodes, df.stages.len() - 1)
    }

    #[test]
    fn only_needed_stages_in_dependency_order() {
        let text = "FROM scratch AS unused\nFROM scratch AS a\nFROM a AS b\nFROM scratch AS c\nCOPY --from=b / /\nRUN --mount=type=bind,from=a,target=/m true\n";
        assert_eq!(order(text).unwrap(), [1, 2, 3]);
        assert_eq!(order("FROM alpine\nCOPY --from=0 / /\n").unwrap_err().0, 2);
        assert_eq!(
            order("FROM busybox AS x\nCOPY --from=nginx:1 / /\n").unwrap(),
            [0]
        );
    }

    #[test]
    fn cycles_name_their_lines() {
        let text = "FROM scratch AS a\nCOPY --from=b /x /x\nFROM scratch AS b\nCOPY --from=a /y /y\nFROM a\n";
        let (line, msg) = order(text).unwrap_err();
        assert_eq!(line, 4, "{msg}");
        assert!(
            msg.contains("stage \"a\" (line 2) needs stage \"b\" (line 4) needs stage \"a\""),
            "{msg}"
        );
    }
}
