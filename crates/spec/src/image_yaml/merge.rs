//! Combining several image YAML files given on one command line, in order, with LinuxKit's
//! `AppendConfig` rules: a later file's kernel fields override the earlier ones when set;
//! `init`, `onboot`, `onshutdown`, `services`, `files` and `volumes` are appended; the
//! `trust` sections are appended (as LinuxKit's legacy `trust` lists were).
//!
//! Merging never fails: duplicate service or volume names that only arise from merging are
//! reported by `validate`, with both locations.

use super::{ImageYaml, Kernel};

impl ImageYaml {
    /// Merges files in command-line order.
    pub fn merge(files: Vec<ImageYaml>) -> ImageYaml {
        let mut out = ImageYaml::default();
        for f in files {
            out.append(f);
        }
        out
    }

    /// Appends a later file to this one.
    pub fn append(&mut self, other: ImageYaml) {
        self.kernel.override_with(other.kernel);
        self.init.extend(other.init);
        self.onboot.extend(other.onboot);
        self.onshutdown.extend(other.onshutdown);
        self.services.extend(other.services);
        self.files.extend(other.files);
        self.volumes.extend(other.volumes);
        self.trust.append(other.trust);
    }
}

impl Kernel {
    /// LinuxKit's rule: strings override when non-empty, `tar`/`ucode` when present.
    fn override_with(&mut self, later: Kernel) {
        if later.image.is_some() {
            self.image = later.image;
        }
        if !later.cmdline.is_empty() {
            self.cmdline = later.cmdline;
        }
        if !later.binary.is_empty() {
            self.binary = later.binary;
        }
        if later.tar.is_some() {
            self.tar = later.tar;
        }
        if later.ucode.is_some() {
            self.ucode = later.ucode;
        }
        if later.loc.is_some() {
            self.loc = later.loc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, origin: &str) -> ImageYaml {
        ImageYaml::parse(text, origin).unwrap()
    }

    #[test]
    fn kernel_fields_override_only_when_set() {
        let a = parse(
            "kernel:\n  image: linuxkit/kernel:6.6\n  cmdline: console=ttyS0\n  tar: kernel.tar\n",
            "a.yml",
        );
        let b = parse(
            "kernel:\n  cmdline: \"\"\n  binary: bzImage\n  tar: \"\"\n",
            "b.yml",
        );
        let c = parse(
            "kernel:\n  image: linuxkit/kernel:6.12\n  ucode: intel-ucode.cpio\n",
            "c.yml",
        );
        let m = ImageYaml::merge(vec![a, b, c]);
        let k = &m.kernel;
        assert_eq!(k.image.as_ref().unwrap().text, "linuxkit/kernel:6.12");
        assert_eq!(&*k.image.as_ref().unwrap().loc.file, "c.yml");
        // An empty cmdline does not override (LinuxKit tests `!= ""`) ...
        assert_eq!(k.cmdline, "console=ttyS0");
        assert_eq!(k.binary, "bzImage");
        // ... but an explicit empty tar does (LinuxKit tests `!= nil`).
        assert_eq!(k.tar.as_deref(), Some(""));
        assert_eq!(k.ucode.as_deref(), Some("intel-ucode.cpio"));
        assert_eq!(&*k.loc.as_ref().unwrap().file, "c.yml");
    }

    #[test]
    fn lists_are_appended_in_order_keeping_locations() {
        let a = parse(
            "init: [linuxkit/init:a]\nonboot:\n  - name: one\n    image: x/one\nservices:\n  - name: s\n    image: x/s\n\
             files:\n  - path: etc/a\n    contents: a\nvolumes:\n  - name: v1\n",
            "a.yml",
        );
        let b = parse(
            "init: [linuxkit/runc:b]\nonboot:\n  - name: two\n    image: x/two\nonshutdown:\n  - name: bye\n    image: x/bye\n\
             files:\n  - path: etc/b\n    contents: b\nvolumes:\n  - name: v2\n",
            "b.yml",
        );
        let m = ImageYaml::merge(vec![a, b]);
        let init: Vec<&str> = m.init.iter().map(|i| i.text.as_str()).collect();
        assert_eq!(init, ["linuxkit/init:a", "linuxkit/runc:b"]);
        let onboot: Vec<(&str, &str, u32)> = m
            .onboot
            .iter()
            .map(|e| (e.name.as_str(), &*e.loc.file, e.loc.line))
            .collect();
        assert_eq!(onboot, [("one", "a.yml", 3), ("two", "b.yml", 3)]);
        assert_eq!(m.onshutdown.len(), 1);
        assert_eq!(m.services.len(), 1);
        let files: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(files, ["etc/a", "etc/b"]);
        let vols: Vec<&str> = m.volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(vols, ["v1", "v2"]);
    }

    #[test]
    fn merging_nothing_or_one_file() {
        assert_eq!(ImageYaml::merge(vec![]), ImageYaml::default());
        let a = parse("init: [linuxkit/init:a]\n", "a.yml");
        assert_eq!(ImageYaml::merge(vec![a.clone()]), a);
    }

    #[test]
    fn duplicates_created_by_merging_are_found_by_validate() {
        let a = parse(
            "services:\n  - name: getty\n    image: linuxkit/getty:a\n",
            "a.yml",
        );
        let b = parse(
            "services:\n  - name: getty\n    image: linuxkit/getty:b\n",
            "b.yml",
        );
        let e = ImageYaml::merge(vec![a, b]).validate().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("b.yml:2:5: duplicate services name \"getty\""),
            "{e}"
        );
        assert!(e.message.contains("a.yml:2:5"), "{e}");
    }
}
