//! AWS KMS as the key service, through aws-sdk-kms.
//!
//! | key service call | KMS |
//! |---|---|
//! | `generate_data_key` | `GenerateDataKey` (`AES_256`) with the encryption context |
//! | `decrypt_data_key` | `Decrypt` with the key id given explicitly and the encryption context |
//! | `rewrap_data_key` | `ReEncrypt` to the configured key, same context: the data key never leaves KMS |
//! | `rotate` | `RotateKeyOnDemand` on the configured key |
//! | `status`, `is_current` | `DescribeKey` and `ListKeyRotations`, cached for [`KmsConfig::status_ttl`] |
//!
//! The encryption context binds tenant and purpose ([`KeyContext::encryption_context`]); KMS
//! refuses a `Decrypt` under another context (`InvalidCiphertextException`, here
//! [`VaultError::KeyUnwrap`]).
//!
//! Which key may unwrap: a wrapped key names the ARN of the KMS key that wrapped it. Only the
//! configured key's ARN and the ARNs in [`KmsConfig::previous_key_ids`] are accepted; any other
//! is [`VaultError::UnknownKey`] before KMS is asked. To move to another KMS key, configure it
//! as `key_id`, list the old ARN in `previous_key_ids`, and run `keys rewrap`.
//!
//! Versions: KMS rotates key material behind one ARN and decrypts old ciphertexts itself. A
//! wrapped key records the rotations of its key known when it was wrapped (`key_version`, from
//! the last status) and when (`wrapped_at_ms`, for people); it is current when it names the
//! configured key and its version is at least the rotations KMS lists now. The count known at
//! wrapping is never above the true one, so a key wrapped before a rotation never looks
//! current; a key wrapped after a rotation this process had not yet heard of (before its first
//! status, or within [`KmsConfig::status_ttl`] of one) looks stale, and its rewrap is simply
//! done again. Wrapping times are not compared with KMS's rotation dates: a local clock ahead
//! of KMS's would make keys wrapped just before a rotation look current, never rewrapped.

mod call;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::{Blob, DateTime};
use aws_sdk_kms::types::{DataKeySpec, EncryptionAlgorithmSpec};
use zeroize::Zeroizing;

pub use call::{
    KMS_ATTEMPTS_DEFAULT, KMS_ATTEMPTS_MAX, KMS_BACKOFF_BASE, KMS_BACKOFF_CAP, KMS_RETRY_TOTAL_MAX,
    KmsRetry,
};

use super::VaultError;
use super::types::{KeyContext, KeyService, KeyStatus, Secret, WrappedKey, millis_since_epoch};
use crate::limits::{KEY_ID_LEN_MAX, WRAPPED_KEY_BYTES_MAX};

/// Default of [`KmsConfig::attempt_timeout`].
pub const KMS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default of [`KmsConfig::status_ttl`].
pub const KMS_STATUS_TTL: Duration = Duration::from_secs(60);
/// Rotations asked for per `ListKeyRotations` page.
pub const KMS_ROTATIONS_PAGE_LEN: i32 = 100;
/// Most `ListKeyRotations` pages read for one status (KMS allows few on-demand rotations and
/// one automatic rotation a day at most, so this is years of them).
pub const KMS_ROTATIONS_PAGES_MAX: usize = 20;
/// Most previous keys accepted for unwrapping.
pub const KMS_PREVIOUS_KEYS_MAX: usize = 16;

/// Where and how to reach KMS, and which key to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsConfig {
    /// The KMS key new data keys are wrapped under: key id, ARN or alias. An ARN avoids a
    /// `DescribeKey` before the first unwrap.
    pub key_id: String,
    /// ARNs of keys used before `key_id`, whose wrapped data keys still unwrap (and are rewrapped
    /// to `key_id` by `keys rewrap`).
    pub previous_key_ids: Vec<String>,
    /// AWS region; `None`: from the standard provider chain (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Endpoint override, for a local server (moto).
    pub endpoint: Option<String>,
    /// Longest wait for one attempt's answer.
    pub attempt_timeout: Duration,
    /// Retries of every request.
    pub retry: KmsRetry,
    /// How long the key's status (ARN, rotations) is trusted before `is_current` asks again.
    pub status_ttl: Duration,
}

impl Default for KmsConfig {
    fn default() -> Self {
        KmsConfig {
            key_id: String::new(),
            previous_key_ids: Vec::new(),
            region: None,
            endpoint: None,
            attempt_timeout: KMS_ATTEMPT_TIMEOUT,
            retry: KmsRetry::default(),
            status_ttl: KMS_STATUS_TTL,
        }
    }
}

impl KmsConfig {
    fn validate(&self) -> Result<(), VaultError> {
        let invalid = |why: String| Err(VaultError::Invalid(format!("KMS: {why}")));
        if self.key_id.is_empty() || self.key_id.len() > KEY_ID_LEN_MAX {
            return invalid(format!("the key id must have 1 to {KEY_ID_LEN_MAX} bytes"));
        }
        if self.previous_key_ids.len() > KMS_PREVIOUS_KEYS_MAX {
            return invalid(format!("at most {KMS_PREVIOUS_KEYS_MAX} previous keys"));
        }
        if let Some(bad) = self.previous_key_ids.iter().find(|id| !is_key_arn(id)) {
            return invalid(format!(
                "previous key {bad:?} is not a key ARN (arn:...:key/...)"
            ));
        }
        if !(1..=KMS_ATTEMPTS_MAX).contains(&self.retry.attempts_max) {
            return invalid(format!("attempts must be 1 to {KMS_ATTEMPTS_MAX}"));
        }
        if self.attempt_timeout.is_zero() {
            return invalid("the attempt timeout is zero".into());
        }
        Ok(())
    }
}

fn is_key_arn(id: &str) -> bool {
    id.starts_with("arn:") && id.contains(":key/")
}

/// What `DescribeKey` and `ListKeyRotations` said, and when.
#[derive(Clone, Debug)]
struct KeyState {
    arn: String,
    created_ms: u64,
    /// Rotation dates, oldest first.
    rotations_ms: Vec<u64>,
    fetched: Instant,
}

impl KeyState {
    fn current_since_ms(&self) -> u64 {
        self.rotations_ms.last().copied().unwrap_or(self.created_ms)
    }

    fn rotation_count(&self) -> u32 {
        u32::try_from(self.rotations_ms.len()).unwrap_or(u32::MAX)
    }
}

/// The KMS key service.
#[derive(Debug)]
pub struct KmsKeyService {
    client: Client,
    config: KmsConfig,
    requests: AtomicU64,
    /// The configured key's ARN once known (from the configuration, an answer, or the status).
    arn: RwLock<Option<String>>,
    /// The cached status; its async lock makes one refresh serve every waiting caller.
    state: tokio::sync::Mutex<Option<KeyState>>,
    /// The configured key's ARN and its rotations at the last status: the version of keys
    /// wrapped now. Apart from `state` so that wrapping never waits for (or misses it during)
    /// a refresh.
    rotations: Mutex<Option<(String, u32)>>,
}

impl KmsKeyService {
    /// Connects with the standard AWS provider chain for credentials (and region, unless
    /// configured). Does not call KMS: the first data key or `status` does.
    pub async fn connect(config: KmsConfig) -> Result<KmsKeyService, VaultError> {
        config.validate()?;
        let shared = crate::aws::sdk_config(
            config.region.as_deref(),
            config.endpoint.as_deref(),
            config.attempt_timeout,
        )
        .await
        .ok_or_else(|| {
            VaultError::Invalid("KMS: no AWS region: set kms_region or AWS_REGION".into())
        })?;
        let sdk = aws_sdk_kms::config::Builder::from(&shared).build();
        let arn = is_key_arn(&config.key_id).then(|| config.key_id.clone());
        Ok(KmsKeyService {
            client: Client::from_conf(sdk),
            config,
            requests: AtomicU64::new(0),
            arn: RwLock::new(arn),
            state: tokio::sync::Mutex::new(None),
            rotations: Mutex::new(None),
        })
    }

    fn known_arn(&self) -> Option<String> {
        self.arn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn learn_arn(&self, arn: &str) {
        let mut known = self.arn.write().unwrap_or_else(PoisonError::into_inner);
        if known.as_deref() != Some(arn) {
            *known = Some(arn.to_owned());
        }
    }

    /// Whether a wrapped key naming `key_id` may be unwrapped here: the configured key or a
    /// previous one. Asks KMS for the configured key's ARN (once per status TTL) only when it
    /// is not known yet or the key named is none of these.
    async fn check_key(&self, wrapped: &WrappedKey) -> Result<(), VaultError> {
        let accepted = |arn: Option<String>| {
            arn.as_deref() == Some(wrapped.key_id.as_str())
                || self.config.previous_key_ids.contains(&wrapped.key_id)
        };
        if accepted(self.known_arn()) || accepted(Some(self.state(false).await?.arn)) {
            return Ok(());
        }
        Err(VaultError::UnknownKey {
            key_id: wrapped.key_id.clone(),
            version: wrapped.key_version,
        })
    }

    /// The key's status, from the cache unless it is older than the TTL or `fresh` is asked.
    async fn state(&self, fresh: bool) -> Result<KeyState, VaultError> {
        let mut cached = self.state.lock().await;
        if let Some(state) = cached.as_ref()
            && !fresh
            && state.fetched.elapsed() < self.config.status_ttl
        {
            return Ok(state.clone());
        }
        let state = self.fetch_state().await?;
        self.learn_arn(&state.arn);
        *self
            .rotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            Some((state.arn.clone(), state.rotation_count()));
        *cached = Some(state.clone());
        Ok(state)
    }

    async fn fetch_state(&self) -> Result<KeyState, VaultError> {
        let described =
            call::with_retries("DescribeKey", &self.config.retry, &self.requests, || {
                self.client
                    .describe_key()
                    .key_id(self.config.key_id.clone())
                    .send()
            })
            .await?;
        let metadata = described
            .key_metadata()
            .ok_or_else(|| VaultError::Unavailable("KMS DescribeKey: no key metadata".into()))?;
        let arn = metadata
            .arn()
            .ok_or_else(|| VaultError::Unavailable("KMS DescribeKey: no ARN".into()))?
            .to_owned();
        let created_ms = metadata.creation_date().map_or(0, millis);
        let mut rotations_ms = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..KMS_ROTATIONS_PAGES_MAX {
            let page = call::with_retries(
                "ListKeyRotations",
                &self.config.retry,
                &self.requests,
                || {
                    self.client
                        .list_key_rotations()
                        .key_id(arn.clone())
                        .limit(KMS_ROTATIONS_PAGE_LEN)
                        .set_marker(marker.clone())
                        .send()
                },
            )
            .await?;
            rotations_ms.extend(
                page.rotations()
                    .iter()
                    .filter_map(|r| r.rotation_date().map(millis)),
            );
            marker = page.next_marker().map(str::to_owned);
            if !page.truncated() || marker.is_none() {
                break;
            }
        }
        rotations_ms.sort_unstable();
        Ok(KeyState {
            arn,
            created_ms,
            rotations_ms,
            fetched: Instant::now(),
        })
    }

    /// The rotations of key `arn` known without asking KMS: 0 before the first status, or if
    /// the last status was of another key (an alias moved). Never more than KMS lists.
    fn rotations_known(&self, arn: &str) -> u32 {
        match &*self
            .rotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some((known, count)) if known == arn => *count,
            _ => 0,
        }
    }

    fn wrapped(&self, arn: Option<&str>, blob: Option<Blob>) -> Result<WrappedKey, VaultError> {
        let arn = arn.ok_or_else(|| VaultError::Unavailable("KMS: no key id answered".into()))?;
        let blob = blob
            .map(Blob::into_inner)
            .ok_or_else(|| VaultError::Unavailable("KMS: no ciphertext answered".into()))?;
        if blob.len() > WRAPPED_KEY_BYTES_MAX {
            return Err(VaultError::Unavailable(format!(
                "KMS: a wrapped key of {} bytes, over {WRAPPED_KEY_BYTES_MAX}",
                blob.len()
            )));
        }
        self.learn_arn(arn);
        Ok(WrappedKey {
            key_id: arn.to_owned(),
            key_version: self.rotations_known(arn),
            wrapped_at_ms: millis_since_epoch(SystemTime::now()),
            blob,
        })
    }
}

fn millis(date: &DateTime) -> u64 {
    date.to_millis()
        .ok()
        .and_then(|ms| u64::try_from(ms).ok())
        .unwrap_or(0)
}

fn context_map(context: &KeyContext) -> HashMap<String, String> {
    context
        .encryption_context()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// The plaintext key of an answer, copied into a [`Secret`]; the SDK's copy that we own is
/// zeroized (its response buffers are out of our reach).
fn secret_of(plaintext: Option<Blob>) -> Result<Secret, VaultError> {
    let plain = Zeroizing::new(
        plaintext
            .map(Blob::into_inner)
            .ok_or_else(|| VaultError::Unavailable("KMS: no plaintext answered".into()))?,
    );
    Secret::from_slice(&plain)
}

#[async_trait]
impl KeyService for KmsKeyService {
    fn name(&self) -> &'static str {
        "kms"
    }

    async fn generate_data_key(
        &self,
        context: &KeyContext,
    ) -> Result<(Secret, WrappedKey), VaultError> {
        let request = self
            .client
            .generate_data_key()
            .key_id(self.config.key_id.clone())
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context_map(context)));
        let mut answer = call::with_retries(
            "GenerateDataKey",
            &self.config.retry,
            &self.requests,
            || request.clone().send(),
        )
        .await?;
        let secret = secret_of(answer.plaintext.take())?;
        let blob = answer.ciphertext_blob.take();
        let wrapped = self.wrapped(answer.key_id(), blob)?;
        Ok((secret, wrapped))
    }

    async fn decrypt_data_key(
        &self,
        context: &KeyContext,
        wrapped: &WrappedKey,
    ) -> Result<Secret, VaultError> {
        self.check_key(wrapped).await?;
        let request = self
            .client
            .decrypt()
            .key_id(wrapped.key_id.clone())
            .ciphertext_blob(Blob::new(wrapped.blob.clone()))
            .encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
            .set_encryption_context(Some(context_map(context)));
        let mut answer = call::with_retries("Decrypt", &self.config.retry, &self.requests, || {
            request.clone().send()
        })
        .await?;
        secret_of(answer.plaintext.take())
    }

    async fn rewrap_data_key(
        &self,
        context: &KeyContext,
        wrapped: &WrappedKey,
    ) -> Result<WrappedKey, VaultError> {
        self.check_key(wrapped).await?;
        let encryption_context = context_map(context);
        let request = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(wrapped.blob.clone()))
            .source_key_id(wrapped.key_id.clone())
            .source_encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
            .set_source_encryption_context(Some(encryption_context.clone()))
            .destination_key_id(self.config.key_id.clone())
            .destination_encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
            .set_destination_encryption_context(Some(encryption_context));
        let mut answer =
            call::with_retries("ReEncrypt", &self.config.retry, &self.requests, || {
                request.clone().send()
            })
            .await?;
        let blob = answer.ciphertext_blob.take();
        self.wrapped(answer.key_id(), blob)
    }

    async fn is_current(&self, wrapped: &WrappedKey) -> Result<bool, VaultError> {
        let state = self.state(false).await?;
        Ok(wrapped.key_id == state.arn && wrapped.key_version >= state.rotation_count())
    }

    async fn rotate(&self) -> Result<KeyStatus, VaultError> {
        call::with_retries(
            "RotateKeyOnDemand",
            &self.config.retry,
            &self.requests,
            || {
                self.client
                    .rotate_key_on_demand()
                    .key_id(self.config.key_id.clone())
                    .send()
            },
        )
        .await?;
        self.status().await
    }

    async fn status(&self) -> Result<KeyStatus, VaultError> {
        let state = self.state(true).await?;
        let time = super::types::time_from_millis;
        let mut versions = vec![(0, time(state.created_ms))];
        versions.extend(
            state
                .rotations_ms
                .iter()
                .zip(1u32..)
                .map(|(ms, version)| (version, time(*ms))),
        );
        Ok(KeyStatus {
            service: "kms",
            key_id: state.arn.clone(),
            version: state.rotation_count(),
            current_since: time(state.current_since_ms()),
            versions,
        })
    }

    fn requests_total(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }
}
