//! Cards through the service interface, with a real local keyring: tokenize, read, reveal,
//! delete, replay; transfers naming a card; a record altered or copied in the store does not
//! open; `rewrap_all` after a rotation moves every data key and changes no number.

use std::sync::Arc;

use ledger::card::{Expiry, NewCard, Pan};
use ledger::codec::{decode, encode};
use ledger::layout;
use ledger::store::sqlite::SqliteStore;
use ledger::store::{Condition, Item, Store, WriteOp};
use ledger::vault::{KeyService, LocalKeyring, Vault, VaultConfig, VaultError};
use ledger::{CardId, Error, Ledger, LedgerConfig, ManualClock, Rejection, TenantId, Timestamp};

use crate::{START_US, key, plain, usd};

/// A ledger with a vault on a local keyring, its store and clock.
struct Vaulted {
    ledger: Ledger,
    store: Arc<dyn Store>,
    keys: Arc<LocalKeyring>,
    clock: ManualClock,
    n: std::sync::atomic::AtomicU64,
    _dir: tempfile::TempDir,
}

impl Vaulted {
    fn start(config: VaultConfig) -> Vaulted {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("ledger.db")).unwrap());
        let keys = Arc::new(LocalKeyring::init(&dir.path().join("keyring.json")).unwrap());
        let service: Arc<dyn KeyService> = keys.clone();
        let clock = ManualClock::new(Timestamp::from_micros(START_US));
        let ledger = Ledger::start_with_vault(
            store.clone(),
            Arc::new(clock.clone()),
            LedgerConfig {
                hold_sweep_interval: None,
                ..LedgerConfig::default()
            },
            Some(Vault::new(service, config)),
        );
        Vaulted {
            ledger,
            store,
            keys,
            clock,
            n: std::sync::atomic::AtomicU64::new(0),
            _dir: dir,
        }
    }

    fn key(&self) -> ledger::IdempotencyKey {
        let n = self.n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        key(&format!("card-{n}"))
    }

    async fn tokenize(&self, tenant: &TenantId, pan: &str) -> CardId {
        let committed = self
            .ledger
            .tokenize_card(tenant, self.key(), new_card(pan, &self.clock))
            .await
            .unwrap();
        assert!(!committed.replayed);
        committed.value.id
    }

    async fn item(&self, tenant: &TenantId, id: &CardId) -> Item {
        self.store
            .get(layout::card(tenant, id))
            .await
            .unwrap()
            .unwrap()
    }

    async fn put(&self, item: Item) {
        self.store
            .transact_write(vec![WriteOp::Put {
                item,
                condition: Condition::None,
            }])
            .await
            .unwrap();
    }
}

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

fn new_card(pan: &str, clock: &ManualClock) -> NewCard {
    let now = ledger::Clock::now(clock);
    NewCard::new(
        Pan::parse(pan).unwrap(),
        Expiry::new(12, 2031, now).unwrap(),
        "Jane Q Doe".into(),
    )
    .unwrap()
}

fn small_cache() -> VaultConfig {
    VaultConfig {
        data_key_uses_max: 1,
        ..VaultConfig::default()
    }
}

#[tokio::test]
async fn tokenize_read_reveal_delete_and_replay() {
    let v = Vaulted::start(VaultConfig::default());
    let acme = tenant("acme");
    let key = v.key();
    let first = v
        .ledger
        .tokenize_card(
            &acme,
            key.clone(),
            new_card("4111 1111 1111 1111", &v.clock),
        )
        .await
        .unwrap();
    let again = v
        .ledger
        .tokenize_card(
            &acme,
            key.clone(),
            new_card("4111-1111-1111-1111", &v.clock),
        )
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.value, first.value);
    assert!(matches!(
        v.ledger
            .tokenize_card(&acme, key, new_card("5555555555554444", &v.clock))
            .await,
        Err(Error::IdempotencyKeyReused)
    ));
    let id = first.value.id;
    assert_eq!(v.ledger.get_card(&acme, &id).await.unwrap(), first.value);
    let revealed = v.ledger.reveal_card(&acme, &id).await.unwrap();
    assert_eq!(revealed.pan.as_str(), "4111111111111111");
    assert_eq!(revealed.name.as_str(), "Jane Q Doe");
    // Another tenant: not found.
    assert!(matches!(
        v.ledger.get_card(&tenant("globex"), &id).await,
        Err(Error::NotFound)
    ));
    // Deleted: the sealed number is gone from the record; the id answers not found.
    v.ledger.delete_card(&acme, v.key(), id).await.unwrap();
    let record: ledger::card::CardRecord = decode(&v.item(&acme, &id).await).unwrap();
    assert!(record.sealed.is_none() && record.deleted_at.is_some());
    assert!(matches!(
        v.ledger.get_card(&acme, &id).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        v.ledger.reveal_card(&acme, &id).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        v.ledger.delete_card(&acme, v.key(), id).await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn a_transfer_names_only_a_live_unexpired_card_of_its_tenant() {
    let v = Vaulted::start(VaultConfig::default());
    let acme = tenant("acme");
    let from = {
        let new = ledger::NewAccount::new(
            usd(),
            ledger::Side::Debit,
            ledger::BalanceConstraint::None,
            None,
            None,
            ledger::Metadata::default(),
        )
        .unwrap();
        v.ledger
            .create_account(&acme, v.key(), new)
            .await
            .unwrap()
            .value
            .id
    };
    let to = {
        let new = ledger::NewAccount::new(
            usd(),
            ledger::Side::Credit,
            ledger::BalanceConstraint::None,
            None,
            None,
            ledger::Metadata::default(),
        )
        .unwrap();
        v.ledger
            .create_account(&acme, v.key(), new)
            .await
            .unwrap()
            .value
            .id
    };
    let card = v.tokenize(&acme, "4111111111111111").await;
    let theirs = v.tokenize(&tenant("globex"), "4111111111111111").await;
    let pay = |card: CardId| plain(from, to, 100, usd()).with_instrument(card);
    let paid = v
        .ledger
        .create_transfer(&acme, v.key(), pay(card))
        .await
        .unwrap();
    assert_eq!(paid.value.instrument, Some(card));
    assert_eq!(
        v.ledger.get_transfer(&acme, &paid.value.id).await.unwrap(),
        paid.value
    );
    let refused = |r: Result<_, Error>, want: Rejection| match r {
        Err(Error::Rejected(got)) => assert_eq!(got, want),
        other => panic!("{other:?}"),
    };
    refused(
        v.ledger.create_transfer(&acme, v.key(), pay(theirs)).await,
        Rejection::UnknownCard { card: theirs },
    );
    // Past its expiry month.
    // To 2032-01-01.
    let until = 1_956_528_000_000_000 - START_US;
    v.clock.advance(std::time::Duration::from_micros(
        u64::try_from(until).unwrap(),
    ));
    refused(
        v.ledger.create_transfer(&acme, v.key(), pay(card)).await,
        Rejection::CardExpired { card },
    );
    v.ledger.delete_card(&acme, v.key(), card).await.unwrap();
    refused(
        v.ledger.create_transfer(&acme, v.key(), pay(card)).await,
        Rejection::UnknownCard { card },
    );
}

#[tokio::test]
async fn records_altered_or_moved_in_the_store_do_not_open() {
    let v = Vaulted::start(small_cache());
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let a = v.tokenize(&acme, "4111111111111111").await;
    let b = v.tokenize(&acme, "5555555555554444").await;
    let unreadable = |r: Result<ledger::card::RevealedCard, Error>| match r {
        Err(Error::Vault(VaultError::Decrypt | VaultError::KeyUnwrap)) => {}
        other => panic!("{other:?}"),
    };
    let record = |item: &Item| decode::<ledger::card::CardRecord>(item).unwrap();
    // A flipped ciphertext byte.
    let original = v.item(&acme, &a).await;
    let mut flipped = record(&original);
    flipped.sealed.as_mut().unwrap().ciphertext[3] ^= 1;
    v.put(Item {
        body: encode(&flipped),
        ..original.clone()
    })
    .await;
    unreadable(v.ledger.reveal_card(&acme, &a).await);
    v.put(original.clone()).await;
    assert_eq!(
        v.ledger.reveal_card(&acme, &a).await.unwrap().pan.as_str(),
        "4111111111111111"
    );
    // Wrapped keys swapped between two records (each under its own data key).
    let other = record(&v.item(&acme, &b).await);
    let mut swapped = record(&original);
    swapped.sealed.as_mut().unwrap().key = other.sealed.as_ref().unwrap().key.clone();
    assert_ne!(swapped.sealed, record(&original).sealed);
    v.put(Item {
        body: encode(&swapped),
        ..original.clone()
    })
    .await;
    unreadable(v.ledger.reveal_card(&acme, &a).await);
    v.put(original.clone()).await;
    // The record copied to another tenant, under its own id there.
    let copy = Item {
        key: layout::card(&globex, &a),
        version: 1,
        body: original.body.clone(),
    };
    v.put(copy).await;
    unreadable(v.ledger.reveal_card(&globex, &a).await);
    // The record copied to another id of the same tenant.
    let c = v.tokenize(&acme, "378282246310005").await;
    let mut moved = record(&original);
    moved.card.id = c;
    v.put(Item {
        key: layout::card(&acme, &c),
        version: 9,
        body: encode(&moved),
    })
    .await;
    unreadable(v.ledger.reveal_card(&acme, &c).await);
}

#[tokio::test]
async fn rewrap_after_rotation_moves_every_data_key_and_changes_no_number() {
    let v = Vaulted::start(small_cache());
    let pans = ["4111111111111111", "5555555555554444", "378282246310005"];
    let mut cards = Vec::new();
    for (i, pan) in pans.iter().enumerate() {
        let t = tenant(if i % 2 == 0 { "acme" } else { "globex" });
        cards.push((t.clone(), v.tokenize(&t, pan).await, *pan));
    }
    let deleted = v.tokenize(&tenant("acme"), "6011111111111117").await;
    v.ledger
        .delete_card(&tenant("acme"), v.key(), deleted)
        .await
        .unwrap();
    let before: Vec<Item> = {
        let mut items = Vec::new();
        for (t, id, _) in &cards {
            items.push(v.item(t, id).await);
        }
        items
    };
    v.keys.rotate().await.unwrap();
    let mut calls = 0;
    let done = v.ledger.rewrap_all(|_| calls += 1).await.unwrap();
    assert!(calls > 0);
    // Three cards and the fingerprint key; the deleted card has nothing to re-wrap.
    assert_eq!(done.rewrapped, 4, "{done:?}");
    assert_eq!(done.cards_seen, 4, "{done:?}");
    assert_eq!(done.tenants_done, 2, "{done:?}");
    for ((t, id, pan), old) in cards.iter().zip(&before) {
        let new = v.item(t, id).await;
        let (old, new) = (
            decode::<ledger::card::CardRecord>(old).unwrap(),
            decode::<ledger::card::CardRecord>(&new).unwrap(),
        );
        let (old, new) = (old.sealed.unwrap(), new.sealed.unwrap());
        // The value is as it was; only its wrapped key changed, to the current version.
        assert_eq!((old.nonce, &old.ciphertext), (new.nonce, &new.ciphertext));
        assert_ne!(old.key, new.key);
        assert!(v.keys.is_current(&new.key).await.unwrap());
        assert!(!v.keys.is_current(&old.key).await.unwrap());
        assert_eq!(
            v.ledger.reveal_card(t, id).await.unwrap().pan.as_str(),
            *pan
        );
    }
    // Again: nothing left to do (a walk that stopped is resumed by running it again).
    let again = v.ledger.rewrap_all(|_| {}).await.unwrap();
    assert_eq!(again.rewrapped, 0, "{again:?}");
    // Four cards (one deleted) and the fingerprint key.
    assert_eq!(again.current, 5, "{again:?}");
}
