//! The card calls of [`Ledger`]: tokenize, get, reveal, delete, and re-wrapping every stored
//! data key under the key service's current key (`keys rewrap`).
//!
//! Sealing happens here, before the command reaches the committer, so the committer and the
//! store only ever see the sealed record. The number is sealed under the tenant's card data key
//! with the card's id as associated data (`vault`), so a record copied to another id or tenant
//! does not open.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{Card, CardRecord, CardSecret, NewCard, RevealedCard};
use crate::codec::{decode, encode};
use crate::command::{Committed, Op, Outcome};
use crate::error::{Error, Result};
use crate::ids::{CardId, IdempotencyKey, TenantId};
use crate::layout;
use crate::limits::REWRAP_PAGE_LEN;
use crate::service::{Ledger, unexpected};
use crate::store::{Condition, Item, Key, Query, StoreError, WriteOp};
use crate::vault::{KeyContext, Purpose, Scope, Secret, WrappedKey};

/// The context of a tenant's card data keys.
fn card_context(tenant: &TenantId) -> KeyContext {
    KeyContext {
        scope: Scope::Tenant(tenant.clone()),
        purpose: Purpose::CardData,
    }
}

/// The context of the deployment's PAN-fingerprint key.
fn fingerprint_context() -> KeyContext {
    KeyContext {
        scope: Scope::Deployment,
        purpose: Purpose::FingerprintKey,
    }
}

/// Reads the wrapped fingerprint key from the store and unwraps it, or creates it there (a
/// write conditioned on its absence, so that every process ends up with the same key).
pub(crate) async fn load_fingerprint_key(ledger: &Ledger) -> Result<Secret> {
    let vault = ledger.vault()?;
    let store = ledger.store()?;
    let key = layout::fingerprint_secret();
    for _ in 0..3 {
        if let Some(item) = store.get(key.clone()).await? {
            let wrapped: WrappedKey = decode(&item)?;
            return Ok(vault.open_secret(&fingerprint_context(), &wrapped).await?);
        }
        let (secret, wrapped) = vault.new_secret(&fingerprint_context()).await?;
        let create = WriteOp::Put {
            item: Item {
                key: key.clone(),
                version: 1,
                body: encode(&wrapped),
            },
            condition: Condition::NotExists,
        };
        match store.transact_write(vec![create]).await {
            Ok(()) => return Ok(secret),
            // Another process created it first: read that one.
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(Error::Store(e)),
        }
    }
    Err(Error::Contention)
}

/// Counts of a `keys rewrap` walk so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RewrapProgress {
    /// Tenants whose cards were all walked.
    pub tenants_done: u64,
    /// Card records read.
    pub cards_seen: u64,
    /// Data keys re-wrapped and written back.
    pub rewrapped: u64,
    /// Records already under the current key (the fingerprint key counts as one), or
    /// deleted.
    pub current: u64,
    /// Records another writer changed meanwhile (read again and handled).
    pub raced: u64,
}

impl Ledger {
    /// Tokenizes a card: checks, fingerprints and seals it, and stores the record. A retry with
    /// the same key and the same card returns the first answer.
    pub async fn tokenize_card(
        &self,
        tenant: &TenantId,
        key: IdempotencyKey,
        new: NewCard,
    ) -> Result<Committed<Card>> {
        let vault = self.vault()?;
        let fingerprint_key = self.fingerprint_key().await?;
        let request = request_digest(fingerprint_key.bytes(), tenant, &new);
        let id = self.new_card_id();
        let card = Card {
            id,
            brand: new.pan.brand(),
            bin: new.pan.bin().to_owned(),
            last4: new.pan.last4().to_owned(),
            pan_len: u8::try_from(new.pan.digits().len()).unwrap_or(u8::MAX),
            expiry: new.expiry,
            fingerprint: new.pan.fingerprint(fingerprint_key.bytes(), tenant),
            created_at: self.now(),
        };
        let secret = CardSecret {
            pan: new.pan.digits().to_owned(),
            name: new.name.to_string(),
        };
        let plaintext = seal_input(&secret);
        let sealed = vault
            .seal(&card_context(tenant), &id.to_string(), &plaintext)
            .await?;
        let record = CardRecord {
            card,
            sealed: Some(sealed),
            deleted_at: None,
        };
        let committed = self
            .submit(
                tenant,
                Some(key),
                Op::CreateCard {
                    request,
                    record: Box::new(record),
                },
            )
            .await?;
        expect_card(committed)
    }

    /// A card's shown part; not found once deleted.
    pub async fn get_card(&self, tenant: &TenantId, id: &CardId) -> Result<Card> {
        let record = self.card_record(tenant, id).await?;
        match record.sealed {
            Some(_) => Ok(record.card),
            None => Err(Error::NotFound),
        }
    }

    /// A card with its number, for the privileged reveal (the gateway checks the scope, the
    /// stated reason and the reveal rate, and records the access).
    pub async fn reveal_card(&self, tenant: &TenantId, id: &CardId) -> Result<RevealedCard> {
        let vault = self.vault()?;
        let record = self.card_record(tenant, id).await?;
        let Some(sealed) = &record.sealed else {
            return Err(Error::NotFound);
        };
        let plaintext = vault
            .open(&card_context(tenant), &id.to_string(), sealed)
            .await?;
        let secret: CardSecret = postcard::from_bytes(&plaintext)
            .map_err(|e| Error::Corrupt(format!("card {id} opened to an unreadable value: {e}")))?;
        Ok(RevealedCard {
            card: record.card,
            pan: Zeroizing::new(secret.pan.clone()),
            name: Zeroizing::new(secret.name.clone()),
        })
    }

    /// Deletes a card: its sealed number is destroyed; its id stays taken.
    pub async fn delete_card(
        &self,
        tenant: &TenantId,
        key: IdempotencyKey,
        id: CardId,
    ) -> Result<Committed<Card>> {
        let committed = self
            .submit(tenant, Some(key), Op::DeleteCard { card: id })
            .await?;
        expect_card(committed)
    }

    async fn card_record(&self, tenant: &TenantId, id: &CardId) -> Result<CardRecord> {
        let item = self
            .store()?
            .get(layout::card(tenant, id))
            .await?
            .ok_or(Error::NotFound)?;
        let record: CardRecord = decode(&item)?;
        if record.card.id != *id {
            return Err(Error::Corrupt(format!(
                "item {:?} holds card {}",
                item.key, record.card.id
            )));
        }
        Ok(record)
    }

    /// Re-wraps every stored data key (each card's, and the fingerprint key) under the key
    /// service's current key, without decrypting any card number: the sealed values stay as
    /// they are, only their wrapped keys change. Records already under the current key are
    /// left alone, so a walk that stopped half-way is resumed by running it again; each write
    /// is conditioned on the version read, so a card deleted meanwhile is read again, not
    /// resurrected. `progress` is called after every page.
    pub async fn rewrap_all(
        &self,
        mut progress: impl FnMut(&RewrapProgress),
    ) -> Result<RewrapProgress> {
        let vault = self.vault()?.clone();
        let store = self.store()?;
        let mut counts = RewrapProgress::default();
        // The fingerprint key first: it is one item.
        if let Some(item) = store.get(layout::fingerprint_secret()).await? {
            let wrapped: WrappedKey = decode(&item)?;
            if let Some(new) = vault.rewrap_key(&fingerprint_context(), &wrapped).await? {
                self.put_at_version(&item, encode(&new)).await?;
                counts.rewrapped += 1;
            } else {
                counts.current += 1;
            }
        }
        let mut tenants = Query::prefix(layout::TENANTS, "", REWRAP_PAGE_LEN);
        loop {
            let page = store.query(tenants.clone()).await?;
            for item in &page.items {
                let tenant: TenantId = decode(item)?;
                for pk in layout::card_shards(&tenant) {
                    self.rewrap_partition(&tenant, pk, &mut counts, &mut progress)
                        .await?;
                }
                counts.tenants_done += 1;
                progress(&counts);
            }
            match page.next {
                Some(next) => tenants.after = Some(next),
                None => break,
            }
        }
        Ok(counts)
    }

    async fn rewrap_partition(
        &self,
        tenant: &TenantId,
        pk: String,
        counts: &mut RewrapProgress,
        progress: &mut impl FnMut(&RewrapProgress),
    ) -> Result<()> {
        let store = self.store()?;
        let mut query = Query::prefix(pk, "card_", REWRAP_PAGE_LEN);
        loop {
            let page = store.query(query.clone()).await?;
            for item in &page.items {
                counts.cards_seen += 1;
                self.rewrap_card(tenant, item.clone(), counts).await?;
            }
            progress(counts);
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Re-wraps one card's data key; a record changed meanwhile is read again (at most a few
    /// times: only a deletion changes a card).
    async fn rewrap_card(
        &self,
        tenant: &TenantId,
        mut item: Item,
        counts: &mut RewrapProgress,
    ) -> Result<()> {
        let vault = self.vault()?;
        for _ in 0..3 {
            let mut record: CardRecord = decode(&item)?;
            let Some(sealed) = &record.sealed else {
                counts.current += 1;
                return Ok(());
            };
            let Some(new) = vault.rewrap(&card_context(tenant), sealed).await? else {
                counts.current += 1;
                return Ok(());
            };
            record.sealed = Some(new);
            match self.put_at_version(&item, encode(&record)).await {
                Ok(()) => {
                    counts.rewrapped += 1;
                    return Ok(());
                }
                Err(Error::Store(StoreError::ConditionFailed { .. })) => {
                    counts.raced += 1;
                    match self.store()?.get(item.key.clone()).await? {
                        Some(again) => item = again,
                        None => return Ok(()),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Contention)
    }

    /// Replaces `item` with `body`, conditioned on the version it was read at.
    async fn put_at_version(&self, item: &Item, body: Vec<u8>) -> Result<()> {
        let op = WriteOp::Put {
            item: Item {
                key: Key::clone(&item.key),
                version: item.version + 1,
                body,
            },
            condition: Condition::Version(item.version),
        };
        Ok(self.store()?.transact_write(vec![op]).await?)
    }
}

/// The plaintext the vault seals: the number and the name, in a buffer zeroized on drop.
fn seal_input(secret: &CardSecret) -> Zeroizing<Vec<u8>> {
    let capacity = secret.pan.len() + secret.name.len() + 16;
    // Sized up front so that encoding does not reallocate and leave a copy behind.
    let buffer = Vec::with_capacity(capacity);
    Zeroizing::new(postcard::to_extend(secret, buffer).unwrap_or_default())
}

/// A keyed digest of a tokenize request (number, expiry, name), its idempotency fingerprint:
/// keyed, so that the idempotency record holds nothing a PAN could be guessed from.
fn request_digest(key: &[u8; 32], tenant: &TenantId, new: &NewCard) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"strongroom/card-request/v1\0");
    for part in [
        tenant.as_str().as_bytes(),
        new.pan.digits().as_bytes(),
        new.name.as_bytes(),
    ] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.update(&[new.expiry.month]);
    mac.update(&new.expiry.year.to_be_bytes());
    mac.finalize().into_bytes().into()
}

fn expect_card(committed: Committed<Outcome>) -> Result<Committed<Card>> {
    match committed.value {
        Outcome::Card(card) => Ok(Committed {
            value: card,
            replayed: committed.replayed,
        }),
        other => Err(unexpected(&other)),
    }
}
