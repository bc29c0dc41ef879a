//! Property test: random sequences of operations over a few accounts in two currencies, each
//! checked against an in-test [`model`] that predicts the answer (success, or which rejection),
//! the balances, statuses and entry counts after it.
//!
//! At the end of every sequence: the balances equal the model's, the trial balance balances per
//! currency with the model's totals, no constrained account is overdrawn, every transfer reads
//! back as the model has it, and every recorded idempotency key replays its stored outcome
//! without writing.

mod model;
mod requests;
mod steps;

use std::time::Duration;

use ledger::{
    AccountStatus, CurrencyTotals, PageRequest, Rejection, Side, StatusAction, TenantId, Transfer,
    TransferState, VoidReason,
};
use proptest::prelude::*;

use self::model::{Model, ModelAccount, ModelHold, ModelLeg, ModelTransfer};
use self::requests::{Answer, Recorded, Request, submit};
use self::steps::{ACCOUNTS, Pick, Step, cash_of, step};
use crate::{Failure, Harness, amount, currency, leg, tenant};

/// Generated sequences per run; each runs on its own database.
const CASES: u32 = 32;
/// Fewest and most operations in one sequence.
const STEPS_MIN: usize = 10;
const STEPS_MAX: usize = 40;
/// An amount no generated request uses: a request with it differs from every recorded one.
const FOREIGN_MINOR: u64 = 999_999;

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_the_model(steps in prop::collection::vec(step(), STEPS_MIN..=STEPS_MAX)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(steps));
    }
}

/// One case: a ledger, the model beside it, and the requests that succeeded.
struct Case {
    h: Harness,
    tenant: TenantId,
    model: Model,
    recorded: Vec<Recorded>,
}

async fn run(steps: Vec<Step>) {
    let mut case = Case::start().await;
    for (n, step) in steps.iter().enumerate() {
        case.step(step).await;
        case.check_accounts(&format!("after step {n}: {step:?}"))
            .await;
    }
    case.check_end().await;
    case.h.ledger.shutdown().await;
}

impl Case {
    async fn start() -> Case {
        let h = Harness::start();
        let tenant = tenant("prop");
        let mut accounts = Vec::new();
        for (code, side, constraint) in ACCOUNTS {
            let created = h.account(&tenant, currency(code), side, constraint).await;
            accounts.push(ModelAccount {
                id: created.id,
                currency: created.currency,
                constraint,
                status: AccountStatus::Open,
                balances: Default::default(),
                entry_seq: 0,
            });
        }
        let model = Model {
            now: h.now(),
            accounts,
            transfers: Vec::new(),
        };
        Case {
            h,
            tenant,
            model,
            recorded: Vec::new(),
        }
    }

    async fn step(&mut self, step: &Step) {
        match *step {
            Step::Fund { to, minor } => self.transfer(cash_of(to), to, minor, None).await,
            Step::Transfer { from, to, minor } => {
                let to = self.pick(from, to);
                self.transfer(from, to, minor, None).await
            }
            Step::Hold {
                from,
                to,
                minor,
                timeout_s,
            } => {
                let to = self.pick(from, to);
                self.transfer(from, to, minor, Some(timeout_s)).await
            }
            Step::Post { hold, minor } => self.post(hold, minor).await,
            Step::Void { hold } => self.void(hold).await,
            Step::Reverse { transfer } => self.reverse(transfer).await,
            Step::Replay { recorded } => self.replay(recorded).await,
            Step::Reuse { recorded } => self.reuse(recorded).await,
            Step::Status { account, action } => self.status(account, action).await,
            Step::Advance { secs } => {
                self.h.clock.advance(Duration::from_secs(secs));
                self.model.now = self.h.now();
            }
            Step::Sweep => self.sweep().await,
        }
    }

    fn pick(&self, from: usize, to: Pick) -> usize {
        let same = |i: usize| ACCOUNTS[i].0 == ACCOUNTS[from].0;
        let candidates: Vec<usize> = (0..ACCOUNTS.len())
            .filter(|&i| i != from && same(i) != to.cross)
            .collect();
        candidates[to.index % candidates.len()]
    }

    /// Sends `request` under a fresh key and compares the answer with the prediction. A success
    /// is recorded for later replays and returned.
    async fn expect(
        &mut self,
        request: Request,
        predicted: Result<(), Rejection>,
    ) -> Option<Answer> {
        let key = self.h.key();
        let actual = submit(&self.h.ledger, &self.tenant, key.clone(), &request).await;
        match (predicted, actual) {
            (Ok(()), Ok(committed)) => {
                assert!(
                    !committed.replayed,
                    "{request:?} under a fresh key replayed"
                );
                let answer = committed.value;
                self.recorded.push(Recorded {
                    key,
                    request,
                    answer: answer.clone(),
                });
                Some(answer)
            }
            (Err(expected), Err(error)) => {
                let expected = Failure::Rejected(expected);
                assert_eq!(Failure::from(error), expected, "{request:?}");
                None
            }
            (Ok(()), Err(error)) => panic!("{request:?}: expected success, got {error:?}"),
            (Err(expected), Ok(c)) => panic!("{request:?}: expected {expected:?}, got {c:?}"),
        }
    }

    async fn transfer(&mut self, from: usize, to: usize, minor: u64, timeout_s: Option<u64>) {
        let currency = self.model.accounts[from].currency;
        let legs: Vec<ModelLeg> = vec![(from, Side::Debit, minor), (to, Side::Credit, minor)];
        let predicted = self.model.predict_new(&legs, currency, timeout_s.is_some());
        let (debit, credit) = (self.model.accounts[from].id, self.model.accounts[to].id);
        let new = match timeout_s {
            Some(t) => crate::pending(debit, credit, minor, currency, t),
            None => crate::plain(debit, credit, minor, currency),
        };
        let Some(answer) = self.expect(Request::Transfer(new), predicted).await else {
            return;
        };
        let t = answer.transfer();
        let hold = timeout_s.map(|s| ModelHold {
            expires_at: self.model.now.plus(Duration::from_secs(s)),
            posted: None,
            void_reason: None,
        });
        let expected = ModelTransfer {
            id: t.id,
            legs,
            currency,
            state: match hold {
                Some(_) => TransferState::Pending,
                None => TransferState::Posted,
            },
            hold,
            reverses: None,
            reversed_by: None,
        };
        self.check_transfer(&t, &expected);
        self.model.apply_new(expected);
    }

    async fn post(&mut self, hold: usize, minor: Option<u64>) {
        let holds = self.model.holds();
        let Some(&t) = holds.get(hold % holds.len().max(1)) else {
            return;
        };
        let predicted = self.model.predict_post(t, minor);
        let request = Request::Post {
            transfer: self.model.transfers[t].id,
            amount: minor.map(amount),
        };
        let answer = self.expect(request, predicted.clone().map(|_| ())).await;
        if let (Some(answer), Ok(posted)) = (answer, predicted) {
            self.model.resolve(t, Some(posted), None);
            self.check_transfer(&answer.transfer(), &self.model.transfers[t]);
        }
    }

    async fn void(&mut self, hold: usize) {
        let holds = self.model.holds();
        let Some(&t) = holds.get(hold % holds.len().max(1)) else {
            return;
        };
        let predicted = self.model.predict_void(t);
        let request = Request::Void {
            transfer: self.model.transfers[t].id,
        };
        if let Some(answer) = self.expect(request, predicted).await {
            self.model.resolve(t, None, Some(VoidReason::Requested));
            self.check_transfer(&answer.transfer(), &self.model.transfers[t]);
        }
    }

    async fn reverse(&mut self, transfer: usize) {
        let count = self.model.transfers.len();
        if count == 0 {
            return;
        }
        let t = transfer % count;
        let predicted = self.model.predict_reverse(t);
        let original = self.model.transfers[t].id;
        let request = Request::Reverse { transfer: original };
        let answer = self.expect(request, predicted.clone().map(|_| ())).await;
        if let (Some(answer), Ok(legs)) = (answer, predicted) {
            let reversal = answer.transfer();
            let expected = ModelTransfer {
                id: reversal.id,
                legs,
                currency: self.model.transfers[t].currency,
                state: TransferState::Posted,
                hold: None,
                reverses: Some(original),
                reversed_by: None,
            };
            self.check_transfer(&reversal, &expected);
            self.model.apply_new(expected);
            self.model.transfers[t].reversed_by = Some(reversal.id);
        }
    }

    async fn status(&mut self, account: usize, action: StatusAction) {
        let predicted = self.model.predict_status(account, action);
        let request = Request::Status {
            account: self.model.accounts[account].id,
            action,
        };
        let answer = self.expect(request, predicted.clone().map(|_| ())).await;
        if let (Some(answer), Ok(next)) = (answer, predicted) {
            let Answer::Account(changed) = answer else {
                panic!("expected an account, got {answer:?}");
            };
            assert_eq!(changed.status, next);
            self.model.accounts[account].status = next;
        }
    }

    async fn sweep(&mut self) {
        let due = self.model.due_holds();
        let voided = self.h.ledger.sweep_expired_holds().await.unwrap();
        assert_eq!(voided, due.len(), "holds swept");
        for t in due {
            self.model.resolve(t, None, Some(VoidReason::Expired));
        }
    }

    async fn replay(&mut self, recorded: usize) {
        let Some(r) = self.recorded.get(recorded % self.recorded.len().max(1)) else {
            return;
        };
        let again = submit(&self.h.ledger, &self.tenant, r.key.clone(), &r.request).await;
        let again = again.unwrap_or_else(|e| panic!("replay of {:?}: {e:?}", r.request));
        assert!(again.replayed, "replay of {:?} was not a replay", r.request);
        assert_eq!(again.value, r.answer, "replay of {:?}", r.request);
    }

    async fn reuse(&mut self, recorded: usize) {
        let Some(r) = self.recorded.get(recorded % self.recorded.len().max(1)) else {
            return;
        };
        let (cash, shop) = (self.model.accounts[0].id, self.model.accounts[3].id);
        let other = Request::Transfer(crate::plain(cash, shop, FOREIGN_MINOR, currency("USD")));
        let reused = submit(&self.h.ledger, &self.tenant, r.key.clone(), &other).await;
        assert_eq!(crate::failure(reused), Failure::IdempotencyKeyReused);
    }

    /// The ledger's answer against the model's transfer.
    fn check_transfer(&self, t: &Transfer, expected: &ModelTransfer) {
        let legs: Vec<_> = expected
            .legs
            .iter()
            .map(|&(i, side, minor)| leg(self.model.accounts[i].id, side, minor, expected.currency))
            .collect();
        assert_eq!(t.id, expected.id);
        assert_eq!(t.legs, legs, "legs of {}", t.id);
        assert_eq!(t.state, expected.state, "state of {}", t.id);
        assert_eq!(t.reverses, expected.reverses, "reverses of {}", t.id);
        assert_eq!(
            t.reversed_by, expected.reversed_by,
            "reversed_by of {}",
            t.id
        );
        let hold = t.hold.as_ref().map(|h| {
            let posted = h.posted_amount.map(ledger::Amount::minor);
            (h.expires_at, posted, h.void_reason)
        });
        let model_hold = expected
            .hold
            .as_ref()
            .map(|h| (h.expires_at, h.posted, h.void_reason));
        assert_eq!(hold, model_hold, "hold of {}", t.id);
    }

    /// Every account reads back as the model has it.
    async fn check_accounts(&self, when: &str) {
        let page = PageRequest {
            limit: Some(ACCOUNTS.len()),
            ..Default::default()
        };
        let listed = self
            .h
            .ledger
            .list_accounts(&self.tenant, page)
            .await
            .unwrap();
        assert_eq!(listed.items.len(), ACCOUNTS.len());
        for (account, expected) in listed.items.iter().zip(&self.model.accounts) {
            assert_eq!(account.id, expected.id, "{when}");
            assert_eq!(account.balances, expected.balances, "{} {when}", account.id);
            assert_eq!(account.status, expected.status, "{} {when}", account.id);
            assert_eq!(
                account.entry_seq, expected.entry_seq,
                "{} {when}",
                account.id
            );
        }
    }

    async fn check_end(&self) {
        self.check_accounts("at the end").await;
        assert!(
            self.model.constraints_hold(),
            "the model overdrew: {:?}",
            self.model
        );
        let listed = self.h.all_transfers(&self.tenant).await;
        assert_eq!(listed.len(), self.model.transfers.len());
        for (t, expected) in listed.iter().zip(&self.model.transfers) {
            self.check_transfer(t, expected);
        }
        self.check_trial_balance().await;
        self.check_history().await;
        for r in &self.recorded {
            let again = submit(&self.h.ledger, &self.tenant, r.key.clone(), &r.request).await;
            let again = again.unwrap_or_else(|e| panic!("replay of {:?}: {e:?}", r.request));
            assert_eq!((again.replayed, &again.value), (true, &r.answer));
        }
        self.check_accounts("after replaying every key").await;
        let after = self.h.all_transfers(&self.tenant).await;
        assert_eq!(after, listed, "replays wrote transfers");
    }

    async fn check_trial_balance(&self) {
        let trial = self.h.ledger.trial_balance(&self.tenant).await.unwrap();
        assert!(trial.balanced(), "{trial:?}");
        let mut expected = Vec::new();
        for code in ["EUR", "USD"] {
            let mut totals = CurrencyTotals {
                currency: currency(code),
                accounts: 0,
                debits_posted: 0,
                credits_posted: 0,
                debits_pending: 0,
                credits_pending: 0,
            };
            for a in self
                .model
                .accounts
                .iter()
                .filter(|a| a.currency == currency(code))
            {
                totals.accounts += 1;
                totals.debits_posted += a.balances.debits_posted;
                totals.credits_posted += a.balances.credits_posted;
                totals.debits_pending += a.balances.debits_pending;
                totals.credits_pending += a.balances.credits_pending;
            }
            expected.push(totals);
        }
        assert_eq!(trial.currencies, expected);
        for a in &self.model.accounts {
            let head = self.h.get(&self.tenant, a.id).await;
            assert!(
                head.balances.satisfies(head.constraint),
                "{head:?} is overdrawn"
            );
        }
    }

    /// Each account's last entry carries its current balances.
    async fn check_history(&self) {
        for a in &self.model.accounts {
            let page = PageRequest {
                limit: Some(1),
                cursor: None,
                descending: true,
            };
            let last = self
                .h
                .ledger
                .entries(&self.tenant, &a.id, page)
                .await
                .unwrap();
            match last.items.first() {
                Some(entry) => {
                    assert_eq!(entry.seq, a.entry_seq);
                    assert_eq!(entry.balances, a.balances);
                }
                None => assert_eq!(a.entry_seq, 0),
            }
        }
    }
}
