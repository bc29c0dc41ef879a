//! The local keyring: the zero-configuration key service. Master keys live in a file
//! (`file.rs`), versioned; data keys are wrapped with AES-256-GCM under the current version,
//! with the key context, keyring id and version as associated data.
//!
//! A keyring has a random id, set when it is created, which every wrapped key names: a blob
//! from another keyring is [`VaultError::UnknownKey`], not a decryption failure.
//!
//! Rotation by another process (the CLI's `keys rotate` while a server runs) is picked up
//! without a restart:
//! - a blob naming a version this process does not know makes it read the file again, at most
//!   once per [`KeyringConfig::reload_interval_min`] (default [`KEYRING_RELOAD_INTERVAL_MIN`]),
//!   so blobs wrapped by a process that rotated earlier always open;
//! - before wrapping a new data key, and in [`KeyService::is_current`], it looks at the file's
//!   inode, length and modification time, at most once per
//!   [`KeyringConfig::current_check_interval`] (default [`KEYRING_CHECK_INTERVAL`]), and reads
//!   it when they changed. New data keys therefore come under a new version within that
//!   interval of the rotation, plus the vault's data-key age for keys already cached.
//!
//! A file read again must have the same id and every version this process knows, unchanged (a
//! keyring only grows); otherwise it is refused, logged, and the keys in memory stay.

mod file;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

pub use file::{KEYRING_DIR_MODE, KEYRING_FILE_BYTES_MAX, KEYRING_FILE_MODE, KEYRING_VERSIONS_MAX};

use self::file::{KeyringFile, MasterKey, Stamp, WriteLock};
use super::VaultError;
use super::envelope;
use super::types::{
    KeyContext, KeyService, KeyStatus, NONCE_BYTES, Secret, WrappedKey, millis_since_epoch,
    time_from_millis,
};

/// Default of [`KeyringConfig::reload_interval_min`].
pub const KEYRING_RELOAD_INTERVAL_MIN: Duration = Duration::from_secs(1);
/// Default of [`KeyringConfig::current_check_interval`].
pub const KEYRING_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Bytes of a locally wrapped data key: nonce, encrypted key, tag.
const WRAPPED_BYTES: usize = NONCE_BYTES + 32 + 16;
/// Bytes of randomness in a keyring id.
const KEYRING_ID_RANDOM_BYTES: usize = 16;

/// How often the keyring looks at its file for another process's rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyringConfig {
    /// Least time between two reads of the file for a blob of an unknown version.
    pub reload_interval_min: Duration,
    /// Least time between two looks at the file for a new current version.
    pub current_check_interval: Duration,
}

impl Default for KeyringConfig {
    fn default() -> Self {
        KeyringConfig {
            reload_interval_min: KEYRING_RELOAD_INTERVAL_MIN,
            current_check_interval: KEYRING_CHECK_INTERVAL,
        }
    }
}

/// The keys read from the file, and the file state they came from.
struct State {
    keyring: KeyringFile,
    stamp: Stamp,
}

struct Checks {
    last_reload: Option<Instant>,
    last_look: Instant,
}

/// The local keyring key service.
pub struct LocalKeyring {
    path: PathBuf,
    id: String,
    config: KeyringConfig,
    state: RwLock<Arc<State>>,
    checks: Mutex<Checks>,
}

impl fmt::Debug for LocalKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys.
        f.debug_struct("LocalKeyring")
            .field("path", &self.path)
            .field("id", &self.id)
            .field("versions", &self.state().keyring.keys.len())
            .finish()
    }
}

impl LocalKeyring {
    /// Opens the keyring at `path`. Refuses a missing file, a file whose mode gives anything
    /// to group or others (the message names the mode and the `chmod`), and a malformed one.
    pub fn open(path: &Path) -> Result<LocalKeyring, VaultError> {
        LocalKeyring::open_with(path, KeyringConfig::default())
    }

    /// [`LocalKeyring::open`] with other intervals for noticing another process's rotation.
    pub fn open_with(path: &Path, config: KeyringConfig) -> Result<LocalKeyring, VaultError> {
        let (keyring, stamp) = file::read(path)?;
        Ok(LocalKeyring {
            path: path.to_owned(),
            id: keyring.id.clone(),
            config,
            state: RwLock::new(Arc::new(State { keyring, stamp })),
            checks: Mutex::new(Checks {
                last_reload: None,
                last_look: Instant::now(),
            }),
        })
    }

    /// Creates a keyring at `path` with a new random id and master key version 1, mode 0600
    /// from creation (and its directory 0700 if it creates one), and opens it. Refuses if a
    /// file is already there.
    pub fn init(path: &Path) -> Result<LocalKeyring, VaultError> {
        let mut id_bytes = [0u8; KEYRING_ID_RANDOM_BYTES];
        getrandom::fill(&mut id_bytes)
            .map_err(|e| VaultError::Unavailable(format!("the system random generator: {e}")))?;
        let id: String = std::iter::once("kr-".to_owned())
            .chain(id_bytes.iter().map(|b| format!("{b:02x}")))
            .collect();
        let keyring = KeyringFile {
            id,
            keys: vec![new_master_key(1)?],
        };
        let lock = WriteLock::acquire(path)?;
        file::create(path, &keyring, &lock)?;
        drop(lock);
        LocalKeyring::open(path)
    }

    /// Opens the keyring at `path`, creating it first if there is none: the zero-configuration
    /// default of a development instance.
    pub fn open_or_init(path: &Path) -> Result<LocalKeyring, VaultError> {
        if path.symlink_metadata().is_ok() {
            return LocalKeyring::open(path);
        }
        match LocalKeyring::init(path) {
            Ok(keyring) => Ok(keyring),
            // Another process created it meanwhile.
            Err(_) if path.symlink_metadata().is_ok() => LocalKeyring::open(path),
            Err(e) => Err(e),
        }
    }

    /// Where the keyring file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keyring's id, which every key it wraps names.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn state(&self) -> Arc<State> {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn checks(&self) -> std::sync::MutexGuard<'_, Checks> {
        self.checks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a keyring read from the file if it is this one, grown; else refuses it.
    fn install(&self, keyring: KeyringFile, stamp: Stamp) -> Result<(), VaultError> {
        let known = self.state();
        if keyring.id != self.id {
            return Err(VaultError::Keyring(format!(
                "{}: now holds keyring {}, not {} which this process opened; restart it to use \
                 the new file",
                self.path.display(),
                keyring.id,
                self.id
            )));
        }
        for old in &known.keyring.keys {
            let same = keyring
                .version(old.version)
                .is_some_and(|new| new.key.bytes() == old.key.bytes());
            if !same {
                return Err(VaultError::Keyring(format!(
                    "{}: version {} changed or vanished; a keyring only grows",
                    self.path.display(),
                    old.version
                )));
            }
        }
        *self.state.write().unwrap_or_else(PoisonError::into_inner) =
            Arc::new(State { keyring, stamp });
        Ok(())
    }

    fn reload(&self) -> Result<(), VaultError> {
        let (keyring, stamp) = file::read(&self.path)?;
        self.install(keyring, stamp)
    }

    /// Reads the file again if it changed, at most once per check interval. A file that does
    /// not read is logged, and the keys in memory stay: it does not stop sealing.
    fn look_for_rotation(&self) {
        {
            let mut checks = self.checks();
            if checks.last_look.elapsed() < self.config.current_check_interval {
                return;
            }
            checks.last_look = Instant::now();
        }
        let changed = match file::stamp(&self.path) {
            Ok(stamp) => stamp != self.state().stamp,
            Err(error) => {
                tracing::warn!(%error, "cannot look at the keyring file; keeping the keys in memory");
                return;
            }
        };
        if changed && let Err(error) = self.reload() {
            tracing::warn!(%error, "the keyring file changed but was refused; keeping the keys in memory");
        }
    }

    /// Reads the file again for a blob of a version this process does not know, at most once
    /// per reload interval.
    fn reload_for_unknown(&self) -> Result<(), VaultError> {
        {
            let mut checks = self.checks();
            if checks
                .last_reload
                .is_some_and(|at| at.elapsed() < self.config.reload_interval_min)
            {
                return Ok(());
            }
            checks.last_reload = Some(Instant::now());
        }
        self.reload()
    }

    fn wrap(
        &self,
        master: &MasterKey,
        context: &KeyContext,
        data_key: &Secret,
    ) -> Result<WrappedKey, VaultError> {
        let aad = envelope::wrap_aad(&self.id, master.version, context);
        let (nonce, ciphertext) = envelope::encrypt(&master.key, &aad, data_key.bytes())?;
        let mut blob = Vec::with_capacity(WRAPPED_BYTES);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(WrappedKey {
            key_id: self.id.clone(),
            key_version: master.version,
            wrapped_at_ms: millis_since_epoch(SystemTime::now()),
            blob,
        })
    }

    fn unwrap(
        &self,
        master: &MasterKey,
        context: &KeyContext,
        blob: &[u8],
    ) -> Result<Secret, VaultError> {
        if blob.len() != WRAPPED_BYTES {
            return Err(VaultError::KeyUnwrap);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_BYTES);
        let nonce: &[u8; NONCE_BYTES] = nonce.try_into().map_err(|_| VaultError::KeyUnwrap)?;
        let aad = envelope::wrap_aad(&self.id, master.version, context);
        let plain = envelope::decrypt(&master.key, &aad, nonce, ciphertext)?
            .ok_or(VaultError::KeyUnwrap)?;
        Secret::from_slice(&plain)
    }

    /// The master key `wrapped` names, reading the file again once if it is newer than what
    /// this process knows.
    fn master_of(&self, wrapped: &WrappedKey) -> Result<Arc<State>, VaultError> {
        let unknown = || VaultError::UnknownKey {
            key_id: wrapped.key_id.clone(),
            version: wrapped.key_version,
        };
        if wrapped.key_id != self.id {
            return Err(unknown());
        }
        let state = self.state();
        if state.keyring.version(wrapped.key_version).is_some() {
            return Ok(state);
        }
        let newest = state.keyring.current().map_or(0, |k| k.version);
        if wrapped.key_version > newest {
            self.reload_for_unknown()?;
            let state = self.state();
            if state.keyring.version(wrapped.key_version).is_some() {
                return Ok(state);
            }
        }
        Err(unknown())
    }

    fn status_of(&self, state: &State) -> Result<KeyStatus, VaultError> {
        let current = state
            .keyring
            .current()
            .ok_or_else(|| VaultError::Keyring("no keys".into()))?;
        Ok(KeyStatus {
            service: "local",
            key_id: self.id.clone(),
            version: current.version,
            current_since: time_from_millis(current.created_ms),
            versions: state
                .keyring
                .keys
                .iter()
                .map(|k| (k.version, time_from_millis(k.created_ms)))
                .collect(),
        })
    }
}

fn new_master_key(version: u32) -> Result<MasterKey, VaultError> {
    Ok(MasterKey {
        version,
        created_ms: millis_since_epoch(SystemTime::now()),
        key: Secret::generate()?,
    })
}

/// Adds a version to the keyring file under the writer lock, from what the file holds now
/// (another process may have rotated since this one read it). Blocking.
fn rotate_file(path: &Path, id: &str) -> Result<(KeyringFile, Stamp), VaultError> {
    let lock = WriteLock::acquire(path)?;
    let (mut keyring, _) = file::read(path)?;
    if keyring.id != id {
        return Err(VaultError::Keyring(format!(
            "{}: holds keyring {}, not {id}; not rotated",
            path.display(),
            keyring.id
        )));
    }
    if keyring.keys.len() >= KEYRING_VERSIONS_MAX {
        return Err(VaultError::Keyring(format!(
            "{}: already {KEYRING_VERSIONS_MAX} versions, the most a keyring holds",
            path.display()
        )));
    }
    let version = u32::try_from(keyring.keys.len() + 1).unwrap_or(u32::MAX);
    keyring.keys.push(new_master_key(version)?);
    file::replace(path, &keyring, &lock)?;
    let stamp = file::stamp(path)?;
    drop(lock);
    Ok((keyring, stamp))
}

#[async_trait]
impl KeyService for LocalKeyring {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn generate_data_key(
        &self,
        context: &KeyContext,
    ) -> Result<(Secret, WrappedKey), VaultError> {
        self.look_for_rotation();
        let state = self.state();
        let master = state
            .keyring
            .current()
            .ok_or_else(|| VaultError::Keyring("no keys".into()))?;
        let data_key = Secret::generate()?;
        let wrapped = self.wrap(master, context, &data_key)?;
        Ok((data_key, wrapped))
    }

    async fn decrypt_data_key(
        &self,
        context: &KeyContext,
        wrapped: &WrappedKey,
    ) -> Result<Secret, VaultError> {
        let state = self.master_of(wrapped)?;
        let master = state
            .keyring
            .version(wrapped.key_version)
            .ok_or(VaultError::KeyUnwrap)?;
        self.unwrap(master, context, &wrapped.blob)
    }

    async fn rewrap_data_key(
        &self,
        context: &KeyContext,
        wrapped: &WrappedKey,
    ) -> Result<WrappedKey, VaultError> {
        // The data key is in memory only between these two lines, in a `Secret` (zeroized).
        let data_key = self.decrypt_data_key(context, wrapped).await?;
        self.look_for_rotation();
        let state = self.state();
        let master = state
            .keyring
            .current()
            .ok_or_else(|| VaultError::Keyring("no keys".into()))?;
        self.wrap(master, context, &data_key)
    }

    async fn is_current(&self, wrapped: &WrappedKey) -> Result<bool, VaultError> {
        self.look_for_rotation();
        let current = self.state().keyring.current().map_or(0, |k| k.version);
        Ok(wrapped.key_id == self.id && wrapped.key_version == current)
    }

    async fn rotate(&self) -> Result<KeyStatus, VaultError> {
        let (path, id) = (self.path.clone(), self.id.clone());
        // The writer lock may wait for another process's rotation: not on the async threads.
        let (keyring, stamp) = tokio::task::spawn_blocking(move || rotate_file(&path, &id))
            .await
            .map_err(|e| VaultError::Keyring(format!("rotation did not finish: {e}")))??;
        self.install(keyring, stamp)?;
        self.checks().last_look = Instant::now();
        self.status_of(&self.state())
    }

    async fn status(&self) -> Result<KeyStatus, VaultError> {
        // An operator asking wants the file as it is now, not as of the last look.
        let stamp = file::stamp(&self.path)?;
        if stamp != self.state().stamp {
            self.reload()?;
        }
        self.status_of(&self.state())
    }

    fn requests_total(&self) -> u64 {
        0
    }
}
