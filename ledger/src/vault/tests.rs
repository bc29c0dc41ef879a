//! The vault over the local keyring on a temporary file, time moved by hand with a
//! [`ManualClock`]: sealing and opening ([`round_trip`]), every kind of tampering and the
//! precise error it gets ([`tamper`]), the data-key cache's bounds ([`cache`]), rotation and
//! rewrapping ([`rewrap`]).
//!
//! Vaults are built off the runtime ([`Fixture::vault`]), so without the sweeping task: each
//! test decides when keys are swept, and the counters it checks are its own.

#![allow(clippy::unwrap_used)]

mod cache;
mod rewrap;
mod round_trip;
mod tamper;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::ids::TenantId;
use crate::time::{ManualClock, Timestamp};

/// Where the manual clock starts: 2023-11-14T22:13:20Z.
const START_US: i64 = 1_700_000_000_000_000;

/// A keyring on a temporary file, and a clock.
struct Fixture {
    keyring: Arc<LocalKeyring>,
    clock: ManualClock,
    // Dropped last: removes the keyring file.
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Arc::new(LocalKeyring::init(&dir.path().join("keyring")).unwrap());
        Fixture {
            keyring,
            clock: ManualClock::new(Timestamp::from_micros(START_US)),
            _dir: dir,
        }
    }

    /// A vault with the default settings over the keyring.
    fn vault(&self) -> Vault {
        self.vault_with(VaultConfig::default())
    }

    /// A vault over the keyring.
    fn vault_with(&self, config: VaultConfig) -> Vault {
        quiet_vault(self.keyring.clone(), config, &self.clock)
    }

    /// Another keyring instance on the same file, as another process would open it.
    fn reopen(&self) -> Arc<LocalKeyring> {
        Arc::new(LocalKeyring::open(self.keyring.path()).unwrap())
    }
}

/// A vault built on a thread outside any runtime, so that it has no sweeping task.
fn quiet_vault(keys: Arc<dyn KeyService>, config: VaultConfig, clock: &ManualClock) -> Vault {
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(tokio::runtime::Handle::try_current().is_err());
            Vault::with_clock(keys, config, clock)
        })
        .join()
        .unwrap()
    })
}

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

/// Card data of tenant `id`.
fn cards(id: &str) -> KeyContext {
    KeyContext::tenant(tenant(id), Purpose::CardData)
}

/// Settings with these bounds and the defaults otherwise.
fn config(age: Duration, uses: u64, entries: usize) -> VaultConfig {
    VaultConfig {
        data_key_age_max: age,
        data_key_uses_max: uses,
        data_key_cache_max: entries,
    }
}

/// A key service over another that fails the next calls it is told to, and can answer slowly:
/// to see what the vault does with a failure, and how many calls concurrent callers make.
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn KeyService>,
    failures: AtomicU32,
    delay: Duration,
}

impl Faulty {
    fn new(inner: Arc<dyn KeyService>, delay: Duration) -> Arc<Faulty> {
        Arc::new(Faulty {
            inner,
            failures: AtomicU32::new(0),
            delay,
        })
    }

    /// The next `n` calls fail with [`VaultError::Unavailable`].
    fn fail_next(&self, n: u32) {
        self.failures.store(n, Ordering::SeqCst);
    }

    async fn enter(&self) -> Result<(), VaultError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(VaultError::Unavailable("injected failure".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl KeyService for Faulty {
    fn name(&self) -> &'static str {
        "faulty"
    }

    async fn generate_data_key(
        &self,
        context: &KeyContext,
    ) -> Result<(Secret, WrappedKey), VaultError> {
        self.enter().await?;
        self.inner.generate_data_key(context).await
    }

    async fn decrypt_data_key(
        &self,
        context: &KeyContext,
        wrapped: &WrappedKey,
    ) -> Result<Secret, VaultError> {
        self.enter().await?;
        self.inner.decrypt_data_key(context, wrapped).await
    }

    async fn rewrap_data_key(
        &self,
        context: &KeyContext,
        wrapped: &WrappedKey,
    ) -> Result<WrappedKey, VaultError> {
        self.enter().await?;
        self.inner.rewrap_data_key(context, wrapped).await
    }

    async fn is_current(&self, wrapped: &WrappedKey) -> Result<bool, VaultError> {
        self.inner.is_current(wrapped).await
    }

    async fn rotate(&self) -> Result<KeyStatus, VaultError> {
        self.inner.rotate().await
    }

    async fn status(&self) -> Result<KeyStatus, VaultError> {
        self.inner.status().await
    }

    fn requests_total(&self) -> u64 {
        self.inner.requests_total()
    }
}
