//! Mutual TLS for partners (`tls_client_ca_file`, `mtls`) and certificate-bound tokens
//! (RFC 8705), over real TLS with client certificates from a CA of the test's own: `required`
//! refuses clients without a certificate or with one from another CA; a bound token works
//! with its certificate only, on every request (not just the first, which the token cache
//! remembers); a certificate of another tenant is refused; a tenant `mtls_tenants` lists
//! needs a certificate even in `optional` mode.

use serde_json::json;

use crate::harness::pki::{Ca, Leaf};
use crate::harness::{Api, Instance, Protocol, READ_WRITE, Req, unique_key};

/// The URI SAN naming a certificate's tenant.
fn tenant_uri(tenant: &str) -> String {
    format!("{}{tenant}", gateway::mtls::TENANT_URI_PREFIX)
}

/// An instance that verifies client certificates against `ca`, in `mode`.
async fn instance(ca: &Ca, mode: &str) -> (Instance, tempfile::TempDir) {
    instance_with(ca, &[("mtls", mode)]).await
}

/// An instance that verifies client certificates against `ca`, with more settings.
async fn instance_with(ca: &Ca, settings: &[(&str, &str)]) -> (Instance, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("partners.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let ca_file = ca_file.display().to_string();
    let mut all = vec![("tls_client_ca_file", ca_file.as_str())];
    all.extend_from_slice(settings);
    (Instance::start_with(&all).await, dir)
}

/// A client of `instance` presenting `cert` (if any) with `token`.
fn client(instance: &Instance, cert: Option<&Leaf>, token: &str) -> Api {
    let identity = cert.map(Leaf::identity_pem);
    Api::with_identity(
        &instance.url,
        &instance.cert_pem,
        Protocol::Negotiated,
        identity.as_deref(),
    )
    .with_token(token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_mode_refuses_clients_without_a_trusted_certificate() {
    let partners = Ca::new("Partner CA");
    let stranger_ca = Ca::new("Some other CA");
    let (instance, _dir) = instance(&partners, "required").await;
    let token = instance.tokens.mint("acme", READ_WRITE);
    let acme = partners.client("acme-app", Some(&tenant_uri("acme")));
    let forged = stranger_ca.client("acme-app", Some(&tenant_uri("acme")));
    client(&instance, Some(&acme), &token)
        .get("/v1/accounts")
        .await
        .expect(200);
    for (what, cert) in [("no certificate", None), ("another CA", Some(&forged))] {
        for path in ["/v1/accounts", "/health/live"] {
            let outcome = client(&instance, cert, &token)
                .try_send(Req::get(path))
                .await;
            assert!(outcome.is_err(), "{what} {path}: {outcome:?}");
        }
    }
    // Over HTTP/1.1 too: no certificate, no answer.
    let http1 = Api::with_identity(&instance.url, &instance.cert_pem, Protocol::Http1, None)
        .with_token(&token);
    assert!(http1.try_send(Req::get("/v1/accounts")).await.is_err());
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_mode_serves_clients_without_a_certificate_but_refuses_other_cas() {
    let partners = Ca::new("Partner CA");
    let (instance, _dir) = instance(&partners, "optional").await;
    let token = instance.tokens.mint("acme", READ_WRITE);
    client(&instance, None, &token)
        .get("/v1/accounts")
        .await
        .expect(200);
    let forged = Ca::new("Some other CA").client("acme-app", Some(&tenant_uri("acme")));
    let outcome = client(&instance, Some(&forged), &token)
        .try_send(Req::get("/v1/accounts"))
        .await;
    assert!(outcome.is_err(), "{outcome:?}");
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_token_works_with_its_certificate_only() {
    let partners = Ca::new("Partner CA");
    let (instance, _dir) = instance(&partners, "optional").await;
    let mine = partners.client("acme-app", Some(&tenant_uri("acme")));
    let other = partners.client("acme-batch", Some(&tenant_uri("acme")));
    let bound = instance
        .tokens
        .mint_bound("acme", READ_WRITE, &mine.thumbprint());
    let create = || {
        Req::post("/v1/accounts")
            .key(&unique_key("k"))
            .json(&json!({"currency": "USD", "normal_side": "debit"}))
    };
    let with_mine = client(&instance, Some(&mine), &bound);
    with_mine.send(create()).await.expect(201);
    // The token is now in the verified-token cache: the binding is still checked each time.
    for (what, cert) in [("another valid certificate", Some(&other)), ("none", None)] {
        let api = client(&instance, cert, &bound);
        for req in [Req::get("/v1/accounts"), create()] {
            let reply = api.send(req).await;
            reply.expect_problem(401, "unauthorized");
            let challenge = reply.header("www-authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with(r#"Bearer realm="strongroom", error="invalid_token""#),
                "{what}: {challenge:?}"
            );
        }
    }
    with_mine.get("/v1/accounts").await.expect(200);
    // An unbound token goes with any certificate of its tenant.
    let unbound = instance.tokens.mint("acme", READ_WRITE);
    client(&instance, Some(&other), &unbound)
        .get("/v1/accounts")
        .await
        .expect(200);
    assert_eq!(with_mine.list_all("/v1/accounts").await.len(), 1);
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_tenant_is_refused() {
    let partners = Ca::new("Partner CA");
    let (instance, _dir) = instance(&partners, "required").await;
    let acme_token = instance.tokens.mint("acme", READ_WRITE);
    let globex = partners.client("globex-app", Some(&tenant_uri("globex")));
    let nameless = partners.client("someone", None);
    for (what, cert) in [("globex", &globex), ("no tenant", &nameless)] {
        let api = client(&instance, Some(cert), &acme_token);
        let reply = api
            .send(
                Req::post("/v1/accounts")
                    .key(&unique_key("k"))
                    .json(&json!({"currency": "USD", "normal_side": "debit"})),
            )
            .await;
        reply.expect_problem(403, "certificate-tenant");
        assert!(
            reply.json["detail"].as_str().unwrap().contains("tenant"),
            "{what}"
        );
        api.get("/v1/accounts")
            .await
            .expect_problem(403, "certificate-tenant");
    }
    // Globex's token with globex's certificate: its own data, which the refused writes did
    // not touch; acme's books are empty too.
    let globex_token = instance.tokens.mint("globex", READ_WRITE);
    let globex_api = client(&instance, Some(&globex), &globex_token);
    assert!(globex_api.list_all("/v1/accounts").await.is_empty());
    let acme = partners.client("acme-app", Some(&tenant_uri("acme")));
    assert!(
        client(&instance, Some(&acme), &acme_token)
            .list_all("/v1/accounts")
            .await
            .is_empty()
    );
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_listed_in_mtls_tenants_need_a_certificate_in_optional_mode() {
    let partners = Ca::new("Partner CA");
    let (instance, _dir) =
        instance_with(&partners, &[("mtls", "optional"), ("mtls_tenants", "acme")]).await;
    let acme_token = instance.tokens.mint("acme", READ_WRITE);
    let reply = client(&instance, None, &acme_token)
        .get("/v1/accounts")
        .await;
    reply.expect_problem(403, "certificate-required");
    let acme = partners.client("acme-app", Some(&tenant_uri("acme")));
    client(&instance, Some(&acme), &acme_token)
        .get("/v1/accounts")
        .await
        .expect(200);
    // Tenants not listed call without a certificate.
    let globex_token = instance.tokens.mint("globex", READ_WRITE);
    client(&instance, None, &globex_token)
        .get("/v1/accounts")
        .await
        .expect(200);
    instance.stop().await;
}
