//! Sealing and opening: values of every length come back, each seal is fresh, and the bounds on
//! values and record ids hold at their edges.

use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use super::*;
use crate::limits::{RECORD_ID_LEN_MAX, SEALED_VALUE_BYTES_MAX};

/// Generated cases of the round-trip property.
const CASES: u32 = 64;

#[tokio::test]
async fn a_sealed_value_opens_to_itself_and_hides_it() {
    let f = Fixture::new();
    let vault = f.vault();
    let acme = cards("acme");
    let pan = b"4111111111111111";
    let sealed = vault.seal(&acme, "card-1", pan).await.unwrap();
    assert_eq!(sealed.ciphertext.len(), pan.len() + TAG_BYTES);
    assert!(
        !sealed
            .ciphertext
            .windows(4)
            .any(|w| pan.windows(4).any(|p| p == w))
    );
    assert_eq!(sealed.key.key_id, f.keyring.id());
    assert_eq!(sealed.key.key_version, 1);
    assert_eq!(&**vault.open(&acme, "card-1", &sealed).await.unwrap(), pan);

    let again = vault.seal(&acme, "card-1", pan).await.unwrap();
    assert_eq!(again.key, sealed.key, "one data key for the context");
    assert_ne!(again.nonce, sealed.nonce, "a fresh nonce for every seal");
    assert_ne!(again.ciphertext, sealed.ciphertext);

    // What is stored survives a trip through its serialized form.
    let stored = serde_json::to_string(&sealed).unwrap();
    let read: Sealed = serde_json::from_str(&stored).unwrap();
    assert_eq!(&**vault.open(&acme, "card-1", &read).await.unwrap(), pan);
}

#[tokio::test]
async fn a_deployment_secret_round_trips_and_is_bound_to_its_context() {
    let f = Fixture::new();
    let vault = f.vault();
    let fingerprint = KeyContext::deployment(Purpose::FingerprintKey);
    let (secret, wrapped) = vault.new_secret(&fingerprint).await.unwrap();
    let opened = vault.open_secret(&fingerprint, &wrapped).await.unwrap();
    assert_eq!(opened.bytes(), secret.bytes());
    for other in [
        KeyContext::deployment(Purpose::CardData),
        KeyContext::tenant(tenant("acme"), Purpose::FingerprintKey),
    ] {
        let error = vault.open_secret(&other, &wrapped).await.unwrap_err();
        assert_eq!(error, VaultError::KeyUnwrap, "{other}");
    }
    // Secrets are not cached: every open asks the key service.
    let before = vault.stats().decrypt_calls;
    vault.open_secret(&fingerprint, &wrapped).await.unwrap();
    assert_eq!(vault.stats().decrypt_calls, before + 1);
    assert_eq!(format!("{secret:?}"), "Secret(redacted)");
    let (other, _) = vault.new_secret(&fingerprint).await.unwrap();
    assert_ne!(other.bytes(), secret.bytes());
}

#[tokio::test]
async fn values_and_record_ids_are_bounded() {
    let f = Fixture::new();
    let vault = f.vault();
    let acme = cards("acme");
    let invalid = |r: Result<Sealed, VaultError>| matches!(r, Err(VaultError::Invalid(_)));

    let longest_id = "r".repeat(RECORD_ID_LEN_MAX);
    let sealed = vault.seal(&acme, &longest_id, b"x").await.unwrap();
    assert_eq!(
        &**vault.open(&acme, &longest_id, &sealed).await.unwrap(),
        b"x"
    );
    let too_long_id = "r".repeat(RECORD_ID_LEN_MAX + 1);
    assert!(invalid(vault.seal(&acme, &too_long_id, b"x").await));
    assert!(invalid(vault.seal(&acme, "", b"x").await));
    let opened = vault.open(&acme, &too_long_id, &sealed).await;
    assert!(matches!(opened, Err(VaultError::Invalid(_))));

    let empty = vault.seal(&acme, "r", b"").await.unwrap();
    assert_eq!(empty.ciphertext.len(), TAG_BYTES);
    assert!(vault.open(&acme, "r", &empty).await.unwrap().is_empty());
    let largest = vec![7u8; SEALED_VALUE_BYTES_MAX];
    let sealed = vault.seal(&acme, "r", &largest).await.unwrap();
    assert_eq!(*vault.open(&acme, "r", &sealed).await.unwrap(), largest);
    assert!(invalid(
        vault
            .seal(&acme, "r", &vec![7u8; SEALED_VALUE_BYTES_MAX + 1])
            .await
    ));
    let mut too_long = sealed.clone();
    too_long.ciphertext.push(0);
    let opened = vault.open(&acme, "r", &too_long).await;
    assert!(matches!(opened, Err(VaultError::Invalid(_))), "{opened:?}");
    // Refused before the key service is asked.
    assert_eq!(vault.stats().failed_calls, 0);
}

#[test]
fn any_value_round_trips_for_its_record_only() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let f = Fixture::new();
    // One data key for every case: the cache must hand out the same key however long the
    // values, and a record id never opens another's value.
    let vault = f.vault();
    let acme = cards("acme");
    let mut runner = TestRunner::new(ProptestConfig::with_cases(CASES));
    let values = prop::collection::vec(any::<u8>(), 0..=4096);
    // At most 252 bytes, so that one more is still a valid record id.
    runner
        .run(&(values, "\\PC{1,63}"), |(plaintext, record_id)| {
            runtime.block_on(async {
                let sealed = vault.seal(&acme, &record_id, &plaintext).await.unwrap();
                prop_assert_eq!(sealed.ciphertext.len(), plaintext.len() + TAG_BYTES);
                let opened = vault.open(&acme, &record_id, &sealed).await.unwrap();
                prop_assert_eq!(&*opened, &plaintext);
                let other = format!("{record_id}-");
                let moved = vault.open(&acme, &other, &sealed).await;
                prop_assert_eq!(moved.unwrap_err(), VaultError::Decrypt);
                Ok(())
            })
        })
        .unwrap();
    let stats = vault.stats();
    assert_eq!(
        (stats.generate_calls, stats.decrypt_calls),
        (1, 0),
        "{stats:?}"
    );
}
