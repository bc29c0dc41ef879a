//! Every bound the ledger enforces, in one place.
//!
//! Each constant is the default or the hard ceiling for one limit; the ones that are configurable
//! say so and are overridden through [`crate::CommitConfig`] or the gateway's configuration. Tests
//! exercise each limit at its edge.

/// Largest amount of a single leg or transfer, in minor units: `i64::MAX`, so that every amount
/// also fits a signed 64-bit integer in any client language that has one.
pub const AMOUNT_MAX: u64 = i64::MAX as u64;

/// Most metadata entries on an account or transfer.
pub const METADATA_KEYS_MAX: usize = 16;
/// Longest metadata key, in bytes.
pub const METADATA_KEY_LEN_MAX: usize = 64;
/// Longest metadata value, in bytes.
pub const METADATA_VALUE_LEN_MAX: usize = 512;

/// Longest description or name, in bytes.
pub const DESCRIPTION_LEN_MAX: usize = 512;
/// Longest external reference, in bytes.
pub const EXTERNAL_REF_LEN_MAX: usize = 128;
/// Longest tenant id, in bytes.
pub const TENANT_LEN_MAX: usize = 64;
/// Longest `Idempotency-Key`, in bytes.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

/// Fewest legs of a journal entry.
pub const LEGS_MIN: usize = 2;
/// Most legs of a journal entry.
pub const LEGS_MAX: usize = 64;

/// Most transfers in one batch request.
pub const BATCH_TRANSFERS_MAX: usize = 1000;

/// Most entries one transaction writes to one stored entry page of an account (see `history`);
/// a transaction with more writes several pages. The first page also takes the entries the
/// account's head kept (under a write unit's worth). At under 100 bytes an entry, a page stays
/// far below DynamoDB's 400 KB item limit.
pub const ENTRY_PAGE_LEN_MAX: usize = 256;
/// Most transfers in one pack (`transfer_pack.rs`); below 2^20, the ids a pack can number.
pub const TRANSFER_PACK_LEN_MAX: usize = 256;
/// Most bytes of transfer records in one pack: far below DynamoDB's 400 KB item, with room
/// for a transfer of the pack to grow when this batch also posts or reverses it.
pub const TRANSFER_PACK_BYTES_MAX: usize = 64 << 10;
/// Most entry pages a history listing reads from the store at a time.
pub const HISTORY_ITEMS_PER_READ: usize = 64;

/// Default page size of every list.
pub const PAGE_LEN_DEFAULT: usize = 50;
/// Largest page size a client may ask for.
pub const PAGE_LEN_MAX: usize = 500;

/// Shortest hold timeout, in seconds.
pub const HOLD_TIMEOUT_S_MIN: u64 = 1;
/// Longest hold timeout, in seconds (30 days).
pub const HOLD_TIMEOUT_S_MAX: u64 = 30 * 24 * 3600;
/// Partitions of the hold-expiry index; spreads expiry items over several store partitions.
pub const HOLD_EXPIRY_SHARDS: u32 = 16;
/// Most expired holds voided per sweep round.
pub const HOLD_SWEEP_BATCH_MAX: usize = 256;

/// Default depth of the group-commit queue (configurable); a full queue sheds load.
pub const COMMIT_QUEUE_LEN_DEFAULT: usize = 4096;
/// Default number of commands coalesced into one storage transaction (configurable).
pub const COMMIT_BATCH_LEN_DEFAULT: usize = 512;
/// Default time the committer waits for more commands after the first, in microseconds
/// (configurable). Zero: commit what is queued as soon as the previous commit is done.
pub const COMMIT_WAIT_US_DEFAULT: u64 = 0;
/// Default number of times a batch is re-planned after a concurrent writer won a condition.
pub const COMMIT_RETRIES_DEFAULT: u32 = 8;

/// Most account heads a trial balance reads per page.
pub const TRIAL_BALANCE_PAGE_LEN: usize = 500;
/// Most collects a trial balance makes before it reports that writes never paused.
pub const TRIAL_BALANCE_COLLECTS_MAX: u32 = 8;

/// Default longest time a data key of the card vault is cached, for sealing and for opening
/// (configurable, [`crate::vault::VaultConfig`]): a leaked process image holds at most this
/// much of a tenant's data keys, and a rotation reaches new data keys within it.
pub const DATA_KEY_AGE_DEFAULT: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// Shortest setting of the data-key age: below it every seal would call the key service.
pub const DATA_KEY_AGE_MIN: std::time::Duration = std::time::Duration::from_secs(1);
/// Longest setting of the data-key age.
pub const DATA_KEY_AGE_MAX: std::time::Duration = std::time::Duration::from_secs(60 * 60);
/// Default number of values one data key seals before a new one is generated (configurable).
/// Nonces are 96 random bits, and NIST SP 800-38D (section 8.3) allows at most 2^32
/// encryptions under one key with random nonces; 2^20 keeps the chance of a repeated nonce
/// near 2^-57.
pub const DATA_KEY_USES_DEFAULT: u64 = 1 << 20;
/// Largest setting of the data-key uses: 2^24, a repeated-nonce chance near 2^-49 and 256 times
/// under the 2^32 limit.
pub const DATA_KEY_USES_MAX: u64 = 1 << 24;
/// Default number of data keys cached, for sealing (one per tenant and purpose) and, apart,
/// for opening (configurable); the oldest goes first.
pub const DATA_KEY_CACHE_LEN_DEFAULT: usize = 1024;
/// Largest setting of the data-key cache.
pub const DATA_KEY_CACHE_LEN_MAX: usize = 1 << 16;
/// Most rewrapped data keys the vault remembers (old wrapped key to new), so that every record
/// sharing a data key costs one rewrap, not one each.
pub const REWRAP_MEMO_LEN_MAX: usize = 4096;
/// Longest value the vault seals, in bytes (card data is a few hundred).
pub const SEALED_VALUE_BYTES_MAX: usize = 64 << 10;
/// Longest record id a sealed value is bound to, in bytes.
pub const RECORD_ID_LEN_MAX: usize = 256;
/// Longest wrapped data key, in bytes (a KMS ciphertext blob of a 256-bit data key is under
/// 200; a local one 60).
pub const WRAPPED_KEY_BYTES_MAX: usize = 1024;
/// Longest key id, in bytes (an ARN is at most 2048).
pub const KEY_ID_LEN_MAX: usize = 2048;
/// Default cryptoperiod of a master key: past it, `keys status` and the start-up log call the
/// key overdue for rotation. AWS KMS rotates yearly by default.
pub const CRYPTOPERIOD_DEFAULT: std::time::Duration =
    std::time::Duration::from_secs(365 * 24 * 3600);
/// Shortest cryptoperiod setting.
pub const CRYPTOPERIOD_MIN: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Longest cryptoperiod setting: NIST SP 800-57 Part 1 (5.3.6) gives a key-wrapping key at most
/// two years of use.
pub const CRYPTOPERIOD_MAX: std::time::Duration =
    std::time::Duration::from_secs(2 * 365 * 24 * 3600);

/// Partitions of a tenant's cards (`layout::card`): a tenant that tokenizes many cards writes
/// to this many partitions, not one (a DynamoDB partition takes about 1,000 writes a second).
pub const CARD_SHARDS: u32 = 16;
/// Longest cardholder name, in bytes.
pub const CARDHOLDER_NAME_LEN_MAX: usize = 128;
/// Longest stated reason for revealing a card number, in bytes.
pub const REVEAL_REASON_LEN_MAX: usize = 256;
/// Shortest stated reason for revealing a card number, in bytes.
pub const REVEAL_REASON_LEN_MIN: usize = 8;
/// Most cards read per page when `keys rewrap` walks a card partition.
pub const REWRAP_PAGE_LEN: usize = 100;
