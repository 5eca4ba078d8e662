//! One image's root file system as a single tar: what `oxkit cache export --format
//! filesystem` writes (LinuxKit's `cache export --format filesystem`, go-containerregistry's
//! `mutate.Extract`). The layers are flattened exactly as for `oxkit build` (whiteouts and
//! opaque directories applied, hostile entries refused, see [`crate::flatten`]) but without
//! LinuxKit's fix-ups of a container's file system: the tar is the image's file system as the
//! image has it. Entries keep the layers' owners, modes and mtimes; directories no layer
//! names get mtime 0. The order is the assembler's (see [`crate::emit`]), so the same image
//! always gives the same bytes.

use std::io::Write;
use std::path::Path;

use oxkit_store::Store;
use oxkit_store::layer::{EntryMeta, TarWriter};
use oxkit_store::oci::Descriptor;

use crate::emit::{TarSink, emit};
use crate::error::Result;
use crate::flatten::{LayerRef, flatten};
use crate::layout::{Assembly, Source};
use crate::tree::{Dir, Inodes, SourceId};

/// Writes the file system of the image manifest `manifest` (in `store`) as a tar to `out`,
/// and returns `out`. `scratch` holds a temporary file when one layer appears twice.
pub fn write_filesystem<W: Write>(
    store: &Store,
    manifest: &Descriptor,
    scratch: &Path,
    out: W,
) -> Result<W> {
    let m = store.read_manifest(&manifest.digest)?;
    let mut sources: Vec<Source> = Vec::new();
    let mut ids: Vec<SourceId> = Vec::with_capacity(m.layers.len());
    for l in &m.layers {
        let id = match sources.iter().position(
            |s| matches!(s, Source::Layer { descriptor } if descriptor.digest == l.digest),
        ) {
            Some(i) => i as SourceId,
            None => {
                sources.push(Source::Layer {
                    descriptor: l.clone(),
                });
                (sources.len() - 1) as SourceId
            }
        };
        ids.push(id);
    }
    let refs: Vec<LayerRef<'_>> = m
        .layers
        .iter()
        .zip(ids)
        .map(|(descriptor, source)| LayerRef { descriptor, source })
        .collect();
    let mut inodes = Inodes::default();
    let root = if refs.is_empty() {
        Dir::new(EntryMeta::mode(0o755))
    } else {
        flatten(store, &refs, &mut inodes, 0, &mut |_, _, _, _| Ok(()))?
    };
    let assembly = Assembly {
        root,
        inodes,
        sources,
        epoch: 0,
    };
    // No clamp: the layers' mtimes are kept (they are part of the image's content).
    let mut sink = TarSink {
        tar: TarWriter::new(out, i64::MAX),
    };
    emit(&assembly, store, &mut sink, scratch)?;
    let (out, _, _) = sink.tar.finish()?;
    Ok(out)
}
