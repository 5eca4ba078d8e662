//! Matching cases from moby/patternmatcher and Go's filepath.Match tests, ignore-file
//! parsing, directory skipping and a random-input robustness test.

use super::*;

fn ignore(patterns: &[&str]) -> DockerIgnore {
    DockerIgnore::from_patterns(patterns).unwrap()
}

#[test]
fn patternmatcher_single_patterns() {
    let cases: &[(&str, &str, bool)] = &[
        ("**", "file", true),
        ("**", "file/", true),
        ("**/", "file", true),
        ("**/", "file/", true),
        ("**", "dir/file", true),
        ("**/", "dir/file", true),
        ("**", "dir/file/", true),
        ("**/", "dir/file/", true),
        ("**/**", "dir/file", true),
        ("**/**", "dir/file/", true),
        ("dir/**", "dir/file", true),
        ("dir/**", "dir/file/", true),
        ("dir/**", "dir/dir2/file", true),
        ("dir/**", "dir/dir2/file/", true),
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/*", "dir/dir2/file/", true),
        ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**/dir2/**", "dir/dir2/dir3/file/", true),
        ("**file", "file", true),
        ("**file", "dir/file", true),
        ("**/file", "dir/file", true),
        ("**file", "dir/dir/file", true),
        ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file", true),
        ("**/file*", "dir/dir/file.txt", true),
        ("**/file*txt", "dir/dir/file.txt", true),
        ("**/file*.txt", "dir/dir/file.txt", true),
        ("**/file*.txt*", "dir/dir/file.txt", true),
        ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true),
        ("a**/*.txt", "a/file.txt", true),
        ("a**/*.txt", "a/dir/file.txt", true),
        ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true),
        ("a[b-d]e", "ae", false),
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[^b-d]e", "aze", true),
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abcdef", false),
        ("abc.def", "abc.def", true),
        ("abc.def", "abcZdef", false),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        ("a\\\\", "a\\", true),
        ("**/foo/bar", "foo/bar", true),
        ("**/foo/bar", "dir/foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def", true),
        ("abc/**", "abc/def/ghi", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
        ("a(b)c/def", "a(b)c/def", true),
        ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        ("a\\*b", "a*b", true),
        ("a\\*b", "axb", false),
        // Go filepath.Match cases: `*` never crosses `/`, but a matching parent excludes.
        ("a*", "ab/c", true),
        ("a*/b", "abc/b", true),
        ("a*/b", "a/c/b", false),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
        ("a*b?c*x", "abxbbxdbxebxczzx", true),
        ("a*b?c*x", "abxbbxdbxebxczzy", false),
        ("[\\]a]", "]", true),
        ("[\\-]", "-", true),
        ("[x\\-]", "z", false),
        ("docs", "docs/README.md", true),
        ("/docs", "docs/a/b", true),
        ("./docs/", "docs/a", true),
        ("docs/../src", "src/main.rs", true),
    ];
    for (pattern, path, want) in cases {
        assert_eq!(
            ignore(&[pattern]).is_excluded(path, false),
            *want,
            "{pattern:?} vs {path:?}"
        );
    }
}

#[test]
fn later_patterns_override_and_exceptions_reinclude() {
    let cases: &[(&[&str], &str, bool)] = &[
        (&["*.go"], "fileutils.go", true),
        (&["!fileutils.go", "*.go"], "fileutils.go", true),
        (&["*.go", "!fileutils.go"], "fileutils.go", false),
        (&["docs", "!docs/README.md"], "docs/README.md", false),
        (&["docs/", "!docs/README.md"], "docs/README.md", false),
        (&["docs/*", "!docs/README.md"], "docs/README.md", false),
        (&["docs/*", "!docs/README.md"], "docs/other.md", true),
        (&["**", "!util/docker/web"], "util/docker/web/foo", false),
        (
            &["**", "!util/docker/web", "util/docker/web/foo"],
            "util/docker/web/foo",
            true,
        ),
        (
            &["**", "!dist/*.whl"],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            false,
        ),
        (&["*", "!keep", "keep/tmp"], "keep/tmp/x", true),
        (&["*", "!keep", "keep/tmp"], "keep/src/x", false),
    ];
    for (patterns, path, want) in cases {
        assert_eq!(
            ignore(patterns).is_excluded(path, false),
            *want,
            "{patterns:?} vs {path:?}"
        );
    }
    assert!(
        !ignore(&["*.go"]).is_excluded(".", true),
        "the root is never excluded"
    );
    assert!(!ignore(&["**"]).is_excluded("/", true));
    assert!(!ignore(&[]).is_excluded("any/path/there", false));
}

#[test]
fn file_parsing() {
    let di = DockerIgnore::parse(
        "\u{feff}# comment\n\n  *.tmp  \n/build/\n./dist//x/../y\n  # not a comment\n!  /build/keep\n\\#hash\n",
    )
    .unwrap();
    let got: Vec<(&str, bool, usize)> = di
        .patterns()
        .iter()
        .map(|p| (p.pattern.as_str(), p.exception, p.line))
        .collect();
    assert_eq!(
        got,
        [
            ("*.tmp", false, 3),
            ("build", false, 4),
            ("dist/y", false, 5),
            ("# not a comment", false, 6),
            ("build/keep", true, 7),
            ("\\#hash", false, 8),
        ]
    );
    assert!(di.has_exceptions());
    assert!(di.is_excluded("b.tmp", false));
    // Unlike .gitignore, a pattern without `**` is anchored at the context root.
    assert!(!di.is_excluded("a/b.tmp", false));
    assert!(di.is_excluded("build/out", false));
    assert!(!di.is_excluded("build/keep/x", false));
    assert!(di.is_excluded("#hash", false));
    assert!(DockerIgnore::parse("").unwrap().is_empty());
}

#[test]
fn invalid_patterns_name_their_line() {
    for (text, line) in [
        ("ok\n[", 2),
        ("a\n\nb\\", 3),
        ("!", 1),
        ("[]a]", 1),
        ("[a-]", 1),
        ("x[a", 1),
        ("  !  ", 1),
    ] {
        let e = DockerIgnore::parse(text).unwrap_err();
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!(".dockerignore:{line}: invalid pattern")),
            "{e}"
        );
    }
    let e = DockerIgnore::from_patterns(["ok", "[z-"]).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("patterns", 2));
    for ok in [
        "[a-z]",
        "[^a]",
        "[\\]]",
        "a]b",
        "[]]"[1..].to_string().as_str(),
    ] {
        assert!(DockerIgnore::parse(ok).is_ok(), "{ok}");
    }
}

#[test]
fn skipping_directories() {
    let di = ignore(&[
        "node_modules",
        "build",
        "!build/keep.txt",
        "vendor/**",
        "!vendor/a/**",
        "*.log",
    ]);
    assert!(di.can_skip_dir("node_modules"));
    assert!(di.can_skip_dir("node_modules/x"));
    assert!(
        !di.can_skip_dir("build"),
        "an exception re-includes something inside"
    );
    assert!(di.can_skip_dir("vendor/b"));
    assert!(!di.can_skip_dir("vendor/a"), "vendor/a is re-included");
    assert!(
        !di.can_skip_dir("vendor"),
        "vendor itself is not matched by vendor/**"
    );
    assert!(!di.can_skip_dir("src"), "not excluded at all");
    assert!(di.can_skip_dir("logs.log"));
    // Wildcard exceptions are checked by simulation, not given up on.
    let di = ignore(&["**", "!**/*.go"]);
    assert!(!di.can_skip_dir("a/b"));
    let di = ignore(&["*", "!src/*.rs"]);
    assert!(di.can_skip_dir("target"));
    assert!(!di.can_skip_dir("src"));
    let di = ignore(&["*", "!s*c/x"]);
    assert!(!di.can_skip_dir("src"));
    assert!(di.can_skip_dir("target"));
    // Whenever a directory may be skipped, everything below it is indeed excluded.
    let di = ignore(&["a", "!a/b/c*", "a/b/cz", "d/**", "!d/[xy]/k"]);
    for dir in ["a", "a/b", "a/q", "d", "d/x", "d/z"] {
        if di.can_skip_dir(dir) {
            for below in ["x", "b", "b/c", "b/c1", "x/k", "y/k", "z/k"] {
                let p = format!("{dir}/{below}");
                assert!(
                    di.is_excluded(&p, false),
                    "{dir} skippable but {p} included"
                );
            }
        }
    }
    assert!(di.can_skip_dir("a/q") && di.can_skip_dir("d/z") && !di.can_skip_dir("a/b"));
}

#[test]
fn go_clean() {
    for (input, want) in [
        ("", "."),
        (".", "."),
        ("a/", "a"),
        ("./a//b/./c/", "a/b/c"),
        ("a/../..", ".."),
        ("../a/../../b", "../../b"),
        ("/../a", "/a"),
        ("/", "/"),
    ] {
        assert_eq!(clean(input), want, "{input}");
    }
}

#[test]
fn random_patterns_never_panic() {
    let pieces = [
        "*", "**", "?", "[", "]", "^", "-", "\\", "/", "a", "b", ".", "!", " ", "é", "\n",
    ];
    let mut rng = oxkit_testkit::Rng::new(0x5eed);
    let mut next = |n: usize| rng.below(n);
    for _ in 0..5000 {
        let mut text = String::new();
        for _ in 0..next(12) {
            text.push_str(pieces[next(pieces.len())]);
        }
        if let Ok(di) = DockerIgnore::parse(&text) {
            let mut path = String::new();
            for _ in 0..next(8) {
                path.push_str(pieces[next(pieces.len())]);
            }
            let _ = di.is_excluded(&path, false);
            let _ = di.can_skip_dir(&path);
        }
    }
}
