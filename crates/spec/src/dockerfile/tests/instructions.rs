//! The typed result of every instruction and its flags.

use std::time::Duration;

use super::*;

fn run(body: &str) -> RunInstruction {
    match kind(body) {
        InstructionKind::Run(r) => r,
        other => panic!("{other:?}"),
    }
}

fn copy(body: &str) -> CopyInstruction {
    match kind(body) {
        InstructionKind::Copy(c) => c,
        other => panic!("{other:?}"),
    }
}

fn add(body: &str) -> AddInstruction {
    match kind(body) {
        InstructionKind::Add(a) => a,
        other => panic!("{other:?}"),
    }
}

fn path(s: &str) -> CopySource {
    CopySource::Path(s.to_string())
}

#[test]
fn from_forms() {
    let df = parse(
        "FROM --platform=linux/arm64 alpine:3.20@sha256:abc as Base-1.x\nFROM base-1.x\nFROM scratch\n",
    );
    assert_eq!(df.stages[0].name.as_deref(), Some("base-1.x"));
    assert_eq!(df.stages[0].base, "alpine:3.20@sha256:abc");
    assert_eq!(df.stages[0].platform.as_deref(), Some("linux/arm64"));
    assert_eq!(
        (df.stages[1].name.as_ref(), df.stages[1].platform.as_ref()),
        (None, None)
    );
    assert_eq!(df.stages[2].base, "scratch");
    assert!(parse("FROM --platform= a\n").stages[0].platform.is_none());
}

#[test]
fn arg_env_label() {
    assert_eq!(
        kind("ARG a b=1 c=\"x y\" d="),
        InstructionKind::Arg {
            args: vec![
                ArgDef {
                    name: "a".into(),
                    default: None,
                    line: 2
                },
                ArgDef {
                    name: "b".into(),
                    default: Some("1".into()),
                    line: 2
                },
                ArgDef {
                    name: "c".into(),
                    default: Some("\"x y\"".into()),
                    line: 2
                },
                ArgDef {
                    name: "d".into(),
                    default: Some(String::new()),
                    line: 2
                },
            ]
        }
    );
    assert_eq!(
        kind("ENV PATH /usr/bin:$PATH"),
        InstructionKind::Env {
            vars: vec![kv("PATH", "/usr/bin:$PATH")]
        }
    );
    assert_eq!(
        kind("ENV A  b  c "),
        InstructionKind::Env {
            vars: vec![kv("A", "b  c")]
        }
    );
    assert_eq!(
        kind("LABEL \"com.example.vendor\"=\"ACME\" version=1.0 description=\"a b\""),
        InstructionKind::Label {
            labels: vec![
                kv("\"com.example.vendor\"", "\"ACME\""),
                kv("version", "1.0"),
                kv("description", "\"a b\""),
            ]
        }
    );
    let expanded = kind("LABEL \"com.example.vendor\"=\"ACME Inc\"")
        .expand(&|_| None, '\\')
        .unwrap();
    assert_eq!(
        expanded,
        InstructionKind::Label {
            labels: vec![kv("com.example.vendor", "ACME Inc")]
        }
    );
}

#[test]
fn run_forms_and_flags() {
    let r = run(
        "RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=tok \\\n    --network=none --security=insecure pip install -r req.txt",
    );
    assert_eq!(r.command, shell("pip install -r req.txt"));
    assert_eq!(r.network, NetworkMode::None);
    assert_eq!(r.security, SecurityMode::Insecure);
    assert_eq!(
        r.mounts,
        vec![
            MountSpec {
                raw: "type=cache,target=/root/.cache".into()
            },
            MountSpec {
                raw: "type=secret,id=tok".into()
            },
        ]
    );
    let mounts = r.resolve_mounts(&|_| None, '\\').unwrap();
    assert_eq!(mounts[0].kind, MountType::Cache);
    assert_eq!(mounts[1].id.as_deref(), Some("tok"));
    assert_eq!(run("RUN --network=host x").network, NetworkMode::Host);
    assert_eq!(
        run("RUN [\"/bin/echo\", \"$HOME\"]").command,
        exec(&["/bin/echo", "$HOME"])
    );
    assert_eq!(
        run("RUN echo $HOME").script(),
        RunScript::Shell("echo $HOME".into())
    );
    assert_eq!(
        run("RUN [\"a\"]").script(),
        RunScript::Exec(strings(&["a"]))
    );
    // Not JSON: the shell gets it as written.
    assert_eq!(
        run("RUN [ -f x ] && echo y").command,
        shell("[ -f x ] && echo y")
    );
    // A flag-looking word after the command starts is an argument.
    assert_eq!(run("RUN echo --mount=x").command, shell("echo --mount=x"));
}

#[test]
fn cmd_entrypoint_shell() {
    assert_eq!(
        kind("CMD [\"nginx\", \"-g\", \"daemon off;\"]"),
        InstructionKind::Cmd {
            command: exec(&["nginx", "-g", "daemon off;"])
        }
    );
    assert_eq!(
        kind("ENTRYPOINT exec top -b"),
        InstructionKind::Entrypoint {
            command: shell("exec top -b")
        }
    );
    assert_eq!(
        kind("ENTRYPOINT []"),
        InstructionKind::Entrypoint { command: exec(&[]) }
    );
    assert_eq!(
        kind("SHELL [\"powershell\", \"-command\"]"),
        InstructionKind::Shell {
            args: strings(&["powershell", "-command"])
        }
    );
}

#[test]
fn copy_and_add() {
    let c = copy(
        "COPY --from=build --chown=app:app --chmod=0755 --link --parents --exclude=*.md --exclude=tmp a b/ /dst/",
    );
    assert_eq!(
        c,
        CopyInstruction {
            sources: vec![path("a"), path("b/")],
            dest: "/dst/".into(),
            from: Some("build".into()),
            chown: Some("app:app".into()),
            chmod: Some("0755".into()),
            link: true,
            parents: true,
            excludes: strings(&["*.md", "tmp"]),
        }
    );
    let c = copy("COPY [\"a b\", \"$X\", \"/d\"]");
    assert_eq!(
        (c.sources, c.dest),
        (vec![path("a b"), path("$X")], "/d".to_string())
    );
    let c = copy("COPY --from=0 --link=false x y");
    assert_eq!((c.from.as_deref(), c.link), (Some("0"), false));

    let a = add(
        "ADD --checksum=sha256:24454f83 --keep-git-dir=true --unpack=false --chown=1:2 \\\n  https://example.com/x.tar.gz git@github.com:a/b.git /opt/",
    );
    assert_eq!(
        a,
        AddInstruction {
            sources: vec![
                path("https://example.com/x.tar.gz"),
                path("git@github.com:a/b.git")
            ],
            dest: "/opt/".into(),
            chown: Some("1:2".into()),
            chmod: None,
            link: false,
            checksum: Some("sha256:24454f83".into()),
            keep_git_dir: Some(true),
            unpack: Some(false),
            excludes: vec![],
        }
    );
    assert_eq!(add("ADD a b").keep_git_dir, None);
}

#[test]
fn single_argument_instructions() {
    assert_eq!(
        kind("WORKDIR /app/$DIR"),
        InstructionKind::Workdir {
            path: "/app/$DIR".into()
        }
    );
    assert_eq!(
        kind("USER app:staff"),
        InstructionKind::User {
            user: "app:staff".into()
        }
    );
    assert_eq!(
        kind("STOPSIGNAL SIGTERM"),
        InstructionKind::StopSignal {
            signal: "SIGTERM".into()
        }
    );
    assert_eq!(
        kind("MAINTAINER Jane Doe <j@d.e>"),
        InstructionKind::Maintainer {
            name: "Jane Doe <j@d.e>".into()
        }
    );
    // WORKDIR keeps inner spaces as one word.
    assert_eq!(
        kind("WORKDIR /a b"),
        InstructionKind::Workdir {
            path: "/a b".into()
        }
    );
}

#[test]
fn expose_and_volume() {
    assert_eq!(
        kind("EXPOSE 80/tcp 53/udp $PORT"),
        InstructionKind::Expose {
            ports: strings(&["80/tcp", "53/udp", "$PORT"])
        }
    );
    assert_eq!(
        kind("VOLUME /data /logs"),
        InstructionKind::Volume {
            paths: strings(&["/data", "/logs"])
        }
    );
    assert_eq!(
        kind("VOLUME [\"/var/log\", \" /x \"]"),
        InstructionKind::Volume {
            paths: strings(&["/var/log", "/x"])
        }
    );
}

#[test]
fn healthchecks() {
    assert_eq!(
        kind("HEALTHCHECK NONE"),
        InstructionKind::Healthcheck(Healthcheck::None)
    );
    let InstructionKind::Healthcheck(hc) = kind(
        "HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms --retries=3 \\\n  CMD curl -f http://localhost/ || exit 1",
    ) else {
        panic!()
    };
    assert_eq!(
        hc,
        Healthcheck::Check(HealthConfig {
            command: shell("curl -f http://localhost/ || exit 1"),
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(3),
            start_period: Duration::from_secs(90),
            start_interval: Duration::from_millis(500),
            retries: 3,
        })
    );
    assert_eq!(
        hc.test(),
        strings(&["CMD-SHELL", "curl -f http://localhost/ || exit 1"])
    );
    let InstructionKind::Healthcheck(hc) = kind("HEALTHCHECK cmd [\"/bin/check\", \"-q\"]") else {
        panic!()
    };
    assert_eq!(hc.test(), strings(&["CMD", "/bin/check", "-q"]));
    let Healthcheck::Check(cfg) = hc else {
        panic!()
    };
    assert_eq!((cfg.interval, cfg.retries), (Duration::ZERO, 0));
    assert_eq!(Healthcheck::None.test(), strings(&["NONE"]));
    let InstructionKind::Healthcheck(Healthcheck::Check(cfg)) =
        kind("HEALTHCHECK --start-period=0s --interval=0 --retries=0 CMD [\"foo\"]")
    else {
        panic!()
    };
    assert_eq!(
        (cfg.start_period, cfg.interval),
        (Duration::ZERO, Duration::ZERO)
    );
}

#[test]
fn onbuild_keeps_the_trigger_text() {
    let InstructionKind::Onbuild(ob) = kind("ONBUILD   RUN   make   install") else {
        panic!()
    };
    assert_eq!(ob.expression, "RUN   make   install");
    assert!(
        matches!(*ob.trigger, InstructionKind::Run(ref r) if r.command == shell("make   install"))
    );
    let InstructionKind::Onbuild(ob) = kind("onbuild copy --chown=a . /app") else {
        panic!()
    };
    assert_eq!(ob.expression, "copy --chown=a . /app");
    let InstructionKind::Copy(c) = *ob.trigger else {
        panic!()
    };
    assert_eq!(c.chown.as_deref(), Some("a"));
}
