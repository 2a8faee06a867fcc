//! Secrets at rest: AES-256-GCM (RustCrypto's `aes-gcm`, the maintained, audited AEAD).
//!
//! A stored secret is `enc:v1:<base64(nonce ‖ ciphertext)>` with a random 96-bit nonce and the
//! column it belongs to (`sharepoint_connections.client_secret`) as associated data, so a
//! ciphertext copied into another column does not decrypt. The 32-byte master key comes from
//! `SYNCBRIDGE_MASTER_KEY` (base64) or from a key file (`SYNCBRIDGE_MASTER_KEY_FILE`, default
//! `$XDG_CONFIG_HOME/syncbridge/master.key` or `~/.config/syncbridge/master.key`) that is created
//! with mode 0600 on first use. Decrypted values are [`SecretString`]s, which never print.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore as _;
use secrecy::SecretString;

const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;

/// Why a secret could not be protected or recovered. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// `SYNCBRIDGE_MASTER_KEY` is set but is not base64 of 32 bytes.
    #[error(
        "SYNCBRIDGE_MASTER_KEY is not base64 of 32 bytes; generate one with `head -c 32 /dev/urandom | base64`"
    )]
    MalformedEnvKey,
    /// The key file exists but does not hold a key.
    #[error(
        "the master key file {path} is not base64 of 32 bytes; restore the original file or remove it to create a new key (secrets stored under the old key must then be applied again)"
    )]
    MalformedKeyFile { path: PathBuf },
    /// The key file cannot be read or created.
    #[error(
        "cannot use the master key file {path}: {source}; set SYNCBRIDGE_MASTER_KEY or SYNCBRIDGE_MASTER_KEY_FILE"
    )]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No home directory to put the default key file in.
    #[error(
        "no place for the master key file: set SYNCBRIDGE_MASTER_KEY or SYNCBRIDGE_MASTER_KEY_FILE"
    )]
    NoKeyLocation,
    /// The stored value is not something this module wrote.
    #[error(
        "the stored value of {column} is not an encrypted secret; apply the config again to store it"
    )]
    NotEncrypted { column: String },
    /// Wrong key, or the ciphertext was altered or moved to another column.
    #[error(
        "the secret in {column} cannot be decrypted with the current master key; restore the key it was stored with, or apply the config again with the secret"
    )]
    Decrypt { column: String },
}

/// The key that encrypts secrets at rest.
pub struct MasterKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// Loads the key from the environment or the key file, creating the file on first use.
    pub fn load() -> Result<Self, SecretError> {
        if let Ok(encoded) = std::env::var("SYNCBRIDGE_MASTER_KEY") {
            return Self::from_base64(&encoded).ok_or(SecretError::MalformedEnvKey);
        }
        let path = match std::env::var_os("SYNCBRIDGE_MASTER_KEY_FILE") {
            Some(path) => PathBuf::from(path),
            None => default_key_file().ok_or(SecretError::NoKeyLocation)?,
        };
        Self::load_or_create_file(&path)
    }

    /// A key from base64 of 32 bytes.
    pub fn from_base64(encoded: &str) -> Option<Self> {
        let bytes = BASE64.decode(encoded.trim()).ok()?;
        let cipher = Aes256Gcm::new_from_slice(&bytes).ok()?;
        Some(Self { cipher })
    }

    /// Reads the key file, or creates it (mode 0600, never overwriting) with a fresh key.
    pub fn load_or_create_file(path: &Path) -> Result<Self, SecretError> {
        let io = |source| SecretError::KeyFile {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                return Self::from_base64(&text).ok_or_else(|| SecretError::MalformedKeyFile {
                    path: path.to_owned(),
                });
            }
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(io(error)),
            Err(_) => {}
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let encoded = BASE64.encode(key);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(encoded.as_bytes()).map_err(io)?;
                tracing::info!(path = %path.display(), "created a new master key file");
                Self::from_base64(&encoded).ok_or_else(|| SecretError::MalformedKeyFile {
                    path: path.to_owned(),
                })
            }
            // Another process created it first: use theirs.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(io)?;
                Self::from_base64(&text).ok_or_else(|| SecretError::MalformedKeyFile {
                    path: path.to_owned(),
                })
            }
            Err(error) => Err(io(error)),
        }
    }

    /// Encrypts `plaintext` for `column` (e.g. `database_instances.db_password`).
    pub fn encrypt(&self, plaintext: &str, column: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: column.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Decrypt {
                column: column.to_owned(),
            })?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX}{}", BASE64.encode(blob)))
    }

    /// Decrypts a value written by [`MasterKey::encrypt`] for the same column.
    pub fn decrypt(&self, stored: &str, column: &str) -> Result<SecretString, SecretError> {
        let not_encrypted = || SecretError::NotEncrypted {
            column: column.to_owned(),
        };
        let blob = BASE64
            .decode(stored.strip_prefix(PREFIX).ok_or_else(not_encrypted)?)
            .map_err(|_| not_encrypted())?;
        if blob.len() < NONCE_LEN {
            return Err(not_encrypted());
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let plaintext = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: column.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Decrypt {
                column: column.to_owned(),
            })?;
        let text = String::from_utf8(plaintext).map_err(|_| SecretError::Decrypt {
            column: column.to_owned(),
        })?;
        Ok(SecretString::from(text))
    }
}

fn default_key_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("syncbridge").join("master.key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    fn key() -> MasterKey {
        MasterKey::from_base64(&BASE64.encode([7u8; 32])).expect("valid key")
    }

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let key = key();
        let stored = key.encrypt("hunter2-hunter2", "t.c").expect("encrypts");
        assert!(stored.starts_with("enc:v1:"));
        assert!(!stored.contains("hunter2"));
        assert_ne!(
            stored,
            key.encrypt("hunter2-hunter2", "t.c").expect("encrypts"),
            "random nonce"
        );
        assert_eq!(
            key.decrypt(&stored, "t.c")
                .expect("decrypts")
                .expose_secret(),
            "hunter2-hunter2"
        );
    }

    #[test]
    fn wrong_key_or_column_fails_without_leaking() {
        let stored = key().encrypt("hunter2", "t.c").expect("encrypts");
        let other = MasterKey::from_base64(&BASE64.encode([8u8; 32])).expect("valid key");
        let error = other.decrypt(&stored, "t.c").expect_err("wrong key");
        assert!(error.to_string().contains("t.c") && !error.to_string().contains("hunter2"));
        assert!(
            key().decrypt(&stored, "t.other").is_err(),
            "column is bound"
        );
        assert!(matches!(
            key().decrypt("plain", "t.c"),
            Err(SecretError::NotEncrypted { .. })
        ));
    }

    #[test]
    fn key_file_is_created_once_with_0600() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/master.key");
        let first = MasterKey::load_or_create_file(&path).expect("created");
        let stored = first.encrypt("s", "c").expect("encrypts");
        let second = MasterKey::load_or_create_file(&path).expect("loaded");
        assert!(
            second.decrypt(&stored, "c").is_ok(),
            "the same key is loaded back"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "garbage").expect("overwrite");
        assert!(matches!(
            MasterKey::load_or_create_file(&path),
            Err(SecretError::MalformedKeyFile { .. })
        ));
    }
}
