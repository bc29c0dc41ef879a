//! The vault's settings: the bounds of the data-key cache, and the cryptoperiod check.
//!
//! The bounds themselves are in [`crate::limits`], with the reasons for their values.

use std::time::Duration;

use super::VaultError;
use crate::limits::{
    CRYPTOPERIOD_MAX, CRYPTOPERIOD_MIN, DATA_KEY_AGE_DEFAULT, DATA_KEY_AGE_MAX, DATA_KEY_AGE_MIN,
    DATA_KEY_CACHE_LEN_DEFAULT, DATA_KEY_CACHE_LEN_MAX, DATA_KEY_USES_DEFAULT, DATA_KEY_USES_MAX,
};

/// Bounds of the data-key cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaultConfig {
    /// Longest a data key is used for sealing, or kept unwrapped for opening, after it was
    /// generated or unwrapped.
    pub data_key_age_max: Duration,
    /// Most values sealed under one data key.
    pub data_key_uses_max: u64,
    /// Most data keys cached for sealing, and apart for opening.
    pub data_key_cache_max: usize,
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            data_key_age_max: DATA_KEY_AGE_DEFAULT,
            data_key_uses_max: DATA_KEY_USES_DEFAULT,
            data_key_cache_max: DATA_KEY_CACHE_LEN_DEFAULT,
        }
    }
}

impl VaultConfig {
    /// The settings if each is within its bounds; else which is not, and the bounds.
    pub fn validate(self) -> Result<VaultConfig, VaultError> {
        if !(DATA_KEY_AGE_MIN..=DATA_KEY_AGE_MAX).contains(&self.data_key_age_max) {
            return Err(VaultError::Invalid(format!(
                "data_key_age_max {:?} is outside {DATA_KEY_AGE_MIN:?} to {DATA_KEY_AGE_MAX:?}",
                self.data_key_age_max
            )));
        }
        if !(1..=DATA_KEY_USES_MAX).contains(&self.data_key_uses_max) {
            return Err(VaultError::Invalid(format!(
                "data_key_uses_max {} is outside 1 to {DATA_KEY_USES_MAX} (AES-GCM with random \
                 nonces allows at most 2^32 encryptions per key)",
                self.data_key_uses_max
            )));
        }
        if !(1..=DATA_KEY_CACHE_LEN_MAX).contains(&self.data_key_cache_max) {
            return Err(VaultError::Invalid(format!(
                "data_key_cache_max {} is outside 1 to {DATA_KEY_CACHE_LEN_MAX}",
                self.data_key_cache_max
            )));
        }
        Ok(self)
    }
}

/// `cryptoperiod` if it is within [`CRYPTOPERIOD_MIN`] and [`CRYPTOPERIOD_MAX`]: the setting
/// against which [`super::KeyStatus::overdue`] is judged.
pub fn validate_cryptoperiod(cryptoperiod: Duration) -> Result<Duration, VaultError> {
    if (CRYPTOPERIOD_MIN..=CRYPTOPERIOD_MAX).contains(&cryptoperiod) {
        Ok(cryptoperiod)
    } else {
        Err(VaultError::Invalid(format!(
            "cryptoperiod {cryptoperiod:?} is outside {CRYPTOPERIOD_MIN:?} to \
             {CRYPTOPERIOD_MAX:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::limits::CRYPTOPERIOD_DEFAULT;

    /// Expects `config` accepted (`ok`), or refused with a message naming the setting.
    fn check(config: VaultConfig, ok: bool) {
        match config.validate() {
            Ok(valid) => {
                assert!(ok, "{config:?} accepted");
                assert_eq!(valid, config);
            }
            Err(VaultError::Invalid(why)) => {
                assert!(!ok, "{config:?} refused: {why}");
                let named = [
                    "data_key_age_max",
                    "data_key_uses_max",
                    "data_key_cache_max",
                ]
                .iter()
                .any(|name| why.starts_with(name));
                assert!(named, "{why}");
            }
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_bound_is_checked_at_its_edges() {
        let base = VaultConfig::default();
        check(base, true);
        check(
            VaultConfig {
                data_key_age_max: DATA_KEY_AGE_MIN,
                data_key_uses_max: 1,
                data_key_cache_max: 1,
            },
            true,
        );
        check(
            VaultConfig {
                data_key_age_max: DATA_KEY_AGE_MAX,
                data_key_uses_max: DATA_KEY_USES_MAX,
                data_key_cache_max: DATA_KEY_CACHE_LEN_MAX,
            },
            true,
        );
        let age = |d| VaultConfig {
            data_key_age_max: d,
            ..base
        };
        check(age(DATA_KEY_AGE_MIN - Duration::from_millis(1)), false);
        check(age(DATA_KEY_AGE_MAX + Duration::from_millis(1)), false);
        let uses = |n| VaultConfig {
            data_key_uses_max: n,
            ..base
        };
        check(uses(0), false);
        check(uses(DATA_KEY_USES_MAX + 1), false);
        let len = |n| VaultConfig {
            data_key_cache_max: n,
            ..base
        };
        check(len(0), false);
        check(len(DATA_KEY_CACHE_LEN_MAX + 1), false);
        const { assert!(DATA_KEY_USES_MAX < 1 << 32, "under the random-nonce limit") };
    }

    #[test]
    fn cryptoperiod_bounds() {
        for ok in [CRYPTOPERIOD_MIN, CRYPTOPERIOD_DEFAULT, CRYPTOPERIOD_MAX] {
            assert_eq!(validate_cryptoperiod(ok), Ok(ok));
        }
        let second = Duration::from_secs(1);
        for bad in [
            Duration::ZERO,
            CRYPTOPERIOD_MIN - second,
            CRYPTOPERIOD_MAX + second,
        ] {
            let error = validate_cryptoperiod(bad).unwrap_err();
            assert!(matches!(&error, VaultError::Invalid(why) if why.starts_with("cryptoperiod")));
        }
    }
}
