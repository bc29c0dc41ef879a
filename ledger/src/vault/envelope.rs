//! AES-256-GCM under a [`Secret`], and the associated data that binds a sealed value to its
//! place.
//!
//! A value's associated data is a domain label, the key context (purpose, scope, tenant) and
//! the record id, each length-prefixed: a ciphertext moved to another record, tenant or purpose
//! does not decrypt, and no two places encode alike. The local keyring wraps data keys with the
//! same primitive under its own label ([`wrap_aad`]), so a wrapped key can never pass for a
//! sealed value or the other way round.
//!
//! Nonces are 96 random bits from the operating system for every encryption. That is safe for
//! at most 2^32 encryptions under one key (NIST SP 800-38D, 8.3); the data-key cache retires a
//! key long before (`crate::limits::DATA_KEY_USES_MAX`).

use aes_gcm::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, aead};
use zeroize::Zeroizing;

use super::VaultError;
use super::types::{KeyContext, NONCE_BYTES, Secret, TAG_BYTES, put_field};

/// The label of a sealed value's associated data; `v1` changes if the encoding does.
const VALUE_LABEL: &[u8] = b"strongroom/vault/value/v1";
/// The label of a locally wrapped data key's associated data.
const WRAP_LABEL: &[u8] = b"strongroom/vault/keyring-wrap/v1";

/// The associated data of a value sealed for `record_id` under `context`.
pub(crate) fn value_aad(context: &KeyContext, record_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(VALUE_LABEL.len() + record_id.len() + 64);
    put_field(&mut aad, VALUE_LABEL);
    context.encode(&mut aad);
    put_field(&mut aad, record_id.as_bytes());
    aad
}

/// The associated data of a data key wrapped by the local keyring `key_id` at `version` for
/// `context`.
pub(crate) fn wrap_aad(key_id: &str, version: u32, context: &KeyContext) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_LABEL.len() + key_id.len() + 64);
    put_field(&mut aad, WRAP_LABEL);
    put_field(&mut aad, key_id.as_bytes());
    put_field(&mut aad, &version.to_be_bytes());
    context.encode(&mut aad);
    aad
}

/// A fresh random nonce.
pub(crate) fn random_nonce() -> Result<[u8; NONCE_BYTES], VaultError> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce)
        .map_err(|e| VaultError::Unavailable(format!("the system random generator: {e}")))?;
    Ok(nonce)
}

fn cipher(key: &Secret) -> Result<Aes256Gcm, VaultError> {
    // The key schedule is zeroized when the cipher drops (aes-gcm's `zeroize` feature).
    Aes256Gcm::new_from_slice(key.bytes())
        .map_err(|_| VaultError::Invalid("an AES-256 key of the wrong length".into()))
}

/// Encrypts `plaintext` under `key` with `aad` and a fresh nonce: the nonce, and the ciphertext
/// with its tag.
pub(crate) fn encrypt(
    key: &Secret,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; NONCE_BYTES], Vec<u8>), VaultError> {
    let nonce = random_nonce()?;
    // `encrypt` sizes its buffer for the tag up front, so the plaintext copy it makes is
    // overwritten by the ciphertext in place, never left behind by a reallocation.
    let ciphertext = cipher(key)?
        .encrypt(
            &aead::Nonce::<Aes256Gcm>::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| VaultError::Invalid("a value too long for AES-GCM".into()))?;
    debug_assert_eq!(ciphertext.len(), plaintext.len() + TAG_BYTES);
    Ok((nonce, ciphertext))
}

/// Decrypts `ciphertext` (tag included) under `key` with `aad` and `nonce`; `None` when the
/// tag does not verify (anything altered, or another key, nonce or associated data).
pub(crate) fn decrypt(
    key: &Secret,
    aad: &[u8],
    nonce: &[u8; NONCE_BYTES],
    ciphertext: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
    let cipher = cipher(key)?;
    // Decrypted in a buffer that is zeroized on drop, capacity and all.
    let mut buffer = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    buffer.extend_from_slice(ciphertext);
    let nonce = aead::Nonce::<Aes256Gcm>::from(*nonce);
    Ok(cipher
        .decrypt_in_place(&nonce, aad, &mut *buffer)
        .ok()
        .map(|()| buffer))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ids::TenantId;
    use crate::vault::Purpose;

    fn zero_key() -> Secret {
        Secret::from_slice(&[0; 32]).unwrap()
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decrypt_agrees_with_the_gcm_specification() {
        // McGrew and Viega, "The Galois/Counter Mode of Operation", test cases 13 and 14:
        // AES-256, an all-zero key and nonce, no associated data.
        let nonce = [0u8; NONCE_BYTES];
        let empty = decrypt(
            &zero_key(),
            b"",
            &nonce,
            &hex("530f8afbc74536b9a963b4f1c4cb738b"),
        );
        assert_eq!(empty.unwrap().unwrap().as_slice(), b"");
        let sixteen = hex("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
        let zeros = decrypt(&zero_key(), b"", &nonce, &sixteen);
        assert_eq!(zeros.unwrap().unwrap().as_slice(), &[0u8; 16]);
        // Any associated data, and it no longer verifies.
        assert!(
            decrypt(&zero_key(), b"x", &nonce, &sixteen)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn encrypt_then_decrypt_with_the_same_associated_data_only() {
        let key = Secret::generate().unwrap();
        let (nonce, ciphertext) = encrypt(&key, b"aad", b"value").unwrap();
        assert_eq!(ciphertext.len(), 5 + TAG_BYTES);
        let opened = decrypt(&key, b"aad", &nonce, &ciphertext).unwrap().unwrap();
        assert_eq!(opened.as_slice(), b"value");
        assert!(
            decrypt(&key, b"aae", &nonce, &ciphertext)
                .unwrap()
                .is_none()
        );
        let other = Secret::generate().unwrap();
        assert!(
            decrypt(&other, b"aad", &nonce, &ciphertext)
                .unwrap()
                .is_none()
        );
        assert!(decrypt(&key, b"aad", &nonce, &[]).unwrap().is_none());
        let (again, _) = encrypt(&key, b"aad", b"value").unwrap();
        assert_ne!(again, nonce);
    }

    #[test]
    fn associated_data_tells_places_apart() {
        let tenant = |id: &str| KeyContext::tenant(TenantId::new(id).unwrap(), Purpose::CardData);
        let cases = [
            value_aad(&tenant("acme"), "r1"),
            value_aad(&tenant("acme"), "r2"),
            value_aad(&tenant("acm"), "er1"),
            value_aad(&tenant("acme"), "r"),
            value_aad(&KeyContext::deployment(Purpose::CardData), "r1"),
            value_aad(
                &KeyContext::tenant(TenantId::new("acme").unwrap(), Purpose::FingerprintKey),
                "r1",
            ),
            wrap_aad("kr-1", 1, &tenant("acme")),
            wrap_aad("kr-1", 2, &tenant("acme")),
            wrap_aad("kr-2", 1, &tenant("acme")),
            wrap_aad("kr-1", 1, &tenant("globex")),
        ];
        for (i, a) in cases.iter().enumerate() {
            for b in &cases[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
