//! An export as an auditor receives it: written with [`ExportWriter`], verified with
//! [`verify_export`], then tampered with in each way an insider could, each found and named;
//! a record's proof from the export alone ([`prove`]), refused when the export was tampered
//! with.

use std::path::Path;

use audit::checkpoint::{Checkpoint, message};
use audit::export::PROGRESS_EVERY;
use audit::merkle::leaf_hash;
use audit::record::format_time;
use audit::{
    Actor, Draft, ExportError, ExportWriter, Failure, Frontier, LocalSigner, Origin, Place,
    Progress, ProveError, PublicKeys, Record, RecordProof, Report, SignedCheckpoint, prove,
    verify_export,
};
use aws_lc_rs::signature::Ed25519KeyPair;

/// The streams of the export and their records; checkpoints every 1,000 and at the end.
const STREAMS: [(&str, u64); 3] = [
    ("gateway-1", 5000),
    ("gateway-2", 4321),
    ("ledger.eu_1", 5003),
];
/// The stream tampered with.
const TARGET: &str = "gateway-1";
const CHECKPOINT_EVERY: u64 = 1000;
const T0_US: i64 = 1_764_000_000_000_000;

fn record(stream: &str, seq: u64) -> Vec<u8> {
    let actor = Actor {
        tenant: Some("acme".into()),
        subject: Some("app-1".into()),
        client_id: Some("app-1".into()),
        source_ip: Some("203.0.113.9".into()),
    };
    let origin = Origin {
        request_id: Some(format!("req-{seq}")),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
    };
    let draft = Draft::success("transfer.create", actor, origin)
        .resource("transfer", format!("01JTRANSFER{seq:08}"))
        .resource("account", "01JACCOUNT1");
    Record::stamp(draft, stream, seq, T0_US + seq as i64).encode()
}

fn write_export(dir: &Path, signer: &LocalSigner, streams: &[(&str, u64)], every: u64) {
    let mut writer = ExportWriter::create(dir).expect("create");
    for &(stream, records) in streams {
        writer.begin_stream(stream).expect("stream");
        let mut frontier = Frontier::new();
        let mut checkpoints = Vec::new();
        for seq in 0..records {
            let bytes = record(stream, seq);
            let leaf = leaf_hash(&bytes);
            writer.record(&leaf, &bytes).expect("record");
            frontier.push(leaf);
            if frontier.size().is_multiple_of(every) || frontier.size() == records {
                checkpoints.push(signer.sign(&Checkpoint {
                    stream: stream.to_owned(),
                    size: frontier.size(),
                    root: frontier.root(),
                    time: format_time(T0_US + frontier.size() as i64),
                }));
            }
        }
        for cp in &checkpoints {
            writer.checkpoint(cp).expect("checkpoint");
        }
    }
    writer.finish().expect("finish");
}

fn keys_of(signer: &LocalSigner) -> PublicKeys {
    PublicKeys::from_json(&signer.public_key().to_json()).expect("keys")
}

fn verify(dir: &Path, keys: &PublicKeys) -> Report {
    verify_export(dir, keys, &mut |_| {}).expect("readable export")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// Rewrites the lines of one file of the export.
fn edit_lines(dir: &Path, file: &str, change: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let path = dir.join(file);
    let content = std::fs::read(&path).expect("read");
    let mut lines: Vec<Vec<u8>> = content
        .strip_suffix(b"\n")
        .unwrap_or(&content)
        .split(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    change(&mut lines);
    let mut out = lines.join(&b'\n');
    out.push(b'\n');
    std::fs::write(&path, out).expect("write");
}

fn records_file() -> String {
    format!("{TARGET}.records.jsonl")
}

fn checkpoints_file() -> String {
    format!("{TARGET}.checkpoints.jsonl")
}

/// The record sliced out of a records line.
fn record_of(line: &[u8]) -> &[u8] {
    &line[84..line.len() - 1]
}

fn line_of(record: &[u8]) -> Vec<u8> {
    let mut line = format!(
        "{{\"leaf\":\"{}\",\"record\":",
        hex::encode(leaf_hash(record))
    )
    .into_bytes();
    line.extend_from_slice(record);
    line.push(b'}');
    line
}

fn replace(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
    assert!(text.contains(from), "{from} in {text}");
    text.replacen(from, to, 1).into_bytes()
}

/// The line of the checkpoint of `size`.
fn checkpoint_line(lines: &mut [Vec<u8>], size: u64) -> &mut Vec<u8> {
    let needle = format!("\"size\":{size},");
    lines
        .iter_mut()
        .find(|l| String::from_utf8_lossy(l).contains(&needle))
        .expect("a checkpoint of that size")
}

#[test]
fn an_intact_export_verifies_and_each_tampering_is_named() {
    let signer = LocalSigner::generate().expect("key");
    let keys = keys_of(&signer);
    let root = tempfile::tempdir().expect("tempdir");
    let pristine = root.path().join("pristine");
    write_export(&pristine, &signer, &STREAMS, CHECKPOINT_EVERY);

    let mut calls = Vec::new();
    let report = verify_export(&pristine, &keys, &mut |p: Progress| calls.push(p)).expect("read");
    assert!(report.ok(), "{report:?}");
    let summaries: Vec<(String, u64, u64, u64)> = report
        .streams
        .iter()
        .map(|s| {
            let s = s.as_ref().expect("verified");
            (s.stream.clone(), s.records, s.checkpoints, s.covered)
        })
        .collect();
    assert_eq!(
        summaries,
        [
            ("gateway-1".to_owned(), 5000, 5, 5000),
            ("gateway-2".to_owned(), 4321, 5, 4321),
            ("ledger.eu_1".to_owned(), 5003, 6, 5003),
        ]
    );
    // Fewer records than PROGRESS_EVERY: one call as each stream begins.
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|p| p.records_done == 0));

    let mut case = 0;
    let mut check = |tamper: &dyn Fn(&Path), place: Place, problem: &str| {
        case += 1;
        let dir = root.path().join(format!("case-{case}"));
        copy_dir(&pristine, &dir);
        tamper(&dir);
        let report = verify(&dir, &keys);
        assert!(!report.ok());
        for result in &report.streams {
            match result {
                Ok(summary) => assert_ne!(summary.stream, TARGET, "case {case}: {summary:?}"),
                Err(failure) => {
                    assert_eq!(failure.stream, TARGET, "case {case}: {failure}");
                    assert_eq!(failure.place, place, "case {case}: {failure}");
                    assert!(failure.problem.contains(problem), "case {case}: {failure}");
                }
            }
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    };

    // (a) A field of record 2,345 changed, its stored leaf kept.
    check(
        &|dir| {
            edit_lines(dir, &records_file(), |lines| {
                lines[2345] = replace(&lines[2345], "transfer.create", "transfer.delete");
            })
        },
        Place::Record(2345),
        "its content does not match the leaf hash stored with it: a field was changed",
    );
    // (a2) The same, with the stored leaf recomputed: the checkpoint at 3,000 catches it.
    check(
        &|dir| {
            edit_lines(dir, &records_file(), |lines| {
                let record = replace(
                    record_of(&lines[2345]),
                    "transfer.create",
                    "transfer.delete",
                );
                lines[2345] = line_of(&record);
            })
        },
        Place::Records {
            from: 2000,
            to: 2999,
        },
        "records 2000..2999 do not match the checkpoint signed at size 3000 \
         (2025-11-24T16:00:00.003000Z): changed, removed, added or reordered",
    );
    // (b) Record 2,345 deleted.
    check(
        &|dir| {
            edit_lines(dir, &records_file(), |lines| {
                lines.remove(2345);
            })
        },
        Place::Records {
            from: 2345,
            to: 2345,
        },
        "records 2345..2345 are missing (deleted?)",
    );
    // (b2) Records deleted and the later ones renumbered, leaves recomputed.
    check(
        &|dir| {
            edit_lines(dir, &records_file(), |lines| {
                lines.remove(2345);
                for (seq, line) in lines.iter_mut().enumerate().skip(2345) {
                    let from = format!("\"seq\":{},", seq + 1);
                    let record = replace(record_of(line), &from, &format!("\"seq\":{seq},"));
                    *line = line_of(&record);
                }
            })
        },
        Place::Records {
            from: 2000,
            to: 2999,
        },
        "do not match the checkpoint signed at size 3000",
    );
    // (c) Two records swapped.
    check(
        &|dir| edit_lines(dir, &records_file(), |lines| lines.swap(2345, 2346)),
        Place::Record(2345),
        "record 2346 is out of order: it stands where record 2345 belongs, before record 2345",
    );
    check(
        &|dir| edit_lines(dir, &records_file(), |lines| lines.swap(2345, 4000)),
        Place::Record(2345),
        "record 4000 is out of order",
    );
    // (d) The tail cut off, the checkpoints kept.
    check(
        &|dir| edit_lines(dir, &records_file(), |lines| lines.truncate(4990)),
        Place::Stream,
        "truncated: the checkpoint signed at size 5000 covers more records than the 4990 present",
    );
    // (e) A checkpoint's root changed.
    check(
        &|dir| {
            edit_lines(dir, &checkpoints_file(), |lines| {
                let line = checkpoint_line(lines, 3000);
                let at = line
                    .windows(8)
                    .position(|w| w == b"\"root\":\"")
                    .expect("root")
                    + 8;
                line[at] = if line[at] == b'0' { b'1' } else { b'0' };
            })
        },
        Place::Checkpoint(3000),
        "the signature does not verify with public key",
    );
    // (e2) A checkpoint forged with another key under the writer's key id.
    let forge = |signer_id: &str, lines: &mut Vec<Vec<u8>>| {
        let line = checkpoint_line(lines, 3000);
        let mut forged = SignedCheckpoint::decode(line).expect("decode");
        forged.checkpoint.root = leaf_hash(b"another history");
        let key = Ed25519KeyPair::generate().expect("key");
        forged.signature = key
            .sign(&message(&forged.checkpoint, signer_id))
            .as_ref()
            .to_vec();
        *line = forged.encode();
    };
    check(
        &|dir| {
            edit_lines(dir, &checkpoints_file(), |lines| {
                forge(signer.key_id(), lines)
            })
        },
        Place::Checkpoint(3000),
        "the signature does not verify",
    );
    check(
        &|dir| {
            let other = LocalSigner::generate().expect("key");
            edit_lines(dir, &checkpoints_file(), |lines| {
                let line = checkpoint_line(lines, 3000);
                let cp = SignedCheckpoint::decode(line).expect("decode").checkpoint;
                let mut forged = other.sign(&cp);
                forged.key_id = signer.key_id().to_owned();
                *line = forged.encode();
            })
        },
        Place::Checkpoint(3000),
        "the signature does not verify",
    );
    // (f) A garbage line, and a line cut short.
    check(
        &|dir| {
            edit_lines(dir, &records_file(), |lines| {
                lines[2345] = b"\x00garbage \xff".to_vec();
            })
        },
        Place::Record(2345),
        "its line is not {\"leaf\":\"<64 lowercase hex>\",\"record\":<record>}",
    );
    check(
        &|dir| edit_lines(dir, &records_file(), |lines| lines[2345].truncate(200)),
        Place::Record(2345),
        "its line is not",
    );
    check(
        &|dir| {
            edit_lines(dir, &records_file(), |lines| lines[2345].clear());
        },
        Place::Record(2345),
        "its line is not",
    );
    // A stream's files removed, a checkpoint line that is not one.
    check(
        &|dir| std::fs::remove_file(dir.join(records_file())).expect("rm"),
        Place::Stream,
        "its file gateway-1.records.jsonl is missing",
    );
    check(
        &|dir| std::fs::remove_file(dir.join(checkpoints_file())).expect("rm"),
        Place::Stream,
        "its file gateway-1.checkpoints.jsonl is missing",
    );
    check(
        &|dir| edit_lines(dir, &checkpoints_file(), |lines| lines[2] = b"{}".to_vec()),
        Place::Stream,
        "line 3 of gateway-1.checkpoints.jsonl: not a signed checkpoint",
    );
}

#[test]
fn an_unreadable_manifest_is_an_error() {
    let signer = LocalSigner::generate().expect("key");
    let keys = keys_of(&signer);
    let root = tempfile::tempdir().expect("tempdir");
    let pristine = root.path().join("pristine");
    write_export(&pristine, &signer, &[("s1", 20)], 10);
    assert!(verify(&pristine, &keys).ok());
    let manifest = std::fs::read_to_string(pristine.join("manifest.json")).expect("read");
    assert!(manifest.starts_with(r#"{"format":"strongroom-audit-export/1","exported_at":"20"#));
    assert!(
        manifest.ends_with("Z\",\"streams\":[\"s1\"]}\n"),
        "{manifest}"
    );

    let check = |content: Option<&str>, expected: &str| {
        let dir = root.path().join("case");
        copy_dir(&pristine, &dir);
        let path = dir.join("manifest.json");
        match content {
            Some(content) => std::fs::write(&path, content).expect("write"),
            None => std::fs::remove_file(&path).expect("rm"),
        }
        match verify_export(&dir, &keys, &mut |_| {}) {
            Err(e @ ExportError::Manifest { .. }) => {
                assert!(e.to_string().contains(expected), "{e}");
            }
            other => panic!("{content:?}: {other:?}"),
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    };
    check(None, "cannot be read");
    check(Some("garbage"), "not an export manifest");
    check(
        Some(&manifest.replace("/1", "/2")),
        "this build reads strongroom-audit-export/1",
    );
    check(
        Some(&manifest.replace("\"s1\"", "\"../s1\"")),
        "is not a stream name",
    );
    check(
        Some(&manifest.replace("\"s1\"", "\"s1\",\"s1\"")),
        "listed twice",
    );
    check(
        Some(&manifest.replacen("{", "{\"x\":1,", 1)),
        "unknown field",
    );
    check(Some(&" ".repeat(4 * 1024 * 1024 + 1)), "longer than");
}

#[test]
fn progress_comes_at_most_every_65536_records_with_an_estimate() {
    let signer = LocalSigner::generate().expect("key");
    let dir = tempfile::tempdir().expect("tempdir");
    // Small records, many of them: what the progress is for.
    let mut writer = ExportWriter::create(dir.path()).expect("create");
    writer.begin_stream("p").expect("stream");
    let total = 140_000u64;
    for seq in 0..total {
        let bytes = format!(r#"{{"v":1,"stream":"p","seq":{seq},"action":"x"}}"#).into_bytes();
        writer.record(&leaf_hash(&bytes), &bytes).expect("record");
    }
    writer.finish().expect("finish");
    let mut calls = Vec::new();
    let report =
        verify_export(dir.path(), &keys_of(&signer), &mut |p| calls.push(p)).expect("read");
    assert_eq!(
        report.streams[0].as_ref().map(|s| (s.records, s.covered)),
        Ok((total, 0))
    );
    // The first as the stream begins, then after at least PROGRESS_EVERY records.
    assert!(calls.len() >= 2, "{calls:?}");
    for pair in calls.windows(2) {
        assert!(
            pair[1].records_done >= pair[0].records_done + PROGRESS_EVERY,
            "{calls:?}"
        );
    }
    for call in &calls[1..] {
        let estimate = call.records_total_estimate.expect("an estimate");
        assert!(estimate.abs_diff(total) < total / 20, "{call:?}");
    }
}

/// A tiny xorshift: the same "random" flips on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Random bytes changed anywhere in a small export: a report or an error, never a panic; and
/// any change to a records file is a failure of its stream.
#[test]
fn random_byte_changes_never_panic_and_records_changes_never_pass() {
    let signer = LocalSigner::generate().expect("key");
    let keys = keys_of(&signer);
    let root = tempfile::tempdir().expect("tempdir");
    let pristine = root.path().join("pristine");
    write_export(&pristine, &signer, &[("a", 60), ("b", 35)], 10);
    assert!(verify(&pristine, &keys).ok());
    let files = [
        "a.records.jsonl",
        "b.records.jsonl",
        "a.checkpoints.jsonl",
        "b.checkpoints.jsonl",
        "manifest.json",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..400 {
        let dir = root.path().join("case");
        copy_dir(&pristine, &dir);
        let file = files[(rng.next() % files.len() as u64) as usize];
        let path = dir.join(file);
        let mut bytes = std::fs::read(&path).expect("read");
        for _ in 0..1 + rng.next() % 3 {
            let at = (rng.next() % bytes.len() as u64) as usize;
            bytes[at] ^= 1 + (rng.next() % 255) as u8;
        }
        std::fs::write(&path, &bytes).expect("write");
        let result = verify_export(&dir, &keys, &mut |_| {});
        if file.ends_with(".records.jsonl") {
            let report = result.expect("the manifest is intact");
            let stream = &file[..1];
            let failed = report
                .streams
                .iter()
                .any(|s| s.as_ref().is_err_and(|f| f.stream == stream));
            assert!(
                failed,
                "round {round}: a change to {file} passed: {report:?}"
            );
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}

/// Every record's leaf in the stream `name` as [`write_export`] writes it.
fn leaves_of(stream: &str, records: u64) -> Vec<audit::Hash> {
    (0..records)
        .map(|seq| leaf_hash(&record(stream, seq)))
        .collect()
}

/// Checks a proof as an auditor would, from the record's bytes, against the tree of the
/// first `size` of `leaves`.
fn check_proof(proof: &RecordProof, keys: &PublicKeys, leaves: &[audit::Hash], size: u64) {
    let record_bytes = record(&proof.stream, proof.seq);
    assert_eq!(proof.record, record_bytes);
    assert_eq!(proof.leaf, leaf_hash(&record_bytes));
    assert_eq!(proof.tree_size, size);
    let tree = &leaves[..size as usize];
    assert_eq!(proof.root, audit::merkle::root(tree));
    assert_eq!(
        proof.proof,
        audit::merkle::inclusion_proof(tree, proof.seq, size).expect("proof")
    );
    audit::merkle::verify_inclusion(&proof.leaf, proof.seq, size, &proof.proof, &proof.root)
        .expect("the proof verifies");
    let checkpoint = proof
        .checkpoint
        .as_ref()
        .expect("prove finds the checkpoint");
    assert_eq!(checkpoint.checkpoint.stream, proof.stream);
    assert_eq!(checkpoint.checkpoint.size, size);
    assert_eq!(checkpoint.checkpoint.root, proof.root);
    assert_eq!(keys.verify(checkpoint), Ok(()));
}

#[test]
fn a_record_of_an_export_proves_against_the_latest_checkpoint_or_a_named_one() {
    let signer = LocalSigner::generate().expect("key");
    let keys = keys_of(&signer);
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("export");
    write_export(&dir, &signer, &STREAMS, CHECKPOINT_EVERY);
    let leaves = leaves_of(TARGET, 5000);

    for seq in [0, 1, 999, 1000, 2345, 4096, 4999] {
        let proof = prove(&dir, TARGET, seq, None, &keys).expect("proof");
        assert_eq!((proof.stream.as_str(), proof.seq), (TARGET, seq));
        check_proof(&proof, &keys, &leaves, 5000);
    }
    for size in [1000, 3000, 5000] {
        let proof = prove(&dir, TARGET, 999, Some(size), &keys).expect("proof");
        check_proof(&proof, &keys, &leaves, size);
    }
    // The last checkpoint of a stream is at its last record.
    let proof = prove(&dir, "ledger.eu_1", 5002, None, &keys).expect("proof");
    check_proof(&proof, &keys, &leaves_of("ledger.eu_1", 5003), 5003);
    // A proof against an older tree reads no record after it: a change there does not
    // matter to it (verification of the whole export names it).
    edit_lines(&dir, &records_file(), |lines| {
        lines[4500] = replace(&lines[4500], "transfer.create", "transfer.delete");
    });
    let proof = prove(&dir, TARGET, 2345, Some(3000), &keys).expect("proof");
    check_proof(&proof, &keys, &leaves, 3000);
    assert!(matches!(
        prove(&dir, TARGET, 2345, None, &keys),
        Err(ProveError::Tampered(Failure {
            place: Place::Record(4500),
            ..
        }))
    ));
}

#[test]
fn a_proof_is_refused_for_what_no_checkpoint_covers() {
    let signer = LocalSigner::generate().expect("key");
    let keys = keys_of(&signer);
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("export");
    write_export(&dir, &signer, &STREAMS, CHECKPOINT_EVERY);
    let refused =
        |stream: &str, seq: u64, size: Option<u64>| match prove(&dir, stream, seq, size, &keys) {
            Ok(proof) => panic!("{stream} {seq} {size:?}: {proof:?}"),
            Err(e) => (e.to_string(), e),
        };

    let (text, e) = refused("gateway-9", 0, None);
    assert!(matches!(e, ProveError::NoStream { .. }), "{e:?}");
    assert_eq!(text, "the export holds no stream \"gateway-9\"");
    let (text, e) = refused(TARGET, 5000, None);
    assert!(
        matches!(e, ProveError::NoRecord { records: 5000, .. }),
        "{e:?}"
    );
    assert_eq!(
        text,
        "stream gateway-1 has 5000 records in the export: there is no record 5000"
    );
    let (text, e) = refused(TARGET, u64::MAX, None);
    assert!(matches!(e, ProveError::NoRecord { .. }), "{text}");
    let (text, e) = refused(TARGET, 10, Some(2500));
    assert!(
        matches!(
            e,
            ProveError::NotCheckpointed {
                size: 2500,
                latest: 5000,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(text.contains("no checkpoint at size 2500"), "{text}");
    let (text, e) = refused(TARGET, 2345, Some(2000));
    assert!(
        matches!(e, ProveError::NotInTree { size: 2000, .. }),
        "{e:?}"
    );
    assert_eq!(
        text,
        "record 2345 of stream gateway-1 is not in its tree of 2000 records"
    );

    // Records after the last checkpoint (its line removed: nothing shows it was there).
    edit_lines(&dir, "ledger.eu_1.checkpoints.jsonl", |lines| {
        lines.retain(|l| !String::from_utf8_lossy(l).contains("\"size\":5003,"));
    });
    let (text, e) = refused("ledger.eu_1", 5001, None);
    assert!(
        matches!(e, ProveError::NotCovered { latest: 5000, .. }),
        "{e:?}"
    );
    assert!(
        text.contains("after its latest checkpoint (size 5000)"),
        "{text}"
    );
    prove(&dir, "ledger.eu_1", 4999, None, &keys).expect("still proven");
    // No checkpoint at all.
    std::fs::write(dir.join(checkpoints_file()), b"").expect("write");
    let (text, e) = refused(TARGET, 0, None);
    assert!(matches!(e, ProveError::NoCheckpoint { .. }), "{e:?}");
    assert!(text.contains("has no checkpoint"), "{text}");
    // No manifest: not an export.
    std::fs::remove_file(dir.join("manifest.json")).expect("rm");
    let (_, e) = refused("gateway-2", 0, None);
    assert!(
        matches!(e, ProveError::Export(ExportError::Manifest { .. })),
        "{e:?}"
    );
}

#[test]
fn a_tampered_export_or_another_key_gives_no_proof() {
    let signer = LocalSigner::generate().expect("key");
    let keys = keys_of(&signer);
    let root = tempfile::tempdir().expect("tempdir");
    let pristine = root.path().join("pristine");
    write_export(&pristine, &signer, &STREAMS, CHECKPOINT_EVERY);
    let mut case = 0;
    let mut check = |tamper: &dyn Fn(&Path), keys: &PublicKeys, place: Place, problem: &str| {
        case += 1;
        let dir = root.path().join(format!("case-{case}"));
        copy_dir(&pristine, &dir);
        tamper(&dir);
        match prove(&dir, TARGET, 2345, None, keys) {
            Err(ProveError::Tampered(failure)) => {
                assert_eq!(failure.stream, TARGET, "case {case}: {failure}");
                assert_eq!(failure.place, place, "case {case}: {failure}");
                assert!(failure.problem.contains(problem), "case {case}: {failure}");
            }
            other => panic!("case {case}: {other:?}"),
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    };
    let untouched = |_: &Path| {};

    // The record proven, changed, its stored leaf kept.
    check(
        &|dir| {
            edit_lines(dir, &records_file(), |lines| {
                lines[2345] = replace(&lines[2345], "transfer.create", "transfer.delete");
            })
        },
        &keys,
        Place::Record(2345),
        "its content does not match the leaf hash stored with it",
    );
    // The same with the leaf recomputed, and another record so changed: the signed root
    // catches both.
    for seq in [2345, 17] {
        check(
            &|dir| {
                edit_lines(dir, &records_file(), |lines| {
                    let record =
                        replace(record_of(&lines[seq]), "transfer.create", "transfer.delete");
                    lines[seq] = line_of(&record);
                })
            },
            &keys,
            Place::Records { from: 0, to: 4999 },
            "do not match the checkpoint signed at size 5000",
        );
    }
    // A line that holds no record, a record removed, two swapped, the tail cut off.
    check(
        &|dir| edit_lines(dir, &records_file(), |lines| lines[2345].truncate(100)),
        &keys,
        Place::Record(2345),
        "its line is not",
    );
    check(
        &|dir| {
            edit_lines(dir, &records_file(), |lines| {
                lines.remove(100);
            })
        },
        &keys,
        Place::Records { from: 100, to: 100 },
        "missing",
    );
    check(
        &|dir| edit_lines(dir, &records_file(), |lines| lines.swap(2345, 2346)),
        &keys,
        Place::Record(2345),
        "out of order",
    );
    check(
        &|dir| edit_lines(dir, &records_file(), |lines| lines.truncate(4990)),
        &keys,
        Place::Stream,
        "truncated",
    );
    // The checkpoint's root changed; one forged with another key under the writer's id.
    check(
        &|dir| {
            edit_lines(dir, &checkpoints_file(), |lines| {
                let line = checkpoint_line(lines, 5000);
                let mut signed = SignedCheckpoint::decode(line).expect("decode");
                signed.checkpoint.root[0] ^= 1;
                *line = signed.encode();
            })
        },
        &keys,
        Place::Checkpoint(5000),
        "the signature does not verify with public key",
    );
    check(
        &|dir| {
            let other = LocalSigner::generate().expect("key");
            edit_lines(dir, &checkpoints_file(), |lines| {
                let line = checkpoint_line(lines, 5000);
                let mut cp = SignedCheckpoint::decode(line).expect("decode").checkpoint;
                cp.root = leaf_hash(b"another history");
                let mut forged = other.sign(&cp);
                forged.key_id = signer.key_id().to_owned();
                *line = forged.encode();
            })
        },
        &keys,
        Place::Checkpoint(5000),
        "the signature does not verify",
    );
    // A second checkpoint at the same size with another root, validly signed: a rewrite.
    check(
        &|dir| {
            edit_lines(dir, &checkpoints_file(), |lines| {
                let line = checkpoint_line(lines, 5000).clone();
                let mut cp = SignedCheckpoint::decode(&line).expect("decode").checkpoint;
                cp.root = leaf_hash(b"another history");
                lines.push(signer.sign(&cp).encode());
            })
        },
        &keys,
        Place::Checkpoint(5000),
        "different roots",
    );
    // A checkpoint line that is not one.
    check(
        &|dir| edit_lines(dir, &checkpoints_file(), |lines| lines[2] = b"{}".to_vec()),
        &keys,
        Place::Stream,
        "line 3 of gateway-1.checkpoints.jsonl: not a signed checkpoint",
    );
    // The records file gone.
    check(
        &|dir| std::fs::remove_file(dir.join(records_file())).expect("rm"),
        &keys,
        Place::Stream,
        "its file gateway-1.records.jsonl is missing",
    );
    // The export intact, another writer's key.
    let stranger = LocalSigner::generate().expect("key");
    check(
        &untouched,
        &keys_of(&stranger),
        Place::Checkpoint(5000),
        "signed by an unknown key",
    );
    // Its public key under the writer's id.
    let impostor = PublicKeys::from_json(&replace(
        &stranger.public_key().to_json(),
        stranger.key_id(),
        signer.key_id(),
    ))
    .expect("keys");
    check(
        &untouched,
        &impostor,
        Place::Checkpoint(5000),
        "does not verify",
    );
    prove(&pristine, TARGET, 2345, None, &keys).expect("the pristine export proves");
}

/// Random bytes changed in a records file: never a panic, and never a proof when the change
/// is in the tree proven against.
#[test]
fn random_changes_to_records_never_give_a_proof() {
    let signer = LocalSigner::generate().expect("key");
    let keys = keys_of(&signer);
    let root = tempfile::tempdir().expect("tempdir");
    let pristine = root.path().join("pristine");
    write_export(&pristine, &signer, &[("a", 60)], 10);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..300 {
        let dir = root.path().join("case");
        copy_dir(&pristine, &dir);
        let path = dir.join("a.records.jsonl");
        let mut bytes = std::fs::read(&path).expect("read");
        for _ in 0..1 + rng.next() % 3 {
            let at = (rng.next() % bytes.len() as u64) as usize;
            bytes[at] ^= 1 + (rng.next() % 255) as u8;
        }
        std::fs::write(&path, &bytes).expect("write");
        let seq = rng.next() % 60;
        let proof = prove(&dir, "a", seq, None, &keys);
        assert!(proof.is_err(), "round {round}: {proof:?}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
