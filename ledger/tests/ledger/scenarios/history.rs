//! Balances over time: an account's entries with running balances, and balances as of an
//! instant.

use std::time::Duration;

use ledger::{AccountId, Balances, BatchMode, Entry, EntryKind, PageRequest, Side, Timestamp};

use crate::{Harness, WRITE_UNITS, amount, bal, fresh, plain, tenant, usd};

/// Walks an account's entries with pages of `limit`, returning the sequence numbers page by page.
async fn seq_pages(
    h: &Harness,
    account: AccountId,
    limit: usize,
    descending: bool,
) -> Vec<Vec<u64>> {
    let acme = tenant("acme");
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = PageRequest {
            limit: Some(limit),
            cursor,
            descending,
        };
        let listing = h.ledger.entries(&acme, &account, page).await.unwrap();
        out.push(listing.items.iter().map(|e| e.seq).collect());
        match listing.next_cursor {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

/// One expected entry: kind, side, amount, released, balances after.
type Row = (EntryKind, Side, u64, u64, Balances);

fn check_entries(entries: &[Entry], account: AccountId, expected: &[Row]) {
    let got: Vec<Row> = entries
        .iter()
        .map(|e| (e.kind, e.side, e.amount, e.released, e.balances))
        .collect();
    assert_eq!(got, expected);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.account, account);
        assert_eq!(entry.seq, i as u64 + 1);
    }
}

#[tokio::test]
async fn entries_carry_running_balances() {
    for unit in WRITE_UNITS {
        entries_carry_running_balances_with(Harness::start_with_write_unit(unit)).await;
    }
}

async fn entries_carry_running_balances_with(h: Harness) {
    use EntryKind::{Held, HoldPosted, HoldVoided, Posted};
    use Side::{Credit, Debit};
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    let funded = h.transfer(&acme, cash, wallet, 1000, usd()).await.unwrap();
    let spent = h.transfer(&acme, wallet, shop, 300, usd()).await.unwrap();
    let held = h.hold(&acme, wallet, shop, 200, usd(), 60).await.unwrap();
    let post = h
        .ledger
        .post_pending(&acme, h.key(), held.id, Some(amount(150)));
    post.await.unwrap();
    let voided = h.hold(&acme, wallet, shop, 50, usd(), 60).await.unwrap();
    h.ledger
        .void_pending(&acme, h.key(), voided.id)
        .await
        .unwrap();

    let all = h.history(&acme, wallet).await;
    assert_eq!(all.next_cursor, None);
    check_entries(
        &all.items,
        wallet,
        &[
            (Posted, Credit, 1000, 0, bal(0, 1000, 0, 0)),
            (Posted, Debit, 300, 0, bal(300, 1000, 0, 0)),
            (Held, Debit, 200, 0, bal(300, 1000, 200, 0)),
            (HoldPosted, Debit, 150, 200, bal(450, 1000, 0, 0)),
            (Held, Debit, 50, 0, bal(450, 1000, 50, 0)),
            (HoldVoided, Debit, 0, 50, bal(450, 1000, 0, 0)),
        ],
    );
    let transfers: Vec<_> = all.items.iter().map(|e| e.transfer).collect();
    let expected = [funded.id, spent.id, held.id, held.id, voided.id, voided.id];
    assert_eq!(transfers, expected);
    // The head agrees with the last entry.
    let head = h.get(&acme, wallet).await;
    assert_eq!(head.entry_seq, 6);
    assert_eq!(head.balances, all.items[5].balances);
    let shop_entries = h.history(&acme, shop).await;
    check_entries(
        &shop_entries.items,
        shop,
        &[
            (Posted, Credit, 300, 0, bal(0, 300, 0, 0)),
            (Held, Credit, 200, 0, bal(0, 300, 0, 200)),
            (HoldPosted, Credit, 150, 200, bal(0, 450, 0, 0)),
            (Held, Credit, 50, 0, bal(0, 450, 0, 50)),
            (HoldVoided, Credit, 0, 50, bal(0, 450, 0, 0)),
        ],
    );

    // Pages of two, both ways, each entry once.
    let up = seq_pages(&h, wallet, 2, false).await;
    assert_eq!(up, [vec![1, 2], vec![3, 4], vec![5, 6]]);
    let down = seq_pages(&h, wallet, 2, true).await;
    assert_eq!(down, [vec![6, 5], vec![4, 3], vec![2, 1]]);
    let odd = seq_pages(&h, wallet, 4, true).await;
    assert_eq!(odd, [vec![6, 5, 4, 3], vec![2, 1]]);
    // An account without entries has an empty history.
    let empty = h.cash(&acme, usd()).await;
    assert_eq!(seq_pages(&h, empty, 2, false).await, [Vec::<u64>::new()]);
}

#[tokio::test]
async fn balance_at_an_instant() {
    for unit in WRITE_UNITS {
        balance_at_an_instant_with(Harness::start_with_write_unit(unit)).await;
    }
}

async fn balance_at_an_instant_with(h: Harness) {
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    h.clock.advance(Duration::from_secs(10));
    let t1 = h.now();
    h.transfer(&acme, cash, wallet, 100, usd()).await.unwrap();
    h.clock.advance(Duration::from_secs(10));
    let t2 = h.now();
    h.transfer(&acme, cash, wallet, 50, usd()).await.unwrap();
    h.hold(&acme, wallet, cash, 30, usd(), 60).await.unwrap();
    h.clock.advance(Duration::from_secs(10));

    let check = |at: Timestamp, balances: Balances, entry_seq: u64| {
        let ledger = h.ledger.clone();
        let acme = acme.clone();
        async move {
            let found = ledger.balance_at(&acme, &wallet, at).await.unwrap();
            assert_eq!(found.at, at);
            assert_eq!(found.balances, balances, "at {at:?}");
            assert_eq!(found.entry_seq, entry_seq, "at {at:?}");
            assert_eq!(found.account.id, wallet);
            assert_eq!(found.account.balances, bal(0, 150, 30, 0));
        }
    };
    let micros = |t: Timestamp, d: i64| Timestamp::from_micros(t.micros() + d);
    check(Timestamp::from_micros(crate::START_US), bal(0, 0, 0, 0), 0).await;
    check(micros(t1, -1), bal(0, 0, 0, 0), 0).await;
    check(t1, bal(0, 100, 0, 0), 1).await;
    check(micros(t1, 5_000_000), bal(0, 100, 0, 0), 1).await;
    check(micros(t2, -1), bal(0, 100, 0, 0), 1).await;
    check(t2, bal(0, 150, 30, 0), 3).await;
    check(h.now(), bal(0, 150, 30, 0), 3).await;
    check(Timestamp::EPOCH, bal(0, 0, 0, 0), 0).await;
}

#[tokio::test]
async fn pages_of_history_cut_through_a_batchs_entries_the_same_both_ways() {
    for unit in WRITE_UNITS {
        pages_of_history_cut_through_a_batchs_entries_the_same_both_ways_with(
            Harness::start_with_write_unit(unit),
        )
        .await;
    }
}

async fn pages_of_history_cut_through_a_batchs_entries_the_same_both_ways_with(h: Harness) {
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    // Single transfers, then batches: a batch's entries on one account are stored together,
    // and pages of the listing must cut through them anywhere.
    let mut amounts = Vec::new();
    h.transfer(&acme, cash, shop, 1, usd()).await.unwrap();
    amounts.push(1);
    for size in [5u64, 1, 3] {
        let items = (0..size)
            .map(|i| plain(cash, shop, 10 * size + i, usd()))
            .collect();
        fresh(
            h.ledger
                .create_batch(&acme, h.key(), BatchMode::Atomic, items)
                .await,
        );
        amounts.extend((0..size).map(|i| 10 * size + i));
        h.clock.advance(Duration::from_millis(1));
    }
    h.transfer(&acme, cash, shop, 2, usd()).await.unwrap();
    amounts.push(2);
    let total = amounts.len() as u64;
    let all: Vec<u64> = (1..=total).collect();

    let listed = h.history(&acme, shop).await;
    let got: Vec<u64> = listed.items.iter().map(|e| e.amount).collect();
    assert_eq!(got, amounts);
    let mut running = 0u128;
    for (i, e) in listed.items.iter().enumerate() {
        running += u128::from(e.amount);
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!(e.balances, bal(0, running, 0, 0));
    }

    for limit in 1..=total as usize + 1 {
        for descending in [false, true] {
            let pages = seq_pages(&h, shop, limit, descending).await;
            let (last, full) = pages.split_last().expect("a page");
            assert!(full.iter().all(|p| p.len() == limit), "limit {limit}");
            assert!(!last.is_empty() && last.len() <= limit, "limit {limit}");
            let mut want = all.clone();
            if descending {
                want.reverse();
            }
            assert_eq!(
                pages.concat(),
                want,
                "limit {limit} descending {descending}"
            );
        }
    }

    // As of the instant of the five-transfer batch: the last of its entries.
    let in_batch = listed.items[3].at;
    let found = h.ledger.balance_at(&acme, &shop, in_batch).await.unwrap();
    assert_eq!(found.entry_seq, 6);
    assert_eq!(found.balances, listed.items[5].balances);
}

#[tokio::test]
async fn a_listing_page_longer_than_one_store_read_of_pages_is_whole() {
    for unit in WRITE_UNITS {
        a_listing_page_longer_than_one_store_read_of_pages_is_whole_with(
            Harness::start_with_write_unit(unit),
        )
        .await;
    }
}

async fn a_listing_page_longer_than_one_store_read_of_pages_is_whole_with(h: Harness) {
    use ledger::limits::HISTORY_ITEMS_PER_READ;
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    // Single transfers: without a write unit, one page each, so a listing of n entries reads
    // n pages, which takes more than one store read past HISTORY_ITEMS_PER_READ; with one, the
    // head keeps the newest and pages hold several each.
    let n = HISTORY_ITEMS_PER_READ + 3;
    for amount in 1..=n as u64 {
        h.transfer(&acme, cash, shop, amount, usd()).await.unwrap();
    }
    for descending in [false, true] {
        let mut want: Vec<u64> = (1..=n as u64).collect();
        if descending {
            want.reverse();
        }
        for limit in [n - 1, n, n + 1] {
            let page = PageRequest {
                limit: Some(limit),
                cursor: None,
                descending,
            };
            let listed = h.ledger.entries(&acme, &shop, page).await.unwrap();
            let seqs: Vec<u64> = listed.items.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, want[..limit.min(n)], "limit {limit}");
            assert_eq!(listed.next_cursor.is_some(), limit < n, "limit {limit}");
        }
        assert_eq!(seq_pages(&h, shop, n - 1, descending).await.concat(), want);
    }
}

/// One page of `limit` entries from `cursor`, as sequence numbers, and the next cursor.
async fn seq_page(
    h: &Harness,
    account: AccountId,
    limit: usize,
    descending: bool,
    cursor: Option<String>,
) -> (Vec<u64>, Option<String>) {
    let page = PageRequest {
        limit: Some(limit),
        cursor,
        descending,
    };
    let listing = h
        .ledger
        .entries(&tenant("acme"), &account, page)
        .await
        .unwrap();
    (
        listing.items.iter().map(|e| e.seq).collect(),
        listing.next_cursor,
    )
}

#[tokio::test]
async fn cursors_taken_in_the_heads_tail_go_on_after_it_moved_to_a_page() {
    // A 1 KB head keeps an account's newest entries (tens of bytes each) until they would make
    // it bigger than a write unit; then they move to a page keyed by the first of them.
    let h = Harness::start_with_write_unit(1024);
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    let mut instants = Vec::new();
    let mut post = |amount: u64| {
        h.clock.advance(Duration::from_millis(1));
        instants.push(h.now());
        h.transfer(&acme, cash, shop, amount, usd())
    };
    for amount in 1..=3 {
        post(amount).await.unwrap();
    }
    // Taken while entries 1 to 3 are all in the head.
    let (up, up_cursor) = seq_page(&h, shop, 2, false, None).await;
    assert_eq!(up, [1, 2]);
    let (down, down_cursor) = seq_page(&h, shop, 2, true, None).await;
    assert_eq!(down, [3, 2]);
    assert_eq!(seq_page(&h, shop, 5, false, up_cursor.clone()).await.0, [3]);
    assert_eq!(
        seq_page(&h, shop, 5, true, down_cursor.clone()).await.0,
        [1]
    );

    // Enough single transfers that the head's entries move to pages, several times.
    let n = 100u64;
    for amount in 4..=n {
        post(amount).await.unwrap();
    }
    // The same cursors, now that the entries they name are in a page.
    let mut rest = Vec::new();
    let mut cursor = up_cursor;
    loop {
        let (seqs, next) = seq_page(&h, shop, 7, false, cursor).await;
        rest.extend(seqs);
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(rest, (3..=n).collect::<Vec<_>>());
    assert_eq!(seq_page(&h, shop, 5, true, down_cursor).await.0, [1]);
    // Every way of walking the history sees every entry once.
    for limit in [1, 2, 7, 40, 101] {
        for descending in [false, true] {
            let mut want: Vec<u64> = (1..=n).collect();
            if descending {
                want.reverse();
            }
            assert_eq!(seq_pages(&h, shop, limit, descending).await.concat(), want);
        }
    }
    // As of each transfer's instant: that transfer's entry, in a page or in the head.
    let mut running = 0u128;
    for (i, at) in instants.iter().enumerate() {
        running += i as u128 + 1;
        let found = h.ledger.balance_at(&acme, &shop, *at).await.unwrap();
        assert_eq!(found.entry_seq, i as u64 + 1);
        assert_eq!(found.balances, bal(0, running, 0, 0));
        let before = Timestamp::from_micros(at.micros() - 1);
        let found = h.ledger.balance_at(&acme, &shop, before).await.unwrap();
        assert_eq!(found.entry_seq, i as u64);
    }
}
