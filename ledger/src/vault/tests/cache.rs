//! The data-key cache within its bounds: one key-service call however many seals or opens want
//! a key at once, and a new data key after `data_key_uses_max` seals or `data_key_age_max`;
//! at most `data_key_cache_max` keys, the oldest evicted; failures never cached.

use std::collections::BTreeMap;

use super::*;
use crate::limits::{
    DATA_KEY_AGE_MAX, DATA_KEY_AGE_MIN, DATA_KEY_CACHE_LEN_MAX, DATA_KEY_USES_MAX,
};

#[tokio::test]
async fn ten_thousand_seals_of_one_context_generate_one_data_key() {
    let f = Fixture::new();
    let vault = f.vault();
    let acme = cards("acme");
    let first = vault.seal(&acme, "r-0", b"4111").await.unwrap();
    for n in 1..10_000 {
        let sealed = vault.seal(&acme, &format!("r-{n}"), b"4111").await.unwrap();
        assert_eq!(sealed.key, first.key);
    }
    let stats = vault.stats();
    assert_eq!(stats.generate_calls, 1, "{stats:?}");
    assert_eq!(
        (stats.seal_misses, stats.seal_hits),
        (1, 9_999),
        "{stats:?}"
    );
    assert_eq!(
        stats.failed_calls + stats.evicted_uses + stats.evicted_age,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_seals_and_opens_on_a_cold_cache_make_one_call_per_key() {
    let f = Fixture::new();
    // A slow key service, so that every task arrives while the first call is in flight.
    let keys = Faulty::new(f.keyring.clone(), Duration::from_millis(20));
    let vault = quiet_vault(keys.clone(), VaultConfig::default(), &f.clock);
    let acme = cards("acme");
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..64 {
        let (vault, acme) = (vault.clone(), acme.clone());
        tasks.spawn(async move { (n, vault.seal(&acme, &format!("r-{n}"), b"4111").await) });
    }
    // In the order they finished, with the record each is for.
    let sealed: Vec<(u32, Sealed)> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|(n, sealed)| (n, sealed.unwrap()))
        .collect();
    assert!(sealed.iter().all(|(_, s)| s.key == sealed[0].1.key));
    let stats = vault.stats();
    assert_eq!(
        (stats.generate_calls, stats.seal_misses),
        (1, 1),
        "{stats:?}"
    );

    // A fresh vault opens them all at once: one unwrap.
    let opener = quiet_vault(keys, VaultConfig::default(), &f.clock);
    let mut tasks = tokio::task::JoinSet::new();
    for (n, value) in sealed {
        let (opener, acme) = (opener.clone(), acme.clone());
        tasks.spawn(async move { opener.open(&acme, &format!("r-{n}"), &value).await });
    }
    for opened in tasks.join_all().await {
        assert_eq!(&**opened.unwrap(), b"4111");
    }
    let stats = opener.stats();
    assert_eq!(
        (stats.decrypt_calls, stats.open_misses),
        (1, 1),
        "{stats:?}"
    );
    assert_eq!(stats.open_hits, 63, "{stats:?}");
}

#[tokio::test]
async fn a_data_key_seals_at_most_uses_max_values() {
    let f = Fixture::new();
    let vault = f.vault_with(config(Duration::from_secs(60), 3, 16));
    let acme = cards("acme");
    let mut per_key: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
    let mut all = Vec::new();
    for n in 0..10 {
        let sealed = vault.seal(&acme, &format!("r-{n}"), b"4111").await.unwrap();
        *per_key.entry(sealed.key.blob.clone()).or_default() += 1;
        all.push(sealed);
    }
    let mut uses: Vec<u32> = per_key.into_values().collect();
    uses.sort_unstable();
    assert_eq!(uses, [1, 3, 3, 3]);
    let stats = vault.stats();
    assert_eq!(
        (stats.generate_calls, stats.evicted_uses),
        (4, 3),
        "{stats:?}"
    );
    for (n, sealed) in all.iter().enumerate() {
        let opened = f.vault().open(&acme, &format!("r-{n}"), sealed).await;
        assert_eq!(&**opened.unwrap(), b"4111");
    }
}

#[tokio::test]
async fn a_data_key_past_its_age_is_replaced_and_swept() {
    let f = Fixture::new();
    let age = Duration::from_secs(60);
    let vault = f.vault_with(config(age, 1 << 20, 16));
    let acme = cards("acme");
    let first = vault.seal(&acme, "a", b"a").await.unwrap();
    f.clock.advance(age - Duration::from_millis(1));
    let second = vault.seal(&acme, "b", b"b").await.unwrap();
    assert_eq!(second.key, first.key, "still within its age");
    f.clock.advance(Duration::from_millis(1));
    let third = vault.seal(&acme, "c", b"c").await.unwrap();
    assert_ne!(third.key, first.key, "at its age a key is retired");
    let stats = vault.stats();
    assert_eq!(
        (stats.generate_calls, stats.evicted_age),
        (2, 1),
        "{stats:?}"
    );

    // The first key is past its age for opening too: unwrapped again, once.
    assert_eq!(&**vault.open(&acme, "a", &first).await.unwrap(), b"a");
    assert_eq!(&**vault.open(&acme, "b", &second).await.unwrap(), b"b");
    let stats = vault.stats();
    assert_eq!(
        (stats.decrypt_calls, stats.evicted_age),
        (1, 2),
        "{stats:?}"
    );

    // Nothing is past its age yet: a sweep drops nothing.
    vault.sweep();
    assert_eq!(vault.stats().evicted_age, 2);
    // Past it, a sweep drops the sealing key and both opening keys, unused.
    f.clock.advance(age);
    vault.sweep();
    assert_eq!(vault.stats().evicted_age, 5);
    vault.sweep();
    assert_eq!(vault.stats().evicted_age, 5, "each key is counted once");
    assert_eq!(&**vault.open(&acme, "c", &third).await.unwrap(), b"c");
    vault.seal(&acme, "d", b"d").await.unwrap();
    let stats = vault.stats();
    assert_eq!(
        (stats.generate_calls, stats.decrypt_calls),
        (3, 2),
        "{stats:?}"
    );
    assert_eq!(stats.evicted_age, 5, "swept keys are not counted again");
}

#[tokio::test]
async fn the_cache_holds_at_most_cache_max_keys_and_the_oldest_goes() {
    let f = Fixture::new();
    let vault = f.vault_with(config(Duration::from_secs(60), 1 << 20, 2));
    let [a, b, c] = [cards("a"), cards("b"), cards("c")];
    let sealed_a = vault.seal(&a, "r", b"a").await.unwrap();
    let sealed_b = vault.seal(&b, "r", b"b").await.unwrap();
    assert_eq!(vault.stats().evicted_entries, 0);
    vault.seal(&c, "r", b"c").await.unwrap();
    // A's sealing key and A's opening key made room for C's.
    let stats = vault.stats();
    assert_eq!(
        (stats.generate_calls, stats.evicted_entries),
        (3, 2),
        "{stats:?}"
    );
    vault.seal(&b, "r", b"b").await.unwrap();
    vault.seal(&c, "r", b"c").await.unwrap();
    assert_eq!(vault.stats().generate_calls, 3, "B and C are still cached");
    let again_a = vault.seal(&a, "r", b"a").await.unwrap();
    assert_ne!(again_a.key, sealed_a.key, "A's key was evicted");
    let stats = vault.stats();
    assert_eq!(
        (stats.generate_calls, stats.evicted_entries),
        (4, 4),
        "{stats:?}"
    );
    // B's opening key went for A's new one; A's first is long gone.
    for (context, sealed) in [(&b, &sealed_b), (&a, &sealed_a)] {
        vault.open(context, "r", sealed).await.unwrap();
    }
    let stats = vault.stats();
    assert_eq!(
        (stats.decrypt_calls, stats.open_misses),
        (2, 2),
        "{stats:?}"
    );
}

#[tokio::test]
async fn opens_unwrap_a_data_key_once_then_hit_the_cache() {
    let f = Fixture::new();
    let sealer = f.vault();
    let (acme, globex) = (cards("acme"), cards("globex"));
    let mut values = Vec::new();
    for (context, n) in [(&acme, 0), (&acme, 1), (&acme, 2), (&globex, 3)] {
        let record = format!("r-{n}");
        values.push((
            context,
            record.clone(),
            sealer.seal(context, &record, b"v").await.unwrap(),
        ));
    }
    for (context, record, sealed) in &values {
        sealer.open(context, record, sealed).await.unwrap();
    }
    // What a vault sealed it opens without an unwrap.
    let stats = sealer.stats();
    assert_eq!((stats.decrypt_calls, stats.open_hits), (0, 4), "{stats:?}");

    let opener = f.vault();
    for (context, record, sealed) in values.iter().chain(&values) {
        opener.open(context, record, sealed).await.unwrap();
    }
    let stats = opener.stats();
    assert_eq!(stats.decrypt_calls, 2, "one per data key: {stats:?}");
    assert_eq!((stats.open_misses, stats.open_hits), (2, 6), "{stats:?}");
}

#[tokio::test]
async fn a_failed_key_service_call_is_not_cached() {
    let f = Fixture::new();
    let keys = Faulty::new(f.keyring.clone(), Duration::ZERO);
    let vault = quiet_vault(keys.clone(), VaultConfig::default(), &f.clock);
    let acme = cards("acme");
    keys.fail_next(1);
    let failed = vault.seal(&acme, "r", b"v").await.unwrap_err();
    assert!(matches!(failed, VaultError::Unavailable(_)), "{failed:?}");
    let sealed = vault.seal(&acme, "r", b"v").await.unwrap();
    vault.seal(&acme, "r", b"v").await.unwrap();
    let stats = vault.stats();
    assert_eq!(
        (stats.generate_calls, stats.failed_calls),
        (2, 1),
        "{stats:?}"
    );
    assert_eq!((stats.seal_misses, stats.seal_hits), (2, 1), "{stats:?}");

    let opener = quiet_vault(keys.clone(), VaultConfig::default(), &f.clock);
    keys.fail_next(1);
    let failed = opener.open(&acme, "r", &sealed).await.unwrap_err();
    assert!(matches!(failed, VaultError::Unavailable(_)), "{failed:?}");
    for _ in 0..2 {
        assert_eq!(&**opener.open(&acme, "r", &sealed).await.unwrap(), b"v");
    }
    let stats = opener.stats();
    assert_eq!(
        (stats.decrypt_calls, stats.failed_calls),
        (2, 1),
        "{stats:?}"
    );
    assert_eq!((stats.open_misses, stats.open_hits), (2, 1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeping_task_drops_keys_past_their_age() {
    let f = Fixture::new();
    let clock: Arc<dyn Clock> = Arc::new(f.clock.clone());
    let config = config(DATA_KEY_AGE_MIN, 1 << 20, 16);
    // Built on the runtime: with its sweeping task.
    let vault = Vault::with_clock(f.keyring.clone(), config, clock);
    // Twice: the task sweeps at its start and then every interval.
    for round in 1..=2 {
        vault.seal(&cards("acme"), "r", b"v").await.unwrap();
        f.clock.advance(DATA_KEY_AGE_MIN);
        let deadline = std::time::Instant::now() + 5 * CACHE_SWEEP_INTERVAL;
        while vault.stats().evicted_age < 2 * round && std::time::Instant::now() < deadline {
            tokio::time::sleep(CACHE_SWEEP_INTERVAL / 10).await;
        }
        // The sealing key and its twin in the opening cache.
        assert_eq!(vault.stats().evicted_age, 2 * round);
    }
    assert_eq!(vault.stats().generate_calls, 2);
}

#[test]
fn settings_out_of_bounds_are_brought_within_them() {
    let clock = ManualClock::default();
    let keys = Fixture::new().keyring;
    let check = |given: VaultConfig, used: VaultConfig| {
        assert!(given.validate().is_err(), "{given:?}");
        assert_eq!(quiet_vault(keys.clone(), given, &clock).config(), used);
    };
    check(config(Duration::ZERO, 0, 0), config(DATA_KEY_AGE_MIN, 1, 1));
    check(
        config(Duration::MAX, u64::MAX, usize::MAX),
        config(DATA_KEY_AGE_MAX, DATA_KEY_USES_MAX, DATA_KEY_CACHE_LEN_MAX),
    );
    let default = VaultConfig::default();
    assert_eq!(default.validate(), Ok(default));
    assert_eq!(quiet_vault(keys, default, &clock).config(), default);
}

#[tokio::test]
async fn metrics_count_calls_hits_and_evictions_by_label() {
    let f = Fixture::new();
    let vault = f.vault_with(config(Duration::from_secs(60), 2, 16));
    let acme = cards("acme");
    let mut sealed = Vec::new();
    for _ in 0..3 {
        sealed.push(vault.seal(&acme, "r", b"v").await.unwrap());
    }
    f.vault().open(&acme, "r", &sealed[0]).await.unwrap();
    vault.open(&acme, "r", &sealed[2]).await.unwrap();
    let metrics = vault.metrics();
    let value = |name: &str, labels: &[(&str, &str)]| {
        let found = metrics
            .iter()
            .find(|m| m.name == name && m.labels == labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {metrics:?}"));
        found.value
    };
    let requests = "strongroom_key_service_requests_total";
    let generate = [("service", "local"), ("op", "generate_data_key")];
    assert_eq!(value(requests, &generate), 2.0);
    let decrypt = [("service", "local"), ("op", "decrypt_data_key")];
    assert_eq!(value(requests, &decrypt), 0.0, "the other vault's open");
    let remote = "strongroom_key_service_remote_requests_total";
    assert_eq!(value(remote, &[("service", "local")]), 0.0);
    let hits = "strongroom_vault_data_key_cache_hits_total";
    assert_eq!(value(hits, &[("cache", "seal")]), 1.0);
    assert_eq!(value(hits, &[("cache", "open")]), 1.0);
    let evictions = "strongroom_vault_data_key_cache_evictions_total";
    assert_eq!(value(evictions, &[("reason", "uses")]), 1.0);
    assert_eq!(value(evictions, &[("reason", "age")]), 0.0);
    // A key service the metrics do not know is labelled `other`.
    let faulty = Faulty::new(f.keyring.clone(), Duration::ZERO);
    let metrics = quiet_vault(faulty, VaultConfig::default(), &f.clock).metrics();
    assert!(
        metrics
            .iter()
            .any(|m| m.labels.contains(&("service", "other")))
    );
}
