//! Per-registry TLS material in Docker's `certs.d` layout: `DIR/HOST[:PORT]/*.crt` are extra
//! CA certificates trusted for that host only, and a `NAME.cert` + `NAME.key` pair is a client
//! certificate. The directories to search are handed in by the caller
//! (`~/.config/oxkit/certs.d`, `/etc/docker/certs.d`); this module never reads the environment
//! and never weakens verification (system roots stay trusted, hostnames are checked).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The `certs.d` files that apply to one host.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct HostCertFiles {
    /// CA certificates (`*.crt`), in directory order then name order.
    pub(crate) cas: Vec<PathBuf>,
    /// A client certificate and its key (`NAME.cert`, `NAME.key`).
    pub(crate) client: Option<(PathBuf, PathBuf)>,
}

impl HostCertFiles {
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.cas.is_empty() && self.client.is_none()
    }
}

/// Finds the files for `host` (as written in references, `127.0.0.1:5000`) under each of
/// `dirs`. A `.cert` without its `.key` (or the reverse) is an error naming the file.
pub(crate) fn find_host_files(dirs: &[PathBuf], host: &str) -> Result<HostCertFiles> {
    let mut out = HostCertFiles::default();
    for dir in dirs {
        let d = dir.join(host);
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::NotADirectory =>
            {
                continue;
            }
            Err(e) => return Err(Error::io("list", &d)(e)),
        };
        let mut names: Vec<PathBuf> = entries
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .map_err(Error::io("list", &d))?;
        names.sort();
        for p in &names {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            match ext {
                "crt" => out.cas.push(p.clone()),
                "cert" => {
                    let key = p.with_extension("key");
                    if !key.is_file() {
                        return Err(Error::Certs {
                            path: p.clone(),
                            reason: format!("client certificate without its key {}", key.display()),
                        });
                    }
                    if out.client.is_none() {
                        out.client = Some((p.clone(), key));
                    }
                }
                "key" => {
                    let cert = p.with_extension("cert");
                    if !cert.is_file() {
                        return Err(Error::Certs {
                            path: p.clone(),
                            reason: format!(
                                "client key without its certificate {}",
                                cert.display()
                            ),
                        });
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(Error::io("read", path))
}

/// Adds the host's CAs and client certificate to a client builder.
pub(crate) fn configure(
    mut builder: reqwest::blocking::ClientBuilder,
    files: &HostCertFiles,
) -> Result<reqwest::blocking::ClientBuilder> {
    let mut roots = Vec::new();
    for ca in &files.cas {
        let pem = read(ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Certs {
            path: ca.clone(),
            reason: format!("not a PEM certificate ({e})"),
        })?;
        if certs.is_empty() {
            return Err(Error::Certs {
                path: ca.clone(),
                reason: "holds no certificate".into(),
            });
        }
        roots.extend(certs);
    }
    if !roots.is_empty() {
        builder = builder.tls_certs_merge(roots);
    }
    if let Some((cert, key)) = &files.client {
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| Error::Certs {
            path: cert.clone(),
            reason: format!(
                "cannot use it with {} as a client certificate ({e})",
                key.display()
            ),
        })?;
        builder = builder.identity(id);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn finds_cas_and_client_pairs_in_every_dir() {
        let t = tempfile::tempdir().unwrap();
        let user = t.path().join("user");
        let system = t.path().join("system");
        touch(&user.join("127.0.0.1:5000/ca.crt"), "x");
        touch(&system.join("127.0.0.1:5000/other.crt"), "x");
        touch(&system.join("127.0.0.1:5000/client.cert"), "x");
        touch(&system.join("127.0.0.1:5000/client.key"), "x");
        touch(&system.join("127.0.0.1:5000/README"), "x");
        touch(&user.join("127.0.0.1:6000/ca.crt"), "x");
        let f = find_host_files(&[user.clone(), system.clone()], "127.0.0.1:5000").unwrap();
        assert_eq!(
            f.cas,
            vec![
                user.join("127.0.0.1:5000/ca.crt"),
                system.join("127.0.0.1:5000/other.crt")
            ]
        );
        assert_eq!(
            f.client,
            Some((
                system.join("127.0.0.1:5000/client.cert"),
                system.join("127.0.0.1:5000/client.key")
            ))
        );
        let none = find_host_files(&[user, system, t.path().join("missing")], "ghcr.io").unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn half_a_client_pair_is_an_error_naming_the_file() {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("h/client.cert"), "x");
        let e = find_host_files(&[t.path().to_path_buf()], "h")
            .unwrap_err()
            .to_string();
        assert!(e.contains("client.cert") && e.contains("client.key"), "{e}");
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("h/client.key"), "x");
        let e = find_host_files(&[t.path().to_path_buf()], "h")
            .unwrap_err()
            .to_string();
        assert!(e.contains("without its certificate"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_pem_is_named() {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("h/ca.crt"), "not a certificate");
        let files = find_host_files(&[t.path().to_path_buf()], "h").unwrap();
        let e = configure(reqwest::blocking::Client::builder(), &files)
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("ca.crt") && e.contains("PEM"), "{e}");
    }
}
