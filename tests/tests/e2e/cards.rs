//! The card vault through the API: tokenize, read masked, reveal, delete, pay with a card;
//! every refusal; the same suite with the local keyring and with KMS (moto, through the real
//! SDK). No card number is ever found at rest in the data directory.

use serde_json::{Value, json};

use crate::harness::{Api, Instance, Req, unique_key};

/// Test cards of several networks.
const VISA: &str = "4111111111111111";
const MASTERCARD: &str = "5555 5555 5555 4444";
const AMEX: &str = "3782-822463-10005";

/// Every card scope and both ledger ones.
const ALL: &[&str] = &[
    "ledger:read",
    "ledger:write",
    "cards:read",
    "cards:write",
    "cards:reveal",
];

/// Which key service wraps the data keys.
#[derive(Clone, Copy, Debug)]
enum Keys {
    Local,
    Kms,
}

/// A new symmetric KMS key on the test server (moto).
async fn kms_key() -> (String, String) {
    let (kms, endpoint) = crate::harness::test_kms().await;
    let key = kms.create_key().send().await.unwrap();
    let arn = key.key_metadata().unwrap().arn().unwrap().to_owned();
    (arn, endpoint)
}

async fn instance(keys: Keys, more: &[(&str, &str)]) -> Instance {
    let mut settings: Vec<(String, String)> = more
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    if let Keys::Kms = keys {
        let (arn, endpoint) = kms_key().await;
        settings.extend([
            ("key_service".to_owned(), "kms".to_owned()),
            ("kms_key_id".to_owned(), arn),
            ("kms_endpoint".to_owned(), endpoint),
            ("kms_region".to_owned(), "us-east-1".to_owned()),
        ]);
    }
    let borrowed: Vec<(&str, &str)> = settings
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    Instance::start_with(&borrowed).await
}

fn client(instance: &Instance, tenant: &str, scopes: &[&str]) -> Api {
    instance
        .anonymous(crate::harness::Protocol::Negotiated)
        .with_token(&instance.tokens.mint(tenant, scopes))
}

fn card(pan: &str) -> Value {
    json!({ "pan": pan, "exp_month": 12, "exp_year": 2031, "cardholder_name": "Jane Q Doe" })
}

async fn tokenize(api: &Api, pan: &str) -> Value {
    let answer = api.post("/v1/cards", &unique_key("card"), &card(pan)).await;
    answer.expect(201);
    answer.json
}

async fn reveal(api: &Api, id: &str) -> crate::harness::Reply {
    api.send(
        Req::post(&format!("/v1/cards/{id}/reveal"))
            .json(&json!({ "reason": "chargeback dispute 42" })),
    )
    .await
}

/// Tokenize three networks, read them masked, reveal one, delete it.
async fn lifecycle(keys: Keys) {
    let instance = instance(keys, &[]).await;
    let api = client(&instance, "acme", ALL);
    let mut ids = Vec::new();
    for (pan, brand, masked) in [
        (VISA, "visa", "411111******1111"),
        (MASTERCARD, "mastercard", "555555******4444"),
        (AMEX, "amex", "378282*****0005"),
    ] {
        let made = tokenize(&api, pan).await;
        assert_eq!(made["brand"], brand, "{made}");
        assert_eq!(made["masked_pan"], masked, "{made}");
        assert!(made["id"].as_str().unwrap().starts_with("card_"));
        assert_eq!(made["fingerprint"].as_str().unwrap().len(), 64);
        assert!(made.get("pan").is_none(), "{made}");
        let id = made["id"].as_str().unwrap().to_owned();
        let read = api.get(&format!("/v1/cards/{id}")).await;
        read.expect(200);
        assert_eq!(read.json, made);
        ids.push((id, pan));
    }
    let (id, pan) = &ids[0];
    let shown = reveal(&api, id).await;
    shown.expect(200);
    assert_eq!(shown.str("pan"), *pan);
    assert_eq!(shown.str("cardholder_name"), "Jane Q Doe");
    assert_eq!(shown.header("cache-control"), Some("no-store"));
    let gone = api
        .send(Req::new(reqwest::Method::DELETE, &format!("/v1/cards/{id}")).key("delete-1"))
        .await;
    gone.expect(200);
    // A replay of the delete answers as the first did; a new delete finds nothing.
    let again = api
        .send(Req::new(reqwest::Method::DELETE, &format!("/v1/cards/{id}")).key("delete-1"))
        .await;
    again.expect(200);
    assert!(again.replayed());
    api.send(Req::new(reqwest::Method::DELETE, &format!("/v1/cards/{id}")).key("delete-2"))
        .await
        .expect_problem(404, "not-found");
    api.get(&format!("/v1/cards/{id}"))
        .await
        .expect_problem(404, "not-found");
    reveal(&api, id).await.expect_problem(404, "not-found");
    // The others still reveal.
    assert_eq!(reveal(&api, &ids[2].0).await.str("pan"), "378282246310005");
    instance.stop().await;
}

#[tokio::test]
async fn lifecycle_with_the_local_keyring() {
    lifecycle(Keys::Local).await;
}

#[tokio::test]
async fn lifecycle_with_kms() {
    lifecycle(Keys::Kms).await;
}

/// The same card twice: two tokens, one fingerprint; another tenant's fingerprint differs and
/// it cannot see the first tenant's card.
async fn fingerprints_and_tenancy(keys: Keys) {
    let instance = instance(keys, &[]).await;
    let acme = client(&instance, "acme", ALL);
    let globex = client(&instance, "globex", ALL);
    let first = tokenize(&acme, VISA).await;
    let second = tokenize(&acme, "4111-1111-1111-1111").await;
    let other = tokenize(&globex, VISA).await;
    assert_ne!(first["id"], second["id"]);
    assert_eq!(first["fingerprint"], second["fingerprint"]);
    assert_ne!(first["fingerprint"], other["fingerprint"]);
    let id = first["id"].as_str().unwrap();
    globex
        .get(&format!("/v1/cards/{id}"))
        .await
        .expect_problem(404, "not-found");
    reveal(&globex, id).await.expect_problem(404, "not-found");
    instance.stop().await;
}

#[tokio::test]
async fn fingerprints_and_tenancy_with_the_local_keyring() {
    fingerprints_and_tenancy(Keys::Local).await;
}

#[tokio::test]
async fn fingerprints_and_tenancy_with_kms() {
    fingerprints_and_tenancy(Keys::Kms).await;
}

#[tokio::test]
async fn a_retry_returns_the_first_token_and_another_card_under_the_key_is_refused() {
    let instance = instance(Keys::Local, &[]).await;
    let api = client(&instance, "acme", ALL);
    let first = api.post("/v1/cards", "tok-1", &card(VISA)).await;
    first.expect(201);
    let again = api.post("/v1/cards", "tok-1", &card(VISA)).await;
    again.expect(201);
    assert!(again.replayed());
    assert_eq!(again.json, first.json);
    api.post("/v1/cards", "tok-1", &card(MASTERCARD))
        .await
        .expect_problem(422, "idempotency-key-reused");
    instance.stop().await;
}

#[tokio::test]
async fn bad_cards_and_sensitive_data_are_refused_and_nothing_is_stored() {
    let instance = instance(Keys::Local, &[]).await;
    let api = client(&instance, "acme", ALL);
    let refused = |body: Value, status: u16, slug: &'static str| {
        let api = api.clone();
        async move {
            let answer = api.post("/v1/cards", &unique_key("bad"), &body).await;
            answer.expect_problem(status, slug);
            // The number is never echoed.
            let text = String::from_utf8_lossy(&answer.bytes).to_string();
            assert!(!text.contains("411111111111"), "{text}");
            answer
        }
    };
    let mut with = card(VISA);
    with["cvv"] = json!("123");
    let answer = refused(with, 422, "sensitive-authentication-data").await;
    assert_eq!(answer.json["field"], "cvv");
    let mut with = card(VISA);
    with["track2"] = json!(";4111111111111111=31121010000000000000?");
    refused(with, 422, "sensitive-authentication-data").await;
    let mut with = card(VISA);
    with["PIN"] = json!("1234");
    refused(with, 422, "sensitive-authentication-data").await;
    refused(card("4111111111111112"), 400, "validation-failed").await;
    refused(card("411111111111"), 400, "validation-failed").await;
    refused(card("4111 1111 1111 111x"), 400, "validation-failed").await;
    let mut expired = card(VISA);
    expired["exp_year"] = json!(2020);
    refused(expired, 400, "validation-failed").await;
    let mut month = card(VISA);
    month["exp_month"] = json!(13);
    refused(month, 400, "validation-failed").await;
    let mut name = card(VISA);
    name["cardholder_name"] = json!("");
    refused(name, 400, "validation-failed").await;
    let mut unknown = card(VISA);
    unknown["nickname"] = json!("x");
    refused(unknown, 400, "unknown-field").await;
    // Nothing was tokenized: the tenant is not even in the registry of the store.
    assert_no_pan_at_rest(&instance, &[VISA]).await;
    instance.stop().await;
}

#[tokio::test]
async fn reveal_needs_its_own_scope_a_reason_and_stays_under_its_rate() {
    let instance = instance(Keys::Local, &[("rate_reveal", "2/60s")]).await;
    let writer = client(&instance, "acme", &["cards:read", "cards:write"]);
    let id = tokenize(&writer, VISA).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    reveal(&writer, &id)
        .await
        .expect_problem(403, "insufficient-scope");
    // The partner role does not grant it either.
    let partner = instance
        .anonymous(crate::harness::Protocol::Negotiated)
        .with_token(&instance.tokens.sign(&{
            let mut claims = crate::harness::Tokens::claims("acme", &[]);
            claims.roles = Some(vec!["partner".into()]);
            claims
        }));
    reveal(&partner, &id)
        .await
        .expect_problem(403, "insufficient-scope");
    let revealer = client(&instance, "acme", &["cards:reveal"]);
    for reason in [
        json!({}),
        json!({ "reason": "because" }),
        json!({ "reason": 7 }),
    ] {
        let answer = revealer
            .send(Req::post(&format!("/v1/cards/{id}/reveal")).json(&reason))
            .await;
        assert_eq!(answer.status, 400, "{reason}: {}", answer.json);
    }
    reveal(&revealer, &id).await.expect(200);
    reveal(&revealer, &id).await.expect(200);
    let third = reveal(&revealer, &id).await;
    third.expect_problem(429, "rate-limited");
    assert!(third.header("retry-after").is_some());
    instance.stop().await;
}

#[tokio::test]
async fn a_transfer_can_name_the_tenants_live_card_only() {
    let instance = instance(Keys::Local, &[]).await;
    let acme = client(&instance, "acme", ALL);
    let globex = client(&instance, "globex", ALL);
    let cash = acme.account("USD", "debit", "none").await;
    let sales = acme.account("USD", "credit", "none").await;
    let id = tokenize(&acme, VISA).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs = tokenize(&globex, VISA).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pay = |card: &str| {
        let mut body = crate::harness::transfer_body(&cash, &sales, 500, "USD");
        body["card_id"] = json!(card);
        body
    };
    let paid = acme
        .post("/v1/transfers", &unique_key("pay"), &pay(&id))
        .await;
    paid.expect(201);
    assert_eq!(paid.json["card_id"], json!(id));
    let read = acme.get(&format!("/v1/transfers/{}", paid.str("id"))).await;
    assert_eq!(read.json["card_id"], json!(id));
    acme.post("/v1/transfers", &unique_key("pay"), &pay(&theirs))
        .await
        .expect_problem(422, "unknown-card");
    acme.post("/v1/transfers", &unique_key("pay"), &pay("card_nope"))
        .await
        .expect_problem(400, "validation-failed");
    acme.send(Req::new(reqwest::Method::DELETE, &format!("/v1/cards/{id}")).key("del"))
        .await
        .expect(200);
    acme.post("/v1/transfers", &unique_key("pay"), &pay(&id))
        .await
        .expect_problem(422, "unknown-card");
    // One transfer posted, of 500.
    let balance = acme.get_account(&sales).await;
    assert_eq!(crate::harness::column(&balance["balances"], "posted"), 500);
    instance.stop().await;
}

/// The files under `dir` that hold any of the numbers (digits only), byte for byte.
fn files_holding(dir: &std::path::Path, pans: &[&str]) -> Vec<std::path::PathBuf> {
    let digits: Vec<String> = pans
        .iter()
        .map(|p| p.chars().filter(char::is_ascii_digit).collect())
        .collect();
    let mut stack = vec![dir.to_owned()];
    let mut found = Vec::new();
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap_or_default();
            files += 1;
            if digits
                .iter()
                .any(|pan| bytes.windows(pan.len()).any(|w| w == pan.as_bytes()))
            {
                found.push(path);
            }
        }
    }
    assert!(files > 0, "nothing under {}", dir.display());
    found
}

async fn assert_no_pan_at_rest(instance: &Instance, pans: &[&str]) {
    let found = files_holding(&instance.data_dir, pans);
    assert!(found.is_empty(), "card numbers at rest in {found:?}");
}

#[tokio::test]
async fn no_card_number_is_at_rest_after_tokenizing_and_revealing() {
    let dir = tempfile::tempdir().unwrap();
    let instance = Instance::start_in(dir.path(), &[]).await;
    let api = client(&instance, "acme", ALL);
    let pans = [VISA, MASTERCARD, AMEX];
    for pan in pans {
        let id = tokenize(&api, pan).await["id"].as_str().unwrap().to_owned();
        reveal(&api, &id).await.expect(200);
    }
    // The search finds what is there: a number written on purpose.
    let planted = dir.path().join("planted.txt");
    std::fs::write(&planted, "x5105105105105100x").unwrap();
    assert_eq!(
        files_holding(dir.path(), &["5105105105105100"]),
        vec![planted.clone()]
    );
    std::fs::remove_file(&planted).unwrap();
    // While it runs (journal, overlay not yet in the table) and after a clean shutdown.
    assert_no_pan_at_rest(&instance, &pans).await;
    instance.stop().await;
    let found = files_holding(dir.path(), &pans);
    assert!(found.is_empty(), "card numbers at rest in {found:?}");
}

/// Runs `strongroom keys ...` on a data directory; its exit status and output.
fn keys(dir: &std::path::Path, action: &str) -> (bool, String, String) {
    let dir = dir.display().to_string();
    let output = crate::harness::program(&["keys", action], &[("data_dir", &dir)]);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `keys init` makes an owner-only keyring and will not replace it; `keys rotate` adds a
/// version; `keys rewrap` moves every stored data key to it without changing a number, and a
/// second run finds nothing to do; `keys status` shows versions and age; a keyring others can
/// read stops the server and the commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_init_rotate_rewrap_and_status() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring.json");

    let (ok, out, err) = keys(dir.path(), "init");
    assert!(ok, "{out}{err}");
    assert!(out.contains("version 1"), "{out}");
    let mode = std::fs::metadata(&keyring).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let before = std::fs::read(&keyring).unwrap();
    let (ok, out, err) = keys(dir.path(), "init");
    assert!(!ok, "a second init succeeded: {out}");
    assert!(err.contains("already there"), "{err}");
    assert_eq!(
        std::fs::read(&keyring).unwrap(),
        before,
        "init replaced the keyring"
    );

    // Cards of two tenants under version 1.
    let instance = Instance::start_in(dir.path(), &[]).await;
    let mut cards = Vec::new();
    for (tenant, pan) in [("acme", VISA), ("acme", MASTERCARD), ("globex", AMEX)] {
        let api = client(&instance, tenant, ALL);
        let id = tokenize(&api, pan).await["id"].as_str().unwrap().to_owned();
        cards.push((tenant, pan, id));
    }
    instance.stop().await;

    let (ok, out, err) = keys(dir.path(), "status");
    assert!(ok, "{out}{err}");
    assert!(out.contains("service: local"), "{out}");
    assert!(out.contains("current version: 1"), "{out}");
    assert!(
        out.contains("current key age: 0 days (cryptoperiod 365 days)\n"),
        "{out}"
    );

    let (ok, out, err) = keys(dir.path(), "rotate");
    assert!(ok, "{out}{err}");
    assert!(out.contains("now at version 2"), "{out}");
    let (ok, out, _) = keys(dir.path(), "status");
    assert!(ok && out.contains("current version: 2"), "{out}");
    assert!(out.contains("  version 1: 0 days old"), "{out}");

    let (ok, out, err) = keys(dir.path(), "rewrap");
    assert!(ok, "{out}{err}");
    // Three cards and the fingerprint key.
    assert!(
        out.contains(
            "done: 2 tenants done, 3 cards read, 4 data keys re-wrapped, 0 already current"
        ),
        "{out}"
    );
    let (ok, out, err) = keys(dir.path(), "rewrap");
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(
            "done: 2 tenants done, 3 cards read, 0 data keys re-wrapped, 4 already current"
        ),
        "{out}"
    );

    // Every number reads back as it went in, under the new version.
    let instance = Instance::start_in(dir.path(), &[]).await;
    for (tenant, pan, id) in &cards {
        let api = client(&instance, tenant, ALL);
        let answer = reveal(&api, id).await;
        answer.expect(200);
        let digits: String = pan.chars().filter(char::is_ascii_digit).collect();
        assert_eq!(answer.json["pan"], digits.as_str(), "{}", answer.json);
    }
    instance.stop().await;

    // A keyring others can read: the commands and the server refuse it.
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, out, err) = keys(dir.path(), "status");
    assert!(!ok, "{out}");
    assert!(err.contains("owner-only (0600)"), "{err}");
    let path = dir.path().display().to_string();
    let output = crate::harness::program(
        &["serve"],
        &[("data_dir", &path), ("listen", "127.0.0.1:0")],
    );
    assert!(!output.status.success(), "{output:?}");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("owner-only (0600)"), "{err}");
}
