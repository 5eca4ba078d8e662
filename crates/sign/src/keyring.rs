//! Unlocked signing keys held by the Linux kernel for a while (`oxkit key unlock`), so a
//! session of pushes pays for cosign's scrypt once instead of once per push: what ssh-agent
//! and gpg-agent do for their keys, with the kernel as the agent.
//!
//! An unlocked key is a `user` key in the user keyring (`@u`) described as
//! `oxkit:signing-key:<SHA-256 of the encrypted key file>`, so it is found only for the very
//! file that was unlocked (a key file rewritten or replaced is not matched). Its payload is the
//! PKCS#8 DER private key. It stays in kernel memory (never written to disk or swap), the kernel
//! destroys it when the timeout ends, only processes of the same user can read it, and
//! [`forget`] removes it at once. The file's passphrase is never stored.
//!
//! Nothing here is used unless asked for: a push without an unlocked key decrypts the file
//! itself, and a keyring that is missing or refused (some container sandboxes block `keyctl`)
//! only means that.

use std::time::Duration;

use linux_keyutils::{KeyRing, KeyRingIdentifier, Permission};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::SigningKey;

/// Description prefix of oxkit's entries in the user keyring.
pub const DESCRIPTION_PREFIX: &str = "oxkit:signing-key:";

/// The kernel keyring refused or is missing.
#[derive(Debug, thiserror::Error)]
#[error(
    "the kernel keyring cannot {action} ({reason}); without it each push decrypts the key itself"
)]
pub struct KeyringError {
    action: &'static str,
    reason: String,
}

fn keyring_error(action: &'static str) -> impl FnOnce(linux_keyutils::KeyError) -> KeyringError {
    move |e| KeyringError {
        action,
        reason: e.to_string(),
    }
}

/// The keyring entry's description for a key file with these contents.
pub fn description(key_file: &[u8]) -> String {
    format!(
        "{DESCRIPTION_PREFIX}{}",
        hex::encode(Sha256::digest(key_file))
    )
}

fn user_keyring(action: &'static str) -> Result<KeyRing, KeyringError> {
    KeyRing::from_special_id(KeyRingIdentifier::User, true).map_err(keyring_error(action))
}

/// Keeps `key`, unlocked from the file with contents `key_file`, for `timeout` (at least one
/// second). Unlocking the same file again replaces the entry and restarts its timeout.
pub fn remember(key_file: &[u8], key: &SigningKey, timeout: Duration) -> Result<(), KeyringError> {
    let ring = user_keyring("hold the key")?;
    let der = key.to_pkcs8_der().map_err(|e| KeyringError {
        action: "hold the key",
        reason: e.to_string(),
    })?;
    let entry = ring
        .add_key(&description(key_file), der.as_slice())
        .map_err(keyring_error("hold the key"))?;
    let secs = usize::try_from(timeout.as_secs().max(1)).unwrap_or(usize::MAX);
    let kept = entry
        .set_timeout(secs)
        .and_then(|()| {
            entry.set_perms(
                linux_keyutils::KeyPermissionsBuilder::builder()
                    .posessor(Permission::ALL)
                    .user(
                        Permission::VIEW
                            | Permission::READ
                            | Permission::SEARCH
                            | Permission::WRITE
                            | Permission::SETATTR,
                    )
                    .build(),
            )
        })
        .map_err(keyring_error("set the key's timeout and permissions"));
    if kept.is_err() {
        // A key without its timeout must not linger.
        let _ = entry.invalidate();
    }
    kept
}

/// The key unlocked from the file with contents `key_file`, if it is held and not expired.
/// A missing or refused keyring reads as "not held".
pub fn recall(key_file: &[u8]) -> Option<SigningKey> {
    let ring = KeyRing::from_special_id(KeyRingIdentifier::User, false).ok()?;
    let entry = ring.search(&description(key_file)).ok()?;
    let der = Zeroizing::new(entry.read_to_vec().ok()?);
    // An entry that does not parse (written by something else) is ignored.
    SigningKey::from_pkcs8_der(&der).ok()
}

/// Removes the unlocked key of the file with contents `key_file`; whether one was held.
pub fn forget(key_file: &[u8]) -> Result<bool, KeyringError> {
    let Ok(ring) = KeyRing::from_special_id(KeyRingIdentifier::User, false) else {
        return Ok(false);
    };
    match ring.search(&description(key_file)) {
        Ok(entry) => {
            entry
                .invalidate()
                .map_err(keyring_error("remove the key"))?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel keyring, if this machine lets us use it.
    fn keyring_usable() -> bool {
        let ok = user_keyring("test").is_ok();
        if !ok {
            eprintln!("NOTE: no usable kernel keyring here; keyring tests skipped");
        }
        ok
    }

    #[test]
    fn remembers_recalls_and_forgets_by_file_contents() {
        if !keyring_usable() {
            return;
        }
        let key = SigningKey::generate();
        let file = format!("a key file {:?}", key.public_key().hint());
        assert!(recall(file.as_bytes()).is_none());
        remember(file.as_bytes(), &key, Duration::from_secs(60)).unwrap();
        let back = recall(file.as_bytes()).expect("held");
        assert_eq!(back.public_key(), key.public_key());
        assert_eq!(back.sign(b"x"), key.sign(b"x"));
        // Another file's contents (an edited key file) do not match.
        assert!(recall(format!("{file}\n").as_bytes()).is_none());
        assert!(forget(file.as_bytes()).unwrap());
        assert!(recall(file.as_bytes()).is_none());
        assert!(!forget(file.as_bytes()).unwrap());
    }

    #[test]
    fn the_kernel_drops_it_after_the_timeout() {
        if !keyring_usable() {
            return;
        }
        let key = SigningKey::generate();
        let file = format!("timed {:?}", key.public_key().hint());
        remember(file.as_bytes(), &key, Duration::from_secs(1)).unwrap();
        assert!(recall(file.as_bytes()).is_some());
        std::thread::sleep(Duration::from_millis(2100));
        assert!(recall(file.as_bytes()).is_none());
    }

    #[test]
    fn the_entry_is_the_private_key_only_for_this_user() {
        if !keyring_usable() {
            return;
        }
        let key = SigningKey::generate();
        let file = format!("perms {:?}", key.public_key().hint());
        remember(file.as_bytes(), &key, Duration::from_secs(60)).unwrap();
        let ring = user_keyring("test").unwrap();
        let entry = ring.search(&description(file.as_bytes())).unwrap();
        let perms = entry.metadata().unwrap().get_perms().bits();
        // group and other: nothing.
        assert_eq!(perms & 0xffff, 0, "{perms:#x}");
        forget(file.as_bytes()).unwrap();
    }
}
