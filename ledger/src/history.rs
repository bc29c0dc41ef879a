//! How an account's history is stored: entry pages.
//!
//! The entries one transaction writes on one account all carry the same instant (the batch's
//! clock, never earlier than the account's last entry), and their sequence numbers follow one
//! another. They are stored together as one item, an [`EntryPage`], under the sort key of its
//! first entry (`E#{at_us:020}#{first_seq:020}`, see [`layout::entry`]): a batch costs one
//! history item per account it touches, not one per leg. That is what a transaction pays for
//! (DynamoDB charges per item and started KB; SQLite's b-tree per row and page), and a hot
//! account's partition takes one write per batch instead of one per leg.
//!
//! Pages never overlap and sort by (instant, first sequence), which is the entries' own order, so
//! a range query over pages reads the history in order; "balance as of T" is the last entry of
//! the last page at or before T. A position in the history (a cursor) names the page and the
//! entry's sequence, [`Position`].
//!
//! Items written before pages existed hold a single entry in the record format
//! ([`codec::FORMAT_POSTCARD_V1`]) under that entry's own key: they read as pages of one.

use serde::{Deserialize, Serialize};

use crate::account::{Balances, Side};
use crate::codec;
use crate::error::Error;
use crate::ids::{AccountId, TenantId, TransferId};
use crate::layout;
use crate::limits::ENTRY_PAGE_LEN_MAX;
use crate::store::{Item, Key};
use crate::time::Timestamp;
use crate::transfer::{Entry, EntryKind};

/// The stored shape of a page: what its entries share, once.
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

/// The pages of one transaction's entries, as items to create: `(key, body)`.
///
/// `entries` is every entry of the transaction, each with its tenant, in the order they were
/// made; an account's entries are consecutive in sequence and share an instant, as the planner
/// makes them. A page is cut wherever that does not hold, so a page's sort key is always its
/// first entry's and its entries always follow one another.
pub(crate) fn pages(mut entries: Vec<(TenantId, Entry)>) -> Vec<(Key, Vec<u8>)> {
    // Stable: an account's entries keep their order.
    entries.sort_by(|(ta, a), (tb, b)| (ta, a.account, a.seq).cmp(&(tb, b.account, b.seq)));
    let mut out = Vec::new();
    let mut open: Option<(TenantId, EntryPage)> = None;
    for (tenant, entry) in entries {
        if let Some((t, page)) = &mut open {
            let follows = *t == tenant
                && page.account == entry.account
                && page.at == entry.at
                && page.first_seq + page.entries.len() as u64 == entry.seq
                && page.entries.len() < ENTRY_PAGE_LEN_MAX;
            if follows {
                page.entries.push(PageEntry::from(&entry));
                continue;
            }
        }
        if let Some((t, page)) = open.take() {
            out.push(finish(&t, page));
        }
        open = Some((
            tenant,
            EntryPage {
                account: entry.account,
                at: entry.at,
                first_seq: entry.seq,
                entries: vec![PageEntry::from(&entry)],
            },
        ));
    }
    if let Some((t, page)) = open {
        out.push(finish(&t, page));
    }
    out
}

fn finish(tenant: &TenantId, page: EntryPage) -> (Key, Vec<u8>) {
    let key = layout::entry(tenant, &page.account, page.at, page.first_seq);
    (key, codec::encode_as(codec::FORMAT_ENTRY_PAGE_V1, &page))
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
    if item.body.first() == Some(&codec::FORMAT_POSTCARD_V1) {
        return Ok(vec![codec::decode::<Entry>(item)?]);
    }
    let page: EntryPage = codec::decode_as(codec::FORMAT_ENTRY_PAGE_V1, item)?;
    let EntryPage {
        account,
        at,
        first_seq,
        entries,
    } = page;
    if entries.is_empty() {
        return Err(Error::Corrupt(format!(
            "item {:?}: empty entry page",
            item.key
        )));
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let seq = first_seq
                .checked_add(i as u64)
                .ok_or_else(|| Error::Corrupt(format!("item {:?}: sequence overflow", item.key)))?;
            Ok(Entry {
                account,
                seq,
                transfer: e.transfer,
                kind: e.kind,
                side: e.side,
                amount: e.amount,
                released: e.released,
                balances: e.balances,
                at,
            })
        })
        .collect()
}

/// A place in an account's history: an entry, and the page that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    /// The sort key of the page.
    pub page: String,
    /// The entry's sequence number.
    pub seq: u64,
}

impl Position {
    /// The position of `entry`, held by the page whose sort key is `page`.
    pub fn new(page: &str, seq: u64) -> Position {
        Position {
            page: page.to_owned(),
            seq,
        }
    }

    /// As a cursor carries it: `{page sort key}#{seq:020}`.
    pub fn to_sort_key(&self) -> String {
        format!("{}#{:020}", self.page, self.seq)
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

    #[test]
    fn a_transactions_entries_on_one_account_share_a_page() {
        let ids = IdGen::new();
        let t = TenantId::new("acme").expect("tenant");
        let (a, b) = (
            ids.account(Timestamp::from_micros(1)),
            ids.account(Timestamp::from_micros(1)),
        );
        let made = vec![
            (t.clone(), entry(a, 7, 50)),
            (t.clone(), entry(b, 1, 50)),
            (t.clone(), entry(a, 8, 50)),
            (t.clone(), entry(a, 9, 50)),
        ];
        let pages = pages(made.clone());
        assert_eq!(pages.len(), 2);
        let mut read: Vec<Entry> = Vec::new();
        for p in pages {
            let it = item(p);
            let entries = decode(&it).expect("decode");
            let first = &entries[0];
            assert_eq!(
                it.key,
                layout::entry(&t, &first.account, first.at, first.seq)
            );
            read.extend(entries);
        }
        let mut want: Vec<Entry> = made.into_iter().map(|(_, e)| e).collect();
        want.sort_by_key(|e| (e.account, e.seq));
        assert_eq!(read, want);
    }

    #[test]
    fn pages_are_cut_at_gaps_instants_tenants_and_the_length_bound() {
        let ids = IdGen::new();
        let (t, u) = (
            TenantId::new("acme").expect("tenant"),
            TenantId::new("globex").expect("tenant"),
        );
        let a = ids.account(Timestamp::from_micros(1));
        let mut made = vec![
            (t.clone(), entry(a, 1, 50)),
            (t.clone(), entry(a, 2, 60)), // another instant
            (t.clone(), entry(a, 4, 60)), // a gap
            (u.clone(), entry(a, 5, 60)), // another tenant
        ];
        let n = ENTRY_PAGE_LEN_MAX as u64 + 1;
        made.extend((100..100 + n).map(|s| (t.clone(), entry(a, s, 70))));
        let pages = pages(made);
        assert_eq!(pages.len(), 6);
        let lens: Vec<usize> = pages
            .into_iter()
            .map(|p| decode(&item(p)).expect("decode").len())
            .collect();
        assert_eq!(lens, vec![1, 1, 1, ENTRY_PAGE_LEN_MAX, 1, 1]);
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
        for bad in [
            "",
            "E#",
            "E#1#2",
            "X#00000000000000000050#00000000000000000007",
            "E#00000000000000000050#00000000000000000009#00000000000000000007",
            "E#00000000000000000050#0000000000000000000x",
            "E#00000000000000000050#00000000000000000007#00000000000000000009#1",
            "E#+0000000000000000050#00000000000000000007",
        ] {
            assert_eq!(Position::parse(bad), None, "{bad}");
        }
    }
}
