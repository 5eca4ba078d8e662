//! The kernel command line options the init honours (listed in the crate docs). Pure parsing
//! of `/proc/cmdline`'s text; unknown words are ignored, as the kernel passes everything it does
//! not know to init.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmdline {
    /// `oxkit.debug`: log every step (module loads, mounts, exits with status 0).
    pub debug: bool,
    /// `oxkit.modules=a,b`: modules to load at boot, after `/etc/modules`.
    pub modules: Vec<String>,
    /// `oxkit.coldplug=0` turns off loading modules for the devices present.
    pub coldplug: bool,
    /// `linuxkit.unified_cgroup_hierarchy=0`: cgroup v1 hierarchies instead of cgroup2.
    pub cgroup_v1: bool,
}

impl Default for Cmdline {
    fn default() -> Self {
        Self {
            debug: false,
            modules: Vec::new(),
            coldplug: true,
            cgroup_v1: false,
        }
    }
}

fn truthy(v: Option<&str>) -> bool {
    !matches!(v, Some("0" | "false" | "no" | "off"))
}

/// Words of the command line; double quotes group (`a="b c"` is one word `a=b c`).
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

pub fn parse(text: &str) -> Cmdline {
    let mut c = Cmdline::default();
    for word in words(text) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word.as_str(), None),
        };
        match key {
            "oxkit.debug" => c.debug = truthy(value),
            "oxkit.modules" => {
                c.modules.extend(
                    value
                        .unwrap_or_default()
                        .split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(String::from),
                );
            }
            "oxkit.coldplug" => c.coldplug = truthy(value),
            "linuxkit.unified_cgroup_hierarchy" => c.cgroup_v1 = !truthy(value),
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let c = parse(
            "console=ttyS0 panic=-1 oxkit.debug oxkit.modules=virtio_net,overlay oxkit.modules=squashfs\n",
        );
        assert!(c.debug);
        assert_eq!(c.modules, ["virtio_net", "overlay", "squashfs"]);
        assert!(c.coldplug);
        assert!(!c.cgroup_v1);

        let c = parse("oxkit.debug=0 oxkit.coldplug=0 linuxkit.unified_cgroup_hierarchy=0");
        assert!(!c.debug && !c.coldplug && c.cgroup_v1);
        assert_eq!(parse(""), Cmdline::default());
    }

    #[test]
    fn quotes_group_words() {
        assert_eq!(words("a=\"b c\" d"), ["a=b c", "d"]);
        let c = parse("x=\"oxkit.debug\" oxkit.modules=\"a, b\"");
        assert!(!c.debug);
        assert_eq!(c.modules, ["a", "b"]);
    }
}
