//! Per-registry TLS material in Docker's `certs.d` layout: `DIR/HOST[:PORT]/*.crt` are extra
//! CA certificates trusted for that host only, and a `NAME.cert` + `NAME.key` pair is a client
//! certificate. The directories to search are handed in by the caller
//! (`~/.config/oxkit/certs.d`, `/etc/docker/certs.d`); this module never reads the environment
//! and never weakens verification (system roots stay trusted, hostnames are checked).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

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

/// The TLS settings for one registry: the system's roots plus the host's `certs.d` CAs (or no
/// verification at all for an insecure registry), its client certificate, HTTP/1.1.
///
/// The system's roots are read at the first TLS handshake, not here: a command that only
/// talks plain HTTP (a registry on this machine) never reads the ~150 files of
/// `/etc/ssl/certs`, which took a quarter of a `pkg push` that finds everything pushed
/// already. The host's own files are read and checked here, so a bad `certs.d` file is an
/// error naming it before anything is sent.
pub(crate) fn client_config(
    files: &HostCertFiles,
    insecure: bool,
    host: &str,
) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let extra = extra_roots(files)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Connect {
            what: format!("set up TLS for {host}"),
            url: format!("https://{host}/"),
            reason: e.to_string(),
        })?;
    let trust = if insecure {
        Trust::Any
    } else {
        Trust::System {
            extra,
            made: OnceLock::new(),
        }
    };
    let verifier = Arc::new(Verifier { provider, trust });
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &files.client {
        Some((cert, key)) => {
            let bad = |reason: String| Error::Certs {
                path: cert.clone(),
                reason: format!(
                    "cannot use it with {} as a client certificate ({reason})",
                    key.display()
                ),
            };
            let chain = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
            if chain.is_empty() {
                return Err(bad("it holds no certificate".into()));
            }
            let secret = zeroize::Zeroizing::new(read(key)?);
            let private = PrivateKeyDer::from_pem_slice(&secret)
                .map_err(|e| bad(format!("no PEM private key in it: {e}")))?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| bad(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The CA certificates of `files`, each file checked: PEM, holding certificates rustls accepts.
fn extra_roots(files: &HostCertFiles) -> Result<Vec<CertificateDer<'static>>> {
    let mut roots = Vec::new();
    for ca in &files.cas {
        let bad = |reason: String| Error::Certs {
            path: ca.clone(),
            reason,
        };
        let certs = CertificateDer::pem_slice_iter(&read(ca)?)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not a PEM certificate ({e})")))?;
        if certs.is_empty() {
            return Err(bad("holds no certificate".into()));
        }
        // What the verifier will do with them, now, so that the error names the file.
        let mut check = rustls::RootCertStore::empty();
        for c in &certs {
            check
                .add(c.clone())
                .map_err(|e| bad(format!("not a usable CA certificate ({e})")))?;
        }
        roots.extend(certs);
    }
    Ok(roots)
}

/// Checks a registry's certificate as `trust` says; the handshake's signatures always.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    trust: Trust,
}

#[derive(Debug)]
enum Trust {
    /// An insecure registry's (`--insecure-registry`): any certificate, as Docker does.
    Any,
    /// The platform verifier: system roots plus `extra`, hostnames checked; made on first use.
    System {
        extra: Vec<CertificateDer<'static>>,
        made: OnceLock<std::result::Result<rustls_platform_verifier::Verifier, String>>,
    },
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Trust::System { extra, made } = &self.trust else {
            return Ok(ServerCertVerified::assertion());
        };
        let made = made.get_or_init(|| {
            rustls_platform_verifier::Verifier::new_with_extra_roots(
                extra.iter().cloned(),
                self.provider.clone(),
            )
            .map_err(|e| e.to_string())
        });
        match made {
            Ok(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            Err(e) => Err(rustls::Error::General(format!(
                "cannot load the trusted CA certificates: {e}"
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
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
        let e = client_config(&files, false, "h")
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("ca.crt") && e.contains("PEM"), "{e}");
    }

    #[test]
    fn a_client_pair_that_is_not_pem_is_named() {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("h/client.cert"), "not a certificate");
        touch(&t.path().join("h/client.key"), "not a key");
        let files = find_host_files(&[t.path().to_path_buf()], "h").unwrap();
        let e = client_config(&files, false, "h")
            .expect_err("must fail")
            .to_string();
        assert!(
            e.contains("client.cert") && e.contains("client.key") && e.contains("no certificate"),
            "{e}"
        );
        // Verification off does not mean the files are not checked.
        assert!(client_config(&files, true, "h").is_err());
    }
}
