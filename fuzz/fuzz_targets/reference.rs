//! Image references: parsing never panics, and what parses prints as text that parses to the
//! same reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxkit_spec::Reference;

fuzz_target!(|text: &str| {
    if let Ok(r) = Reference::parse(text) {
        let printed = r.to_string();
        let again = Reference::parse(&printed).expect("a printed reference parses");
        assert_eq!(again.to_string(), printed);
    }
});
