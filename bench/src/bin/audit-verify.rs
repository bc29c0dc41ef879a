//! `audit-verify`: how many audit records per second `audit::verify_export` verifies.
//!
//! 1. Writes an export of `--records N` records (default 1,000,000) spread over `--streams S`
//!    streams (default 4) into a new temporary directory (`TMPDIR`, removed afterwards):
//!    realistic records of about 450 bytes (`audit::Record::stamp` with actor, two resources and
//!    origin filled, as the gateway writes them for a transfer), each with its leaf hash, and per stream a
//!    checkpoint every 10,000 records and one at the end, signed by a new `LocalSigner`.
//! 2. Times `verify_export` of that directory with the signer's public key. The files were just
//!    written, so they are read from the page cache: the figure is the verifier's own speed
//!    (hashing, parsing, the Merkle tree, signatures), not the disk's.
//! 3. Prints `records: N`, `streams: S`, `verify seconds: X.XXX`, `records verified/s: N` and
//!    `result: ok` (or `result: failed`, with the failures on stderr).
//!
//! Exit status: 0 when the export verifies; 1 when it does not, or on an I/O error; 64 for an
//! invalid argument.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use audit::checkpoint::Checkpoint;
use audit::merkle::leaf_hash;
use audit::record::format_time;
use audit::{Actor, Draft, ExportWriter, Frontier, LocalSigner, Origin, PublicKeys, Record};

/// Records by default.
const DEFAULT_RECORDS: u64 = 1_000_000;
/// Streams by default.
const DEFAULT_STREAMS: u64 = 4;
/// Most records (about 55 GB of export).
const RECORDS_MAX: u64 = 100_000_000;
/// Most streams.
const STREAMS_MAX: u64 = 1000;
/// Records between two checkpoints of a stream.
const CHECKPOINT_EVERY: u64 = 10_000;
/// Exit status for an invalid argument (`EX_USAGE`).
const EXIT_USAGE: u8 = 64;
/// The records' first timestamp, microseconds since the epoch.
const T0_US: i64 = 1_764_000_000_000_000;

struct Settings {
    records: u64,
    streams: u64,
}

impl Settings {
    fn from_args(mut args: impl Iterator<Item = String>) -> Result<Settings, String> {
        let mut settings = Settings {
            records: DEFAULT_RECORDS,
            streams: DEFAULT_STREAMS,
        };
        while let Some(arg) = args.next() {
            let (name, max, slot) = match arg.as_str() {
                "--records" => ("--records", RECORDS_MAX, &mut settings.records),
                "--streams" => ("--streams", STREAMS_MAX, &mut settings.streams),
                other => {
                    return Err(format!(
                        "unknown argument {other:?}; usage: audit-verify [--records N] [--streams S]"
                    ));
                }
            };
            let value = args.next().ok_or(format!("{name} needs a value"))?;
            *slot = value
                .parse()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or(format!(
                    "{name} must be a whole number from 1 to {max}, not {value:?}"
                ))?;
        }
        Ok(settings)
    }
}

fn main() -> ExitCode {
    let settings = match Settings::from_args(std::env::args().skip(1)) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("audit-verify: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("audit-verify: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(settings: &Settings) -> Result<()> {
    let signer = LocalSigner::generate().context("signing key")?;
    let mut keys = PublicKeys::new();
    keys.add(signer.public_key()).context("public key")?;
    let dir = tempfile::tempdir().context("temporary directory")?;
    let export = dir.path().join("export");

    let started = Instant::now();
    let bytes = write_export(&export, &signer, settings)?;
    eprintln!(
        "wrote {} records ({:.0} MB, {:.0} bytes per record) in {:.1} s",
        settings.records,
        bytes as f64 / 1e6,
        bytes as f64 / settings.records as f64,
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let report = audit::verify_export(&export, &keys, &mut |_| {}).context("verify")?;
    let seconds = started.elapsed().as_secs_f64();
    let verified: u64 = report
        .streams
        .iter()
        .filter_map(|s| s.as_ref().ok())
        .map(|s| s.records)
        .sum();
    println!("records: {}", settings.records);
    println!("streams: {}", settings.streams);
    println!("verify seconds: {seconds:.3}");
    println!("records verified/s: {:.0}", verified as f64 / seconds);
    if report.ok() && verified == settings.records {
        println!("result: ok");
        return Ok(());
    }
    println!("result: failed");
    for failure in report.streams.iter().filter_map(|s| s.as_ref().err()) {
        eprintln!("{failure}");
    }
    bail!("the export did not verify")
}

/// Writes the export; returns the records' bytes.
fn write_export(dir: &Path, signer: &LocalSigner, settings: &Settings) -> Result<u64> {
    let mut writer = ExportWriter::create(dir)?;
    let mut bytes = 0u64;
    for stream_index in 0..settings.streams {
        let stream = format!("gateway-{stream_index}");
        // The remainder goes to the first streams.
        let records = settings.records / settings.streams
            + u64::from(stream_index < settings.records % settings.streams);
        writer.begin_stream(&stream)?;
        let mut frontier = Frontier::new();
        let mut checkpoints = Vec::new();
        for seq in 0..records {
            let record = record(&stream, seq);
            let leaf = leaf_hash(&record);
            writer.record(&leaf, &record)?;
            bytes += record.len() as u64;
            frontier.push(leaf);
            let size = frontier.size();
            if size.is_multiple_of(CHECKPOINT_EVERY) || size == records {
                checkpoints.push(signer.sign(&Checkpoint {
                    stream: stream.clone(),
                    size,
                    root: frontier.root(),
                    time: format_time(T0_US + i64::try_from(size).unwrap_or(i64::MAX)),
                }));
            }
        }
        for checkpoint in &checkpoints {
            writer.checkpoint(checkpoint)?;
        }
    }
    writer.finish()?;
    Ok(bytes)
}

/// A record as the gateway writes one for a transfer: about 450 bytes.
fn record(stream: &str, seq: u64) -> Vec<u8> {
    let actor = Actor {
        tenant: Some(format!("tenant-{:06}", seq % 97)),
        subject: Some(format!("partner-app-{:03}", seq % 13)),
        client_id: Some(format!("partner-app-{:03}", seq % 13)),
        source_ip: Some(format!("203.0.113.{}", seq % 250)),
    };
    let origin = Origin {
        request_id: Some(format!("01JD8Y4ZQ7K3M9X{seq:011}")),
        trace_id: Some(format!("4bf92f3577b34da6a3ce{seq:012x}")),
    };
    let draft = Draft::success("transfer.create", actor, origin)
        .resource("transfer", format!("01JD8Y4ZQ7TRANSF{seq:010}"))
        .resource("account", format!("01JD8Y4ZQ7ACCNT0{:010}", seq % 1000));
    let time_us = T0_US + i64::try_from(seq).unwrap_or(i64::MAX) * 1_000;
    Record::stamp(draft, stream, seq, time_us).encode()
}
