//! Who is acting, for the records of what the current request does.
//!
//! The gateway opens a scope around each request ([`scoped`]) with what it knows first (the
//! client's address, request and trace ids) and fills in the identity once the token verified
//! ([`AuditScope::set_identity`]). The ledger reads it when a request submits a command, so the
//! committer can write the command's record in the command's own transaction, and marks the
//! scope recorded ([`AuditScope::recorded`]): the gateway then writes no second record for the
//! request. A task-local rather than a parameter of every ledger call: the scope belongs to
//! the request, and every call a request makes is on its task.

use std::sync::{Arc, Mutex};

use audit::{Actor, Origin};

tokio::task_local! {
    static SCOPE: AuditScope;
}

/// The audit context of one request. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct AuditScope {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    actor: Actor,
    origin: Origin,
    detail: Option<String>,
    recorded: bool,
}

impl AuditScope {
    /// A scope with what is known before authentication.
    pub fn new(
        source_ip: Option<String>,
        request_id: Option<String>,
        trace_id: Option<String>,
    ) -> AuditScope {
        let scope = AuditScope::default();
        {
            let mut state = scope.lock();
            state.actor.source_ip = source_ip;
            state.origin = Origin {
                request_id,
                trace_id,
            };
        }
        scope
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The verified identity: tenant, subject and client id.
    pub fn set_identity(&self, tenant: &str, subject: &str, client_id: Option<&str>) {
        let mut state = self.lock();
        state.actor.tenant = Some(tenant.to_owned());
        state.actor.subject = Some(subject.to_owned());
        state.actor.client_id = client_id.map(str::to_owned);
    }

    /// What the actor stated for this request, where the action asks for it (a card reveal's
    /// reason): the record's `detail`.
    pub fn set_detail(&self, detail: &str) {
        self.lock().detail = Some(detail.to_owned());
    }

    /// What the actor stated, if anything.
    pub fn detail(&self) -> Option<String> {
        self.lock().detail.clone()
    }

    /// The client's address, when a party this process trusts (the gateway in front of a
    /// ledger run alone) vouches for another than the connection's.
    pub fn set_source_ip(&self, source_ip: &str) {
        self.lock().actor.source_ip = Some(source_ip.to_owned());
    }

    /// Who, as known so far.
    pub fn actor(&self) -> Actor {
        self.lock().actor.clone()
    }

    /// Request and trace ids.
    pub fn origin(&self) -> Origin {
        self.lock().origin.clone()
    }

    /// Notes that a record of this request was committed.
    pub fn mark_recorded(&self) {
        self.lock().recorded = true;
    }

    /// Whether a record of this request was committed.
    pub fn recorded(&self) -> bool {
        self.lock().recorded
    }
}

/// Runs `work` with `scope` as the current request's.
pub async fn scoped<F: std::future::Future>(scope: AuditScope, work: F) -> F::Output {
    SCOPE.scope(scope, work).await
}

/// The current request's scope, if one is open.
pub fn current() -> Option<AuditScope> {
    SCOPE.try_with(Clone::clone).ok()
}
