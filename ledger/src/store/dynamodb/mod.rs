//! The production backend: one DynamoDB table, spoken to with the AWS SDK.
//!
//! The table is the store's shape one to one: partition key `pk` (string), sort key `sk`
//! (string), and two attributes, `v` (number: the item's version) and `b` (binary: its body).
//! No index: every read is a point read or a range of one partition (ARCHITECTURE.md says why
//! each record lives where it does).
//!
//! | store call | DynamoDB |
//! |---|---|
//! | `transact_write` | `TransactWriteItems`; `attribute_not_exists(pk)` or `v = :v` per action; a `ClientRequestToken` derived from the actions |
//! | `get_many` | `BatchGetItem` with `ConsistentRead`, 100 keys per call, unprocessed keys asked again |
//! | `query` | `Query` with `ConsistentRead` on one partition, `BETWEEN` on the sort key |
//! | `ping` | `DescribeTable` |
//!
//! Every call retries throttling, transaction conflicts, server errors and lost connections
//! with full-jitter exponential backoff, bounded in attempts and in time ([`RetryPolicy`]); each
//! retry is logged and counted ([`DynamoStats`]). The SDK's own retries are off, so that there is
//! one policy and every retry is seen. A write retried after a lost answer carries the same
//! `ClientRequestToken`, so DynamoDB applies it at most once; and since every ledger write is
//! conditioned on the versions it read, a write that did land makes its replay fail its
//! conditions rather than apply twice.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, KeySchemaElement, KeyType,
    KeysAndAttributes, Put, ScalarAttributeType, TransactWriteItem,
};
use sha2::{Digest, Sha256};

use crate::aws::describe;
use crate::metrics::Metric;

use super::{
    Condition, Item, Key, Page, Query, Store, StoreError, StoreLimits, WriteOp, check_transaction,
    item_bytes,
};

/// Most actions in one `TransactWriteItems` call (a service limit).
pub const DYNAMODB_TRANSACTION_ITEMS_MAX: usize = 100;
/// Largest body: DynamoDB's item limit is 400 KB counting attribute names and values; this
/// leaves room for the keys (each under 1 KB) and the version.
pub const DYNAMODB_ITEM_BYTES_MAX: usize = 400 * 1024 - 4 * 1024;
/// The size DynamoDB counts a write in: a transactional write costs 2 units per started KB.
pub const DYNAMODB_WRITE_UNIT_BYTES: usize = 1024;
/// Most bytes in one transaction (a service limit: 4 MB).
pub const DYNAMODB_TRANSACTION_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most keys in one `BatchGetItem` call (a service limit).
pub const DYNAMODB_BATCH_GET_MAX: usize = 100;
/// Default table name.
pub const DYNAMODB_TABLE_DEFAULT: &str = "strongroom-ledger";

const PK: &str = "pk";
const SK: &str = "sk";
const VERSION: &str = "v";
const BODY: &str = "b";

/// How failed calls are tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts of one call, the first included.
    pub attempts_max: u32,
    /// Backoff cap of the first retry; it doubles with each retry.
    pub base: Duration,
    /// Largest backoff cap.
    pub cap: Duration,
    /// No retry starts after this much time since the first attempt.
    pub total_max: Duration,
}

/// Default of [`RetryPolicy::attempts_max`].
pub const DYNAMODB_ATTEMPTS_MAX: u32 = 8;
/// Default of [`RetryPolicy::base`].
pub const DYNAMODB_BACKOFF_BASE: Duration = Duration::from_millis(25);
/// Default of [`RetryPolicy::cap`].
pub const DYNAMODB_BACKOFF_CAP: Duration = Duration::from_secs(1);
/// Default of [`RetryPolicy::total_max`].
pub const DYNAMODB_RETRY_TOTAL_MAX: Duration = Duration::from_secs(5);
/// Default of [`DynamoConfig::attempt_timeout`].
pub const DYNAMODB_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `create_table` waits for a new table to become active, and how often it looks.
pub const DYNAMODB_CREATE_WAIT_MAX: Duration = Duration::from_secs(60);
const DYNAMODB_CREATE_POLL: Duration = Duration::from_millis(200);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts_max: DYNAMODB_ATTEMPTS_MAX,
            base: DYNAMODB_BACKOFF_BASE,
            cap: DYNAMODB_BACKOFF_CAP,
            total_max: DYNAMODB_RETRY_TOTAL_MAX,
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in `[0, min(cap, base × 2^retry)]`.
    fn backoff(&self, retry: u32) -> Duration {
        crate::time::full_jitter(
            self.base
                .saturating_mul(1u32 << retry.min(16))
                .min(self.cap),
        )
    }

    /// The wait before retry number `retry + 1` of a call that started at `started`, or `None`
    /// when the policy is spent (attempts or time).
    fn next_pause(&self, started: Instant, retry: u32) -> Option<Duration> {
        let pause = self.backoff(retry);
        let attempts = retry.saturating_add(1);
        (attempts < self.attempts_max && started.elapsed() + pause <= self.total_max)
            .then_some(pause)
    }
}

/// Where and how to reach the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamoConfig {
    /// The table.
    pub table: String,
    /// AWS region; `None`: from the standard provider chain (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Endpoint override, for a local server (moto, DynamoDB Local).
    pub endpoint: Option<String>,
    /// Retries of every call.
    pub retry: RetryPolicy,
    /// Longest wait for one attempt's answer.
    pub attempt_timeout: Duration,
}

impl Default for DynamoConfig {
    fn default() -> Self {
        DynamoConfig {
            table: DYNAMODB_TABLE_DEFAULT.to_owned(),
            region: None,
            endpoint: None,
            retry: RetryPolicy::default(),
            attempt_timeout: DYNAMODB_ATTEMPT_TIMEOUT,
        }
    }
}

/// Counters of the calls made, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DynamoStats {
    /// Calls sent (attempts, retries included).
    pub requests: u64,
    /// Retries after throttling.
    pub retries_throttled: u64,
    /// Retries after a transaction conflict.
    pub retries_conflict: u64,
    /// Retries after a server error (5xx).
    pub retries_server: u64,
    /// Retries after a lost connection or a timeout.
    pub retries_network: u64,
    /// Calls that failed for good after retries.
    pub gave_up: u64,
    /// Transactions refused by a condition.
    pub conditions_failed: u64,
    /// Write capacity units DynamoDB reported consuming (when it reports them).
    pub write_capacity_units: f64,
    /// Transactions that applied.
    pub transactions: u64,
    /// Actions in them.
    pub items_written: u64,
    /// Write capacity units those transactions cost by DynamoDB's sizing rules
    /// ([`transactional_write_units`]), whether or not the server reports consumption.
    pub write_units_sized: u64,
}

/// Write capacity units of one transactional write of an item, by DynamoDB's sizing rules: an
/// item's size is the UTF-8 length of each attribute name plus its value (strings: UTF-8 bytes;
/// binary: bytes; numbers: about one byte per two significant digits, plus one); a
/// transactional write costs 2 units per started kilobyte. A delete is counted at the minimum
/// (the store deletes only small rows: hold-expiry markers).
pub fn transactional_write_units(op: &WriteOp) -> u64 {
    let bytes = match op {
        WriteOp::Put { item, .. } => item_bytes(&item.key, item.version, item.body.len()),
        WriteOp::Delete { .. } => 1,
    };
    2 * (bytes as u64).div_ceil(DYNAMODB_WRITE_UNIT_BYTES as u64)
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    retries_throttled: AtomicU64,
    retries_conflict: AtomicU64,
    retries_server: AtomicU64,
    retries_network: AtomicU64,
    gave_up: AtomicU64,
    conditions_failed: AtomicU64,
    /// Write capacity in thousandths of a unit.
    wcu_milli: AtomicU64,
    transactions: AtomicU64,
    items_written: AtomicU64,
    write_units_sized: AtomicU64,
}

impl Drop for Counters {
    /// When the store closes, its totals go to the log (the benchmarks read them there).
    fn drop(&mut self) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        if load(&self.requests) == 0 {
            return;
        }
        tracing::info!(
            requests = load(&self.requests),
            transactions = load(&self.transactions),
            items_written = load(&self.items_written),
            write_units_sized = load(&self.write_units_sized),
            write_units_reported = load(&self.wcu_milli) as f64 / 1000.0,
            retries_throttled = load(&self.retries_throttled),
            retries_conflict = load(&self.retries_conflict),
            retries_server = load(&self.retries_server),
            retries_network = load(&self.retries_network),
            gave_up = load(&self.gave_up),
            conditions_failed = load(&self.conditions_failed),
            "DynamoDB usage"
        );
    }
}

/// A DynamoDB store.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    retry: RetryPolicy,
    counters: Arc<Counters>,
}

/// Why a call may be tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transient {
    Throttled,
    Conflict,
    Server,
    Network,
}

/// How one attempt ended, when it did not succeed.
enum Failure {
    Retry(Transient, String),
    Fatal(StoreError),
}

impl DynamoStore {
    /// Connects with the standard AWS provider chain for credentials (and region, unless
    /// configured). Does not call DynamoDB: [`Store::ping`] does.
    pub async fn connect(config: &DynamoConfig) -> Result<DynamoStore, StoreError> {
        if config.table.is_empty() {
            return Err(StoreError::Invalid(
                "the DynamoDB table name is empty".into(),
            ));
        }
        let shared = crate::aws::sdk_config(
            config.region.as_deref(),
            config.endpoint.as_deref(),
            config.attempt_timeout,
        )
        .await
        .ok_or_else(|| {
            StoreError::Invalid("no AWS region: set dynamodb_region or AWS_REGION".into())
        })?;
        let sdk = aws_sdk_dynamodb::config::Builder::from(&shared).build();
        Ok(DynamoStore {
            client: Client::from_conf(sdk),
            table: config.table.as_str().into(),
            retry: config.retry,
            counters: Arc::new(Counters::default()),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> DynamoStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DynamoStats {
            requests: load(&c.requests),
            retries_throttled: load(&c.retries_throttled),
            retries_conflict: load(&c.retries_conflict),
            retries_server: load(&c.retries_server),
            retries_network: load(&c.retries_network),
            gave_up: load(&c.gave_up),
            conditions_failed: load(&c.conditions_failed),
            write_capacity_units: load(&c.wcu_milli) as f64 / 1000.0,
            transactions: load(&c.transactions),
            items_written: load(&c.items_written),
            write_units_sized: load(&c.write_units_sized),
        }
    }

    /// Adds `delta` to the counter item at `key` and returns the counter's new value: one
    /// `UpdateItem` with `ADD`, atomic across processes (the gateway's daily quotas, batched:
    /// one call per tenant per flush, not per request). The item has attribute `n` (the count)
    /// and `ttl` (`expires_at_s`, seconds since the epoch, for the table's time to live) and
    /// nothing the ledger reads: counters live in partitions of their own. A retry after a
    /// lost answer may add twice, so a counter can err high, never low.
    pub async fn add_to_counter(
        &self,
        key: &Key,
        delta: u64,
        expires_at_s: u64,
    ) -> Result<u64, StoreError> {
        let output = self
            .with_retries("UpdateItem", || {
                classified(
                    self.client
                        .update_item()
                        .table_name(self.table.as_ref())
                        .key("pk", AttributeValue::S(key.pk.clone()))
                        .key("sk", AttributeValue::S(key.sk.clone()))
                        .update_expression("ADD #n :delta SET #ttl = :ttl")
                        .expression_attribute_names("#n", "n")
                        .expression_attribute_names("#ttl", "ttl")
                        .expression_attribute_values(":delta", number(delta))
                        .expression_attribute_values(":ttl", number(expires_at_s))
                        .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
                        .send(),
                )
            })
            .await?;
        match output.attributes().and_then(|a| a.get("n")) {
            Some(AttributeValue::N(n)) => n
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("counter {key:?} holds {n:?}"))),
            _ => Err(StoreError::Corrupt(format!(
                "counter {key:?}: UpdateItem returned no count"
            ))),
        }
    }

    /// Creates the table (on-demand capacity) unless it exists, and waits until it is active.
    /// For development; production tables come from CloudFormation with the same definition.
    /// Returns whether it created the table.
    pub async fn create_table(&self) -> Result<bool, StoreError> {
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(build_error)
        };
        let created = self
            .client
            .create_table()
            .table_name(self.table.as_ref())
            .attribute_definitions(attribute(PK)?)
            .attribute_definitions(attribute(SK)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        let created = match created {
            Ok(_) => true,
            Err(e) if e.code() == Some("ResourceInUseException") => false,
            Err(e) => return Err(StoreError::Unavailable(describe(&e))),
        };
        let deadline = Instant::now() + DYNAMODB_CREATE_WAIT_MAX;
        loop {
            let table = self
                .client
                .describe_table()
                .table_name(self.table.as_ref())
                .send()
                .await
                .map_err(|e| StoreError::Unavailable(describe(&e)))?;
            let active = table
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| s.as_str() == "ACTIVE");
            if active {
                return Ok(created);
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "table {} did not become active within {:?}",
                    self.table, DYNAMODB_CREATE_WAIT_MAX
                )));
            }
            tokio::time::sleep(DYNAMODB_CREATE_POLL).await;
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retry policy is spent.
    async fn with_retries<T, F, Fut>(&self, call: &str, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let started = Instant::now();
        let mut retry = 0u32;
        loop {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let (kind, why) = match attempt().await {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(kind, why)) => (kind, why),
            };
            let next = self.retry.next_pause(started, retry);
            retry += 1;
            let Some(pause) = next else {
                self.counters.gave_up.fetch_add(1, Ordering::Relaxed);
                tracing::error!(call, attempts = retry, reason = ?kind, error = %why, "DynamoDB call failed; giving up");
                return Err(StoreError::Unavailable(format!(
                    "DynamoDB {call} failed after {retry} attempts: {why}"
                )));
            };
            let counter = match kind {
                Transient::Throttled => &self.counters.retries_throttled,
                Transient::Conflict => &self.counters.retries_conflict,
                Transient::Server => &self.counters.retries_server,
                Transient::Network => &self.counters.retries_network,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(call, retry, reason = ?kind, backoff_ms = pause.as_millis() as u64, error = %why, "DynamoDB call failed; retrying");
            tokio::time::sleep(pause).await;
        }
    }

    fn key_attributes(&self, key: &Key) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(key.pk.clone())),
            (SK.to_owned(), AttributeValue::S(key.sk.clone())),
        ])
    }

    fn action(&self, op: &WriteOp) -> Result<TransactWriteItem, StoreError> {
        let name = |alias: &str, attribute: &str| {
            Some(HashMap::from([(alias.to_owned(), attribute.to_owned())]))
        };
        let (condition_expression, names, values) = match condition_of(op) {
            Condition::None => (None, None, None),
            Condition::NotExists => (Some("attribute_not_exists(#pk)"), name("#pk", PK), None),
            Condition::Version(v) => (
                Some("#v = :v"),
                name("#v", VERSION),
                Some(HashMap::from([(":v".to_owned(), number(v))])),
            ),
        };
        Ok(match op {
            WriteOp::Put { item, .. } => {
                let mut attributes = self.key_attributes(&item.key);
                attributes.insert(VERSION.to_owned(), number(item.version));
                attributes.insert(
                    BODY.to_owned(),
                    AttributeValue::B(Blob::new(item.body.clone())),
                );
                let put = Put::builder()
                    .table_name(self.table.as_ref())
                    .set_item(Some(attributes))
                    .set_condition_expression(condition_expression.map(str::to_owned))
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(build_error)?;
                TransactWriteItem::builder().put(put).build()
            }
            WriteOp::Delete { key, .. } => {
                let delete = Delete::builder()
                    .table_name(self.table.as_ref())
                    .set_key(Some(self.key_attributes(key)))
                    .set_condition_expression(condition_expression.map(str::to_owned))
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(build_error)?;
                TransactWriteItem::builder().delete(delete).build()
            }
        })
    }

    async fn get_chunk(&self, keys: &[Key]) -> Result<HashMap<Key, Item>, StoreError> {
        let mut wanted: Vec<HashMap<String, AttributeValue>> =
            keys.iter().map(|k| self.key_attributes(k)).collect();
        let mut found = HashMap::with_capacity(keys.len());
        let started = Instant::now();
        let mut round = 0u32;
        while !wanted.is_empty() {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut wanted)))
                .consistent_read(true)
                .build()
                .map_err(build_error)?;
            let table = self.table.to_string();
            let answer = self
                .with_retries("BatchGetItem", || {
                    classified(
                        self.client
                            .batch_get_item()
                            .request_items(table.clone(), request.clone())
                            .send(),
                    )
                })
                .await;
            let answer = answer?;
            for attributes in answer
                .responses()
                .and_then(|r| r.get(self.table.as_ref()))
                .into_iter()
                .flatten()
            {
                let item = item_of(attributes)?;
                found.insert(item.key.clone(), item);
            }
            if let Some(rest) = answer
                .unprocessed_keys()
                .and_then(|u| u.get(self.table.as_ref()))
                .map(|k| k.keys().to_vec())
                .filter(|k| !k.is_empty())
            {
                // DynamoDB answered part of the batch (throttling or the response size limit).
                self.counters
                    .retries_throttled
                    .fetch_add(1, Ordering::Relaxed);
                let next = self.retry.next_pause(started, round);
                round += 1;
                let Some(pause) = next else {
                    self.counters.gave_up.fetch_add(1, Ordering::Relaxed);
                    return Err(StoreError::Unavailable(format!(
                        "DynamoDB BatchGetItem left {} keys unprocessed after {round} rounds",
                        rest.len()
                    )));
                };
                tracing::warn!(
                    keys = rest.len(),
                    round,
                    "BatchGetItem left keys unprocessed; asking again"
                );
                tokio::time::sleep(pause).await;
                wanted = rest;
            }
        }
        Ok(found)
    }
}

/// Classifies a failed SDK call.
trait Classify {
    fn failure(self) -> Failure;
}

impl<E, R> Classify for SdkError<E, R>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    fn failure(self) -> Failure {
        let why = describe(&self);
        match &self {
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or_default();
                if is_throttling(code) {
                    Failure::Retry(Transient::Throttled, why)
                } else if code == "TransactionInProgressException"
                    || code == "TransactionConflictException"
                {
                    Failure::Retry(Transient::Conflict, why)
                } else if code == "InternalServerError"
                    || code == "ServiceUnavailable"
                    || code.is_empty()
                {
                    // A 5xx without a code, too: the answer is not DynamoDB's own refusal.
                    Failure::Retry(Transient::Server, why)
                } else {
                    Failure::Fatal(StoreError::Unavailable(why))
                }
            }
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                Failure::Retry(Transient::Network, why)
            }
            SdkError::ResponseError(_) => Failure::Retry(Transient::Server, why),
            _ => Failure::Fatal(StoreError::Unavailable(why)),
        }
    }
}

/// An SDK call whose failure is classified for [`DynamoStore::with_retries`].
async fn classified<T, E, R>(
    call: impl std::future::Future<Output = Result<T, SdkError<E, R>>>,
) -> Result<T, Failure>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    call.await.map_err(Classify::failure)
}

fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "ThrottlingError"
            | "ProvisionedThroughputExceeded"
            | "Throttling"
    )
}

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Invalid(format!("DynamoDB request: {e}"))
}

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn condition_of(op: &WriteOp) -> Condition {
    match op {
        WriteOp::Put { condition, .. } | WriteOp::Delete { condition, .. } => *condition,
    }
}

fn item_of(attributes: &HashMap<String, AttributeValue>) -> Result<Item, StoreError> {
    let text = |name: &str| match attributes.get(name) {
        Some(AttributeValue::S(s)) => Ok(s.clone()),
        _ => Err(StoreError::Corrupt(format!(
            "DynamoDB item without a string {name}"
        ))),
    };
    let key = Key::new(text(PK)?, text(SK)?);
    let version = match attributes.get(VERSION) {
        Some(AttributeValue::N(n)) => n.parse::<u64>().ok().filter(|v| *v > 0),
        _ => None,
    }
    .ok_or_else(|| StoreError::Corrupt(format!("item {key:?}: no valid version")))?;
    let body = match attributes.get(BODY) {
        Some(AttributeValue::B(b)) => b.as_ref().to_vec(),
        _ => return Err(StoreError::Corrupt(format!("item {key:?}: no body"))),
    };
    Ok(Item { key, version, body })
}

/// The token that makes a retried transaction apply at most once: a digest of its actions, so
/// that the same actions get the same token (DynamoDB remembers tokens for ten minutes).
fn request_token(ops: &[WriteOp]) -> String {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    for op in ops {
        let (kind, key, version, body) = match op {
            WriteOp::Put { item, .. } => (b"P", &item.key, item.version, item.body.as_slice()),
            WriteOp::Delete { key, .. } => (b"D", key, 0, &[][..]),
        };
        let condition = match condition_of(op) {
            Condition::None => [0u8; 9],
            Condition::NotExists => {
                let mut c = [0u8; 9];
                c[0] = 1;
                c
            }
            Condition::Version(v) => {
                let mut c = [2u8; 9];
                c[1..].copy_from_slice(&v.to_le_bytes());
                c
            }
        };
        field(kind);
        field(key.pk.as_bytes());
        field(key.sk.as_bytes());
        field(&version.to_le_bytes());
        field(body);
        field(&condition);
    }
    let digest = hash.finalize();
    // 36 characters at most; 32 hex digits carry 128 bits.
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The sort-key range of a query after its cursor, or `None` if it is empty. Descending
/// queries with a cursor below `to` use `sk < after` (DynamoDB has no exclusive `BETWEEN`) and
/// stop at `from` themselves.
enum Range {
    Between(String, String),
    Below(String),
}

fn range_of(q: &Query) -> Option<Range> {
    if q.to.is_empty() {
        return None; // no sort key is empty
    }
    match (&q.after, q.descending) {
        (None, _) => (q.from <= q.to).then(|| Range::Between(q.from.clone(), q.to.clone())),
        (Some(after), false) => {
            // The smallest string above `after`: sort keys never hold NUL.
            let low = format!("{after}\0").max(q.from.clone());
            (low <= q.to).then(|| Range::Between(low, q.to.clone()))
        }
        (Some(after), true) => {
            if *after <= q.from {
                None
            } else if *after > q.to {
                (q.from <= q.to).then(|| Range::Between(q.from.clone(), q.to.clone()))
            } else {
                Some(Range::Below(after.clone()))
            }
        }
    }
}

#[async_trait]
impl Store for DynamoStore {
    fn limits(&self) -> StoreLimits {
        StoreLimits {
            transaction_items_max: DYNAMODB_TRANSACTION_ITEMS_MAX,
            item_bytes_max: DYNAMODB_ITEM_BYTES_MAX,
            write_unit_bytes: DYNAMODB_WRITE_UNIT_BYTES,
        }
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        check_transaction(&ops, self.limits())?;
        if ops.is_empty() {
            return Ok(());
        }
        let bytes: usize = ops
            .iter()
            .map(|op| match op {
                WriteOp::Put { item, .. } => {
                    item.body.len() + item.key.pk.len() + item.key.sk.len()
                }
                WriteOp::Delete { key, .. } => key.pk.len() + key.sk.len(),
            })
            .sum();
        if bytes > DYNAMODB_TRANSACTION_BYTES_MAX {
            return Err(StoreError::Invalid(format!(
                "transaction of {bytes} bytes; at most {DYNAMODB_TRANSACTION_BYTES_MAX}"
            )));
        }
        let actions = ops
            .iter()
            .map(|op| self.action(op))
            .collect::<Result<Vec<_>, _>>()?;
        let token = request_token(&ops);
        let sized: u64 = ops.iter().map(transactional_write_units).sum();
        let items = ops.len() as u64;
        let counters = &*self.counters;
        self.with_retries("TransactWriteItems", || {
            let call = self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions.clone()))
                .client_request_token(token.clone())
                .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total)
                .send();
            async move {
                match call.await {
                    Ok(out) => {
                        let units: f64 = out
                            .consumed_capacity()
                            .iter()
                            .filter_map(|c| c.capacity_units().or(c.write_capacity_units()))
                            .sum();
                        counters
                            .wcu_milli
                            .fetch_add((units * 1000.0) as u64, Ordering::Relaxed);
                        counters.transactions.fetch_add(1, Ordering::Relaxed);
                        counters.items_written.fetch_add(items, Ordering::Relaxed);
                        counters
                            .write_units_sized
                            .fetch_add(sized, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(e) => Err(cancelled(e, counters)),
                }
            }
        })
        .await
    }

    async fn get_many(&self, keys: Vec<Key>) -> Result<Vec<Option<Item>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // BatchGetItem refuses a key asked twice.
        let mut unique: Vec<Key> = keys.clone();
        unique.sort();
        unique.dedup();
        let mut found: HashMap<Key, Item> = HashMap::with_capacity(unique.len());
        for chunk in unique.chunks(DYNAMODB_BATCH_GET_MAX) {
            found.extend(self.get_chunk(chunk).await?);
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn query(&self, q: Query) -> Result<Page, StoreError> {
        if q.limit == 0 {
            return Err(StoreError::Invalid("query limit must be positive".into()));
        }
        let Some(range) = range_of(&q) else {
            return Ok(Page::default());
        };
        let (condition, mut values) = match &range {
            // DynamoDB refuses an empty string as a key value; every sort key is above it.
            Range::Between(low, high) if low.is_empty() => (
                "#pk = :pk AND #sk <= :high",
                HashMap::from([(":high".to_owned(), AttributeValue::S(high.clone()))]),
            ),
            Range::Between(low, high) => (
                "#pk = :pk AND #sk BETWEEN :low AND :high",
                HashMap::from([
                    (":low".to_owned(), AttributeValue::S(low.clone())),
                    (":high".to_owned(), AttributeValue::S(high.clone())),
                ]),
            ),
            Range::Below(after) => (
                "#pk = :pk AND #sk < :after",
                HashMap::from([(":after".to_owned(), AttributeValue::S(after.clone()))]),
            ),
        };
        values.insert(":pk".to_owned(), AttributeValue::S(q.pk.clone()));
        let names = HashMap::from([
            ("#pk".to_owned(), PK.to_owned()),
            ("#sk".to_owned(), SK.to_owned()),
        ]);
        // One item more than the page, to know whether another page follows.
        let wanted = q.limit.saturating_add(1);
        let mut items: Vec<Item> = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        'pages: loop {
            let limit = i32::try_from(wanted - items.len()).unwrap_or(i32::MAX);
            let answer = self
                .with_retries("Query", || {
                    classified(
                        self.client
                            .query()
                            .table_name(self.table.as_ref())
                            .key_condition_expression(condition)
                            .set_expression_attribute_names(Some(names.clone()))
                            .set_expression_attribute_values(Some(values.clone()))
                            .scan_index_forward(!q.descending)
                            .consistent_read(true)
                            .limit(limit)
                            .set_exclusive_start_key(start.clone())
                            .send(),
                    )
                })
                .await?;
            for attributes in answer.items() {
                let item = item_of(attributes)?;
                if matches!(range, Range::Below(_)) && item.key.sk < q.from {
                    break 'pages;
                }
                items.push(item);
                if items.len() == wanted {
                    break 'pages;
                }
            }
            match answer.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => break,
            }
        }
        let more = items.len() > q.limit;
        items.truncate(q.limit);
        let next = if more {
            items.last().map(|i| i.key.sk.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_retries("DescribeTable", || {
            classified(
                self.client
                    .describe_table()
                    .table_name(self.table.as_ref())
                    .send(),
            )
        })
        .await
        .map(|_| ())
    }

    fn metrics(&self) -> Vec<Metric> {
        const RETRIES: &str = "strongroom_dynamodb_retries_total";
        const RETRIES_HELP: &str = "DynamoDB calls tried again, by what failed.";
        let s = self.stats();
        let retries = |labels, count| Metric::labelled(RETRIES, RETRIES_HELP, labels, count);
        vec![
            Metric::counter(
                "strongroom_dynamodb_requests_total",
                "DynamoDB calls sent, retries included.",
                s.requests,
            ),
            retries(&[("reason", "throttled")], s.retries_throttled),
            retries(&[("reason", "conflict")], s.retries_conflict),
            retries(&[("reason", "server")], s.retries_server),
            retries(&[("reason", "network")], s.retries_network),
            Metric::counter(
                "strongroom_dynamodb_gave_up_total",
                "DynamoDB calls that failed for good after their retries.",
                s.gave_up,
            ),
            Metric::counter(
                "strongroom_dynamodb_conditions_failed_total",
                "Transactions DynamoDB refused on a condition (another writer got there first).",
                s.conditions_failed,
            ),
            Metric::counter(
                "strongroom_dynamodb_transactions_total",
                "TransactWriteItems calls that applied.",
                s.transactions,
            ),
            Metric::counter(
                "strongroom_dynamodb_items_written_total",
                "Actions in the transactions that applied.",
                s.items_written,
            ),
            Metric::counter(
                "strongroom_dynamodb_write_units_sized_total",
                "Write capacity units of the applied transactions by DynamoDB's sizing rules.",
                s.write_units_sized,
            ),
            Metric {
                value: s.write_capacity_units,
                ..Metric::counter(
                    "strongroom_dynamodb_consumed_write_units_total",
                    "Write capacity units DynamoDB reported consuming (where it reports them).",
                    0,
                )
            },
        ]
    }
}

/// Decodes a failed `TransactWriteItems`: a condition that did not hold names its action; a
/// cancellation for conflict or throttling is retried; anything else is classified as usual.
fn cancelled(
    e: SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        aws_sdk_dynamodb::config::http::HttpResponse,
    >,
    counters: &Counters,
) -> Failure {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    let reasons: Option<Vec<Option<String>>> = match &e {
        SdkError::ServiceError(service) => match service.err() {
            E::TransactionCanceledException(c) => Some(
                c.cancellation_reasons()
                    .iter()
                    .map(|r| r.code().map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        },
        _ => None,
    };
    let Some(reasons) = reasons else {
        return e.failure();
    };
    let code_at = |i: usize| reasons.get(i).and_then(|c| c.as_deref()).unwrap_or("None");
    if let Some(index) = (0..reasons.len()).find(|&i| code_at(i) == "ConditionalCheckFailed") {
        counters.conditions_failed.fetch_add(1, Ordering::Relaxed);
        return Failure::Fatal(StoreError::ConditionFailed { index });
    }
    let why = describe(&e);
    if (0..reasons.len()).any(|i| is_throttling(code_at(i))) {
        return Failure::Retry(Transient::Throttled, why);
    }
    if (0..reasons.len()).any(|i| code_at(i) == "TransactionConflict") {
        return Failure::Retry(Transient::Conflict, why);
    }
    // Anything else (a validation error of one action, say): the same actions would fail again.
    Failure::Fatal(StoreError::Unavailable(why))
}
