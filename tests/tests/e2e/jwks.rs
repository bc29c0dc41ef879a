//! Keys from the identity provider's JWKS URL (`jwks_url`), served over real HTTPS by a
//! stand-in provider ([`Idp`]) that counts its requests: tokens signed with RS256 and ES256
//! verify; a key rotated in at the provider is fetched on its first token; a flood of unknown
//! `kid`s fetches at a bounded rate; while the provider is down or answers nonsense, the keys
//! fetched before keep working; a key the provider drops stops working; without a first
//! fetch, the program does not start.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gateway::config::{Config, MapSource};
use gateway::jwks::JWKS_BYTES_MAX;

use crate::harness::idp::{Answer, Idp, IdpKey, jwks};
use crate::harness::{Instance, READ_WRITE, Req, program};

async fn instance(idp: &Idp, refetch_ms: u64, refresh_ms: u64) -> Instance {
    let settings = idp.settings(refetch_ms, refresh_ms);
    let borrowed: Vec<(&str, &str)> = settings.iter().map(|(n, v)| (*n, v.as_str())).collect();
    Instance::start_with(&borrowed).await
}

/// The status of `GET /v1/accounts` with `token`.
async fn status(instance: &Instance, token: &str) -> u16 {
    let api = instance.api("acme");
    api.send(Req::get("/v1/accounts").token(token)).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_tokens_verify_against_the_fetched_keys() {
    let rsa = IdpKey::rs256("rsa-1");
    let ec = IdpKey::es256("ec-1");
    let idp = Idp::start(Answer::Body(jwks(&[&rsa, &ec]))).await;
    let instance = instance(&idp, 30_000, 300_000).await;
    assert_eq!(idp.hits(), 1, "fetched once at start");
    for key in [&rsa, &ec] {
        assert_eq!(status(&instance, &key.mint("acme", READ_WRITE)).await, 200);
    }
    // Right key, wrong issuer: refused.
    let mut claims = crate::harness::Tokens::claims("acme", READ_WRITE);
    claims.iss = "https://someone-else".into();
    assert_eq!(status(&instance, &ec.sign(&claims)).await, 401);
    instance.stop().await;
}

/// Starts a server fetching its keys from `idp`, with the settings changed as `edit` says;
/// returns why it did not start.
async fn start_error(
    idp: &Idp,
    data_dir: &std::path::Path,
    edit: impl FnOnce(&mut BTreeMap<String, String>),
) -> String {
    let mut map = BTreeMap::from([
        ("data_dir".to_owned(), data_dir.display().to_string()),
        ("listen".to_owned(), "127.0.0.1:0".to_owned()),
    ]);
    for (name, value) in idp.settings(30_000, 300_000) {
        map.insert(name.to_owned(), value);
    }
    edit(&mut map);
    let config = Config::load(&MapSource(map)).unwrap();
    match gateway::server::start(&config).await {
        Ok(_) => panic!("started"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_or_absent_provider_stops_the_start() {
    let key = IdpKey::es256("ec-1");
    let mut idp = Idp::start(Answer::Body(jwks(&[&key]))).await;
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, crate::harness::pki::Ca::new("Another CA").pem()).unwrap();
    // Another CA, and the built-in Mozilla roots: the provider's certificate is not trusted.
    let err = start_error(&idp, dir.path(), |map| {
        map.insert("jwks_ca_file".into(), other_ca.display().to_string());
    })
    .await;
    assert!(err.contains("jwks_url") && err.contains("TLS"), "{err}");
    let err = start_error(&idp, dir.path(), |map| {
        map.remove("jwks_ca_file");
    })
    .await;
    assert!(err.contains("TLS"), "{err}");
    assert_eq!(idp.hits(), 0, "no request without a trusted handshake");
    // A provider that answers 500, then none at all.
    idp.serve(Answer::Status(500));
    let err = start_error(&idp, dir.path(), |_| {}).await;
    assert!(err.contains("answered 500"), "{err}");
    idp.stop().await;
    let err = start_error(&idp, dir.path(), |_| {}).await;
    assert!(err.contains("connect"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_in_is_fetched_on_its_first_token() {
    let old = IdpKey::es256("2026-01");
    let new = IdpKey::rs256("2026-02");
    let idp = Idp::start(Answer::Body(jwks(&[&old]))).await;
    let instance = instance(&idp, 300, 300_000).await;
    assert_eq!(status(&instance, &old.mint("acme", READ_WRITE)).await, 200);
    assert_eq!(idp.hits(), 1);
    // The provider publishes the new key and signs with it; the gateway has not seen it.
    idp.serve(Answer::Body(jwks(&[&old, &new])));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(status(&instance, &new.mint("acme", READ_WRITE)).await, 200);
    assert_eq!(idp.hits(), 2, "one fetch for the new kid");
    assert_eq!(status(&instance, &new.mint("acme", READ_WRITE)).await, 200);
    assert_eq!(status(&instance, &old.mint("acme", READ_WRITE)).await, 200);
    assert_eq!(idp.hits(), 2, "known kids fetch nothing");
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_fetches_at_a_bounded_rate() {
    const REFETCH_MS: u64 = 1_000;
    let key = IdpKey::es256("known");
    let idp = Idp::start(Answer::Body(jwks(&[&key]))).await;
    let instance = instance(&idp, REFETCH_MS, 300_000).await;
    // Past the interval after the start fetch, so that the flood may cause one.
    tokio::time::sleep(Duration::from_millis(REFETCH_MS + 100)).await;
    let api = instance.api("acme");
    let started = Instant::now();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let api = api.clone();
            let forged = key.renamed(&format!("random-{i}-{}", ulid::Ulid::generate()));
            let token = forged.mint("acme", READ_WRITE);
            tokio::spawn(async move { api.send(Req::get("/v1/accounts").token(&token)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().expect_problem(401, "unauthorized");
    }
    let elapsed = started.elapsed();
    let fetches = idp.hits() - 1;
    let bound = 1 + elapsed.as_millis() as usize / REFETCH_MS as usize;
    assert!(
        (1..=bound).contains(&fetches),
        "200 unknown kids in {elapsed:?} caused {fetches} fetches (at most {bound})"
    );
    // The known key was never in doubt.
    assert_eq!(status(&instance, &key.mint("acme", READ_WRITE)).await, 200);
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_keys_keep_working_while_the_provider_is_down() {
    let key = IdpKey::es256("known");
    let mut idp = Idp::start(Answer::Body(jwks(&[&key]))).await;
    let instance = instance(&idp, 200, 1_000).await;
    idp.stop().await;
    // Scheduled refreshes fail meanwhile; a retry follows each sooner than the period.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(status(&instance, &key.mint("acme", READ_WRITE)).await, 200);
    // An unknown kid tries a fetch, which fails: refused, and the known key still works.
    let stranger = key.renamed("stranger");
    assert_eq!(
        status(&instance, &stranger.mint("acme", READ_WRITE)).await,
        401
    );
    assert_eq!(status(&instance, &key.mint("acme", READ_WRITE)).await, 200);
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answers_do_not_replace_the_cached_keys() {
    let key = IdpKey::es256("known");
    let other = IdpKey::rs256("other");
    let idp = Idp::start(Answer::Body(jwks(&[&key]))).await;
    let instance = instance(&idp, 100, 1_000).await;
    // Valid JSON with a good key, padded past the size bound.
    let mut oversized = jwks(&[&key, &other]);
    oversized.pop();
    oversized.extend(std::iter::repeat_n(b' ', JWKS_BYTES_MAX));
    oversized.push(b'}');
    let answers = [
        ("oversized", Answer::Body(oversized)),
        (
            "not JSON",
            Answer::Body(b"<html>maintenance</html>".to_vec()),
        ),
        ("empty set", Answer::Body(br#"{"keys":[]}"#.to_vec())),
        (
            "HMAC key",
            Answer::Body(br#"{"keys":[{"kty":"oct","kid":"other","k":"c2VjcmV0"}]}"#.to_vec()),
        ),
        ("server error", Answer::Status(503)),
    ];
    for (what, answer) in answers {
        idp.serve(answer);
        let seen = idp.hits();
        idp.wait_for_hits(seen + 1).await;
        assert_eq!(
            status(&instance, &key.mint("acme", READ_WRITE)).await,
            200,
            "{what}: the cached key works"
        );
        assert_eq!(
            status(&instance, &other.mint("acme", READ_WRITE)).await,
            401,
            "{what}: nothing from it was trusted"
        );
    }
    // A good answer that drops the key: its tokens stop working, cached ones included.
    let cached = key.mint("acme", READ_WRITE);
    assert_eq!(status(&instance, &cached).await, 200);
    idp.serve(Answer::Body(jwks(&[&other])));
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&instance, &cached).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the dropped key is still trusted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status(&instance, &other.mint("acme", READ_WRITE)).await,
        200
    );
    instance.stop().await;
}

/// Runs `strongroom serve` with `settings` to its exit, on a blocking thread (the provider
/// answers on this runtime meanwhile).
async fn serve_until_exit(settings: Vec<(&'static str, String)>) -> (Option<i32>, String) {
    let output = tokio::task::spawn_blocking(move || {
        let borrowed: Vec<(&str, &str)> = settings.iter().map(|(n, v)| (*n, v.as_str())).collect();
        program(&["serve"], &borrowed)
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_program_exits_1_when_the_first_fetch_fails_and_64_for_a_bad_url() {
    let idp = Idp::start(Answer::Status(404)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = idp.settings(30_000, 300_000);
    settings.push(("data_dir", dir.path().display().to_string()));
    settings.push(("listen", "127.0.0.1:0".to_owned()));
    let (code, stderr) = serve_until_exit(settings.clone()).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("jwks_url") && stderr.contains("answered 404"),
        "{stderr}"
    );
    assert_eq!(idp.hits(), 1);
    // A URL that is not https: a configuration error, before any fetch.
    for (name, value) in &mut settings {
        if *name == "jwks_url" {
            *value = value.replace("https://", "http://");
        }
    }
    let (code, stderr) = serve_until_exit(settings).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("jwks_url"), "{stderr}");
    assert_eq!(idp.hits(), 1);
}
