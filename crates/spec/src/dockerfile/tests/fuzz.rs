//! Random input never panics: Dockerfile-shaped text built from fragments that exercise every
//! path (directives, continuations, heredocs, quotes, flags, JSON, `${...}`), plus raw noise.
//! A fixed-seed generator keeps failures reproducible.

use super::*;

use oxkit_testkit::Rng;

const FRAGMENTS: &[&str] = &[
    "FROM",
    "from",
    "RUN",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "LABEL",
    "CMD",
    "ENTRYPOINT",
    "SHELL",
    "WORKDIR",
    "USER",
    "EXPOSE",
    "VOLUME",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "ONBUILD",
    "MAINTAINER",
    "AS",
    "NONE",
    "CMD",
    " ",
    " ",
    " ",
    "\t",
    "\n",
    "\n",
    "\r\n",
    "\\",
    "\\\n",
    "`",
    "`\n",
    "#",
    "# escape=`\n",
    "# syntax=x\n",
    "<<",
    "<<-",
    "<<EOF",
    "<<'EOF'",
    "<<\"E\"",
    "EOF",
    "\tEOF",
    "3<<",
    "'",
    "\"",
    "[",
    "]",
    "[\"a\", \"b\"]",
    "[1]",
    ",",
    "=",
    "a=b",
    "k=\"v w\"",
    "$",
    "${",
    "}",
    "${A:-x}",
    "${A#*}",
    "${A%%.*}",
    "${A/x/y}",
    "${A//",
    "${A:?}",
    "$A",
    "--",
    "--from=",
    "--mount=",
    "type=cache,target=/c",
    "type=secret",
    "type=bind,mode=1",
    ",ro",
    ",uid=$U",
    "--network=none",
    "--link",
    "--chown=a",
    "--platform=$P",
    "--interval=5s",
    "--retries=2",
    "/",
    "/x",
    "a",
    "b",
    "é",
    "\u{a0}",
    "\u{feff}",
    "0",
    "-",
    ":",
    "*",
    "?",
    "{",
    "$$",
];

/// Instruction lines that parse, so mutations of them reach deep paths.
const TEMPLATES: &[&str] = &[
    "RUN echo hi",
    "RUN <<EOF\necho $A\nEOF",
    "RUN <<-'E' python3\n\tprint(1)\n\tE",
    "COPY <<-E <<F /x/\n\tbody $A\n\tE\nf\nF",
    "ENV a=b c=\"d e\" f=${A:-g}",
    "ENV legacy value here",
    "ARG X=${Y:-z} W",
    "LABEL k=v \"q k\"='v w'",
    "CMD [\"a\", \"$B\"]",
    "ENTRYPOINT exec x",
    "EXPOSE 80 $P 53/udp",
    "HEALTHCHECK --interval=5s --retries=3 CMD x",
    "HEALTHCHECK NONE",
    "ONBUILD RUN x",
    "ONBUILD COPY <<E /e\ne\nE",
    "RUN --mount=type=cache,target=/c,id=$A --network=none x",
    "RUN --mount=type=secret,id=s,required x",
    "WORKDIR ${A#*}/${B%%.*}",
    "USER $U:${G/x/y}",
    "VOLUME [\"/v\", \"$V\"]",
    "ADD --checksum=$C --keep-git-dir a b",
    "SHELL [\"sh\",\"-c\"]",
    "STOPSIGNAL 9",
    "FROM --platform=$P b AS c",
    "COPY --from=c --chown=$U --exclude=*.md a \"b\" /d",
    "RUN a \\\n  # comment\n\n  b",
    "# comment",
    "",
    "MAINTAINER me",
];

fn mutate(line: &str, rng: &mut Rng) -> String {
    let mut chars: Vec<char> = line.chars().collect();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(chars.len() + 1);
        match rng.below(3) {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 => {
                let c = char::from_u32(rng.below(0x3000) as u32).unwrap_or('x');
                chars.insert(at, c);
            }
            _ => {
                for c in rng.pick(FRAGMENTS).chars().rev() {
                    chars.insert(at, c);
                }
            }
        }
    }
    chars.into_iter().collect()
}

fn random_dockerfile(rng: &mut Rng) -> String {
    let mut text = String::new();
    if rng.below(4) == 0 {
        text.push_str(rng.pick(&["# escape=`\n", "# syntax=x\n# check=y\n", "\u{feff}"]));
    }
    if rng.below(8) != 0 {
        text.push_str("FROM a\n");
    }
    for _ in 0..rng.below(12) {
        let line = rng.pick(TEMPLATES);
        let line = if rng.below(3) == 0 {
            mutate(line, rng)
        } else {
            line.to_string()
        };
        text.push_str(&line);
        text.push_str(rng.pick(&["\n", "\n", "\r\n", " \\\n", "\n\n"]));
    }
    if rng.below(10) == 0 {
        // Pure noise now and then.
        for _ in 0..rng.below(40) {
            text.push_str(rng.pick(FRAGMENTS));
        }
    }
    text
}

fn exercise(df: &Dockerfile, rng: &mut Rng) {
    let values = ["", "x", "a b", "${", "*", "\\"];
    let value = values[rng.below(values.len())].to_string();
    let env = move |k: &str| k.len().is_multiple_of(2).then(|| value.clone());
    for arg in &df.global_args {
        let _ = arg
            .default
            .as_deref()
            .map(|d| expand_word(d, &env, df.escape()));
    }
    for stage in &df.stages {
        let _ = stage.expand_base(&env, df.escape());
        let _ = stage.expand_platform(&env, df.escape());
        for ins in &stage.instructions {
            let _ = ins.kind.expand(&env, df.escape());
            if let InstructionKind::Run(run) = &ins.kind {
                let _ = run.script();
                let _ = run.resolve_mounts(&env, df.escape());
            }
            if let InstructionKind::Healthcheck(hc) = &ins.kind {
                let _ = hc.test();
            }
        }
    }
}

#[test]
fn random_dockerfiles_never_panic() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for _ in 0..4000 {
        let text = random_dockerfile(&mut rng);
        match Dockerfile::parse(&text, "Dockerfile") {
            Ok(df) => {
                parsed += 1;
                exercise(&df, &mut rng);
            }
            Err(e) => {
                // Every error names a line inside the file.
                let lines = text.split('\n').count().max(1);
                assert!(
                    e.line >= 1 && e.line <= lines,
                    "line {} of {lines}: {e}\n{text:?}",
                    e.line
                );
            }
        }
    }
    // The generator must reach the interesting paths, not only errors.
    assert!(parsed > 1000, "only {parsed} random files parsed");
}

#[test]
fn random_words_never_panic() {
    let mut rng = Rng::new(0x0123_4567_89ab_cdef);
    let pieces = [
        "$", "{", "}", ":", "-", "+", "?", "#", "%", "/", "'", "\"", "\\", "`", "a", "B_1", " ",
        "\n", "*", "<", "<<", "9", "@", "é",
    ];
    let env = |k: &str| (!k.len().is_multiple_of(3)).then(|| "v*a/l".to_string());
    for _ in 0..20_000 {
        let mut w = String::new();
        for _ in 0..rng.below(24) {
            w.push_str(pieces[rng.below(pieces.len())]);
        }
        let escape = if rng.below(2) == 0 { '\\' } else { '`' };
        let _ = expand_word(&w, &env, escape);
        let _ = expand_words(&w, &env, escape);
        let _ = expand_heredoc(&w, &env);
        let _ = MountSpec { raw: w.clone() }.resolve_in(&env, escape);
    }
}
