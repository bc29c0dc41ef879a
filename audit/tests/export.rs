//! An export as an auditor receives it: written with [`ExportWriter`], verified with
//! [`verify_export`], then tampered with in each way an insider could, each found and named.

use std::path::Path;

use audit::checkpoint::{Checkpoint, message};
use audit::export::PROGRESS_EVERY;
use audit::merkle::leaf_hash;
use audit::record::format_time;
use audit::{
    Actor, Draft, ExportError, ExportWriter, Frontier, LocalSigner, Origin, Place, Progress,
    PublicKeys, Record, Report, SignedCheckpoint, verify_export,
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
