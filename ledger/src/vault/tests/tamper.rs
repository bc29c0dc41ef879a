//! What an altered, moved or foreign sealed value gets: each failure is one precise
//! [`VaultError`], never a value, and never a panic.
//!
//! - the value's ciphertext, tag or nonce altered, or the value moved to another record, or
//!   stored with another value's data key: [`VaultError::Decrypt`];
//! - the wrapped data key altered, or opened for another tenant or purpose:
//!   [`VaultError::KeyUnwrap`];
//! - a data key wrapped by another keyring, or naming a version the keyring does not have:
//!   [`VaultError::UnknownKey`].

use super::*;
use crate::limits::WRAPPED_KEY_BYTES_MAX;

/// Opens `sealed` as record `record_id` of `context` and expects `expected`.
async fn check(
    vault: &Vault,
    context: &KeyContext,
    record_id: &str,
    sealed: &Sealed,
    expected: VaultError,
) {
    let opened = vault.open(context, record_id, sealed).await;
    assert_eq!(opened.unwrap_err(), expected, "{context}, {record_id}");
}

/// `sealed` changed by `alter`.
fn altered(sealed: &Sealed, alter: impl FnOnce(&mut Sealed)) -> Sealed {
    let mut copy = sealed.clone();
    alter(&mut copy);
    copy
}

#[tokio::test]
async fn every_altered_byte_of_the_ciphertext_tag_or_nonce_is_decrypt() {
    let f = Fixture::new();
    let vault = f.vault();
    let acme = cards("acme");
    let sealed = vault.seal(&acme, "r", b"12345").await.unwrap();
    // The last TAG_BYTES are the tag.
    for i in 0..sealed.ciphertext.len() {
        let bad = altered(&sealed, |s| s.ciphertext[i] ^= 0x01);
        check(&vault, &acme, "r", &bad, VaultError::Decrypt).await;
    }
    for i in 0..NONCE_BYTES {
        let bad = altered(&sealed, |s| s.nonce[i] ^= 0x80);
        check(&vault, &acme, "r", &bad, VaultError::Decrypt).await;
    }
    let cut = altered(&sealed, |s| {
        s.ciphertext.pop();
    });
    check(&vault, &acme, "r", &cut, VaultError::Decrypt).await;
    let extended = altered(&sealed, |s| s.ciphertext.push(0));
    check(&vault, &acme, "r", &extended, VaultError::Decrypt).await;
    for len in [0, TAG_BYTES - 1, TAG_BYTES] {
        let short = altered(&sealed, |s| s.ciphertext.truncate(len));
        check(&vault, &acme, "r", &short, VaultError::Decrypt).await;
    }
    // Nothing altered still opens, from the cache that none of the above disturbed.
    assert_eq!(&**vault.open(&acme, "r", &sealed).await.unwrap(), b"12345");
    assert_eq!(vault.stats().decrypt_calls, 0);
}

#[tokio::test]
async fn a_value_moved_to_another_record_is_decrypt() {
    let f = Fixture::new();
    let acme = cards("acme");
    let sealed = f.vault().seal(&acme, "card-1", b"4111").await.unwrap();
    // A fresh vault, so the data key is unwrapped, not found cached.
    let vault = f.vault();
    for other in ["card-2", "card-10", "card-", "Card-1", "card-1 "] {
        check(&vault, &acme, other, &sealed, VaultError::Decrypt).await;
    }
    assert_eq!(
        &**vault.open(&acme, "card-1", &sealed).await.unwrap(),
        b"4111"
    );
}

#[tokio::test]
async fn a_value_stored_with_another_values_data_key_is_decrypt() {
    let f = Fixture::new();
    // One value per data key.
    let vault = f.vault_with(config(Duration::from_secs(60), 1, 16));
    let acme = cards("acme");
    let a = vault.seal(&acme, "r", b"value a").await.unwrap();
    let b = vault.seal(&acme, "r", b"value b").await.unwrap();
    assert_ne!(a.key, b.key);
    let swapped = altered(&a, |s| s.key = b.key.clone());
    check(&vault, &acme, "r", &swapped, VaultError::Decrypt).await;
    check(&f.vault(), &acme, "r", &swapped, VaultError::Decrypt).await;
}

#[tokio::test]
async fn every_altered_byte_of_the_wrapped_key_is_key_unwrap() {
    let f = Fixture::new();
    let vault = f.vault();
    let acme = cards("acme");
    let sealed = vault.seal(&acme, "r", b"4111").await.unwrap();
    // Nonce, encrypted key, tag.
    assert_eq!(sealed.key.blob.len(), NONCE_BYTES + KEY_BYTES + TAG_BYTES);
    // The right data key is cached meanwhile: an altered blob must not find it.
    for i in 0..sealed.key.blob.len() {
        let bad = altered(&sealed, |s| s.key.blob[i] ^= 0x01);
        check(&vault, &acme, "r", &bad, VaultError::KeyUnwrap).await;
    }
    for len in [0, 1, NONCE_BYTES, sealed.key.blob.len() - 1] {
        let cut = altered(&sealed, |s| s.key.blob.truncate(len));
        check(&vault, &acme, "r", &cut, VaultError::KeyUnwrap).await;
    }
    let extended = altered(&sealed, |s| s.key.blob.push(0));
    check(&vault, &acme, "r", &extended, VaultError::KeyUnwrap).await;
    let huge = altered(&sealed, |s| s.key.blob.resize(WRAPPED_KEY_BYTES_MAX + 1, 0));
    let opened = vault.open(&acme, "r", &huge).await;
    assert!(matches!(opened, Err(VaultError::Invalid(_))), "{opened:?}");
    // Failures are not cached: the good one still opens, and the bad ones took no room.
    assert_eq!(&**vault.open(&acme, "r", &sealed).await.unwrap(), b"4111");
    let stats = vault.stats();
    assert_eq!(stats.failed_calls, stats.decrypt_calls, "{stats:?}");
}

#[tokio::test]
async fn another_tenant_or_purpose_is_key_unwrap() {
    let f = Fixture::new();
    let vault = f.vault();
    let acme = cards("acme");
    let sealed = vault.seal(&acme, "r", b"4111").await.unwrap();
    // A copy of acme's record in another tenant's store, or read for another purpose.
    let others = [
        cards("globex"),
        cards("acme2"),
        KeyContext::tenant(tenant("acme"), Purpose::FingerprintKey),
        KeyContext::deployment(Purpose::CardData),
    ];
    for other in &others {
        // The vault that sealed it holds the data key, but for `acme` only.
        check(&vault, other, "r", &sealed, VaultError::KeyUnwrap).await;
        check(&f.vault(), other, "r", &sealed, VaultError::KeyUnwrap).await;
    }
}

#[tokio::test]
async fn a_value_sealed_by_another_keyring_is_an_unknown_key() {
    let x = Fixture::new();
    let y = Fixture::new();
    assert_ne!(x.keyring.id(), y.keyring.id());
    let acme = cards("acme");
    let sealed = x.vault().seal(&acme, "r", b"4111").await.unwrap();
    let unknown = VaultError::UnknownKey {
        key_id: x.keyring.id().to_owned(),
        version: 1,
    };
    check(&y.vault(), &acme, "r", &sealed, unknown).await;
    // Relabelled with Y's id, X's blob is still not Y's.
    let relabelled = altered(&sealed, |s| s.key.key_id = y.keyring.id().to_owned());
    check(&y.vault(), &acme, "r", &relabelled, VaultError::KeyUnwrap).await;
}

#[tokio::test]
async fn a_version_the_keyring_does_not_have_is_an_unknown_key_and_another_is_key_unwrap() {
    let f = Fixture::new();
    let vault = f.vault();
    let acme = cards("acme");
    let sealed = vault.seal(&acme, "r", b"4111").await.unwrap();
    for version in [0, 2, u32::MAX] {
        let bad = altered(&sealed, |s| s.key.key_version = version);
        let unknown = VaultError::UnknownKey {
            key_id: f.keyring.id().to_owned(),
            version,
        };
        check(&vault, &acme, "r", &bad, unknown).await;
    }
    // Once version 2 exists, a version-1 blob labelled 2 does not unwrap under it.
    f.keyring.rotate().await.unwrap();
    let relabelled = altered(&sealed, |s| s.key.key_version = 2);
    check(&vault, &acme, "r", &relabelled, VaultError::KeyUnwrap).await;
    assert_eq!(
        &**f.vault().open(&acme, "r", &sealed).await.unwrap(),
        b"4111"
    );
}
