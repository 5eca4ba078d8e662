#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::testutil::{TestRepo, require_git, write};

fn repo_with(build_yml: &str) -> TestRepo {
    require_git();
    let r = TestRepo::new();
    r.write("pkg/p/build.yml", build_yml);
    r.write("pkg/p/Dockerfile", "FROM scratch\n");
    r.write("pkg/q/build.yml", "image: q\norg: other\narches: [amd64]\n");
    r.commit("init");
    r
}

fn resolve(r: &TestRepo, options: ResolveOptions) -> Result<Package, SourceError> {
    Resolver::new(options).resolve(&r.path("pkg/p"))
}

#[test]
fn defaults_follow_linuxkit() {
    let r = repo_with("image: p\n");
    let p = resolve(&r, ResolveOptions::default()).unwrap();
    let tree = r.git(&["rev-parse", "HEAD:pkg/p"]);
    assert_eq!(p.hash, tree);
    assert_eq!(p.tag, tree);
    assert_eq!(p.org, "linuxkit");
    assert_eq!(p.name(), format!("linuxkit/p:{tree}"));
    assert_eq!(
        p.reference().canonical(),
        format!("docker.io/linuxkit/p:{tree}")
    );
    assert_eq!(
        p.commit.as_deref(),
        Some(r.git(&["rev-parse", "HEAD"]).as_str())
    );
    assert!(!p.dirty);
    assert_eq!(p.spec.arches, vec!["amd64", "arm64", "riscv64"]);
    assert_eq!(p.dir, r.path("pkg/p"));
    assert_eq!(
        p.arch_reference("arm64").unwrap().canonical(),
        format!("docker.io/linuxkit/p:{tree}-arm64")
    );
}

#[test]
fn org_precedence_is_flag_then_dev_user_then_build_yml() {
    let r = repo_with("image: p\norg: fromyml\n");
    assert_eq!(
        resolve(&r, ResolveOptions::default()).unwrap().org,
        "fromyml"
    );
    let dev = ResolveOptions {
        dev_user: Some("alice".into()),
        ..Default::default()
    };
    let p = resolve(&r, dev.clone()).unwrap();
    assert_eq!((p.org.as_str(), p.hash.as_str()), ("alice", "dev"));
    assert_eq!(p.name(), "alice/p:dev");
    let flag = ResolveOptions {
        org: Some("127.0.0.1:5000/me".into()),
        ..dev
    };
    let p = resolve(&r, flag).unwrap();
    assert_eq!(p.name(), "127.0.0.1:5000/me/p:dev");
    assert_eq!(p.reference().registry(), "127.0.0.1:5000");
    assert_eq!(p.reference().repository(), "me/p");
}

#[test]
fn given_hash_is_verbatim_but_dirtiness_is_still_reported() {
    let r = repo_with("image: p\n");
    r.write("pkg/p/untracked", "x\n");
    let p = resolve(
        &r,
        ResolveOptions {
            hash: Some("1.2.3".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        (p.hash.as_str(), p.tag.as_str(), p.dirty),
        ("1.2.3", "1.2.3", true)
    );
}

#[test]
fn tag_templates_from_build_yml_and_flag() {
    let r = repo_with("image: p\ntag: \"v1-{{.Hash}}\"\n");
    let tree = r.git(&["rev-parse", "HEAD:pkg/p"]);
    assert_eq!(
        resolve(&r, ResolveOptions::default()).unwrap().tag,
        format!("v1-{tree}")
    );
    let flag = ResolveOptions {
        tag_template: Some("{{ .Hash }}-x".into()),
        ..Default::default()
    };
    assert_eq!(resolve(&r, flag).unwrap().tag, format!("{tree}-x"));
    let bad = ResolveOptions {
        tag_template: Some("{{.Nope}}".into()),
        ..Default::default()
    };
    let err = resolve(&r, bad).unwrap_err().to_string();
    assert!(err.starts_with("--tag:"), "{err}");
}

#[test]
fn extra_sources_from_build_yml() {
    let r = repo_with("image: p\nextra-sources:\n  - ../../common:/common\n");
    r.write("common/f", "f\n");
    r.commit("common");
    let p = resolve(&r, ResolveOptions::default()).unwrap();
    assert_eq!(p.sources.len(), 2);
    assert_eq!(p.sources[1].src, r.path("common"));
    assert_eq!(p.sources[1].dst, "/common");
    assert_ne!(p.hash, r.git(&["rev-parse", "HEAD:pkg/p"]));
    assert_eq!(p.hash.len(), 40);
}

#[test]
fn hash_path_must_be_a_parent() {
    let r = repo_with("image: p\n");
    let ok = ResolveOptions {
        hash_path: Some(r.path("pkg")),
        ..Default::default()
    };
    assert_eq!(
        resolve(&r, ok).unwrap().hash,
        r.git(&["rev-parse", "HEAD:pkg"])
    );
    let bad = ResolveOptions {
        hash_path: Some(r.path("pkg/q")),
        ..Default::default()
    };
    let err = resolve(&r, bad).unwrap_err();
    assert!(
        matches!(err, SourceError::HashPathNotParent { .. }),
        "{err}"
    );
}

#[test]
fn errors_name_the_file_and_say_what_to_do() {
    let r = repo_with("org: x\n");
    let err = resolve(&r, ResolveOptions::default())
        .unwrap_err()
        .to_string();
    let file = r.path("pkg/p/build.yml").display().to_string();
    assert!(err.contains(&file) && err.contains("image"), "{err}");

    let err = Resolver::default()
        .resolve(&r.path("nothing-here"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nothing-here") && err.contains("not a package directory"),
        "{err}"
    );

    let other = ResolveOptions {
        build_yml: "other.yml".into(),
        ..Default::default()
    };
    let err = resolve(&r, other).unwrap_err().to_string();
    assert!(
        err.contains("other.yml") && err.contains("--build-yml"),
        "{err}"
    );

    let r = repo_with("image: p\norg: Bad_Org\n");
    let err = resolve(&r, ResolveOptions::default())
        .unwrap_err()
        .to_string();
    let file = r.path("pkg/p/build.yml").display().to_string();
    assert!(err.contains("Bad_Org") && err.contains(&file), "{err}");
    let r = repo_with("image: p\n");
    let bad_org = ResolveOptions {
        org: Some("bad org".into()),
        ..Default::default()
    };
    let err = resolve(&r, bad_org).unwrap_err().to_string();
    assert!(
        err.contains("\"bad org/p:") && err.contains("--org"),
        "{err}"
    );
}

#[test]
fn outside_git_uses_the_would_be_tree_id() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    write(&dir.join("build.yml"), "image: p\n");
    let p = Resolver::default().resolve(&dir).unwrap();
    assert_eq!(p.hash, crate::tree_id_of_dir(&dir).unwrap());
    assert!(p.commit.is_none() && !p.dirty);
}

#[test]
fn one_resolver_serves_many_packages() {
    let r = repo_with("image: p\n");
    let mut resolver = Resolver::default();
    let p = resolver.resolve(&r.path("pkg/p")).unwrap();
    let q = resolver.resolve(&r.path("pkg/q")).unwrap();
    assert_eq!(p.hash, r.git(&["rev-parse", "HEAD:pkg/p"]));
    assert_eq!(
        q.name(),
        format!("other/q:{}", r.git(&["rev-parse", "HEAD:pkg/q"]))
    );
    assert_eq!(q.spec.arches, vec!["amd64"]);
}

#[test]
fn dev_mode_works_before_the_first_commit() {
    require_git();
    let r = TestRepo::new();
    r.write("pkg/p/build.yml", "image: p\n");
    let dev = ResolveOptions {
        dev_user: Some("alice".into()),
        ..Default::default()
    };
    let p = resolve(&r, dev).unwrap();
    // As LinuxKit: the hash is given, and `git diff HEAD` failing counts as dirty.
    assert_eq!(
        (p.name().as_str(), p.dirty, p.commit),
        ("alice/p:dev", true, None)
    );
    let err = resolve(&r, ResolveOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("HEAD") && err.contains("commit"), "{err}");
}
