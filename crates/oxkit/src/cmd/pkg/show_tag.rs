//! `oxkit pkg show-tag`: print the image reference of each package, one line per package in
//! argument order, exactly as `linuxkit pkg show-tag` prints it (`linuxkit/init:TREEHASH`; with
//! `--canonical`, `docker.io/linuxkit/init:TREEHASH`). Every package is resolved before anything
//! is printed, so a failure prints no partial list.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use oxkit_source::Resolver;
use serde::Serialize;

use super::PkgFlags;
use crate::output::Printer;
use crate::settings::GlobalArgs;

#[derive(Debug, Args)]
#[command(
    after_help = "A clean package's tag is the git tree id of its directory; a dirty one's is \
TREE-dirty-XXXXXXX, XXXXXXX hashing its files (LinuxKit's rule). Outside a git repository the \
tag is the tree id the directory would have if committed (LinuxKit uses `latest`).\n\n\
--json prints an array of {path, reference, org, image, tag, hash, dirty, commit, arches}."
)]
pub struct ShowTagArgs {
    /// Print fully qualified references (docker.io/linuxkit/foo:TAG) instead of linuxkit/foo:TAG
    #[arg(long)]
    canonical: bool,

    /// Package directories (each holding a build.yml)
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// One package in `--json` output.
#[derive(Serialize)]
struct Shown {
    /// The package directory, absolute.
    path: PathBuf,
    /// The line the text output prints for it.
    reference: String,
    org: String,
    image: String,
    tag: String,
    hash: String,
    dirty: bool,
    /// The commit hashed; null outside git.
    commit: Option<String>,
    arches: Vec<String>,
}

pub fn run(
    _global: &GlobalArgs,
    printer: &Printer,
    flags: &PkgFlags,
    args: ShowTagArgs,
) -> Result<()> {
    let mut resolver = Resolver::new(flags.resolve_options()?);
    let mut shown = Vec::with_capacity(args.paths.len());
    for path in &args.paths {
        let pkg = resolver.resolve(path)?;
        let reference = if args.canonical {
            pkg.reference().canonical()
        } else {
            pkg.name()
        };
        shown.push(Shown {
            path: pkg.dir,
            reference,
            org: pkg.org,
            image: pkg.spec.image,
            tag: pkg.tag,
            hash: pkg.hash,
            dirty: pkg.dirty,
            commit: pkg.commit,
            arches: pkg.spec.arches,
        });
    }
    for s in &shown {
        printer.data(&s.reference);
    }
    printer.json(&shown);
    Ok(())
}
