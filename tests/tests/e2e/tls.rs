//! TLS as a client meets it: TLS 1.2 and 1.3 by default and TLS 1.3 alone in `modern` mode; an
//! RSA certificate as well as ECDSA; a certificate and key replaced on disk are served to new
//! connections without a restart, and a broken replacement is not.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{Instance, Protocol, Req, raw_tls};

/// A self-signed pair for 127.0.0.1 with a key of `alg`, as PEM: (certificate, key).
fn pair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn write_pair(dir: &Path, (cert, key): &(String, String)) {
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
}

/// Opens a TLS connection trusting only `cert_pem`, offering `versions`; the negotiated
/// version and suite, or the handshake's error.
async fn handshake(
    url: &str,
    cert_pem: &[u8],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<(rustls::ProtocolVersion, rustls::CipherSuite), std::io::Error> {
    let tls = raw_tls::connect(url, cert_pem, versions, &[]).await?;
    let (_, conn) = tls.get_ref();
    Ok((
        conn.protocol_version().unwrap(),
        conn.negotiated_cipher_suite().unwrap().suite(),
    ))
}

/// Waits (up to 10 s) until the server at `url` presents the certificate in `cert_pem`.
async fn presents(url: &str, cert_pem: &[u8], why: &str) {
    let started = Instant::now();
    while handshake(url, cert_pem, TLS13).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "{why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

#[tokio::test]
async fn tls_12_is_offered_by_default_and_refused_in_modern_mode() {
    let default = Instance::start().await;
    let (version, suite) = handshake(&default.url, &default.cert_pem, TLS12)
        .await
        .unwrap();
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_2);
    // The generated certificate is ECDSA: an ECDHE-ECDSA AEAD suite (the client's pick).
    assert!(
        format!("{suite:?}").starts_with("TLS_ECDHE_ECDSA_WITH_"),
        "{suite:?}"
    );
    let (version, _) = handshake(&default.url, &default.cert_pem, TLS13)
        .await
        .unwrap();
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
    default.stop().await;

    let modern = Instance::start_with(&[("tls_mode", "modern")]).await;
    assert!(
        handshake(&modern.url, &modern.cert_pem, TLS12)
            .await
            .is_err()
    );
    let (version, _) = handshake(&modern.url, &modern.cert_pem, TLS13)
        .await
        .unwrap();
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
    modern
        .anonymous(Protocol::Negotiated)
        .send(Req::get("/health/live"))
        .await
        .expect(200);
    modern.stop().await;
}

#[tokio::test]
async fn a_replaced_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let ecdsa = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    write_pair(dir.path(), &ecdsa);
    let cert = dir.path().join("cert.pem").display().to_string();
    let key = dir.path().join("key.pem").display().to_string();
    let instance = Instance::start_with(&[
        ("tls_cert", cert.as_str()),
        ("tls_key", key.as_str()),
        ("tls_reload_ms", "100"),
    ])
    .await;
    handshake(&instance.url, ecdsa.0.as_bytes(), TLS13)
        .await
        .unwrap();

    // An RSA pair replaces it on disk: new connections get it, within a few checks.
    let rsa = pair(&rcgen::PKCS_RSA_SHA256);
    write_pair(dir.path(), &rsa);
    presents(&instance.url, rsa.0.as_bytes(), "still the old certificate").await;
    assert!(
        handshake(&instance.url, ecdsa.0.as_bytes(), TLS13)
            .await
            .is_err()
    );
    let (_, suite) = handshake(&instance.url, rsa.0.as_bytes(), TLS12)
        .await
        .unwrap();
    assert!(
        format!("{suite:?}").starts_with("TLS_ECDHE_RSA_WITH_"),
        "{suite:?}"
    );
    let api = crate::harness::Api::new(&instance.url, rsa.0.as_bytes(), Protocol::Negotiated);
    api.send(Req::get("/health/live")).await.expect(200);

    // A key that does not match, then a broken certificate: the RSA pair stays.
    std::fs::write(dir.path().join("key.pem"), &ecdsa.1).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    handshake(&instance.url, rsa.0.as_bytes(), TLS13)
        .await
        .unwrap();
    std::fs::write(
        dir.path().join("cert.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    handshake(&instance.url, rsa.0.as_bytes(), TLS13)
        .await
        .unwrap();
    api.send(Req::get("/health/live")).await.expect(200);
    instance.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_certificate_of_the_running_program() {
    let dir = tempfile::tempdir().unwrap();
    // Polling off: only the signal reloads.
    let mut process = crate::harness::Process::spawn(dir.path(), &[("tls_reload_ms", "0")]);
    let tls_dir = dir.path().join("tls");
    let fresh = pair(&rcgen::PKCS_ECDSA_P384_SHA384);
    write_pair(&tls_dir, &fresh);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        handshake(&process.url, fresh.0.as_bytes(), TLS13)
            .await
            .is_err()
    );
    handshake(&process.url, &process.cert_pem, TLS13)
        .await
        .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &process.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    presents(&process.url, fresh.0.as_bytes(), "SIGHUP did not reload").await;
    // Still running, and says what it did.
    assert!(process.child.try_wait().unwrap().is_none());
    // Log lines reach stdout in batches: wait for it.
    let started = Instant::now();
    while !process
        .stdout
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("TLS certificate reloaded"))
    {
        assert!(started.elapsed() < Duration::from_secs(10), "no log line");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process.terminate();
    assert!(
        process
            .wait_exit(Duration::from_secs(20))
            .await
            .unwrap()
            .success()
    );
}
