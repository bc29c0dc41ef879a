//! The vault over AWS KMS ([`KmsKeyService`]) with the real SDK and wire protocol, against
//! moto's server: `tests/run.sh` starts one and sets `STRONGROOM_TEST_KMS_ENDPOINT`. Each test
//! makes KMS keys of its own (`CreateKey`, symmetric), so tests do not see each other.
//!
//! moto keeps the same key material across `RotateKeyOnDemand` (real KMS makes new material);
//! what the vault sees, rotations listed and data keys still decrypting, is the same.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ledger::vault::{
    KeyContext, KeyService, KmsConfig, KmsKeyService, KmsRetry, Purpose, Sealed, Vault,
    VaultConfig, VaultError, WrappedKey,
};

use crate::tenant;

/// The endpoint of the KMS server the tests use.
pub const ENDPOINT_ENV: &str = "STRONGROOM_TEST_KMS_ENDPOINT";
const REGION: &str = "us-east-1";

fn endpoint() -> String {
    std::env::var(ENDPOINT_ENV).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_ENV} is not set: run the tests with tests/run.sh, which starts a KMS \
             server (moto) on 127.0.0.1 and sets it"
        )
    })
}

/// A new symmetric KMS key: its ARN.
async fn new_key() -> String {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint())
        .load()
        .await;
    let created = aws_sdk_kms::Client::new(&shared)
        .create_key()
        .description("strongroom vault test")
        .send()
        .await
        .unwrap();
    created.key_metadata().unwrap().arn().unwrap().to_owned()
}

fn config(key_id: &str) -> KmsConfig {
    KmsConfig {
        key_id: key_id.to_owned(),
        region: Some(REGION.into()),
        endpoint: Some(endpoint()),
        ..KmsConfig::default()
    }
}

async fn connect(config: KmsConfig) -> Arc<KmsKeyService> {
    Arc::new(KmsKeyService::connect(config).await.unwrap())
}

fn vault(keys: &Arc<KmsKeyService>) -> Vault {
    Vault::new(keys.clone(), VaultConfig::default())
}

fn cards(id: &str) -> KeyContext {
    KeyContext::tenant(tenant(id), Purpose::CardData)
}

async fn check(vault: &Vault, context: &KeyContext, record: &str, sealed: &Sealed, e: VaultError) {
    let opened = vault.open(context, record, sealed).await;
    assert_eq!(opened.unwrap_err(), e, "{context}, {record}");
}

#[tokio::test]
async fn ten_thousand_seals_of_one_tenant_make_one_generate_data_key() {
    let arn = new_key().await;
    // By its bare id: the ARN comes with the first answer.
    let key_id = arn.rsplit('/').next().unwrap();
    let keys = connect(config(key_id)).await;
    let sealer = vault(&keys);
    let acme = cards("acme");
    let mut sealed = Vec::new();
    for n in 0..10_000 {
        let value = format!("4111-{n}");
        sealed.push(
            sealer
                .seal(&acme, &format!("r-{n}"), value.as_bytes())
                .await
                .unwrap(),
        );
    }
    assert!(sealed.iter().all(|s| s.key == sealed[0].key));
    assert_eq!(sealed[0].key.key_id, arn);
    let stats = sealer.stats();
    assert_eq!(
        (stats.generate_calls, stats.seal_hits),
        (1, 9_999),
        "{stats:?}"
    );
    assert_eq!(keys.requests_total(), 1, "one GenerateDataKey");

    // A fresh vault (another instance) unwraps the data key once for all of them.
    let opener = vault(&keys);
    for (n, value) in sealed.iter().enumerate().step_by(97) {
        let opened = opener.open(&acme, &format!("r-{n}"), value).await.unwrap();
        assert_eq!(&**opened, format!("4111-{n}").as_bytes());
    }
    assert_eq!(opener.stats().decrypt_calls, 1);
    assert_eq!(keys.requests_total(), 2, "and one Decrypt");
    assert_eq!(sealer.stats().failed_calls + opener.stats().failed_calls, 0);
}

#[tokio::test]
async fn another_tenant_or_purpose_is_key_unwrap_and_altered_values_are_caught() {
    let keys = connect(config(&new_key().await)).await;
    // One value per data key, for the swap below.
    let sealer = Vault::new(
        keys.clone(),
        VaultConfig {
            data_key_uses_max: 1,
            ..VaultConfig::default()
        },
    );
    let acme = cards("acme");
    let a = sealer.seal(&acme, "r", b"value a").await.unwrap();
    let b = sealer.seal(&acme, "r", b"value b").await.unwrap();
    assert_ne!(a.key, b.key);
    let opener = vault(&keys);
    for other in [
        cards("globex"),
        KeyContext::tenant(tenant("acme"), Purpose::FingerprintKey),
        KeyContext::deployment(Purpose::CardData),
    ] {
        check(&opener, &other, "r", &a, VaultError::KeyUnwrap).await;
    }
    check(&opener, &acme, "other-record", &a, VaultError::Decrypt).await;
    let mut swapped = a.clone();
    swapped.key = b.key.clone();
    check(&opener, &acme, "r", &swapped, VaultError::Decrypt).await;
    let mut flipped = a.clone();
    flipped.ciphertext[0] ^= 1;
    check(&opener, &acme, "r", &flipped, VaultError::Decrypt).await;
    // The tail of the blob is the encrypted data key (in moto, as in KMS); its head in moto is
    // the key id in clear, which names another key when altered.
    let blob_len = a.key.blob.len();
    for i in blob_len - 16..blob_len {
        let mut altered = a.clone();
        altered.key.blob[i] ^= 1;
        check(&opener, &acme, "r", &altered, VaultError::KeyUnwrap).await;
    }
    assert_eq!(&**opener.open(&acme, "r", &a).await.unwrap(), b"value a");

    let fingerprint = KeyContext::deployment(Purpose::FingerprintKey);
    let (secret, wrapped) = opener.new_secret(&fingerprint).await.unwrap();
    let opened = opener.open_secret(&fingerprint, &wrapped).await.unwrap();
    assert_eq!(opened.bytes(), secret.bytes());
    let error = opener.open_secret(&acme, &wrapped).await.unwrap_err();
    assert_eq!(error, VaultError::KeyUnwrap);
}

#[tokio::test]
async fn a_data_key_of_another_kms_key_is_unknown_unless_listed_as_previous() {
    let (old_arn, new_arn) = (new_key().await, new_key().await);
    let old = connect(config(&old_arn)).await;
    let acme = cards("acme");
    let sealed = vault(&old).seal(&acme, "r", b"4111").await.unwrap();

    let new = connect(config(&new_arn)).await;
    let unknown = VaultError::UnknownKey {
        key_id: old_arn.clone(),
        version: 0,
    };
    check(&vault(&new), &acme, "r", &sealed, unknown).await;

    let moving = connect(KmsConfig {
        previous_key_ids: vec![old_arn.clone()],
        ..config(&new_arn)
    })
    .await;
    let vault = vault(&moving);
    assert_eq!(&**vault.open(&acme, "r", &sealed).await.unwrap(), b"4111");
    let moved = vault.rewrap(&acme, &sealed).await.unwrap().unwrap();
    assert_eq!(moved.key.key_id, new_arn);
    assert_eq!(
        (moved.nonce, &moved.ciphertext),
        (sealed.nonce, &sealed.ciphertext)
    );
    assert_eq!(vault.rewrap(&acme, &moved).await.unwrap(), None);
    let fresh = self::vault(&connect(config(&new_arn)).await);
    assert_eq!(&**fresh.open(&acme, "r", &moved).await.unwrap(), b"4111");
}

#[tokio::test]
async fn after_rotate_key_on_demand_rewrap_moves_data_keys_and_they_open() {
    let arn = new_key().await;
    let keys = connect(config(&arn)).await;
    let sealer = vault(&keys);
    let acme = cards("acme");
    let first = sealer.seal(&acme, "r-1", b"one").await.unwrap();
    let second = sealer.seal(&acme, "r-2", b"two").await.unwrap();
    assert_eq!(first.key.key_version, 0);

    let status = keys.status().await.unwrap();
    assert_eq!(
        (status.service, status.key_id.as_str()),
        ("kms", arn.as_str())
    );
    assert_eq!(status.version, 0);
    assert_eq!(status.versions, vec![(0, status.current_since)]);
    assert!(
        status.age(SystemTime::now()) < Duration::from_secs(600),
        "{status:?}"
    );
    assert_eq!(
        sealer.rewrap(&acme, &first).await.unwrap(),
        None,
        "not rotated yet"
    );

    let rotated = sealer.keys().rotate().await.unwrap();
    assert_eq!(rotated.version, 1);
    assert_eq!(rotated.versions.len(), 2);
    assert_eq!(rotated.versions[0], status.versions[0]);
    assert_eq!(rotated.versions[1], (1, rotated.current_since));
    assert!(rotated.current_since >= status.current_since);
    assert!(!rotated.overdue(SystemTime::now(), Duration::from_secs(24 * 3600)));

    let moved = sealer.rewrap(&acme, &first).await.unwrap().unwrap();
    assert_eq!(
        (moved.key.key_id.as_str(), moved.key.key_version),
        (arn.as_str(), 1)
    );
    assert_ne!(moved.key.blob, first.key.blob);
    assert_eq!(
        (moved.nonce, &moved.ciphertext),
        (first.nonce, &first.ciphertext)
    );
    assert_eq!(sealer.rewrap(&acme, &moved).await.unwrap(), None);
    // The other value with the same data key: from the memo.
    let moved_second = sealer.rewrap(&acme, &second).await.unwrap().unwrap();
    assert_eq!(moved_second.key, moved.key);
    let stats = sealer.stats();
    assert_eq!(
        (stats.rewrap_calls, stats.rewrap_memo_hits),
        (1, 1),
        "{stats:?}"
    );

    let opener = vault(&connect(config(&arn)).await);
    assert_eq!(&**opener.open(&acme, "r-1", &moved).await.unwrap(), b"one");
    assert_eq!(
        &**opener.open(&acme, "r-2", &moved_second).await.unwrap(),
        b"two"
    );
    assert_eq!(&**opener.open(&acme, "r-1", &first).await.unwrap(), b"one");
    let error = opener.rewrap(&cards("globex"), &first).await.unwrap_err();
    assert_eq!(error, VaultError::KeyUnwrap);
}

#[tokio::test]
async fn a_key_wrapped_before_a_rotation_is_stale_whatever_the_wrapping_clock_said() {
    let arn = new_key().await;
    let keys = connect(config(&arn)).await;
    let vault = vault(&keys);
    let acme = cards("acme");
    let mut sealed = vault.seal(&acme, "r", b"4111").await.unwrap();
    // As a host whose clock runs an hour ahead of KMS's would have written it.
    sealed.key.wrapped_at_ms += 3_600_000;
    keys.rotate().await.unwrap();
    let moved = vault.rewrap(&acme, &sealed).await.unwrap();
    assert!(
        moved.is_some(),
        "a data key wrapped before the rotation is rewrapped"
    );
    // A key wrapped by a process that had not heard of the rotation looks stale: its rewrap is
    // done again, harmlessly.
    let unaware = connect(config(&arn)).await;
    let late = Vault::new(unaware.clone(), VaultConfig::default());
    let sealed_late = late.seal(&acme, "r", b"4111").await.unwrap();
    assert_eq!(sealed_late.key.key_version, 0);
    let moved = late.rewrap(&acme, &sealed_late).await.unwrap().unwrap();
    assert_eq!(moved.key.key_version, 1);
    assert_eq!(late.rewrap(&acme, &moved).await.unwrap(), None);
}

/// A key no server has: the unreachable endpoints below never get to say so.
const NO_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";

/// KMS at `endpoint`, every request given three attempts with short pauses.
fn unreachable(endpoint: String, attempt_timeout: Duration) -> KmsConfig {
    KmsConfig {
        key_id: NO_KEY.into(),
        region: Some(REGION.into()),
        endpoint: Some(endpoint),
        attempt_timeout,
        retry: KmsRetry {
            attempts_max: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(50),
            total_max: Duration::from_secs(2),
        },
        ..KmsConfig::default()
    }
}

/// Checks that `keys` is unavailable, found out within `within`; the first error's message.
async fn check_unavailable(keys: Arc<KmsKeyService>, within: Duration) -> String {
    let vault = vault(&keys);
    let started = Instant::now();
    let error = vault.seal(&cards("acme"), "r", b"4111").await.unwrap_err();
    let elapsed = started.elapsed();
    let VaultError::Unavailable(message) = &error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert!(
        message.contains("GenerateDataKey") && message.contains("3 attempts"),
        "{message}"
    );
    assert!(elapsed < within, "{elapsed:?}: {message}");
    assert_eq!(keys.requests_total(), 3);
    assert_eq!(vault.stats().failed_calls, 1);
    // Nothing cached: the next seal tries again.
    vault.seal(&cards("acme"), "r", b"4111").await.unwrap_err();
    assert_eq!(keys.requests_total(), 6);
    let wrapped = WrappedKey {
        key_id: NO_KEY.into(),
        key_version: 0,
        wrapped_at_ms: 0,
        blob: vec![1; 96],
    };
    let error = keys
        .decrypt_data_key(&cards("acme"), &wrapped)
        .await
        .unwrap_err();
    assert!(matches!(error, VaultError::Unavailable(_)), "{error:?}");
    let error = keys.status().await.unwrap_err();
    assert!(matches!(error, VaultError::Unavailable(_)), "{error:?}");
    message.clone()
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_after_the_configured_attempts() {
    let keys = connect(unreachable(
        "http://127.0.0.1:1".into(),
        Duration::from_secs(1),
    ))
    .await;
    let message = check_unavailable(keys, Duration::from_secs(2)).await;
    assert!(message.contains("Connection refused"), "{message}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_after_the_attempt_timeouts() {
    // Connections are accepted by the kernel (the backlog) and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let timeout = Duration::from_millis(200);
    let keys = connect(unreachable(endpoint, timeout)).await;
    // Three attempts of 200 ms and two short pauses: far from a hang.
    let message = check_unavailable(keys, Duration::from_secs(2)).await;
    assert!(message.contains("attempt timeout"), "{message}");
}
