//! File structure: directives, comments, continuations, stages, global ARGs, line numbers, and
//! BuildKit's parser fixtures (`frontend/dockerfile/parser/testfiles`).

use super::*;

#[test]
fn stages_global_args_and_lines() {
    let df = parse(
        "# syntax=docker/dockerfile:1\n\
         ARG BASE=alpine\n\
         ARG VERSION\n\
         \n\
         FROM --platform=$BUILDPLATFORM ${BASE}:3.20 AS Build\n\
         ARG VERSION\n\
         RUN make\n\
         \n\
         from build as final\n\
         copy --from=build /out /out\n",
    );
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(df.escape(), '\\');
    assert_eq!(
        df.global_args,
        vec![
            ArgDef {
                name: "BASE".into(),
                default: Some("alpine".into()),
                line: 2
            },
            ArgDef {
                name: "VERSION".into(),
                default: None,
                line: 3
            },
        ]
    );
    assert_eq!(df.stages.len(), 2);
    let build = &df.stages[0];
    assert_eq!(build.name.as_deref(), Some("build"));
    assert_eq!(build.base, "${BASE}:3.20");
    assert_eq!(build.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(build.line, 5);
    assert_eq!(build.instructions.len(), 2);
    assert_eq!(build.instructions[1].line, 7);
    assert_eq!(build.instructions[1].original, "RUN make");
    let final_stage = &df.stages[1];
    assert_eq!((final_stage.base.as_str(), final_stage.line), ("build", 9));
    assert_eq!(df.stage("BUILD").map(|(i, _)| i), Some(0));
    assert_eq!(df.stage("final").map(|(i, _)| i), Some(1));
    assert!(df.stage("nope").is_none());
}

#[test]
fn comments_blank_lines_and_leading_whitespace() {
    let df = parse("\n# comment\n   # indented comment\n\t  FROM x\n\n   run  echo hi   \n");
    assert_eq!(df.stages[0].line, 4);
    let run = &df.stages[0].instructions[0];
    assert_eq!(run.line, 6);
    assert_eq!(run.original, "run  echo hi");
    assert_eq!(
        run.kind,
        InstructionKind::Run(RunInstruction {
            command: shell("echo hi"),
            heredocs: vec![],
            mounts: vec![],
            network: NetworkMode::Default,
            security: SecurityMode::Sandbox,
        })
    );
}

#[test]
fn crlf_and_bom() {
    let df = parse("\u{feff}FROM a\r\nRUN echo \\\r\n  hi\r\nENV A=b\r\n");
    assert_eq!(df.stages[0].base, "a");
    let ks: Vec<_> = df.stages[0]
        .instructions
        .iter()
        .map(|i| i.kind.clone())
        .collect();
    assert!(matches!(&ks[0], InstructionKind::Run(r) if r.command == shell("echo   hi")));
    assert_eq!(
        ks[1],
        InstructionKind::Env {
            vars: vec![kv("A", "b")]
        }
    );
}

#[test]
fn escape_directive_with_windows_paths() {
    // BuildKit fixture `escape`: with the backtick escape, a backslash is an ordinary character.
    let df = parse("#escape = `\n\nFROM image\nLABEL maintainer foo@bar.com\nENV GOPATH `\n\\go");
    assert_eq!(df.escape(), '`');
    assert_eq!(
        kinds_of(&df),
        vec![
            InstructionKind::Label {
                labels: vec![kv("maintainer", "foo@bar.com")]
            },
            InstructionKind::Env {
                vars: vec![kv("GOPATH", "\\go")]
            },
        ]
    );
    let df = parse(
        "# escape=`\nFROM mcr.microsoft.com/windows/servercore\n\
         COPY testfile.txt c:\\\nRUN dir c:\\\nWORKDIR c:\\windows\\temp\n\
         RUN echo a `\n  b\n",
    );
    let ks = kinds_of(&df);
    let InstructionKind::Copy(copy) = &ks[0] else {
        panic!("{ks:?}")
    };
    assert_eq!(copy.dest, "c:\\");
    assert!(matches!(&ks[1], InstructionKind::Run(r) if r.command == shell("dir c:\\")));
    assert_eq!(
        ks[2],
        InstructionKind::Workdir {
            path: "c:\\windows\\temp".into()
        }
    );
    assert!(matches!(&ks[3], InstructionKind::Run(r) if r.command == shell("echo a   b")));
    // Expansion uses the same escape: `\` stays, `` ` `` escapes.
    let expanded = ks[2].expand(&|_| None, df.escape()).unwrap();
    assert_eq!(
        expanded,
        InstructionKind::Workdir {
            path: "c:\\windows\\temp".into()
        }
    );
}

#[test]
fn directives_only_at_the_top() {
    // BuildKit fixture `escape-after-comment`: a comment ends the directive section.
    let df = parse(
        "# Comment here.\n# escape = `\n\nFROM image\nLABEL maintainer foo@bar.com\nENV GOPATH \\\n\\go",
    );
    assert_eq!(df.escape(), '\\');
    assert_eq!(
        kinds_of(&df)[1],
        InstructionKind::Env {
            vars: vec![kv("GOPATH", "\\go")]
        }
    );
    // `escape-nonewline` and `escape-with-syntax`.
    let df = parse(
        "# escape = `\n# There is no blank line after the directives.\nFROM image\nENV GOPATH `\n\\go\n",
    );
    assert_eq!(
        kinds_of(&df)[0],
        InstructionKind::Env {
            vars: vec![kv("GOPATH", "\\go")]
        }
    );
    let df = parse("# syntax = docker/dockerfile\n# escape = `\n\nFROM `\n    image\n");
    assert_eq!(df.stages[0].base, "image");
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile"));
    // A blank line also ends them; `check` is recorded.
    let df = parse("# check=skip=all\n\n# escape=`\nFROM a\n");
    assert_eq!(
        (df.directives.check.as_deref(), df.escape()),
        (Some("skip=all"), '\\')
    );
    // An unknown directive ends the section too.
    assert_eq!(parse("# foo=bar\n# escape=`\nFROM a\n").escape(), '\\');
}

#[test]
fn continuation_lines_buildkit_continue_indent() {
    // BuildKit fixture `continueIndent`.
    let text = "FROM ubuntu:14.04\n\nRUN echo hello\\\n  world\\\n  goodnight  \\\n  moon\\\n  light\\\nning\n\
RUN echo hello  \\\n  world\nRUN echo hello  \\\nworld\nRUN echo hello \\\ngoodbye\\\nfrog\n\
RUN echo hello  \\  \nworld\nRUN echo hi \\\n \\\n world \\\n\\\n good\\\n\\\nnight\n\
RUN echo goodbye\\\nfrog\nRUN echo good\\\nbye\\\nfrog\n\nRUN echo hello \\\n# this is a comment\n\n\
# this is a comment with a blank line surrounding it\n\nthis is some more useful stuff\n";
    let runs: Vec<CommandLine> = kinds_of(&parse(text))
        .into_iter()
        .map(|k| match k {
            InstructionKind::Run(r) => r.command,
            other => panic!("{other:?}"),
        })
        .collect();
    let want = [
        "echo hello  world  goodnight    moon  lightning",
        "echo hello    world",
        "echo hello  world",
        "echo hello goodbyefrog",
        "echo hello  world",
        "echo hi   world  goodnight",
        "echo goodbyefrog",
        "echo goodbyefrog",
        "echo hello this is some more useful stuff",
    ];
    assert_eq!(runs, want.map(shell));
}

#[test]
fn comment_and_empty_lines_inside_continuations() {
    let df = parse(
        "FROM a\nRUN something \\\n\n    following \\\n\n    more\n\
         RUN non-indented \\\n# this is a comment\n   after-comment\n\
         RUN indented \\\n    # this is an indented comment\n    comment\n",
    );
    let ks = kinds_of(&df);
    let cmds: Vec<_> = ks
        .iter()
        .map(|k| match k {
            InstructionKind::Run(r) => r.command.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        cmds,
        [
            "something     following     more",
            "non-indented    after-comment",
            "indented     comment"
        ]
        .map(shell)
    );
    assert_eq!(df.warnings.len(), 1);
    assert_eq!(df.warnings[0].line, 2);
    let lines: Vec<_> = df.stages[0]
        .instructions
        .iter()
        .map(|i| (i.line, i.end_line))
        .collect();
    assert_eq!(lines, [(2, 6), (7, 9), (10, 12)]);
}

#[test]
fn trailing_backslashes() {
    // BuildKit fixture `trailing-backslash`: an escaped escape does not continue the line.
    let text = "FROM hello-world\nENV A path\nENV B another\\\\path\nENV C trailing\\\\backslash\\\\\n\
ENV D This should not be appended to C\nENV E hello\\\n\\\nworld\nENV F hello\\\n \\\nworld\n\
ENV G hello \\\n\\\nworld\n";
    let want = [
        ("A", "path"),
        ("B", "another\\\\path"),
        ("C", "trailing\\\\backslash\\\\"),
        ("D", "This should not be appended to C"),
        ("E", "helloworld"),
        ("F", "hello world"),
        ("G", "hello world"),
    ];
    let got = kinds_of(&parse(text));
    assert_eq!(
        got,
        want.map(|(k, v)| InstructionKind::Env {
            vars: vec![kv(k, v)]
        })
    );
    // A continuation at the end of the file just ends the instruction (`continue-at-eof`).
    assert!(matches!(
        &kinds_of(&parse("FROM alpine:3.5\n\nRUN something \\"))[0],
        InstructionKind::Run(r) if r.command == shell("something")
    ));
}

#[test]
fn buildkit_escapes_fixture() {
    let text = r#"FROM ubuntu:14.04
LABEL maintainer Erik \\Hollensbe <erik@hollensbe.org>\"

RUN apt-get \update && \
  apt-get \"install znc -y
ADD \conf\\" /.znc

RUN foo \

bar \

baz

CMD [ "\/usr\\\"/bin/znc", "-f", "-r" ]
"#;
    let ks = kinds_of(&parse(text));
    assert_eq!(
        ks[0],
        InstructionKind::Label {
            labels: vec![kv(
                "maintainer",
                r#"Erik \\Hollensbe <erik@hollensbe.org>\""#
            )]
        }
    );
    assert!(
        matches!(&ks[1], InstructionKind::Run(r) if r.command == shell(r#"apt-get \update &&   apt-get \"install znc -y"#))
    );
    let InstructionKind::Add(add) = &ks[2] else {
        panic!("{ks:?}")
    };
    assert_eq!(add.sources, vec![CopySource::Path(r#"\conf\\""#.into())]);
    assert_eq!(add.dest, "/.znc");
    assert!(matches!(&ks[3], InstructionKind::Run(r) if r.command == shell("foo bar baz")));
    assert_eq!(
        ks[4],
        InstructionKind::Cmd {
            command: exec(&[r#"/usr\"/bin/znc"#, "-f", "-r"])
        }
    );
}

#[test]
fn buildkit_env_fixture() {
    let text = r#"FROM ubuntu
ENV name value
ENV name=value
ENV name=value name2=value2
ENV name="value value1"
ENV name=value\ value2
ENV name="value'quote space'value2"
ENV name='value"double quote"value2'
ENV name=value\ value2 name2=value2\ value3
ENV name="a\"b"
ENV name="a\'b"
ENV name='a\'b'
ENV name='a\'b''
ENV name='a\"b'
ENV name="''"
ENV name=value \
    name1=value1 \
    name2="value2a \
           value2b" \
    name3="value3a\n\"value3b\"" \
	name4="value4a\\nvalue4b" \
"#;
    let ks = kinds_of(&parse(text));
    let env = |pairs: &[(&str, &str)]| InstructionKind::Env {
        vars: pairs.iter().map(|(k, v)| kv(k, v)).collect(),
    };
    let want = vec![
        env(&[("name", "value")]),
        env(&[("name", "value")]),
        env(&[("name", "value"), ("name2", "value2")]),
        env(&[("name", r#""value value1""#)]),
        env(&[("name", r"value\ value2")]),
        env(&[("name", r#""value'quote space'value2""#)]),
        env(&[("name", r#"'value"double quote"value2'"#)]),
        env(&[("name", r"value\ value2"), ("name2", r"value2\ value3")]),
        env(&[("name", r#""a\"b""#)]),
        env(&[("name", r#""a\'b""#)]),
        env(&[("name", r"'a\'b'")]),
        env(&[("name", r"'a\'b''")]),
        env(&[("name", r#"'a\"b'"#)]),
        env(&[("name", r#""''""#)]),
        env(&[
            ("name", "value"),
            ("name1", "value1"),
            ("name2", r#""value2a            value2b""#),
            ("name3", r#""value3a\n\"value3b\"""#),
            ("name4", r#""value4a\\nvalue4b""#),
        ]),
    ];
    assert_eq!(ks, want);
    // And what the builder gets after expansion.
    let none = |_: &str| None;
    let expanded = |k: &InstructionKind| match k.expand(&none, '\\').unwrap() {
        InstructionKind::Env { vars } => vars.into_iter().map(|v| v.value).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(expanded(&ks[3]), ["value value1"]);
    assert_eq!(expanded(&ks[4]), ["value value2"]);
    assert_eq!(expanded(&ks[8]), ["a\"b"]);
    assert_eq!(expanded(&ks[9]), ["a\\'b"]);
    assert_eq!(expanded(&ks[13]), ["''"]);
    assert_eq!(expanded(&ks[14])[3], "value3a\\n\"value3b\"");
}

#[test]
fn buildkit_json_fixture() {
    let text = "FROM x\nCMD []\nCMD [\"\"]\nCMD [\"a\"]\nCMD [\"a\",\"b\"]\nCMD [ \"a\", \"b\" ]\n\
CMD [\t\"a\",\t\"b\"\t]\nCMD\t[\t\"a\",\t\"b\"\t]\t\n\
CMD [\"abc 123\", \"♥\", \"☃\", \"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0000\"]\n";
    let cmds: Vec<_> = kinds_of(&parse(text))
        .into_iter()
        .map(|k| match k {
            InstructionKind::Cmd { command } => command,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        cmds,
        vec![
            exec(&[]),
            exec(&[""]),
            exec(&["a"]),
            exec(&["a", "b"]),
            exec(&["a", "b"]),
            exec(&["a", "b"]),
            exec(&["a", "b"]),
            exec(&["abc 123", "♥", "☃", "\" \\ / \u{8} \u{c} \n \r \t \0"]),
        ]
    );
}

#[test]
fn invalid_json_falls_back_to_shell_form() {
    // BuildKit's `jeztah-invalid-json-*` fixtures.
    let cases = [
        r#"CMD '["echo", "Well, JSON in a string is JSON too?"]'"#,
        r#"CMD "[\"echo\", \"Phew, I just managed to escaped those double quotes\"]""#,
        r#"CMD ['echo','single quotes are invalid JSON']"#,
        r#"CMD ["echo", "Please, close the brackets when you're done""#,
        r#"CMD ["echo", "look ma, no quote!]"#,
        r#"CMD ["a"] trailing"#,
    ];
    for line in cases {
        let rest = line.strip_prefix("CMD ").unwrap();
        assert_eq!(
            kind(line),
            InstructionKind::Cmd {
                command: shell(rest)
            },
            "{line}"
        );
    }
}

#[test]
fn add_copy_with_json_and_tabs() {
    let text = "FROM\tubuntu:14.04\nLABEL\tmaintainer\tSeongyeol Lim <seongyeol37@gmail.com>\n\n\
COPY\t.\t/go/src/github.com/docker/docker\nADD\t\t.\t/\nADD\t\t[ \"vimrc\", \"/tmp\" ]\n\
COPY\t[ \"test file\", \"/tmp\" ]\nADD\t\t[ \"test file\", \"/tmp/test file\" ]\n";
    let ks = kinds_of(&parse(text));
    assert_eq!(
        ks[0],
        InstructionKind::Label {
            labels: vec![kv("maintainer", "Seongyeol Lim <seongyeol37@gmail.com>")]
        }
    );
    let paths = |k: &InstructionKind| match k {
        InstructionKind::Copy(c) => (c.sources.clone(), c.dest.clone()),
        InstructionKind::Add(a) => (a.sources.clone(), a.dest.clone()),
        other => panic!("{other:?}"),
    };
    let p = |s: &str| CopySource::Path(s.to_string());
    assert_eq!(
        paths(&ks[1]),
        (vec![p(".")], "/go/src/github.com/docker/docker".into())
    );
    assert_eq!(paths(&ks[2]), (vec![p(".")], "/".into()));
    assert_eq!(paths(&ks[3]), (vec![p("vimrc")], "/tmp".into()));
    assert_eq!(paths(&ks[4]), (vec![p("test file")], "/tmp".into()));
    assert_eq!(
        paths(&ks[5]),
        (vec![p("test file")], "/tmp/test file".into())
    );
}

#[test]
fn case_insensitive_instruction_names() {
    let ks = kinds("run a\nRuN b\nworkdir /x\nExpose 80\n");
    assert_eq!(ks.len(), 4);
    assert_eq!(ks[2], InstructionKind::Workdir { path: "/x".into() });
    assert_eq!(
        ks[3],
        InstructionKind::Expose {
            ports: strings(&["80"])
        }
    );
}

fn kinds_of(df: &Dockerfile) -> Vec<InstructionKind> {
    df.stages
        .iter()
        .flat_map(|s| s.instructions.iter().map(|i| i.kind.clone()))
        .collect()
}
