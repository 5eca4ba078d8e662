//! OCI archives (`oxkit cache import`): any tar gets an import report or an error, never a
//! panic, and nothing lands outside the store. The input is imported into a fresh store at
//! `/tmp/oxkit-fuzz-archive/store`, tagged by the archive's names or by `fuzz/x:1`.
#![no_main]

use std::fs;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use oxkit_spec::Reference;
use oxkit_store::Store;
use oxkit_store::archive::import_archive;

const BASE: &str = "/tmp/oxkit-fuzz-archive";

fuzz_target!(|data: &[u8]| {
    let base = Path::new(BASE);
    let _ = fs::remove_dir_all(base);
    fs::create_dir_all(base).unwrap();
    let store = Store::open(base.join("store")).unwrap();
    let tag = Reference::parse("fuzz/x:1").unwrap();
    let tag_as = (data.first().is_some_and(|b| b & 1 == 1)).then_some(&tag);
    let _ = import_archive(&store, data, "fuzz.tar", tag_as);
    let names: Vec<_> = fs::read_dir(base).unwrap().collect();
    assert_eq!(names.len(), 1, "an archive wrote beside the store");
});
