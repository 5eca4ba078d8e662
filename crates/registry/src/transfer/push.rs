//! Pushing an image from the store: every blob it is made of (only those the registry
//! lacks), then its manifests children-first, then the top manifest or index under the tag.

use oxkit_spec::Reference;
use oxkit_store::Store;
use oxkit_store::oci::{Descriptor, document_media_type, media_type as mt};

use super::PushReport;
use crate::client::{BlobSource, BlobUpload, Client, Pushed};
use crate::error::{Error, Result};

/// Pushes the image `local` names in `store` to `remote` (its tag, `latest` when it has
/// neither tag nor digest). Blobs the registry has are skipped; blobs of an image that came
/// from another repository on the same registry are mounted from there when possible.
pub fn push(
    client: &Client,
    store: &Store,
    local: &Reference,
    remote: &Reference,
) -> Result<PushReport> {
    let _lease = store.lease()?;
    let top = store
        .resolve(local)?
        .ok_or_else(|| oxkit_store::Error::RefNotFound {
            reference: local.to_string(),
            store: store.root().to_path_buf(),
        })?;
    let target = match (remote.tag(), remote.digest()) {
        (Some(_), _) => remote.clone(),
        (None, Some(d)) if *d != top.digest => {
            return Err(Error::BadUrl {
                url: remote.to_string(),
                reason: format!("it pins {d}, but {local} is {}", top.digest),
            });
        }
        (None, Some(_)) => remote.clone(),
        (None, None) => remote.with_tag("latest").map_err(|e| Error::BadUrl {
            url: remote.to_string(),
            reason: e.reason,
        })?,
    };
    let mut documents = Vec::new();
    let mut uploads = Vec::new();
    let mount_from =
        if local.registry() == remote.registry() && local.repository() != remote.repository() {
            vec![local.repository().to_string()]
        } else {
            Vec::new()
        };
    for d in store.image_blobs(&top)? {
        if store.is_document(&d)? {
            documents.push(d);
            continue;
        }
        if mt::is_non_distributable(&d.media_type) {
            continue;
        }
        let size = store.blob_size(&d.digest)?.unwrap_or(0);
        if size != d.size {
            return Err(oxkit_store::Error::SizeMismatch {
                what: format!(
                    "blob {} of {local} in the store (run `oxkit cache fsck`)",
                    d.digest
                ),
                expected: d.size,
                actual: size,
            }
            .into());
        }
        uploads.push(BlobUpload {
            digest: d.digest.clone(),
            size: d.size,
            source: BlobSource::File(store.blob_path(&d.digest)),
            mount_from: mount_from.clone(),
            check_exists: true,
        });
    }
    let outcomes = client.push_blobs(&target, &uploads)?;
    let mut report = PushReport {
        descriptor: top.clone(),
        uploaded: 0,
        uploaded_bytes: 0,
        mounted: 0,
        existing: 0,
        manifests: 0,
    };
    for (u, o) in uploads.iter().zip(&outcomes) {
        match o {
            Pushed::Transferred => {
                report.uploaded += 1;
                report.uploaded_bytes += u.size;
            }
            Pushed::Mounted => report.mounted += 1,
            Pushed::AlreadyThere => report.existing += 1,
        }
    }
    // `image_blobs` lists parents before children: reversed, every manifest goes up after
    // everything it names, as registries require.
    for d in documents.iter().rev() {
        let bytes = store.read_blob(&d.digest)?;
        let media_type = document_media_type(&bytes, d);
        let is_top = d.digest == top.digest;
        let dest = if is_top {
            target.clone()
        } else {
            target.without_tag().with_digest(d.digest.clone())
        };
        let pushed = client.put_manifest(&dest, &media_type, &bytes)?;
        report.manifests += 1;
        if is_top {
            let mut desc = Descriptor::new(media_type, pushed, bytes.len() as u64);
            desc.platform = top.platform.clone();
            report.descriptor = desc;
        }
    }
    Ok(report)
}
