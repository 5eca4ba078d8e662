//! Key files on disk: reading `.key`/`.pub` files and writing a new pair as `PREFIX.key`
//! (mode 0600) and `PREFIX.pub`, never replacing existing files unless asked to.
//!
//! File errors name the path. Finding the passphrase is the caller's business: it is asked for
//! only when the file is encrypted.

use std::fmt::Display;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::keys::{KeyError, PublicKey, SigningKey};
use crate::passphrase::Passphrase;

/// The two files [`write_key_pair`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairPaths {
    pub private_key: PathBuf,
    pub public_key: PathBuf,
}

impl KeyPairPaths {
    /// `PREFIX.key` and `PREFIX.pub` (the suffix is appended, never substituted, as cosign does).
    pub fn for_prefix(prefix: &Path) -> Self {
        let with = |ext: &str| {
            let mut s = prefix.as_os_str().to_owned();
            s.push(ext);
            PathBuf::from(s)
        };
        Self {
            private_key: with(".key"),
            public_key: with(".pub"),
        }
    }
}

fn read_text(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?);
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_string())),
        Err(_) => Err(KeyError::Malformed {
            what: "key file",
            detail: "not text; expected a PEM file".into(),
        }
        .in_file(path)),
    }
}

/// Loads a private key file: cosign's encrypted PEM (calling `passphrase` to unlock it) or a
/// plain PKCS#8/SEC1 PEM (no passphrase asked).
pub fn load_signing_key<E: Display>(
    path: &Path,
    passphrase: impl FnOnce() -> Result<Passphrase, E>,
) -> Result<SigningKey, KeyError> {
    let text = read_text(path)?;
    let result = if SigningKey::pem_is_encrypted(&text) {
        match passphrase() {
            Ok(p) => SigningKey::from_encrypted_pem(&text, &p),
            Err(e) => Err(KeyError::Passphrase(e.to_string())),
        }
    } else {
        SigningKey::from_plain_pem(&text)
    };
    result.map_err(|e| e.in_file(path))
}

/// Loads an unencrypted PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) file, to import it.
pub fn load_plain_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = read_text(path)?;
    SigningKey::from_plain_pem(&text).map_err(|e| e.in_file(path))
}

/// Loads a `PUBLIC KEY` PEM file.
pub fn load_public_key(path: &Path) -> Result<PublicKey, KeyError> {
    let text = read_text(path)?;
    PublicKey::from_pem(&text).map_err(|e| e.in_file(path))
}

/// Writes `PREFIX.key` (encrypted under `passphrase`, mode 0600) and `PREFIX.pub`. Fails if
/// either exists, unless `force`, in which case both are replaced (the old `.key` is removed
/// first, so a lax mode on it is not inherited).
pub fn write_key_pair(
    prefix: &Path,
    key: &SigningKey,
    passphrase: &Passphrase,
    force: bool,
) -> Result<KeyPairPaths, KeyError> {
    let paths = KeyPairPaths::for_prefix(prefix);
    if !force {
        for p in [&paths.private_key, &paths.public_key] {
            if p.symlink_metadata().is_ok() {
                return Err(KeyError::Exists { path: p.clone() });
            }
        }
    }
    let private_pem = key.to_encrypted_pem(passphrase)?;
    let public_pem = key.public_key().to_pem();
    write_new(&paths.private_key, private_pem.as_bytes(), 0o600, force)?;
    write_new(&paths.public_key, public_pem.as_bytes(), 0o644, force)?;
    Ok(paths)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> Result<(), KeyError> {
    let io = |action| {
        move |source| KeyError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    if replace {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("replace")(e)),
            _ => {}
        }
    }
    // create_new: never follow a symlink planted at the path, never truncate someone's key.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io("create")(e)
            }
        })?;
    // The umask may have narrowed the mode; never let it be wider than asked.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io("set permissions on"))?;
    file.write_all(bytes).map_err(io("write"))?;
    file.sync_all().map_err(io("write"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn pw(s: &str) -> Passphrase {
        Passphrase::from(s.to_string())
    }

    #[test]
    fn writes_pair_with_modes_and_refuses_overwrite() {
        let dir = tempfile::tempdir().expect("tmp");
        let prefix = dir.path().join("my.key-pair");
        let key = SigningKey::generate();
        let paths = write_key_pair(&prefix, &key, &pw("pw"), false).expect("write");
        assert_eq!(paths.private_key, dir.path().join("my.key-pair.key"));
        assert_eq!(paths.public_key, dir.path().join("my.key-pair.pub"));
        let meta = std::fs::metadata(&paths.private_key).expect("meta");
        assert_eq!(meta.mode() & 0o777, 0o600);

        let loaded =
            load_signing_key(&paths.private_key, || Ok::<_, String>(pw("pw"))).expect("load");
        assert_eq!(loaded.public_key(), key.public_key());
        assert_eq!(
            load_public_key(&paths.public_key).expect("pub"),
            key.public_key()
        );

        let before = std::fs::read(&paths.private_key).expect("read");
        let err = write_key_pair(&prefix, &SigningKey::generate(), &pw("pw"), false)
            .expect_err("must refuse");
        assert!(matches!(err, KeyError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("--force"));
        assert_eq!(std::fs::read(&paths.private_key).expect("read"), before);

        // --force replaces both, and a lax mode on the old file is not inherited.
        std::fs::set_permissions(&paths.private_key, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let other = SigningKey::generate();
        write_key_pair(&prefix, &other, &pw("pw2"), true).expect("force");
        let meta = std::fs::metadata(&paths.private_key).expect("meta");
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(
            load_public_key(&paths.public_key).expect("pub"),
            other.public_key()
        );
    }

    #[test]
    fn refuses_when_only_the_public_half_exists() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("k.pub"), "x").expect("write");
        let err = write_key_pair(
            &dir.path().join("k"),
            &SigningKey::generate(),
            &pw("p"),
            false,
        )
        .expect_err("refuse");
        assert!(matches!(err, KeyError::Exists { .. }));
        assert!(!dir.path().join("k.key").exists());
    }

    #[test]
    fn load_errors_name_the_file_and_hide_the_passphrase() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("k.key");
        let key = SigningKey::generate();
        std::fs::write(
            &path,
            key.to_encrypted_pem(&pw("right")).expect("pem").as_bytes(),
        )
        .expect("write");
        let err = load_signing_key(&path, || Ok::<_, String>(pw("s3cr3t-wrong")))
            .expect_err("wrong passphrase");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("wrong passphrase"), "{msg}");
        assert!(!msg.contains("s3cr3t") && !msg.contains("right"), "{msg}");

        // The passphrase is only asked for encrypted keys, and its failure is reported.
        let err =
            load_signing_key(&path, || Err("set COSIGN_PASSWORD")).expect_err("no passphrase");
        assert!(err.to_string().contains("set COSIGN_PASSWORD"));
        let plain = dir.path().join("plain.pem");
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/openssl-pkcs8.pem"),
            &plain,
        )
        .expect("copy");
        load_signing_key(&plain, || -> Result<Passphrase, String> {
            panic!("must not ask for a passphrase")
        })
        .expect("plain key");

        let missing = load_public_key(&dir.path().join("nope.pub")).expect_err("missing");
        assert!(missing.to_string().contains("nope.pub"));
    }
}
