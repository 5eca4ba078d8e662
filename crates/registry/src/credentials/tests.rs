use std::os::unix::fs::PermissionsExt;

use super::*;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn basic(user: &str, pass: &str) -> Credentials {
    Credentials::Basic {
        username: user.into(),
        password: Secret::new(pass),
    }
}

/// A fake `docker-credential-test` that knows one server and records `store`/`erase` input.
fn fake_helper(dir: &Path) -> HelperRunner {
    let script = dir.join("docker-credential-test");
    write(
        &script,
        r#"#!/bin/sh
d=$(dirname "$0")
case "$1" in
get)
  read -r server
  if [ -f "$d/stored.json" ] && grep -q "\"ServerURL\":\"$server\"" "$d/stored.json"; then
    sed 's/"ServerURL":"[^"]*",//' "$d/stored.json"; exit 0
  fi
  case "$server" in
    reg.example:5000) printf '{"ServerURL":"reg.example:5000","Username":"helperuser","Secret":"helperpass"}' ;;
    https://index.docker.io/v1/) printf '{"ServerURL":"%s","Username":"<token>","Secret":"refresh-tok"}' "$server" ;;
    broken.example) echo "boom: keychain locked" >&2; exit 3 ;;
    *) echo "credentials not found in native keychain"; exit 1 ;;
  esac ;;
store) cat > "$d/stored.json" ;;
erase) read -r server; echo "$server" > "$d/erased"; rm -f "$d/stored.json" ;;
*) exit 2 ;;
esac
"#,
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", dir.display());
    HelperRunner {
        search_path: Some(path.into()),
    }
}

#[test]
fn auths_base64_fields_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    let auth = BASE64.encode("alice:s3cr:et");
    write(
        &cfg,
        &format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "reg.example:5000": {{"username": "bob", "password": "pw"}},
                "https://ghcr.io/v2/": {{"identitytoken": "idtok"}},
                "tok.example": {{"registrytoken": "regtok"}},
                "empty.example": {{}}
            }}, "psFormat": "keep me"}}"#
        ),
    );
    let c = DockerConfig::load(&cfg).unwrap();
    assert_eq!(c.get("docker.io").unwrap(), Some(basic("alice", "s3cr:et")));
    assert_eq!(
        c.get("index.docker.io").unwrap(),
        Some(basic("alice", "s3cr:et"))
    );
    assert_eq!(c.get("reg.example:5000").unwrap(), Some(basic("bob", "pw")));
    assert_eq!(
        c.get("ghcr.io").unwrap(),
        Some(Credentials::IdentityToken {
            token: Secret::new("idtok")
        })
    );
    assert_eq!(
        c.get("tok.example").unwrap(),
        Some(Credentials::RegistryToken {
            token: Secret::new("regtok")
        })
    );
    assert_eq!(c.get("empty.example").unwrap(), None);
    assert_eq!(c.get("other.example").unwrap(), None);
    // Keys are hosts: a port makes a different registry.
    assert_eq!(c.get("reg.example").unwrap(), None);
}

#[test]
fn missing_and_empty_files_mean_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let c = DockerConfig::load(dir.path().join("nope/config.json")).unwrap();
    assert_eq!(c.get("docker.io").unwrap(), None);
    write(&dir.path().join("e.json"), "\n");
    assert_eq!(
        DockerConfig::load(dir.path().join("e.json"))
            .unwrap()
            .get("x.io")
            .unwrap(),
        None
    );
}

#[test]
fn bad_files_name_the_path_and_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    write(&cfg, "{\"auths\": {\n  \"x.io\": {\"auth\": 12}}}");
    let e = DockerConfig::load(&cfg).unwrap_err().to_string();
    assert!(
        e.contains(&cfg.display().to_string()) && e.contains("line 2"),
        "{e}"
    );

    write(
        &cfg,
        r#"{"auths": {"x.io": {"auth": "bm90LWJhc2U2NC1zZWNyZXQ="}}}"#,
    ); // "not-base64-secret"
    let e = DockerConfig::load(&cfg)
        .unwrap()
        .get("x.io")
        .unwrap_err()
        .to_string();
    assert!(e.contains("USER:PASSWORD") && e.contains("x.io"), "{e}");
    assert!(
        !e.contains("not-base64-secret") && !e.contains("bm90LWJhc2U2NC1zZWNyZXQ"),
        "{e}"
    );

    write(&cfg, r#"{"auths": {"x.io": {"auth": "%%%hunter2"}}}"#);
    let e = DockerConfig::load(&cfg)
        .unwrap()
        .get("x.io")
        .unwrap_err()
        .to_string();
    assert!(e.contains("base64") && !e.contains("hunter2"), "{e}");
}

#[test]
fn cred_helpers_and_creds_store() {
    let dir = tempfile::tempdir().unwrap();
    let runner = fake_helper(&dir.path().join("bin"));
    let cfg = dir.path().join("config.json");
    write(
        &cfg,
        r#"{"credHelpers": {"reg.example:5000": "test", "broken.example": "test"},
            "auths": {"plain.example": {"auth": "dTpw"}, "broken.example": {"auth": "dTpw"}}}"#,
    );
    let c = DockerConfig::load_with(&cfg, runner.clone()).unwrap();
    assert_eq!(
        c.get("reg.example:5000").unwrap(),
        Some(basic("helperuser", "helperpass"))
    );
    // Not configured for a helper: the file's entry.
    assert_eq!(c.get("plain.example").unwrap(), Some(basic("u", "p")));
    // A failing helper falls back to the file instead of failing anonymous pulls.
    assert_eq!(c.get("broken.example").unwrap(), Some(basic("u", "p")));

    write(&cfg, r#"{"credsStore": "test"}"#);
    let c = DockerConfig::load_with(&cfg, runner.clone()).unwrap();
    assert_eq!(
        c.get("docker.io").unwrap(),
        Some(Credentials::IdentityToken {
            token: Secret::new("refresh-tok")
        })
    );
    assert_eq!(c.get("unknown.example").unwrap(), None);
    let e = runner
        .get("test", "broken.example")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("keychain locked") && e.contains("docker-credential-test"),
        "{e}"
    );
}

#[test]
fn missing_helper_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let runner = HelperRunner {
        search_path: Some(dir.path().as_os_str().to_owned()),
    };
    let e = runner.get("nosuch", "x.io").unwrap_err().to_string();
    assert!(
        e.contains("docker-credential-nosuch is not installed"),
        "{e}"
    );
}

#[test]
fn store_and_erase_in_the_file_keep_other_fields() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("docker/config.json");
    write(
        &cfg,
        r#"{"auths": {"http://reg.example:5000/v2/": {"auth": "b2xkOm9sZA=="}, "other.io": {"auth": "dTpw"}}, "detachKeys": "ctrl-x"}"#,
    );
    let mut c = DockerConfig::load(&cfg).unwrap();
    assert_eq!(
        c.store("reg.example:5000", &basic("me", "pa:ss")).unwrap(),
        StoredIn::File(cfg.clone())
    );
    let raw: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    assert_eq!(raw["detachKeys"], "ctrl-x");
    assert_eq!(raw["auths"]["other.io"]["auth"], "dTpw");
    // The old spelling of the same host is replaced, not duplicated.
    assert!(
        raw["auths"].get("http://reg.example:5000/v2/").is_none(),
        "{raw}"
    );
    assert_eq!(
        raw["auths"]["reg.example:5000"]["auth"],
        BASE64.encode("me:pa:ss")
    );
    let mode = std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let again = DockerConfig::load(&cfg).unwrap();
    assert_eq!(
        again.get("reg.example:5000").unwrap(),
        Some(basic("me", "pa:ss"))
    );

    c.store("docker.io", &basic("hubuser", "hubpw")).unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    assert!(raw["auths"].get(DOCKER_HUB_CONFIG_KEY).is_some(), "{raw}");

    assert!(c.erase("reg.example:5000").unwrap());
    assert!(!c.erase("reg.example:5000").unwrap());
    let again = DockerConfig::load(&cfg).unwrap();
    assert_eq!(again.get("reg.example:5000").unwrap(), None);
    assert_eq!(again.get("other.io").unwrap(), Some(basic("u", "p")));
    assert_eq!(
        again.get("docker.io").unwrap(),
        Some(basic("hubuser", "hubpw"))
    );
}

#[test]
fn store_and_erase_through_the_creds_store() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    let runner = fake_helper(&bin);
    let cfg = dir.path().join("config.json");
    write(&cfg, r#"{"credsStore": "test"}"#);
    let mut c = DockerConfig::load_with(&cfg, runner).unwrap();
    assert_eq!(
        c.store("new.example", &basic("nu", "npw")).unwrap(),
        StoredIn::Helper("test".into())
    );
    let stored = std::fs::read_to_string(bin.join("stored.json")).unwrap();
    assert!(
        stored.contains(r#""ServerURL":"new.example""#) && stored.contains(r#""Secret":"npw""#),
        "{stored}"
    );
    let raw = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        !raw.contains("npw"),
        "the password must stay in the helper: {raw}"
    );
    assert!(raw.contains("new.example"), "{raw}");
    assert_eq!(c.get("new.example").unwrap(), Some(basic("nu", "npw")));

    assert!(c.erase("new.example").unwrap());
    assert_eq!(
        std::fs::read_to_string(bin.join("erased")).unwrap().trim(),
        "new.example"
    );
    assert_eq!(c.get("new.example").unwrap(), None);
}

#[test]
fn credentials_debug_is_redacted() {
    let c = basic("alice", "topsecret-pw");
    let s = format!("{c:?}");
    assert!(s.contains("alice") && !s.contains("topsecret"), "{s}");
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("config.json");
    write(
        &cfg,
        &format!(
            r#"{{"auths":{{"x.io":{{"auth":"{}"}}}}}}"#,
            BASE64.encode("alice:topsecret-pw")
        ),
    );
    let loaded = DockerConfig::load(&cfg).unwrap();
    let s = format!("{loaded:?}");
    assert!(
        !s.contains("topsecret") && !s.contains(&BASE64.encode("alice:topsecret-pw")),
        "{s}"
    );
}

#[test]
fn host_normalisation() {
    assert_eq!(normalize_host("https://index.docker.io/v1/"), "docker.io");
    assert_eq!(normalize_host("registry-1.docker.io"), "docker.io");
    assert_eq!(
        normalize_host("http://Reg.Example:5000/v2/"),
        "reg.example:5000"
    );
    assert_eq!(server_address("docker.io"), DOCKER_HUB_CONFIG_KEY);
    assert_eq!(server_address("ghcr.io"), "ghcr.io");
}
