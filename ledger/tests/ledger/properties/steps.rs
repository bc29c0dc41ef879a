//! The operations a case is made of, and how proptest generates them.

use ledger::{BalanceConstraint, Side, StatusAction};
use proptest::prelude::*;

const NONE: BalanceConstraint = BalanceConstraint::None;
const NO_OVERDRAFT: BalanceConstraint = BalanceConstraint::DebitsMustNotExceedCredits;

/// The accounts of every case: currency, normal side, constraint. Index 0 and 4 are the cash
/// accounts that fund the others; 1, 2 and 5 are wallets that cannot overdraw.
pub const ACCOUNTS: [(&str, Side, BalanceConstraint); 7] = [
    ("USD", Side::Debit, NONE),
    ("USD", Side::Credit, NO_OVERDRAFT),
    ("USD", Side::Credit, NO_OVERDRAFT),
    ("USD", Side::Credit, NONE),
    ("EUR", Side::Debit, NONE),
    ("EUR", Side::Credit, NO_OVERDRAFT),
    ("EUR", Side::Credit, NONE),
];

/// The cash account of an account's currency.
pub fn cash_of(account: usize) -> usize {
    if ACCOUNTS[account].0 == "USD" { 0 } else { 4 }
}

/// Which account a transfer goes to: an index into the accounts of the same currency (or, when
/// `cross`, of the other currency), skipping the sender.
#[derive(Clone, Copy, Debug)]
pub struct Pick {
    pub index: usize,
    pub cross: bool,
}

/// One generated operation. Indexes into holds, transfers and recorded keys wrap around.
#[derive(Clone, Debug)]
pub enum Step {
    Fund {
        to: usize,
        minor: u64,
    },
    Transfer {
        from: usize,
        to: Pick,
        minor: u64,
    },
    Hold {
        from: usize,
        to: Pick,
        minor: u64,
        timeout_s: u64,
    },
    Post {
        hold: usize,
        minor: Option<u64>,
    },
    Void {
        hold: usize,
    },
    Reverse {
        transfer: usize,
    },
    Replay {
        recorded: usize,
    },
    Reuse {
        recorded: usize,
    },
    Status {
        account: usize,
        action: StatusAction,
    },
    Advance {
        secs: u64,
    },
    Sweep,
}

pub fn step() -> impl Strategy<Value = Step> {
    let account = 0..ACCOUNTS.len();
    let pick = (any::<usize>(), prop::bool::weighted(0.15))
        .prop_map(|(index, cross)| Pick { index, cross });
    let minor = 1..=400u64;
    let action = prop_oneof![
        2 => Just(StatusAction::Freeze),
        2 => Just(StatusAction::Unfreeze),
        1 => Just(StatusAction::Close),
    ];
    prop_oneof![
        4 => (prop::sample::select(vec![1, 2, 3, 5, 6]), 1..=1000u64)
            .prop_map(|(to, minor)| Step::Fund { to, minor }),
        4 => (account.clone(), pick.clone(), minor.clone())
            .prop_map(|(from, to, minor)| Step::Transfer { from, to, minor }),
        4 => (account.clone(), pick, minor, 1..=60u64).prop_map(|(from, to, minor, timeout_s)| {
            Step::Hold { from, to, minor, timeout_s }
        }),
        4 => (any::<usize>(), prop::option::of(1..=450u64))
            .prop_map(|(hold, minor)| Step::Post { hold, minor }),
        2 => any::<usize>().prop_map(|hold| Step::Void { hold }),
        2 => any::<usize>().prop_map(|transfer| Step::Reverse { transfer }),
        2 => any::<usize>().prop_map(|recorded| Step::Replay { recorded }),
        1 => any::<usize>().prop_map(|recorded| Step::Reuse { recorded }),
        2 => (account, action).prop_map(|(account, action)| Step::Status { account, action }),
        2 => (1..=45u64).prop_map(|secs| Step::Advance { secs }),
        1 => Just(Step::Sweep),
    ]
}
