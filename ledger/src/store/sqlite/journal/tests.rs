//! The log on disk: what a reopen reads back after clean writes, segment reuse, torn and
//! forged records, gaps and failures.

use super::*;

/// A segment with room for its header and two one-block records.
const SMALL_SEGMENT: u64 = 3 * JOURNAL_BLOCK_BYTES;

fn ops(seq: u64, body_len: usize) -> Vec<WriteOp> {
    vec![WriteOp::Put {
        item: Item {
            key: Key::new("p", format!("k{seq}")),
            version: seq,
            body: vec![u8::try_from(seq % 251).unwrap_or(0); body_len],
        },
        condition: Condition::None,
    }]
}

fn open(dir: &Path, applied: u64, segment: u64) -> (Journal, Recovered) {
    Journal::open(dir, applied, segment).expect("open")
}

fn seqs(recovered: &Recovered) -> Vec<u64> {
    recovered.records.iter().map(|(seq, _)| *seq).collect()
}

/// The live segment files, oldest first.
fn live_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".log") && !name.starts_with("free-")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn records_round_trip() {
    let ops = vec![
        WriteOp::Put {
            item: Item {
                key: Key::new("p", "s"),
                version: 3,
                body: vec![1, 2, 3],
            },
            condition: Condition::Version(2),
        },
        WriteOp::Delete {
            key: Key::new("p", "t"),
            condition: Condition::None,
        },
    ];
    let back = decode(1, &encode(&ops)).expect("decode");
    assert_eq!(back.len(), 2);
    assert!(
        matches!(&back[0], WriteOp::Put { item, condition: Condition::None } if item.version == 3 && item.body == [1, 2, 3])
    );
    assert!(matches!(&back[1], WriteOp::Delete { key, .. } if key.sk == "t"));
    assert!(decode(2, &[0xff, 0xff]).is_err());
}

#[test]
fn a_reopened_log_gives_back_exactly_the_records_after_the_applied_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("j");
    let (mut journal, recovered) = open(&log, 0, JOURNAL_SEGMENT_BYTES);
    assert!(recovered.records.is_empty());
    assert_eq!(recovered.last_seq, None);
    for seq in 1..=10 {
        journal.append(seq, &ops(seq, 100), 0).expect("append");
    }
    drop(journal);
    let (_, recovered) = open(&log, 4, JOURNAL_SEGMENT_BYTES);
    assert_eq!(seqs(&recovered), (5..=10).collect::<Vec<_>>());
    assert_eq!(recovered.last_seq, Some(10));
    for (seq, payload) in &recovered.records {
        let back = decode(*seq, payload).expect("decode");
        assert!(
            matches!(&back[..], [WriteOp::Put { item, .. }] if item.version == *seq && item.key.sk == format!("k{seq}") && item.body.len() == 100)
        );
    }
    let (_, recovered) = open(&log, 10, JOURNAL_SEGMENT_BYTES);
    assert!(recovered.records.is_empty());
    assert_eq!(recovered.last_seq, Some(10));
}

#[test]
fn segments_are_released_reused_and_never_give_back_their_old_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("j");
    let (mut journal, _) = open(&log, 0, SMALL_SEGMENT);
    for seq in 1..=60u64 {
        // The items table keeps three records behind.
        journal
            .append(seq, &ops(seq, 200), seq.saturating_sub(4))
            .expect("append");
        let (live, free) = journal.segment_counts();
        assert!(live <= 4, "live segments at {seq}: {live}");
        assert!(free <= JOURNAL_FREE_SEGMENTS_MAX);
    }
    // Two records per segment, 30 segments written, at most a handful of files ever.
    let files = fs::read_dir(&log).expect("list").count();
    assert!(files <= 4 + JOURNAL_FREE_SEGMENTS_MAX, "{files} files");
    drop(journal);
    let (mut journal, recovered) = open(&log, 56, SMALL_SEGMENT);
    assert_eq!(seqs(&recovered), vec![57, 58, 59, 60]);
    assert_eq!(recovered.last_seq, Some(60));
    // Writing on after a reopen, through more reuse.
    for seq in 61..=80u64 {
        journal
            .append(seq, &ops(seq, 200), seq - 2)
            .expect("append");
    }
    drop(journal);
    let (_, recovered) = open(&log, 77, SMALL_SEGMENT);
    assert_eq!(seqs(&recovered), vec![78, 79, 80]);
}

#[test]
fn a_torn_or_corrupt_record_ends_the_log_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("j");
    let (mut journal, _) = open(&log, 0, JOURNAL_SEGMENT_BYTES);
    for seq in 1..=5 {
        journal.append(seq, &ops(seq, 100), 0).expect("append");
    }
    drop(journal);
    let [segment] = &live_files(&log)[..] else {
        panic!("one segment expected");
    };
    let block = JOURNAL_BLOCK_BYTES as usize;
    let mut bytes = fs::read(segment).expect("read");
    // Record k sits in block k (block 0 is the header). A flipped payload byte in record 5:
    bytes[5 * block + HEADER_BYTES + 10] ^= 0x40;
    fs::write(segment, &bytes).expect("write");
    let (_, recovered) = open(&log, 0, JOURNAL_SEGMENT_BYTES);
    assert_eq!(seqs(&recovered), vec![1, 2, 3, 4]);
    // Record 3 half written (its second half still zeros): 4 is intact but comes after the end.
    bytes[3 * block + 40..4 * block].fill(0);
    fs::write(segment, &bytes).expect("write");
    let (_, recovered) = open(&log, 0, JOURNAL_SEGMENT_BYTES);
    assert_eq!(seqs(&recovered), vec![1, 2]);
    assert_eq!(recovered.last_seq, Some(2));
}

#[test]
fn a_record_with_the_right_sequence_but_another_salt_is_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("j");
    let (mut journal, _) = open(&log, 0, JOURNAL_SEGMENT_BYTES);
    for seq in 1..=3 {
        journal.append(seq, &ops(seq, 100), 0).expect("append");
    }
    drop(journal);
    let [segment] = &live_files(&log)[..] else {
        panic!("one segment expected");
    };
    // What a previous use of the segment, or a crafted item body, could leave in block 4:
    // a well-formed record 4 whose checksum uses some other salt.
    let payload = encode(&ops(4, 100));
    let len = u32::try_from(payload.len()).expect("len");
    let mut forged = Vec::new();
    forged.extend_from_slice(&len.to_le_bytes());
    forged.extend_from_slice(&checksum(0, len, 4, &payload).to_le_bytes());
    forged.extend_from_slice(&4u64.to_le_bytes());
    forged.extend_from_slice(&payload);
    let mut bytes = fs::read(segment).expect("read");
    let at = 4 * JOURNAL_BLOCK_BYTES as usize;
    bytes[at..at + forged.len()].copy_from_slice(&forged);
    fs::write(segment, &bytes).expect("write");
    let (_, recovered) = open(&log, 0, JOURNAL_SEGMENT_BYTES);
    assert_eq!(seqs(&recovered), vec![1, 2, 3]);
    // A segment whose header names another index holds nothing.
    let renamed = live_path(&log, 7);
    fs::rename(segment, &renamed).expect("rename");
    let (_, recovered) = open(&log, 0, JOURNAL_SEGMENT_BYTES);
    assert!(recovered.records.is_empty());
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("j");
    let (mut journal, _) = open(&log, 0, SMALL_SEGMENT);
    journal.append(1, &ops(1, 100), 0).expect("append");
    journal
        .append(2, &ops(2, 50_000), 0)
        .expect("append a large record");
    journal.append(3, &ops(3, 100), 0).expect("append");
    drop(journal);
    let (mut journal, recovered) = open(&log, 0, SMALL_SEGMENT);
    assert_eq!(seqs(&recovered), vec![1, 2, 3]);
    let big = decode(2, &recovered.records[1].1).expect("decode");
    assert!(matches!(&big[..], [WriteOp::Put { item, .. }] if item.body.len() == 50_000));
    // Once released, the oversized segment is deleted rather than kept for reuse.
    for seq in 4..=12 {
        journal
            .append(seq, &ops(seq, 100), seq - 1)
            .expect("append");
    }
    for path in fs::read_dir(&log)
        .expect("list")
        .map(|e| e.expect("entry").path())
    {
        let len = fs::metadata(&path).expect("metadata").len();
        assert_eq!(len, SMALL_SEGMENT, "{}", path.display());
    }
}

#[test]
fn a_missing_segment_before_the_applied_position_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("j");
    let (mut journal, _) = open(&log, 0, SMALL_SEGMENT);
    for seq in 1..=4 {
        journal.append(seq, &ops(seq, 100), 0).expect("append");
    }
    drop(journal);
    let files = live_files(&log);
    assert_eq!(files.len(), 2);
    fs::remove_file(&files[0]).expect("remove");
    assert!(matches!(
        Journal::open(&log, 0, SMALL_SEGMENT),
        Err(StoreError::Corrupt(m)) if m.contains("resumes at record 3")
    ));
    // The items table holding 1 and 2 makes the rest a whole log again.
    let (_, recovered) = open(&log, 2, SMALL_SEGMENT);
    assert_eq!(seqs(&recovered), vec![3, 4]);
}

#[test]
fn a_released_segment_missing_before_an_older_one_ends_nothing() {
    // Without a filesystem journal, the rename that released one segment may reach the disk
    // while an older segment's, done just before, does not: the older one comes back whole.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("j");
    let (mut journal, _) = open(&log, 0, SMALL_SEGMENT);
    for seq in 1..=6 {
        journal.append(seq, &ops(seq, 100), 0).expect("append");
    }
    drop(journal);
    let files = live_files(&log);
    assert_eq!(files.len(), 3);
    fs::remove_file(&files[1]).expect("remove records 3 and 4");
    let (_, recovered) = open(&log, 4, SMALL_SEGMENT);
    assert_eq!(seqs(&recovered), vec![5, 6]);
    assert_eq!(recovered.last_seq, Some(6));
    assert!(matches!(
        Journal::open(&log, 2, SMALL_SEGMENT),
        Err(StoreError::Corrupt(m)) if m.contains("resumes at record 5")
    ));
}

#[test]
fn after_a_failed_write_the_journal_takes_no_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("j");
    let (mut journal, _) = open(&log, 0, SMALL_SEGMENT);
    journal.append(1, &ops(1, 100), 0).expect("append");
    journal.append(2, &ops(2, 100), 0).expect("append");
    // The next record needs a new segment, and the directory is gone.
    fs::remove_dir_all(&log).expect("remove");
    assert!(matches!(
        journal.append(3, &ops(3, 100), 0),
        Err(StoreError::Unavailable(_))
    ));
    fs::create_dir_all(&log).expect("recreate");
    assert!(matches!(
        journal.append(3, &ops(3, 100), 0),
        Err(StoreError::Unavailable(m)) if m.contains("no more writes")
    ));
}
