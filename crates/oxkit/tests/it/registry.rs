//! Registries through the real binary: `oxkit login`/`logout` against htpasswd basic auth
//! behind TLS (the CA in a certs.d directory under the test HOME), `oxkit cache push`/`pull`
//! against Debian's docker-registry, with skopeo as the independent client both ways.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use oxkit_spec::{Platform, Reference};
use oxkit_store::Store;
use oxkit_store::oci::{ImageManifest, media_type as mt};

use crate::support::{Env, Registry, RegistryOpts, on_terminal, require_tool, run_fail, run_ok};

fn skopeo() -> Command {
    Command::new(require_tool("skopeo"))
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// Runs `cmd` with `input` on stdin; returns (exit code, stdout, stderr).
fn run_with_stdin(cmd: &mut Command, input: &str) -> (Option<i32>, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Trusts the registry's CA the way users do: `~/.config/oxkit/certs.d/HOST/ca.crt`.
pub(crate) fn trust(env: &Env, reg: &Registry) {
    let dir = env.home().join(".config/oxkit/certs.d").join(reg.host());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(reg.ca_cert(), dir.join("ca.crt")).unwrap();
}

/// A small root filesystem made here (the content does not matter to a registry, and the
/// shared busybox cache is not safe to build from parallel tests).
fn tiny_rootfs(env: &Env, name: &str) -> PathBuf {
    let root = env.path().join(format!("rootfs-{name}"));
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("etc/hostname"), format!("{name}\n")).unwrap();
    let mut blob = Vec::new();
    for i in 0..50_000u32 {
        blob.extend_from_slice(&(i.wrapping_mul(2_654_435_761) ^ name.len() as u32).to_le_bytes());
    }
    std::fs::write(root.join("bin/payload"), blob).unwrap();
    root
}

fn docker_config(env: &Env) -> serde_json::Value {
    json(&std::fs::read_to_string(env.home().join(".docker/config.json")).unwrap())
}

#[test]
fn login_and_logout_with_basic_auth_behind_tls() {
    let reg = Registry::start_with(RegistryOpts {
        basic_auth: Some(("alice".into(), "wonder-land-9".into())),
        tls: true,
        ..Default::default()
    });
    let env = Env::new();
    let host = reg.host();

    // Without the CA the TLS error says where to put it.
    let (code, _, err) = run_with_stdin(
        env.oxkit()
            .args(["login", "-u", "alice", "--password-stdin", &host]),
        "wonder-land-9\n",
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("certs.d") && err.contains(&host), "{err}");

    trust(&env, &reg);
    // A wrong password is refused, nothing is saved, and the password is not shown.
    let (code, out, err) = run_with_stdin(
        env.oxkit()
            .args(["login", "-u", "alice", "--password-stdin", &host]),
        "not-her-password\n",
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("refused the user name or password") && err.contains("401"),
        "{err}"
    );
    assert!(!err.contains("not-her-password") && !out.contains("not-her-password"));
    assert!(!env.home().join(".docker/config.json").exists());

    let (code, out, err) = run_with_stdin(
        env.oxkit()
            .args(["login", "-u", "alice", "--password-stdin", &host]),
        "wonder-land-9\n",
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains("Login Succeeded"), "{err}");
    assert!(err.contains("unencrypted"), "{err}");
    assert!(!err.contains("wonder-land-9") && !out.contains("wonder-land-9"));
    let cfg = docker_config(&env);
    assert_eq!(
        cfg["auths"][&host]["auth"], "YWxpY2U6d29uZGVyLWxhbmQtOQ==",
        "{cfg}"
    ); // alice:wonder-land-9
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.home().join(".docker/config.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The saved login works for pushing and pulling.
    let rootfs = tiny_rootfs(&env, "private");
    let target = format!("{host}/private/busybox:1");
    run_ok(
        env.oxkit()
            .args(["image", "import", "--platform", "linux/amd64"])
            .arg(&rootfs)
            .arg(&target),
    );
    run_ok(env.oxkit().args(["cache", "push", &target]));
    let other = Env::new();
    trust(&other, &reg);
    let err = run_fail(other.oxkit().args(["cache", "pull", &target]));
    assert!(err.contains(&format!("oxkit login {host}")), "{err}");
    std::fs::create_dir_all(other.home().join(".docker")).unwrap();
    std::fs::copy(
        env.home().join(".docker/config.json"),
        other.home().join(".docker/config.json"),
    )
    .unwrap();
    run_ok(other.oxkit().args(["cache", "pull", &target]));

    run_ok(env.oxkit().args(["logout", &host]));
    assert!(docker_config(&env)["auths"].get(&host).is_none());
    let (code, _, err) = run_with_stdin(env.oxkit().args(["logout", &host]), "");
    assert_eq!(code, Some(0));
    assert!(err.contains("Not logged in"), "{err}");
}

#[test]
fn login_asks_on_the_terminal_without_echoing_the_password() {
    let reg = Registry::start_with(RegistryOpts {
        basic_auth: Some(("carol".into(), "tty-pass-77".into())),
        tls: true,
        ..Default::default()
    });
    let env = Env::new();
    trust(&env, &reg);
    let host = reg.host();
    let (ok, shown) = on_terminal(
        &env,
        &format!("login {host}"),
        &[("Username: ", "carol"), ("Password: ", "tty-pass-77")],
    );
    assert!(ok, "{shown}");
    // The user name is echoed as it is typed; the password is not.
    assert!(shown.contains("Username: carol"), "{shown}");
    assert!(
        !shown.contains("tty-pass-77"),
        "the password was echoed: {shown}"
    );
    assert!(shown.contains("Login Succeeded"), "{shown}");
    assert_eq!(
        docker_config(&env)["auths"][&host]["auth"],
        "Y2Fyb2w6dHR5LXBhc3MtNzc=",
        "carol:tty-pass-77 saved"
    );
}

#[test]
fn login_saves_to_the_configured_credential_helper() {
    let reg = Registry::start_with(RegistryOpts {
        basic_auth: Some(("bob".into(), "helper-pw".into())),
        tls: false,
        ..Default::default()
    });
    let env = Env::new();
    let bin = env.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-test");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nd={}\ncase \"$1\" in\nstore) cat > \"$d/stored\" ;;\nget) read s; if [ -f \"$d/stored\" ]; then cat \"$d/stored\"; else echo 'credentials not found in native keychain'; exit 1; fi ;;\nerase) rm -f \"$d/stored\" ;;\nesac\n",
            bin.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(env.home().join(".docker")).unwrap();
    std::fs::write(
        env.home().join(".docker/config.json"),
        r#"{"credsStore":"test"}"#,
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let host = reg.host();
    let (code, out, err) = run_with_stdin(
        env.oxkit()
            .env("PATH", &path)
            .args(["login", "-u", "bob", "--password-stdin", &host]),
        "helper-pw",
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!err.contains("unencrypted"), "{err}");
    let stored = std::fs::read_to_string(bin.join("stored")).unwrap();
    assert!(stored.contains("\"Secret\":\"helper-pw\""), "{stored}");
    let raw = std::fs::read_to_string(env.home().join(".docker/config.json")).unwrap();
    assert!(!raw.contains("helper-pw"), "{raw}");

    // Commands find the credentials through the helper.
    let target = format!("{host}/helped/busybox:1");
    run_ok(
        env.oxkit()
            .env("PATH", &path)
            .args(["image", "import", "--platform", "linux/amd64"])
            .arg(tiny_rootfs(&env, "helped"))
            .arg(&target),
    );
    run_ok(
        env.oxkit()
            .env("PATH", &path)
            .args(["cache", "push", &target]),
    );
    run_ok(env.oxkit().env("PATH", &path).args(["logout", &host]));
    assert!(!bin.join("stored").exists());
}

/// A two-platform image (an index over amd64 and arm64 busybox images) in `store` as `name`.
fn two_platform_index(env: &Env, name: &str) -> (PathBuf, String) {
    for arch in ["amd64", "arm64"] {
        run_ok(
            env.oxkit()
                .args(["image", "import", "--platform", &format!("linux/{arch}")])
                .arg(tiny_rootfs(env, arch))
                .arg(format!("oxkit.local/parts:{arch}")),
        );
    }
    let store = Store::open(env.store()).unwrap();
    let children: Vec<_> = ["amd64", "arm64"]
        .iter()
        .map(|a| {
            let r = Reference::parse(&format!("oxkit.local/parts:{a}")).unwrap();
            store.resolve(&r).unwrap().unwrap()
        })
        .collect();
    let d = store
        .put_index_for(&Reference::parse(name).unwrap(), children)
        .unwrap();
    (env.store(), d.digest.to_string())
}

#[test]
fn oxkit_pushes_and_skopeo_reads_back() {
    let reg = Registry::start();
    let env = Env::new();
    let host = reg.host();
    let (_, index_digest) = two_platform_index(&env, "oxkit.local/multi:1");
    let remote = format!("{host}/oxkit/multi:1");
    let out = run_ok(env.oxkit().args([
        "cache",
        "push",
        "--with-arch-tags",
        "--remote-name",
        &remote,
        "oxkit.local/multi:1",
    ]));
    assert_eq!(out.trim(), format!("{remote}@{index_digest}"));

    // skopeo sees the index byte-exact, and copies every platform (checking every digest).
    let raw = run_ok(skopeo().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{remote}"),
    ]));
    let store = Store::open(env.store()).unwrap();
    let local = store.read_blob(&index_digest.parse().unwrap()).unwrap();
    assert_eq!(raw.as_bytes(), &local[..]);
    let copy = env.path().join("skopeo-copy");
    run_ok(skopeo().args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{remote}"),
        &format!("oci:{}:x", copy.display()),
    ]));
    let tags = json(&run_ok(skopeo().args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{host}/oxkit/multi"),
    ])));
    let mut tags: Vec<String> = serde_json::from_value(tags["Tags"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, ["1", "1-amd64", "1-arm64"]);
    let arm = json(&run_ok(skopeo().args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{host}/oxkit/multi:1-arm64"),
    ])));
    assert_eq!(arm["Architecture"], "arm64");

    // Pushing again: the tag exists, so nothing is done unless asked.
    let (code, _, err) = run_with_stdin(
        env.oxkit().args([
            "cache",
            "push",
            "--remote-name",
            &remote,
            "oxkit.local/multi:1",
        ]),
        "",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("already exists") && err.contains("--override"),
        "{err}"
    );
    let (code, _, err) = run_with_stdin(
        env.oxkit().args([
            "cache",
            "push",
            "--override",
            "--remote-name",
            &remote,
            "oxkit.local/multi:1",
        ]),
        "",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("0 blob(s) uploaded") && err.contains("4 already there"),
        "{err}"
    );
}

/// An OCI layout skopeo can push: one busybox image, made with oxkit in a separate store.
fn layout_for_skopeo(env: &Env) -> (PathBuf, String) {
    let dir = env.path().join("for-skopeo");
    run_ok(
        env.oxkit()
            .arg("--store")
            .arg(&dir)
            .args(["image", "import", "--platform", "linux/arm64"])
            .arg(tiny_rootfs(env, "for-skopeo"))
            .arg("src:1"),
    );
    (dir, "docker.io/library/src:1".to_string())
}

#[test]
fn skopeo_pushes_and_oxkit_pulls() {
    let reg = Registry::start();
    let env = Env::new();
    let host = reg.host();
    let (layout, name) = layout_for_skopeo(&env);
    let remote = format!("{host}/skopeo/busybox:1");
    run_ok(skopeo().args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:{name}", layout.display()),
        &format!("docker://{remote}"),
    ]));
    let raw = run_ok(skopeo().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{remote}"),
    ]));
    let want = oxkit_spec::Digest::sha256(raw.as_bytes());

    // Single-platform image, asked for on another platform: pulled as it is.
    let out = run_ok(
        env.oxkit()
            .args(["cache", "pull", "--platform", "linux/arm64", &remote]),
    );
    assert_eq!(out.trim(), format!("{remote}@{want}"));
    let ls = json(&run_ok(env.oxkit().args(["--json", "cache", "ls"])));
    let row = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reference"] == remote.as_str())
        .unwrap();
    assert_eq!(row["digest"], want.as_str());
    assert_eq!(row["platforms"], serde_json::json!(["linux/arm64"]));
    run_ok(env.oxkit().args(["cache", "fsck"]));
    // The layer is the very bytes skopeo pushed.
    let store = Store::open(env.store()).unwrap();
    let m: ImageManifest = serde_json::from_slice(raw.as_bytes()).unwrap();
    let src = Store::open(&layout).unwrap();
    for l in &m.layers {
        assert_eq!(
            store.read_blob(&l.digest).unwrap(),
            src.read_blob(&l.digest).unwrap()
        );
    }
    // Again: everything is present.
    let (code, _, err) = run_with_stdin(env.oxkit().args(["cache", "pull", &remote]), "");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("0 blob(s) fetched"), "{err}");
}

#[test]
fn pulling_one_platform_of_an_index() {
    let reg = Registry::start();
    let env = Env::new();
    let host = reg.host();
    two_platform_index(&env, "oxkit.local/multi:2");
    let remote = format!("{host}/idx/multi:2");
    run_ok(env.oxkit().args([
        "cache",
        "push",
        "--remote-name",
        &remote,
        "oxkit.local/multi:2",
    ]));

    let fresh = Env::new();
    run_ok(
        fresh
            .oxkit()
            .args(["cache", "pull", "--platform", "linux/arm64", &remote]),
    );
    let store = Store::open(fresh.store()).unwrap();
    let r = Reference::parse(&remote).unwrap();
    let d = store.resolve(&r).unwrap().unwrap();
    assert!(mt::is_manifest(&d.media_type), "{d:?}");
    assert_eq!(d.platform, Some(Platform::linux("arm64").unwrap()));
    let err =
        run_fail(
            fresh
                .oxkit()
                .args(["cache", "pull", "--platform", "linux/riscv64", &remote]),
        );
    assert!(
        err.contains("riscv64") && err.contains("linux/amd64"),
        "{err}"
    );

    let all = Env::new();
    run_ok(
        all.oxkit()
            .args(["cache", "pull", "--all-platforms", &remote]),
    );
    let store = Store::open(all.store()).unwrap();
    assert!(mt::is_index(
        &store.resolve(&r).unwrap().unwrap().media_type
    ));
    run_ok(all.oxkit().args(["cache", "fsck"]));
}

#[test]
fn registry_errors_say_what_to_do() {
    let env = Env::new();
    let err = run_fail(
        env.oxkit()
            .args(["cache", "pull", "no-such-registry.invalid/x/y:1"]),
    );
    assert!(
        err.contains("no-such-registry.invalid") && err.contains("DNS"),
        "{err}"
    );

    let reg = Registry::start();
    let err =
        run_fail(
            env.oxkit()
                .args(["cache", "pull", &format!("{}/nothing/here:1", reg.host())]),
        );
    assert!(
        err.contains("MANIFEST_UNKNOWN") || err.contains("NAME_UNKNOWN"),
        "{err}"
    );
    assert!(
        err.contains("404") && err.contains("/v2/nothing/here/manifests/1"),
        "{err}"
    );

    let err = run_fail(env.oxkit().args(["cache", "push", "oxkit.local/absent:1"]));
    assert!(
        err.contains("oxkit.local/absent:1") && err.contains("cache ls"),
        "{err}"
    );
}
