//! The audit record: what one action left behind, in the form that is hashed, stored, exported
//! and verified.
//!
//! A record answers PCI DSS 10.2.2: who (tenant, subject, client id, source address), what
//! (action, resource ids), when (UTC to the microsecond, and the record's sequence in its
//! stream), the outcome (success, or failure with a reason) and the origin (request id, trace
//! id), with the schema version first.
//!
//! # Encoding
//!
//! A record is stored and exported as compact JSON with its fields in the order of [`Record`]
//! (`v`, `stream`, `seq`, `time`, `actor`, `action`, `resources`, `outcome`, `reason`,
//! `origin`), absent values as `null`. Its Merkle leaf is the hash of those exact bytes
//! ([`crate::merkle::leaf_hash`]): a verifier hashes what it was given and never re-encodes.
//! JSON escapes every control character, so an encoded record holds no line break and an export
//! can keep one record per line.
//!
//! # What never gets in
//!
//! [`Record::stamp`] passes every text field through [`crate::mask_pans`] and cuts it to its
//! bound, so a card number a caller forgot to mask is masked here, and no field grows without
//! limit. Secrets are the caller's to leave out: the record has no field for a token, a key or a
//! request body.

use serde::{Deserialize, Serialize};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 1;
/// Longest actor, action and origin field kept, in bytes (longer ones are cut at a character
/// boundary and end in `…`).
pub const FIELD_LEN_MAX: usize = 256;
/// Longest failure reason kept, in bytes.
pub const REASON_LEN_MAX: usize = 1024;
/// Longest detail kept, in bytes.
pub const DETAIL_LEN_MAX: usize = 512;
/// Longest resource id kept, in bytes.
pub const RESOURCE_LEN_MAX: usize = 64;
/// Most resource ids a record names: a batch of 1000 transfers, and a margin. More are left
/// out and the last one says how many (`…+N more`).
pub const RESOURCES_MAX: usize = 1100;
/// An upper bound on an encoded record's size, in bytes, given how many resources it names.
///
/// Stamping replaces control characters, so JSON escapes at most `"` and `\`, two bytes each;
/// resource ids keep to characters JSON does not escape.
pub const fn record_bytes_max(resources: usize) -> usize {
    1024 + 2 * (8 * FIELD_LEN_MAX + REASON_LEN_MAX + DETAIL_LEN_MAX)
        + resources * (RESOURCE_LEN_MAX + 3)
}

/// Who acted. Every field is optional: a request refused before its token was read has only an
/// address; the service's own actions (start, stop, hold expiry) have none of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The tenant the action was for.
    pub tenant: Option<String>,
    /// The token's subject (`sub`).
    pub subject: Option<String>,
    /// The OAuth client the token was issued to (`client_id`, `azp`), when it names one.
    pub client_id: Option<String>,
    /// The client's address, as the gateway established it.
    pub source_ip: Option<String>,
}

/// Where the action came from, to join the record with logs and traces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The request id (`x-request-id`).
    pub request_id: Option<String>,
    /// The W3C trace id of the request.
    pub trace_id: Option<String>,
}

/// Whether the action did what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It did.
    Success,
    /// It was refused or failed; the record's `reason` says why.
    Failure,
}

impl Outcome {
    /// `success` or `failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// A record as its writer stored it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub v: u32,
    /// The stream it belongs to: its writer's.
    pub stream: String,
    /// Its position in the stream, from 0 with no gap; also its leaf index.
    pub seq: u64,
    /// When, in UTC: RFC 3339 with six fractional digits (`2026-11-24T09:30:00.000000Z`).
    pub time: String,
    /// Who.
    pub actor: Actor,
    /// What, as `noun.verb` (`transfer.create`, `card.reveal`, `auth.failure`).
    pub action: String,
    /// The ids of what it touched, as `kind:id` (`account:01J…`, `transfer:01J…`).
    pub resources: Vec<String>,
    /// Success or failure.
    pub outcome: Outcome,
    /// Why it failed (a problem type and detail); `None` on success.
    pub reason: Option<String>,
    /// What the actor stated, where an action asks for it: a card reveal's reason.
    pub detail: Option<String>,
    /// Request and trace ids.
    pub origin: Origin,
}

/// A record before its writer gives it a place: everything but stream, sequence and time.
/// Serializable, so that a gateway run alone can hand the records of what it refused to the
/// ledger behind it, whose stream holds them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: String,
    /// The ids of what it touched, as `kind:id`.
    pub resources: Vec<String>,
    /// Success or failure.
    pub outcome: Outcome,
    /// Why it failed.
    pub reason: Option<String>,
    /// What the actor stated, where an action asks for it.
    pub detail: Option<String>,
    /// Request and trace ids.
    pub origin: Origin,
}

impl Draft {
    /// A successful action with no resources yet.
    pub fn success(action: impl Into<String>, actor: Actor, origin: Origin) -> Draft {
        Draft {
            actor,
            action: action.into(),
            resources: Vec::new(),
            outcome: Outcome::Success,
            reason: None,
            detail: None,
            origin,
        }
    }

    /// A failed action with its reason.
    pub fn failure(
        action: impl Into<String>,
        actor: Actor,
        origin: Origin,
        reason: impl Into<String>,
    ) -> Draft {
        Draft {
            actor,
            action: action.into(),
            resources: Vec::new(),
            outcome: Outcome::Failure,
            reason: Some(reason.into()),
            detail: None,
            origin,
        }
    }

    /// Adds a resource id, `kind:id`.
    pub fn resource(mut self, kind: &str, id: impl std::fmt::Display) -> Draft {
        self.resources.push(format!("{kind}:{id}"));
        self
    }

    /// Sets what the actor stated.
    pub fn detail(mut self, detail: impl Into<String>) -> Draft {
        self.detail = Some(detail.into());
        self
    }
}

/// Stamps the records of one commit: the stream and the time are bounded and formatted once
/// for all of them.
#[derive(Clone, Debug)]
pub struct Stamper {
    stream: String,
    time: String,
    /// `{"v":…,"stream":…,"seq":`, which every record of the commit begins with.
    opening: Vec<u8>,
    /// `,"time":…`, which follows the sequence number.
    time_json: Vec<u8>,
}

impl Stamper {
    /// For records of `stream` made at `time_us` (microseconds since the Unix epoch).
    pub fn new(stream: &str, time_us: i64) -> Stamper {
        let stream = bounded(stream.to_owned(), FIELD_LEN_MAX);
        let time = format_time(time_us);
        let mut opening = Vec::with_capacity(32 + stream.len());
        opening.extend_from_slice(b"{\"v\":");
        json(&mut opening, &SCHEMA_VERSION);
        opening.extend_from_slice(b",\"stream\":");
        json(&mut opening, &stream);
        opening.extend_from_slice(b",\"seq\":");
        let mut time_json = Vec::with_capacity(48);
        time_json.extend_from_slice(b",\"time\":");
        json(&mut time_json, &time);
        Stamper {
            stream,
            time,
            opening,
            time_json,
        }
    }

    /// The record of `draft` at `seq`: text masked ([`crate::mask_pans`]) and cut to its
    /// bounds.
    pub fn stamp(&self, draft: Draft, seq: u64) -> Record {
        let field = |s: Option<String>| s.map(|s| bounded(s, FIELD_LEN_MAX));
        let more = draft.resources.len().saturating_sub(RESOURCES_MAX - 1);
        let mut resources: Vec<String> = draft
            .resources
            .into_iter()
            .take(RESOURCES_MAX)
            .map(resource_id)
            .collect();
        if more > 1 {
            resources.truncate(RESOURCES_MAX - 1);
            resources.push(format!("…+{more} more"));
        }
        Record {
            v: SCHEMA_VERSION,
            stream: self.stream.clone(),
            seq,
            time: self.time.clone(),
            actor: Actor {
                tenant: field(draft.actor.tenant),
                subject: field(draft.actor.subject),
                client_id: field(draft.actor.client_id),
                source_ip: field(draft.actor.source_ip),
            },
            action: bounded(draft.action, FIELD_LEN_MAX),
            resources,
            outcome: draft.outcome,
            reason: draft.reason.map(|r| bounded(r, REASON_LEN_MAX)),
            detail: draft.detail.map(|d| bounded(d, DETAIL_LEN_MAX)),
            origin: Origin {
                request_id: field(draft.origin.request_id),
                trace_id: field(draft.origin.trace_id),
            },
        }
    }
}

/// The part of a record known before its writer commits it (who, what was asked, where from),
/// stamped and encoded ahead, off the writer's serial path: [`Stamper::encode_prepared`] then
/// only adds what the commit decided. The bytes are the same as stamping and encoding the
/// whole [`Draft`] there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedRecord {
    /// `,"actor":{…},"action":"…","resources":[`.
    head: String,
    /// The resources before those the commit adds, each cleaned and encoded.
    leading: Vec<String>,
    /// The resources after them.
    trailing: Vec<String>,
    /// `],"outcome":` is the commit's; this is `,"origin":{…}}`.
    origin: String,
}

/// What a commit decided about a [`PreparedRecord`] record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Resource ids of what the action made, `kind:id`: after the leading resources, before
    /// the trailing ones.
    pub made: Vec<String>,
    /// Success or failure.
    pub outcome: Outcome,
    /// Why it failed.
    pub reason: Option<String>,
    /// What the actor stated, or a note of the writer's.
    pub detail: Option<String>,
}

impl PreparedRecord {
    /// The known part of a record: `actor` did `action` to `leading` (and `trailing`, which
    /// come after whatever the commit adds), asked through `origin`.
    pub fn new(
        actor: Actor,
        action: &str,
        leading: Vec<String>,
        trailing: Vec<String>,
        origin: Origin,
    ) -> PreparedRecord {
        let field = |s: Option<String>| s.map(|s| bounded(s, FIELD_LEN_MAX));
        let actor = Actor {
            tenant: field(actor.tenant),
            subject: field(actor.subject),
            client_id: field(actor.client_id),
            source_ip: field(actor.source_ip),
        };
        let origin = Origin {
            request_id: field(origin.request_id),
            trace_id: field(origin.trace_id),
        };
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(b",\"actor\":");
        json(&mut head, &actor);
        head.extend_from_slice(b",\"action\":");
        json(&mut head, &bounded(action.to_owned(), FIELD_LEN_MAX));
        head.extend_from_slice(b",\"resources\":[");
        let mut end = Vec::with_capacity(96);
        end.extend_from_slice(b",\"origin\":");
        json(&mut end, &origin);
        end.push(b'}');
        PreparedRecord {
            head: utf8(head),
            leading: leading.into_iter().map(resource_json).collect(),
            trailing: trailing.into_iter().map(resource_json).collect(),
            origin: utf8(end),
        }
    }
}

/// Compact JSON of a value that cannot fail to serialize (strings, numbers, options, plain
/// structs).
fn json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(out, value);
}

/// A resource id cleaned as stamping cleans it, encoded: quoted, as its characters (all
/// [`resource_char`]s, ASCII) need no escaping in JSON.
fn resource_json(id: String) -> String {
    let id = resource_id(id);
    let mut out = String::with_capacity(id.len() + 2);
    out.push('"');
    out.push_str(&id);
    out.push('"');
    out
}

/// JSON text is UTF-8: `serde_json` writes nothing else.
fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_default()
}

impl Stamper {
    /// The encoded record of `prepared` completed by `completion` at `seq`: the same bytes as
    /// [`Record::encode`] of the stamped draft, resources past [`RESOURCES_MAX`] cut the same
    /// way.
    pub fn encode_prepared(
        &self,
        prepared: &PreparedRecord,
        completion: Completion,
        seq: u64,
    ) -> Vec<u8> {
        let made: Vec<String> = completion.made.into_iter().map(resource_json).collect();
        let resources = || {
            prepared
                .leading
                .iter()
                .chain(made.iter())
                .chain(prepared.trailing.iter())
        };
        let count = prepared.leading.len() + made.len() + prepared.trailing.len();
        let resource_bytes: usize = resources().map(|r| r.len() + 1).sum();
        let mut out = Vec::with_capacity(
            96 + self.opening.len()
                + self.time_json.len()
                + prepared.head.len()
                + resource_bytes
                + prepared.origin.len(),
        );
        out.extend_from_slice(&self.opening);
        json(&mut out, &seq);
        out.extend_from_slice(&self.time_json);
        out.extend_from_slice(prepared.head.as_bytes());
        // As `stamp` cuts: past the bound, the first RESOURCES_MAX - 1 and how many more.
        let kept = if count > RESOURCES_MAX {
            RESOURCES_MAX - 1
        } else {
            count
        };
        for (i, resource) in resources().take(kept).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(resource.as_bytes());
        }
        if kept < count {
            out.push(b',');
            json(&mut out, &format!("…+{} more", count - kept));
        }
        out.extend_from_slice(b"],\"outcome\":");
        json(&mut out, &completion.outcome);
        out.extend_from_slice(b",\"reason\":");
        json(
            &mut out,
            &completion.reason.map(|r| bounded(r, REASON_LEN_MAX)),
        );
        out.extend_from_slice(b",\"detail\":");
        json(
            &mut out,
            &completion.detail.map(|d| bounded(d, DETAIL_LEN_MAX)),
        );
        out.extend_from_slice(prepared.origin.as_bytes());
        out
    }
}

impl Record {
    /// The record of `draft` at `seq` of `stream`, made at `time_us` (microseconds since the
    /// Unix epoch): text masked ([`crate::mask_pans`]) and cut to its bounds.
    pub fn stamp(draft: Draft, stream: &str, seq: u64, time_us: i64) -> Record {
        Stamper::new(stream, time_us).stamp(draft, seq)
    }

    /// The stored form: compact JSON, fields in declaration order.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain strings, numbers and options into a Vec cannot fail.
        let mut out = Vec::with_capacity(512);
        match serde_json::to_writer(&mut out, self) {
            Ok(()) => out,
            Err(_) => Vec::new(),
        }
    }

    /// Reads a stored record.
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        let record: Record =
            serde_json::from_slice(bytes).map_err(|e| RecordError(e.to_string()))?;
        if record.v != SCHEMA_VERSION {
            return Err(RecordError(format!(
                "schema version {}; this build reads {SCHEMA_VERSION}",
                record.v
            )));
        }
        Ok(record)
    }

    /// The record's time in microseconds since the Unix epoch, if it parses.
    pub fn time_us(&self) -> Option<i64> {
        parse_time(&self.time)
    }
}

/// A stored record that does not read as one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an audit record: {0}")]
pub struct RecordError(pub String);

/// `text` masked, control characters replaced with U+FFFD, and cut to `max` bytes at a
/// character boundary (with `…` marking the cut).
fn bounded(text: String, max: usize) -> String {
    let masked = match crate::mask_pans(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(masked) => masked,
    };
    let masked = if masked.chars().any(char::is_control) {
        masked
            .chars()
            .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
            .collect::<String>()
    } else {
        masked
    };
    if masked.len() <= max {
        return masked;
    }
    let mut end = max - '…'.len_utf8();
    while !masked.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &masked[..end])
}

/// Whether a resource id's character is kept as it is.
fn resource_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-' | '*')
}

/// A resource id: masked, characters other than ASCII letters, digits and `:._-` replaced with
/// `_`, cut to [`RESOURCE_LEN_MAX`] bytes.
fn resource_id(id: String) -> String {
    let masked = match crate::mask_pans(&id) {
        std::borrow::Cow::Borrowed(_) => id,
        std::borrow::Cow::Owned(masked) => masked,
    };
    let mut out = if masked.chars().all(resource_char) {
        masked
    } else {
        masked
            .chars()
            .map(|c| if resource_char(c) { c } else { '_' })
            .collect()
    };
    out.truncate(RESOURCE_LEN_MAX);
    out
}

/// RFC 3339 in UTC with six fractional digits, as records carry it.
pub fn format_time(time_us: i64) -> String {
    let nanos = i128::from(time_us) * 1000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        ),
        Err(_) => "invalid-time".to_owned(),
    }
}

/// Microseconds since the Unix epoch of an RFC 3339 time (any offset).
pub fn parse_time(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn draft() -> Draft {
        Draft::success(
            "transfer.create",
            Actor {
                tenant: Some("acme".into()),
                subject: Some("app-1".into()),
                client_id: Some("app-1".into()),
                source_ip: Some("203.0.113.9".into()),
            },
            Origin {
                request_id: Some("req-1".into()),
                trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            },
        )
        .resource("transfer", "01JTRANSFER")
    }

    #[test]
    fn a_record_encodes_in_field_order_and_reads_back() {
        let record = Record::stamp(draft(), "w1", 7, 1_764_000_000_123_456);
        let bytes = record.encode();
        let text = std::str::from_utf8(&bytes).expect("utf-8");
        assert!(text.starts_with(r#"{"v":1,"stream":"w1","seq":7,"time":"2025-11-24T16:00:00.123456Z","actor":{"tenant":"acme""#), "{text}");
        assert!(!text.contains('\n'));
        assert_eq!(Record::decode(&bytes).expect("decode"), record);
        assert_eq!(record.time_us(), Some(1_764_000_000_123_456));
        // Re-encoding what was read gives the same bytes: one canonical form.
        assert_eq!(Record::decode(&bytes).expect("decode").encode(), bytes);
    }

    #[test]
    fn card_numbers_are_masked_and_fields_bounded_whatever_the_caller_passed() {
        let mut d = draft();
        d.reason = Some("refund to 4111 1111 1111 1111".into());
        d.outcome = Outcome::Failure;
        d.actor.subject = Some("x".repeat(10_000));
        d.resources = (0..RESOURCES_MAX + 5)
            .map(|i| format!("account:{i}"))
            .collect();
        let record = Record::stamp(d, "w1", 0, 0);
        let text = String::from_utf8(record.encode()).expect("utf-8");
        assert!(!text.contains("4111 1111 1111 1111"));
        let reason = record.reason.as_deref().unwrap_or_default();
        assert!(
            reason.starts_with("refund to 4111") && reason.ends_with("1111"),
            "{reason}"
        );
        assert!(
            record
                .actor
                .subject
                .as_ref()
                .is_some_and(|s| s.len() <= FIELD_LEN_MAX)
        );
        assert_eq!(record.resources.len(), RESOURCES_MAX);
        assert_eq!(
            record.resources.last().map(String::as_str),
            Some("…+6 more")
        );
        assert!(text.len() <= record_bytes_max(record.resources.len()));
    }

    #[test]
    fn unknown_fields_and_versions_are_refused() {
        let record = Record::stamp(draft(), "w1", 0, 0);
        let text = String::from_utf8(record.encode()).expect("utf-8");
        let extra = text.replacen("\"seq\":0", "\"seq\":0,\"x\":1", 1);
        assert!(Record::decode(extra.as_bytes()).is_err());
        let v2 = text.replacen("\"v\":1", "\"v\":2", 1);
        assert!(Record::decode(v2.as_bytes()).is_err());
        assert!(Record::decode(b"not json").is_err());
    }

    /// Text of every kind a field may be given: quotes, backslashes, control characters,
    /// multi-byte characters, card numbers, and lengths past every bound.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ -~]{0,40}",
            "\\PC{0,40}",
            "[\"\\\\\u{0}-\u{1f}\u{7f}é€😀a]{0,40}",
            Just("card 4111 1111 1111 1111 and 5500-0000-0000-0004".to_owned()),
            "[a-z€]{250,300}",
            "[0-9 ]{1100,1200}",
        ]
    }

    fn opt_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(text())
    }

    fn ids(max: usize) -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(prop_oneof!["[a-z]{1,8}:[0-9A-Z]{26}", text()], 0..max)
    }

    #[derive(Debug, Clone)]
    struct Case {
        actor: Actor,
        origin: Origin,
        action: String,
        leading: Vec<String>,
        made: Vec<String>,
        trailing: Vec<String>,
        outcome: Outcome,
        reason: Option<String>,
        detail: Option<String>,
        seq: u64,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            (opt_text(), opt_text(), opt_text(), opt_text()),
            (opt_text(), opt_text(), text()),
            (ids(4), ids(4), ids(3)),
            (any::<bool>(), opt_text(), opt_text(), any::<u64>()),
        )
            .prop_map(
                |(
                    (tenant, subject, client_id, source_ip),
                    (request_id, trace_id, action),
                    (leading, made, trailing),
                    (success, reason, detail, seq),
                )| Case {
                    actor: Actor {
                        tenant,
                        subject,
                        client_id,
                        source_ip,
                    },
                    origin: Origin {
                        request_id,
                        trace_id,
                    },
                    action,
                    leading,
                    made,
                    trailing,
                    outcome: if success {
                        Outcome::Success
                    } else {
                        Outcome::Failure
                    },
                    reason,
                    detail,
                    seq,
                },
            )
    }

    /// The prepared record's bytes, and the stamped draft's.
    fn both(c: Case, stream: &str, time_us: i64) -> (Vec<u8>, Vec<u8>) {
        let stamper = Stamper::new(stream, time_us);
        let prepared = PreparedRecord::new(
            c.actor.clone(),
            &c.action,
            c.leading.clone(),
            c.trailing.clone(),
            c.origin.clone(),
        );
        let fast = stamper.encode_prepared(
            &prepared,
            Completion {
                made: c.made.clone(),
                outcome: c.outcome,
                reason: c.reason.clone(),
                detail: c.detail.clone(),
            },
            c.seq,
        );
        let mut resources = c.leading;
        resources.extend(c.made);
        resources.extend(c.trailing);
        let draft = Draft {
            actor: c.actor,
            action: c.action,
            resources,
            outcome: c.outcome,
            reason: c.reason,
            detail: c.detail,
            origin: c.origin,
        };
        (fast, stamper.stamp(draft, c.seq).encode())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn a_prepared_record_encodes_to_the_bytes_of_the_stamped_draft(
            c in case(),
            stream in text(),
            time_us in -62_135_596_800_000_000i64..253_402_300_799_999_999,
        ) {
            let (fast, slow) = both(c, &stream, time_us);
            prop_assert_eq!(fast, slow);
        }
    }

    #[test]
    fn a_prepared_record_past_the_resource_bound_is_cut_as_stamping_cuts() {
        let case = |made: usize| Case {
            actor: Actor::default(),
            origin: Origin::default(),
            action: "transfer.batch".into(),
            leading: vec!["account:a".into()],
            made: (0..made).map(|i| format!("transfer:{i}")).collect(),
            trailing: vec!["idempotency-key:k".into()],
            outcome: Outcome::Success,
            reason: None,
            detail: Some("replay".into()),
            seq: 9,
        };
        for made in [
            RESOURCES_MAX - 3,
            RESOURCES_MAX - 2,
            RESOURCES_MAX - 1,
            RESOURCES_MAX,
            2000,
        ] {
            let (fast, slow) = both(case(made), "w1", 0);
            assert_eq!(fast, slow, "{made} made");
        }
        let (fast, _) = both(case(RESOURCES_MAX - 1), "w1", 0);
        assert!(String::from_utf8(fast).expect("utf-8").contains("…+2 more"));
        // No resources at all, and only trailing ones.
        let mut c = case(0);
        c.leading.clear();
        let (fast, slow) = both(c.clone(), "w1", 0);
        assert_eq!(fast, slow);
        c.trailing.clear();
        let (fast, slow) = both(c, "w1", 0);
        assert_eq!(fast, slow);
    }
}
