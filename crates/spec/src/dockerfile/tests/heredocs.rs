//! Heredocs, following BuildKit's `parser_heredoc_test.go` and its dispatch rules.

use super::*;

fn doc(name: &str, content: &str, expand: bool, chomp: bool) -> Heredoc {
    Heredoc {
        name: name.to_string(),
        fd: 0,
        expand,
        chomp,
        content: content.to_string(),
    }
}

fn heredocs_of(k: &InstructionKind) -> Vec<Heredoc> {
    match k {
        InstructionKind::Run(r) => r.heredocs.clone(),
        InstructionKind::Copy(c) => c
            .sources
            .iter()
            .filter_map(|s| match s {
                CopySource::Heredoc(h) => Some(h.clone()),
                CopySource::Path(_) => None,
            })
            .collect(),
        _ => vec![],
    }
}

#[test]
fn buildkit_heredoc_table() {
    let text = "FROM alpine:3.6\n\nENV NAME=me\n\nRUN ls\n\n\
RUN <<EMPTY\nEMPTY\n\n\
RUN 3<<EMPTY2\nEMPTY2\n\n\
RUN \"<<NOHEREDOC\"\n\n\
RUN <<INDENT\n\tfoo\n\tbar\nINDENT\n\n\
RUN <<-UNINDENT\n\tbaz\n\tquux\nUNINDENT\n\n\
RUN <<-UNINDENT2\n\tbaz\n\tquux\n\tUNINDENT2\n\n\
RUN <<-EXPAND\n\texpand $NAME\nEXPAND\n\n\
RUN <<-'NOEXPAND'\n\tdon't expand $NAME\nNOEXPAND\n\n\
RUN <<COMMENT\n# internal comment\necho hello world\necho foo bar # trailing comment\nCOMMENT\n\n\
RUN --mount=type=cache,target=/foo <<MOUNT\necho hello\nMOUNT\n\n\
COPY <<FILE1 <<FILE2 /dest\ncontent 1\nFILE1\ncontent 2\nFILE2\n\n\
COPY <<EOF /quotes\n\"foo\"\n'bar'\nEOF\n\n\
COPY <<X <<Y /dest\nY\nX\nX\nY\n\n\
RUN <<COMPLEX python3\nprint('hello world')\nCOMPLEX\n\n\
COPY <<file.txt /dest\nhello world\nfile.txt\n\n\
RUN <<eo'f'\necho foo\neof\n\n\
RUN <<'e'o\\'f\necho foo\neo'f\n\n\
RUN <<'one two'\necho bar\none two\n\n\
RUN <<$EOF\n$EOF\n\n\
RUN <<  EOF\nEOF\n\n\
RUN <<  EOF  > foo\nEOF\n\t";
    let df = parse(text);
    let got: Vec<Vec<Heredoc>> = df.stages[0]
        .instructions
        .iter()
        .map(|i| heredocs_of(&i.kind))
        .collect();
    let mut fd3 = doc("EMPTY2", "", true, false);
    fd3.fd = 3;
    let want: Vec<Vec<Heredoc>> = vec![
        vec![],
        vec![],
        vec![doc("EMPTY", "", true, false)],
        vec![fd3],
        vec![],
        vec![doc("INDENT", "\tfoo\n\tbar\n", true, false)],
        vec![doc("UNINDENT", "\tbaz\n\tquux\n", true, true)],
        vec![doc("UNINDENT2", "\tbaz\n\tquux\n", true, true)],
        vec![doc("EXPAND", "\texpand $NAME\n", true, true)],
        vec![doc("NOEXPAND", "\tdon't expand $NAME\n", false, true)],
        vec![doc(
            "COMMENT",
            "# internal comment\necho hello world\necho foo bar # trailing comment\n",
            true,
            false,
        )],
        vec![doc("MOUNT", "echo hello\n", true, false)],
        vec![
            doc("FILE1", "content 1\n", true, false),
            doc("FILE2", "content 2\n", true, false),
        ],
        vec![doc("EOF", "\"foo\"\n'bar'\n", true, false)],
        vec![doc("X", "Y\n", true, false), doc("Y", "X\n", true, false)],
        vec![doc("COMPLEX", "print('hello world')\n", true, false)],
        vec![doc("file.txt", "hello world\n", true, false)],
        vec![doc("eof", "echo foo\n", false, false)],
        vec![doc("eo'f", "echo foo\n", false, false)],
        vec![doc("one two", "echo bar\n", false, false)],
        vec![doc("$EOF", "", true, false)],
        vec![doc("EOF", "", true, false)],
        vec![doc("EOF", "", true, false)],
    ];
    assert_eq!(got, want);
}

#[test]
fn run_heredoc_scripts() {
    let r = |body: &str| match kind(body) {
        InstructionKind::Run(r) => r,
        other => panic!("{other:?}"),
    };
    // A lone heredoc: the body is the script.
    assert_eq!(
        r("RUN <<EOF\nset -e\necho hi\nEOF").script(),
        RunScript::Shell("set -e\necho hi\n".into())
    );
    assert_eq!(
        r("RUN <<-EOF\n\techo hi\n\tEOF").script(),
        RunScript::Shell("echo hi\n".into())
    );
    // With a shebang it becomes an executable file.
    assert_eq!(
        r("RUN <<run.py\n#!/usr/bin/env python3\nprint(1)\nrun.py").script(),
        RunScript::File {
            name: "run.py".into(),
            content: "#!/usr/bin/env python3\nprint(1)\n".into()
        }
    );
    // Otherwise the shell gets the command line followed by the bodies.
    assert_eq!(
        r("RUN python3 <<EOF\nprint(1)\nEOF").script(),
        RunScript::Shell("python3 <<EOF\nprint(1)\nEOF".into())
    );
    assert_eq!(
        r("RUN cat <<A > /a && cat <<-B > /b\na\nA\n\tb\n\tB").script(),
        RunScript::Shell("cat <<A > /a && cat <<-B > /b\na\nA\n\tb\nB".into())
    );
}

#[test]
fn heredoc_bodies_are_not_instructions_and_lines_follow_them() {
    let df = parse("FROM a\nRUN <<EOF\nFROM b\n# not a comment\n\nEOF\nUSER x\n");
    assert_eq!(df.stages.len(), 1);
    let ins = &df.stages[0].instructions;
    assert_eq!((ins[0].line, ins[0].end_line), (2, 6));
    assert_eq!(ins[0].original, "RUN <<EOF");
    assert_eq!(
        heredocs_of(&ins[0].kind)[0].content,
        "FROM b\n# not a comment\n\n"
    );
    assert_eq!(
        (ins[1].line, ins[1].kind.clone()),
        (7, InstructionKind::User { user: "x".into() })
    );
}

#[test]
fn terminator_must_match_exactly() {
    let ks = kinds("RUN <<EOF\n EOF\nEOF \nEOF\r\nRUN x\n");
    assert_eq!(heredocs_of(&ks[0])[0].content, " EOF\nEOF \n");
    assert_eq!(ks.len(), 2);
    // Without `-`, an indented delimiter does not end the heredoc.
    let e = err("FROM a\nRUN <<EOF\n\tEOF\n");
    assert_eq!(
        e.kind,
        DockerfileErrorKind::UnterminatedHeredoc { name: "EOF".into() }
    );
}

#[test]
fn json_form_and_other_instructions_take_no_heredocs() {
    let ks = kinds("RUN [\"<<EOF\"]\nRUN [\"<<'EOF'\"]\nRUN echo '<<EOF'\nLABEL a=<<EOF\n");
    assert_eq!(ks.len(), 4);
    assert!(ks.iter().all(|k| heredocs_of(k).is_empty()));
}

#[test]
fn continuation_before_heredoc() {
    let ks = kinds("RUN --mount=type=cache,target=/c \\\n  <<EOF\necho hi\nEOF\n");
    let InstructionKind::Run(r) = &ks[0] else {
        panic!()
    };
    assert_eq!(r.mounts.len(), 1);
    assert_eq!(r.script(), RunScript::Shell("echo hi\n".into()));
}

#[test]
fn copy_heredoc_sources_and_expansion() {
    let ks = kinds(
        "COPY <<a.conf <<'raw.txt' src/ /etc/app/\nname=$NAME\na.conf\nkeep $NAME\nraw.txt\n",
    );
    let InstructionKind::Copy(c) = &ks[0] else {
        panic!()
    };
    assert_eq!(c.sources.len(), 3);
    assert_eq!(c.sources[2], CopySource::Path("src/".into()));
    let env = |k: &str| (k == "NAME").then(|| "app".to_string());
    let InstructionKind::Copy(expanded) = ks[0].expand(&env, '\\').unwrap() else {
        panic!()
    };
    assert_eq!(
        expanded.sources[..2],
        [
            CopySource::Heredoc(doc("a.conf", "name=app\n", false, false)),
            CopySource::Heredoc(doc("raw.txt", "keep $NAME\n", false, false)),
        ]
    );
    // `<<-` strips tabs before expanding.
    let ks = kinds("ADD <<-EOF /x\n\tv=$NAME\n\tEOF\n");
    let InstructionKind::Add(a) = ks[0].expand(&env, '\\').unwrap() else {
        panic!()
    };
    assert_eq!(
        a.sources,
        vec![CopySource::Heredoc(doc("EOF", "v=app\n", false, false))]
    );
}

#[test]
fn onbuild_heredoc_expression() {
    let InstructionKind::Onbuild(ob) = kind("ONBUILD RUN <<EOF\necho hi\nEOF") else {
        panic!()
    };
    assert_eq!(ob.expression, "RUN <<EOF\necho hi\nEOF");
    let InstructionKind::Run(r) = *ob.trigger else {
        panic!()
    };
    assert_eq!(r.script(), RunScript::Shell("echo hi\n".into()));
}

#[test]
fn backtick_escape_does_not_change_heredoc_detection() {
    let df = parse("# escape=`\nFROM a\nRUN <<EOF\nc:\\x\nEOF\n");
    let InstructionKind::Run(r) = &df.stages[0].instructions[0].kind else {
        panic!()
    };
    assert_eq!(r.heredocs[0].content, "c:\\x\n");
}
