//! Publishing packages through the real binary against Debian's docker-registry: `pkg push`
//! (build what is missing, push TAG-ARCH images, merge the index, sign), read back by skopeo
//! and checked by cosign; a second push sends nothing (counted by a proxy in front of the
//! registry, not by oxkit's own report); concurrent pushes of different architectures from
//! two processes; `pkg manifest`; releases; refusals; and errors from hosts that are not
//! registries or refuse us.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use oxkit_registry::{Client, ClientOptions};
use oxkit_spec::{Digest, Reference};
use oxkit_store::oci::{ImageIndex, media_type as mt};

use crate::support::{
    Env, Registry, RegistryOpts, cosign, cosign_sign, require_tool, run_fail, run_ok,
};

/// `cosign verify --key KEY REF`, offline; its JSON payloads on success.
pub(crate) fn cosign_verify(
    env: &Env,
    key: &str,
    image: &str,
) -> Result<serde_json::Value, String> {
    let out = cosign(env, "")
        .args([
            "verify",
            "--key",
            key,
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            image,
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

/// An oxkit key pair `ox.key`/`ox.pub` in the env's directory, passphrase `pw`.
pub(crate) fn oxkit_key(env: &Env) {
    run_ok(
        env.oxkit()
            .args(["key", "generate", "--output-key-prefix", "ox"])
            .env("COSIGN_PASSWORD", "pw"),
    );
}

/// A package `ORG/NAME` (ORG on the registry `host`) for `arches`: `FROM scratch` plus a file,
/// so building needs no base image and no RUN. Not in git: never dirty.
pub(crate) fn package(env: &Env, host: &str, name: &str, arches: &[&str]) -> PathBuf {
    let dir = env.path().join("pkgs").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("build.yml"),
        format!(
            "image: {name}\norg: {host}/ox\narches:\n{}",
            arches
                .iter()
                .map(|a| format!("  - {a}\n"))
                .collect::<String>()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY payload /payload\n",
    )
    .unwrap();
    let mut payload = Vec::new();
    for i in 0..40_000u32 {
        payload
            .extend_from_slice(&(i.wrapping_mul(2_654_435_761) ^ name.len() as u32).to_le_bytes());
    }
    std::fs::write(dir.join("payload"), payload).unwrap();
    dir
}

/// `oxkit pkg push --json ARGS` with passphrase `pw`; the parsed JSON document.
pub(crate) fn push_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let out = run_ok(
        env.oxkit()
            .env("COSIGN_PASSWORD", "pw")
            .args(["--json", "pkg", "push"])
            .args(args),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

pub(crate) fn show_tag(env: &Env, dir: &Path) -> String {
    run_ok(env.oxkit().args(["pkg", "show-tag"]).arg(dir))
        .trim()
        .to_string()
}

/// A registry client as a test sees the registry (plain HTTP on loopback).
pub(crate) fn client() -> Client {
    Client::new(ClientOptions::default())
}

fn index_of(reference: &str) -> (Digest, ImageIndex) {
    let m = client()
        .get_manifest(&Reference::parse(reference).unwrap())
        .unwrap();
    assert_eq!(m.media_type, mt::OCI_INDEX, "{reference}");
    (m.digest, serde_json::from_slice(&m.bytes).unwrap())
}

fn arches_of(index: &ImageIndex) -> Vec<String> {
    let mut a: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|m| m.platform.as_ref().map(|p| p.architecture.clone()))
        .collect();
    a.sort();
    a
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Requests that went through a [`Proxy`], by kind.
#[derive(Default, Debug)]
pub(crate) struct Seen {
    /// `POST .../blobs/uploads/`: a blob upload started.
    pub(crate) uploads: AtomicUsize,
    /// `PUT .../manifests/...`.
    pub(crate) manifest_puts: AtomicUsize,
    pub(crate) requests: AtomicUsize,
}

/// A TCP proxy in front of the registry that parses the HTTP requests passing through and
/// counts them: an account of what oxkit sent that does not rely on oxkit's own report.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    pub(crate) seen: Arc<Seen>,
}

impl Proxy {
    pub(crate) fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let counts = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let counts = counts.clone();
                std::thread::spawn(move || {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        return;
                    };
                    let (mut back_from, mut back_to) =
                        (server.try_clone().unwrap(), client.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut back_from, &mut back_to);
                        let _ = back_to.shutdown(std::net::Shutdown::Both);
                    });
                    // oxkit tries HTTPS first: a TLS hello is passed through as bytes (the
                    // registry answers it as the plain-HTTP server it is).
                    let mut first_byte = [0u8; 1];
                    if client.peek(&mut first_byte).is_ok() && first_byte[0] == 0x16 {
                        let (mut from, mut to) = (client, server);
                        let _ = std::io::copy(&mut from, &mut to);
                        return;
                    }
                    let _ = forward_requests(client, server, &counts);
                });
            }
        });
        Self { port, seen }
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn uploads(&self) -> usize {
        self.seen.uploads.load(Ordering::SeqCst)
    }

    pub(crate) fn manifest_puts(&self) -> usize {
        self.seen.manifest_puts.load(Ordering::SeqCst)
    }
}

/// Copies requests from `client` to `server`, one at a time: head, then `Content-Length`
/// bytes of body (reqwest sends every body with a length), counting each by its request line.
fn forward_requests(client: TcpStream, mut server: TcpStream, seen: &Seen) -> std::io::Result<()> {
    let mut reader = BufReader::new(client);
    loop {
        let mut head = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&line).to_ascii_lowercase();
            if let Some(v) = text.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            head.extend_from_slice(&line);
            if line == b"\r\n" {
                break;
            }
        }
        let request_line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        seen.requests.fetch_add(1, Ordering::SeqCst);
        if request_line.starts_with("POST ") && request_line.contains("/blobs/uploads/") {
            seen.uploads.fetch_add(1, Ordering::SeqCst);
        }
        if request_line.starts_with("PUT ") && request_line.contains("/manifests/") {
            seen.manifest_puts.fetch_add(1, Ordering::SeqCst);
        }
        server.write_all(&head)?;
        let mut body = (&mut reader).take(length as u64);
        std::io::copy(&mut body, &mut server)?;
    }
}

#[test]
fn push_a_two_arch_package_read_it_back_and_push_nothing_the_second_time() {
    let reg = Registry::start();
    let proxy = Proxy::start(reg.port);
    let env = Env::new();
    oxkit_key(&env);
    let dir = package(&env, &proxy.host(), "hello", &["amd64", "arm64"]);
    let name = show_tag(&env, &dir);

    let first = push_json(&env, &["--key", "ox.key", dir.to_str().unwrap()]);
    let p = &first["packages"][0];
    assert_eq!(p["name"], name.as_str());
    let arches: Vec<&str> = p["arches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["platform"].as_str().unwrap())
        .collect();
    assert_eq!(arches, ["linux/amd64", "linux/arm64"]);
    assert!(
        p["arches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["pushed"] == true)
    );
    assert!(
        proxy.uploads() >= 3,
        "config per arch and the layer went up: {:?}",
        proxy.seen
    );
    assert!(first["blobsUploaded"].as_u64().unwrap() >= 3);

    // skopeo reads the index byte-exact and copies every platform (checking every digest).
    let remote = format!(
        "{}/ox/hello:{}",
        reg.host(),
        name.rsplit(':').next().unwrap()
    );
    let skopeo = || Command::new(require_tool("skopeo"));
    let raw = run_ok(skopeo().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{remote}"),
    ]));
    assert_eq!(
        Digest::sha256(raw.as_bytes()).to_string(),
        p["index"].as_str().unwrap()
    );
    let index: ImageIndex = serde_json::from_str(&raw).unwrap();
    assert_eq!(arches_of(&index), ["amd64", "arm64"]);
    let copy = env.path().join("skopeo-copy");
    run_ok(skopeo().args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{remote}"),
        &format!("oci:{}:x", copy.display()),
    ]));
    for arch in ["amd64", "arm64"] {
        let info: serde_json::Value = serde_json::from_str(&run_ok(skopeo().args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{remote}-{arch}"),
        ])))
        .unwrap();
        assert_eq!(info["Architecture"], arch);
    }

    // cosign accepts oxkit's signatures on each arch image and on the index.
    for image in [
        remote.clone(),
        format!("{remote}-amd64"),
        format!("{remote}-arm64"),
    ] {
        let payloads =
            cosign_verify(&env, "ox.pub", &image).unwrap_or_else(|e| panic!("{image}: {e}"));
        assert_eq!(
            payloads[0]["optional"]["dev.oxkit.package.hash"],
            name.rsplit(':').next().unwrap(),
            "{payloads}"
        );
    }

    // Second push: no blob upload and no manifest write reach the registry.
    let (uploads, puts) = (proxy.uploads(), proxy.manifest_puts());
    let out = env
        .oxkit()
        .env("COSIGN_PASSWORD", "pw")
        .args(["--json", "pkg", "push", "--key", "ox.key"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        proxy.uploads(),
        uploads,
        "second push uploaded: {}",
        stderr_of(&out)
    );
    assert_eq!(
        proxy.manifest_puts(),
        puts,
        "second push wrote manifests: {}",
        stderr_of(&out)
    );
    let second: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(second["blobsUploaded"], 0);
    assert!(
        second["packages"][0]["arches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["pushed"] == false)
    );
    assert!(
        stderr_of(&out).contains("nothing pushed"),
        "{}",
        stderr_of(&out)
    );

    // cosign signs the index too, with oxkit's key and with its own; oxkit verify sees all.
    run_ok(cosign(&env, "k2").arg("generate-key-pair"));
    for (key, pass) in [("ox.key", "pw"), ("cosign.key", "k2")] {
        cosign_sign(&env, pass, key, &remote, &[&format!("signed-with={key}")]);
    }
    let out = run_ok(env.oxkit().args([
        "--json",
        "verify",
        "--key",
        "ox.pub",
        "--key",
        "cosign.pub",
        &remote,
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], true);
    let sigs = v["images"][0]["signatures"].as_array().unwrap();
    let by = |key: &str| sigs.iter().filter(|s| s["key"] == key).count();
    assert_eq!(
        by("ox.pub"),
        2,
        "oxkit's own and cosign's with the oxkit key: {v}"
    );
    assert_eq!(by("cosign.pub"), 1, "{v}");
    assert!(
        sigs.iter()
            .any(|s| s["annotations"]["signed-with"] == "cosign.key"),
        "{v}"
    );
    // A third push keeps cosign's signatures and adds nothing.
    let third = push_json(&env, &["--key", "ox.key", dir.to_str().unwrap()]);
    assert!(
        third["packages"][0]["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["added"] == false)
    );
    let v: serde_json::Value = serde_json::from_str(&run_ok(env.oxkit().args([
        "--json",
        "verify",
        "--key",
        "ox.pub",
        "--key",
        "cosign.pub",
        &remote,
    ])))
    .unwrap();
    assert_eq!(v["images"][0]["signatures"].as_array().unwrap().len(), 3);
}

#[test]
fn concurrent_pushes_of_two_architectures_keep_both_20_times() {
    let reg = Registry::start();
    let env = Env::new();
    // An unencrypted key pair (plain.key with plain.pub beside it): signing is exercised
    // without spending half a second of scrypt per process and round.
    let openssl = require_tool("openssl");
    run_ok(Command::new(&openssl).current_dir(env.path()).args([
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "plain.key",
    ]));
    run_ok(Command::new(&openssl).current_dir(env.path()).args([
        "pkey",
        "-in",
        "plain.key",
        "-pubout",
        "-out",
        "plain.pub",
    ]));
    let dir = package(&env, &reg.host(), "race", &["amd64", "arm64"]);
    let t0 = Instant::now();
    let mut retried = 0;
    for round in 0..20 {
        let hash = format!("race{round}");
        // Two machines: separate stores, one architecture each, started together.
        let spawn = |arch: &str| {
            env.oxkit()
                .env("OXKIT_STORE", env.path().join(format!("store-{arch}")))
                .args([
                    "pkg",
                    "--hash",
                    &hash,
                    "push",
                    "--key",
                    "plain.key",
                    "--platforms",
                ])
                .arg(format!("linux/{arch}"))
                .arg(&dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn("amd64"), spawn("arm64"));
        for child in [a, b] {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round}: {}", stderr_of(&out));
            if stderr_of(&out).contains("another writer") {
                retried += 1;
            }
        }
        let remote = format!("{}/ox/race:{hash}", reg.host());
        let (digest, index) = index_of(&remote);
        assert_eq!(
            arches_of(&index),
            ["amd64", "arm64"],
            "round {round}: {index:?}"
        );
        // The index that stayed is signed (whoever wrote it last signed it).
        let r = Reference::parse(&remote).unwrap();
        let found = oxkit_publish::verify_reference(
            &client(),
            &r.with_digest(digest),
            &[oxkit_publish::NamedKey {
                name: "ox".into(),
                key: oxkit_sign::load_public_key(&env.path().join("plain.pub")).unwrap(),
            }],
            true,
        )
        .unwrap();
        assert!(
            found.iter().all(|v| v.verified()),
            "round {round}: {found:?}"
        );
    }
    eprintln!(
        "20/20 concurrent two-architecture pushes kept both ({retried} process(es) had to merge again) in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn an_index_keeps_architectures_pushed_elsewhere_and_pkg_manifest_rebuilds_it() {
    let reg = Registry::start();
    let env = Env::new();
    let dir = package(&env, &reg.host(), "merge", &["amd64", "arm64"]);
    let name = show_tag(&env, &dir);
    let remote = format!(
        "{}/ox/merge:{}",
        reg.host(),
        name.rsplit(':').next().unwrap()
    );
    // One architecture at a time, as from two machines: --platforms limits the push (the first
    // through `pkg build --push`, the same path as `pkg push`).
    run_ok(
        env.oxkit()
            .args([
                "pkg",
                "build",
                "--push",
                "--no-sign",
                "--platforms",
                "linux/arm64",
            ])
            .arg(&dir),
    );
    let (_, index) = index_of(&remote);
    assert_eq!(arches_of(&index), ["arm64"]);
    let amd = client()
        .head_manifest(&Reference::parse(&format!("{remote}-amd64")).unwrap())
        .unwrap();
    assert!(amd.is_none(), "--platforms linux/arm64 pushed amd64");
    let json = push_json(
        &env,
        &[
            "--no-sign",
            "--platforms",
            "linux/amd64",
            dir.to_str().unwrap(),
        ],
    );
    let (digest, index) = index_of(&remote);
    assert_eq!(arches_of(&index), ["amd64", "arm64"]);
    assert_eq!(json["packages"][0]["index"], digest.to_string());

    // The index disappears (deleted by digest); pkg manifest rebuilds it from the TAG-ARCH tags.
    client()
        .delete_manifest(
            &Reference::parse(&remote)
                .unwrap()
                .without_tag()
                .with_digest(digest.clone()),
        )
        .unwrap();
    assert!(
        client()
            .head_manifest(&Reference::parse(&remote).unwrap())
            .unwrap()
            .is_none()
    );
    let out = run_ok(
        env.oxkit()
            .args(["--json", "pkg", "manifest", "--no-sign"])
            .arg(&dir),
    );
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m[0]["indexWritten"], true);
    let (rebuilt, index) = index_of(&remote);
    assert_eq!(arches_of(&index), ["amd64", "arm64"]);
    assert_eq!(
        rebuilt, digest,
        "the same canonical index as the push wrote"
    );
    // And again: nothing to do.
    let out = run_ok(
        env.oxkit()
            .args(["--json", "pkg", "manifest", "--no-sign"])
            .arg(&dir),
    );
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m[0]["indexWritten"], false);
}

#[test]
fn releases_dirty_packages_and_missing_keys() {
    let reg = Registry::start();
    let env = Env::new();
    oxkit_key(&env);
    let dir = package(&env, &reg.host(), "rel", &["amd64"]);
    let name = show_tag(&env, &dir);
    let repo = format!("{}/ox/rel", reg.host());

    // No key and no --no-sign: refused before anything is pushed, saying how to make a key.
    let err = run_fail(env.oxkit().args(["pkg", "push"]).arg(&dir));
    assert!(
        err.contains("oxkit key generate") && err.contains("--no-sign"),
        "{err}"
    );
    assert!(
        client()
            .head_manifest(&Reference::parse(&name).unwrap())
            .unwrap()
            .is_none()
    );

    // NOTRUST=1 pushes unsigned and says so.
    let out = env
        .oxkit()
        .env("NOTRUST", "1")
        .args(["pkg", "push"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("Not signing"),
        "{}",
        stderr_of(&out)
    );
    let (digest, _) = index_of(&name);
    let sig = Reference::parse(&format!("{repo}:{}", oxkit_sign::signature_tag(&digest))).unwrap();
    assert!(
        client().head_manifest(&sig).unwrap().is_none(),
        "NOTRUST=1 signed anyway"
    );

    // --release publishes ORG/IMAGE:NAME and NAME-ARCH, signed (the index digest is the same).
    let json = push_json(
        &env,
        &[
            "--key",
            "ox.key",
            "--release",
            "v1.0",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(json["packages"][0]["release"], format!("{repo}:v1.0"));
    let (rel, _) = index_of(&format!("{repo}:v1.0"));
    assert_eq!(rel, digest);
    assert!(
        client()
            .head_manifest(&Reference::parse(&format!("{repo}:v1.0-amd64")).unwrap())
            .unwrap()
            .is_some()
    );
    cosign_verify(&env, "ox.pub", &format!("{repo}:v1.0")).unwrap();

    // A wrong passphrase, for a version that needs signing: a clear error, no key material,
    // no passphrase echoed, and nothing tagged (the key is unlocked before any manifest goes
    // up). A version already signed needs no unlocking (its signatures are recognised with
    // ox.pub).
    let out = env
        .oxkit()
        .env("COSIGN_PASSWORD", "not-the-passphrase")
        .args(["pkg", "--hash", "wrongpw", "push", "--key", "ox.key"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    for tag in ["wrongpw", "wrongpw-amd64"] {
        let r = Reference::parse(&format!("{repo}:{tag}")).unwrap();
        assert!(
            client().head_manifest(&r).unwrap().is_none(),
            "{tag} was pushed"
        );
    }
    let err = stderr_of(&out);
    assert!(
        err.contains("ox.key") && err.to_lowercase().contains("passphrase"),
        "{err}"
    );
    let key_text = std::fs::read_to_string(env.path().join("ox.key")).unwrap();
    for line in key_text
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
    {
        assert!(!err.contains(line), "key material in: {err}");
    }
    assert!(!err.contains("not-the-passphrase"), "{err}");

    // A dirty package is refused unless --force-dirty, which pushes it under its -dirty tag;
    // a release of a dirty package is refused even then.
    let git = |args: &[&str]| run_ok(Command::new("git").current_dir(&dir).args(args));
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&[
        "-c",
        "user.email=t@t",
        "-c",
        "user.name=t",
        "commit",
        "-qm",
        "pkg",
    ]);
    run_ok(
        env.oxkit()
            .args(["pkg", "push", "--no-sign", "--dry-run"])
            .arg(&dir),
    );
    run_ok(
        env.oxkit()
            .args(["pkg", "--force-dirty", "show-tag"])
            .arg(&dir),
    );
    let out = run_ok(
        env.oxkit()
            .args(["pkg", "--force-dirty", "push", "--no-sign"])
            .arg(&dir),
    );
    assert!(out.contains("-dirty-"), "{out}");
    let dirty_name = run_ok(
        env.oxkit()
            .args(["pkg", "--force-dirty", "show-tag"])
            .arg(&dir),
    );
    index_of(dirty_name.trim());
    let err = run_fail(
        env.oxkit()
            .args([
                "pkg",
                "--force-dirty",
                "push",
                "--no-sign",
                "--release",
                "v3",
            ])
            .arg(&dir),
    );
    assert!(err.contains("dirty") && err.contains("/ox/rel:"), "{err}");
    std::fs::write(dir.join("payload"), "changed").unwrap();
    let err = run_fail(
        env.oxkit()
            .args(["pkg", "push", "--no-sign", "--release", "v2"])
            .arg(&dir),
    );
    assert!(err.contains("dirty") && err.contains("commit"), "{err}");
    assert!(
        client()
            .head_manifest(&Reference::parse(&format!("{repo}:v2")).unwrap())
            .unwrap()
            .is_none()
    );
}

/// `oxkit key unlock`: the pushes that follow sign without the passphrase (none is given, and
/// there is no terminal to ask on) and cosign accepts what they signed, until `key lock`, the
/// timeout, or a change to the key file.
#[test]
fn an_unlocked_key_signs_without_its_passphrase_until_locked_or_expired() {
    let reg = Registry::start();
    let env = Env::new();
    oxkit_key(&env);
    let dir = package(&env, &reg.host(), "unlocked", &["amd64"]);
    let repo = format!("{}/ox/unlocked", reg.host());
    // No passphrase anywhere, no terminal.
    let push = |hash: &str| {
        env.oxkit()
            .stdin(Stdio::null())
            .args(["pkg", "--hash", hash, "push", "--key", "ox.key"])
            .arg(&dir)
            .output()
            .unwrap()
    };
    let key_cmd = |args: &[&str]| {
        let mut c = env.oxkit();
        c.stdin(Stdio::null()).arg("key").args(args);
        c
    };

    // A wrong passphrase unlocks nothing.
    let err = run_fail(
        key_cmd(&["unlock", "--key", "ox.key"]).env("COSIGN_PASSWORD", "not-the-passphrase"),
    );
    assert!(
        err.contains("ox.key") && err.contains("passphrase"),
        "{err}"
    );
    assert!(!err.contains("not-the-passphrase"), "{err}");
    assert_eq!(push("before").status.code(), Some(1));

    let unlocked = key_cmd(&["unlock", "--key", "ox.key", "--timeout", "5m"])
        .env("COSIGN_PASSWORD", "pw")
        .output()
        .unwrap();
    if !unlocked.status.success() && stderr_of(&unlocked).contains("kernel keyring") {
        eprintln!(
            "NOTE: no usable kernel keyring here ({}); key unlock not tested",
            stderr_of(&unlocked)
        );
        return;
    }
    assert!(unlocked.status.success(), "{}", stderr_of(&unlocked));
    let json = run_ok(
        key_cmd(&["unlock", "--key", "ox.key", "--timeout", "1h30m"])
            .arg("--json")
            .env("COSIGN_PASSWORD", "pw"),
    );
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["timeout_seconds"], 5400, "{json}");

    let out = push("v1");
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("unlocked by `oxkit key unlock`"),
        "{}",
        stderr_of(&out)
    );
    for tag in ["v1", "v1-amd64"] {
        cosign_verify(&env, "ox.pub", &format!("{repo}:{tag}")).unwrap();
    }

    // Locked: the next push needs the passphrase again, and pushes nothing without it.
    assert!(run_ok(&mut key_cmd(&["lock", "--key", "ox.key"])).contains("Locked"));
    let out = push("v2");
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("passphrase"),
        "{}",
        stderr_of(&out)
    );
    assert!(
        client()
            .head_manifest(&Reference::parse(&format!("{repo}:v2-amd64")).unwrap())
            .unwrap()
            .is_none()
    );
    assert!(run_ok(&mut key_cmd(&["lock", "--key", "ox.key"])).contains("was not unlocked"));

    // The kernel forgets it when the timeout ends.
    run_ok(key_cmd(&["unlock", "--key", "ox.key", "--timeout", "1s"]).env("COSIGN_PASSWORD", "pw"));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(push("v3").status.code(), Some(1));

    // Unlocking is for one key file: once the file is replaced, the old unlock does not apply.
    // (Briefly: nothing can remove the old file's entry once the file is gone.)
    run_ok(
        key_cmd(&["unlock", "--key", "ox.key", "--timeout", "20s"]).env("COSIGN_PASSWORD", "pw"),
    );
    run_ok(
        key_cmd(&["generate", "--output-key-prefix", "ox", "--force"]).env("COSIGN_PASSWORD", "pw"),
    );
    let out = push("v4");
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
}

/// A one-route HTTP server: answers every request with `respond(request line)`.
fn tiny_server(
    respond: impl Fn(&str) -> (u16, &'static str, String) + Send + Sync + 'static,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let respond = Arc::new(respond);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let respond = respond.clone();
            std::thread::spawn(move || {
                // oxkit tries HTTPS first: answer a TLS hello as a plain-HTTP server does, so
                // the client sees a TLS failure and falls back to HTTP at once.
                let mut first_byte = [0u8; 1];
                if stream.peek(&mut first_byte).is_err() || first_byte[0] == 0x16 {
                    let mut s = stream;
                    let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
                    return;
                }
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                        break;
                    }
                }
                let (status, ctype, body) = respond(first.trim());
                let mut s = stream;
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    body.len(),
                    if first.starts_with("HEAD") {
                        ""
                    } else {
                        body.as_str()
                    }
                );
            });
        }
    });
    port
}

#[test]
fn bad_registries_give_errors_naming_the_reference_and_what_the_registry_said() {
    let env = Env::new();
    oxkit_key(&env);
    std::fs::write(
        env.path().join("k.pub"),
        std::fs::read(env.path().join("ox.pub")).unwrap(),
    )
    .unwrap();

    // A host that does not resolve.
    let dir = package(&env, "no-such-host.invalid", "lost", &["amd64"]);
    let err = run_fail(env.oxkit().args(["pkg", "push", "--no-sign"]).arg(&dir));
    assert!(
        err.contains("no-such-host.invalid/ox/lost:") && err.contains("cannot resolve"),
        "{err}"
    );

    // A registry that wants credentials we do not have, then refuses wrong ones.
    let reg = Registry::start_with(RegistryOpts {
        basic_auth: Some(("alice".into(), "secret".into())),
        tls: false,
        ..Default::default()
    });
    let dir = package(&env, &reg.host(), "locked", &["amd64"]);
    let err = run_fail(env.oxkit().args(["pkg", "push", "--no-sign"]).arg(&dir));
    assert!(
        err.contains("/ox/locked:") && err.contains("oxkit login"),
        "{err}"
    );
    assert!(
        err.contains("UNAUTHORIZED"),
        "the registry's own message: {err}"
    );
    let cfg = env.home().join(".docker");
    std::fs::create_dir_all(&cfg).unwrap();
    let auth = base64_of("alice:wrong");
    std::fs::write(
        cfg.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let err = run_fail(env.oxkit().args(["pkg", "push", "--no-sign"]).arg(&dir));
    assert!(
        err.contains("refused the credentials") && err.contains("/ox/locked:"),
        "{err}"
    );
    assert!(!err.contains("wrong"), "the password leaked: {err}");

    // A "registry" whose manifest has a media type nobody knows.
    let port = tiny_server(|line| {
        if line.contains("/manifests/") {
            (
                200,
                "application/vnd.example.thing+json",
                r#"{"mediaType":"application/vnd.example.thing+json"}"#.into(),
            )
        } else {
            (200, "application/json", "{}".into())
        }
    });
    let err = run_fail(env.oxkit().args([
        "verify",
        "--key",
        "k.pub",
        &format!("127.0.0.1:{port}/ox/thing:1"),
    ]));
    assert!(
        err.contains(&format!("127.0.0.1:{port}/ox/thing:1"))
            && err.contains("application/vnd.example.thing+json"),
        "{err}"
    );

    // Something that answers HTML (a login page, a web server) instead of the registry API.
    let port = tiny_server(|_| {
        (
            200,
            "text/html",
            "<html><body>Please log in</body></html>".into(),
        )
    });
    let dir = package(&env, &format!("127.0.0.1:{port}"), "html", &["amd64"]);
    let err = run_fail(env.oxkit().args(["pkg", "push", "--no-sign"]).arg(&dir));
    assert!(
        err.contains(&format!("127.0.0.1:{port}/ox/html:")) && err.contains("HTML"),
        "{err}"
    );
    let err = run_fail(env.oxkit().args([
        "verify",
        "--key",
        "k.pub",
        &format!("127.0.0.1:{port}/ox/html:1"),
    ]));
    assert!(
        err.contains(&format!("127.0.0.1:{port}/ox/html:1")) && err.contains("HTML"),
        "{err}"
    );
}

/// base64 by the coreutils tool (the test binary has no base64 library of its own).
fn base64_of(text: &str) -> String {
    let mut child = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

#[test]
fn depends_images_are_pulled_by_digest_into_the_build_context() {
    let reg = Registry::start();
    let env = Env::new();
    // Two images in the registry, to depend on.
    let mut pinned = Vec::new();
    for name in ["tool", "helper"] {
        let rootfs = env.path().join(format!("rootfs-{name}"));
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::write(rootfs.join(name), name).unwrap();
        let local = format!("{}/deps/{name}:1", reg.host());
        run_ok(
            env.oxkit()
                .args(["image", "import"])
                .arg(&rootfs)
                .arg(&local),
        );
        run_ok(env.oxkit().args(["cache", "push", &local]));
        let digest = client()
            .get_manifest(&Reference::parse(&local).unwrap())
            .unwrap()
            .digest;
        pinned.push(format!("{}/deps/{name}@{digest}", reg.host()));
    }
    // A fresh store: the images must come from the registry.
    let store = oxkit_store::Store::open(env.path().join("fresh-store")).unwrap();
    let dir = env.path().join("pkgs/withdeps");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(
        dir.join("images.lst"),
        format!("# pinned\n{}\n\n{}\n", pinned[0], pinned[1]),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("deps")).unwrap();
    std::fs::write(dir.join("deps/stale.tar"), "old").unwrap();
    let resolve = |yml: &str| {
        std::fs::write(dir.join("build.yml"), yml).unwrap();
        oxkit_source::Resolver::new(oxkit_source::ResolveOptions::default())
            .resolve(&dir)
            .unwrap()
    };

    // target-dir: one OCI archive per image, named as LinuxKit names them; the dir emptied first.
    let pkg = resolve(
        "image: withdeps\ndepends:\n  docker-images:\n    target-dir: deps\n    from-file: images.lst\n",
    );
    let saved = oxkit_publish::depends::prepare_depends(&client(), &store, &pkg).unwrap();
    assert_eq!(saved.len(), 2);
    assert!(saved.iter().all(|s| s.pulled));
    assert!(!dir.join("deps/stale.tar").exists());
    for p in &pinned {
        let r = Reference::parse(p).unwrap();
        let file = dir.join("deps").join(format!(
            "{}@{}.tar",
            r.repository().rsplit('/').next().unwrap(),
            r.digest().unwrap()
        ));
        assert!(file.is_file(), "{} missing", file.display());
        // skopeo's oci-archive: syntax cannot name a path with ':' in it.
        let plain = env.path().join("check.tar");
        std::fs::copy(&file, &plain).unwrap();
        let info: serde_json::Value = serde_json::from_str(&run_ok(
            Command::new(require_tool("skopeo"))
                .args(["inspect", &format!("oci-archive:{}", plain.display())]),
        ))
        .unwrap();
        assert_eq!(info["Digest"], r.digest().unwrap().to_string(), "{p}");
    }

    // target: every image in one archive; the store has them now, so nothing is pulled.
    let pkg = resolve(&format!(
        "image: withdeps\ndepends:\n  docker-images:\n    target: all.tar\n    list:\n      - {}\n      - {}\n",
        pinned[0], pinned[1]
    ));
    let saved = oxkit_publish::depends::prepare_depends(&client(), &store, &pkg).unwrap();
    assert!(
        saved
            .iter()
            .all(|s| !s.pulled && s.path == dir.join("all.tar"))
    );
    let listing = run_ok(Command::new("tar").arg("-tf").arg(dir.join("all.tar")));
    assert!(listing.lines().any(|l| l == "index.json"), "{listing}");

    // An unpinned entry in from-file is refused, naming the file and the entry.
    std::fs::write(
        dir.join("images.lst"),
        format!("{}/deps/tool:1\n", reg.host()),
    )
    .unwrap();
    let pkg = resolve(
        "image: withdeps\ndepends:\n  docker-images:\n    target-dir: deps\n    from-file: images.lst\n",
    );
    let e = oxkit_publish::depends::prepare_depends(&client(), &store, &pkg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("images.lst") && e.contains("lacks a digest"),
        "{e}"
    );
}
