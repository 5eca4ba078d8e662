//! OCI image-spec objects (descriptors, manifests, indexes, configurations) as our own types
//! with canonical JSON: fixed field order, sorted maps, no `null`s where the spec omits a
//! field, compact output. The same value always serializes to the same bytes, so digests of
//! documents oxkit writes are reproducible.
//!
//! Parsing is forgiving (Docker schema 2 media types, `null`s, unknown fields); this module
//! does no I/O.

mod config;
mod descriptor;
mod manifest;
pub mod media_type;
mod serde_util;

pub use config::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs, normalize_platform};
pub use descriptor::{ANNOTATION_CREATED, ANNOTATION_REF_NAME, Descriptor};
pub use manifest::{DocumentKind, ImageIndex, ImageManifest, document_media_type, sniff};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The canonical JSON bytes of `value` (compact; order fixed by the type).
pub fn to_canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(Error::json("a document to write"))
}

/// Parses a document; `what` names it in the error (a digest or a path).
pub fn from_json<T: DeserializeOwned>(bytes: &[u8], what: impl Into<String>) -> Result<T> {
    serde_json::from_slice(bytes).map_err(Error::json(what))
}

/// `secs` since the Unix epoch as an RFC 3339 UTC timestamp (`1970-01-01T00:00:00Z`),
/// the form image configs and history use. Negative times clamp to the epoch.
pub fn rfc3339_utc(secs: i64) -> String {
    let secs = secs.max(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian), shifted so the era starts on 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
