//! The checkpoint signer over AWS KMS ([`KmsSigner`]) with the real SDK and wire protocol,
//! against moto's server (`tests/run.sh` sets `STRONGROOM_TEST_KMS_ENDPOINT`): a checkpoint
//! signed in KMS verifies with the public key KMS hands out, in the verifier of the `audit`
//! crate, and a changed one does not; a key that cannot sign checkpoints is refused at start;
//! a ledger signing with KMS writes a log that `audit_verify` accepts. Each test makes keys of
//! its own.

use std::sync::Arc;
use std::time::Duration;

use audit::checkpoint::{
    Algorithm, Checkpoint, CheckpointError, P256_SPKI_PREFIX, PublicKey, PublicKeys,
    SignedCheckpoint,
};
use audit::merkle::{Frontier, leaf_hash};
use audit::record::format_time;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use ledger::audit_log::{CheckpointSigner, KmsSigner, LocalCheckpointSigner};
use ledger::store::sqlite::SqliteStore;
use ledger::{
    BalanceConstraint, Currency, Ledger, LedgerConfig, NewAccount, Side, SystemClock, TenantId,
};

use crate::vault_kms::ENDPOINT_ENV;

const REGION: &str = "us-east-1";

fn endpoint() -> String {
    std::env::var(ENDPOINT_ENV).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_ENV} is not set: run the tests with tests/run.sh, which starts a KMS \
             server (moto) on 127.0.0.1 and sets it"
        )
    })
}

async fn kms() -> aws_sdk_kms::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint())
        .load()
        .await;
    aws_sdk_kms::Client::new(&shared)
}

/// A new KMS key of this spec and usage: its id and ARN.
async fn new_key(spec: KeySpec, usage: KeyUsageType) -> (String, String) {
    let created = kms()
        .await
        .create_key()
        .key_spec(spec)
        .key_usage(usage)
        .description("strongroom audit signer test")
        .send()
        .await
        .unwrap();
    let meta = created.key_metadata().unwrap();
    (meta.key_id().to_owned(), meta.arn().unwrap().to_owned())
}

/// A new key checkpoints can be signed with: its id and ARN.
async fn signing_key() -> (String, String) {
    new_key(KeySpec::EccNistP256, KeyUsageType::SignVerify).await
}

async fn connect(key_id: &str) -> ledger::Result<KmsSigner> {
    KmsSigner::connect(
        key_id,
        Some(REGION),
        Some(&endpoint()),
        Duration::from_secs(5),
    )
    .await
}

/// Why `connect` refused `key_id`.
async fn refusal(key_id: &str) -> String {
    match connect(key_id).await {
        Ok(signer) => panic!("{key_id} was taken: {signer:?}"),
        Err(e) => e.to_string(),
    }
}

fn checkpoint(size: u64) -> Checkpoint {
    let mut frontier = Frontier::new();
    for n in 0..size {
        frontier.push(leaf_hash(format!("record {n}").as_bytes()));
    }
    Checkpoint {
        stream: "gateway-1-01jaudit".into(),
        size,
        root: frontier.root(),
        time: format_time(1_764_000_000_123_456),
    }
}

/// The public key of a new P-256 key on the test server, under the name `key_id`: an impostor.
async fn another_key_named(key_id: &str) -> PublicKey {
    let (_, other_arn) = signing_key().await;
    let other = connect(&other_arn)
        .await
        .unwrap()
        .public_key()
        .await
        .unwrap();
    PublicKey {
        key_id: key_id.to_owned(),
        ..other
    }
}

fn keys_of(key: PublicKey) -> PublicKeys {
    let mut keys = PublicKeys::new();
    keys.add(key).unwrap();
    keys
}

fn bad_signature(key_id: &str) -> Result<(), CheckpointError> {
    Err(CheckpointError::BadSignature {
        key_id: key_id.to_owned(),
    })
}

#[tokio::test]
async fn a_checkpoint_signed_in_kms_verifies_with_its_public_key_and_a_changed_one_does_not() {
    let (id, arn) = signing_key().await;
    // By the bare id: the signer names the key by its ARN.
    let signer = connect(&id).await.unwrap();
    assert_eq!(signer.key_id(), arn);

    let cp = checkpoint(5);
    let signed = signer.sign(&cp).await.unwrap();
    assert_eq!(signed.checkpoint, cp);
    assert_eq!(signed.algorithm, Algorithm::EcdsaP256Sha256);
    assert_eq!(signed.key_id, arn);
    // ASN.1 DER: SEQUENCE { INTEGER r, INTEGER s }, at most 72 bytes.
    assert_eq!(signed.signature[0], 0x30, "{:02x?}", signed.signature);
    assert_eq!(usize::from(signed.signature[1]), signed.signature.len() - 2);
    assert!(signed.signature.len() <= 72);

    let public = signer.public_key().await.unwrap();
    assert_eq!(public.algorithm, Algorithm::EcdsaP256Sha256);
    assert_eq!(public.key_id, arn);
    assert_eq!(public.key.len(), 91);
    assert!(public.key.starts_with(&P256_SPKI_PREFIX));
    let keys = keys_of(public.clone());
    assert_eq!(keys.verify(&signed), Ok(()));
    // Through the published forms, as an auditor reads them.
    let published = PublicKeys::from_json(&public.to_json()).unwrap();
    let read = SignedCheckpoint::decode(&signed.encode()).unwrap();
    assert_eq!(read, signed);
    assert_eq!(published.verify(&read), Ok(()));
    // KMS itself agrees that the signature is of the message, raw.
    let verified = kms()
        .await
        .verify()
        .key_id(&arn)
        .message(Blob::new(signed.message()))
        .message_type(MessageType::Raw)
        .signature(Blob::new(signed.signature.clone()))
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap();
    assert!(verified.signature_valid());
    // Another signature of the same checkpoint (ECDSA draws a nonce each time) verifies too.
    let again = signer.sign(&cp).await.unwrap();
    assert_ne!(again.signature, signed.signature);
    assert_eq!(keys.verify(&again), Ok(()));

    // Any change of what is signed fails.
    let check = |change: &dyn Fn(&mut SignedCheckpoint)| {
        let mut changed = signed.clone();
        change(&mut changed);
        assert_eq!(published.verify(&changed), bad_signature(&arn));
    };
    check(&|s| s.checkpoint.size += 1);
    check(&|s| s.checkpoint.size -= 1);
    check(&|s| s.checkpoint.root = checkpoint(6).root);
    check(&|s| s.checkpoint.root[31] ^= 1);
    check(&|s| s.checkpoint.stream.push('x'));
    check(&|s| s.checkpoint.time = format_time(1_764_000_000_123_457));
    check(&|s| {
        let last = s.signature.len() - 1;
        s.signature[last] ^= 1;
    });
    // A signature of the larger checkpoint does not pass for the smaller one.
    let larger = signer.sign(&checkpoint(6)).await.unwrap();
    assert_eq!(keys.verify(&larger), Ok(()));
    let mut swapped = signed.clone();
    swapped.signature = larger.signature;
    assert_eq!(keys.verify(&swapped), bad_signature(&arn));

    // Another KMS key's public key under this key's name does not verify it.
    let other = another_key_named(&arn).await;
    assert_ne!(other.key, public.key);
    let impostor = keys_of(other);
    assert_eq!(impostor.verify(&signed), bad_signature(&arn));
}

#[tokio::test]
async fn connect_refuses_keys_that_cannot_sign_checkpoints() {
    let need = "checkpoints need an ECC_NIST_P256 key for SIGN_VERIFY";
    let (_, symmetric) = new_key(KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let e = refusal(&symmetric).await;
    assert!(
        e.contains(&format!(
            "KMS key {symmetric} is SYMMETRIC_DEFAULT for ENCRYPT_DECRYPT"
        )) && e.contains(need),
        "{e}"
    );
    for spec in [
        KeySpec::EccNistP384,
        KeySpec::EccSecgP256K1,
        KeySpec::Rsa2048,
    ] {
        let (_, arn) = new_key(spec.clone(), KeyUsageType::SignVerify).await;
        let e = refusal(&arn).await;
        assert!(
            e.contains(&format!(
                "KMS key {arn} is {} for SIGN_VERIFY",
                spec.as_str()
            )) && e.contains(need),
            "{spec:?}: {e}"
        );
    }
    // A key no one made.
    let unknown = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";
    let e = refusal(unknown).await;
    assert!(e.contains("DescribeKey") && e.contains("NotFound"), "{e}");
    let e = refusal("alias/no-such-alias").await;
    assert!(e.contains("DescribeKey") && e.contains("NotFound"), "{e}");

    // A disabled signing key; enabled again, it is taken.
    let (id, arn) = signing_key().await;
    kms().await.disable_key().key_id(&id).send().await.unwrap();
    let e = refusal(&arn).await;
    assert!(
        e.contains(&format!("KMS key {arn} is Disabled")) && e.contains("enabled"),
        "{e}"
    );
    kms().await.enable_key().key_id(&id).send().await.unwrap();
    assert_eq!(connect(&arn).await.unwrap().key_id(), arn);
}

#[tokio::test]
async fn a_signer_found_by_alias_names_its_key_by_arn() {
    let (id, arn) = signing_key().await;
    let alias = format!(
        "alias/strongroom-audit-{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    let client = kms().await;
    client
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&id)
        .send()
        .await
        .unwrap();
    let signer = connect(&alias).await.unwrap();
    assert_eq!(signer.key_id(), arn);
    let signed = signer.sign(&checkpoint(3)).await.unwrap();
    assert_eq!(signed.key_id, arn);
    let public = signer.public_key().await.unwrap();
    assert_eq!(public.key_id, arn);
    assert_eq!(keys_of(public.clone()).verify(&signed), Ok(()));

    // The alias moved to another key: the signer still signs with, and names, the first.
    let (other_id, _) = signing_key().await;
    client
        .update_alias()
        .alias_name(&alias)
        .target_key_id(&other_id)
        .send()
        .await
        .unwrap();
    let later = signer.sign(&checkpoint(4)).await.unwrap();
    assert_eq!(later.key_id, arn);
    assert_eq!(keys_of(public).verify(&later), Ok(()));
}

fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

#[tokio::test]
async fn a_ledger_signing_with_kms_writes_a_log_that_verifies_with_the_kms_public_key() {
    let (_, arn) = signing_key().await;
    let signer: Arc<dyn CheckpointSigner> = Arc::new(connect(&arn).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let mut config = LedgerConfig {
        hold_sweep_interval: None,
        ..LedgerConfig::default()
    };
    config.audit.checkpoint_records = 3;
    let ledger = Ledger::start_with_signer(
        Arc::new(SqliteStore::open(&path).unwrap()),
        Arc::new(SystemClock),
        config.clone(),
        None,
        Some(signer.clone()),
    );
    let usd = Currency::from_code("USD").unwrap();
    let mut accounts = Vec::new();
    for k in ["a", "b"] {
        let new = NewAccount::new(
            usd,
            Side::Debit,
            BalanceConstraint::None,
            None,
            None,
            Default::default(),
        )
        .unwrap();
        let created = ledger
            .create_account(&tenant(), crate::key(k), new)
            .await
            .unwrap();
        accounts.push(created.value.id);
    }
    ledger
        .create_transfer(
            &tenant(),
            crate::key("t"),
            crate::plain(accounts[0], accounts[1], 5, usd),
        )
        .await
        .unwrap();
    for i in 0..4 {
        let draft = audit::Draft::success(
            "account.read",
            audit::Actor::default(),
            audit::Origin::default(),
        )
        .resource("n", i);
        ledger.audit_append(draft).await.unwrap();
    }
    let (stream, head) = ledger.audit_stream().unwrap();
    let now = ledger
        .audit_checkpoint_now()
        .await
        .unwrap()
        .expect("records arrived since the last checkpoint");
    assert_eq!(now.algorithm, Algorithm::EcdsaP256Sha256);
    assert_eq!(now.key_id, arn);
    assert_eq!(now.checkpoint.stream, stream);
    assert_eq!(
        (now.checkpoint.size, now.checkpoint.root),
        (head.size, head.root)
    );
    let public = signer.public_key().await.unwrap();
    let keys = keys_of(public.clone());
    assert_eq!(keys.verify(&now), Ok(()));
    ledger.shutdown().await;

    // Read back by a ledger that writes nothing of its own.
    let verify = |keys: PublicKeys| {
        let (path, stream) = (path.clone(), stream.clone());
        let mut config = config.clone();
        config.audit.enabled = false;
        async move {
            let reader = Ledger::start(
                Arc::new(SqliteStore::open(&path).unwrap()),
                Arc::new(SystemClock),
                config,
            );
            let checkpoints = reader.audit_checkpoints(&stream).await;
            let report = reader.audit_verify(&keys, &mut |_, _| {}).await.unwrap();
            reader.shutdown().await;
            (checkpoints.unwrap(), report.streams)
        }
    };
    let (checkpoints, streams) = verify(keys).await;
    assert!(checkpoints.len() >= 3, "{checkpoints:?}");
    assert!(
        checkpoints
            .iter()
            .all(|cp| cp.algorithm == Algorithm::EcdsaP256Sha256 && cp.key_id == arn)
    );
    assert_eq!(streams.len(), 1);
    let summary = streams[0].as_ref().unwrap();
    assert_eq!(summary.stream, stream);
    assert!(summary.records >= 8, "{summary:?}");
    // The last checkpoint, signed at stop, covers every record (service.stop included).
    assert_eq!(summary.covered, summary.records, "{summary:?}");
    assert_eq!(summary.checkpoints, checkpoints.len() as u64);

    // Another P-256 key under the same name, or only an Ed25519 key: the log does not verify.
    let (_, streams) = verify(keys_of(another_key_named(&arn).await)).await;
    let failure = streams[0].as_ref().unwrap_err();
    assert!(
        failure.problem.contains("does not verify with public key"),
        "{failure}"
    );
    let ed25519 = LocalCheckpointSigner::ephemeral()
        .unwrap()
        .public_key()
        .await
        .unwrap();
    let (_, streams) = verify(keys_of(ed25519)).await;
    let failure = streams[0].as_ref().unwrap_err();
    assert!(failure.problem.contains("unknown key"), "{failure}");
}
