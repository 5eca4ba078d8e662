//! OCI and Docker documents as a registry or a layout may hold them: parsing never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxkit_store::oci::{self, ImageConfig, ImageIndex, ImageManifest};

fuzz_target!(|data: &[u8]| {
    let _ = oci::sniff(data);
    let _ = oci::from_json::<ImageManifest>(data, "manifest");
    let _ = oci::from_json::<ImageIndex>(data, "index");
    let _ = oci::from_json::<ImageConfig>(data, "config");
});
