//! Every error names the file and the line of the offending instruction, and says what to do.

use super::*;

/// Parses `text`, expects an error on `line`, returns its rendered message.
fn fails_at(text: &str, line: usize) -> String {
    let e = err(text);
    assert_eq!(e.line, line, "{e}");
    let rendered = e.to_string();
    assert!(
        rendered.starts_with(&format!("Dockerfile:{line}: ")),
        "{rendered}"
    );
    rendered
}

#[test]
fn unknown_instruction() {
    let msg = fails_at("FROM a\nRUN x\nFOO bar\n", 3);
    assert!(
        msg.starts_with("Dockerfile:3: unknown instruction \"FOO\"; use one of ADD"),
        "{msg}"
    );
    let e = err("FROM a\n\n  foo bar\n");
    assert_eq!(
        e.kind,
        DockerfileErrorKind::UnknownInstruction { name: "foo".into() }
    );
    // The line after a heredoc-less USER is an instruction of its own.
    fails_at("FROM a\nUSER <<INVALID\nINVALID\n", 3);
    // A dangling continuation at the end leaves an empty instruction.
    fails_at("FROM a\n\\\n", 2);
}

#[test]
fn instructions_before_from() {
    let msg = fails_at("ARG A=1\n# c\nRUN echo\nFROM a\n", 3);
    assert!(msg.contains("RUN before the first FROM"), "{msg}");
    assert_eq!(
        err("LABEL a=b\n").kind,
        DockerfileErrorKind::InstructionBeforeFrom {
            instruction: "LABEL".into()
        }
    );
    assert_eq!(err("ARG A\nARG B\n").kind, DockerfileErrorKind::NoStages);
    assert_eq!(err("").kind, DockerfileErrorKind::NoInstructions);
    assert_eq!(
        err("# only\n\n   \n# comments\n").kind,
        DockerfileErrorKind::NoInstructions
    );
}

#[test]
fn bad_flags() {
    let msg = fails_at("FROM a\nCOPY --user=me foo /tmp/\n", 2);
    assert!(
        msg.contains("unknown flag --user for COPY; COPY accepts --from, --chown"),
        "{msg}"
    );
    let msg = fails_at("FROM a\nMAINTAINER --boo joe@example.com\n", 2);
    assert!(msg.contains("MAINTAINER takes no flags"), "{msg}");
    fails_at("FROM --plaform=linux/amd64 a\n", 1);
    fails_at("FROM a\nRUN --device=x true\n", 2);
    fails_at("FROM a\nRUN --network=bridge true\n", 2);
    fails_at("FROM a\nRUN --network= true\n", 2);
    fails_at("FROM a\nRUN --security=root true\n", 2);
    fails_at("FROM a\nCOPY --link=yes a b\n", 2);
    fails_at("FROM a\nCOPY --chown a b\n", 2);
    fails_at("FROM a\nCOPY --from=a --from=b x y\n", 2);
    fails_at("FROM a\nADD --from=x a b\n", 2);
    fails_at("FROM a\nADD --parents a b\n", 2);
    fails_at("FROM a\nSTOPSIGNAL --x 9\n", 2);
    fails_at("FROM a\nENV --x a=b\n", 2);
    fails_at("FROM a\nHEALTHCHECK --interval=5 CMD x\n", 2);
    fails_at("FROM a\nHEALTHCHECK --interval=50ns CMD x\n", 2);
    fails_at("FROM a\nHEALTHCHECK --retries=-1 CMD x\n", 2);
    fails_at("FROM a\nHEALTHCHECK --retries=many CMD x\n", 2);
    fails_at("FROM a\nHEALTHCHECK --bogus=1 NONE\n", 2);
    let msg = fails_at("FROM a\nRUN \\\n  --mount=type=bind,mode=0644 true\n", 2);
    assert!(msg.contains("mode is not allowed for bind mounts"), "{msg}");
    let msg = fails_at("FROM a\nCOPY --from=$STAGE /a /b\n", 2);
    assert!(
        msg.contains("variable expansion is not supported for --from"),
        "{msg}"
    );
    fails_at("FROM a\nCOPY --from=${X:-b} /a /b\n", 2);
}

#[test]
fn unterminated_heredoc() {
    let msg = fails_at("FROM a\nRUN true\nRUN <<EOF\necho hi\n", 3);
    assert!(msg.contains("heredoc <<EOF is never terminated"), "{msg}");
    // The second of two heredocs on one line.
    fails_at("FROM a\nCOPY <<A <<B /d\na\nA\nb\n", 2);
    fails_at("FROM a\nONBUILD RUN <<X\n", 2);
}

#[test]
fn json_required_or_malformed() {
    let msg = fails_at("FROM a\nSHELL /bin/bash -c\n", 2);
    assert!(
        msg.contains("SHELL requires the arguments to be in JSON form"),
        "{msg}"
    );
    fails_at("FROM a\nSHELL []\n", 2);
    for line in [
        "CMD [\"a\", 1]",
        "ENTRYPOINT [null]",
        "RUN [\"a\", [\"b\"]]",
        "COPY [\"a\", true]",
        "VOLUME [{}]",
        "SHELL [1]",
        "HEALTHCHECK CMD [1]",
    ] {
        let msg = fails_at(&format!("FROM a\n{line}\n"), 2);
        assert!(
            msg.contains("arrays must be comprised of strings only"),
            "{line}: {msg}"
        );
    }
}

#[test]
fn argument_counts() {
    for (line, want) in [
        ("COPY onlyone", "requires at least two arguments"),
        ("ADD", "requires at least two arguments"),
        ("COPY [\"a\"]", "requires at least two arguments"),
        (
            "COPY a <<EOF\nEOF",
            "cannot accept a heredoc as a destination",
        ),
        ("WORKDIR", "requires exactly one argument"),
        ("USER", "requires exactly one argument"),
        ("STOPSIGNAL", "requires exactly one argument"),
        ("MAINTAINER", "requires exactly one argument"),
        ("ENV", "requires at least one argument"),
        ("ENV single", "must have two arguments"),
        ("ENV a=b c", "can't find = in \"c\""),
        ("ENV =b", "names can not be blank"),
        ("LABEL =b", "names can not be blank"),
        ("ARG", "requires at least one argument"),
        ("ARG =x", "names can not be blank"),
        ("EXPOSE", "requires at least one argument"),
        ("VOLUME", "requires at least one argument"),
        ("VOLUME [\"\"]", "can not be an empty string"),
        ("RUN", "requires a command"),
        ("CMD", "requires a command"),
        ("ONBUILD", "requires at least one argument"),
        ("ONBUILD ONBUILD RUN x", "chaining ONBUILD"),
        (
            "ONBUILD FROM scratch",
            "FROM isn't allowed as an ONBUILD trigger",
        ),
        ("ONBUILD MAINTAINER me", "MAINTAINER isn't allowed"),
        ("ONBUILD FOO bar", "unknown instruction \"FOO\""),
        ("ONBUILD COPY --bogus a b", "unknown flag --bogus"),
        ("HEALTHCHECK", "requires at least one argument"),
        ("HEALTHCHECK NONE x", "NONE takes no arguments"),
        ("HEALTHCHECK CMD", "missing command"),
        ("HEALTHCHECK CMD []", "missing command"),
        ("HEALTHCHECK CONNECT TCP 7000", "unknown type \"CONNECT\""),
    ] {
        let msg = fails_at(&format!("FROM a\n{line}\n"), 2);
        assert!(msg.contains(want), "{line}: {msg}");
    }
    let msg = fails_at("FROM a b\n", 1);
    assert!(
        msg.contains("requires either one or three arguments"),
        "{msg}"
    );
    fails_at("FROM a AS\n", 1);
    fails_at("FROM\n", 1);
    let msg = fails_at("FROM a AS 1st\n", 1);
    assert!(
        msg.contains("invalid name for build stage \"1st\""),
        "{msg}"
    );
    fails_at("FROM a AS my/stage\n", 1);
}

#[test]
fn directive_errors() {
    let msg = fails_at("# escape=x\nFROM a\n", 1);
    assert!(msg.contains("invalid escape token \"x\""), "{msg}");
    let msg = fails_at("# syntax=a\n# syntax=b\nFROM a\n", 2);
    assert!(msg.contains("only one syntax parser directive"), "{msg}");
}

#[test]
fn errors_use_the_given_file_name() {
    let e = Dockerfile::parse("FROM a\nBOGUS\n", "pkg/foo/Dockerfile.arm64").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("pkg/foo/Dockerfile.arm64:2: unknown instruction"),
        "{e}"
    );
}
