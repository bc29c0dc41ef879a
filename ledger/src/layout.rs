//! Where each record lives in the store: the single-table key design.
//!
//! | record | partition key | sort key |
//! |---|---|---|
//! | account head | `T#{tenant}#A#{account}` | `HEAD` |
//! | account entry page | `T#{tenant}#A#{account}` | `E#{at_us:020}#{first_seq:020}` |
//! | account list | `T#{tenant}#ACCOUNTS` | `{account}` |
//! | external reference | `T#{tenant}#REF` | `{external_ref}` |
//! | transfer pack | `T#{tenant}#TRANSFERS` | `{first transfer, without its last 4 characters}` |
//! | transfer, as changed after its pack | `T#{tenant}#X#{transfer}` | `STATE` |
//! | transfer (builds before packs) | `T#{tenant}#TRANSFERS` | `{transfer}` |
//! | idempotency record | `T#{tenant}#IDEM#{key}` | `IDEM` |
//! | hold expiry | `HOLDS#{shard:02}` | `{expires_at_us:020}#{tenant}#{transfer}` |
//! | tenant registry | `TENANTS` | `{tenant}` |
//! | the cursor key | `SECRETS` | `CURSOR` |
//! | card (vault) | `T#{tenant}#CARDS#{shard:02}` | `{card}` |
//! | the PAN-fingerprint key, wrapped | `SECRETS` | `FINGERPRINT` |
//! | audit stream registry | `AUDIT` | `{stream}` |
//! | audit records of one commit | `AUDIT#{stream}` | `B#{first_seq:020}` |
//! | audit checkpoint | `AUDIT#{stream}` | `C#{tree_size:020}` |
//!
//! Every key whose partition starts with `AUDIT` is append-only: the store refuses anything
//! but a put conditioned on the item's absence (`store::check_transaction`), and SQLite's
//! schema refuses updates and deletes of them.
//!
//! Every tenant-owned key starts with the tenant, which the gateway takes from a verified token:
//! another tenant's id simply names a key that does not exist, so it answers 404. An account's
//! head and entries share a partition; entry sort keys order by time, then sequence, and the
//! committer never writes an entry earlier than the account's last, so one range query answers
//! both "history" and "balance as of".

use crate::ids::{AccountId, CardId, IdempotencyKey, TenantId, TransferId};
use crate::limits::{CARD_SHARDS, HOLD_EXPIRY_SHARDS};
use crate::store::{Key, Query};
use crate::time::Timestamp;

const HEAD: &str = "HEAD";
const ENTRY_PREFIX: &str = "E#";

/// `T#{tenant}#{kind}`, with room for what follows.
fn tenant_prefix(tenant: &TenantId, kind: &str, more: usize) -> String {
    let tenant = tenant.as_str();
    let mut out = String::with_capacity(3 + tenant.len() + kind.len() + more);
    out.push_str("T#");
    out.push_str(tenant);
    out.push('#');
    out.push_str(kind);
    out
}

/// Appends `n` as 20 decimal digits, zero-padded (as `{:020}` does for a `u64`).
fn push_020(out: &mut String, mut n: u64) {
    let mut digits = [b'0'; 20];
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend(digits.iter().map(|&d| char::from(d)));
}

/// The partition of an account: head and entries.
pub fn account_partition(tenant: &TenantId, account: &AccountId) -> String {
    let mut pk = tenant_prefix(tenant, "A#", AccountId::TEXT_LEN);
    account.push_to(&mut pk);
    pk
}

/// An account's head: its current state and balances.
pub fn account(tenant: &TenantId, account: &AccountId) -> Key {
    Key::new(account_partition(tenant, account), HEAD)
}

/// The item holding an account's entry `seq` at `at` and those after it that the same
/// transaction made (an entry page, see `history`): the page is keyed by its first entry.
pub fn entry(tenant: &TenantId, account: &AccountId, at: Timestamp, seq: u64) -> Key {
    let sk = match u64::try_from(at.micros()) {
        Ok(micros) => {
            let mut sk = String::with_capacity(ENTRY_PREFIX.len() + 20 + 1 + 20);
            sk.push_str(ENTRY_PREFIX);
            push_020(&mut sk, micros);
            sk.push('#');
            push_020(&mut sk, seq);
            sk
        }
        // Before 1970: never for a real posting, but the key stays what it always was.
        Err(_) => format!("{ENTRY_PREFIX}{:020}#{seq:020}", at.micros()),
    };
    Key::new(account_partition(tenant, account), sk)
}

/// All entries of an account up to and including `until`.
pub fn entries_until(
    tenant: &TenantId,
    account: &AccountId,
    until: Timestamp,
    limit: usize,
) -> Query {
    let mut query = Query::prefix(account_partition(tenant, account), ENTRY_PREFIX, limit);
    // Sort keys at `until` continue with '#'; '$' sorts right after it.
    query.to = format!("{ENTRY_PREFIX}{:020}$", until.micros().max(0));
    query
}

/// All entries of an account.
pub fn entries(tenant: &TenantId, account: &AccountId, limit: usize) -> Query {
    Query::prefix(account_partition(tenant, account), ENTRY_PREFIX, limit)
}

/// The partition listing a tenant's accounts.
pub fn account_list(tenant: &TenantId) -> String {
    format!("T#{tenant}#ACCOUNTS")
}

/// An account's row in its tenant's list.
pub fn account_list_item(tenant: &TenantId, account: &AccountId) -> Key {
    Key::new(account_list(tenant), account.to_string())
}

/// An external reference, which holds the account id it belongs to.
pub fn external_ref(tenant: &TenantId, external_ref: &str) -> Key {
    Key::new(format!("T#{tenant}#REF"), external_ref)
}

/// The partition of a tenant's transfers.
pub fn transfers(tenant: &TenantId) -> String {
    tenant_prefix(tenant, "TRANSFERS", 0)
}

/// The pack holding a transfer: its sort key is the pack's common id prefix, so a pack sorts
/// among single transfers by its ids (`transfer_pack.rs`).
pub fn transfer_pack(tenant: &TenantId, transfer: &TransferId) -> Key {
    let mut sk = String::with_capacity(TransferId::TEXT_LEN);
    transfer.pack_base().push_to(&mut sk);
    sk.truncate(TransferId::TEXT_LEN - PACK_INDEX_CHARS);
    Key::new(transfers(tenant), sk)
}

/// Characters at the end of a transfer id's text that its pack index spans (20 bits).
const PACK_INDEX_CHARS: usize = 4;

/// A transfer as changed after the batch that created it (posted, voided, reversed): it
/// supersedes the transfer's copy in its pack. One partition per transfer, like idempotency
/// records, so changes spread over the table.
pub fn transfer_state(tenant: &TenantId, transfer: &TransferId) -> Key {
    let mut pk = tenant_prefix(tenant, "X#", TransferId::TEXT_LEN);
    transfer.push_to(&mut pk);
    Key::new(pk, "STATE")
}

/// A transfer as builds before packs stored it (also where they changed it).
pub fn transfer(tenant: &TenantId, transfer: &TransferId) -> Key {
    let mut sk = String::with_capacity(TransferId::TEXT_LEN);
    transfer.push_to(&mut sk);
    Key::new(transfers(tenant), sk)
}

/// The record of an idempotency key.
pub fn idempotency(tenant: &TenantId, key: &IdempotencyKey) -> Key {
    let mut pk = tenant_prefix(tenant, "IDEM#", key.as_str().len());
    pk.push_str(key.as_str());
    Key::new(pk, "IDEM")
}

/// The partition of one shard of the hold-expiry index.
pub fn hold_shard(shard: u32) -> String {
    format!("HOLDS#{shard:02}")
}

/// A pending transfer's row in the expiry index.
pub fn hold_expiry(tenant: &TenantId, transfer: &TransferId, expires_at: Timestamp) -> Key {
    // The shard comes from the id's random bits, so holds spread evenly.
    let shard =
        u32::try_from(transfer_random_bits(transfer) % u64::from(HOLD_EXPIRY_SHARDS)).unwrap_or(0);
    Key::new(
        hold_shard(shard),
        format!("{:020}#{tenant}#{transfer}", expires_at.micros()),
    )
}

/// The holds of one shard that expire at or before `now`.
pub fn holds_expired_by(shard: u32, now: Timestamp, limit: usize) -> Query {
    let mut query = Query::prefix(hold_shard(shard), "", limit);
    query.to = format!("{:020}$", now.micros().max(0));
    query
}

/// Parses a hold-expiry sort key back into tenant and transfer.
pub fn parse_hold_expiry(sk: &str) -> Option<(TenantId, TransferId)> {
    let mut parts = sk.splitn(3, '#');
    let _expires = parts.next()?;
    let tenant = TenantId::new(parts.next()?)?;
    let transfer = parts.next()?.parse().ok()?;
    Some((tenant, transfer))
}

/// The registry of tenants, for operator-wide checks such as the trial balance command.
pub const TENANTS: &str = "TENANTS";

/// The key that authenticates cursors, shared by every process on the store.
pub fn cursor_secret() -> Key {
    Key::new("SECRETS", "CURSOR")
}

/// The PAN-fingerprint key, wrapped by the key service; shared by every process on the store.
pub fn fingerprint_secret() -> Key {
    Key::new("SECRETS", "FINGERPRINT")
}

/// The partition of one shard of a tenant's cards.
pub fn card_partition(tenant: &TenantId, shard: u32) -> String {
    format!("T#{tenant}#CARDS#{shard:02}")
}

/// A card's record: its masked form, fingerprint and sealed number (see `card.rs`).
pub fn card(tenant: &TenantId, card: &CardId) -> Key {
    Key::new(card_partition(tenant, card.shard()), card.to_string())
}

/// Every shard of a tenant's cards, for walking them all (`keys rewrap`).
pub fn card_shards(tenant: &TenantId) -> impl Iterator<Item = String> + '_ {
    (0..CARD_SHARDS).map(move |shard| card_partition(tenant, shard))
}

/// What every audit partition starts with.
pub const AUDIT_PREFIX: &str = "AUDIT";
/// The registry of audit streams.
pub const AUDIT_STREAMS: &str = "AUDIT";
/// Sort-key prefix of a stream's record blocks.
pub const AUDIT_BLOCK_PREFIX: &str = "B#";
/// Sort-key prefix of a stream's checkpoints.
pub const AUDIT_CHECKPOINT_PREFIX: &str = "C#";

/// Whether a key belongs to the audit log.
pub fn is_audit(key: &Key) -> bool {
    key.pk.starts_with(AUDIT_PREFIX)
}

/// A stream's row in the registry.
pub fn audit_stream(stream: &str) -> Key {
    Key::new(AUDIT_STREAMS, stream)
}

/// The partition of one audit stream.
pub fn audit_partition(stream: &str) -> String {
    format!("{AUDIT_PREFIX}#{stream}")
}

/// The block of a stream's records that starts at `first_seq`.
pub fn audit_block(stream: &str, first_seq: u64) -> Key {
    let mut sk = String::with_capacity(22);
    sk.push_str(AUDIT_BLOCK_PREFIX);
    push_020(&mut sk, first_seq);
    Key::new(audit_partition(stream), sk)
}

/// A stream's checkpoint of the tree of `size` records.
pub fn audit_checkpoint(stream: &str, size: u64) -> Key {
    let mut sk = String::with_capacity(22);
    sk.push_str(AUDIT_CHECKPOINT_PREFIX);
    push_020(&mut sk, size);
    Key::new(audit_partition(stream), sk)
}

/// The number in a block's or checkpoint's sort key.
pub fn audit_sk_number(sk: &str) -> Option<u64> {
    sk.get(2..)?.parse().ok()
}

/// A tenant's row in the registry.
pub fn tenant(tenant: &TenantId) -> Key {
    Key::new(TENANTS, tenant.as_str())
}

fn transfer_random_bits(transfer: &TransferId) -> u64 {
    let text = transfer.to_string();
    // The last characters of a ULID are random; fold them.
    text.bytes().rev().take(8).fold(0u64, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u64::from(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdGen;

    #[test]
    fn keys_read_as_the_table_says() {
        let t = TenantId::new("acme").expect("tenant");
        let ids = IdGen::new();
        let a = ids.account(Timestamp::from_micros(5));
        let x = ids.transfer(Timestamp::from_micros(5));
        let mut pushed = String::new();
        a.push_to(&mut pushed);
        assert_eq!(pushed, a.to_string());
        assert_eq!(pushed.parse::<AccountId>(), Ok(a));
        assert!(
            pushed.starts_with("acct_") && pushed.len() == AccountId::TEXT_LEN,
            "{pushed}"
        );
        assert_eq!(AccountId::TEXT_LEN, 31);
        assert_eq!(account(&t, &a).pk, format!("T#acme#A#{a}"));
        assert_eq!(
            entry(&t, &a, Timestamp::from_micros(1_795_464_222_658_766), 7).sk,
            "E#00001795464222658766#00000000000000000007"
        );
        assert_eq!(
            entry(&t, &a, Timestamp::from_micros(0), u64::MAX).sk,
            format!("E#{:020}#{:020}", 0, u64::MAX)
        );
        assert_eq!(
            entry(&t, &a, Timestamp::from_micros(-3), 1).sk,
            format!("E#{:020}#{:020}", -3, 1)
        );
        assert_eq!(
            transfer(&t, &x),
            Key::new("T#acme#TRANSFERS", x.to_string())
        );
        let key = IdempotencyKey::new("order-1").expect("key");
        assert_eq!(
            idempotency(&t, &key),
            Key::new("T#acme#IDEM#order-1", "IDEM")
        );
    }

    #[test]
    fn entry_keys_sort_by_time_then_sequence() {
        let t = TenantId::new("acme").expect("tenant");
        let a = IdGen::new().account(Timestamp::from_micros(5));
        let k = |at, seq| entry(&t, &a, Timestamp::from_micros(at), seq).sk;
        assert!(k(10, 1) < k(10, 2));
        assert!(k(10, 9) < k(11, 1));
        assert!(k(9, 100) < k(10, 1));
        let until = entries_until(&t, &a, Timestamp::from_micros(10), 5);
        assert!(k(10, u64::MAX) <= until.to && k(11, 0) > until.to);
    }

    #[test]
    fn hold_expiry_round_trips() {
        let t = TenantId::new("acme").expect("tenant");
        let x = IdGen::new().transfer(Timestamp::from_micros(5));
        let key = hold_expiry(&t, &x, Timestamp::from_micros(1_000));
        assert_eq!(parse_hold_expiry(&key.sk), Some((t, x)));
        let shard: u32 = key.pk.trim_start_matches("HOLDS#").parse().expect("shard");
        let by = holds_expired_by(shard, Timestamp::from_micros(1_000), 10);
        assert!(by.from <= key.sk && key.sk <= by.to);
        let early = holds_expired_by(shard, Timestamp::from_micros(999), 10);
        assert!(key.sk > early.to);
    }
}
