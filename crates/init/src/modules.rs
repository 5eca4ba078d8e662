//! Kernel modules without modprobe or `modules.dep` (Debian's kernel packages ship none): the
//! init finds `*.ko` files under `/lib/modules/$(uname -r)`, reads each module's `.modinfo`
//! ELF section for `depends=`, `softdep=` and `alias=`, and loads modules dependencies first
//! with finit_module(2). Coldplug matches the `modalias` of every device in `/sys/bus` against
//! the modules' alias patterns, as udev would, so that virtio drivers load for the devices QEMU
//! provides.
//!
//! Compressed modules (`.ko.xz`, `.ko.zst`, `.ko.gz`) are handed to the kernel as they are,
//! which works only with CONFIG_MODULE_DECOMPRESS (Debian 12's kernels lack it); the image
//! assembler is expected to decompress them. The init carries no decompressor.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::log::Log;

/// `finit_module` flag: the file is compressed and the kernel should decompress it.
const MODULE_INIT_COMPRESSED_FILE: i32 = 4;

/// `virtio-net` and `virtio_net` name the same module.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name a file name gives (`virtio_net.ko.xz` → `virtio_net`).
pub fn module_name_of(file_name: &str) -> Option<String> {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file_name.strip_suffix(ext))
        .filter(|n| !n.is_empty())
        .map(normalize)
}

fn is_compressed(path: &Path) -> bool {
    !path.to_string_lossy().ends_with(".ko")
}

/// The `key=value` entries of a module's `.modinfo` section, read through `read_at(offset,
/// len)`. Handles 32- and 64-bit, little- and big-endian ELF.
pub fn modinfo_with(
    mut read_at: impl FnMut(u64, usize) -> io::Result<Vec<u8>>,
) -> Result<Vec<(String, String)>, String> {
    let ident = read_at(0, 64).map_err(|e| format!("cannot read ELF header: {e}"))?;
    if ident.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".to_string());
    }
    let is64 = match ident.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err("unknown ELF class".to_string()),
    };
    let le = match ident.get(5) {
        Some(1) => true,
        Some(2) => false,
        _ => return Err("unknown ELF byte order".to_string()),
    };
    let num = |b: &[u8], at: usize, size: usize| -> Result<u64, String> {
        let s = b
            .get(at..at + size)
            .ok_or_else(|| "truncated ELF header".to_string())?;
        let mut v: u64 = 0;
        for i in 0..size {
            let byte = if le { s.get(size - 1 - i) } else { s.get(i) };
            v = (v << 8) | u64::from(*byte.unwrap_or(&0));
        }
        Ok(v)
    };
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (
            num(&ident, 0x28, 8)?,
            num(&ident, 0x3A, 2)?,
            num(&ident, 0x3C, 2)?,
            num(&ident, 0x3E, 2)?,
        )
    } else {
        (
            num(&ident, 0x20, 4)?,
            num(&ident, 0x2E, 2)?,
            num(&ident, 0x30, 2)?,
            num(&ident, 0x32, 2)?,
        )
    };
    let entsize = usize::try_from(shentsize).map_err(|_| "bad section header size")?;
    if entsize < if is64 { 64 } else { 40 } || shnum == 0 || shnum > 65535 {
        return Err("bad section header table".to_string());
    }
    let count = usize::try_from(shnum).map_err(|_| "bad section count")?;
    let table =
        read_at(shoff, entsize * count).map_err(|e| format!("cannot read section headers: {e}"))?;
    // (name offset, file offset, size) of section `i`.
    let section = |i: usize| -> Result<(u64, u64, u64), String> {
        let base = i * entsize;
        let h = table
            .get(base..base + entsize)
            .ok_or("truncated section headers")?;
        if is64 {
            Ok((num(h, 0, 4)?, num(h, 0x18, 8)?, num(h, 0x20, 8)?))
        } else {
            Ok((num(h, 0, 4)?, num(h, 0x10, 4)?, num(h, 0x14, 4)?))
        }
    };
    let limit = |size: u64| {
        usize::try_from(size)
            .ok()
            .filter(|s| *s <= 16 << 20)
            .ok_or("section too large")
    };
    let (_, str_off, str_size) =
        section(usize::try_from(shstrndx).map_err(|_| "bad string table index")?)?;
    let names = read_at(str_off, limit(str_size)?)
        .map_err(|e| format!("cannot read section names: {e}"))?;
    for i in 0..count {
        let (name, off, size) = section(i)?;
        let name_at = usize::try_from(name).unwrap_or(usize::MAX);
        let n = names.get(name_at..).unwrap_or_default();
        if n.starts_with(b".modinfo\0") {
            let data =
                read_at(off, limit(size)?).map_err(|e| format!("cannot read .modinfo: {e}"))?;
            return Ok(data
                .split(|b| *b == 0)
                .filter_map(|entry| {
                    let s = std::str::from_utf8(entry).ok()?;
                    let (k, v) = s.split_once('=')?;
                    Some((k.to_string(), v.to_string()))
                })
                .collect());
        }
    }
    Err("no .modinfo section".to_string())
}

/// `.modinfo` of an ELF image in memory.
pub fn modinfo(elf: &[u8]) -> Result<Vec<(String, String)>, String> {
    modinfo_with(|off, len| {
        let start =
            usize::try_from(off).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let end = start.saturating_add(len).min(elf.len());
        Ok(elf.get(start..end).unwrap_or_default().to_vec())
    })
}

/// `.modinfo` of a module file, reading only the headers and that section.
pub fn modinfo_of_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    modinfo_with(|off, len| {
        let len = len.min(usize::try_from(size.saturating_sub(off)).unwrap_or(0));
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off)?;
        Ok(buf)
    })
    .map_err(|e| format!("{}: {e}", path.display()))
}

/// Hard dependencies (`depends=`) then `softdep=pre:` ones, which must be loaded first too.
pub fn dependencies(info: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let mut hard = Vec::new();
    let mut soft = Vec::new();
    for (k, v) in info {
        match k.as_str() {
            "depends" => hard.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(normalize),
            ),
            "softdep" => {
                // "pre: a b post: c"
                let mut in_pre = false;
                for word in v.split_whitespace() {
                    match word {
                        "pre:" => in_pre = true,
                        "post:" => in_pre = false,
                        w if in_pre => soft.push(normalize(w)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (hard, soft)
}

/// `name` and everything it depends on, dependencies first. `deps_of` gives a module's hard
/// dependencies; a cycle or an unknown module is an error naming it.
pub fn load_order(
    name: &str,
    mut deps_of: impl FnMut(&str) -> Result<Vec<String>, String>,
) -> Result<Vec<String>, String> {
    fn visit(
        name: &str,
        deps_of: &mut dyn FnMut(&str) -> Result<Vec<String>, String>,
        done: &mut Vec<String>,
        path: &mut Vec<String>,
    ) -> Result<(), String> {
        if done.iter().any(|d| d == name) {
            return Ok(());
        }
        if path.iter().any(|p| p == name) {
            return Err(format!("dependency cycle: {} -> {name}", path.join(" -> ")));
        }
        path.push(name.to_string());
        for dep in deps_of(name)? {
            visit(&dep, deps_of, done, path)?;
        }
        path.pop();
        done.push(name.to_string());
        Ok(())
    }
    let mut done = Vec::new();
    visit(&normalize(name), &mut deps_of, &mut done, &mut Vec::new())?;
    Ok(done)
}

/// Shell-style pattern match as fnmatch(3) without flags: `*`, `?` and `[...]` (ranges, `!`
/// or `^` negation), what module alias patterns use.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, text index it matched to).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let c = text.get(t).copied().unwrap_or(0);
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(b'?') => {
                p += 1;
                t += 1;
                continue;
            }
            Some(b'[') => {
                if let Some((matched, next)) = class(pattern, p, c) {
                    if matched {
                        p = next;
                        t += 1;
                        continue;
                    }
                } else if c == b'[' {
                    p += 1;
                    t += 1;
                    continue;
                }
            }
            Some(&pc) if pc == c => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|b| *b == b'*')
}

/// Matches `c` against the bracket expression at `pattern[at]`; `None` if it is not closed.
fn class(pattern: &[u8], at: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = at + 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let pc = *pattern.get(i)?;
        if pc == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|e| *e != b']') {
            let hi = *pattern.get(i + 2)?;
            matched |= pc <= c && c <= hi;
            i += 3;
        } else {
            matched |= pc == c;
            i += 1;
        }
    }
}

/// The modules of one kernel and what is loaded.
pub struct Loader {
    dir: PathBuf,
    by_name: BTreeMap<String, PathBuf>,
    builtin: BTreeSet<String>,
    loaded: BTreeSet<String>,
    /// Modules tried and refused: not tried again.
    failed: BTreeSet<String>,
    aliases: Option<Vec<(String, String)>>,
    log: Log,
}

impl Loader {
    /// Indexes `dir` (`/lib/modules/KVER`) and reads what is already loaded.
    pub fn new(dir: &Path, log: Log) -> io::Result<Self> {
        let mut by_name = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)?.flatten() {
                let path = e.path();
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(path),
                    Ok(_) => {
                        if let Some(name) = module_name_of(&e.file_name().to_string_lossy()) {
                            by_name.entry(name).or_insert(path);
                        }
                    }
                    Err(_) => {}
                }
            }
        }
        let builtin = std::fs::read_to_string(dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit('/').next().and_then(module_name_of))
            .collect();
        let loaded = std::fs::read_to_string("/proc/modules")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').next().map(normalize))
            .collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            by_name,
            builtin,
            loaded,
            failed: BTreeSet::new(),
            aliases: None,
            log,
        })
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    fn present(&self, name: &str) -> bool {
        self.loaded.contains(name)
            || self.builtin.contains(name)
            || Path::new("/sys/module").join(name).exists()
    }

    fn deps(&self, name: &str) -> Result<Vec<String>, String> {
        let path = self
            .by_name
            .get(name)
            .ok_or_else(|| format!("module {name} not found in {}", self.dir.display()))?;
        if is_compressed(path) {
            // Its dependencies cannot be read without decompressing it.
            return Ok(Vec::new());
        }
        let info = modinfo_of_file(path)?;
        let (hard, soft) = dependencies(&info);
        // Soft pre-dependencies are best effort: only those this image has.
        Ok(hard
            .into_iter()
            .chain(soft.into_iter().filter(|s| self.by_name.contains_key(s)))
            .collect())
    }

    /// Loads `name` (a module name, or an alias such as `fs-overlay`) and its dependencies.
    pub fn load(&mut self, name: &str) -> Result<(), String> {
        let name = normalize(name);
        if self.present(&name) {
            return Ok(());
        }
        let name = if self.by_name.contains_key(&name) {
            name
        } else {
            self.by_alias(&name)
                .ok_or_else(|| format!("module {name} not found in {}", self.dir.display()))?
        };
        let order = load_order(&name, |n| {
            if self.present(n) {
                Ok(Vec::new())
            } else {
                self.deps(n)
            }
        })?;
        for m in order {
            if self.present(&m) {
                continue;
            }
            self.insert(&m)?;
        }
        Ok(())
    }

    fn by_alias(&mut self, alias: &str) -> Option<String> {
        let aliases = self.aliases();
        aliases
            .iter()
            .find(|(pattern, _)| glob_match(pattern.as_bytes(), alias.as_bytes()))
            .map(|(_, m)| m.clone())
    }

    fn insert(&mut self, name: &str) -> Result<(), String> {
        if self.failed.contains(name) {
            return Err(format!("module {name} was refused before"));
        }
        let path = self
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| format!("module {name} not found"))?;
        let file = File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let flags = if is_compressed(&path) {
            MODULE_INIT_COMPRESSED_FILE
        } else {
            0
        };
        match rustix::system::finit_module(&file, c"", flags) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {
                self.log.debug(format_args!("loaded module {name}"));
                self.loaded.insert(name.to_string());
                Ok(())
            }
            Err(e) => {
                self.failed.insert(name.to_string());
                let hint = if flags != 0 && e == rustix::io::Errno::INVAL {
                    " (a compressed module needs CONFIG_MODULE_DECOMPRESS; decompress it in the image)"
                } else {
                    ""
                };
                Err(format!(
                    "cannot load module {}: {}{hint}",
                    path.display(),
                    io::Error::from(e)
                ))
            }
        }
    }

    /// (pattern, module) for every `alias=` of every uncompressed module, read once.
    fn aliases(&mut self) -> &Vec<(String, String)> {
        if self.aliases.is_none() {
            let mut out = Vec::new();
            for (name, path) in &self.by_name {
                if is_compressed(path) {
                    continue;
                }
                if let Ok(info) = modinfo_of_file(path) {
                    out.extend(
                        info.into_iter()
                            .filter(|(k, _)| k == "alias")
                            .map(|(_, v)| (v, name.clone())),
                    );
                }
            }
            self.aliases = Some(out);
        }
        self.aliases.get_or_insert_with(Vec::new)
    }

    /// Loads the modules matching the modalias of every device, repeating while loading brings
    /// new devices (virtio_pci makes the virtio devices that virtio_net and virtio_blk drive).
    pub fn coldplug(&mut self) {
        for _round in 0..5 {
            let mut devices = BTreeSet::new();
            if let Ok(buses) = std::fs::read_dir("/sys/bus") {
                for bus in buses.flatten() {
                    let Ok(devs) = std::fs::read_dir(bus.path().join("devices")) else {
                        continue;
                    };
                    for d in devs.flatten() {
                        if let Ok(a) = std::fs::read_to_string(d.path().join("modalias")) {
                            devices.insert(a.trim().to_string());
                        }
                    }
                }
            }
            let mut wanted = BTreeSet::new();
            for (pattern, module) in self.aliases() {
                if devices
                    .iter()
                    .any(|d| glob_match(pattern.as_bytes(), d.as_bytes()))
                {
                    wanted.insert(module.clone());
                }
            }
            let new: Vec<String> = wanted
                .into_iter()
                .filter(|m| !self.present(m) && !self.failed.contains(m))
                .collect();
            if new.is_empty() {
                return;
            }
            for m in new {
                if let Err(e) = self.load(&m) {
                    self.log.debug(e);
                }
            }
        }
    }

    /// Makes `fstype` mountable: nothing if /proc/filesystems lists it, else loads `fs-TYPE`.
    pub fn ensure_filesystem(&mut self, fstype: &str) {
        if filesystem_known(fstype) {
            return;
        }
        if let Err(e) = self
            .load(&format!("fs-{fstype}"))
            .or_else(|_| self.load(fstype))
        {
            self.log.info(format_args!("filesystem {fstype}: {e}"));
        }
    }
}

/// Whether /proc/filesystems lists `fstype`.
pub fn filesystem_known(fstype: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split('\t').next_back() == Some(fstype))
}

#[cfg(test)]
mod tests;
