//! Dockerfiles, .dockerignore files and shell-word expansion: any text gets a value or an
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxkit_spec::dockerfile::{Dockerfile, expand_heredoc, expand_word};
use oxkit_spec::dockerignore::DockerIgnore;

fuzz_target!(|text: &str| {
    let env = |name: &str| (name.len() % 2 == 0).then(|| format!("v{name}"));
    if let Ok(df) = Dockerfile::parse(text, "Dockerfile") {
        for stage in &df.stages {
            let _ = stage.expand_base(&env, '\\');
        }
    }
    let _ = expand_word(text, &env, '\\');
    let _ = expand_heredoc(text, &env);
    if let Ok(ignore) = DockerIgnore::parse(text) {
        for line in text.lines().take(8) {
            let _ = ignore.is_excluded(line, false);
        }
    }
});
