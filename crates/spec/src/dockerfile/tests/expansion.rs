//! Build-time expansion of parsed instructions: which fields are expanded, with which
//! environment, and how the builder is expected to thread the environment through a stage.

use std::collections::BTreeMap;

use super::*;

type Env = BTreeMap<String, String>;

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn lookup(env: &Env) -> impl Fn(&str) -> Option<String> + '_ {
    |k| env.get(k).cloned()
}

#[test]
fn env_uses_the_environment_before_the_instruction() {
    // `ENV a=1 b=$a`: every value is expanded first, then all are set, so b sees the old a.
    let before = env(&[("a", "0")]);
    let expanded = kind("ENV a=1 b=$a c=${a:-unset}")
        .expand(&lookup(&before), '\\')
        .unwrap();
    assert_eq!(
        expanded,
        InstructionKind::Env {
            vars: vec![kv("a", "1"), kv("b", "0"), kv("c", "0")]
        }
    );
    let fresh = kind("ENV a=1 b=$a c=${a:-unset}")
        .expand(&lookup(&Env::new()), '\\')
        .unwrap();
    assert_eq!(
        fresh,
        InstructionKind::Env {
            vars: vec![kv("a", "1"), kv("b", ""), kv("c", "unset")]
        }
    );
}

/// A tiny model of the builder: apply ARG/ENV in order, expanding each instruction with the
/// environment before it, as BuildKit does.
fn simulate(df: &Dockerfile, build_args: &Env) -> Vec<(String, Env)> {
    let escape = df.escape();
    // Global scope: ARGs before FROM, with build-arg overrides.
    let mut global = Env::new();
    for arg in &df.global_args {
        let value = match (build_args.get(&arg.name), &arg.default) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(d)) => Some(expand_word(d, &lookup(&global), escape).unwrap()),
            (None, None) => None,
        };
        if let Some(v) = value {
            global.insert(arg.name.clone(), v);
        }
    }
    let mut out = Vec::new();
    for stage in &df.stages {
        let base = stage.expand_base(&lookup(&global), escape).unwrap();
        let mut env = Env::new();
        for ins in &stage.instructions {
            let expanded = ins.kind.expand(&lookup(&env), escape).unwrap();
            match expanded {
                InstructionKind::Env { vars } => {
                    for v in vars {
                        env.insert(v.key, v.value);
                    }
                }
                InstructionKind::Arg { args } => {
                    for a in args {
                        // A bare ARG in a stage re-imports the global value.
                        let value = build_args
                            .get(&a.name)
                            .cloned()
                            .or_else(|| {
                                let d = a.default.as_deref()?;
                                Some(expand_word(d, &lookup(&env), escape).unwrap())
                            })
                            .or_else(|| global.get(&a.name).cloned());
                        if let Some(v) = value {
                            env.insert(a.name, v);
                        }
                    }
                }
                _ => {}
            }
        }
        out.push((base, env));
    }
    out
}

#[test]
fn arg_scoping() {
    let df = parse(
        "ARG VERSION=3.20\nARG REG=docker.io\nFROM $REG/alpine:${VERSION} AS one\n\
         RUN echo $VERSION\nENV SEEN=${VERSION:-none}\n\
         FROM alpine:$VERSION\nARG VERSION\nENV SEEN=$VERSION\nARG LOCAL=x-${VERSION}\n",
    );
    let result = simulate(&df, &Env::new());
    assert_eq!(result[0].0, "docker.io/alpine:3.20");
    // Global ARGs are not visible inside a stage unless redeclared.
    assert_eq!(result[0].1.get("SEEN").map(String::as_str), Some("none"));
    assert_eq!(result[1].0, "alpine:3.20");
    assert_eq!(result[1].1.get("SEEN").map(String::as_str), Some("3.20"));
    assert_eq!(result[1].1.get("LOCAL").map(String::as_str), Some("x-3.20"));
    let overridden = simulate(&df, &env(&[("VERSION", "3.19")]));
    assert_eq!(overridden[1].0, "alpine:3.19");
    assert_eq!(
        overridden[1].1.get("SEEN").map(String::as_str),
        Some("3.19")
    );
}

#[test]
fn which_fields_are_expanded() {
    let e = env(&[
        ("D", "/srv"),
        ("U", "app"),
        ("P", "8080 9090/udp"),
        ("F", "f.txt"),
        ("SUM", "sha256:1"),
    ]);
    let ex = |body: &str| kind(body).expand(&lookup(&e), '\\').unwrap();
    assert_eq!(
        ex("WORKDIR $D/x"),
        InstructionKind::Workdir {
            path: "/srv/x".into()
        }
    );
    assert_eq!(
        ex("USER ${U}:${U}"),
        InstructionKind::User {
            user: "app:app".into()
        }
    );
    assert_eq!(
        ex("STOPSIGNAL ${S:-SIGQUIT}"),
        InstructionKind::StopSignal {
            signal: "SIGQUIT".into()
        }
    );
    assert_eq!(
        ex("VOLUME $D ${D}/logs"),
        InstructionKind::Volume {
            paths: strings(&["/srv", "/srv/logs"])
        }
    );
    assert_eq!(
        ex("VOLUME [\"$D/data\"]"),
        InstructionKind::Volume {
            paths: strings(&["/srv/data"])
        }
    );
    // EXPOSE splits a variable holding several ports.
    assert_eq!(
        ex("EXPOSE $P 22"),
        InstructionKind::Expose {
            ports: strings(&["8080", "9090/udp", "22"])
        }
    );
    let InstructionKind::Copy(c) = ex("COPY --chown=$U --chmod=${M:-644} $F \"a\"b $D/") else {
        panic!()
    };
    assert_eq!(
        c.sources,
        vec![
            CopySource::Path("f.txt".into()),
            CopySource::Path("ab".into())
        ]
    );
    assert_eq!(
        (c.dest.as_str(), c.chown.as_deref(), c.chmod.as_deref()),
        ("/srv/", Some("app"), Some("644"))
    );
    let InstructionKind::Add(a) = ex("ADD --checksum=$SUM https://x/$F /") else {
        panic!()
    };
    assert_eq!(
        (a.checksum.as_deref(), a.sources[0].clone()),
        (Some("sha256:1"), CopySource::Path("https://x/f.txt".into()))
    );
    // Never expanded: commands, SHELL, MAINTAINER, ONBUILD, HEALTHCHECK, ARG defaults.
    for body in [
        "RUN echo $D",
        "CMD echo $D",
        "ENTRYPOINT [\"$D\"]",
        "SHELL [\"$D\"]",
        "MAINTAINER $U",
        "ONBUILD WORKDIR $D",
        "HEALTHCHECK CMD test -d $D",
        "ARG X=$D",
    ] {
        assert_eq!(ex(body), kind(body), "{body}");
    }
}

#[test]
fn copy_paths_split_on_whitespace_before_expansion() {
    // `COPY "a b" /d` splits into `"a`, `b"`, `/d` (BuildKit splits on whitespace, then
    // expands each word), so expansion reports the open quote.
    let k = kind("COPY \"a b\" /d");
    let InstructionKind::Copy(c) = &k else {
        panic!()
    };
    assert_eq!(
        c.sources,
        vec![
            CopySource::Path("\"a".into()),
            CopySource::Path("b\"".into())
        ]
    );
    let e = k.expand(&|_| None, '\\').unwrap_err();
    assert_eq!(e.kind, ExpandErrorKind::Unterminated("double-quote"));
    assert_eq!(e.word, "\"a");
    // A quoted word with no space expands fine; the JSON form handles spaces.
    let InstructionKind::Copy(c) = kind("COPY \"a\"b /d").expand(&|_| None, '\\').unwrap() else {
        panic!()
    };
    assert_eq!(c.sources, vec![CopySource::Path("ab".into())]);
}

#[test]
fn expansion_errors_name_the_word() {
    let e = kind("WORKDIR ${DIR:?set DIR}")
        .expand(&|_| None, '\\')
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot expand \"${DIR:?set DIR}\": DIR: set DIR"
    );
    let e = kind("ENV A=${B").expand(&|_| None, '\\').unwrap_err();
    assert_eq!(e.kind, ExpandErrorKind::MissingBrace);
}

#[test]
fn stage_base_and_platform() {
    let df = parse("ARG TAG\nFROM --platform=${TARGETPLATFORM:-linux/amd64} img:${TAG:-latest}\n");
    let g = env(&[("TAG", "1.0")]);
    assert_eq!(
        df.stages[0].expand_base(&lookup(&g), '\\').unwrap(),
        "img:1.0"
    );
    assert_eq!(
        df.stages[0].expand_base(&|_| None, '\\').unwrap(),
        "img:latest"
    );
    assert_eq!(
        df.stages[0]
            .expand_platform(&|_| None, '\\')
            .unwrap()
            .as_deref(),
        Some("linux/amd64")
    );
}
