//! build.yml and image YAML: any text gets a value or an error naming the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxkit_spec::PackageSpec;
use oxkit_spec::image_yaml::ImageYaml;

fuzz_target!(|text: &str| {
    if let Ok(spec) = PackageSpec::parse(text, "build.yml") {
        let _ = spec.parsed_build_args();
    }
    if let Ok(image) = ImageYaml::parse(text, "image.yml") {
        let _ = image.validate();
    }
});
