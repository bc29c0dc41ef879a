//! HTTPS clients that trust only the instance's certificate, requests built step by step,
//! answers read whole, and helpers for the common domain calls.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, Version};
use serde_json::{Value, json};

use super::PROBLEM_BASE;

/// Which HTTP version a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 only.
    Http1,
    /// Whatever ALPN agrees on: HTTP/2 with Strongroom.
    Negotiated,
}

/// A client of one instance: base URL, trusted certificate, optional token.
#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    url: String,
    /// The bearer token sent unless a request says otherwise.
    pub token: Option<String>,
}

/// Which token a request carries.
#[derive(Clone, Debug)]
enum Bearer {
    Default,
    None,
    Raw(String),
}

/// A request, built up step by step; see [`Api::send`].
#[derive(Clone, Debug)]
pub struct Req {
    method: Method,
    path: String,
    bearer: Bearer,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    content_type: Option<String>,
}

impl Req {
    /// A request with any method.
    pub fn new(method: Method, path: &str) -> Req {
        Req {
            method,
            path: path.to_owned(),
            bearer: Bearer::Default,
            headers: Vec::new(),
            body: None,
            content_type: None,
        }
    }

    /// A GET.
    pub fn get(path: &str) -> Req {
        Req::new(Method::GET, path)
    }

    /// A POST without a body yet.
    pub fn post(path: &str) -> Req {
        Req::new(Method::POST, path)
    }

    /// A JSON body (and its content type, unless set otherwise).
    pub fn json(self, body: &Value) -> Req {
        self.raw(serde_json::to_vec(body).unwrap())
    }

    /// Body bytes, sent as `application/json` unless [`Req::content_type`] says otherwise.
    pub fn raw(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = Some(body.into());
        if self.content_type.is_none() {
            self.content_type = Some("application/json".into());
        }
        self
    }

    /// The `Content-Type`; empty sends none.
    pub fn content_type(mut self, value: &str) -> Req {
        self.content_type = Some(value.to_owned());
        self
    }

    /// An `Idempotency-Key`.
    pub fn key(self, key: &str) -> Req {
        self.header("idempotency-key", key)
    }

    /// Any header.
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// This token instead of the client's.
    pub fn token(mut self, token: &str) -> Req {
        self.bearer = Bearer::Raw(token.to_owned());
        self
    }

    /// The path, with its query.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// No `Authorization` header.
    pub fn no_token(mut self) -> Req {
        self.bearer = Bearer::None;
        self
    }
}

/// An answer, read completely.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// HTTP version spoken.
    pub version: Version,
    /// Body bytes.
    pub bytes: Vec<u8>,
    /// Body as JSON; `Null` when it is not JSON.
    pub json: Value,
}

impl Reply {
    /// A header as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the answer says it replays an earlier one.
    pub fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == Some("true")
    }

    /// A string field of the JSON body.
    pub fn str(&self, field: &str) -> &str {
        self.json[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string {field:?} in {}", self.json))
    }

    /// Asserts the status, with the body in the message.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Reply {
        assert_eq!(self.status, status, "unexpected answer: {}", self.json);
        self
    }

    /// Asserts that this is an RFC 9457 problem of the given status and slug, well formed:
    /// its media type, `status` member, and `request_id` equal to `x-request-id`.
    #[track_caller]
    pub fn expect_problem(&self, status: u16, slug: &str) -> &Reply {
        assert_eq!(
            (self.status, self.json["type"].as_str()),
            (status, Some(format!("{PROBLEM_BASE}{slug}").as_str())),
            "unexpected answer: {}",
            self.json
        );
        self.assert_problem_shape();
        self
    }

    /// Asserts the parts every problem has, whatever its type.
    #[track_caller]
    pub fn assert_problem_shape(&self) {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.json
        );
        assert_eq!(self.json["status"], json!(self.status), "{}", self.json);
        let id = self.header("x-request-id").expect("x-request-id");
        assert!(!id.is_empty());
        assert_eq!(self.json["request_id"], json!(id), "{}", self.json);
        assert!(self.json["title"].is_string(), "{}", self.json);
        assert!(self.json["detail"].is_string(), "{}", self.json);
        assert!(
            self.json["type"]
                .as_str()
                .is_some_and(|t| t.starts_with(PROBLEM_BASE)),
            "{}",
            self.json
        );
    }
}

impl Api {
    /// A client trusting only `cert_pem`.
    pub fn new(url: &str, cert_pem: &[u8], protocol: Protocol) -> Api {
        Api::with_identity(url, cert_pem, protocol, None)
    }

    /// A client trusting only `cert_pem` that presents the client certificate and key in
    /// `identity_pem` (one PEM, certificate first) when given.
    pub fn with_identity(
        url: &str,
        cert_pem: &[u8],
        protocol: Protocol,
        identity_pem: Option<&[u8]>,
    ) -> Api {
        let cert = reqwest::Certificate::from_pem(cert_pem).unwrap();
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([cert])
            // A bound on every request, so that a hung server fails the test instead of
            // hanging it.
            .timeout(Duration::from_secs(60));
        if protocol == Protocol::Http1 {
            builder = builder.http1_only();
        }
        if let Some(pem) = identity_pem {
            builder = builder.identity(reqwest::Identity::from_pem(pem).unwrap());
        }
        Api {
            http: builder.build().unwrap(),
            url: url.to_owned(),
            token: None,
        }
    }

    /// The same client with another default token.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// Sends a request; transport errors are returned, not asserted.
    pub async fn try_send(&self, req: Req) -> Result<Reply, reqwest::Error> {
        let mut builder = self
            .http
            .request(req.method, format!("{}{}", self.url, req.path));
        let token = match req.bearer {
            Bearer::Default => self.token.clone(),
            Bearer::None => None,
            Bearer::Raw(t) => Some(t),
        };
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        if let Some(ct) = req.content_type.filter(|ct| !ct.is_empty()) {
            builder = builder.header("content-type", ct);
        }
        for (name, value) in req.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = req.body {
            builder = builder.body(body);
        }
        let response = builder.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let version = response.version();
        let bytes = response.bytes().await?.to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            version,
            bytes,
            json,
        })
    }

    /// Sends a request; a transport error fails the test.
    pub async fn send(&self, req: Req) -> Reply {
        let described = format!("{} {}", req.method, req.path);
        self.try_send(req)
            .await
            .unwrap_or_else(|e| panic!("{described}: {e:?}"))
    }

    /// GET with the client's token.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Req::get(path)).await
    }

    /// POST of a JSON body with an `Idempotency-Key` and the client's token.
    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Reply {
        self.send(Req::post(path).key(key).json(body)).await
    }

    // ---- domain helpers, each asserting success ----

    /// Creates an account; returns its id.
    pub async fn account(&self, currency: &str, normal_side: &str, constraint: &str) -> String {
        let key = unique_key("acct");
        let body = json!({
            "currency": currency,
            "normal_side": normal_side,
            "balance_constraint": constraint,
        });
        self.post("/v1/accounts", &key, &body)
            .await
            .expect(201)
            .str("id")
            .to_owned()
    }

    /// Posts a transfer; returns its JSON.
    pub async fn transfer(&self, debit: &str, credit: &str, amount: u64, currency: &str) -> Value {
        let body = transfer_body(debit, credit, amount, currency);
        let reply = self.post("/v1/transfers", &unique_key("xfer"), &body).await;
        reply.expect(201);
        reply.json
    }

    /// An account's JSON.
    pub async fn get_account(&self, id: &str) -> Value {
        let reply = self.get(&format!("/v1/accounts/{id}")).await;
        reply.expect(200);
        reply.json
    }

    /// Every item of a listing, following cursors, 500 per page.
    pub async fn list_all(&self, path: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page_path = match &cursor {
                None => format!("{path}{sep}limit=500"),
                Some(c) => format!("{path}{sep}limit=500&cursor={c}"),
            };
            let reply = self.get(&page_path).await;
            reply.expect(200);
            items.extend(reply.json["data"].as_array().unwrap().iter().cloned());
            match reply.json["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
    }

    /// The tenant's trial balance; asserts it balances.
    pub async fn assert_balanced(&self) -> Value {
        let reply = self.get("/v1/trial-balance").await;
        reply.expect(200);
        assert_eq!(reply.json["balanced"], json!(true), "{}", reply.json);
        for currency in reply.json["currencies"].as_array().unwrap() {
            assert_eq!(currency["balanced"], json!(true), "{currency}");
            assert_eq!(
                currency["debits_posted"], currency["credits_posted"],
                "{currency}"
            );
        }
        reply.json
    }
}

/// The body of a plain transfer.
pub fn transfer_body(debit: &str, credit: &str, amount: u64, currency: &str) -> Value {
    json!({
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount": amount,
        "currency": currency,
    })
}

/// A key no other request of this test run uses.
pub fn unique_key(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A balance column of an account or balance JSON, as a number.
pub fn column(balances: &Value, name: &str) -> i128 {
    let v = &balances[name];
    v.as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from))
        .unwrap_or_else(|| panic!("no number {name:?} in {balances}"))
}
