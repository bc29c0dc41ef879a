//! Wire types: what the API accepts and answers, separate from the ledger's domain types.
//!
//! Requests are checked twice: here by `validator` (field by field, every error reported
//! with its path) and again by the ledger's constructors, which are the last word. Responses are
//! built from domain values by explicit conversions; the JSON shapes change only here.

use std::collections::BTreeMap;

use ledger::limits::{AMOUNT_MAX, HOLD_TIMEOUT_S_MAX, HOLD_TIMEOUT_S_MIN};
use ledger::{
    Account, AccountStatus, Amount, BalanceConstraint, Balances, BatchMode, Currency, Entry,
    EntryKind, Metadata, Rejection, Side, Timestamp, Transfer, TransferState, VoidReason,
};
use serde::{Deserialize, Serialize};
use serde_json::Number;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use validator::{Validate, ValidationError};

// The ledger's limits, as the integer type `validator` counts in.
const DESCRIPTION_LEN_MAX: u64 = ledger::limits::DESCRIPTION_LEN_MAX as u64;
const EXTERNAL_REF_LEN_MAX: u64 = ledger::limits::EXTERNAL_REF_LEN_MAX as u64;

// ---- field checks -------------------------------------------------------------------------------

fn invalid(code: &'static str, message: String) -> ValidationError {
    let mut e = ValidationError::new(code);
    e.message = Some(message.into());
    e
}

/// A JSON number that must turn out to be an amount: an integer in `1..=AMOUNT_MAX`. Taking any
/// number first lets zero, negative, fractional and overflowing amounts all get the same clear
/// `invalid-amount` problem instead of a parser message.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
#[serde(transparent)]
#[schema(value_type = u64, minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
pub struct AmountInput(pub Number);

impl AmountInput {
    /// The amount, if it is one.
    pub fn amount(&self) -> Result<Amount, String> {
        if let Some(n) = self.0.as_u64() {
            return Amount::new(n).ok_or_else(|| {
                if n == 0 {
                    "must be positive".to_owned()
                } else {
                    format!("must be at most {AMOUNT_MAX}")
                }
            });
        }
        if self.0.as_i64().is_some() {
            return Err("must be positive".to_owned());
        }
        match self.0.as_f64() {
            Some(f) if f.fract() == 0.0 && f > AMOUNT_MAX as f64 => {
                Err(format!("must be at most {AMOUNT_MAX}"))
            }
            Some(f) if f.fract() == 0.0 && f < 0.0 => Err("must be positive".to_owned()),
            _ => Err("must be an integer number of minor units".to_owned()),
        }
    }
}

fn check_amount(input: &AmountInput) -> Result<(), ValidationError> {
    input
        .amount()
        .map(|_| ())
        .map_err(|m| invalid("invalid_amount", m))
}

fn check_currency(code: &str) -> Result<(), ValidationError> {
    Currency::from_code(code).map(|_| ()).ok_or_else(|| {
        invalid(
            "invalid_currency",
            format!("{code:?} is not an active ISO 4217 currency code"),
        )
    })
}

fn check_account_id(id: &str) -> Result<(), ValidationError> {
    id.parse::<ledger::AccountId>()
        .map(|_| ())
        .map_err(|e| invalid("invalid_id", e))
}

fn check_card_id(id: &str) -> Result<(), ValidationError> {
    id.parse::<ledger::CardId>()
        .map(|_| ())
        .map_err(|e| invalid("invalid_id", e))
}

fn check_metadata(map: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    Metadata::new(map.clone())
        .map(|_| ())
        .map_err(|r| invalid("invalid_metadata", r.to_string()))
}

/// Checks that an already-validated id parses (validation ran; this cannot fail in practice).
pub fn parse_account(id: &str) -> Result<ledger::AccountId, Rejection> {
    id.parse().map_err(|reason| Rejection::InvalidField {
        field: "account_id".into(),
        reason,
    })
}

/// Checks that an already-validated code is a currency.
pub fn parse_currency(code: &str) -> Result<Currency, Rejection> {
    Currency::from_code(code).ok_or_else(|| Rejection::InvalidField {
        field: "currency".into(),
        reason: format!("unknown currency {code:?}"),
    })
}

/// The amount of an already-validated input.
pub fn parse_amount(input: &AmountInput) -> Result<Amount, Rejection> {
    input.amount().map_err(|reason| Rejection::InvalidField {
        field: "amount".into(),
        reason,
    })
}

// ---- enums --------------------------------------------------------------------------------------

/// Debit or credit.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SideDto {
    /// Left side.
    Debit,
    /// Right side.
    Credit,
}

impl From<SideDto> for Side {
    fn from(s: SideDto) -> Side {
        match s {
            SideDto::Debit => Side::Debit,
            SideDto::Credit => Side::Credit,
        }
    }
}

impl From<Side> for SideDto {
    fn from(s: Side) -> SideDto {
        match s {
            Side::Debit => SideDto::Debit,
            Side::Credit => SideDto::Credit,
        }
    }
}

/// What an account refuses.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintDto {
    /// Nothing.
    #[default]
    None,
    /// Debits (posted and pending) never exceed posted credits.
    DebitsMustNotExceedCredits,
    /// Credits (posted and pending) never exceed posted debits.
    CreditsMustNotExceedDebits,
}

impl From<ConstraintDto> for BalanceConstraint {
    fn from(c: ConstraintDto) -> BalanceConstraint {
        match c {
            ConstraintDto::None => BalanceConstraint::None,
            ConstraintDto::DebitsMustNotExceedCredits => {
                BalanceConstraint::DebitsMustNotExceedCredits
            }
            ConstraintDto::CreditsMustNotExceedDebits => {
                BalanceConstraint::CreditsMustNotExceedDebits
            }
        }
    }
}

impl From<BalanceConstraint> for ConstraintDto {
    fn from(c: BalanceConstraint) -> ConstraintDto {
        match c {
            BalanceConstraint::None => ConstraintDto::None,
            BalanceConstraint::DebitsMustNotExceedCredits => {
                ConstraintDto::DebitsMustNotExceedCredits
            }
            BalanceConstraint::CreditsMustNotExceedDebits => {
                ConstraintDto::CreditsMustNotExceedDebits
            }
        }
    }
}

/// Batch mode.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BatchModeDto {
    /// All or nothing.
    #[default]
    Atomic,
    /// A result per transfer.
    Independent,
}

impl From<BatchModeDto> for BatchMode {
    fn from(m: BatchModeDto) -> BatchMode {
        match m {
            BatchModeDto::Atomic => BatchMode::Atomic,
            BatchModeDto::Independent => BatchMode::Independent,
        }
    }
}

// ---- requests -----------------------------------------------------------------------------------

/// Create an account.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccountRequest {
    /// ISO 4217 code, e.g. `USD`.
    #[validate(custom(function = "check_currency"))]
    #[schema(example = "USD")]
    pub currency: String,
    /// The side the balance grows on: `credit` for a customer's wallet (a liability), `debit`
    /// for cash or receivables.
    pub normal_side: SideDto,
    /// What the account refuses; default `none`.
    #[serde(default)]
    pub balance_constraint: ConstraintDto,
    /// A name for people.
    #[validate(length(max = DESCRIPTION_LEN_MAX))]
    pub name: Option<String>,
    /// Your own reference, unique among your accounts.
    #[validate(length(min = 1, max = EXTERNAL_REF_LEN_MAX))]
    pub external_ref: Option<String>,
    /// Up to 16 string pairs.
    #[serde(default)]
    #[validate(custom(function = "check_metadata"))]
    pub metadata: BTreeMap<String, String>,
}

/// Make a hold: the amount is reserved, then posted or voided.
#[derive(Debug, Deserialize, Validate, ToSchema, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PendingRequest {
    /// Seconds until the ledger voids the hold by itself.
    #[validate(range(min = HOLD_TIMEOUT_S_MIN, max = HOLD_TIMEOUT_S_MAX))]
    pub timeout_seconds: u64,
}

/// Move an amount from one account to another (or hold it, with `pending`).
#[derive(Debug, Deserialize, Validate, ToSchema, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTransferRequest {
    /// Account debited.
    #[validate(custom(function = "check_account_id"))]
    pub debit_account_id: String,
    /// Account credited.
    #[validate(custom(function = "check_account_id"))]
    pub credit_account_id: String,
    /// Minor units (cents for USD), a positive integer.
    #[validate(custom(function = "check_amount"))]
    pub amount: AmountInput,
    /// Both accounts' currency.
    #[validate(custom(function = "check_currency"))]
    pub currency: String,
    /// Free text.
    #[validate(length(max = DESCRIPTION_LEN_MAX))]
    pub description: Option<String>,
    /// Up to 16 string pairs.
    #[serde(default)]
    #[validate(custom(function = "check_metadata"))]
    pub metadata: BTreeMap<String, String>,
    /// Present: place a hold instead of posting.
    #[validate(nested)]
    pub pending: Option<PendingRequest>,
    /// A tokenized card (`card_…`) the transfer charges or pays out to: it must be the
    /// tenant's, not deleted and not expired.
    #[validate(custom(function = "check_card_id"))]
    pub card_id: Option<String>,
}

/// One leg of a journal entry.
#[derive(Debug, Deserialize, Serialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegRequest {
    /// The account.
    #[validate(custom(function = "check_account_id"))]
    pub account_id: String,
    /// Debit or credit.
    pub direction: SideDto,
    /// Minor units, a positive integer.
    #[validate(custom(function = "check_amount"))]
    pub amount: AmountInput,
    /// The account's currency.
    #[validate(custom(function = "check_currency"))]
    pub currency: String,
}

/// A multi-leg journal entry: balanced per currency, posted all or nothing.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JournalEntryRequest {
    /// 2 to 64 legs, no account twice (checked by the ledger: 422 `leg-count`).
    #[validate(nested)]
    pub legs: Vec<LegRequest>,
    /// Free text.
    #[validate(length(max = DESCRIPTION_LEN_MAX))]
    pub description: Option<String>,
    /// Up to 16 string pairs.
    #[serde(default)]
    #[validate(custom(function = "check_metadata"))]
    pub metadata: BTreeMap<String, String>,
}

/// Many transfers in one request.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// `atomic` (default): all post or none; `independent`: each on its own.
    #[serde(default)]
    pub mode: BatchModeDto,
    /// 1 to 1000 transfers (checked by the ledger: 422 `batch-size`).
    #[validate(nested)]
    pub transfers: Vec<CreateTransferRequest>,
}

/// Post a hold, fully (no amount) or in part.
#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostRequest {
    /// At most the held amount; default the whole of it.
    #[validate(custom(function = "check_amount"))]
    pub amount: Option<AmountInput>,
}

/// Reverse a posted transfer.
#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReverseRequest {
    /// Free text; default "reversal of …".
    #[validate(length(max = DESCRIPTION_LEN_MAX))]
    pub description: Option<String>,
    /// Up to 16 string pairs.
    #[serde(default)]
    #[validate(custom(function = "check_metadata"))]
    pub metadata: BTreeMap<String, String>,
}

/// An empty body (status changes take none).
#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyRequest {}

/// Page parameters of every list; the routes' OpenAPI parameters come from these fields.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1 to 500, default 50.
    pub limit: Option<usize>,
    /// next_cursor of the previous page.
    pub cursor: Option<String>,
    /// asc (default, oldest first) or desc.
    #[param(inline)]
    pub order: Option<Order>,
}

/// Sort order.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Oldest first.
    Asc,
    /// Newest first.
    Desc,
}

impl From<ListParams> for ledger::PageRequest {
    fn from(p: ListParams) -> ledger::PageRequest {
        ledger::PageRequest {
            limit: p.limit,
            cursor: p.cursor,
            descending: p.order == Some(Order::Desc),
        }
    }
}

/// Balance query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceParams {
    /// RFC 3339 instant; default now.
    pub as_of: Option<String>,
}

// ---- responses ----------------------------------------------------------------------------------

/// An instant as RFC 3339 UTC with microseconds.
pub fn timestamp(ts: Timestamp) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts.micros()) * 1000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// Parses an RFC 3339 instant.
pub fn parse_timestamp(text: &str) -> Option<Timestamp> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000)
        .ok()
        .map(Timestamp::from_micros)
}

/// The four running totals and what derives from them, in minor units.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct BalancesResponse {
    /// Sum of posted debits.
    pub debits_posted: u128,
    /// Sum of posted credits.
    pub credits_posted: u128,
    /// Sum of pending debits.
    pub debits_pending: u128,
    /// Sum of pending credits.
    pub credits_pending: u128,
    /// Posted balance on the normal side.
    pub posted: i128,
    /// Pending balance on the normal side.
    pub pending: i128,
    /// Posted balance less what pending transfers hold against it.
    pub available: i128,
}

impl BalancesResponse {
    /// From totals and the account's normal side.
    pub fn new(b: &Balances, normal: Side) -> BalancesResponse {
        BalancesResponse {
            debits_posted: b.debits_posted,
            credits_posted: b.credits_posted,
            debits_pending: b.debits_pending,
            credits_pending: b.credits_pending,
            posted: b.posted(normal),
            pending: b.pending(normal),
            available: b.available(normal),
        }
    }
}

/// Account status.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum StatusDto {
    /// Takes postings.
    Open,
    /// Refuses postings until unfrozen.
    Frozen,
    /// Refuses postings forever.
    Closed,
}

/// An account.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct AccountResponse {
    /// `acct_…`
    pub id: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Decimal places of the currency's minor unit.
    pub currency_exponent: u8,
    /// The side its balance grows on.
    pub normal_side: SideDto,
    /// What it refuses.
    pub balance_constraint: ConstraintDto,
    /// Open, frozen or closed.
    pub status: StatusDto,
    /// A name for people.
    pub name: Option<String>,
    /// Your reference.
    pub external_ref: Option<String>,
    /// Your metadata.
    pub metadata: BTreeMap<String, String>,
    /// Current balances.
    pub balances: BalancesResponse,
    /// Entries written so far.
    pub entry_count: u64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<&Account> for AccountResponse {
    fn from(a: &Account) -> AccountResponse {
        AccountResponse {
            id: a.id.to_string(),
            currency: a.currency.code().to_owned(),
            currency_exponent: a.currency.exponent(),
            normal_side: a.normal_side.into(),
            balance_constraint: a.constraint.into(),
            status: match a.status {
                AccountStatus::Open => StatusDto::Open,
                AccountStatus::Frozen => StatusDto::Frozen,
                AccountStatus::Closed => StatusDto::Closed,
            },
            name: a.name.clone(),
            external_ref: a.external_ref.clone(),
            metadata: a.metadata.entries().clone(),
            balances: BalancesResponse::new(&a.balances, a.normal_side),
            entry_count: a.entry_seq,
            created_at: timestamp(a.created_at),
            updated_at: timestamp(a.updated_at),
        }
    }
}

/// One leg.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct LegResponse {
    /// The account.
    pub account_id: String,
    /// Debit or credit.
    pub direction: SideDto,
    /// Minor units.
    pub amount: u64,
    /// ISO 4217 code.
    pub currency: String,
}

/// The hold part of a pending transfer.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct HoldResponse {
    /// When the ledger voids it if nobody else did (RFC 3339).
    pub expires_at: String,
    /// Amount posted, once posted.
    pub posted_amount: Option<u64>,
    /// `requested` or `expired`, once voided.
    pub void_reason: Option<String>,
    /// When it was posted or voided (RFC 3339).
    pub resolved_at: Option<String>,
}

/// Transfer state.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum StateDto {
    /// A hold.
    Pending,
    /// Moved.
    Posted,
    /// A released hold.
    Voided,
}

/// A transfer or journal entry.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct TransferResponse {
    /// `xfer_…`
    pub id: String,
    /// Pending, posted or voided.
    pub state: StateDto,
    /// Plain transfers: the account debited.
    pub debit_account_id: Option<String>,
    /// Plain transfers: the account credited.
    pub credit_account_id: Option<String>,
    /// Plain transfers: the amount.
    pub amount: Option<u64>,
    /// Plain transfers: the currency.
    pub currency: Option<String>,
    /// Every leg.
    pub legs: Vec<LegResponse>,
    /// Free text.
    pub description: Option<String>,
    /// Your metadata.
    pub metadata: BTreeMap<String, String>,
    /// Holds only.
    pub pending: Option<HoldResponse>,
    /// The transfer this one reverses.
    pub reverses: Option<String>,
    /// The transfer that reversed this one.
    pub reversed_by: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The card the transfer charges or pays out to, if any.
    pub card_id: Option<String>,
}

impl From<&Transfer> for TransferResponse {
    fn from(t: &Transfer) -> TransferResponse {
        let plain = t.as_plain();
        TransferResponse {
            id: t.id.to_string(),
            state: match t.state {
                TransferState::Pending => StateDto::Pending,
                TransferState::Posted => StateDto::Posted,
                TransferState::Voided => StateDto::Voided,
            },
            debit_account_id: plain.map(|p| p.0.to_string()),
            credit_account_id: plain.map(|p| p.1.to_string()),
            amount: plain.map(|p| p.2.minor()),
            currency: plain.map(|p| p.3.code().to_owned()),
            legs: t
                .legs
                .iter()
                .map(|l| LegResponse {
                    account_id: l.account.to_string(),
                    direction: l.side.into(),
                    amount: l.amount.minor(),
                    currency: l.currency.code().to_owned(),
                })
                .collect(),
            description: t.description.clone(),
            metadata: t.metadata.entries().clone(),
            pending: t.hold.as_ref().map(|h| HoldResponse {
                expires_at: timestamp(h.expires_at),
                posted_amount: h.posted_amount.map(Amount::minor),
                void_reason: h.void_reason.map(|r| match r {
                    VoidReason::Requested => "requested".to_owned(),
                    VoidReason::Expired => "expired".to_owned(),
                }),
                resolved_at: h.resolved_at.map(timestamp),
            }),
            reverses: t.reverses.map(|id| id.to_string()),
            reversed_by: t.reversed_by.map(|id| id.to_string()),
            created_at: timestamp(t.created_at),
            updated_at: timestamp(t.updated_at),
            card_id: t.instrument.map(|id| id.to_string()),
        }
    }
}

/// One entry of an account's history.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct EntryResponse {
    /// 1 for the first entry, then consecutive.
    pub seq: u64,
    /// The transfer that wrote it.
    pub transfer_id: String,
    /// `posted`, `held`, `hold_posted` or `hold_voided`.
    pub kind: String,
    /// Debit or credit.
    pub direction: SideDto,
    /// Added to the posted column (or, for `held`, the pending one).
    pub amount: u64,
    /// Taken from the pending column.
    pub released: u64,
    /// Balances after this entry: the running balance.
    pub balances: BalancesResponse,
    /// RFC 3339.
    pub at: String,
}

impl EntryResponse {
    /// From an entry of an account with the given normal side.
    pub fn new(e: &Entry, normal: Side) -> EntryResponse {
        EntryResponse {
            seq: e.seq,
            transfer_id: e.transfer.to_string(),
            kind: match e.kind {
                EntryKind::Posted => "posted",
                EntryKind::Held => "held",
                EntryKind::HoldPosted => "hold_posted",
                EntryKind::HoldVoided => "hold_voided",
            }
            .to_owned(),
            direction: e.side.into(),
            amount: e.amount,
            released: e.released,
            balances: BalancesResponse::new(&e.balances, normal),
            at: timestamp(e.at),
        }
    }
}

/// An account's balances at an instant.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct BalanceResponse {
    /// The account.
    pub account_id: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The instant (RFC 3339).
    pub as_of: String,
    /// Balances after the last entry at or before `as_of`.
    pub balances: BalancesResponse,
    /// Sequence of that entry; 0 before the first.
    pub entry_seq: u64,
}

/// A page of accounts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    /// The accounts.
    pub data: Vec<AccountResponse>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A page of transfers.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransferList {
    /// The transfers.
    pub data: Vec<TransferResponse>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A page of entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryList {
    /// The entries.
    pub data: Vec<EntryResponse>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// The result of one transfer of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    /// Position in the request.
    pub index: usize,
    /// The transfer, when it posted.
    pub transfer: Option<TransferResponse>,
    /// The problem, when it did not (`type`, `title`, `status`, `detail`, and fields).
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
}

/// A batch's results.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// The mode it ran in.
    pub mode: BatchModeDto,
    /// Transfers posted.
    pub posted: usize,
    /// Transfers that failed (independent mode only).
    pub failed: usize,
    /// One result per transfer, in order.
    pub results: Vec<BatchItem>,
}

/// One currency of a trial balance.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrencyTotalsResponse {
    /// ISO 4217 code.
    pub currency: String,
    /// Accounts in it.
    pub accounts: u64,
    /// Sum of posted debits.
    pub debits_posted: u128,
    /// Sum of posted credits.
    pub credits_posted: u128,
    /// Sum of pending debits.
    pub debits_pending: u128,
    /// Sum of pending credits.
    pub credits_pending: u128,
    /// Debits equal credits, posted and pending.
    pub balanced: bool,
}

/// The trial balance of the caller's tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrialBalanceResponse {
    /// When it was taken (RFC 3339).
    pub as_of: String,
    /// Every currency balances.
    pub balanced: bool,
    /// Accounts read.
    pub accounts: u64,
    /// Per currency.
    pub currencies: Vec<CurrencyTotalsResponse>,
}

impl From<&ledger::TrialBalance> for TrialBalanceResponse {
    fn from(t: &ledger::TrialBalance) -> TrialBalanceResponse {
        TrialBalanceResponse {
            as_of: timestamp(t.as_of),
            balanced: t.balanced(),
            accounts: t.accounts,
            currencies: t
                .currencies
                .iter()
                .map(|c| CurrencyTotalsResponse {
                    currency: c.currency.code().to_owned(),
                    accounts: c.accounts,
                    debits_posted: c.debits_posted,
                    credits_posted: c.credits_posted,
                    debits_pending: c.debits_pending,
                    credits_pending: c.credits_pending,
                    balanced: c.balanced(),
                })
                .collect(),
        }
    }
}

/// Health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `live`, `ready`, or `not_ready`.
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_amount(json: &str, expected: Result<u64, &str>) {
        let input: AmountInput = serde_json::from_str(json).expect("any JSON number parses");
        let got = input.amount().map(Amount::minor);
        match expected {
            Ok(n) => assert_eq!(got, Ok(n), "{json}"),
            Err(fragment) => {
                let message = got.expect_err(json);
                assert!(message.contains(fragment), "{json}: {message}");
            }
        }
    }

    #[test]
    fn amounts() {
        check_amount("1", Ok(1));
        check_amount("9223372036854775807", Ok(AMOUNT_MAX));
        check_amount("0", Err("positive"));
        check_amount("-5", Err("positive"));
        check_amount("-1e30", Err("positive"));
        check_amount("9223372036854775808", Err("at most"));
        check_amount("18446744073709551616", Err("at most"));
        check_amount("1e40", Err("at most"));
        check_amount("1.5", Err("integer"));
        check_amount("100.0", Err("integer"));
    }

    #[test]
    fn timestamps_round_trip() {
        let ts = Timestamp::from_micros(1_795_000_000_123_456);
        let text = timestamp(ts);
        assert_eq!(text, "2026-11-18T11:06:40.123456Z");
        assert_eq!(parse_timestamp(&text), Some(ts));
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
