//! Card numbers never leak. Test PANs of every length and brand, each written plain, in
//! groups with spaces, with dashes and with `%20`, go through every place a client can put
//! text: account names and metadata values, transfer, hold, journal-entry, batch and reversal
//! descriptions and metadata values, headers (`User-Agent`, `X-Request-Id`, a custom one,
//! `Authorization`), path segments and query parameters, malformed and ill-typed bodies; and
//! into the identifiers that must refuse them (`Idempotency-Key`, `external_ref`, metadata
//! keys). Then none of those card numbers, in any of the shapes or as bare digits, is in:
//! - any answer, body or header;
//! - anything the process printed (at `log = trace`, so every layer logs);
//! - any file under the data directory (the database, its WAL and journal, keys), read as
//!   bytes, while the process runs and after it stopped.
//!
//! The masked forms (BIN and last four) are in the answers and in the files: the text was
//! kept, masked, not dropped. A file planted with a card number is found, so the search works.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::harness::{Api, Process, Reply, Req, unique_key};

/// A test card number: its digits, and how they are grouped when written out.
struct Card {
    digits: &'static str,
    groups: &'static [usize],
}

/// Visa, Mastercard (5- and 2-series), American Express (15 digits), Discover, and a
/// 19-digit UnionPay number.
const CARDS: &[Card] = &[
    card("4111111111111111", &[4, 4, 4, 4]),
    card("5555555555554444", &[4, 4, 4, 4]),
    card("2223000048400011", &[4, 4, 4, 4]),
    card("378282246310005", &[4, 6, 5]),
    card("6011111111111117", &[4, 4, 4, 4]),
    card("6221260000000000001", &[4, 4, 4, 4, 3]),
];

const fn card(digits: &'static str, groups: &'static [usize]) -> Card {
    Card { digits, groups }
}

/// How a card number is written: what goes between its groups.
const SEPARATORS: &[&str] = &["", " ", "-", "%20"];

/// A card number, written in one shape, and how it must read once masked.
#[derive(Clone, Debug)]
struct Pan {
    /// As written.
    text: String,
    /// Masked: BIN and last four, separators kept.
    masked: String,
    /// For a URL: spaces written `%20`.
    url: String,
}

impl Card {
    /// The digits in groups with `separator` between them.
    fn written(&self, digits: &str, separator: &str) -> String {
        let mut groups = Vec::new();
        let mut rest = digits;
        for &len in self.groups {
            let (group, tail) = rest.split_at(len);
            groups.push(group);
            rest = tail;
        }
        groups.join(separator)
    }

    /// The card number written with `separator` between its groups.
    fn pan(&self, separator: &str) -> Pan {
        let len = self.digits.len();
        let masked: String = self
            .digits
            .chars()
            .enumerate()
            .map(|(i, c)| if i < 6 || i >= len - 4 { c } else { '*' })
            .collect();
        let text = self.written(self.digits, separator);
        Pan {
            url: text.replace(' ', "%20"),
            masked: self.written(&masked, separator),
            text,
        }
    }
}

/// Every card in every shape, with the bare digits: what must be found nowhere.
fn needles() -> Vec<String> {
    let mut needles: Vec<String> = CARDS
        .iter()
        .flat_map(|card| SEPARATORS.iter().map(|s| card.pan(s).text))
        .collect();
    needles.sort();
    needles.dedup();
    needles
}

/// Whether the test numbers are card numbers at all (Luhn), checked here independently of the
/// code under test.
fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            match (i % 2, d * 2) {
                (1, twice) if twice > 9 => twice - 9,
                (1, twice) => twice,
                _ => d,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The needles found in `bytes` (a cheap scan: only where a digit starts).
fn found_in<'a>(bytes: &[u8], needles: &'a [String]) -> Vec<&'a str> {
    let mut found: Vec<&str> = Vec::new();
    for (at, _) in bytes.iter().enumerate().filter(|(_, b)| b.is_ascii_digit()) {
        for needle in needles {
            if bytes[at..].starts_with(needle.as_bytes()) && !found.contains(&needle.as_str()) {
                found.push(needle);
            }
        }
    }
    found
}

/// What follows each occurrence of `prefix` in `bytes`.
fn after<'a>(bytes: &'a [u8], prefix: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    bytes
        .iter()
        .enumerate()
        .filter(move |(at, b)| **b == prefix[0] && bytes[*at..].starts_with(prefix))
        .map(move |(at, _)| &bytes[at + prefix.len()..])
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
            // Else removed since it was listed (a released journal segment): nothing to read.
        }
    }
    out
}

/// The needles found in any file under `dir`, with the file.
fn leaks_in_files(dir: &Path, needles: &[String]) -> Vec<String> {
    files(dir)
        .iter()
        .flat_map(|(path, bytes)| {
            found_in(bytes, needles)
                .into_iter()
                .map(move |n| format!("{n:?} in {}", path.display()))
        })
        .collect()
}

/// An answer as bytes: status line, headers, body.
fn answer_bytes(reply: &Reply) -> Vec<u8> {
    let mut out = format!("{}\n", reply.status).into_bytes();
    for (name, value) in &reply.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(&reply.bytes);
    out
}

/// Creates two accounts, the first with `pan` in its name and metadata values, sent with
/// `pan` in headers; returns their ids.
async fn accounts(api: &Api, pan: &Pan, replies: &mut Vec<Reply>) -> (String, String) {
    let body = json!({"currency": "USD", "normal_side": "debit", "name": format!("acct {}", pan.text),
                      "metadata": {"note": pan.text, "card": format!("paid with {} today", pan.text)}});
    let reply = api
        .send(
            Req::post("/v1/accounts")
                .key(&unique_key("mask"))
                .json(&body)
                .header("user-agent", &format!("agent/{}", pan.text))
                .header("x-request-id", &pan.text)
                .header("x-note", &pan.text),
        )
        .await;
    reply.expect(201);
    assert_eq!(reply.json["name"], json!(format!("acct {}", pan.masked)));
    assert_eq!(reply.json["metadata"]["note"], json!(pan.masked));
    assert_ne!(reply.header("x-request-id"), Some(pan.text.as_str()));
    let debit = reply.str("id").to_owned();
    replies.push(reply);
    let credit = api.account("USD", "credit", "none").await;
    (debit, credit)
}

/// A transfer, a hold (then voided), a journal entry, a batch and a reversal, each with `pan`
/// in its description and metadata values; returns the transfer's id.
async fn transfers(api: &Api, pan: &Pan, (a, b): (&str, &str), replies: &mut Vec<Reply>) -> String {
    let text = |what: &str| format!("{what} {}", pan.text);
    let masked = |what: &str| format!("{what} {}", pan.masked);
    let transfer = |what: &str| {
        json!({"debit_account_id": a, "credit_account_id": b, "amount": 100, "currency": "USD",
               "description": text(what), "metadata": {"ref": pan.text}})
    };
    let posted = api
        .post("/v1/transfers", &unique_key("mask"), &transfer("refund to"))
        .await;
    posted.expect(201);
    assert_eq!(posted.json["description"], json!(masked("refund to")));
    assert_eq!(posted.json["metadata"]["ref"], json!(pan.masked));
    let id = posted.str("id").to_owned();
    let mut hold = transfer("hold for");
    hold["pending"] = json!({"timeout_seconds": 600});
    let hold = api.post("/v1/transfers", &unique_key("mask"), &hold).await;
    hold.expect(201);
    let void = format!("/v1/transfers/{}/void", hold.str("id"));
    let entry = json!({"legs": [
            {"account_id": a, "direction": "debit", "amount": 5, "currency": "USD"},
            {"account_id": b, "direction": "credit", "amount": 5, "currency": "USD"}],
        "description": text("journal"), "metadata": {"ref": pan.text}});
    let mut bad = transfer("batch bad");
    bad["debit_account_id"] = json!(crate::harness::NO_SUCH_ACCOUNT);
    let batch = json!({"mode": "independent", "transfers": [transfer("batch"), bad]});
    let reverse = format!("/v1/transfers/{id}/reverse");
    let reversal = json!({"description": text("reversal of"), "metadata": {"why": pan.text}});
    for (path, body, status) in [
        (void.as_str(), json!({}), 200),
        ("/v1/journal-entries", entry, 201),
        ("/v1/transfers/batch", batch, 200),
        (reverse.as_str(), reversal, 201),
    ] {
        let reply = api.post(path, &unique_key("mask"), &body).await;
        reply.expect(status);
        if let Some(description) = body["description"].as_str() {
            let sent = description.replace(&pan.text, &pan.masked);
            assert_eq!(reply.json["description"], json!(sent), "{path}");
        }
        replies.push(reply);
    }
    replies.extend([posted, hold]);
    id
}

/// Requests that must be refused, or answered with a problem, with `pan` where a careless
/// server would quote it back.
async fn refusals(api: &Api, pan: &Pan, account: &str) -> Vec<Reply> {
    let key = || unique_key("mask");
    let body = |extra: Value| {
        let mut body = json!({"currency": "USD", "normal_side": "debit"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Req::post("/v1/accounts").json(&body)
    };
    let account_with = |extra: Value| body(extra).key(&key());
    let u = &pan.url;
    let cases: Vec<(Req, u16, &str)> = vec![
        (
            account_with(json!({"external_ref": pan.text})),
            400,
            "validation-failed",
        ),
        (
            account_with(json!({"metadata": {pan.text.clone(): "x"}})),
            400,
            "validation-failed",
        ),
        (
            account_with(json!({pan.text.clone(): 1})),
            400,
            "unknown-field",
        ),
        (
            account_with(json!({"currency": pan.text})),
            400,
            "validation-failed",
        ),
        (
            body(json!({})).key(&pan.text),
            400,
            "idempotency-key-invalid",
        ),
        (
            Req::post("/v1/transfers")
                .key(&key())
                .raw(format!(r#"{{"description": "{}"#, pan.text)),
            400,
            "malformed-json",
        ),
        (
            Req::post("/v1/transfers").key(&key()).json(&json!({"debit_account_id": pan.text,
                "credit_account_id": format!("acct_{}", pan.text), "amount": 1, "currency": "USD"})),
            400,
            "validation-failed",
        ),
        (
            Req::get("/v1/accounts").token(&pan.text),
            401,
            "unauthorized",
        ),
        (Req::get(&format!("/v1/accounts/{u}")), 404, "not-found"),
        (
            Req::get(&format!("/v1/accounts/{u}/balance")),
            404,
            "not-found",
        ),
        (Req::get(&format!("/v1/transfers/{u}")), 404, "not-found"),
        (Req::get(&format!("/v1/{u}")), 404, "not-found"),
        (
            Req::get(&format!("/v1/accounts?cursor={u}")),
            400,
            "invalid-cursor",
        ),
        (
            Req::get(&format!("/v1/accounts?order={u}")),
            400,
            "invalid-parameter",
        ),
        (
            Req::get(&format!("/v1/accounts/{account}/entries?cursor={u}")),
            400,
            "invalid-cursor",
        ),
        (
            Req::get(&format!("/v1/accounts/{account}/balance?as_of={u}")),
            400,
            "invalid-parameter",
        ),
    ];
    let mut replies = Vec::new();
    for (req, status, slug) in cases {
        let described = format!("{req:?}");
        let reply = api.send(req).await;
        assert_eq!(
            (reply.status, reply.json["type"].as_str()),
            (
                status,
                Some(format!("{}{slug}", crate::harness::PROBLEM_BASE).as_str())
            ),
            "{described}: {}",
            reply.json
        );
        reply.assert_problem_shape();
        replies.push(reply);
    }
    // A body that is JSON, with the number where text belongs: serde quotes it.
    if !pan.text.contains(['-', ' ', '%']) {
        let body = format!(
            r#"{{"currency": "USD", "normal_side": "debit", "name": {}}}"#,
            pan.text
        );
        let reply = api
            .send(Req::post("/v1/accounts").key(&key()).raw(body))
            .await;
        reply.expect_problem(400, "invalid-type");
        assert!(reply.str("detail").contains(&pan.masked), "{}", reply.json);
        replies.push(reply);
    }
    // A method is a token, digits and dashes allowed, and the access line logs it.
    if !pan.text.contains([' ', '%']) {
        let method = reqwest::Method::from_bytes(pan.text.as_bytes()).unwrap();
        let reply = api.send(Req::new(method, "/v1/accounts")).await;
        reply.expect_problem(405, "method-not-allowed");
        replies.push(reply);
    }
    replies
}

/// After the requests: what the client reads back holds the masked forms.
async fn read_back(api: &Api, pan: &Pan, account: &str, transfer: &str) -> Vec<Reply> {
    let got = api.get(&format!("/v1/accounts/{account}")).await;
    got.expect(200);
    assert_eq!(got.json["name"], json!(format!("acct {}", pan.masked)));
    assert_eq!(
        got.json["metadata"]["card"],
        json!(format!("paid with {} today", pan.masked))
    );
    let transfer = api.get(&format!("/v1/transfers/{transfer}")).await;
    transfer.expect(200);
    assert_eq!(
        transfer.json["description"],
        json!(format!("refund to {}", pan.masked))
    );
    let listed = api.get("/v1/transfers?limit=500").await;
    listed.expect(200);
    let entries = api.get(&format!("/v1/accounts/{account}/entries")).await;
    entries.expect(200);
    vec![got, transfer, listed, entries]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_card_number_reaches_an_answer_the_output_or_the_disk() {
    let needles = needles();
    for card in CARDS {
        assert!(luhn_valid(card.digits), "{} is no card number", card.digits);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut process = Process::spawn(dir.path(), &[("log", "trace")]);
    let api = process.api("acme");
    let mut replies = Vec::new();
    let mut stored = Vec::new();
    for card in CARDS {
        for separator in SEPARATORS {
            let pan = card.pan(separator);
            let (a, b) = accounts(&api, &pan, &mut replies).await;
            let transfer = transfers(&api, &pan, (&a, &b), &mut replies).await;
            replies.extend(refusals(&api, &pan, &a).await);
            replies.extend(read_back(&api, &pan, &a, &transfer).await);
            stored.push(pan.masked);
        }
    }
    for reply in &replies {
        let found = found_in(&answer_bytes(reply), &needles);
        assert!(found.is_empty(), "{found:?} in an answer: {}", reply.json);
    }
    let running = leaks_in_files(dir.path(), &needles);
    assert!(running.is_empty(), "while running: {running:#?}");

    process.terminate();
    let status = process.wait_exit(std::time::Duration::from_secs(15)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let (stdout, stderr) = process.output();
    check_output(&stdout, &stderr, &needles, replies.len());
    check_files(dir.path(), &needles, &stored);
}

/// Nothing the process printed holds a card number; the access lines hold masked paths.
fn check_output(stdout: &[String], stderr: &[String], needles: &[String], requests: usize) {
    assert!(
        stdout.len() > requests,
        "too little logged: {}",
        stdout.len()
    );
    for (stream, lines) in [("stdout", stdout), ("stderr", stderr)] {
        for line in lines {
            let found = found_in(line.as_bytes(), needles);
            assert!(found.is_empty(), "{found:?} on {stream}: {line}");
        }
    }
    let masked_path = r#""path":"/v1/accounts/411111******1111""#;
    assert!(
        stdout.iter().any(|line| line.contains(masked_path)),
        "no access line with {masked_path}"
    );
}

/// No file holds a card number, each stored description is there masked, and a planted card
/// number would have been found.
fn check_files(dir: &Path, needles: &[String], stored: &[String]) {
    let leaks = leaks_in_files(dir, needles);
    assert!(leaks.is_empty(), "after the stop: {leaks:#?}");
    let everything: Vec<(PathBuf, Vec<u8>)> = files(dir);
    assert!(
        everything
            .iter()
            .any(|(path, _)| path.extension().is_some_and(|e| e == "db"))
    );
    let descriptions: Vec<&[u8]> = everything
        .iter()
        .flat_map(|(_, bytes)| after(bytes, b"refund to "))
        .collect();
    for masked in stored {
        assert!(
            descriptions
                .iter()
                .any(|rest| rest.starts_with(masked.as_bytes())),
            "\"refund to {masked}\" stored nowhere"
        );
    }
    let planted = dir.join("planted");
    std::fs::write(&planted, b"\x00\x01 paid with 3782 822463 10005\xff").unwrap();
    let found = leaks_in_files(dir, needles);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(r#""3782 822463 10005" in "#),
        "{found:?}"
    );
    std::fs::remove_file(&planted).unwrap();
    assert!(leaks_in_files(dir, needles).is_empty());
}
