//! The card vault's cryptography: envelope encryption under data keys that a key service wraps
//! (decision 7 of the design).
//!
//! - A value is sealed with AES-256-GCM under a data key, with a random 96-bit nonce and
//!   associated data binding purpose, scope (tenant) and record id ([`envelope`]). What is
//!   stored ([`Sealed`]) is the ciphertext, the nonce and the data key wrapped by the key
//!   service ([`WrappedKey`]: key id, version, blob).
//! - Key services ([`KeyService`]): the local keyring file ([`LocalKeyring`], the
//!   zero-configuration default) and AWS KMS ([`KmsKeyService`]). Each binds a wrap to a
//!   [`KeyContext`] (tenant and purpose): a data key does not unwrap under another context.
//! - [`Vault`] caches data keys within explicit bounds ([`VaultConfig`]): for sealing, one
//!   current data key per context, retired after `data_key_age_max` or `data_key_uses_max`
//!   seals (far under AES-GCM's 2^32 random-nonce limit); for opening, unwrapped keys by
//!   context and wrapped key, within the same age. At most `data_key_cache_max` entries each,
//!   the oldest evicted first; a cold key is fetched once however many tasks wait for it
//!   ([`cache`]). A task sweeps keys past their age every [`CACHE_SWEEP_INTERVAL`].
//! - Plaintext keys exist only as [`Secret`]s (zeroized on drop) and opened values only as
//!   `Zeroizing` buffers.
//! - Rotation: a key service's `rotate` makes a new master key version (local) or new key
//!   material (KMS) for new data keys; [`Vault::rewrap`] moves a stored value's data key to the
//!   current master key without decrypting the value, once per distinct wrapped key.
//!
//! What a failure means: [`VaultError::KeyUnwrap`] (the data key is not this context's, or is
//! altered), [`VaultError::Decrypt`] (the value is not this record's, or is altered),
//! [`VaultError::UnknownKey`] (the master key is not this service's).

mod cache;
mod config;
mod envelope;
mod error;
pub mod keyring;
pub mod kms;
mod stats;
#[cfg(test)]
mod tests;
mod types;

use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

pub use config::{VaultConfig, validate_cryptoperiod};
pub use error::VaultError;
pub use keyring::{KeyringConfig, LocalKeyring};
pub use kms::{KmsConfig, KmsKeyService, KmsRetry};
pub use stats::VaultStats;
pub use types::{
    KEY_BYTES, KMS_CONTEXT_DEPLOYMENT, KMS_CONTEXT_PURPOSE, KMS_CONTEXT_TENANT, KeyContext,
    KeyService, KeyStatus, NONCE_BYTES, Purpose, Scope, Sealed, Secret, TAG_BYTES, WrappedKey,
};

use self::cache::{BlobKey, OpenKey, SealKey, Slots, expired};
use self::stats::{Counters, Eviction, Op};
use crate::limits::{
    DATA_KEY_AGE_MAX, DATA_KEY_AGE_MIN, DATA_KEY_CACHE_LEN_MAX, DATA_KEY_USES_MAX, KEY_ID_LEN_MAX,
    RECORD_ID_LEN_MAX, REWRAP_MEMO_LEN_MAX, SEALED_VALUE_BYTES_MAX, WRAPPED_KEY_BYTES_MAX,
};
use crate::metrics::Metric;
use crate::time::{Clock, SystemClock};

/// How often cached data keys past their age are dropped, when nothing uses them.
pub const CACHE_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Envelope encryption over a key service, with the data-key cache. Cheap to clone: clones
/// share the cache.
#[derive(Clone, Debug)]
pub struct Vault {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    keys: Arc<dyn KeyService>,
    config: VaultConfig,
    clock: Arc<dyn Clock>,
    sealing: Slots<KeyContext, SealKey>,
    opening: Slots<BlobKey, OpenKey>,
    rewraps: Slots<BlobKey, WrappedKey>,
    counters: Counters,
}

impl Vault {
    /// A vault over `keys`. Settings out of their bounds are brought within them (and logged);
    /// [`VaultConfig::validate`] refuses them instead. Inside a Tokio runtime, a task sweeps
    /// expired keys every [`CACHE_SWEEP_INTERVAL`] until the last clone is dropped.
    pub fn new(keys: Arc<dyn KeyService>, config: VaultConfig) -> Vault {
        Vault::with_clock(keys, config, Arc::new(SystemClock))
    }

    /// [`Vault::new`] with the clock the cache ages keys by.
    pub fn with_clock(
        keys: Arc<dyn KeyService>,
        config: VaultConfig,
        clock: Arc<dyn Clock>,
    ) -> Vault {
        if let Err(error) = config.validate() {
            tracing::warn!(%error, "vault settings out of bounds; using the nearest bound");
        }
        let config = VaultConfig {
            data_key_age_max: config
                .data_key_age_max
                .clamp(DATA_KEY_AGE_MIN, DATA_KEY_AGE_MAX),
            data_key_uses_max: config.data_key_uses_max.clamp(1, DATA_KEY_USES_MAX),
            data_key_cache_max: config.data_key_cache_max.clamp(1, DATA_KEY_CACHE_LEN_MAX),
        };
        let inner = Arc::new(Inner {
            keys,
            config,
            clock,
            sealing: Slots::new(config.data_key_cache_max),
            opening: Slots::new(config.data_key_cache_max),
            rewraps: Slots::new(REWRAP_MEMO_LEN_MAX),
            counters: Counters::default(),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&inner);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(CACHE_SWEEP_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { break };
                    inner.sweep();
                }
            });
        }
        Vault { inner }
    }

    /// Encrypts `plaintext` for `record_id` under the context's current data key.
    pub async fn seal(
        &self,
        context: &KeyContext,
        record_id: &str,
        plaintext: &[u8],
    ) -> Result<Sealed, VaultError> {
        check_record_id(record_id)?;
        if plaintext.len() > SEALED_VALUE_BYTES_MAX {
            return Err(VaultError::Invalid(format!(
                "a value of {} bytes; the vault seals at most {SEALED_VALUE_BYTES_MAX}",
                plaintext.len()
            )));
        }
        let (key, wrapped) = self.inner.sealing_key(context).await?;
        let aad = envelope::value_aad(context, record_id);
        let (nonce, ciphertext) = envelope::encrypt(&key, &aad, plaintext)?;
        Ok(Sealed {
            key: wrapped,
            nonce,
            ciphertext,
        })
    }

    /// Decrypts a value sealed for `record_id` under `context`. Its data key not unwrapping
    /// under `context` is [`VaultError::KeyUnwrap`]; the value not decrypting (altered, or
    /// another record's) is [`VaultError::Decrypt`].
    pub async fn open(
        &self,
        context: &KeyContext,
        record_id: &str,
        sealed: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        check_record_id(record_id)?;
        check_wrapped(&sealed.key)?;
        if sealed.ciphertext.len() > SEALED_VALUE_BYTES_MAX + TAG_BYTES {
            return Err(VaultError::Invalid(format!(
                "a ciphertext of {} bytes, longer than any the vault seals",
                sealed.ciphertext.len()
            )));
        }
        let key = self.inner.opening_key(context, &sealed.key).await?;
        let aad = envelope::value_aad(context, record_id);
        envelope::decrypt(&key, &aad, &sealed.nonce, &sealed.ciphertext)?.ok_or(VaultError::Decrypt)
    }

    /// `sealed` with its data key wrapped under the current master key: `None` if it already
    /// is, else the same nonce and ciphertext with the new wrapped key. The value is never
    /// decrypted. Values sharing a wrapped key share one rewrap (a bounded memo).
    pub async fn rewrap(
        &self,
        context: &KeyContext,
        sealed: &Sealed,
    ) -> Result<Option<Sealed>, VaultError> {
        Ok(self
            .rewrap_key(context, &sealed.key)
            .await?
            .map(|key| Sealed {
                key,
                nonce: sealed.nonce,
                ciphertext: sealed.ciphertext.clone(),
            }))
    }

    /// A new random 256-bit key and the same wrapped for `context`: a deployment secret such
    /// as the PAN-fingerprint key, stored wrapped and opened with [`Vault::open_secret`].
    pub async fn new_secret(
        &self,
        context: &KeyContext,
    ) -> Result<(Secret, WrappedKey), VaultError> {
        let inner = &self.inner;
        inner
            .call(Op::Generate, inner.keys.generate_data_key(context))
            .await
    }

    /// Unwraps a key made by [`Vault::new_secret`] (not cached: it is read at start).
    pub async fn open_secret(
        &self,
        context: &KeyContext,
        wrapped: &WrappedKey,
    ) -> Result<Secret, VaultError> {
        check_wrapped(wrapped)?;
        let inner = &self.inner;
        inner
            .call(Op::Decrypt, inner.keys.decrypt_data_key(context, wrapped))
            .await
    }

    /// `wrapped` wrapped under the current master key, or `None` if it already is; as
    /// [`Vault::rewrap`].
    pub async fn rewrap_key(
        &self,
        context: &KeyContext,
        wrapped: &WrappedKey,
    ) -> Result<Option<WrappedKey>, VaultError> {
        check_wrapped(wrapped)?;
        let inner = &self.inner;
        if inner.keys.is_current(wrapped).await? {
            return Ok(None);
        }
        let memo_key = BlobKey::new(context, wrapped);
        let (slot, _) = inner.rewraps.slot(&memo_key);
        let mut memo = slot.value.lock().await;
        if let Some(new) = memo.as_ref()
            && inner.keys.is_current(new).await?
        {
            Counters::bump(&inner.counters.rewrap_memo_hits);
            return Ok(Some(new.clone()));
        }
        match inner
            .call(Op::Rewrap, inner.keys.rewrap_data_key(context, wrapped))
            .await
        {
            Ok(new) => {
                *memo = Some(new.clone());
                Ok(Some(new))
            }
            Err(error) => {
                drop(memo);
                inner.rewraps.remove_if_empty(&memo_key, &slot);
                Err(error)
            }
        }
    }

    /// The key service.
    pub fn keys(&self) -> &Arc<dyn KeyService> {
        &self.inner.keys
    }

    /// The settings in force (within their bounds).
    pub fn config(&self) -> VaultConfig {
        self.inner.config
    }

    /// The counters so far.
    pub fn stats(&self) -> VaultStats {
        self.inner.counters.snapshot()
    }

    /// The counters as metrics: key-service calls by operation
    /// (`strongroom_key_service_requests_total{service,op}`) and failures, remote requests, and
    /// the data-key cache's hits, misses and evictions.
    pub fn metrics(&self) -> Vec<Metric> {
        let keys = &self.inner.keys;
        self.inner
            .counters
            .metrics(keys.name(), keys.requests_total())
    }

    /// Drops (and zeroizes) cached data keys past their age now; the sweeping task does this
    /// every [`CACHE_SWEEP_INTERVAL`].
    pub fn sweep(&self) {
        self.inner.sweep();
    }
}

impl Inner {
    async fn call<T>(
        &self,
        op: Op,
        call: impl Future<Output = Result<T, VaultError>>,
    ) -> Result<T, VaultError> {
        let result = call.await;
        self.counters.call(op, result.is_ok());
        result
    }

    /// The data key to seal with under `context`, and its wrapped form; a new one when there
    /// is none or it is past its age or uses. The slot stays locked while the key service
    /// answers, so concurrent seals wait for that one call.
    async fn sealing_key(
        &self,
        context: &KeyContext,
    ) -> Result<(Arc<Secret>, WrappedKey), VaultError> {
        let (slot, evicted) = self.sealing.slot(context);
        self.counters.evicted(Eviction::Entries, evicted);
        let mut current = slot.value.lock().await;
        let now = self.clock.now();
        if let Some(key) = current.as_mut() {
            let worn = key.uses >= self.config.data_key_uses_max;
            if !worn && !expired(key.created, now, self.config.data_key_age_max) {
                key.uses += 1;
                Counters::bump(&self.counters.seal_hits);
                return Ok((key.secret.clone(), key.wrapped.clone()));
            }
            current.take();
            let why = if worn { Eviction::Uses } else { Eviction::Age };
            self.counters.evicted(why, 1);
        }
        Counters::bump(&self.counters.seal_misses);
        let generated = self
            .call(Op::Generate, self.keys.generate_data_key(context))
            .await;
        let (secret, wrapped) = match generated {
            Ok(pair) => pair,
            Err(error) => {
                drop(current);
                self.sealing.remove_if_empty(context, &slot);
                return Err(error);
            }
        };
        let secret = Arc::new(secret);
        // What this key seals opens without an unwrap while it is cached.
        let (open_slot, evicted) = self.opening.slot(&BlobKey::new(context, &wrapped));
        self.counters.evicted(Eviction::Entries, evicted);
        if let Ok(mut open) = open_slot.value.try_lock() {
            *open = Some(OpenKey {
                secret: secret.clone(),
                created: now,
            });
        }
        *current = Some(SealKey {
            secret: secret.clone(),
            wrapped: wrapped.clone(),
            created: now,
            uses: 1,
        });
        Ok((secret, wrapped))
    }

    /// The unwrapped data key of `wrapped` under `context`, from the cache or the key service
    /// (one call however many tasks ask at once).
    async fn opening_key(
        &self,
        context: &KeyContext,
        wrapped: &WrappedKey,
    ) -> Result<Arc<Secret>, VaultError> {
        let key = BlobKey::new(context, wrapped);
        let (slot, evicted) = self.opening.slot(&key);
        self.counters.evicted(Eviction::Entries, evicted);
        let mut cached = slot.value.lock().await;
        let now = self.clock.now();
        if let Some(open) = cached.as_ref() {
            if !expired(open.created, now, self.config.data_key_age_max) {
                Counters::bump(&self.counters.open_hits);
                return Ok(open.secret.clone());
            }
            cached.take();
            self.counters.evicted(Eviction::Age, 1);
        }
        Counters::bump(&self.counters.open_misses);
        match self
            .call(Op::Decrypt, self.keys.decrypt_data_key(context, wrapped))
            .await
        {
            Ok(secret) => {
                let secret = Arc::new(secret);
                *cached = Some(OpenKey {
                    secret: secret.clone(),
                    created: now,
                });
                Ok(secret)
            }
            Err(error) => {
                drop(cached);
                self.opening.remove_if_empty(&key, &slot);
                Err(error)
            }
        }
    }

    fn sweep(&self) {
        let now = self.clock.now();
        let age = self.config.data_key_age_max;
        let sealing = self.sealing.sweep(|k| expired(k.created, now, age));
        let opening = self.opening.sweep(|k| expired(k.created, now, age));
        self.counters.evicted(Eviction::Age, sealing + opening);
    }
}

fn check_record_id(record_id: &str) -> Result<(), VaultError> {
    if record_id.is_empty() || record_id.len() > RECORD_ID_LEN_MAX {
        return Err(VaultError::Invalid(format!(
            "a record id of {} bytes; it must have 1 to {RECORD_ID_LEN_MAX}",
            record_id.len()
        )));
    }
    Ok(())
}

fn check_wrapped(wrapped: &WrappedKey) -> Result<(), VaultError> {
    if wrapped.blob.len() > WRAPPED_KEY_BYTES_MAX || wrapped.key_id.len() > KEY_ID_LEN_MAX {
        return Err(VaultError::Invalid(format!(
            "a wrapped key of {} bytes naming a key id of {} bytes; the most are \
             {WRAPPED_KEY_BYTES_MAX} and {KEY_ID_LEN_MAX}",
            wrapped.blob.len(),
            wrapped.key_id.len()
        )));
    }
    Ok(())
}
