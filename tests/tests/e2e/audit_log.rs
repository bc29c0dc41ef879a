//! The audit log through the API and the command line: every request leaves a record with who,
//! what, when, outcome and origin; auditors read records, checkpoints and proofs, and those
//! reads are recorded too; a proof checks against a signed checkpoint with nothing but the
//! public key; an export verifies and proves a record, and a tampered one does neither;
//! checkpoints signed with a KMS key (moto's) verify with the key the command line prints.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Instance, Req, program, unique_key};

const PARTNER: &[&str] = &["ledger:read", "ledger:write"];
const AUDITOR: &[&str] = &["audit:read"];

/// Every record the auditor of `tenant` can list, page after page.
async fn all_events(instance: &Instance, tenant: &str, query: &str) -> Vec<Value> {
    let auditor = instance
        .anonymous(crate::harness::Protocol::Negotiated)
        .with_token(&instance.tokens.mint(tenant, AUDITOR));
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            Some(c) => format!("/v1/audit/events?limit=500&{query}&cursor={c}"),
            None => format!("/v1/audit/events?limit=500&{query}"),
        };
        let page = auditor.get(&path).await;
        page.expect(200);
        out.extend(page.json["items"].as_array().cloned().unwrap_or_default());
        match page.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("more than 100 pages");
}

fn find<'a>(events: &'a [Value], action: &str, request_id: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["action"] == action && e["origin"]["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no {action} record of request {request_id} in {events:#?}"))
}

#[tokio::test]
async fn every_request_is_recorded_with_who_what_when_outcome_and_origin() {
    let instance = Instance::start_with(&[("audit_checkpoint_interval_s", "1")]).await;
    let partner = instance
        .anonymous(crate::harness::Protocol::Negotiated)
        .with_token(&instance.tokens.mint("acme", PARTNER));
    // A write, through the committer: its record commits with it.
    let created = partner
        .send(
            Req::post("/v1/accounts")
                .key(&unique_key("audit"))
                .json(&serde_json::json!({"currency": "USD", "normal_side": "debit"}))
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
        )
        .await;
    created.expect(201);
    let account = created.str("id").to_owned();
    let create_id = created.header("x-request-id").unwrap().to_owned();
    // A read.
    let read = partner.get(&format!("/v1/accounts/{account}")).await;
    read.expect(200);
    let read_id = read.header("x-request-id").unwrap().to_owned();
    // A refusal by the ledger (unknown account): recorded in the same way, as a failure.
    let refused = partner
        .send(Req::post("/v1/transfers").key(&unique_key("audit")).json(
            &crate::harness::transfer_body(&account, "acct_01JAAAAAAAAAAAAAAAAAAAAAAA", 5, "USD"),
        ))
        .await;
    assert!(refused.status >= 400, "{}", refused.json);
    let refused_id = refused.header("x-request-id").unwrap().to_owned();
    // An authentication failure, and an authorization failure.
    let anonymous = instance
        .anonymous(crate::harness::Protocol::Negotiated)
        .get("/v1/accounts")
        .await;
    anonymous.expect(401);
    let anonymous_id = anonymous.header("x-request-id").unwrap().to_owned();
    let forbidden = partner.get("/v1/audit/events").await;
    forbidden.expect_problem(403, "insufficient-scope");
    let forbidden_id = forbidden.header("x-request-id").unwrap().to_owned();

    let events = all_events(&instance, "acme", "").await;
    let create = find(&events, "account.create", &create_id);
    assert_eq!(create["v"], 1);
    assert_eq!(create["outcome"], "success");
    assert_eq!(create["actor"]["tenant"], "acme");
    assert_eq!(create["actor"]["subject"], "e2e");
    assert_eq!(create["actor"]["source_ip"], "127.0.0.1");
    assert_eq!(
        create["origin"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert!(
        create["resources"]
            .as_array()
            .unwrap()
            .contains(&Value::String(format!("account:{account}"))),
        "{create}"
    );
    assert!(create["time"].as_str().unwrap().ends_with('Z'));
    let read = find(&events, "account.read", &read_id);
    assert_eq!(read["outcome"], "success");
    assert_eq!(read["resources"][0], format!("account:{account}"));
    let refused = find(&events, "transfer.create", &refused_id);
    assert_eq!(refused["outcome"], "failure");
    assert!(refused["reason"].as_str().is_some_and(|r| !r.is_empty()));
    let forbidden = find(&events, "audit.events", &forbidden_id);
    assert_eq!(forbidden["outcome"], "failure");
    assert!(
        forbidden["reason"]
            .as_str()
            .unwrap()
            .starts_with("insufficient-scope")
    );
    assert_eq!(forbidden["actor"]["subject"], "e2e");
    // The anonymous request names no tenant; the auditor of acme sees it only as a record
    // without a tenant: it is there.
    let anonymous = find(&events, "account.list", &anonymous_id);
    assert_eq!(anonymous["outcome"], "failure");
    assert!(
        anonymous["reason"]
            .as_str()
            .unwrap()
            .starts_with("unauthorized")
    );
    assert_eq!(anonymous["actor"]["tenant"], Value::Null);
    // Reading the audit log is recorded: the listing above shows in the next one.
    let again = all_events(&instance, "acme", "action=audit.events&outcome=success").await;
    assert!(!again.is_empty(), "the auditor's reads were not recorded");
    // Sequence numbers of a stream have no gap.
    let stream = create["stream"].as_str().unwrap();
    let seqs: Vec<u64> = all_events(&instance, "acme", &format!("stream={stream}"))
        .await
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // Another tenant's auditor sees none of acme's records.
    let other = all_events(&instance, "globex", "").await;
    assert!(other.iter().all(|e| e["actor"]["tenant"] != "acme"));
    // Filters.
    let failures = all_events(&instance, "acme", "outcome=failure").await;
    assert!(failures.iter().all(|e| e["outcome"] == "failure"));
    let about = all_events(&instance, "acme", &format!("resource={account}")).await;
    assert!(about.len() >= 2, "{about:#?}");
    let bad = instance
        .anonymous(crate::harness::Protocol::Negotiated)
        .with_token(&instance.tokens.mint("acme", AUDITOR))
        .get("/v1/audit/events?from=yesterday")
        .await;
    bad.expect_problem(400, "invalid-parameter");
    // Pages hold 1 to AUDIT_PAGE_LEN_MAX records (500, taken above).
    for limit in [0, ledger::audit_log::read::AUDIT_PAGE_LEN_MAX + 1] {
        instance
            .anonymous(crate::harness::Protocol::Negotiated)
            .with_token(&instance.tokens.mint("acme", AUDITOR))
            .get(&format!("/v1/audit/events?limit={limit}"))
            .await
            .expect_problem(400, "invalid-parameter");
    }
    instance.stop().await;
}

#[tokio::test]
async fn a_record_proves_against_a_signed_checkpoint_and_an_export_verifies() {
    let data = tempfile::tempdir().unwrap();
    let instance = Instance::start_in(data.path(), &[("audit_checkpoint_interval_s", "1")]).await;
    let partner = instance.api("acme");
    let debit = partner.account("USD", "debit", "none").await;
    let credit = partner.account("USD", "credit", "none").await;
    let transfer = partner.transfer(&debit, &credit, 100, "USD").await;
    let transfer_id = transfer["id"].as_str().unwrap().to_owned();
    let auditor = instance
        .anonymous(crate::harness::Protocol::Negotiated)
        .with_token(&instance.tokens.mint("acme", AUDITOR));
    let events = all_events(
        &instance,
        "acme",
        &format!("resource=transfer:{transfer_id}"),
    )
    .await;
    let record = events
        .iter()
        .find(|e| e["action"] == "transfer.create")
        .unwrap_or_else(|| panic!("{events:#?}"))
        .clone();
    let stream = record["stream"].as_str().unwrap().to_owned();
    let seq = record["seq"].as_u64().unwrap();
    // Wait for a checkpoint that covers the record.
    let mut checkpoint = Value::Null;
    for _ in 0..50 {
        let latest = auditor
            .get(&format!("/v1/audit/checkpoints/latest?stream={stream}"))
            .await;
        latest.expect(200);
        if let Some(cp) = latest.json["checkpoints"]
            .as_array()
            .and_then(|a| a.first())
            && cp["size"].as_u64().unwrap() > seq
        {
            checkpoint = cp.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!checkpoint.is_null(), "no checkpoint covered record {seq}");
    let proof = auditor
        .get(&format!(
            "/v1/audit/proofs/inclusion?stream={stream}&seq={seq}"
        ))
        .await;
    proof.expect(200);
    let p = &proof.json;
    assert_eq!(p["record"], record);
    assert_eq!(p["tree_size"], checkpoint["size"]);
    assert_eq!(p["root"], checkpoint["root"]);
    // Checked with the audit crate alone, and the public key the command line prints.
    let hash = |v: &Value| -> [u8; 32] {
        hex::decode(v.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    };
    let path: Vec<[u8; 32]> = p["proof"].as_array().unwrap().iter().map(hash).collect();
    let record_bytes = serde_json::to_vec(&p["record"]).unwrap();
    audit::merkle::verify_inclusion(
        &audit::merkle::leaf_hash(&record_bytes),
        seq,
        p["tree_size"].as_u64().unwrap(),
        &path,
        &hash(&p["root"]),
    )
    .expect("the inclusion proof verifies");
    // A consistency proof from an early tree to the checkpoint's.
    let consistency = auditor
        .get(&format!(
            "/v1/audit/proofs/consistency?stream={stream}&from_size=1"
        ))
        .await;
    consistency.expect(200);
    let c = &consistency.json;
    let path: Vec<[u8; 32]> = c["proof"].as_array().unwrap().iter().map(hash).collect();
    audit::merkle::verify_consistency(
        1,
        c["to_size"].as_u64().unwrap(),
        &hash(&c["from_root"]),
        &hash(&c["to_root"]),
        &path,
    )
    .expect("the consistency proof verifies");
    // A proof of a record the tree does not hold is refused.
    auditor
        .get(&format!(
            "/v1/audit/proofs/inclusion?stream={stream}&seq=99999999"
        ))
        .await
        .expect_problem(400, "invalid-audit-query");
    let data_dir = instance.data_dir.clone();
    let settings = [("data_dir", data_dir.display().to_string())];
    let settings: Vec<(&str, &str)> = settings.iter().map(|(n, v)| (*n, v.as_str())).collect();
    instance.stop().await;

    // The public key, the export, and verification of the export with nothing else.
    let key = program(&["audit", "public-key"], &settings);
    assert!(
        key.status.success(),
        "{}",
        String::from_utf8_lossy(&key.stderr)
    );
    let work = tempfile::tempdir().unwrap();
    let key_file = work.path().join("public-key.json");
    std::fs::write(&key_file, &key.stdout).unwrap();
    let checkpoint_json = serde_json::to_vec(&checkpoint).unwrap();
    let signed = audit::checkpoint::SignedCheckpoint::decode(&checkpoint_json).unwrap();
    audit::checkpoint::PublicKeys::from_json(&key.stdout)
        .unwrap()
        .verify(&signed)
        .expect("the checkpoint's signature verifies with the public key");
    let export = work.path().join("export");
    let out = program(&["audit", "export", export.to_str().unwrap()], &settings);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verify = |dir: &std::path::Path| {
        program(
            &[
                "audit",
                "verify",
                "--export",
                dir.to_str().unwrap(),
                "--public-key",
                key_file.to_str().unwrap(),
            ],
            &[],
        )
    };
    let ok = verify(&export);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(text.contains("all verified"), "{text}");
    // The store itself verifies too.
    let store = program(&["audit", "verify"], &settings);
    assert!(
        store.status.success(),
        "{}{}",
        String::from_utf8_lossy(&store.stdout),
        String::from_utf8_lossy(&store.stderr)
    );
    // A record's proof from the export and the public key alone: against the checkpoint read
    // from the API above, and by default against the export's latest; the same proof as the
    // store gives for that tree.
    let seq_text = seq.to_string();
    let size_text = checkpoint["size"].as_u64().unwrap().to_string();
    let prove = |dir: &std::path::Path, seq: &str, tree_size: Option<&str>| {
        let mut args = vec![
            "audit",
            "proof",
            "--export",
            dir.to_str().unwrap(),
            "--public-key",
            key_file.to_str().unwrap(),
            "--stream",
            &stream,
            "--seq",
            seq,
        ];
        args.extend(
            tree_size
                .map(|size| ["--tree-size", size])
                .into_iter()
                .flatten(),
        );
        program(&args, &[])
    };
    let proven = |out: &std::process::Output| -> Value {
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let at_checkpoint = proven(&prove(&export, &seq_text, Some(&size_text)));
    assert_eq!(at_checkpoint["stream"], stream.as_str());
    assert_eq!(at_checkpoint["seq"], seq);
    assert_eq!(at_checkpoint["record"], record);
    assert_eq!(at_checkpoint["tree_size"], checkpoint["size"]);
    assert_eq!(at_checkpoint["root"], checkpoint["root"]);
    assert_eq!(at_checkpoint["checkpoint"], checkpoint);
    assert_eq!(at_checkpoint["proof"], p["proof"]);
    let latest = proven(&prove(&export, &seq_text, None));
    assert_eq!(latest["root"], latest["checkpoint"]["root"]);
    assert_eq!(latest["tree_size"], latest["checkpoint"]["size"]);
    assert!(latest["tree_size"].as_u64().unwrap() >= checkpoint["size"].as_u64().unwrap());
    let path: Vec<[u8; 32]> = latest["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(hash)
        .collect();
    audit::merkle::verify_inclusion(
        &audit::merkle::leaf_hash(&serde_json::to_vec(&latest["record"]).unwrap()),
        seq,
        latest["tree_size"].as_u64().unwrap(),
        &path,
        &hash(&latest["root"]),
    )
    .expect("the export's proof verifies");
    let signed = serde_json::to_vec(&latest["checkpoint"]).unwrap();
    audit::checkpoint::PublicKeys::from_json(&key.stdout)
        .unwrap()
        .verify(&audit::checkpoint::SignedCheckpoint::decode(&signed).unwrap())
        .expect("the export's checkpoint verifies");
    let from_store = program(
        &[
            "audit",
            "proof",
            "--stream",
            &stream,
            "--seq",
            &seq_text,
            "--tree-size",
            &size_text,
        ],
        &settings,
    );
    assert_eq!(proven(&from_store), at_checkpoint);
    // A record the export does not hold, a tree no checkpoint signed: no proof, exit status 1.
    let refused = |out: std::process::Output, expected: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(err.contains(expected), "{err}");
    };
    refused(
        prove(&export, "99999999", None),
        "there is no record 99999999",
    );
    let unsigned = (checkpoint["size"].as_u64().unwrap() + 1).to_string();
    refused(
        prove(&export, &seq_text, Some(&unsigned)),
        &format!("has no checkpoint at size {unsigned}"),
    );
    // `--public-key` is for an export only.
    let usage = program(
        &[
            "audit",
            "proof",
            "--public-key",
            key_file.to_str().unwrap(),
            "--stream",
            &stream,
            "--seq",
            &seq_text,
        ],
        &settings,
    );
    let err = String::from_utf8_lossy(&usage.stderr);
    assert!(!usage.status.success(), "{err}");
    assert!(usage.stdout.is_empty() && err.contains("--export"), "{err}");

    // One changed byte in one record of the export: verification names the record and fails,
    // and the record gives no proof.
    let records = export.join(format!("{stream}.records.jsonl"));
    let text = std::fs::read_to_string(&records).unwrap();
    let tampered = text.replacen(&transfer_id, &transfer_id.to_lowercase(), 1);
    assert_ne!(tampered, text);
    std::fs::write(&records, tampered).unwrap();
    let bad = verify(&export);
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "{out}");
    assert!(out.contains("FAILED") && out.contains(&stream), "{out}");
    refused(
        prove(&export, &seq_text, None),
        &format!("stream {stream}, record {seq}: its content does not match the leaf hash"),
    );
}

/// A new `ECC_NIST_P256` signing key on the test KMS server (moto, `tests/run.sh`): its ARN
/// and the server's endpoint.
async fn kms_signing_key() -> (String, String) {
    let (kms, endpoint) = crate::harness::test_kms().await;
    let key = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap();
    let arn = key.key_metadata().unwrap().arn().unwrap().to_owned();
    (arn, endpoint)
}

#[tokio::test]
async fn checkpoints_signed_with_a_kms_key_verify_with_the_key_the_command_line_prints() {
    let (arn, endpoint) = kms_signing_key().await;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    let settings = [
        ("data_dir", data_dir.as_str()),
        ("audit_signer", "kms"),
        ("audit_kms_key_id", arn.as_str()),
        ("audit_kms_endpoint", endpoint.as_str()),
        ("audit_kms_region", "us-east-1"),
    ];
    let mut serve = settings.to_vec();
    serve.push(("audit_checkpoint_interval_s", "1"));
    let instance = Instance::start_in(data.path(), &serve).await;
    let partner = instance.api("acme");
    let debit = partner.account("USD", "debit", "none").await;
    let credit = partner.account("USD", "credit", "none").await;
    let transfer = partner.transfer(&debit, &credit, 100, "USD").await;
    let transfer_id = transfer["id"].as_str().unwrap().to_owned();
    let events = all_events(
        &instance,
        "acme",
        &format!("resource=transfer:{transfer_id}"),
    )
    .await;
    let record = events
        .iter()
        .find(|e| e["action"] == "transfer.create")
        .unwrap_or_else(|| panic!("{events:#?}"));
    let stream = record["stream"].as_str().unwrap().to_owned();
    let seq = record["seq"].as_u64().unwrap();
    let auditor = instance
        .anonymous(crate::harness::Protocol::Negotiated)
        .with_token(&instance.tokens.mint("acme", AUDITOR));
    let mut checkpoint = Value::Null;
    for _ in 0..50 {
        let latest = auditor.get("/v1/audit/checkpoints/latest").await;
        latest.expect(200);
        if let Some(cp) = latest.json["checkpoints"]
            .as_array()
            .and_then(|all| all.iter().find(|cp| cp["stream"] == stream.as_str()))
            && cp["size"].as_u64().unwrap() > seq
        {
            checkpoint = cp.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!checkpoint.is_null(), "no checkpoint covered record {seq}");
    assert_eq!(checkpoint["algorithm"], "ecdsa-p256-sha256", "{checkpoint}");
    assert_eq!(checkpoint["key_id"], arn.as_str(), "{checkpoint}");
    instance.stop().await;

    // The key `audit public-key` prints, from KMS, with the same settings.
    let key = program(&["audit", "public-key"], &settings);
    assert!(
        key.status.success(),
        "{}",
        String::from_utf8_lossy(&key.stderr)
    );
    let printed: Value = serde_json::from_slice(&key.stdout).unwrap();
    assert_eq!(printed["algorithm"], "ecdsa-p256-sha256");
    assert_eq!(printed["key_id"], arn.as_str());
    let keys = audit::checkpoint::PublicKeys::from_json(&key.stdout).unwrap();
    let signed =
        audit::checkpoint::SignedCheckpoint::decode(&serde_json::to_vec(&checkpoint).unwrap())
            .unwrap();
    keys.verify(&signed)
        .expect("the checkpoint's signature verifies with the printed key");
    let mut changed = signed.clone();
    changed.checkpoint.size -= 1;
    assert_eq!(
        keys.verify(&changed),
        Err(audit::checkpoint::CheckpointError::BadSignature {
            key_id: arn.clone()
        })
    );
    // The whole store verifies with it: every checkpoint signed in KMS, the stop's included.
    let store = program(&["audit", "verify"], &settings);
    let out = String::from_utf8_lossy(&store.stdout);
    assert!(
        store.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&store.stderr)
    );
    assert!(
        out.contains("all verified") && out.contains(&stream),
        "{out}"
    );
}

#[tokio::test]
async fn a_card_reveal_is_recorded_with_its_stated_reason_masked() {
    let instance = Instance::start().await;
    let api = instance
        .anonymous(crate::harness::Protocol::Negotiated)
        .with_token(
            &instance
                .tokens
                .mint("acme", &["cards:read", "cards:write", "cards:reveal"]),
        );
    let made = api
        .post(
            "/v1/cards",
            &unique_key("card"),
            &serde_json::json!({
                "pan": "4111111111111111", "exp_month": 12, "exp_year": 2031,
                "cardholder_name": "Jane Q Doe"
            }),
        )
        .await;
    made.expect(201);
    let card = made.str("id").to_owned();
    let reason = "chargeback dispute 42, customer quoted 4111111111111111";
    let shown = api
        .send(
            Req::post(&format!("/v1/cards/{card}/reveal"))
                .json(&serde_json::json!({ "reason": reason })),
        )
        .await;
    shown.expect(200);
    let shown_id = shown.header("x-request-id").unwrap().to_owned();
    // A reveal the ledger refuses keeps its stated reason too.
    let missing = api
        .send(
            Req::post("/v1/cards/card_01JAAAAAAAAAAAAAAAAAAAAAAA/reveal")
                .json(&serde_json::json!({ "reason": "looking around" })),
        )
        .await;
    missing.expect_problem(404, "not-found");
    let missing_id = missing.header("x-request-id").unwrap().to_owned();

    let events = all_events(&instance, "acme", "action=card.reveal").await;
    let done = find(&events, "card.reveal", &shown_id);
    assert_eq!(done["outcome"], "success");
    assert_eq!(done["resources"][0], format!("card:{card}"));
    assert_eq!(
        done["detail"],
        "chargeback dispute 42, customer quoted 411111******1111"
    );
    let refused = find(&events, "card.reveal", &missing_id);
    assert_eq!(refused["outcome"], "failure");
    assert_eq!(refused["detail"], "looking around");
    // No record anywhere holds the number.
    let all = all_events(&instance, "acme", "").await;
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains("4111111111111111"), "{text}");
    instance.stop().await;
}
