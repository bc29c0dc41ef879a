//! Rotation and rewrapping: after `keys().rotate()`, stored values move to the new master key
//! version without being decrypted, one key-service call per distinct data key.

use super::*;

#[tokio::test]
async fn after_a_rotation_rewrap_moves_the_data_key_and_keeps_the_value() {
    let f = Fixture::new();
    let vault = f.vault();
    let acme = cards("acme");
    let sealed = vault.seal(&acme, "r", b"4111").await.unwrap();
    assert_eq!(
        vault.rewrap(&acme, &sealed).await.unwrap(),
        None,
        "already current"
    );

    let status = vault.keys().rotate().await.unwrap();
    assert_eq!(status.version, 2);
    let moved = vault.rewrap(&acme, &sealed).await.unwrap().unwrap();
    assert_eq!(moved.key.key_id, sealed.key.key_id);
    assert_eq!(moved.key.key_version, 2);
    assert_ne!(moved.key.blob, sealed.key.blob);
    assert_eq!(moved.nonce, sealed.nonce, "the value is not re-encrypted");
    assert_eq!(moved.ciphertext, sealed.ciphertext);
    assert_eq!(vault.rewrap(&acme, &moved).await.unwrap(), None);
    for opener in [&vault, &f.vault()] {
        assert_eq!(&**opener.open(&acme, "r", &moved).await.unwrap(), b"4111");
        assert_eq!(&**opener.open(&acme, "r", &sealed).await.unwrap(), b"4111");
    }
    // Another process on the same keyring file opens it too.
    let other = quiet_vault(f.reopen(), VaultConfig::default(), &f.clock);
    assert_eq!(&**other.open(&acme, "r", &moved).await.unwrap(), b"4111");
    // The rewrapped key is bound to its context like the first.
    let moved_away = vault.open(&cards("globex"), "r", &moved).await;
    assert_eq!(moved_away.unwrap_err(), VaultError::KeyUnwrap);
    assert_eq!(vault.stats().rewrap_calls, 1);
}

#[tokio::test]
async fn values_sharing_a_data_key_cost_one_rewrap() {
    let f = Fixture::new();
    let vault = f.vault();
    let (acme, globex) = (cards("acme"), cards("globex"));
    let mut values = Vec::new();
    for n in 0..5 {
        values.push((
            &acme,
            vault.seal(&acme, &format!("r-{n}"), b"a").await.unwrap(),
        ));
    }
    values.push((&globex, vault.seal(&globex, "r-5", b"g").await.unwrap()));
    vault.keys().rotate().await.unwrap();
    let mut moved = Vec::new();
    for (context, sealed) in &values {
        moved.push(vault.rewrap(context, sealed).await.unwrap().unwrap());
    }
    assert!(moved[..5].iter().all(|m| m.key == moved[0].key));
    assert_ne!(moved[5].key, moved[0].key);
    let stats = vault.stats();
    assert_eq!(
        (stats.rewrap_calls, stats.rewrap_memo_hits),
        (2, 4),
        "{stats:?}"
    );

    // After another rotation, what the memo holds is stale: each data key is rewrapped again,
    // once.
    vault.keys().rotate().await.unwrap();
    for (context, sealed) in &values {
        let again = vault.rewrap(context, sealed).await.unwrap().unwrap();
        assert_eq!(again.key.key_version, 3);
    }
    let stats = vault.stats();
    assert_eq!(
        (stats.rewrap_calls, stats.rewrap_memo_hits),
        (4, 8),
        "{stats:?}"
    );
    for (n, (m, (context, _))) in moved.iter().zip(&values).enumerate() {
        let opened = f.vault().open(context, &format!("r-{n}"), m).await.unwrap();
        assert_eq!(opened.len(), 1);
    }
}

#[tokio::test]
async fn rewrap_key_moves_a_secret_to_the_current_version() {
    let f = Fixture::new();
    let vault = f.vault();
    let fingerprint = KeyContext::deployment(Purpose::FingerprintKey);
    let (secret, wrapped) = vault.new_secret(&fingerprint).await.unwrap();
    assert_eq!(
        vault.rewrap_key(&fingerprint, &wrapped).await.unwrap(),
        None
    );
    vault.keys().rotate().await.unwrap();
    let moved = vault
        .rewrap_key(&fingerprint, &wrapped)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.key_version, 2);
    let opened = vault.open_secret(&fingerprint, &moved).await.unwrap();
    assert_eq!(opened.bytes(), secret.bytes());
    assert_eq!(vault.rewrap_key(&fingerprint, &moved).await.unwrap(), None);
    let again = vault.rewrap_key(&fingerprint, &wrapped).await.unwrap();
    assert_eq!(again, Some(moved), "from the memo");
    let stats = vault.stats();
    assert_eq!(
        (stats.rewrap_calls, stats.rewrap_memo_hits),
        (1, 1),
        "{stats:?}"
    );
    let other = KeyContext::deployment(Purpose::CardData);
    let error = vault.rewrap_key(&other, &wrapped).await.unwrap_err();
    assert_eq!(error, VaultError::KeyUnwrap);
}

#[tokio::test]
async fn a_rewrap_that_fails_is_not_remembered() {
    let f = Fixture::new();
    let keys = Faulty::new(f.keyring.clone(), Duration::ZERO);
    let vault = quiet_vault(keys.clone(), VaultConfig::default(), &f.clock);
    let acme = cards("acme");
    let sealed = vault.seal(&acme, "r", b"v").await.unwrap();
    keys.rotate().await.unwrap();
    for _ in 0..2 {
        let error = vault.rewrap(&cards("globex"), &sealed).await.unwrap_err();
        assert_eq!(error, VaultError::KeyUnwrap);
    }
    let mut altered = sealed.clone();
    altered.key.blob[0] ^= 1;
    let error = vault.rewrap(&acme, &altered).await.unwrap_err();
    assert_eq!(error, VaultError::KeyUnwrap);
    let foreign = Fixture::new().vault().seal(&acme, "r", b"v").await.unwrap();
    let error = vault.rewrap(&acme, &foreign).await.unwrap_err();
    assert!(matches!(error, VaultError::UnknownKey { .. }), "{error:?}");
    keys.fail_next(1);
    let error = vault.rewrap(&acme, &sealed).await.unwrap_err();
    assert!(matches!(error, VaultError::Unavailable(_)), "{error:?}");
    let moved = vault.rewrap(&acme, &sealed).await.unwrap().unwrap();
    assert_eq!(&**vault.open(&acme, "r", &moved).await.unwrap(), b"v");
    let stats = vault.stats();
    assert_eq!(
        (stats.rewrap_calls, stats.failed_calls),
        (6, 5),
        "{stats:?}"
    );
    assert_eq!(stats.rewrap_memo_hits, 0);
}

#[tokio::test]
async fn after_a_rotation_new_data_keys_come_within_the_data_key_age() {
    let f = Fixture::new();
    let age = Duration::from_secs(60);
    let vault = f.vault_with(config(age, 1 << 20, 16));
    let acme = cards("acme");
    assert_eq!(
        vault.seal(&acme, "r", b"v").await.unwrap().key.key_version,
        1
    );
    vault.keys().rotate().await.unwrap();
    // The cached data key seals until its age: a rotation does not stop sealing.
    let cached = vault.seal(&acme, "r", b"v").await.unwrap();
    assert_eq!(cached.key.key_version, 1);
    f.clock.advance(age);
    let fresh = vault.seal(&acme, "r", b"v").await.unwrap();
    assert_eq!(fresh.key.key_version, 2);
    assert_eq!(vault.rewrap(&acme, &fresh).await.unwrap(), None);
    assert!(vault.rewrap(&acme, &cached).await.unwrap().is_some());
}
