//! `--mount` cases following BuildKit's `parseMount` behaviour.

use super::*;

fn spec(raw: &str) -> MountSpec {
    MountSpec {
        raw: raw.to_string(),
    }
}

fn literal(raw: &str) -> Result<Mount, MountError> {
    spec(raw).resolve_in(&|_| None, '\\')
}

#[test]
fn defaults_per_type() {
    let bind = literal("target=/src,source=.").unwrap();
    assert_eq!(bind.kind, MountType::Bind);
    assert!(bind.readonly, "bind mounts are read-only by default");
    assert_eq!(bind.target.as_deref(), Some("/src"));
    assert_eq!(bind.source.as_deref(), Some("."));

    let cache =
        literal("type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0755,uid=1000").unwrap();
    assert_eq!(cache.kind, MountType::Cache);
    assert!(!cache.readonly);
    assert_eq!(cache.id.as_deref(), Some("pip"));
    assert_eq!(cache.sharing, Some(CacheSharing::Locked));
    assert_eq!(cache.mode, Some(0o755));
    assert_eq!(cache.uid, Some(1000));

    let tmpfs = literal("type=tmpfs,target=/tmp,size=64m").unwrap();
    assert_eq!(tmpfs.size_limit, Some(64 << 20));
    assert!(!tmpfs.readonly);

    let secret = literal("type=secret,id=npmrc,target=/root/.npmrc,required,env=TOKEN").unwrap();
    assert!(secret.required && secret.readonly);
    assert_eq!(secret.env.as_deref(), Some("TOKEN"));

    let ssh = literal("type=ssh,required=false").unwrap();
    assert_eq!(ssh.kind, MountType::Ssh);
    assert!(!ssh.required);

    assert!(!literal("type=bind,target=/x,rw").unwrap().readonly);
    assert!(
        !literal("type=bind,target=/x,readwrite=true")
            .unwrap()
            .readonly
    );
    assert!(literal("type=cache,target=/x,ro").unwrap().readonly);
    assert!(literal("TYPE=CACHE,Target=/x,ro=1").unwrap().readonly);
}

#[test]
fn values_are_expanded_at_resolve_time() {
    let env = |k: &str| match k {
        "ARCH" => Some("arm64".to_string()),
        "UID" => Some("42".to_string()),
        _ => None,
    };
    let m = spec("type=cache,id=apt-$ARCH,target=/var/cache/apt,uid=${UID}")
        .resolve_in(&env, '\\')
        .unwrap();
    assert_eq!(m.id.as_deref(), Some("apt-arm64"));
    assert_eq!(m.uid, Some(42));
    assert!(
        spec("type=cache,id=$ARCH,target=/x,uid=$UID")
            .check_at_parse('\\')
            .is_ok()
    );
}

#[test]
fn invalid_specs() {
    let cases = [
        ("type=volume,target=/x", "unsupported mount type"),
        (
            "type=bind,target=/x,mode=0644",
            "mode is not allowed for bind",
        ),
        ("type=tmpfs,target=/x,uid=1", "uid is not allowed for tmpfs"),
        ("type=bind,size=1m", "size does not apply"),
        ("type=tmpfs,size=lots", "invalid size"),
        ("type=secret", "needs id="),
        ("type=secret,id=a,source=b", "either source= or id="),
        ("type=secret,id=a,from=x", "no from="),
        ("type=bind,sharing=shared", "sharing= applies only to cache"),
        ("type=cache,sharing=maybe", "unsupported sharing"),
        ("type=bind,required", "required does not apply"),
        ("type=cache,mode=9", "octal"),
        ("type=cache,uid=-1", "decimal"),
        ("type=cache,uid=+1", "decimal"),
        ("target=/x,ro=maybe", "invalid value for ro"),
        ("target=/x,bogus=1", "unexpected key"),
        ("target=/x,bogus", "must be a key=value"),
        ("target=/x,,", "must be a key=value"),
        ("\"target=/x", "unterminated quoted field"),
        ("tar\"get=/x", "bare"),
    ];
    for (raw, want) in cases {
        let err = literal(raw).unwrap_err().to_string();
        assert!(err.contains(want), "{raw}: {err}");
        assert!(
            spec(raw).check_at_parse('\\').is_err(),
            "{raw} must fail at parse time"
        );
    }
    let err = spec("type=bind,from=$STAGE,target=/x")
        .check_at_parse('\\')
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not support variable expansion"),
        "{err}"
    );
    assert!(
        spec("type=bind,from=stage$,target=/x")
            .check_at_parse('\\')
            .is_ok()
    );
    let err = spec("type=cache,target=/x,nope=$A")
        .check_at_parse('\\')
        .unwrap_err();
    assert!(err.to_string().contains("unexpected key"), "{err}");
    let err = spec("target=${X").resolve_in(&|_| None, '\\').unwrap_err();
    assert!(matches!(err, MountError::Expand { .. }), "{err:?}");
}

#[test]
fn quoted_csv_fields() {
    let m = literal("type=bind,\"source=a,b\",target=/x").unwrap();
    assert_eq!(m.source.as_deref(), Some("a,b"));
    let m = literal("type=bind,\"target=/say \"\"hi\"\"\"").unwrap();
    assert_eq!(m.target.as_deref(), Some("/say hi"));
}

#[test]
fn ram_sizes() {
    assert_eq!(ram_in_bytes("512"), Some(512));
    assert_eq!(ram_in_bytes("1k"), Some(1024));
    assert_eq!(ram_in_bytes("1 KiB"), Some(1024));
    assert_eq!(ram_in_bytes("1.5g"), Some(3 << 29));
    assert_eq!(ram_in_bytes("2GB"), Some(2 << 30));
    assert_eq!(ram_in_bytes("1p"), Some(1 << 50));
    for bad in ["", "k", "1x", "1.2.3", "-1", "1bi", ".5"] {
        assert_eq!(ram_in_bytes(bad), None, "{bad}");
    }
}
