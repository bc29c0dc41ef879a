//! The model: what the ledger should answer and hold, computed without the ledger.
//!
//! It follows the rules the ledger documents. A new transfer's legs are first checked in order
//! for status and currency, then applied in order, each against its account's constraint; a hold
//! puts its amount in the pending columns. Posting a hold checks its state, its expiry and the
//! amount, then per leg releases the held amount, checks the account is open and posts. Voiding
//! only releases. A reversal is a new posted transfer of the moved amounts with sides flipped.

use ledger::{
    AccountId, AccountStatus, BalanceConstraint, Balances, Currency, Rejection, Side, StatusAction,
    Timestamp, TransferId, TransferState, VoidReason,
};

/// One leg: account index, side, amount in minor units.
pub type ModelLeg = (usize, Side, u64);

/// An account as the model sees it.
#[derive(Clone, Debug)]
pub struct ModelAccount {
    pub id: AccountId,
    pub currency: Currency,
    pub constraint: BalanceConstraint,
    pub status: AccountStatus,
    pub balances: Balances,
    pub entry_seq: u64,
}

/// A hold's part of a transfer.
#[derive(Clone, Debug)]
pub struct ModelHold {
    pub expires_at: Timestamp,
    pub posted: Option<u64>,
    pub void_reason: Option<VoidReason>,
}

/// A transfer as the model sees it.
#[derive(Clone, Debug)]
pub struct ModelTransfer {
    pub id: TransferId,
    pub legs: Vec<ModelLeg>,
    pub currency: Currency,
    pub state: TransferState,
    pub hold: Option<ModelHold>,
    pub reverses: Option<TransferId>,
    pub reversed_by: Option<TransferId>,
}

/// Expected balances, statuses and transfers, and the time.
#[derive(Debug)]
pub struct Model {
    pub now: Timestamp,
    pub accounts: Vec<ModelAccount>,
    pub transfers: Vec<ModelTransfer>,
}

/// The model's own reading of a balance constraint (not `Balances::satisfies`).
fn allows(constraint: BalanceConstraint, b: &Balances) -> bool {
    match constraint {
        BalanceConstraint::None => true,
        BalanceConstraint::DebitsMustNotExceedCredits => {
            b.debits_posted + b.debits_pending <= b.credits_posted
        }
        BalanceConstraint::CreditsMustNotExceedDebits => {
            b.credits_posted + b.credits_pending <= b.debits_posted
        }
    }
}

fn column(b: &mut Balances, side: Side, pending: bool) -> &mut u128 {
    match (side, pending) {
        (Side::Debit, false) => &mut b.debits_posted,
        (Side::Credit, false) => &mut b.credits_posted,
        (Side::Debit, true) => &mut b.debits_pending,
        (Side::Credit, true) => &mut b.credits_pending,
    }
}

fn open(account: &ModelAccount) -> Result<(), Rejection> {
    match account.status {
        AccountStatus::Open => Ok(()),
        AccountStatus::Frozen => Err(Rejection::AccountFrozen {
            account: account.id,
        }),
        AccountStatus::Closed => Err(Rejection::AccountClosed {
            account: account.id,
        }),
    }
}

impl Model {
    /// Whether a new transfer (or hold) with these legs in `currency` is accepted.
    pub fn predict_new(
        &self,
        legs: &[ModelLeg],
        currency: Currency,
        hold: bool,
    ) -> Result<(), Rejection> {
        for &(i, _, _) in legs {
            let account = &self.accounts[i];
            open(account)?;
            if account.currency != currency {
                return Err(Rejection::CurrencyMismatch {
                    account: account.id,
                    account_currency: account.currency,
                    currency,
                });
            }
        }
        for &(i, side, minor) in legs {
            let account = &self.accounts[i];
            let mut after = account.balances;
            *column(&mut after, side, hold) += u128::from(minor);
            if !allows(account.constraint, &after) {
                return Err(Rejection::InsufficientFunds {
                    account: account.id,
                });
            }
        }
        Ok(())
    }

    /// Records an accepted new transfer.
    pub fn apply_new(&mut self, transfer: ModelTransfer) {
        let pending = transfer.hold.is_some();
        for &(i, side, minor) in &transfer.legs {
            let account = &mut self.accounts[i];
            *column(&mut account.balances, side, pending) += u128::from(minor);
            account.entry_seq += 1;
        }
        self.transfers.push(transfer);
    }

    /// Whether posting `minor` (all when `None`) of hold `t` is accepted; the amount posted.
    pub fn predict_post(&self, t: usize, minor: Option<u64>) -> Result<u64, Rejection> {
        let transfer = &self.transfers[t];
        if transfer.state != TransferState::Pending {
            return Err(Rejection::NotPending {
                transfer: transfer.id,
                state: transfer.state,
            });
        }
        let hold = transfer
            .hold
            .as_ref()
            .expect("a pending transfer is a hold");
        if self.now >= hold.expires_at {
            return Err(Rejection::HoldExpired {
                transfer: transfer.id,
            });
        }
        let held = transfer.legs[0].2;
        let posted = minor.unwrap_or(held);
        if posted > held {
            return Err(Rejection::PostExceedsHold {
                transfer: transfer.id,
                held,
                requested: posted,
            });
        }
        for &(i, side, _) in &transfer.legs {
            let account = &self.accounts[i];
            let mut after = account.balances;
            *column(&mut after, side, true) -= u128::from(held);
            open(account)?;
            *column(&mut after, side, false) += u128::from(posted);
            if !allows(account.constraint, &after) {
                return Err(Rejection::InsufficientFunds {
                    account: account.id,
                });
            }
        }
        Ok(posted)
    }

    /// Whether voiding hold `t` is accepted.
    pub fn predict_void(&self, t: usize) -> Result<(), Rejection> {
        let transfer = &self.transfers[t];
        match transfer.state {
            TransferState::Pending => Ok(()),
            state => Err(Rejection::NotPending {
                transfer: transfer.id,
                state,
            }),
        }
    }

    /// Posts (`posted` set) or voids hold `t`.
    pub fn resolve(&mut self, t: usize, posted: Option<u64>, reason: Option<VoidReason>) {
        let transfer = &mut self.transfers[t];
        let held = transfer.legs[0].2;
        for &(i, side, _) in &transfer.legs {
            let account = &mut self.accounts[i];
            *column(&mut account.balances, side, true) -= u128::from(held);
            if let Some(minor) = posted {
                *column(&mut account.balances, side, false) += u128::from(minor);
            }
            account.entry_seq += 1;
        }
        let hold = transfer.hold.as_mut().expect("a hold");
        hold.posted = posted;
        hold.void_reason = reason;
        transfer.state = match posted {
            Some(_) => TransferState::Posted,
            None => TransferState::Voided,
        };
    }

    /// The legs of a reversal of `t`, if reversing it is accepted.
    pub fn predict_reverse(&self, t: usize) -> Result<Vec<ModelLeg>, Rejection> {
        let transfer = &self.transfers[t];
        if transfer.state != TransferState::Posted {
            return Err(Rejection::NotPosted {
                transfer: transfer.id,
                state: transfer.state,
            });
        }
        if let Some(reversed_by) = transfer.reversed_by {
            return Err(Rejection::AlreadyReversed {
                transfer: transfer.id,
                reversed_by,
            });
        }
        let moved = |minor: u64| match &transfer.hold {
            Some(hold) => hold.posted.expect("a posted hold has a posted amount"),
            None => minor,
        };
        let legs: Vec<ModelLeg> = transfer
            .legs
            .iter()
            .map(|&(i, side, minor)| (i, side.opposite(), moved(minor)))
            .collect();
        self.predict_new(&legs, transfer.currency, false)?;
        Ok(legs)
    }

    /// The status after `action`, if it is accepted.
    pub fn predict_status(
        &self,
        i: usize,
        action: StatusAction,
    ) -> Result<AccountStatus, Rejection> {
        let account = &self.accounts[i];
        let b = &account.balances;
        let empty =
            b.debits_posted == b.credits_posted && b.debits_pending == 0 && b.credits_pending == 0;
        match (account.status, action) {
            (AccountStatus::Open, StatusAction::Freeze) => Ok(AccountStatus::Frozen),
            (AccountStatus::Frozen, StatusAction::Unfreeze) => Ok(AccountStatus::Open),
            (AccountStatus::Open | AccountStatus::Frozen, StatusAction::Close) if !empty => {
                Err(Rejection::AccountNotEmpty {
                    account: account.id,
                })
            }
            (AccountStatus::Open | AccountStatus::Frozen, StatusAction::Close) => {
                Ok(AccountStatus::Closed)
            }
            (status, action) => Err(Rejection::InvalidTransition {
                account: account.id,
                status,
                action,
            }),
        }
    }

    /// The holds a sweep at the model's time voids.
    pub fn due_holds(&self) -> Vec<usize> {
        (0..self.transfers.len())
            .filter(|&t| {
                let transfer = &self.transfers[t];
                transfer.state == TransferState::Pending
                    && transfer
                        .hold
                        .as_ref()
                        .is_some_and(|h| h.expires_at <= self.now)
            })
            .collect()
    }

    /// Indexes of the transfers that are holds, in creation order.
    pub fn holds(&self) -> Vec<usize> {
        (0..self.transfers.len())
            .filter(|&t| self.transfers[t].hold.is_some())
            .collect()
    }

    /// Whether every constrained account keeps its constraint.
    pub fn constraints_hold(&self) -> bool {
        self.accounts
            .iter()
            .all(|a| allows(a.constraint, &a.balances))
    }
}
