//! Requests a case sends, in a form that can be sent again under the same key.

use ledger::{
    Account, Committed, IdempotencyKey, Ledger, Metadata, NewTransfer, StatusAction, TenantId,
    Transfer, TransferId,
};

/// A request that can be sent again under its key.
#[derive(Clone, Debug)]
pub enum Request {
    Transfer(NewTransfer),
    Post {
        transfer: TransferId,
        amount: Option<ledger::Amount>,
    },
    Void {
        transfer: TransferId,
    },
    Reverse {
        transfer: TransferId,
    },
    Status {
        account: ledger::AccountId,
        action: StatusAction,
    },
}

/// What a request answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Transfer(Transfer),
    Account(Account),
}

impl Answer {
    pub fn transfer(self) -> Transfer {
        match self {
            Answer::Transfer(t) => t,
            Answer::Account(a) => panic!("expected a transfer, got account {a:?}"),
        }
    }
}

pub async fn submit(
    ledger: &Ledger,
    tenant: &TenantId,
    key: IdempotencyKey,
    request: &Request,
) -> ledger::Result<Committed<Answer>> {
    let transfer = |c: Committed<Transfer>| Committed {
        value: Answer::Transfer(c.value),
        replayed: c.replayed,
    };
    match request {
        Request::Transfer(new) => {
            let created = ledger.create_transfer(tenant, key, new.clone()).await;
            created.map(transfer)
        }
        Request::Post {
            transfer: id,
            amount,
        } => ledger
            .post_pending(tenant, key, *id, *amount)
            .await
            .map(transfer),
        Request::Void { transfer: id } => ledger.void_pending(tenant, key, *id).await.map(transfer),
        Request::Reverse { transfer: id } => {
            let reversed = ledger.reverse(tenant, key, *id, None, Metadata::default());
            reversed.await.map(transfer)
        }
        Request::Status { account, action } => {
            let changed = ledger
                .set_account_status(tenant, key, *account, *action)
                .await;
            changed.map(|c| Committed {
                value: Answer::Account(c.value),
                replayed: c.replayed,
            })
        }
    }
}

/// A request that succeeded, under its key: replaying it must answer the same.
#[derive(Debug)]
pub struct Recorded {
    pub key: IdempotencyKey,
    pub request: Request,
    pub answer: Answer,
}
