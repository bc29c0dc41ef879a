//! The vault's vocabulary: what a key is for ([`KeyContext`]), what is stored ([`WrappedKey`],
//! [`Sealed`]), the plaintext key in memory ([`Secret`]), and the interface every key service
//! implements ([`KeyService`]).

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::VaultError;
use crate::ids::TenantId;

/// Bytes of a data key (and of every key the vault holds): AES-256.
pub const KEY_BYTES: usize = 32;
/// Bytes of an AES-GCM nonce: 96 bits, drawn at random for every encryption.
pub const NONCE_BYTES: usize = 12;
/// Bytes of an AES-GCM tag, at the end of every ciphertext.
pub const TAG_BYTES: usize = 16;

/// Name of the KMS encryption-context pair that binds the tenant (`*` for the deployment).
pub const KMS_CONTEXT_TENANT: &str = "strongroom:tenant";
/// Name of the KMS encryption-context pair that binds the purpose.
pub const KMS_CONTEXT_PURPOSE: &str = "strongroom:purpose";
/// The tenant value of a deployment-wide key's encryption context. Tenant ids are lowercase
/// letters, digits, `-` and `_`, so no tenant can be `*`.
pub const KMS_CONTEXT_DEPLOYMENT: &str = "*";

/// What a data key is for. A key wrapped for one purpose does not unwrap for another.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Purpose {
    /// Card data: PANs and what is stored with them.
    CardData,
    /// The key of the PAN fingerprints (a keyed HMAC, PCI DSS 3.5.1.1).
    FingerprintKey,
}

impl Purpose {
    /// The purpose as it appears in encryption contexts and associated data.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::CardData => "card-data",
            Purpose::FingerprintKey => "fingerprint-key",
        }
    }
}

/// Whose a data key is: one tenant's, or the deployment's (secrets every tenant shares, such as
/// the fingerprint key).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Scope {
    /// One tenant's.
    Tenant(TenantId),
    /// The whole deployment's.
    Deployment,
}

/// What a data key is bound to: its scope and purpose. It is the KMS encryption context and
/// part of the local keyring's associated data, so a data key wrapped under one context does
/// not unwrap under another.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct KeyContext {
    /// Whose key.
    pub scope: Scope,
    /// What for.
    pub purpose: Purpose,
}

impl KeyContext {
    /// A tenant's key for a purpose.
    pub fn tenant(tenant: TenantId, purpose: Purpose) -> KeyContext {
        KeyContext {
            scope: Scope::Tenant(tenant),
            purpose,
        }
    }

    /// The deployment's key for a purpose.
    pub fn deployment(purpose: Purpose) -> KeyContext {
        KeyContext {
            scope: Scope::Deployment,
            purpose,
        }
    }

    /// The KMS encryption context: `strongroom:tenant` (the tenant id, or `*` for the
    /// deployment) and `strongroom:purpose`.
    pub fn encryption_context(&self) -> [(&'static str, String); 2] {
        let tenant = match &self.scope {
            Scope::Tenant(tenant) => tenant.as_str().to_owned(),
            Scope::Deployment => KMS_CONTEXT_DEPLOYMENT.to_owned(),
        };
        [
            (KMS_CONTEXT_TENANT, tenant),
            (KMS_CONTEXT_PURPOSE, self.purpose.as_str().to_owned()),
        ]
    }

    /// Appends the context's canonical encoding to associated data: every field
    /// length-prefixed, so that no two contexts encode alike.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        put_field(out, self.purpose.as_str().as_bytes());
        match &self.scope {
            Scope::Tenant(tenant) => {
                put_field(out, b"tenant");
                put_field(out, tenant.as_str().as_bytes());
            }
            Scope::Deployment => put_field(out, b"deployment"),
        }
    }
}

impl fmt::Display for KeyContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Scope::Tenant(tenant) => write!(f, "{} of tenant {tenant}", self.purpose.as_str()),
            Scope::Deployment => write!(f, "{} of the deployment", self.purpose.as_str()),
        }
    }
}

/// Appends one length-prefixed field (a 32-bit big-endian length, then the bytes). Every field
/// is bounded far below 4 GiB (record ids, key ids, tenant ids).
pub(crate) fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A data key as stored: wrapped (encrypted) by a key service under a master key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The master key: the local keyring's id, or the KMS key's ARN.
    pub key_id: String,
    /// The master key's version: the keyring's version, or the KMS key's rotations known when
    /// the data key was wrapped.
    pub key_version: u32,
    /// When the data key was wrapped, in milliseconds since the Unix epoch.
    pub wrapped_at_ms: u64,
    /// The wrapped data key, opaque.
    pub blob: Vec<u8>,
}

/// A sealed value as stored: the wrapped data key, the nonce and the ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The data key the value is encrypted under.
    pub key: WrappedKey,
    /// The AES-GCM nonce, random.
    pub nonce: [u8; NONCE_BYTES],
    /// The ciphertext, its 16-byte GCM tag at the end.
    pub ciphertext: Vec<u8>,
}

/// A plaintext 256-bit key in memory, zeroized on drop. Not `Clone`: the vault shares one
/// behind an `Arc`, so each key exists once in memory.
pub struct Secret(Zeroizing<[u8; KEY_BYTES]>);

impl Secret {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<Secret, VaultError> {
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        getrandom::fill(bytes.as_mut_slice())
            .map_err(|e| VaultError::Unavailable(format!("the system random generator: {e}")))?;
        Ok(Secret(bytes))
    }

    /// A copy of `bytes`, which must be [`KEY_BYTES`] long. The caller zeroizes its own copy.
    pub fn from_slice(bytes: &[u8]) -> Result<Secret, VaultError> {
        let array: &[u8; KEY_BYTES] = bytes.try_into().map_err(|_| {
            VaultError::Invalid(format!(
                "a key of {} bytes; keys are {KEY_BYTES}",
                bytes.len()
            ))
        })?;
        Ok(Secret(Zeroizing::new(*array)))
    }

    /// The key's bytes.
    pub fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// A master key's state, for `keys status` and the start-up log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    /// The key service: `local` or `kms`.
    pub service: &'static str,
    /// The master key: the keyring's id or the KMS key's ARN.
    pub key_id: String,
    /// The current version (the keyring's; for KMS, the rotations so far).
    pub version: u32,
    /// When the current key material came into use.
    pub current_since: SystemTime,
    /// Every version known and when it came into use, oldest first.
    pub versions: Vec<(u32, SystemTime)>,
}

impl KeyStatus {
    /// How long the current key material has been in use at `now`.
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.current_since)
            .unwrap_or(Duration::ZERO)
    }

    /// Whether the current key material is older than the cryptoperiod at `now`: time to
    /// rotate.
    pub fn overdue(&self, now: SystemTime, cryptoperiod: Duration) -> bool {
        self.age(now) > cryptoperiod
    }
}

/// A key service: generates data keys and wraps them under a master key it keeps, unwraps
/// them again, and rotates the master key. Every wrap is bound to a [`KeyContext`].
#[async_trait]
pub trait KeyService: Send + Sync + fmt::Debug + 'static {
    /// `local` or `kms`.
    fn name(&self) -> &'static str;

    /// A new random data key, and the same wrapped under the current master key for `context`.
    async fn generate_data_key(
        &self,
        context: &KeyContext,
    ) -> Result<(Secret, WrappedKey), VaultError>;

    /// Unwraps a data key wrapped for `context`. A key wrapped for another context, under
    /// another key or altered is [`VaultError::KeyUnwrap`]; a master key or version this
    /// service does not have is [`VaultError::UnknownKey`].
    async fn decrypt_data_key(
        &self,
        context: &KeyContext,
        wrapped: &WrappedKey,
    ) -> Result<Secret, VaultError>;

    /// The same data key wrapped under the current master key. KMS: `ReEncrypt`, the plaintext
    /// never leaves KMS; local: unwrapped and wrapped again in memory, zeroized.
    async fn rewrap_data_key(
        &self,
        context: &KeyContext,
        wrapped: &WrappedKey,
    ) -> Result<WrappedKey, VaultError>;

    /// Whether `wrapped` is under the current master key and version.
    async fn is_current(&self, wrapped: &WrappedKey) -> Result<bool, VaultError>;

    /// A new master key version (local) or new key material (KMS); later data keys are wrapped
    /// under it, earlier ones still unwrap.
    async fn rotate(&self) -> Result<KeyStatus, VaultError>;

    /// The master key's state.
    async fn status(&self) -> Result<KeyStatus, VaultError>;

    /// Requests made to a remote key service so far (0 for the local keyring).
    fn requests_total(&self) -> u64;
}

/// Milliseconds since the Unix epoch of `time` (0 before it).
pub(crate) fn millis_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The instant `ms` milliseconds after the Unix epoch.
pub(crate) fn time_from_millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn status(current_since: SystemTime) -> KeyStatus {
        KeyStatus {
            service: "local",
            key_id: "kr-test".into(),
            version: 1,
            current_since,
            versions: vec![(1, current_since)],
        }
    }

    #[test]
    fn age_and_overdue_are_measured_from_the_current_key() {
        let since = time_from_millis(1_700_000_000_000);
        let key = status(since);
        let year = Duration::from_secs(365 * 24 * 3600);
        let check = |after: Duration, age: Duration, overdue: bool| {
            let now = since + after;
            assert_eq!(key.age(now), age, "{after:?}");
            assert_eq!(key.overdue(now, year), overdue, "{after:?}");
        };
        check(Duration::ZERO, Duration::ZERO, false);
        check(Duration::from_secs(10), Duration::from_secs(10), false);
        check(year, year, false);
        check(
            year + Duration::from_millis(1),
            year + Duration::from_millis(1),
            true,
        );
        // A clock behind the key's creation: age zero, not overdue.
        let before = since - Duration::from_secs(5);
        assert_eq!(key.age(before), Duration::ZERO);
        assert!(!key.overdue(before, Duration::ZERO));
        assert!(key.overdue(since + Duration::from_millis(1), Duration::ZERO));
    }

    #[test]
    fn times_round_trip_through_milliseconds() {
        assert_eq!(millis_since_epoch(time_from_millis(1_234)), 1_234);
        assert_eq!(
            millis_since_epoch(SystemTime::UNIX_EPOCH - Duration::from_secs(1)),
            0
        );
    }

    #[test]
    fn the_encryption_context_names_tenant_and_purpose() {
        let acme = TenantId::new("acme").unwrap();
        let context = KeyContext::tenant(acme, Purpose::CardData);
        assert_eq!(
            context.encryption_context(),
            [
                (KMS_CONTEXT_TENANT, "acme".to_owned()),
                (KMS_CONTEXT_PURPOSE, "card-data".to_owned()),
            ]
        );
        let deployment = KeyContext::deployment(Purpose::FingerprintKey);
        assert_eq!(
            deployment.encryption_context(),
            [
                (KMS_CONTEXT_TENANT, "*".to_owned()),
                (KMS_CONTEXT_PURPOSE, "fingerprint-key".to_owned()),
            ]
        );
        assert!(TenantId::new(KMS_CONTEXT_DEPLOYMENT).is_none());
        assert_eq!(context.to_string(), "card-data of tenant acme");
        assert_eq!(deployment.to_string(), "fingerprint-key of the deployment");
    }

    #[test]
    fn no_two_contexts_encode_alike() {
        let tenant = |id: &str| Scope::Tenant(TenantId::new(id).unwrap());
        let scopes = [
            tenant("acme"),
            tenant("acm"),
            tenant("deployment"),
            tenant("tenant"),
            Scope::Deployment,
        ];
        let mut seen = std::collections::HashSet::new();
        for scope in &scopes {
            for purpose in [Purpose::CardData, Purpose::FingerprintKey] {
                let mut encoded = Vec::new();
                let context = KeyContext {
                    scope: scope.clone(),
                    purpose,
                };
                context.encode(&mut encoded);
                assert!(seen.insert(encoded), "{context}");
            }
        }
    }

    #[test]
    fn secrets_are_checked_for_length_and_never_printed() {
        assert!(Secret::from_slice(&[1; KEY_BYTES]).is_ok());
        for len in [0, KEY_BYTES - 1, KEY_BYTES + 1] {
            let error = Secret::from_slice(&vec![1; len]).unwrap_err();
            assert!(matches!(error, VaultError::Invalid(_)), "{len}");
        }
        let secret = Secret::from_slice(&[0xab; KEY_BYTES]).unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(redacted)");
        let a = Secret::generate().unwrap();
        let b = Secret::generate().unwrap();
        assert_ne!(a.bytes(), b.bytes());
    }
}
