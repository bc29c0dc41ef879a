//! The `strongroom` command beyond `serve`: `dev-token` mints tokens the server accepts,
//! `trial-balance` proves the books from the database, and bad configuration or usage exits
//! with status 64 and says why.

use serde_json::{Value, json};

use crate::harness::{Instance, Process, Req, program, unique_key};

/// Exit status for invalid configuration or refused usage.
const EXIT_CONFIG: i32 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_token_mints_tokens_the_server_accepts() {
    let instance = Instance::start().await;
    let dir = instance.data_dir.display().to_string();
    let output = program(
        &["dev-token", "--tenant", "acme", "--scope", "ledger:read"],
        &[("data_dir", &dir)],
    );
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");
    // The generated secrets are the owner's alone.
    for secret in ["dev-issuer.key.pem", "tls/key.pem"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(instance.data_dir.join(secret))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{secret} is readable by others: {mode:o}");
    }
    let api = instance
        .anonymous(crate::harness::Protocol::Negotiated)
        .with_token(&token);
    api.get("/v1/accounts").await.expect(200);
    api.send(
        Req::post("/v1/accounts")
            .key(&unique_key("k"))
            .json(&json!({"currency": "USD", "normal_side": "debit"})),
    )
    .await
    .expect_problem(403, "insufficient-scope");
    // A role instead of scopes: the policy's partner role reads and writes.
    let output = program(
        &["dev-token", "--tenant", "acme", "--role", "partner"],
        &[("data_dir", &dir)],
    );
    assert!(output.status.success(), "{output:?}");
    let partner = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let api = instance
        .anonymous(crate::harness::Protocol::Negotiated)
        .with_token(&partner);
    api.send(
        Req::post("/v1/accounts")
            .key(&unique_key("k"))
            .json(&json!({"currency": "USD", "normal_side": "debit"})),
    )
    .await
    .expect(201);

    for (args, fragment) in [
        (
            &[
                "dev-token",
                "--tenant",
                "Not A Tenant",
                "--scope",
                "ledger:read",
            ][..],
            "invalid tenant",
        ),
        (
            &[
                "dev-token",
                "--tenant",
                "acme",
                "--scope",
                "ledger:read",
                "--ttl",
                "0",
            ][..],
            "--ttl",
        ),
    ] {
        let output = program(args, &[("data_dir", &dir)]);
        assert_eq!(output.status.code(), Some(EXIT_CONFIG), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(fragment), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: no token on refusal");
    }
    instance.stop().await;
}

#[test]
fn invalid_configuration_exits_64_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let config_file = dir.path().join("strongroom.toml");
    std::fs::write(&config_file, "lissen = \"127.0.0.1:0\"\n").unwrap();
    let config_file = config_file.display().to_string();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("body_bytes_max", "10")], "body_bytes_max"),
        (&[("listen", "nowhere")], "listen"),
        (&[("mode", "prod")], "mode"),
        (&[("mode", "production")], "tls_cert"),
        (&[("config", &config_file)], "lissen"),
    ];
    for (settings, fragment) in cases {
        let mut all = vec![("data_dir", data_dir.as_str())];
        all.extend_from_slice(settings);
        let output = program(&["serve"], &all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(EXIT_CONFIG),
            "{settings:?}: {stderr}"
        );
        assert!(stderr.contains(fragment), "{settings:?}: {stderr}");
    }
    // Production mode refuses dev tokens even with an otherwise valid setup.
    let output = program(
        &["dev-token", "--tenant", "acme", "--scope", "ledger:read"],
        &[("data_dir", &data_dir), ("mode", "production")],
    );
    assert_eq!(output.status.code(), Some(EXIT_CONFIG));
    assert!(output.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_is_an_error_not_a_configuration_problem() {
    let dir = tempfile::tempdir().unwrap();
    let first = Process::spawn(dir.path(), &[]);
    let addr = first.url.trim_start_matches("https://").to_owned();
    let other = tempfile::tempdir().unwrap();
    let output = program(
        &["serve"],
        &[
            ("data_dir", &other.path().display().to_string()),
            ("listen", &addr),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("listen on"), "{stderr}");

    // The metrics listener's port too, and before the ledger opens its store.
    let output = program(
        &["serve"],
        &[
            ("data_dir", &other.path().display().to_string()),
            ("listen", "127.0.0.1:0"),
            ("metrics_listen", &addr),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("metrics_listen on"), "{stderr}");
    assert!(!other.path().join("ledger.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trial_balance_reads_the_books_from_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let output = program(&["trial-balance"], &[("data_dir", &data_dir)]);
    assert_eq!(output.status.code(), Some(1), "no database yet: {output:?}");

    let instance = Instance::start_in(dir.path(), &[]).await;
    for tenant in ["acme", "globex"] {
        let api = instance.api(tenant);
        let cash = api.account("USD", "debit", "none").await;
        let wallet = api.account("USD", "credit", "none").await;
        api.transfer(&cash, &wallet, 1_500, "USD").await;
    }
    instance.stop().await;

    let output = program(&["trial-balance", "--json"], &[("data_dir", &data_dir)]);
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["balanced"], true);
    let tenants = report["tenants"].as_array().unwrap();
    let names: Vec<&str> = tenants
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme", "globex"]);
    for t in tenants {
        let usd = &t["trial_balance"]["currencies"][0];
        assert_eq!(
            (usd["currency"].clone(), usd["debits_posted"].clone()),
            (json!("USD"), json!(1_500))
        );
        assert_eq!(usd["credits_posted"], 1_500);
    }
    let output = program(&["trial-balance"], &[("data_dir", &data_dir)]);
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(
        table.contains("every currency of every tenant sums to zero"),
        "{table}"
    );
}
