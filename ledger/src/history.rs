//! How an account's history is stored: the newest entries in the account's head, the rest in
//! entry pages.
//!
//! An entry page holds entries of one account that follow one another in sequence, under the
//! sort key of its first entry (`E#{at_us:020}#{first_seq:020}`, see [`layout::entry`]). A store
//! charges per item written (DynamoDB: 2 units per started KB in a transaction; SQLite's b-tree
//! per row), so a transaction writes as few history items as it can:
//!
//! - The account's head keeps its newest entries (its tail, [`Tail`]) while they fit in the
//!   write units the head takes anyway ([`crate::store::StoreLimits::write_unit_bytes`]): a
//!   transaction that touches an account then writes one item for it, the head, instead of a
//!   head and a page.
//! - When a transaction's entries no longer fit, the tail and those entries move to pages (the
//!   first page takes the tail and up to [`ENTRY_PAGE_LEN_MAX`] new entries, further pages
//!   [`ENTRY_PAGE_LEN_MAX`] each) and the head keeps none. So an account costs a transaction its
//!   head and at most one page per [`ENTRY_PAGE_LEN_MAX`] of its new entries, as without a tail.
//!
//! Entries of one account never go back in time, so pages never overlap and sort by (instant,
//! first sequence), which is the entries' own order: a range query reads the history in order,
//! and "balance as of T" is the last entry at or before T, in the tail or else in the last page
//! at or before T. Entries of one instant are stored as [`codec::FORMAT_ENTRY_PAGE_V1`], entries
//! of several (a tail moved to a page) as [`codec::FORMAT_ENTRY_PAGE_V2`], each with its offset
//! from the page's instant. A head without a tail is stored as before tails existed
//! ([`codec::FORMAT_POSTCARD_V1`]); with one, as [`codec::FORMAT_ACCOUNT_HEAD_V2`]: the account,
//! the tail's first sequence number, instant and length, then its entries.
//!
//! A head read at some version holds entries up to its `entry_seq`, the tail's from its first
//! sequence number on; the pages hold the ones before. A page written later (the tail moved on)
//! may repeat tail entries, identical: readers take from pages only the entries before the
//! tail of the head they read, which makes a history read consistent with that head.
//!
//! A position in the history (a cursor) names the entry's sequence and the page that holds it,
//! or, for an entry in the tail, the entry's own key ([`Position`]).
//!
//! Items written before pages existed hold a single entry in the record format
//! ([`codec::FORMAT_POSTCARD_V1`]) under that entry's own key: they read as pages of one.

use serde::{Deserialize, Serialize};

use crate::account::{Account, Balances, Side};
use crate::codec;
use crate::error::Error;
use crate::ids::{AccountId, TenantId, TransferId};
use crate::layout;
use crate::limits::ENTRY_PAGE_LEN_MAX;
use crate::store::{Item, Key, item_bytes};
use crate::time::Timestamp;
use crate::transfer::{Entry, EntryKind};

/// The stored shape of a page of one instant: what its entries share, once.
#[derive(Serialize, Deserialize)]
struct EntryPage {
    account: AccountId,
    at: Timestamp,
    first_seq: u64,
    entries: Vec<PageEntry>,
}

/// An entry without what its page holds for it (account, instant, sequence).
#[derive(Clone, Serialize, Deserialize)]
struct PageEntry {
    transfer: TransferId,
    kind: EntryKind,
    side: Side,
    amount: u64,
    released: u64,
    balances: Balances,
}

/// The stored shape of a page whose entries span instants.
#[derive(Serialize, Deserialize)]
struct RunPage {
    account: AccountId,
    at: Timestamp,
    first_seq: u64,
    entries: Vec<RunEntry>,
}

/// An entry of a page of several instants or of a tail: a [`PageEntry`] with its instant as
/// microseconds after the page's or the tail's. (Postcard writes a nested struct as its fields
/// in order, so this is stored as `after_us` followed by the page entry's fields.)
#[derive(Clone, Serialize, Deserialize)]
struct RunEntry {
    after_us: u64,
    entry: PageEntry,
}

/// What a head stores about its tail, before the tail's entries.
#[derive(Serialize, Deserialize)]
struct TailHeader {
    first_seq: u64,
    at: Timestamp,
    len: u64,
}

/// The newest entries of an account, kept in its head, as read: still encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tail<'a> {
    /// Sequence number of the first; the last is the account's `entry_seq`.
    first_seq: u64,
    /// The instant the entries' offsets count from.
    at: Timestamp,
    len: usize,
    /// The entries ([`RunEntry`]), one after another.
    bytes: &'a [u8],
}

impl Tail<'_> {
    /// The tail of a head that keeps none.
    fn empty(account: &Account) -> Tail<'static> {
        Tail {
            first_seq: account.entry_seq.saturating_add(1),
            at: Timestamp::EPOCH,
            len: 0,
            bytes: &[],
        }
    }

    /// The sequence number of its first entry (if empty: the one after the account's last):
    /// every entry before it is in a page.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Its entries, in sequence order.
    pub fn entries(&self, account: &Account) -> Result<Vec<Entry>, Error> {
        let corrupt =
            |why: &str| Error::Corrupt(format!("head of account {}: tail {why}", account.id));
        let mut out = Vec::with_capacity(self.len);
        let mut rest = self.bytes;
        for i in 0..self.len as u64 {
            let (e, more) =
                postcard::take_from_bytes::<RunEntry>(rest).map_err(|e| corrupt(&e.to_string()))?;
            rest = more;
            out.push(
                run_entry(account.id, self.first_seq, self.at, i, e)
                    .ok_or_else(|| corrupt("out of range"))?,
            );
        }
        if !rest.is_empty() {
            return Err(corrupt("has bytes past its entries"));
        }
        Ok(out)
    }
}

/// The entry a [`RunEntry`] stands for, the `i`th of its page or tail; `None` past the ranges.
fn run_entry(
    account: AccountId,
    first_seq: u64,
    at: Timestamp,
    i: u64,
    RunEntry { after_us, entry: e }: RunEntry,
) -> Option<Entry> {
    let after = i64::try_from(after_us).ok()?;
    Some(Entry {
        account,
        seq: first_seq.checked_add(i)?,
        transfer: e.transfer,
        kind: e.kind,
        side: e.side,
        amount: e.amount,
        released: e.released,
        balances: e.balances,
        at: Timestamp::from_micros(at.micros().checked_add(after)?),
    })
}

impl RunEntry {
    /// `e`, made `after_us` after the instant of its page or tail.
    fn new(e: &Entry, at: Timestamp) -> RunEntry {
        RunEntry {
            after_us: u64::try_from(e.at.micros().saturating_sub(at.micros())).unwrap_or(0),
            entry: PageEntry::from(e),
        }
    }
}

/// An item to create: its key and body.
pub(crate) type NewItem = (Key, Vec<u8>);

/// An account head: the account, and the newest entries it keeps.
pub(crate) fn decode_head(item: &Item) -> Result<(Account, Tail<'_>), Error> {
    let Some((&codec::FORMAT_ACCOUNT_HEAD_V2, bytes)) = item.body.split_first() else {
        let account: Account = codec::decode(item)?;
        let tail = Tail::empty(&account);
        return Ok((account, tail));
    };
    let corrupt = |why: String| Error::Corrupt(format!("item {:?}: {why}", item.key));
    let (account, rest) =
        postcard::take_from_bytes::<Account>(bytes).map_err(|e| corrupt(e.to_string()))?;
    let (header, rest) =
        postcard::take_from_bytes::<TailHeader>(rest).map_err(|e| corrupt(e.to_string()))?;
    let last = header
        .first_seq
        .checked_add(header.len)
        .and_then(|end| end.checked_sub(1));
    if header.len == 0 || last != Some(account.entry_seq) {
        return Err(corrupt(format!(
            "a tail of {} from {} does not end at entry {}",
            header.len, header.first_seq, account.entry_seq
        )));
    }
    let len = usize::try_from(header.len).map_err(|e| corrupt(e.to_string()))?;
    // Each entry takes more than one byte: a longer tail cannot be in the body.
    if len > rest.len() {
        return Err(corrupt(format!(
            "a tail of {len} entries in {} bytes",
            rest.len()
        )));
    }
    let tail = Tail {
        first_seq: header.first_seq,
        at: header.at,
        len,
        bytes: rest,
    };
    Ok((account, tail))
}

/// The account in a head item, whatever entries it keeps.
pub(crate) fn decode_account(item: &Item) -> Result<Account, Error> {
    decode_head(item).map(|(account, _)| account)
}

/// What a transaction writes for an account whose head it changes: the head's body, and the
/// entry pages it creates (`(key, body)`, to create).
///
/// `key` is the head's key and `version` the version it is written at; `tail` is what the head
/// kept as read (`None`: nothing, or a new account); `new` are this transaction's entries on the
/// account, which follow the tail in sequence and end at the account's `entry_seq`. With
/// `unit` > 0 the head keeps its entries while the head stays within the units of `unit` bytes
/// it takes without them (see the module docs).
pub(crate) fn settle(
    key: &Key,
    account: &Account,
    version: u64,
    tail: Option<&Tail<'_>>,
    new: &[Entry],
    unit: usize,
) -> Result<(Vec<u8>, Vec<NewItem>), Error> {
    let empty = Tail::empty(account);
    let tail = match tail {
        Some(t) if t.len > 0 => t,
        _ => &empty,
    };
    let Some(first_new) = new.first() else {
        // Nothing new (a status change): the head keeps what it had.
        let body = match tail.len {
            0 => codec::encode(account),
            n => head_body(account, tail, n, tail.at, &[]),
        };
        return Ok((body, Vec::new()));
    };
    // A tail ends at the account's last entry as read, so the new entries start right after it.
    let after_tail =
        tail.len == 0 || Some(first_new.seq) == tail.first_seq.checked_add(tail.len as u64);
    let follows = after_tail
        && new
            .windows(2)
            .all(|w| w[0].seq.checked_add(1) == Some(w[1].seq) && w[1].at >= w[0].at)
        && new.iter().all(|e| e.account == account.id)
        && new.last().map(|e| e.seq) == Some(account.entry_seq)
        && (tail.len == 0 || first_new.at >= tail.at);
    if !follows {
        return Err(Error::Corrupt(format!(
            "entries of account {} do not follow its head",
            account.id
        )));
    }
    if unit > 0 {
        let at = if tail.len > 0 { tail.at } else { first_new.at };
        let mut fresh = Vec::with_capacity(new.len() * 64);
        for e in new {
            fresh = postcard::to_extend(&RunEntry::new(e, at), fresh)
                .map_err(|e| Error::Corrupt(format!("encode an entry: {e}")))?;
        }
        let body = head_body(account, tail, tail.len + new.len(), at, &fresh);
        let bare = postcard::experimental::serialized_size(account)
            .map_err(|e| Error::Corrupt(format!("size an account: {e}")))?
            + 1;
        let ceiling = item_bytes(key, version, bare).div_ceil(unit) * unit;
        if item_bytes(key, version, body.len()) <= ceiling {
            return Ok((body, Vec::new()));
        }
    }
    // The tail and the new entries go to pages; the head keeps none.
    let mut all = tail.entries(account)?;
    all.extend_from_slice(new);
    let first_len = tail.len + new.len().min(ENTRY_PAGE_LEN_MAX);
    let (first, rest) = all.split_at(first_len);
    let pages = std::iter::once(first)
        .chain(rest.chunks(ENTRY_PAGE_LEN_MAX))
        .filter(|chunk| !chunk.is_empty())
        .map(|chunk| page(&account.tenant, chunk))
        .collect();
    Ok((codec::encode(account), pages))
}

/// A head that keeps `len` entries: those of `tail` (encoded), then `fresh` (encoded, counted
/// from `at`, which is the tail's own instant when it has entries).
fn head_body(
    account: &Account,
    tail: &Tail<'_>,
    len: usize,
    at: Timestamp,
    fresh: &[u8],
) -> Vec<u8> {
    let first_seq = if tail.len > 0 {
        tail.first_seq
    } else {
        account
            .entry_seq
            .saturating_add(1)
            .saturating_sub(len as u64)
    };
    let header = TailHeader {
        first_seq,
        at,
        len: len as u64,
    };
    let mut body = codec::encode_as(codec::FORMAT_ACCOUNT_HEAD_V2, account);
    body = postcard::to_extend(&header, body).unwrap_or_default();
    body.extend_from_slice(tail.bytes);
    body.extend_from_slice(fresh);
    body
}

/// One page of `entries` (of one account, consecutive): of one instant or of several.
fn page(tenant: &TenantId, entries: &[Entry]) -> (Key, Vec<u8>) {
    let first = &entries[0];
    let key = layout::entry(tenant, &first.account, first.at, first.seq);
    let body = if entries.iter().all(|e| e.at == first.at) {
        codec::encode_as(
            codec::FORMAT_ENTRY_PAGE_V1,
            &EntryPage {
                account: first.account,
                at: first.at,
                first_seq: first.seq,
                entries: entries.iter().map(PageEntry::from).collect(),
            },
        )
    } else {
        codec::encode_as(
            codec::FORMAT_ENTRY_PAGE_V2,
            &RunPage {
                account: first.account,
                at: first.at,
                first_seq: first.seq,
                entries: entries.iter().map(|e| RunEntry::new(e, first.at)).collect(),
            },
        )
    };
    (key, body)
}

impl From<&Entry> for PageEntry {
    fn from(e: &Entry) -> PageEntry {
        PageEntry {
            transfer: e.transfer,
            kind: e.kind,
            side: e.side,
            amount: e.amount,
            released: e.released,
            balances: e.balances,
        }
    }
}

/// The entries of a page item, in sequence order.
pub(crate) fn decode(item: &Item) -> Result<Vec<Entry>, Error> {
    let corrupt = |why: &str| Error::Corrupt(format!("item {:?}: {why}", item.key));
    // A page of one instant is a run whose entries are all at its instant.
    let (account, at, first_seq, entries) = match item.body.first() {
        Some(&codec::FORMAT_POSTCARD_V1) => return Ok(vec![codec::decode::<Entry>(item)?]),
        Some(&codec::FORMAT_ENTRY_PAGE_V2) => {
            let page: RunPage = codec::decode_as(codec::FORMAT_ENTRY_PAGE_V2, item)?;
            (page.account, page.at, page.first_seq, page.entries)
        }
        _ => {
            let page: EntryPage = codec::decode_as(codec::FORMAT_ENTRY_PAGE_V1, item)?;
            let entries = page
                .entries
                .into_iter()
                .map(|entry| RunEntry { after_us: 0, entry })
                .collect();
            (page.account, page.at, page.first_seq, entries)
        }
    };
    if entries.is_empty() {
        return Err(corrupt("empty entry page"));
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            run_entry(account, first_seq, at, i as u64, e)
                .ok_or_else(|| corrupt("entry out of range"))
        })
        .collect()
}

/// A place in an account's history: an entry, and the page that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    /// The sort key of the page that holds the entry, or, for an entry that was in its
    /// account's tail ([`Position::in_tail`]), the entry's own key (`E#{at}#{seq}`): a page
    /// that holds it since sorts at or before that key.
    pub page: String,
    /// The entry's sequence number.
    pub seq: u64,
    /// Whether `page` is the entry's own key, not a page known to hold it.
    pub in_tail: bool,
}

impl Position {
    /// The position of an entry held by the page whose sort key is `page`.
    pub fn new(page: &str, seq: u64) -> Position {
        Position {
            page: page.to_owned(),
            seq,
            in_tail: false,
        }
    }

    /// The position of `entry`, read from its account's tail.
    pub fn in_tail(tenant: &TenantId, entry: &Entry) -> Position {
        Position {
            page: layout::entry(tenant, &entry.account, entry.at, entry.seq).sk,
            seq: entry.seq,
            in_tail: true,
        }
    }

    /// As a cursor carries it: `{page sort key}#{seq:020}`, or `{entry sort key}#T` for an
    /// entry of the tail.
    pub fn to_sort_key(&self) -> String {
        if self.in_tail {
            format!("{}#T", self.page)
        } else {
            format!("{}#{:020}", self.page, self.seq)
        }
    }

    /// Reads what [`Position::to_sort_key`] wrote. A bare entry sort key (`E#{at}#{seq}`, as
    /// cursors carried before pages) is a page of one. Anything else is not a position.
    pub fn parse(sk: &str) -> Option<Position> {
        let rest = sk.strip_prefix("E#")?;
        let parts: Vec<&str> = rest.split('#').collect();
        let number = |s: &str| {
            (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
        };
        match parts.as_slice() {
            [at, seq] => {
                number(at)?;
                Some(Position::new(sk, number(seq)?))
            }
            [at, seq, "T"] => {
                number(at)?;
                Some(Position {
                    page: sk[..sk.len() - 2].to_owned(),
                    seq: number(seq)?,
                    in_tail: true,
                })
            }
            [at, first, seq] => {
                number(at)?;
                let (first_n, seq_n) = (number(first)?, number(seq)?);
                (first_n <= seq_n).then(|| Position::new(&sk[..sk.len() - 21], seq_n))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdGen;

    fn entry(account: AccountId, seq: u64, at: i64) -> Entry {
        Entry {
            account,
            seq,
            transfer: IdGen::new().transfer(Timestamp::from_micros(1)),
            kind: EntryKind::Posted,
            side: Side::Debit,
            amount: seq * 10,
            released: 0,
            balances: Balances {
                debits_posted: u128::from(seq) * 100,
                ..Balances::default()
            },
            at: Timestamp::from_micros(at),
        }
    }

    fn item((key, body): (Key, Vec<u8>)) -> Item {
        Item {
            key,
            version: 1,
            body,
        }
    }

    fn account(ids: &IdGen, name: Option<&str>) -> Account {
        Account {
            id: ids.account(Timestamp::from_micros(1)),
            tenant: TenantId::new("acme").expect("tenant"),
            currency: crate::money::Currency::from_code("USD").expect("USD"),
            normal_side: Side::Debit,
            constraint: crate::account::BalanceConstraint::None,
            status: crate::account::AccountStatus::Open,
            name: name.map(str::to_owned),
            external_ref: None,
            metadata: crate::account::Metadata::default(),
            balances: Balances::default(),
            entry_seq: 0,
            created_at: Timestamp::from_micros(1),
            updated_at: Timestamp::from_micros(1),
        }
    }

    /// Writes `n` entries on `a` at `at` the way the planner does, through [`settle`]: the head
    /// (read back from the item it wrote before) and the pages it creates.
    fn post(a: &mut Account, head: &mut Item, n: u64, at: i64, unit: usize) -> Vec<Item> {
        let read = head.clone();
        let (_, tail) = decode_head(&read).expect("head");
        let new: Vec<Entry> = (1..=n)
            .map(|i| {
                let mut e = entry(a.id, a.entry_seq + i, at);
                e.balances.debits_posted = u128::from(a.entry_seq + i);
                e
            })
            .collect();
        a.entry_seq += n;
        a.balances = new.last().map(|e| e.balances).unwrap_or_default();
        let version = read.version + 1;
        let (body, pages) = settle(&read.key, a, version, Some(&tail), &new, unit).expect("settle");
        *head = Item {
            key: read.key.clone(),
            version,
            body,
        };
        pages.into_iter().map(item).collect()
    }

    fn new_head(a: &Account) -> Item {
        Item {
            key: layout::account(&a.tenant, &a.id),
            version: 1,
            body: codec::encode(a),
        }
    }

    /// Every entry of an account, from its pages and its head, with the seam checked.
    fn all_entries(a: &Account, head: &Item, pages: &[Item]) -> Vec<Entry> {
        let (read, tail) = decode_head(head).expect("head");
        assert_eq!(&read, a);
        let mut out: Vec<Entry> = Vec::new();
        let mut keys: Vec<&Key> = pages.iter().map(|p| &p.key).collect();
        keys.sort();
        assert_eq!(
            keys,
            pages.iter().map(|p| &p.key).collect::<Vec<_>>(),
            "pages in order"
        );
        for p in pages {
            let held = decode(p).expect("page");
            let first = &held[0];
            assert_eq!(p.key, layout::entry(&a.tenant, &a.id, first.at, first.seq));
            out.extend(held);
        }
        assert_eq!(
            out.len() as u64 + 1,
            tail.first_seq(),
            "the tail follows the pages"
        );
        out.extend(tail.entries(a).expect("tail"));
        out
    }

    #[test]
    fn without_a_unit_a_transactions_entries_on_an_account_go_to_one_page() {
        let ids = IdGen::new();
        let mut a = account(&ids, None);
        let mut head = new_head(&a);
        let mut pages = post(&mut a, &mut head, 3, 50, 0);
        assert_eq!(pages.len(), 1);
        assert_eq!(
            head.body[0],
            codec::FORMAT_POSTCARD_V1,
            "the head keeps nothing"
        );
        assert_eq!(pages[0].body[0], codec::FORMAT_ENTRY_PAGE_V1, "one instant");
        pages.extend(post(&mut a, &mut head, 1, 60, 0));
        let seqs: Vec<u64> = all_entries(&a, &head, &pages)
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
    }

    #[test]
    fn a_head_keeps_its_newest_entries_within_its_write_units_then_moves_them_to_a_page() {
        let ids = IdGen::new();
        let mut a = account(&ids, Some("wallet"));
        let mut head = new_head(&a);
        let unit = 1024;
        let bare_units = |h: &Item, a: &Account| {
            item_bytes(&h.key, h.version, codec::encode(a).len()).div_ceil(unit)
        };
        let mut pages = Vec::new();
        let mut kept_most = 0;
        let mut flushes = 0;
        for n in 1..=100u64 {
            let made = post(&mut a, &mut head, 1, 1_000 + n as i64, unit);
            let (_, tail) = decode_head(&head).expect("head");
            if made.is_empty() {
                // Kept: the head takes no more units than it would bare.
                assert_eq!(head.body[0], codec::FORMAT_ACCOUNT_HEAD_V2);
                assert!(
                    item_bytes(&head.key, head.version, head.body.len()).div_ceil(unit)
                        <= bare_units(&head, &a)
                );
                kept_most = kept_most.max(tail.len());
            } else {
                // Moved: one page with the tail and the new entry, of several instants.
                flushes += 1;
                assert_eq!(made.len(), 1);
                assert_eq!(made[0].body[0], codec::FORMAT_ENTRY_PAGE_V2);
                assert_eq!(head.body[0], codec::FORMAT_POSTCARD_V1);
                assert_eq!(tail.len(), 0);
            }
            pages.extend(made);
            let all = all_entries(&a, &head, &pages);
            let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
            let ats: Vec<i64> = all.iter().map(|e| e.at.micros()).collect();
            assert_eq!(ats, (1..=n).map(|i| 1_000 + i as i64).collect::<Vec<_>>());
            assert!(
                all.iter()
                    .all(|e| e.balances.debits_posted == u128::from(e.seq))
            );
        }
        // Tens of bytes an entry: a 1 KB head keeps more than ten, so a hundred single entries
        // take a few pages, not a hundred.
        assert!(kept_most >= 10, "kept at most {kept_most}");
        assert!(
            flushes >= 1 && flushes <= 100 / kept_most,
            "{flushes} pages, kept {kept_most}"
        );
    }

    #[test]
    fn entries_that_do_not_fit_move_with_the_tail_in_pages_of_the_length_bound() {
        let ids = IdGen::new();
        let mut a = account(&ids, None);
        let mut head = new_head(&a);
        let mut pages = post(&mut a, &mut head, 2, 10, 1024);
        assert!(pages.is_empty(), "two entries fit");
        // The tail's two and 300 new: the first page takes the tail and 256, the next 44.
        pages.extend(post(&mut a, &mut head, 300, 20, 1024));
        let lens: Vec<usize> = pages
            .iter()
            .map(|p| decode(p).expect("page").len())
            .collect();
        assert_eq!(lens, [2 + ENTRY_PAGE_LEN_MAX, 300 - ENTRY_PAGE_LEN_MAX]);
        assert_eq!(all_entries(&a, &head, &pages).len(), 302);
        // A status change (no entries) keeps what the head holds, even at its bound.
        post(&mut a, &mut head, 1, 30, 1024);
        let before = decode_head(&head).expect("head").1.len();
        let (body, made) = settle(
            &head.key,
            &a,
            head.version + 1,
            Some(&decode_head(&head).expect("head").1),
            &[],
            1024,
        )
        .expect("settle");
        assert!(made.is_empty());
        let changed = Item {
            body,
            ..head.clone()
        };
        assert_eq!(decode_head(&changed).expect("head").1.len(), before);
    }

    #[test]
    fn entries_that_do_not_follow_the_head_are_refused() {
        let ids = IdGen::new();
        let mut a = account(&ids, None);
        let mut head = new_head(&a);
        post(&mut a, &mut head, 2, 10, 1024);
        let (_, tail) = decode_head(&head).expect("head");
        let key = head.key.clone();
        let mut gap = a.clone();
        gap.entry_seq = 4;
        for (account, new) in [
            (gap.clone(), vec![entry(a.id, 4, 20)]),
            (gap, vec![entry(a.id, 3, 20), entry(a.id, 4, 10)]),
            (
                Account {
                    entry_seq: 3,
                    ..a.clone()
                },
                vec![entry(ids.account(Timestamp::from_micros(1)), 3, 20)],
            ),
        ] {
            assert!(matches!(
                settle(&key, &account, 9, Some(&tail), &new, 1024),
                Err(Error::Corrupt(_))
            ));
        }
    }

    #[test]
    fn broken_heads_are_corrupt_not_a_panic() {
        let ids = IdGen::new();
        let mut a = account(&ids, None);
        let mut head = new_head(&a);
        post(&mut a, &mut head, 3, 10, 1024);
        let good = head.body.clone();
        let mut bodies = vec![
            good[..good.len() - 1].to_vec(),
            [good.as_slice(), &[0]].concat(),
            vec![codec::FORMAT_ACCOUNT_HEAD_V2],
        ];
        // A tail that does not end at the account's last entry.
        let mut other = a.clone();
        other.entry_seq = 9;
        let mut body = codec::encode_as(codec::FORMAT_ACCOUNT_HEAD_V2, &other);
        body.extend_from_slice(&good[codec::encode(&a).len()..]);
        bodies.push(body);
        for cut in 1..good.len() {
            bodies.push(good[..cut].to_vec());
        }
        for body in bodies {
            let it = Item {
                body,
                ..head.clone()
            };
            let read = decode_head(&it).and_then(|(a, tail)| tail.entries(&a));
            assert!(matches!(read, Err(Error::Corrupt(_))), "{:?}", it.body);
        }
    }

    #[test]
    fn a_single_entry_item_of_the_old_format_reads_as_a_page_of_one() {
        let ids = IdGen::new();
        let t = TenantId::new("acme").expect("tenant");
        let e = entry(ids.account(Timestamp::from_micros(1)), 3, 9);
        let old = Item {
            key: layout::entry(&t, &e.account, e.at, e.seq),
            version: 1,
            body: codec::encode(&e),
        };
        assert_eq!(decode(&old).expect("decode"), vec![e]);
    }

    #[test]
    fn broken_pages_are_corrupt_not_a_panic() {
        let key = Key::new("p", "E#1");
        for body in [
            vec![],
            vec![codec::FORMAT_ENTRY_PAGE_V1],
            vec![codec::FORMAT_ENTRY_PAGE_V1, 1, 2, 3],
            vec![42, 0],
        ] {
            let it = Item {
                key: key.clone(),
                version: 1,
                body,
            };
            assert!(matches!(decode(&it), Err(Error::Corrupt(_))));
        }
        // A page that would count past u64::MAX.
        let ids = IdGen::new();
        let page = EntryPage {
            account: ids.account(Timestamp::from_micros(1)),
            at: Timestamp::from_micros(1),
            first_seq: u64::MAX,
            entries: vec![PageEntry::from(&entry(ids.account(Timestamp::from_micros(1)), 1, 1)); 2],
        };
        let it = Item {
            key,
            version: 1,
            body: codec::encode_as(codec::FORMAT_ENTRY_PAGE_V1, &page),
        };
        assert!(matches!(decode(&it), Err(Error::Corrupt(_))));
    }

    #[test]
    fn positions_round_trip_and_refuse_anything_else() {
        let p = Position::new("E#00000000000000000050#00000000000000000007", 9);
        assert_eq!(Position::parse(&p.to_sort_key()), Some(p));
        let bare = "E#00000000000000000050#00000000000000000007";
        assert_eq!(Position::parse(bare), Some(Position::new(bare, 7)));
        let ids = IdGen::new();
        let t = TenantId::new("acme").expect("tenant");
        let tail = Position::in_tail(&t, &entry(ids.account(Timestamp::from_micros(1)), 7, 50));
        assert_eq!(tail.page, bare);
        assert_eq!(Position::parse(&tail.to_sort_key()), Some(tail));
        for bad in [
            "",
            "E#",
            "E#1#2",
            "X#00000000000000000050#00000000000000000007",
            "E#00000000000000000050#00000000000000000009#00000000000000000007",
            "E#00000000000000000050#0000000000000000000x",
            "E#00000000000000000050#00000000000000000007#00000000000000000009#1",
            "E#+0000000000000000050#00000000000000000007",
            "E#00000000000000000050#T",
            "E#00000000000000000050#00000000000000000007#X",
        ] {
            assert_eq!(Position::parse(bad), None, "{bad}");
        }
    }
}
