//! The private key that signs: found (`--key`, `OXKIT_SIGNING_KEY`, the config file's
//! `signing-key`), its passphrase asked for in the foreground (see [`crate::secrets`]), then
//! decrypted in the background while the work that needs it (uploads) goes on. Used by `pkg
//! push`, `pkg build --push`, `pkg manifest` and `sign`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Result, bail};
use oxkit_publish::KeySource;
use oxkit_sign::{Passphrase, PublicKey, SigningKey};
use zeroize::Zeroizing;

use crate::output::Printer;
use crate::secrets::{self, Purpose};

/// A signing key decrypted in the background from the start of a push
/// (cosign's scrypt takes a large part of a second), so uploads and the decryption overlap.
/// Its public key comes from the `.pub` beside it (cosign's `PREFIX.key`/`PREFIX.pub`) when
/// there is one, so signatures made before are recognised without decrypting at all.
pub(crate) struct LazyKey {
    path: PathBuf,
    public: Option<PublicKey>,
    /// The PEM text and passphrase, until decryption starts.
    material: Mutex<Option<(Zeroizing<String>, Option<Passphrase>)>>,
    job: Mutex<Option<std::thread::JoinHandle<std::result::Result<SigningKey, String>>>>,
    key: OnceLock<std::result::Result<SigningKey, String>>,
    /// Unlocked already, held by the kernel keyring (`oxkit key unlock`).
    from_keyring: bool,
}

impl LazyKey {
    fn open(path: &Path) -> Result<Self> {
        let fail = |e: &dyn std::fmt::Display| {
            format!("cannot use the signing key {}: {e}", path.display())
        };
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| anyhow::anyhow!(fail(&e)))?);
        let text = Zeroizing::new(
            String::from_utf8(bytes.to_vec())
                .map_err(|_| anyhow::anyhow!(fail(&"not a PEM text file")))?,
        );
        let encrypted = SigningKey::pem_is_encrypted(&text);
        let held = encrypted
            .then(|| oxkit_sign::keyring::recall(text.as_bytes()))
            .flatten();
        let from_keyring = held.is_some();
        // Asked now, in the foreground: a prompt must not appear in the middle of a push.
        let passphrase = if encrypted && !from_keyring {
            Some(secrets::passphrase(Purpose::Unlock).map_err(|e| anyhow::anyhow!(fail(&e)))?)
        } else {
            None
        };
        let public = match path.extension().and_then(|e| e.to_str()) {
            Some("key") => {
                let pub_path = path.with_extension("pub");
                if pub_path.is_file() {
                    Some(oxkit_sign::load_public_key(&pub_path)?)
                } else {
                    None
                }
            }
            _ => None,
        };
        let key = OnceLock::new();
        let material = match held {
            Some(k) => {
                let _ = key.set(Ok(k));
                None
            }
            None => Some((text, passphrase)),
        };
        Ok(Self {
            path: path.to_path_buf(),
            public,
            material: Mutex::new(material),
            job: Mutex::new(None),
            key,
            from_keyring,
        })
    }

    /// Starts decrypting in the background (once).
    pub(crate) fn start(&self) {
        let Some((text, passphrase)) = lock(&self.material).take() else {
            return;
        };
        let path = self.path.clone();
        *lock(&self.job) = Some(std::thread::spawn(move || {
            let key = match &passphrase {
                Some(p) => SigningKey::from_encrypted_pem(&text, p),
                None => SigningKey::from_plain_pem(&text),
            };
            key.map_err(|e| format!("cannot use the signing key {}: {e}", path.display()))
        }));
    }

    fn unlocked(&self) -> &std::result::Result<SigningKey, String> {
        self.key.get_or_init(|| {
            self.start();
            match lock(&self.job).take() {
                Some(job) => job
                    .join()
                    .unwrap_or_else(|_| Err(format!("decrypting {} failed", self.path.display()))),
                None => Err(format!("decrypting {} failed", self.path.display())),
            }
        })
    }

    /// The key's hint, for messages (decrypts only when there is no `.pub`).
    pub(crate) fn hint(&self) -> String {
        match self.public_key() {
            Ok(p) => p.hint(),
            Err(_) => self.path.display().to_string(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl KeySource for LazyKey {
    fn public_key(&self) -> std::result::Result<PublicKey, String> {
        match &self.public {
            Some(p) => Ok(p.clone()),
            None => self
                .unlocked()
                .as_ref()
                .map(SigningKey::public_key)
                .map_err(Clone::clone),
        }
    }

    fn signing_key(&self) -> std::result::Result<&SigningKey, String> {
        self.unlocked().as_ref().map_err(Clone::clone)
    }
}

impl LazyKey {
    /// The key named by `flag`, else `OXKIT_SIGNING_KEY`'s, else the config file's. No key
    /// at all is an error saying how to make one, followed by `alternative`. The passphrase
    /// is found now; decrypting waits until [`LazyKey::start`] or the key is needed.
    pub(crate) fn find(flag: Option<&Path>, alternative: &str, printer: &Printer) -> Result<Self> {
        let Some(path) = secrets::signing_key_path(flag)? else {
            bail!(
                "{} (create a key pair with `oxkit key generate`){alternative}",
                secrets::NO_SIGNING_KEY
            );
        };
        let key = Self::open(&path)?;
        if key.from_keyring {
            printer.status(format!(
                "Signing with {}, unlocked by `oxkit key unlock`",
                path.display()
            ));
        }
        Ok(key)
    }
}
